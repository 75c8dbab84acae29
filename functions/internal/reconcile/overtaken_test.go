package reconcile_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/internal/volspec"
)

// handOff moves the shared volume from a task on i-a to one on i-b and
// returns every result its passes gave.
func handOff(t *testing.T) (*harness, reconcile.Key, []reconcile.Result) {
	t.Helper()
	h, key, _, placed := midHandoff(t)
	h.settle(300)
	h.wantRunning(placed.(reconcile.TaskChanged).TaskArn)
	if v := h.oneVolume(volName); v.Att == nil || v.Att.Instance != "i-b" {
		t.Fatalf("the volume did not follow its task: %+v", v.Att)
	}
	return h, key, h.results[key]
}

// wantFollowed settles the world and wants task running on i-b with the
// volume there, and no safety violation.
func wantFollowed(t *testing.T, h *harness, task string) {
	t.Helper()
	h.settle(300)
	h.wantRunning(task)
	if v := h.oneVolume(volName); v.Att == nil || v.Att.Instance != "i-b" {
		t.Fatalf("the volume did not follow its task: %+v", v.Att)
	}
	h.noViolations()
}

// callsOf runs one invocation of another process over triggers and
// returns the calls it made and the key's result.
func callsOf(t *testing.T, h *harness, key reconcile.Key, triggers ...reconcile.Trigger) (map[string]int, reconcile.Result) {
	t.Helper()
	other := h.otherProcess()
	before := h.w.Calls()
	ctx := other.Invocation(context.Background())
	var keys []reconcile.Key
	for _, tr := range triggers {
		ks, err := other.Keys(ctx, tr)
		if err != nil {
			t.Fatalf("keys of %+v: %v", tr, err)
		}
		keys = append(keys, ks...)
	}
	if len(keys) != 1 || keys[0] != key {
		t.Fatalf("keys %v, want %v", keys, key)
	}
	res, err := other.Reconcile(ctx, key)
	if err != nil {
		t.Fatalf("pass: %v", err)
	}
	d := map[string]int{}
	for op, n := range h.w.Calls() {
		if n != before[op] {
			d[op] = n - before[op]
		}
	}
	return d, res
}

// midHandoff stops the shared volume's task on i-a and places the next one
// on i-b; the STOPPED event's pass sends the unmount. It returns the
// unmount pass's result and the new task's own event (not delivered).
func midHandoff(t *testing.T) (*harness, reconcile.Key, reconcile.Result, reconcile.Trigger) {
	t.Helper()
	h, key, t1 := sharedRunning(t, "i-a", "i-b")
	h.w.StopTask(t1, "drain")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t1})
	t2 := h.w.PlaceTask(tdShared, "i-b")
	var placed reconcile.Trigger
	for _, ev := range h.w.TakeEvents() {
		switch {
		case ev.Kind == "task" && ev.LastStatus == "STOPPED":
			h.invoke(h.trigger(ev))
		case ev.Kind == "task" && ev.Task == t2:
			placed = h.trigger(ev)
		}
	}
	rs := h.results[key]
	unmount := rs[len(rs)-1]
	if !strings.Contains(unmount.Hint, `"s":"unmount"`) || placed == nil {
		t.Fatalf("the STOPPED event's pass: %+v (new task's event %v); want the unmount sent", unmount, placed)
	}
	return h, key, unmount, placed
}

// unmountEnds completes the unmount on i-a and returns SSM's event of it.
func unmountEnds(t *testing.T, h *harness) reconcile.Trigger {
	t.Helper()
	h.completeCommand(unmountDoc, "i-a")
	for _, ev := range h.w.TakeEvents() {
		if ev.Kind == "command" {
			return h.trigger(ev)
		}
	}
	t.Fatal("no SSM event for the unmount's end")
	return nil
}

// wantDetaching: the volume's detach from i-a is under way.
func wantDetaching(t *testing.T, h *harness) {
	t.Helper()
	if v := h.oneVolume(volName); v.Att == nil || v.Att.State != "detaching" {
		t.Fatalf("after the unmount's end: %+v; want the detach under way", v.Att)
	}
}

// wantNoCalls fails for every call of ops that calls counts.
func wantNoCalls(t *testing.T, what string, calls map[string]int, ops ...string) {
	t.Helper()
	for _, op := range ops {
		if calls[op] != 0 {
			t.Errorf("%s made %d %s calls, want none", what, calls[op], op)
		}
	}
}

