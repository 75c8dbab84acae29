package hosts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/emf"
	"github.com/tether-ecs/tether/functions/internal/eventsrc"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// Unit tests of the host rules' decisions over fakes of their narrow
// interfaces; the wiring (the real SDK clients, the world's Auto Scaling,
// EC2 and ECS, the template's rules and hook) is tested end to end in
// test/e2e.

const (
	cluster = "c"
	inst    = "i-0a1b2c3d4e5f60718"
	ciARN   = "arn:aws:ecs:us-east-1:111122223333:container-instance/c/a"
	hook    = "tether-stack"
	queue   = "https://sqs.us-east-1.amazonaws.com/111122223333/stack-HostsQueue"
)

var t0 = time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC)

// fakeAWS is the EC2, ECS and Auto Scaling the rules see, and what they did.
type fakeAWS struct {
	mu        sync.Mutex
	state     string // EC2 instance state; "" unknown to EC2
	ci        *cloud.ContainerInstance
	vols      []cloud.Volume
	health    cloud.InstanceHealth
	failVols  error
	actionOff bool // Auto Scaling no longer has the lifecycle action
	calls     []string
}

func (f *fakeAWS) record(s string) { f.mu.Lock(); f.calls = append(f.calls, s); f.mu.Unlock() }

func (f *fakeAWS) did(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func (f *fakeAWS) Instance(_ context.Context, id string) (cloud.Instance, error) {
	f.record("Instance")
	if f.state == "" {
		return cloud.Instance{}, cloud.ErrNotFound
	}
	return cloud.Instance{ID: id, State: f.state}, nil
}

func (f *fakeAWS) InstanceVolumes(_ context.Context, _, _ string) ([]cloud.Volume, error) {
	f.record("InstanceVolumes")
	return f.vols, f.failVols
}

func (f *fakeAWS) ContainerInstanceOf(_ context.Context, _, _ string) (cloud.ContainerInstance, error) {
	if f.ci == nil {
		return cloud.ContainerInstance{}, cloud.ErrNotFound
	}
	return cloud.ContainerInstance{ARN: f.ci.ARN, EC2InstanceID: inst}, nil // where it is, not its state
}

func (f *fakeAWS) ContainerInstance(_ context.Context, _, _ string) (cloud.ContainerInstance, error) {
	f.record("DescribeContainerInstance")
	return *f.ci, nil
}

func (f *fakeAWS) InstanceHealth(_ context.Context, _ string) (cloud.InstanceHealth, error) {
	f.record("InstanceHealth")
	return f.health, nil
}

func (f *fakeAWS) StopInstance(_ context.Context, id string) error {
	f.record("StopInstance " + id)
	f.state = "stopping"
	return nil
}

func (f *fakeAWS) DrainContainerInstance(_ context.Context, _, arn string) error {
	f.record("Drain " + arn)
	f.ci.Status = "DRAINING"
	return nil
}

func (f *fakeAWS) RecordHeartbeat(_ context.Context, a cloud.LifecycleAction) error {
	f.record("Heartbeat " + a.InstanceID)
	if f.actionOff {
		return cloud.ErrNotFound
	}
	return nil
}

func (f *fakeAWS) CompleteLifecycleAction(_ context.Context, a cloud.LifecycleAction, result string) error {
	f.record("Complete " + a.InstanceID + " " + result)
	if f.actionOff {
		return cloud.ErrNotFound
	}
	f.actionOff = true
	return nil
}

// sent is the hosts queue.
type sent struct {
	mu   sync.Mutex
	msgs []*sqs.SendMessageInput
}

func (s *sent) SendMessage(_ context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, in)
	return &sqs.SendMessageOutput{}, nil
}

// rec stands for the reconciler core: it names the keys it was told.
type rec struct{ keys []reconcile.Key }

func (r *rec) Keys(context.Context, reconcile.Trigger) ([]reconcile.Key, error) { return r.keys, nil }
func (r *rec) Reconcile(context.Context, reconcile.Key) (reconcile.Result, error) {
	return reconcile.Result{}, nil
}
func (r *rec) Invocation(ctx context.Context) context.Context { return ctx }
func (r *rec) HandBackFailed(context.Context, reconcile.Key)  {}

