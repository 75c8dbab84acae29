package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/tether-ecs/tether/functions/internal/eventsrc"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/test/world/awsproto"
)

const (
	task1 = "arn:aws:ecs:us-east-1:123456789012:task/tether-demo/5b1f0c2d9e8a4f7b8c6d1e2f3a4b5c6d"
	task3 = "arn:aws:ecs:us-east-1:123456789012:task/tether-demo/0e1d2c3b4a5f4e6d8c9b0a1f2e3d4c5b"
)

var (
	rexray  = reconcile.Key{Cluster: "tether-demo", Volume: "rexray-vol"}
	data    = reconcile.Key{Cluster: "tether-demo", Volume: "task-0e1d2c3b4a5f4e6d8c9b0a1f2e3d4c5b-data"}
	binlog  = reconcile.Key{Cluster: "tether-demo", Volume: "task-0e1d2c3b4a5f4e6d8c9b0a1f2e3d4c5b-binlog"}
	errBusy = errors.New("RequestLimitExceeded: Request limit exceeded")
)

// handoffKeys is what the core would answer for events/sqs/batch-handoff.json:
// the drained task and the volume event name rexray-vol, the new task has
// two volumes.
func handoffKeys(t reconcile.Trigger) ([]reconcile.Key, error) {
	switch t := t.(type) {
	case reconcile.TaskChanged:
		switch t.TaskArn {
		case task1:
			return []reconcile.Key{rexray}, nil
		case task3:
			return []reconcile.Key{data, binlog, data}, nil
		}
	case reconcile.VolumeChanged:
		if t.VolumeID == "vol-0c8f3e2a1b4d5e6f7" {
			return []reconcile.Key{rexray}, nil
		}
	case reconcile.Retry:
		return []reconcile.Key{t.Key}, nil
	}
	return nil, nil
}