// A retry of the unmount's or the detach's chain that reaches another
// process after the handoff ended there: EC2's one fact (the volume was
// attached again after that step) ends it, with no ECS read and no step.
func TestARetryOvertakenByALaterAttachEndsOnEC2sWord(t *testing.T) {
	h, key, results := handOff(t)
	for _, step := range []string{"unmount", "detach"} {
		var hint string
		for _, r := range results {
			if strings.Contains(r.Hint, `"s":"`+step+`"`) {
				hint = r.Hint
			}
		}
		if hint == "" {
			t.Fatalf("no pass handed the key back after its %s step: %+v", step, results)
		}
		calls, res := callsOf(t, h, key, reconcile.Retry{Key: key, Hint: hint})
		if !res.Done() || !strings.Contains(res.Reason, "superseded") || !strings.Contains(res.Reason, "after this chain's "+step) {
			t.Errorf("the %s chain's retry after the handoff: %+v; want it superseded on EC2's word", step, res)
		}
		for op, n := range calls {
			if strings.HasPrefix(op, "ECS:") || (strings.HasPrefix(op, "EC2:") && op != "EC2:DescribeVolumes") {
				t.Errorf("the %s chain's retry made %d %s calls; want no ECS call and no EC2 step", step, n, op)
			}
		}
		if n := calls["EC2:DescribeVolumes"]; n != 1 {
			t.Errorf("the %s chain's retry made %d DescribeVolumes calls, want 1", step, n)
		}
	}
	if v := h.oneVolume(volName); v.Att == nil || v.Att.Instance != "i-b" || v.Att.State != "attached" {
		t.Fatalf("the volume moved after the retries: %+v", v.Att)
	}
}

// The same retry before the handoff is over goes on: the volume has not
// been attached since its step, so nothing overtook it.
func TestARetryNotOvertakenGoesOn(t *testing.T) {
	h, key, unmount, _ := midHandoff(t)
	h.completeCommand(unmountDoc, "i-a")
	_, res := callsOf(t, h, key, reconcile.Retry{Key: key, Hint: unmount.Hint})
	if strings.Contains(res.Reason, "superseded") {
		t.Fatalf("the unmount's retry before any new attach: %+v; want it to go on", res)
	}
}

// An unmount's retry that comes once another pass has asked for the
// detach ends on that fact: the detach's chain goes on.
func TestAnUnmountsRetryAfterItsDetachWasAskedEnds(t *testing.T) {
	h, key, unmount, _ := midHandoff(t)
	h.invoke(unmountEnds(t, h))
	wantDetaching(t, h)
	calls, res := callsOf(t, h, key, reconcile.Retry{Key: key, Hint: unmount.Hint})
	if !res.Done() || !strings.Contains(res.Reason, "no longer attached to i-a") {
		t.Errorf("the unmount's retry with the detach under way: %+v; want it superseded", res)
	}
	for op, n := range calls {
		if strings.HasPrefix(op, "ECS:") || (strings.HasPrefix(op, "EC2:") && op != "EC2:DescribeVolumes") {
			t.Errorf("the unmount's retry made %d %s calls; want no ECS call and no EC2 step", n, op)
		}
	}
}

// The end of a mount that another process sent is judged from the
// command's result and one read of the volume: no ECS read.
func TestAMountEndSentByAnotherProcessNeedsNoECS(t *testing.T) {
	h, key, _ := handOff(t)
	mounts := h.commandsOf(mountDoc)
	m := mounts[len(mounts)-1]
	if m.Instance != "i-b" || m.Status != "Success" {
		t.Fatalf("last mount %+v, want a finished one on i-b", m)
	}
	calls, res := callsOf(t, h, key, reconcile.CommandChanged{CommandID: m.ID, InstanceID: "i-b", Document: mountDoc, Status: "Success"})
	if !res.Done() || !strings.Contains(res.Reason, "mounted on i-b") {
		t.Errorf("the mount's end in another process: %+v; want mounted on i-b", res)
	}
	for op, n := range calls {
		if strings.HasPrefix(op, "ECS:") && op != "ECS:DescribeContainerInstances" && op != "ECS:ListContainerInstances" {
			t.Errorf("the mount's end made %d %s calls; want no task read", n, op)
		}
	}
}

