package eventbus

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/tether-ecs/tether/test/world/worldapi"
)

// collector is a function target that records what it receives.
type collector struct {
	mu  sync.Mutex
	ids []string
}

func (c *collector) target(name string) FuncTarget {
	return FuncTarget{Name: name, Fn: func(_ context.Context, e worldapi.Event) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.ids = append(c.ids, e.ID)
		return nil
	}}
}

func (c *collector) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ids...)
}

func numbered(n int) worldapi.Event {
	e := taskEvent("c1", nil)
	e.ID = fmt.Sprintf("ev-%03d", n)
	return e
}

const taskPattern = `{"source":["aws.ecs"],"detail-type":["ECS Task State Change"],"detail":{"clusterArn":["arn:aws:ecs:us-west-2:123456789012:cluster/c1"]}}`

func TestRulesDeliverToQueuesAndFunctions(t *testing.T) {
	b := testBus(t, Options{Seed: 1})
	q := mustQueue(t, b, "TaskQueue", QueueOptions{})
	var fn collector
	if err := b.PutRule("tasks", taskPattern, QueueTarget{Queue: q}, fn.target("audit")); err != nil {
		t.Fatal(err)
	}
	b.Publish(numbered(1))
	b.Publish(taskEvent("other", nil)) // another cluster: no rule matches
	if err := b.Settle(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	m := receiveOne(t, q, ReceiveOptions{})
	var e worldapi.Event
	if err := json.Unmarshal([]byte(m.Body), &e); err != nil || e.ID != "ev-001" || e.DetailType != "ECS Task State Change" {
		t.Fatalf("the queue got %q (%v): want the event JSON as the body", m.Body, err)
	}
	if got := fn.got(); !reflect.DeepEqual(got, []string{"ev-001"}) {
		t.Fatalf("function target got %v", got)
	}
	st := b.Stats()["tasks"]
	if st.Matched != 1 || st.Delivered != 2 || st.Dropped != 0 {
		t.Fatalf("stats: %+v", st)
	}
	if err := b.PutRule("bad", `{"detail":{"version":[{"numeric":[">",0]}]}}`, fn.target("x")); err == nil {
		t.Fatal("a rule with an unsupported pattern was accepted")
	}
}

func TestScheduleEmitsScheduledEvents(t *testing.T) {
	b := testBus(t, Options{Seed: 1})
	got := make(chan worldapi.Event, 1)
	if err := b.PutSchedule("sweep", "rate(1 minute)", FuncTarget{Name: "sweep", Fn: func(_ context.Context, e worldapi.Event) error {
		got <- e
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := b.FireSchedule("sweep"); err != nil {
		t.Fatal(err)
	}
	e := <-got
	if e.Source != "aws.events" || e.DetailType != "Scheduled Event" || string(e.Detail) != "{}" ||
		e.Resources[0] != "arn:aws:events:us-west-2:123456789012:rule/sweep" {
		t.Fatalf("scheduled event: %+v", e)
	}
	for _, bad := range []string{"rate(1 minutes)", "rate(5 minute)", "cron(0 * * * ? *)", "rate(0 minutes)"} {
		if err := b.PutSchedule("s"+fmt.Sprint(len(bad)), bad, FuncTarget{Name: "x", Fn: func(context.Context, worldapi.Event) error { return nil }}); err == nil {
			t.Errorf("schedule %q accepted", bad)
		}
	}
}

// faultRun publishes 200 events through faults and returns the order the
// target saw and the counters.
func faultRun(t *testing.T, seed int64) ([]string, RuleStats) {
	t.Helper()
	b := testBus(t, Options{Seed: seed})
	var fn collector
	if err := b.PutRule("tasks", taskPattern, fn.target("fn")); err != nil {
		t.Fatal(err)
	}
	// Delays are zero-length so the run's order depends on the seed only.
	if err := b.SetFaults("tasks", Faults{Drop: 0.1, Duplicate: 0.1, Reorder: 0.1, ReorderHold: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		b.Publish(numbered(i))
	}
	if err := b.SetFaults("tasks", Faults{}); err != nil {
		t.Fatal(err)
	}
	b.Publish(numbered(999)) // releases a held event, if any
	if err := b.Settle(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return fn.got(), b.Stats()["tasks"]
}

func TestFaultInjectionIsDeterministic(t *testing.T) {
	got1, st1 := faultRun(t, 42)
	got2, st2 := faultRun(t, 42)
	if st1 != st2 {
		t.Fatalf("same seed, different counters: %+v vs %+v", st1, st2)
	}
	if st1.Dropped == 0 || st1.Duplicated == 0 || st1.Reordered == 0 {
		t.Fatalf("faults did not happen: %+v", st1)
	}
	if st1.Matched != 201 || st1.Delivered != 201-st1.Dropped+st1.Duplicated {
		t.Fatalf("counters do not add up: %+v", st1)
	}
	seen := map[string]int{}
	for _, id := range got1 {
		seen[id]++
	}
	if len(got1) != st1.Delivered {
		t.Fatalf("target saw %d deliveries, counters say %d", len(got1), st1.Delivered)
	}
	// Function targets run concurrently, so only the multiset is fixed.
	seen2 := map[string]int{}
	for _, id := range got2 {
		seen2[id]++
	}
	if !reflect.DeepEqual(seen, seen2) {
		t.Fatal("same seed, different deliveries")
	}
	_, st3 := faultRun(t, 43)
	if st3 == st1 {
		t.Fatalf("another seed gave the same faults: %+v", st3)
	}
}

func TestReorderAndDelayOnAQueue(t *testing.T) {
	b := testBus(t, Options{Seed: 5})
	q := mustQueue(t, b, "TaskQueue", QueueOptions{})
	if err := b.PutRule("tasks", taskPattern, QueueTarget{Queue: q}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetFaults("tasks", Faults{Reorder: 1, ReorderHold: time.Hour}); err != nil {
		t.Fatal(err)
	}
	b.Publish(numbered(1)) // held
	if err := b.SetFaults("tasks", Faults{Delay: 1, DelayMin: time.Millisecond, DelayMax: 2 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	b.Publish(numbered(2)) // delayed; the held event follows it
	if err := b.Settle(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	msgs, err := q.Receive(testCtx(t), ReceiveOptions{Max: 10})
	if err != nil || len(msgs) != 2 {
		t.Fatalf("received %d, %v", len(msgs), err)
	}
	var order []string
	for _, m := range msgs {
		var e worldapi.Event
		_ = json.Unmarshal([]byte(m.Body), &e)
		order = append(order, e.ID)
	}
	if !reflect.DeepEqual(order, []string{"ev-002", "ev-001"}) {
		t.Fatalf("order %v, want the held event after its successor", order)
	}
	if st := b.Stats()["tasks"]; st.Reordered != 1 || st.Delayed != 1 || st.Delivered != 2 {
		t.Fatalf("stats %+v", st)
	}
}
