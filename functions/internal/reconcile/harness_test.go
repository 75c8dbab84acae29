package reconcile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/emf"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

const (
	cluster    = "c"
	mountDoc   = "tether-mount"
	unmountDoc = "tether-unmount"
	tdShared   = "arn:aws:ecs:us-east-1:111122223333:task-definition/mysql:1"
	tdScratch  = "arn:aws:ecs:us-east-1:111122223333:task-definition/scratch:1"
	volName    = "rexray-vol"
)

var start = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// msg is a retry message on the queue: a key handed back with a delay, or
// redelivered after a failed pass.
type msg struct {
	key  reconcile.Key
	hint string
	due  time.Time
}

// tb is what the harness needs of *testing.T and *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Failed() bool
	Cleanup(func())
}

type harness struct {
	mu      sync.Mutex // guards queue, events, failed and results during concurrent invokes
	t       tb
	w       *cloudtest.World
	c       *cloud.AWS
	r       *reconcile.Reconciler
	logs    *bytes.Buffer
	metrics *bytes.Buffer
	queue   []msg
	events  []cloudtest.Event
	failed  int            // passes that returned an error
	cost    map[string]int // EC2 calls by the kind of trigger that caused them
	plain   bool           // call Keys and Reconcile without an Invocation
	results map[reconcile.Key][]reconcile.Result
	ecsCost map[string]int // ECS calls by trigger, when not nil
}

type option func(*reconcile.Config)

func newHarness(t tb, opts ...option) *harness { return newHarnessSSM(t, nil, opts...) }

// newHarnessSSM is newHarness with the fake SSM client wrapped (nil: as it is).
func newHarnessSSM(t tb, wrap func(cloud.SSMAPI) cloud.SSMAPI, opts ...option) *harness {
	w := cloudtest.New(start)
	h := &harness{t: t, w: w, logs: &bytes.Buffer{}, metrics: &bytes.Buffer{}, results: map[reconcile.Key][]reconcile.Result{}, cost: map[string]int{}}
	var ssmc cloud.SSMAPI = w.SSM(mountDoc, unmountDoc)
	if wrap != nil {
		ssmc = wrap(ssmc)
	}
	h.c = cloud.NewWithClients(w.EC2(), w.ECS(), ssmc, cloud.Options{BatchWindow: -1, Now: w.Now})
	cfg := reconcile.Config{
		Cloud: h.c, Cluster: cluster, MountDocument: mountDoc, UnmountDocument: unmountDoc,
		Logger:  slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: emf.New(h.metrics, "Tether", w.Now),
		Now:     w.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	r, err := reconcile.New(cfg)
	if err != nil {
		t.Fatalf("%v", err)
	}
	h.r = r
	w.AddTaskDef(cloudtest.TaskDef{ARN: tdShared, Volumes: []cloudtest.DockerVolume{{
		Name: volName, Driver: "tether", Scope: "shared", Autoprovision: true,
		DriverOpts: map[string]string{"volumetype": "gp2", "size": "5"},
	}}})
	w.AddTaskDef(cloudtest.TaskDef{ARN: tdScratch, Volumes: []cloudtest.DockerVolume{{
		Name: "scratch", Driver: "tether", Scope: "task", DriverOpts: map[string]string{"size": "1"},
	}}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("reconciler log (last 60 lines):\n%s", tail(h.logs.String(), 60))
			t.Logf("world journal:\n%s", strings.Join(h.w.Journal(), "\n"))
			for _, task := range h.w.Tasks() {
				t.Logf("task %s on %s: last %s desired %s created %s started %s stopped %s reason %q", task.ARN, task.CI, task.LastStatus, task.DesiredStatus,
					task.Created.Format(time.TimeOnly), task.Started.Format(time.TimeOnly), task.Stopped.Format(time.TimeOnly), task.StoppedReason)
			}
			for _, v := range h.w.Volumes() {
				t.Logf("volume %+v att %+v", v, v.Att)
			}
		}
	})
	return h
}