// ECS sends a draining instance's event each time its task count changes:
// a process queues one deferred look per key and instance, not one per
// event, and queues another once that one is due.
func TestDrainEventsQueueOneLookPerKeyAndInstance(t *testing.T) {
	h, key, _ := sharedRunning(t, "i-a")
	drain := h.draining("i-a")
	h.invoke(drain)
	first := h.lastResult(key)
	if first.Done() || !strings.Contains(first.Hint, `"dr":true`) {
		t.Fatalf("the first drain event's pass: %+v; want a deferred look", first)
	}
	h.w.Advance(first.RetryAfter / 2)
	h.invoke(drain)
	if second := h.lastResult(key); !second.Done() || !strings.Contains(second.Reason, "queued already") {
		t.Fatalf("a second drain event while the look is queued: %+v; want it to end on the queued look", second)
	}
	h.w.Advance(first.RetryAfter)
	h.invoke(drain)
	if third := h.lastResult(key); third.Done() || !strings.Contains(third.Hint, `"dr":true`) {
		t.Fatalf("a drain event after the queued look was due: %+v; want a new deferred look", third)
	}
}

// The unmount's end, in a process that did not send it, asks for the
// detach without reading ECS: the unmount's comment names the task the
// volume is released for (the attach checks it first), so no listing of the
// key's family, no task and no container instance is read.
func TestAnUnmountsEndInAnotherProcessReadsNoECS(t *testing.T) {
	h, key, unmount, placed := midHandoff(t)
	next := volspec.TaskID(placed.(reconcile.TaskChanged).TaskArn)
	if !strings.Contains(unmount.Hint, `"tt":"`) {
		t.Fatalf("the unmount's hint %s names no task it releases the volume for", unmount.Hint)
	}
	calls, res := callsOf(t, h, key, unmountEnds(t, h))
	if res.Done() || !strings.Contains(res.Reason, "detaching") || !strings.Contains(res.Hint, `"tt":"`+next+`"`) {
		t.Fatalf("the unmount's end in another process: %+v; want the detach asked, for task %s", res, next)
	}
	for op := range calls {
		if strings.HasPrefix(op, "ECS:") {
			t.Errorf("the unmount's end made %d %s calls, want no ECS call", calls[op], op)
		}
	}
	wantDetaching(t, h)
	h.w.Advance(res.RetryAfter) // the detach's chain goes on in this harness's process
	h.invoke(reconcile.Retry{Key: key, Hint: res.Hint})
	wantFollowed(t, h, placed.(reconcile.TaskChanged).TaskArn)
}

// A new task's event that comes while the volume detaches from a host ECS
// still serves ends on that fact in a process that did not ask for the
// detach: the detach's own chain attaches the volume next. It reads the
// volume and the host's registration, not the key's tasks.
func TestATaskEventDuringADetachInFlightReadsNoTasks(t *testing.T) {
	h, key, _, placed := midHandoff(t)
	h.invoke(unmountEnds(t, h))
	wantDetaching(t, h)
	calls, res := callsOf(t, h, key, placed)
	if !res.Done() || !strings.Contains(res.Reason, "in flight (another pass's)") {
		t.Errorf("the new task's event during the detach: %+v; want it to end on the detach in flight", res)
	}
	wantNoCalls(t, "the new task's event during the detach", calls, "ECS:ListTasks", "ECS:DescribeTasks", "EC2:DetachVolume", "EC2:AttachVolume")
	if n := calls["ECS:DescribeTaskDefinition"]; n > 1 { // the event's keys: its task's definition, once
		t.Errorf("the new task's event during the detach read %d task definitions, want at most its own", n)
	}
	h.settle(300)
	if v := h.oneVolume(volName); v.Att == nil || v.Att.Instance != "i-b" {
		t.Fatalf("the volume did not follow its task: %+v", v.Att)
	}
}