func loadSQS(t *testing.T, name string) events.SQSEvent {
	t.Helper()
	b, err := os.ReadFile("../../../events/sqs/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var ev events.SQSEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// messageFor finds the record whose body mentions s.
func messageFor(t *testing.T, ev events.SQSEvent, s string) string {
	t.Helper()
	for _, r := range ev.Records {
		if strings.Contains(r.Body, s) {
			return r.MessageId
		}
	}
	t.Fatalf("no record mentions %q", s)
	return ""
}

func failures(resp events.SQSEventResponse) []string {
	var ids []string
	for _, f := range resp.BatchItemFailures {
		ids = append(ids, f.ItemIdentifier)
	}
	sort.Strings(ids)
	return ids
}

func TestHandleSQSPartialBatch(t *testing.T) {
	srv := newSQSServer(t)
	rec := &recorder{keysFor: handoffKeys, resultFor: func(ctx context.Context, k reconcile.Key) (reconcile.Result, error) {
		switch k {
		case data:
			return reconcile.Result{RetryAfter: 2500 * time.Millisecond, Reason: "attaching", Hint: "attach:vol-0123456789abcdef0"}, nil
		case binlog:
			return reconcile.Result{}, errBusy
		}
		return reconcile.Result{Reason: "mounted on i-0f9e8d7c6b5a40312"}, nil
	}}
	d := newTestDispatcher(t, rec, srv, Config{})
	batch := loadSQS(t, "batch-handoff.json")

	resp, err := d.HandleSQS(withDeadline(t, time.Minute), batch)
	if err != nil {
		t.Fatal(err)
	}

	// Only the new task's message goes back: one of its keys failed.
	if got, want := failures(resp), []string{messageFor(t, batch, task3)}; !reflect.DeepEqual(got, want) {
		t.Errorf("batchItemFailures = %v, want %v", got, want)
	}
	triggers, reconciled := rec.calls()
	// The Fargate task and the malformed body never reach the core.
	if len(triggers) != 4 {
		t.Errorf("Keys called for %d triggers, want 4 (2 tasks, 1 volume, 1 retry): %#v", len(triggers), triggers)
	}
	// rexray-vol is named by three messages and reconciled once.
	count := map[reconcile.Key]int{}
	for _, k := range reconciled {
		count[k]++
	}
	if want := map[reconcile.Key]int{rexray: 1, data: 1, binlog: 1}; !reflect.DeepEqual(count, want) {
		t.Errorf("reconciled %v, want %v", count, want)
	}
	// data waits: handed back with its delay, rounded up to whole seconds.
	sent := srv.messages()
	if len(sent) != 1 {
		t.Fatalf("%d messages sent to the retry queue, want 1", len(sent))
	}
	if *sent[0].QueueUrl != queueURL || sent[0].DelaySeconds != 3 {
		t.Errorf("sent to %s with DelaySeconds %d, want %s and 3", *sent[0].QueueUrl, sent[0].DelaySeconds, queueURL)
	}
	dec, _ := eventsrc.NewDecoder("tether-demo")
	ev, err := dec.Decode([]byte(*sent[0].MessageBody))
	if err != nil {
		t.Fatalf("retry message %s: %v", *sent[0].MessageBody, err)
	}
	if want := (reconcile.Retry{Key: data, Hint: "attach:vol-0123456789abcdef0"}); ev.Trigger != want {
		t.Errorf("retry message decodes to %#v, want %#v", ev.Trigger, want)
	}
}

func TestHandleSQSRequeueFailureReturnsTheMessage(t *testing.T) {
	srv := newSQSServer(t)
	srv.setFail(awsproto.Errorf(500, "InternalError", "queue unavailable"))
	rec := &recorder{keysFor: handoffKeys, resultFor: func(ctx context.Context, k reconcile.Key) (reconcile.Result, error) {
		if k == rexray {
			return reconcile.Result{RetryAfter: 10 * time.Second, Reason: "detaching from i-0a1b2c3d4e5f60718"}, nil
		}
		return reconcile.Result{}, nil
	}}
	d := newTestDispatcher(t, rec, srv, Config{})
	batch := loadSQS(t, "batch-handoff.json")
	resp, err := d.HandleSQS(withDeadline(t, time.Minute), batch)
	if err != nil {
		t.Fatal(err)
	}
	// Every message naming rexray-vol goes back; the new task's converged.
	want := []string{messageFor(t, batch, task1), messageFor(t, batch, "vol-0c8f3e2a1b4d5e6f7"), messageFor(t, batch, `"tether":"retry"`)}
	sort.Strings(want)
	if got := failures(resp); !reflect.DeepEqual(got, want) {
		t.Errorf("batchItemFailures = %v, want %v", got, want)
	}
	// The core is told, so the redelivered messages are worked again.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !reflect.DeepEqual(rec.handBackFailed, []reconcile.Key{rexray}) {
		t.Errorf("HandBackFailed calls = %v, want [%v]", rec.handBackFailed, rexray)
	}
}

// Poison is acknowledged and never reaches the core: malformed JSON,
// unknown fields in tether's own message, other clusters, hostile names.
func TestHandleSQSDropsPoison(t *testing.T) {
	srv := newSQSServer(t)
	rec := &recorder{keysFor: func(reconcile.Trigger) ([]reconcile.Key, error) {
		return []reconcile.Key{rexray}, nil
	}}
	d := newTestDispatcher(t, rec, srv, Config{})
	other, err := os.ReadFile("../../../events/foreign-other-cluster.json")
	if err != nil {
		t.Fatal(err)
	}
	bodies := []string{
		``, `not json`, `{"version":"0","id":"x`, `[]`, `null`,
		string(other),
		`{"version":"0","id":"5e1c","detail-type":"ECS Task State Change","source":"aws.ecs","detail":{"clusterArn":"arn:aws:ecs:us-east-1:123456789012:cluster/prod"}}`,
		`{"version":"0","id":"5e1d","detail-type":"AWS API Call via CloudTrail","source":"aws.ec2","detail":{}}`,
		`{"tether":"retry","key":{"cluster":"tether-demo","volume":"rexray-vol"},"force":true}`,
		`{"tether":"retry","key":{"cluster":"tether-demo","volume":"rexray-vol","extra":1}}`,
		`{"tether":"retry","key":{"cluster":"prod","volume":"rexray-vol"}}`,
		`{"tether":"retry","key":{"cluster":"tether-demo","volume":"../../etc/passwd"}}`,
		`{"tether":"retry","key":{"cluster":"tether-demo","volume":"x; reboot"}}`,
		`{"tether":"retry","key":{"cluster":"tether-demo","volume":"$(curl evil)"}}`,
		`{"tether":"retry","key":{"cluster":"tether-demo","volume":"a..b"}}`,
		`{"tether":"retry","key":{"cluster":"tether-demo","volume":"` + strings.Repeat("v", 256) + `"}}`,
	}
	var batch events.SQSEvent
	for i, b := range bodies {
		batch.Records = append(batch.Records, events.SQSMessage{MessageId: "m" + string(rune('a'+i)), Body: b})
	}
	resp, err := d.HandleSQS(withDeadline(t, time.Minute), batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) != 0 {
		t.Errorf("poison returned to the queue: %v", failures(resp))
	}
	if triggers, reconciled := rec.calls(); len(triggers) != 0 || len(reconciled) != 0 {
		t.Errorf("poison reached the core: triggers %#v, keys %v", triggers, reconciled)
	}
	if n := len(srv.messages()); n != 0 {
		t.Errorf("%d retry messages sent for poison", n)
	}
	// And the answer serialises as Lambda expects: an empty list, not null.
	b, _ := json.Marshal(resp)
	if string(b) != `{"batchItemFailures":[]}` {
		t.Errorf("response JSON %s", b)
	}
}

func TestHandleSQSKeysErrors(t *testing.T) {
	srv := newSQSServer(t)
	rec := &recorder{keysFor: func(t reconcile.Trigger) ([]reconcile.Key, error) {
		switch t := t.(type) {
		case reconcile.TaskChanged:
			if t.TaskArn == task1 {
				return nil, errBusy // transient: back to the queue
			}
			return nil, &eventsrc.SkipError{Reason: "task definition has no tether volume"} // drop
		case reconcile.VolumeChanged:
			return nil, nil // not a tether volume: ack
		}
		return []reconcile.Key{rexray}, nil
	}}
	d := newTestDispatcher(t, rec, srv, Config{})
	batch := loadSQS(t, "batch-handoff.json")
	resp, err := d.HandleSQS(withDeadline(t, time.Minute), batch)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := failures(resp), []string{messageFor(t, batch, task1)}; !reflect.DeepEqual(got, want) {
		t.Errorf("batchItemFailures = %v, want %v", got, want)
	}
	if _, reconciled := rec.calls(); !reflect.DeepEqual(reconciled, []reconcile.Key{rexray}) {
		t.Errorf("reconciled %v, want only the retry's key", reconciled)
	}
}

func TestHandleSQSPanicIsOneFailedKey(t *testing.T) {
	srv := newSQSServer(t)
	rec := &recorder{keysFor: handoffKeys, resultFor: func(ctx context.Context, k reconcile.Key) (reconcile.Result, error) {
		if k == binlog {
			var m map[string]int
			m["boom"]++ // a bug in the core
		}
		return reconcile.Result{}, nil
	}}
	d := newTestDispatcher(t, rec, srv, Config{})
	batch := loadSQS(t, "batch-handoff.json")
	resp, err := d.HandleSQS(withDeadline(t, time.Minute), batch)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := failures(resp), []string{messageFor(t, batch, task3)}; !reflect.DeepEqual(got, want) {
		t.Errorf("batchItemFailures = %v, want %v", got, want)
	}
}

// A Reconcile that never returns (ignoring its context) cannot make the
// invocation overrun: the handler answers before the deadline and the stuck
// key's messages go back. Keys the deadline kept from starting are handed
// to the retry queue instead (their message is acknowledged), or, if that
// fails too, their messages go back.
func TestHandleSQSRespectsTheDeadline(t *testing.T) {
	for _, sqsDown := range []bool{false, true} {
		t.Run(fmt.Sprintf("retry queue down %v", sqsDown), func(t *testing.T) {
			srv := newSQSServer(t)
			if sqsDown {
				srv.setFail(awsproto.Errorf(500, "InternalError", "queue unavailable"))
			}
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			var started atomic.Int32
			rec := &recorder{keysFor: handoffKeys, resultFor: func(ctx context.Context, k reconcile.Key) (reconcile.Result, error) {
				started.Add(1)
				if k == rexray {
					<-release // stuck, deaf to ctx
				}
				return reconcile.Result{}, nil
			}}
			// One key at a time: rexray-vol comes first and blocks the others.
			d := newTestDispatcher(t, rec, srv, Config{Concurrency: 1, Margin: 200 * time.Millisecond})
			batch := loadSQS(t, "batch-handoff.json")
			ctx := withDeadline(t, 400*time.Millisecond)
			resp, err := d.HandleSQS(ctx, batch)
			if err != nil {
				t.Fatal(err)
			}
			if ctx.Err() != nil {
				t.Fatal("handler answered after the deadline")
			}
			want := []string{messageFor(t, batch, task1), messageFor(t, batch, "vol-0c8f3e2a1b4d5e6f7"), messageFor(t, batch, `"tether":"retry"`)}
			if sqsDown {
				want = append(want, messageFor(t, batch, task3))
			}
			sort.Strings(want)
			if got := failures(resp); !reflect.DeepEqual(got, want) {
				t.Errorf("batchItemFailures = %v, want %v", got, want)
			}
			if n := started.Load(); n != 1 {
				t.Errorf("%d Reconcile calls started, want 1 (none after the deadline)", n)
			}
			if sqsDown {
				return
			}
			var handedBack []reconcile.Key
			dec, _ := eventsrc.NewDecoder("tether-demo")
			for _, m := range srv.messages() {
				ev, err := dec.Decode([]byte(*m.MessageBody))
				if err != nil || m.DelaySeconds != 1 {
					t.Fatalf("hand-back %s (delay %d): %v", *m.MessageBody, m.DelaySeconds, err)
				}
				handedBack = append(handedBack, ev.Trigger.(reconcile.Retry).Key)
			}
			if want := []reconcile.Key{data, binlog}; !reflect.DeepEqual(handedBack, want) {
				t.Errorf("handed back %v, want %v", handedBack, want)
			}
		})
	}
}

// A core that honours its context gets it cancelled at deadline minus margin.
func TestHandleSQSCancelsWorkAtTheMargin(t *testing.T) {
	srv := newSQSServer(t)
	rec := &recorder{keysFor: handoffKeys, resultFor: func(ctx context.Context, k reconcile.Key) (reconcile.Result, error) {
		if k == data {
			<-ctx.Done()
			return reconcile.Result{}, ctx.Err()
		}
		return reconcile.Result{}, nil
	}}
	d := newTestDispatcher(t, rec, srv, Config{Margin: 200 * time.Millisecond})
	batch := loadSQS(t, "batch-handoff.json")
	ctx := withDeadline(t, 500*time.Millisecond)
	resp, err := d.HandleSQS(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("handler answered after the deadline")
	}
	if got, want := failures(resp), []string{messageFor(t, batch, task3)}; !reflect.DeepEqual(got, want) {
		t.Errorf("batchItemFailures = %v, want %v", got, want)
	}
}

func TestHandleEventSweep(t *testing.T) {
	srv := newSQSServer(t)
	raw, err := os.ReadFile("../../../events/scheduled.json")
	if err != nil {
		t.Fatal(err)
	}
	keys := []reconcile.Key{rexray, data, binlog}
	rec := &recorder{
		keysFor: func(t reconcile.Trigger) ([]reconcile.Key, error) {
			if t != (reconcile.SweepRequested{Cluster: "tether-demo"}) {
				return nil, errors.New("unexpected trigger")
			}
			return keys, nil
		},
		resultFor: func(ctx context.Context, k reconcile.Key) (reconcile.Result, error) {
			if k == data {
				return reconcile.Result{RetryAfter: 400 * time.Millisecond, Reason: "mount running"}, nil
			}
			return reconcile.Result{}, nil
		},
	}
	d := newTestDispatcher(t, rec, srv, Config{})
	if err := d.HandleEvent(withDeadline(t, time.Minute), raw); err != nil {
		t.Fatalf("HandleEvent: %v", err)
	}
	if sent := srv.messages(); len(sent) != 1 || sent[0].DelaySeconds != 1 {
		t.Errorf("retry messages %+v, want one with DelaySeconds 1", sent)
	}

	// A failed key makes the invocation an error (counted by the alarm).
	rec.resultFor = func(ctx context.Context, k reconcile.Key) (reconcile.Result, error) {
		return reconcile.Result{}, errBusy
	}
	if err := d.HandleEvent(withDeadline(t, time.Minute), raw); !errors.Is(err, ErrUnfinished) {
		t.Errorf("HandleEvent with a failing key = %v, want ErrUnfinished", err)
	}
	// A foreign event is dropped, not an error.
	other, _ := os.ReadFile("../../../events/foreign-other-cluster.json")
	if err := d.HandleEvent(withDeadline(t, time.Minute), other); err != nil {
		t.Errorf("HandleEvent(foreign) = %v, want nil", err)
	}
}

func TestDelaySeconds(t *testing.T) {
	for _, c := range []struct {
		in   time.Duration
		want int32
	}{
		{-time.Second, 1}, {0, 1}, {time.Nanosecond, 1}, {300 * time.Millisecond, 1}, {time.Second, 1},
		{1001 * time.Millisecond, 2}, {2500 * time.Millisecond, 3}, {90 * time.Second, 90},
		{899*time.Second + time.Millisecond, 900}, {900 * time.Second, 900}, {2 * time.Hour, 900},
	} {
		if got := DelaySeconds(c.in); got != c.want {
			t.Errorf("DelaySeconds(%v) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestNewSQSRequeuerValidatesURL(t *testing.T) {
	for _, bad := range []string{"", "tether-retry", "ftp://x/y", "https://"} {
		if _, err := NewSQSRequeuer(nil, bad); err == nil {
			t.Errorf("NewSQSRequeuer(%q) accepted", bad)
		}
	}
}

// A hint the retry message cannot carry is dropped, not the key.
func TestRequeueDropsAnUnsendableHint(t *testing.T) {
	srv := newSQSServer(t)
	rq, err := NewSQSRequeuer(srv.client(), queueURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := rq.Requeue(context.Background(), rexray, "line\nbreak", time.Second); err != nil {
		t.Fatal(err)
	}
	sent := srv.messages()
	if len(sent) != 1 || strings.Contains(*sent[0].MessageBody, "line") {
		t.Fatalf("sent %+v", sent)
	}
	// A hostile key is never sent.
	if err := rq.Requeue(context.Background(), reconcile.Key{Cluster: "tether-demo", Volume: "../x"}, "", time.Second); err == nil {
		t.Error("hostile key requeued")
	}
}