type fixture struct {
	t       *testing.T
	aws     *fakeAWS
	q       *sent
	core    *Core
	now     time.Time
	logs    bytes.Buffer
	metrics bytes.Buffer
}

func newFixture(t *testing.T, cfg Config) *fixture {
	f := &fixture{t: t, q: &sent{}, now: t0,
		aws: &fakeAWS{state: "running", ci: &cloud.ContainerInstance{ARN: ciARN, EC2InstanceID: inst, Status: "ACTIVE", AgentConnected: true},
			vols: []cloud.Volume{{ID: "vol-0123456789abcdef0", Attachments: []cloud.Attachment{{InstanceID: inst, State: cloud.AttachAttached}}}}}}
	cfg.Cluster, cfg.QueueURL = cluster, queue
	if cfg.HookName == "" {
		cfg.HookName = hook
	}
	core, err := New(&rec{keys: []reconcile.Key{{Cluster: cluster, Volume: "data"}}}, f.aws, f.aws, f.q, cfg,
		slog.New(slog.NewJSONHandler(&f.logs, nil)), emf.New(&f.metrics, "Tether", func() time.Time { return f.now }), func() time.Time { return f.now })
	if err != nil {
		t.Fatal(err)
	}
	f.core = core
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s\ncalls: %v", f.logs.String(), f.aws.calls)
		}
	})
	return f
}

func (f *fixture) keys(tr reconcile.Trigger) []reconcile.Key {
	f.t.Helper()
	ks, err := f.core.Keys(context.Background(), tr)
	if err != nil {
		f.t.Fatalf("Keys(%+v): %v", tr, err)
	}
	return ks
}

// next decodes the last message sent to the hosts queue.
func (f *fixture) next() (reconcile.Trigger, int32) {
	f.t.Helper()
	if len(f.q.msgs) == 0 {
		f.t.Fatal("nothing sent to the hosts queue")
	}
	m := f.q.msgs[len(f.q.msgs)-1]
	if aws.ToString(m.QueueUrl) != queue {
		f.t.Fatalf("sent to %s", aws.ToString(m.QueueUrl))
	}
	dec, _ := eventsrc.NewDecoder(cluster)
	ev, err := dec.Decode([]byte(aws.ToString(m.MessageBody)))
	if err != nil {
		f.t.Fatalf("tether sent itself %s: %v", aws.ToString(m.MessageBody), err)
	}
	return ev.Trigger, m.DelaySeconds
}

func (f *fixture) metric(name string) float64 {
	sum := 0.0
	for _, line := range strings.Split(strings.TrimSpace(f.metrics.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			if v, ok := m[name].(float64); ok {
				sum += v
			}
		}
	}
	return sum
}

func theHold() reconcile.TerminationHold {
	return reconcile.TerminationHold{Group: "asg", Hook: hook, InstanceID: inst, Token: "87654321-4321-4321-4321-210987654321", Started: t0}
}

// The hold drains the instance, heartbeats and comes back while a volume
// is attached; once EC2 says none is, it completes with CONTINUE.
func TestHoldWaitsForTheVolumesThenContinues(t *testing.T) {
	f := newFixture(t, Config{})
	if ks := f.keys(theHold()); len(ks) != 0 {
		t.Errorf("a hold names keys %v", ks)
	}
	if f.aws.did("Drain "+ciARN) != 1 || f.aws.did("Heartbeat") != 1 || f.aws.did("Complete") != 0 {
		t.Fatalf("first pass: %v", f.aws.calls)
	}
	tr, delay := f.next()
	h, ok := tr.(reconcile.TerminationHold)
	if want := theHold(); !ok || h.Passes != 1 || h.Token != want.Token || !h.Started.Equal(t0) || delay != 5 {
		t.Fatalf("next pass %+v after %ds", tr, delay)
	}

	f.now = t0.Add(40 * time.Second)
	f.aws.vols[0].Attachments[0].State = cloud.AttachDetaching
	f.keys(h)
	if f.aws.did("Complete") != 0 || len(f.q.msgs) != 2 {
		t.Fatalf("a detaching volume is still attached: %v", f.aws.calls)
	}
	tr, _ = f.next()
	h, _ = tr.(reconcile.TerminationHold)

	f.now = t0.Add(45 * time.Second)
	f.aws.vols = nil
	f.keys(h)
	if f.aws.did("Complete "+inst+" CONTINUE") != 1 || f.aws.did("Drain") != 1 || len(f.q.msgs) != 2 {
		t.Fatalf("volumes off: %v, %d messages", f.aws.calls, len(f.q.msgs))
	}
	if got := f.metric(MetricHoldDuration); got != 45000 {
		t.Errorf("HoldDuration %v ms, want 45000", got)
	}
	if got := f.metric(MetricHoldsTimedOut); got != 0 {
		t.Errorf("HoldsTimedOut %v", got)
	}
}