// A retry that names no step (a wait for a task to stop), or a wait for
// the task that holds the volume on an instance, gives way in another
// process once EC2 shows the handoff it waited for: the volume attached
// after the pass that scheduled it, or gone from that instance.
func TestAWaitsRetryEndsOnceTheVolumeMoved(t *testing.T) {
	h, key, results := handOff(t)
	var unmount struct {
		Volume string `json:"v"`
		Pass   int64  `json:"n"`
		At     int64  `json:"t"`
	}
	for _, r := range results {
		if strings.Contains(r.Hint, `"s":"unmount"`) {
			if err := json.Unmarshal([]byte(r.Hint), &unmount); err != nil {
				t.Fatal(err)
			}
		}
	}
	if unmount.Pass == 0 {
		t.Fatalf("no unmount pass among %+v", results)
	}
	for _, hint := range []string{
		fmt.Sprintf(`{"n":%d}`, unmount.Pass),
		fmt.Sprintf(`{"s":"held","v":%q,"i":"i-a","t":%d,"n":%d}`, unmount.Volume, unmount.At, unmount.Pass),
	} {
		calls, res := callsOf(t, h, key, reconcile.Retry{Key: key, Hint: hint})
		if !res.Done() || !strings.Contains(res.Reason, "superseded") {
			t.Errorf("the wait %s after the handoff: %+v; want it superseded on EC2's word", hint, res)
		}
		for op, n := range calls {
			if op != "EC2:DescribeVolumes" {
				t.Errorf("the wait %s made %d %s calls; want one DescribeVolumes only", hint, n, op)
			}
		}
	}
}

// The drain's deferred look, finding the volume still on the draining
// instance while a STOPPED event's chain releases it there (its unmount
// sent, not yet ended), ends on that fact: one DescribeVolumes and one
// ListCommands, no ECS call. The chain carries the handoff on.
func TestDrainLookEndsWhileAnUnmountOfItRunsThere(t *testing.T) {
	h, key, t1 := sharedRunning(t, "i-a", "i-b")
	h.invoke(h.draining("i-a"))
	deferred := h.lastResult(key)
	if deferred.Done() || !strings.Contains(deferred.Hint, `"dr":true`) {
		t.Fatalf("the drain's pass: %+v; want a deferred look", deferred)
	}
	h.w.StopTask(t1, "drain")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t1})
	t2 := h.w.PlaceTask(tdShared, "i-b")
	for _, ev := range h.w.TakeEvents() {
		if ev.Kind == "task" && ev.LastStatus == "STOPPED" {
			h.invoke(h.trigger(ev))
		}
	}
	if !strings.Contains(h.lastResult(key).Hint, `"s":"unmount"`) {
		t.Fatalf("the STOPPED event's pass: %+v; want the unmount sent", h.lastResult(key))
	}
	h.w.Advance(deferred.RetryAfter)
	calls, res := callsOf(t, h, key, reconcile.Retry{Key: key, Hint: deferred.Hint})
	if !res.Done() || !strings.Contains(res.Reason, "under way") {
		t.Fatalf("the drain's look during the release: %+v; want it to end on the unmount sent there", res)
	}
	wantNoCalls(t, "the drain's look during the release", calls, "ECS:ListTasks", "ECS:DescribeTasks", "ECS:DescribeTaskDefinition",
		"ECS:DescribeContainerInstances", "SSM:SendCommand", "EC2:DetachVolume")
	if calls["SSM:ListCommands"] != 1 || calls["EC2:DescribeVolumes"] != 1 {
		t.Errorf("the drain's look read %v; want one DescribeVolumes and one ListCommands", calls)
	}
	wantFollowed(t, h, t2)
}

// A task's STOPPED event releases the volume without listing the
// instance's stopping tasks. Another task of the key there that still
// stops (its container holds the volume) makes tether-agent refuse the
// unmount; the volume moves only once that task stopped too.
func TestAStoppedEventReleasesWithoutListingTheStoppingTasks(t *testing.T) {
	h, _, t1 := sharedRunning(t, "i-a", "i-b")
	t2 := h.w.PlaceTask(tdShared, "i-a")
	h.settle(200)
	h.wantRunning(t2)
	h.w.TakeEvents()
	h.w.StopTask(t1, "drain")
	h.w.StopTask(t2, "drain")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t1}) // t2 still stops: its container holds the volume
	t3 := h.w.PlaceTask(tdShared, "i-b")
	before := h.w.Calls()
	for _, ev := range h.w.TakeEvents() {
		if ev.Kind == "task" && ev.Task == t1 && ev.LastStatus == "STOPPED" {
			h.invoke(h.trigger(ev))
		}
	}
	if n := h.w.Calls()["ECS:ListTasks"] - before["ECS:ListTasks"]; n > 1 {
		t.Errorf("the STOPPED event's pass listed tasks %d times; want the family's live tasks only", n)
	}
	t2Stops := func(op cloudtest.Op) bool { return op.Kind == "stop" && op.ID == t2 }
	refused := func() bool {
		for _, c := range h.commandsOf(unmountDoc) {
			if c.Status == "Failed" {
				return true
			}
		}
		return false
	}
	h.settleExcept(t2Stops, 100, refused)
	if v := h.oneVolume(volName); v.Att == nil || v.Att.Instance != "i-a" {
		t.Fatalf("the volume left i-a while t2's container there held it: %+v", v.Att)
	}
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t2})
	wantFollowed(t, h, t3)
}