// otherProcess is a second reconciler on the same world, as another Lambda
// process: the same AWS, none of this one's memory.
func (h *harness) otherProcess() *reconcile.Reconciler {
	c := cloud.NewWithClients(h.w.EC2(), h.w.ECS(), h.w.SSM(mountDoc, unmountDoc), cloud.Options{BatchWindow: -1, Now: h.w.Now})
	other, err := reconcile.New(reconcile.Config{Cloud: c, Cluster: cluster, MountDocument: mountDoc, UnmountDocument: unmountDoc,
		Logger: slog.New(slog.NewJSONHandler(h.logs, nil)), Now: h.w.Now})
	if err != nil {
		h.t.Fatalf("%v", err)
	}
	return other
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (h *harness) trigger(ev cloudtest.Event) reconcile.Trigger {
	switch ev.Kind {
	case "task":
		return reconcile.TaskChanged{Cluster: cluster, TaskArn: ev.Task, TaskDefinitionArn: ev.TaskDef,
			ContainerInstanceArn: ev.CI, LastStatus: ev.LastStatus, DesiredStatus: ev.DesiredStatus, Version: ev.Version,
			CreatedAt: ev.Created, StartedAt: ev.Started, StoppedAt: ev.Stopped, Group: ev.Group, AZ: ev.AZ}
	case "volume":
		return reconcile.VolumeChanged{VolumeID: ev.Volume, Event: ev.Action, Result: ev.Result}
	case "instance":
		return reconcile.InstanceChanged{Cluster: cluster, ContainerInstanceArn: ev.Instance, EC2InstanceID: ev.EC2ID,
			Status: ev.Status, AgentConnected: ev.AgentConnected}
	case "command":
		return reconcile.CommandChanged{CommandID: ev.Command, InstanceID: ev.EC2ID, Document: ev.Document, Status: ev.Status}
	}
	h.t.Fatalf("unknown event %+v", ev)
	return nil
}

// invoke runs one function invocation over some triggers, as the SQS
// handler does: keys deduplicated, each reconciled, results queued.
func (h *harness) invoke(triggers ...reconcile.Trigger) {
	h.t.Helper()
	ctx := context.Background()
	if !h.plain {
		ctx = h.r.Invocation(ctx)
	}
	before := h.w.EC2Calls()
	beforeAll := h.w.Calls()
	defer func() {
		if h.ecsCost != nil {
			k := fmt.Sprintf("%T", triggers[0])
			if r, ok := triggers[0].(reconcile.Retry); ok {
				k += "/" + r.Hint
			}
			if tc, ok := triggers[0].(reconcile.TaskChanged); ok {
				k += "/" + tc.DesiredStatus + "/" + tc.LastStatus
			}
			for op, n := range h.w.Calls() {
				if strings.HasPrefix(op, "ECS:") && n > beforeAll[op] {
					h.ecsCost[k+" "+op] += n - beforeAll[op]
				}
			}
		}
		kind := fmt.Sprintf("%T", triggers[0])
		if r, ok := triggers[0].(reconcile.Retry); ok {
			var hint struct {
				S string `json:"s"`
			}
			_ = json.Unmarshal([]byte(r.Hint), &hint)
			kind += "/" + hint.S
		}
		if tc, ok := triggers[0].(reconcile.TaskChanged); ok {
			kind += "/" + tc.DesiredStatus + "/" + tc.LastStatus
		}
		h.mu.Lock()
		h.cost[kind] += h.w.EC2Calls() - before
		h.mu.Unlock()
	}()
	var keys []reconcile.Key
	seen := map[reconcile.Key]bool{}
	for i, tr := range triggers {
		ks, err := h.r.Keys(reconcile.WithEventID(ctx, fmt.Sprintf("ev-%d", i)), tr)
		if err != nil {
			// The trigger's message is redelivered later (its keys unknown yet).
			h.mu.Lock()
			h.failed++
			h.requeueTrigger(tr)
			h.mu.Unlock()
			continue
		}
		for _, k := range ks {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	h.r.ReleaseDrained(ctx) // as the dispatcher: once the triggers are named
	for _, k := range keys {
		res, err := h.r.Reconcile(ctx, k)
		h.mu.Lock()
		h.results[k] = append(h.results[k], res)
		switch {
		case err != nil:
			h.failed++
			h.queue = append(h.queue, msg{key: k, due: h.w.Now().Add(30 * time.Second)})
		case !res.Done():
			h.queue = append(h.queue, msg{key: k, hint: res.Hint, due: h.w.Now().Add(res.RetryAfter)})
		}
		h.mu.Unlock()
	}
}

// pendingTriggers keeps triggers whose Keys failed, redelivered with the queue.
func (h *harness) requeueTrigger(tr reconcile.Trigger) {
	if r, ok := tr.(reconcile.Retry); ok {
		h.queue = append(h.queue, msg{key: r.Key, hint: r.Hint, due: h.w.Now().Add(30 * time.Second)})
		return
	}
	h.events = append(h.events, eventOf(tr))
}

func eventOf(tr reconcile.Trigger) cloudtest.Event {
	switch t := tr.(type) {
	case reconcile.TaskChanged:
		return cloudtest.Event{Kind: "task", Task: t.TaskArn, Version: t.Version, TaskDef: t.TaskDefinitionArn, CI: t.ContainerInstanceArn, LastStatus: t.LastStatus, DesiredStatus: t.DesiredStatus,
			Created: t.CreatedAt, Started: t.StartedAt, Stopped: t.StoppedAt, Group: t.Group, AZ: t.AZ}
	case reconcile.VolumeChanged:
		return cloudtest.Event{Kind: "volume", Volume: t.VolumeID, Action: t.Event, Result: t.Result}
	case reconcile.InstanceChanged:
		return cloudtest.Event{Kind: "instance", Instance: t.ContainerInstanceArn, EC2ID: t.EC2InstanceID, Status: t.Status, AgentConnected: t.AgentConnected}
	case reconcile.CommandChanged:
		return cloudtest.Event{Kind: "command", Command: t.CommandID, EC2ID: t.InstanceID, Document: t.Document, Status: t.Status}
	case reconcile.SweepRequested:
		return cloudtest.Event{Kind: "sweep"}
	}
	return cloudtest.Event{}
}

func (h *harness) collect() { h.events = append(h.events, h.w.TakeEvents()...) }

func (h *harness) deliverEvent(i int) {
	ev := h.events[i]
	h.events = append(h.events[:i], h.events[i+1:]...)
	if ev.Kind == "sweep" {
		h.sweep()
		return
	}
	h.invoke(h.trigger(ev))
}

func (h *harness) sweep() { h.invoke(reconcile.SweepRequested{Cluster: cluster}) }

// deliverRetry delivers queue message i (the clock moves to its due time).
func (h *harness) deliverRetry(i int) {
	m := h.queue[i]
	h.queue = append(h.queue[:i], h.queue[i+1:]...)
	if d := m.due.Sub(h.w.Now()); d > 0 {
		h.w.Advance(d)
	}
	h.invoke(reconcile.Retry{Key: m.key, Hint: m.hint})
}

func (h *harness) earliestRetry() int {
	best := 0
	for i, m := range h.queue {
		if m.due.Before(h.queue[best].due) {
			best = i
		}
	}
	return best
}

// settle runs the default schedule until nothing is left: events first,
// then work in flight (each completion takes a second), then retries in
// due order. It fails the test if it does not settle within maxSteps.
func (h *harness) settle(maxSteps int) {
	h.t.Helper()
	for step := 0; step < maxSteps; step++ {
		h.collect()
		switch {
		case len(h.events) > 0:
			h.deliverEvent(0)
		case len(h.w.Pending()) > 0:
			h.w.Advance(time.Second)
			h.w.Complete(h.w.Pending()[0])
		case len(h.queue) > 0:
			h.deliverRetry(h.earliestRetry())
		default:
			return
		}
	}
	h.t.Fatalf("did not settle in %d steps; queue=%v pending=%v", maxSteps, h.queue, h.w.Pending())
}

func (h *harness) noViolations() {
	h.t.Helper()
	if v := h.w.Violations(); len(v) > 0 {
		h.t.Fatalf("safety violations:\n%s", strings.Join(v, "\n"))
	}
}

// keyVolumes lists the existing volumes tagged for a tether name.
func (h *harness) keyVolumes(name string) []cloudtest.Volume {
	var out []cloudtest.Volume
	for _, v := range h.w.Volumes() {
		if v.Tags["tether:volume"] == name && v.Tags["tether:cluster"] == cluster {
			out = append(out, v)
		}
	}
	return out
}

func (h *harness) oneVolume(name string) cloudtest.Volume {
	h.t.Helper()
	vs := h.keyVolumes(name)
	if len(vs) != 1 {
		h.t.Fatalf("want exactly one volume for %s, got %d: %+v", name, len(vs), vs)
	}
	return vs[0]
}

func (h *harness) wantRunning(task string) {
	h.t.Helper()
	if s := h.w.TaskState(task); s.LastStatus != "RUNNING" {
		h.t.Fatalf("task %s: lastStatus %s desired %s (%s), want RUNNING", task, s.LastStatus, s.DesiredStatus, s.StoppedReason)
	}
}

func (h *harness) wantStoppedBecause(task, contains string) {
	h.t.Helper()
	s := h.w.TaskState(task)
	if s.DesiredStatus != "STOPPED" || !strings.Contains(s.StoppedReason, contains) || !strings.HasPrefix(s.StoppedReason, "tether: ") {
		h.t.Fatalf("task %s: desired %s, reason %q; want stopped by tether with a reason containing %q", task, s.DesiredStatus, s.StoppedReason, contains)
	}
	if len(s.StoppedReason) > 255 {
		h.t.Fatalf("stop reason longer than ECS accepts: %d", len(s.StoppedReason))
	}
}

func (h *harness) commandsOf(doc string) []cloudtest.Command {
	var out []cloudtest.Command
	for _, c := range h.w.Commands() {
		if c.Document == doc {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// held is an invocation running in its own goroutine, possibly stopped at a
// cloudtest.Hold: a pass that decided and has not taken its step yet.
type held struct {
	hold *cloudtest.Hold
	done chan struct{}
}

// invokeHeld starts an invocation and returns once it has finished or has
// reached hold. The caller touches the harness again only after either, so
// the invocation never races the test for its state.
func (h *harness) invokeHeld(hold *cloudtest.Hold, triggers ...reconcile.Trigger) *held {
	a := &held{hold: hold, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		h.invoke(triggers...)
	}()
	select {
	case <-hold.Reached():
	case <-a.done:
	}
	return a
}

// stopped reports whether the invocation waits at its hold.
func (a *held) stopped() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// release lets the held step go on and waits for the invocation to end.
func (a *held) release() {
	a.hold.Release()
	<-a.done
}

// runUntilHeld runs the default schedule (as settle) with every
// invocation able to stop at hold, and returns the one that did.
func (h *harness) runUntilHeld(hold *cloudtest.Hold, maxSteps int) *held {
	h.t.Helper()
	for step := 0; step < maxSteps; step++ {
		h.collect()
		var tr reconcile.Trigger
		switch {
		case len(h.events) > 0:
			tr = h.trigger(h.events[0])
			h.events = h.events[1:]
		case len(h.w.Pending()) > 0:
			h.w.Advance(time.Second)
			h.w.Complete(h.w.Pending()[0])
			continue
		case len(h.queue) > 0:
			i := h.earliestRetry()
			m := h.queue[i]
			h.queue = append(h.queue[:i], h.queue[i+1:]...)
			if d := m.due.Sub(h.w.Now()); d > 0 {
				h.w.Advance(d)
			}
			tr = reconcile.Retry{Key: m.key, Hint: m.hint}
		default:
			h.t.Fatalf("settled without reaching the hold")
		}
		if a := h.invokeHeld(hold, tr); a.stopped() {
			return a
		}
	}
	h.t.Fatalf("hold not reached in %d steps", maxSteps)
	return nil
}

// completeCommand runs the pending SSM command of doc on instance.
func (h *harness) completeCommand(doc, instance string) {
	h.t.Helper()
	for _, c := range h.w.Commands() {
		if c.Document == doc && c.Instance == instance && c.Status == "Pending" {
			h.w.Complete(cloudtest.Op{Kind: "command", ID: c.ID})
			return
		}
	}
	h.t.Fatalf("no pending %s command on %s", doc, instance)
}

// sharedRunning is a harness whose instances are all in us-east-1a, with
// a task of the shared volume running (mounted) on the first; it returns
// the volume's key and the task.
func sharedRunning(t tb, instances ...string) (*harness, reconcile.Key, string) {
	t.Helper()
	h := newHarness(t)
	for _, inst := range instances {
		h.w.AddInstance(inst, "us-east-1a")
	}
	task := h.w.PlaceTask(tdShared, instances[0])
	h.settle(200)
	h.wantRunning(task)
	return h, reconcile.Key{Cluster: cluster, Volume: volName}, task
}

// draining is ECS's event of inst draining, its agent connected.
func (h *harness) draining(inst string) reconcile.InstanceChanged {
	return reconcile.InstanceChanged{Cluster: cluster, ContainerInstanceArn: h.w.InstanceState(inst).CI, EC2InstanceID: inst,
		Status: "DRAINING", AgentConnected: true}
}

// lastResult is the result of the key's latest pass.
func (h *harness) lastResult(k reconcile.Key) reconcile.Result {
	h.t.Helper()
	rs := h.results[k]
	if len(rs) == 0 {
		h.t.Fatalf("no pass of %v yet", k)
	}
	return rs[len(rs)-1]
}

// metricSum adds up an EMF metric over every line written so far.
func metricSum(t tb, h *harness, name string) float64 {
	t.Helper()
	sum := 0.0
	for _, line := range strings.Split(strings.TrimSpace(h.metrics.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("metrics line not JSON: %s", line)
		}
		if v, ok := m[name].(float64); ok {
			sum += v
		}
	}
	return sum
}