// Past its deadline a hold continues anyway, counted as timed out, with
// the volumes still attached (the dead-host rule's once EC2 terminates).
func TestHoldDeadlineContinuesAndCounts(t *testing.T) {
	f := newFixture(t, Config{HoldDeadline: 2 * time.Minute})
	h := theHold()
	h.Passes = 20
	f.now = t0.Add(2 * time.Minute)
	f.keys(h)
	if f.aws.did("Complete "+inst+" CONTINUE") != 1 || f.aws.did("Heartbeat") != 0 || len(f.q.msgs) != 0 {
		t.Fatalf("at the deadline: %v, %d messages", f.aws.calls, len(f.q.msgs))
	}
	if f.metric(MetricHoldsTimedOut) != 1 {
		t.Errorf("HoldsTimedOut %v, want 1", f.metric(MetricHoldsTimedOut))
	}
	// The next pass waits no longer than the deadline.
	g := newFixture(t, Config{HoldDeadline: 2 * time.Minute, HoldPoll: 30 * time.Second})
	g.now = t0.Add(110 * time.Second)
	g.keys(theHold())
	if _, delay := g.next(); delay != 10 {
		t.Errorf("10 s before the deadline the next pass comes after %ds", delay)
	}
}

// An instance EC2 no longer runs (a Spot Instance's hook fires only after
// EC2 interrupted it) is not held: CONTINUE at once, no drain.
func TestHoldOfAnInstanceAlreadyGoing(t *testing.T) {
	for _, st := range []string{"shutting-down", "terminated", "stopping", "stopped", ""} {
		f := newFixture(t, Config{})
		f.aws.state = st
		f.keys(theHold())
		if f.aws.did("Complete "+inst+" CONTINUE") != 1 || f.aws.did("Drain") != 0 || f.aws.did("InstanceVolumes") != 0 || len(f.q.msgs) != 0 {
			t.Errorf("EC2 %q: %v", st, f.aws.calls)
		}
	}
}

// A duplicate or late event, or a chain whose action another pass
// completed: Auto Scaling answers that no such action is active, and the
// chain ends without counting anything again.
func TestHoldEndsWhenTheActionIsNoLongerActive(t *testing.T) {
	f := newFixture(t, Config{})
	f.aws.actionOff = true
	f.keys(theHold())
	if f.aws.did("Heartbeat") != 1 || len(f.q.msgs) != 0 {
		t.Fatalf("heartbeat refused: %v, %d messages", f.aws.calls, len(f.q.msgs))
	}
	f.aws.vols = nil
	h := theHold()
	h.Passes = 3
	f.keys(h)
	if f.aws.did("Complete") != 1 || f.metric(MetricHoldDuration) != 0 || len(f.q.msgs) != 0 {
		t.Fatalf("completion refused: %v, metrics %s", f.aws.calls, f.metrics.String())
	}
}

// Lifecycle actions of other hooks are not tether's: skipped quietly.
func TestHoldOfAnotherHookIsSkipped(t *testing.T) {
	f := newFixture(t, Config{})
	h := theHold()
	h.Hook = "someone-elses"
	_, err := f.core.Keys(context.Background(), h)
	if s, ok := eventsrc.AsSkip(err); !ok || !s.Quiet {
		t.Fatalf("Keys = %v; want a quiet skip", err)
	}
	if len(f.aws.calls) != 0 {
		t.Errorf("calls %v", f.aws.calls)
	}
}