// The new task's event, reaching a process after the volume was attached
// to that task's instance for it (the mount sent with the attach), ends on
// that fact: it reads the volume and the task's container instance, not
// the key's tasks. The mount's end carries the handoff on.
func TestANewTasksEventAfterItsAttachReadsNoTasks(t *testing.T) {
	h, key, _, placed := midHandoff(t)
	attachedToB := func() bool {
		v := h.oneVolume(volName)
		return v.Att != nil && v.Att.Instance == "i-b" && v.Att.State == "attached"
	}
	h.settleExcept(h.mountsOf, 300, attachedToB)
	calls, res := callsOf(t, h, key, placed)
	if !res.Done() || !strings.Contains(res.Reason, "in flight (another pass's)") {
		t.Fatalf("the new task's event after its attach: %+v; want it to end on the attach made for it", res)
	}
	wantNoCalls(t, "the new task's event after its attach", calls, "ECS:ListTasks", "ECS:DescribeTasks", "SSM:SendCommand", "SSM:ListCommands", "EC2:AttachVolume")
	wantFollowed(t, h, placed.(reconcile.TaskChanged).TaskArn)
}

// throttledUnmount stops the task on i-a with a new one placed on i-b,
// and runs the STOPPED event's pass with SSM refusing its unmount; it
// returns that pass's result and the new task.
func throttledUnmount(t *testing.T) (*harness, reconcile.Key, reconcile.Result, string) {
	t.Helper()
	h, key, t1 := sharedRunning(t, "i-a", "i-b")
	h.w.StopTask(t1, "drain")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t1})
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.w.Throttle("SSM:SendCommand", 1)
	for _, ev := range h.w.TakeEvents() {
		if ev.Kind == "task" && ev.LastStatus == "STOPPED" {
			h.invoke(h.trigger(ev))
		}
	}
	throttled := h.lastResult(key)
	if throttled.Done() || !strings.Contains(throttled.Reason, "throttled") || !strings.Contains(throttled.Hint, `"s":"unmount-due"`) {
		t.Fatalf("the STOPPED event's pass, its unmount throttled: %+v; want the decided unmount handed back", throttled)
	}
	return h, key, throttled, t2
}

// A STOPPED event's pass whose unmount SSM's rate limit refuses hands back
// the step it decided: its retry, in another process, sends the unmount
// after one look at the volume, without reading ECS again.
func TestAThrottledUnmountsRetrySendsItWithoutReadingECS(t *testing.T) {
	h, key, throttled, t2 := throttledUnmount(t)
	h.w.Advance(throttled.RetryAfter)
	calls, res := callsOf(t, h, key, reconcile.Retry{Key: key, Hint: throttled.Hint})
	if res.Done() || !strings.Contains(res.Hint, `"s":"unmount"`) || !strings.Contains(res.Hint, `"tt":"`) {
		t.Fatalf("the throttled unmount's retry: %+v; want the unmount sent, for the waiting task", res)
	}
	for op := range calls {
		if strings.HasPrefix(op, "ECS:") {
			t.Errorf("the throttled unmount's retry made %d %s calls, want no ECS call", calls[op], op)
		}
	}
	if calls["SSM:SendCommand"] != 1 {
		t.Errorf("the throttled unmount's retry sent %d commands, want the unmount", calls["SSM:SendCommand"])
	}
	wantFollowed(t, h, t2)
}

// throttledMount runs a handoff up to the attach to i-b, whose mount SSM's
// rate limit refuses; it returns the attaching pass's result.
func throttledMount(t *testing.T) (*harness, reconcile.Key, reconcile.Result, reconcile.Trigger) {
	t.Helper()
	h, key, _, placed := midHandoff(t)
	h.invoke(unmountEnds(t, h))
	wantDetaching(t, h)
	detach := h.lastResult(key)
	for _, op := range h.w.Pending() {
		if op.Kind == "detach" {
			h.w.Advance(detach.RetryAfter)
			h.w.Complete(op)
		}
	}
	h.w.Throttle("SSM:SendCommand", 1)
	h.invoke(reconcile.Retry{Key: key, Hint: detach.Hint})
	throttled := h.lastResult(key)
	if v := h.oneVolume(volName); v.Att == nil || v.Att.Instance != "i-b" {
		t.Fatalf("the detach's end: %+v; want the volume attached to i-b", v.Att)
	}
	if throttled.Done() || !strings.Contains(throttled.Hint, `"s":"mount-due"`) {
		t.Fatalf("the attach whose mount SSM throttled: %+v; want the mount handed back as due", throttled)
	}
	h.w.Advance(throttled.RetryAfter)
	return h, key, throttled, placed
}

// A mount SSM's rate limit refused right after the attach is handed back
// as the step decided: its retry, in another process, sends it after
// reading the volume and the definition of the task it was attached for
// (which the process keeps), without reading the key's tasks.
func TestAThrottledMountsRetrySendsItWithoutReadingTasks(t *testing.T) {
	h, key, throttled, placed := throttledMount(t)
	calls, res := callsOf(t, h, key, reconcile.Retry{Key: key, Hint: throttled.Hint})
	if res.Done() || !strings.Contains(res.Hint, `"s":"mount"`) {
		t.Fatalf("the throttled mount's retry: %+v; want the mount sent", res)
	}
	wantNoCalls(t, "the throttled mount's retry", calls, "ECS:ListTasks", "ECS:DescribeTasks", "ECS:DescribeContainerInstances", "EC2:AttachVolume")
	if calls["SSM:SendCommand"] != 1 || calls["ECS:DescribeTaskDefinition"] > 1 {
		t.Errorf("the throttled mount's retry made %v; want the mount, and at most the task's definition read (a new process)", calls)
	}
	wantFollowed(t, h, placed.(reconcile.TaskChanged).TaskArn)
}

// A throttled mount's retry that finds the mount sent meanwhile by another
// pass (the sweep, here) does not send it again: it ends on that command,
// whose end carries the key on, without reading ECS.
func TestAThrottledMountsRetryDoesNotSendItTwice(t *testing.T) {
	h, key, throttled, placed := throttledMount(t)
	h.sweep()
	if n := len(h.commandsOf(mountDoc)); n != 2 { // the first handoff's and the sweep's
		t.Fatalf("mount commands after the sweep: %d, want the sweep's", n)
	}
	calls, res := callsOf(t, h, key, reconcile.Retry{Key: key, Hint: throttled.Hint})
	if calls["SSM:SendCommand"] != 0 {
		t.Errorf("the throttled mount's retry sent %d commands after the sweep had sent the mount", calls["SSM:SendCommand"])
	}
	if !res.Done() || !strings.Contains(res.Reason, "in flight (another pass's)") {
		t.Errorf("the throttled mount's retry after the sweep's mount: %+v; want it to end on that mount", res)
	}
	for op := range calls {
		if strings.HasPrefix(op, "ECS:") {
			t.Errorf("the throttled mount's retry made %d %s calls, want no ECS call", calls[op], op)
		}
	}
	wantFollowed(t, h, placed.(reconcile.TaskChanged).TaskArn)
}

// A due mount that SSM's rate limit refuses again comes back later each
// time (up to the throttle wait), counting its refusals in its hint.
func TestARefusedDueMountSpacesItsRetries(t *testing.T) {
	h, key, throttled, _ := throttledMount(t)
	h.w.Throttle("SSM:SendCommand", 2)
	_, again := callsOf(t, h, key, reconcile.Retry{Key: key, Hint: throttled.Hint})
	if again.Done() || !strings.Contains(again.Hint, `"s":"mount-due"`) || !strings.Contains(again.Hint, `"rf":1`) {
		t.Fatalf("the due mount refused again: %+v; want it due still, one refusal counted", again)
	}
	_, third := callsOf(t, h, key, reconcile.Retry{Key: key, Hint: again.Hint})
	if !strings.Contains(third.Hint, `"rf":2`) {
		t.Fatalf("the due mount refused a third time: %+v; want two refusals counted", third)
	}
	// A wait of d is spread over [d/2, 3d/2]; d is a quarter of the 10 s
	// throttle wait, doubled per refusal: 5 s after one, 10 s after two.
	if again.RetryAfter < 2500*time.Millisecond || again.RetryAfter > 7500*time.Millisecond ||
		third.RetryAfter < 5*time.Second || third.RetryAfter > 15*time.Second {
		t.Errorf("waits %s then %s; want within 2.5-7.5 s, then 5-15 s", again.RetryAfter, third.RetryAfter)
	}
}