// A hung host (ECS agent disconnected, EC2's status check impaired past
// the threshold) cannot unmount: the hold continues at once, the
// termination being the fence. Before the threshold it keeps holding.
func TestHoldOfAHungHostContinues(t *testing.T) {
	f := newFixture(t, Config{HungThreshold: 5 * time.Minute})
	f.aws.ci.AgentConnected = false
	f.aws.health = cloud.InstanceHealth{ID: inst, State: "running", Impaired: true, ImpairedSince: t0.Add(-4 * time.Minute), Summary: "impaired"}
	f.keys(theHold())
	if f.aws.did("Complete") != 0 || f.aws.did("Heartbeat") != 1 {
		t.Fatalf("impaired 4m of 5m: %v", f.aws.calls)
	}
	tr, _ := f.next()
	h, _ := tr.(reconcile.TerminationHold)
	f.now = t0.Add(time.Minute)
	f.keys(h)
	if f.aws.did("Complete "+inst+" CONTINUE") != 1 || f.metric(MetricHoldsTimedOut) != 0 {
		t.Fatalf("impaired 5m: %v", f.aws.calls)
	}
}

// AWS failing a pass does not end the hold: the next pass is sent soon
// (the hook is heartbeated in time), and the message is acknowledged.
func TestHoldRetriesWhenAWSFails(t *testing.T) {
	f := newFixture(t, Config{})
	f.aws.failVols = errors.New("ec2 DescribeVolumes: 500")
	f.keys(theHold())
	tr, delay := f.next()
	if h, ok := tr.(reconcile.TerminationHold); !ok || h.Passes != 1 || delay != 5 {
		t.Fatalf("after a failure: %+v after %ds", tr, delay)
	}
	if f.aws.did("Complete") != 0 {
		t.Errorf("completed on a failure: %v", f.aws.calls)
	}
}

func theWatch() reconcile.HostWatch {
	return reconcile.HostWatch{Cluster: cluster, InstanceID: inst, Since: t0}
}