// A throttled unmount's retry that finds the volume detaching from that
// instance (another pass unmounted it and asked for the detach) ends on
// that fact: no command, no ECS read.
func TestAThrottledUnmountsRetryEndsOnADetachInFlight(t *testing.T) {
	h, key, throttled, t2 := throttledUnmount(t)
	h.sweep() // another pass sends the unmount
	h.completeCommand(unmountDoc, "i-a")
	for _, ev := range h.w.TakeEvents() {
		if ev.Kind == "command" {
			h.invoke(h.trigger(ev))
		}
	}
	wantDetaching(t, h)
	calls, res := callsOf(t, h, key, reconcile.Retry{Key: key, Hint: throttled.Hint})
	if !res.Done() || !strings.Contains(res.Reason, "in flight (another pass's)") {
		t.Fatalf("the throttled unmount's retry during the detach: %+v; want it to end on the detach in flight", res)
	}
	wantNoCalls(t, "the throttled unmount's retry during the detach", calls, "SSM:SendCommand", "SSM:ListCommands", "ECS:ListTasks", "ECS:DescribeTasks", "EC2:DetachVolume")
	wantFollowed(t, h, t2)
}

// A slow pass (a sweep's, its calls paced) that read the volume available
// and takes its attach seconds later, after the handoff's own chain in
// another process attached it (200 run: 18 attaches EC2 refused with
// VolumeInUse in one sweep), reads the volume again first and sends no
// attach EC2 would refuse: it looks again later.
func TestAnAttachOnAnAgedReadReadsTheVolumeAgainFirst(t *testing.T) {
	h, t2, slow := heldAttachOfALeftVolume(t)
	// Meanwhile another process's pass attaches the volume, and the slow
	// pass's read ages past Timing.AttachReadAge.
	key := reconcile.Key{Cluster: cluster, Volume: volName}
	if _, res := callsOf(t, h, key, reconcile.Retry{Key: key}); !strings.Contains(res.Reason, "mount") {
		t.Fatalf("the other process's pass: %+v; want it to attach and send the mount", res)
	}
	attaches, reads := releaseAfter(h, slow, 3*time.Second)
	if attaches != 0 {
		t.Fatalf("the slow pass sent %d AttachVolume after another attached the volume; want it to read the volume again and send none", attaches)
	}
	if reads != 1 {
		t.Errorf("the slow pass read the volume %d times before its attach; want once", reads)
	}
	wantFollowed(t, h, t2)
}

// A read younger than Timing.AttachReadAge is acted on as it is: the
// chain's attach right after its poll reads nothing more.
func TestAnAttachOnAFreshReadReadsNothingMore(t *testing.T) {
	h, t2, slow := heldAttachOfALeftVolume(t)
	attaches, reads := releaseAfter(h, slow, time.Second)
	if reads != 0 {
		t.Errorf("the pass read the volume %d times before its attach; want none", reads)
	}
	if attaches != 1 {
		t.Fatalf("the pass sent %d AttachVolume; want 1", attaches)
	}
	wantFollowed(t, h, t2)
}

// heldAttachOfALeftVolume: the shared volume's task on i-a ran and
// stopped (the volume left available), and a new task's pass on i-b
// decided to attach it and waits before its step.
func heldAttachOfALeftVolume(t *testing.T) (*harness, string, *held) {
	t.Helper()
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1 := h.w.PlaceTask(tdShared, "i-a")
	h.settle(300)
	h.wantRunning(t1)
	h.w.StopTask(t1, "done")
	h.settle(300)
	if v := h.oneVolume(volName); v.Att != nil {
		t.Fatalf("the volume stayed attached after its task stopped: %+v", v.Att)
	}
	t2, slow := heldBeforeAttach(t, h, tdShared, "i-b", "the new task's")
	return h, t2, slow
}

// releaseAfter lets the held pass go on after d more of the world's time
// and returns the AttachVolume and DescribeVolumes calls it made.
func releaseAfter(h *harness, slow *held, d time.Duration) (attaches, reads int) {
	h.w.Advance(d)
	before := h.w.Calls()
	slow.release()
	after := h.w.Calls()
	return after["EC2:AttachVolume"] - before["EC2:AttachVolume"], after["EC2:DescribeVolumes"] - before["EC2:DescribeVolumes"]
}