// The watch of a disconnected instance: a connected agent or no volume
// ends it; a healthy one is looked at again; one impaired past the
// threshold is stopped with the opt-in and fenced without it; one EC2
// keeps reporting healthy is fenced at the watch's limit.
func TestWatchOfADisconnectedHost(t *testing.T) {
	t.Run("agent back", func(t *testing.T) {
		f := newFixture(t, Config{})
		f.keys(theWatch())
		if len(f.q.msgs) != 0 || f.aws.did("InstanceHealth") != 0 {
			t.Errorf("%v, %d messages", f.aws.calls, len(f.q.msgs))
		}
	})
	t.Run("no volume", func(t *testing.T) {
		f := newFixture(t, Config{})
		f.aws.ci.AgentConnected, f.aws.vols = false, nil
		f.keys(theWatch())
		if len(f.q.msgs) != 0 {
			t.Errorf("%d messages", len(f.q.msgs))
		}
	})
	t.Run("the ECS event starts it", func(t *testing.T) {
		f := newFixture(t, Config{})
		f.aws.ci.AgentConnected = false
		f.aws.health = cloud.InstanceHealth{ID: inst, State: "running", Summary: "ok"}
		f.keys(reconcile.InstanceChanged{Cluster: cluster, ContainerInstanceArn: ciARN, EC2InstanceID: inst, Status: "ACTIVE"})
		tr, delay := f.next()
		if w, ok := tr.(reconcile.HostWatch); !ok || w.InstanceID != inst || !w.Since.Equal(t0) || delay != 30 {
			t.Fatalf("%+v after %ds", tr, delay)
		}
		// A connected agent's event is the drain function's business.
		f.keys(reconcile.InstanceChanged{Cluster: cluster, ContainerInstanceArn: ciARN, EC2InstanceID: inst, Status: "DRAINING", AgentConnected: true})
		if len(f.q.msgs) != 1 {
			t.Errorf("%d messages", len(f.q.msgs))
		}
	})
	t.Run("impaired, not yet hung", func(t *testing.T) {
		f := newFixture(t, Config{HungThreshold: 5 * time.Minute})
		f.aws.ci.AgentConnected = false
		f.aws.health = cloud.InstanceHealth{ID: inst, State: "running", Impaired: true, ImpairedSince: t0.Add(-290 * time.Second), Summary: "impaired"}
		f.keys(theWatch())
		if _, delay := f.next(); delay != 10 || f.aws.did("StopInstance") != 0 {
			t.Errorf("look again after %ds (want the 10 s left); %v", delay, f.aws.calls)
		}
	})
	t.Run("hung, stop", func(t *testing.T) {
		f := newFixture(t, Config{HungAction: HungStop, HungThreshold: 5 * time.Minute})
		f.aws.ci.AgentConnected = false
		f.aws.health = cloud.InstanceHealth{ID: inst, State: "running", Impaired: true, ImpairedSince: t0.Add(-5 * time.Minute), Summary: "impaired"}
		f.keys(theWatch())
		f.keys(theWatch()) // a second chain: EC2 now says stopping
		if f.aws.did("StopInstance "+inst) != 1 || len(f.q.msgs) != 0 || f.metric(MetricHungHostsStopped) != 1 || f.metric(MetricHungHostsFenced) != 0 {
			t.Errorf("%v, %d messages, metrics %s", f.aws.calls, len(f.q.msgs), f.metrics.String())
		}
	})
	t.Run("hung, fenced", func(t *testing.T) {
		f := newFixture(t, Config{HungThreshold: 5 * time.Minute})
		f.aws.ci.AgentConnected = false
		f.aws.health = cloud.InstanceHealth{ID: inst, State: "running", SystemImpaired: true, SystemImpairedSince: t0.Add(-6 * time.Minute), Summary: "ok"}
		f.keys(theWatch())
		f.keys(theWatch())
		if f.aws.did("StopInstance") != 0 || len(f.q.msgs) != 0 || f.metric(MetricHungHostsFenced) != 1 {
			t.Errorf("%v, %d messages, metrics %s", f.aws.calls, len(f.q.msgs), f.metrics.String())
		}
	})
	t.Run("healthy past the limit", func(t *testing.T) {
		f := newFixture(t, Config{HungAction: HungStop, HungThreshold: time.Minute, WatchLimit: 10 * time.Minute})
		f.aws.ci.AgentConnected = false
		f.aws.health = cloud.InstanceHealth{ID: inst, State: "running", Summary: "ok"}
		f.now = t0.Add(10 * time.Minute)
		f.keys(theWatch())
		if f.aws.did("StopInstance") != 0 || len(f.q.msgs) != 0 || f.metric(MetricHungHostsFenced) != 1 {
			t.Errorf("a host EC2 reports healthy is never stopped: %v, metrics %s", f.aws.calls, f.metrics.String())
		}
	})
	t.Run("not running", func(t *testing.T) {
		f := newFixture(t, Config{})
		f.aws.state, f.aws.ci.AgentConnected = "stopped", false
		f.keys(theWatch())
		if len(f.q.msgs) != 0 || f.aws.did("InstanceHealth") != 0 {
			t.Errorf("%v", f.aws.calls)
		}
	})
}

// The Spot warning drains the instance at once (once: a repeated warning
// finds it DRAINING).
func TestSpotWarningDrains(t *testing.T) {
	f := newFixture(t, Config{})
	f.keys(reconcile.HostInterrupted{InstanceID: inst, Action: "terminate"})
	f.keys(reconcile.HostInterrupted{InstanceID: inst, Action: "terminate"})
	if f.aws.did("Drain "+ciARN) != 1 {
		t.Errorf("%v", f.aws.calls)
	}
	g := newFixture(t, Config{})
	g.aws.ci = nil // not a container instance of the cluster
	g.keys(reconcile.HostInterrupted{InstanceID: inst, Action: "stop"})
	if g.aws.did("Drain") != 0 {
		t.Errorf("%v", g.aws.calls)
	}
}

// EC2's state changes go to the reconciler; a gone host's volumes are
// counted once per instance.
func TestDeadHostHandoffsCounted(t *testing.T) {
	f := newFixture(t, Config{})
	for _, st := range []string{"stopping", "stopped", "terminated", "terminated"} {
		if ks := f.keys(reconcile.HostChanged{InstanceID: inst, State: st}); len(ks) != 1 {
			t.Fatalf("%s: keys %v", st, ks)
		}
	}
	if got := f.metric(MetricDeadHostHandoffs); got != 1 {
		t.Errorf("DeadHostHandoffs %v, want 1", got)
	}
}
