package reconcile_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// The seed's walkthrough: MySQL on A, A drained, MySQL moves to B with its
// volume; then the service is deleted and the volume stays available.
func TestFirstStartThenHandoffThenServiceDeleted(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")

	t1 := h.w.PlaceTask(tdShared, "i-a")
	h.settle(200)
	h.noViolations()
	h.wantRunning(t1)
	v := h.oneVolume(volName)
	if v.Att == nil || v.Att.Instance != "i-a" || v.Att.State != "attached" {
		t.Fatalf("volume not attached to i-a: %+v", v.Att)
	}
	if v.Tags["Name"] != volName || v.Tags["tether:scope"] != "shared" || !v.Encrypted || v.Size != 5 || v.Type != "gp2" || v.AZ != "us-east-1a" {
		t.Fatalf("volume created wrong: %+v", v)
	}
	mounts := h.commandsOf(mountDoc)
	if len(mounts) != 1 || mounts[0].Params["VolumeId"] != v.ID || mounts[0].Params["VolumeName"] != volName ||
		mounts[0].Params["FsType"] != "ext4" || mounts[0].Params["Device"] != v.Att.Device {
		t.Fatalf("mount commands: %+v", mounts)
	}

	// Drain A: ECS stops T1 and places T2 on B.
	before := h.w.EC2Calls()
	h.w.Drain("i-a")
	h.w.StopTask(t1, "drain")
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(400)
	h.noViolations()
	h.wantRunning(t2)
	v2 := h.oneVolume(volName)
	if v2.ID != v.ID || v2.Att == nil || v2.Att.Instance != "i-b" {
		t.Fatalf("volume did not follow the task: before %s, after %+v", v.ID, v2)
	}
	t.Logf("EC2 calls for the handoff: %d (%v)", h.w.EC2Calls()-before, h.w.Calls())

	// Service deleted: the volume is detached and left available.
	h.w.StopTask(t2, "service deleted")
	h.settle(400)
	h.noViolations()
	v3 := h.oneVolume(volName)
	if v3.Att != nil || v3.State != "available" {
		t.Fatalf("shared volume not left available: %+v", v3)
	}
	if in := h.w.InstanceState("i-b"); len(in.Mounted) != 0 {
		t.Fatalf("still mounted on i-b: %v", in.Mounted)
	}
	if h.failed != 0 {
		t.Fatalf("%d passes failed", h.failed)
	}
}

func TestTaskScopedVolumeDeletedWhenTaskStops(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	task := h.w.PlaceTask(tdScratch, "i-a")
	h.settle(200)
	h.noViolations()
	h.wantRunning(task)
	name := "task-" + task[strings.LastIndexByte(task, '/')+1:] + "-scratch"
	v := h.oneVolume(name)
	if v.Tags["tether:scope"] != "task" || v.Tags["tether:task"] != task || v.Tags["Name"] != name {
		t.Fatalf("task-scoped volume tags: %v", v.Tags)
	}
	h.w.StopTask(task, "done")
	h.settle(200)
	h.noViolations()
	if vs := h.keyVolumes(name); len(vs) != 0 {
		t.Fatalf("task-scoped volume not deleted: %+v", vs)
	}
	if n := len(h.commandsOf(unmountDoc)); n == 0 {
		t.Fatalf("volume detached without an unmount command first")
	}
}

// The handoff's metrics: one EMF line per pass, and the durations of the
// attach, detach, mount and the whole handoff.
func TestHandoffEmitsMetrics(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1 := h.w.PlaceTask(tdShared, "i-a")
	h.settle(200)
	h.metrics.Reset()
	h.w.StopTask(t1, "drain")
	h.w.PlaceTask(tdShared, "i-b")
	h.settle(400)
	seen := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(h.metrics.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %s", line)
		}
		aws, ok := m["_aws"].(map[string]any)
		if !ok || m["Cluster"] != cluster {
			t.Fatalf("not an EMF line with the Cluster dimension: %s", line)
		}
		for _, d := range aws["CloudWatchMetrics"].([]any) {
			for _, metric := range d.(map[string]any)["Metrics"].([]any) {
				name := metric.(map[string]any)["Name"].(string)
				seen[name] += m[name].(float64)
			}
		}
	}
	for _, name := range []string{"Passes", "Retries", "EC2Requests", "Throttles", "AttachDuration", "DetachDuration", "MountDuration", "HandoffDuration"} {
		if _, ok := seen[name]; !ok {
			t.Errorf("metric %s not emitted; got %v", name, seen)
		}
	}
	if seen["HandoffDuration"] <= 0 {
		t.Errorf("handoff duration %v", seen["HandoffDuration"])
	}
}

// The function layer may call Keys and Reconcile without an Invocation:
// caches are then per call and Retry hints are kept in the process, and the
// handoff still completes.
func TestWorksWithoutInvocation(t *testing.T) {
	h := newHarness(t)
	h.plain = true
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1, _ := runningShared(t, h)
	h.w.StopTask(t1, "drain")
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(400)
	h.noViolations()
	h.wantRunning(t2)
	h.oneVolume(volName)
}

// A task event delivered again after its keys were handed back is a
// duplicate and skipped, unless the hand-back failed (then the redelivery
// is the retry and must be reconciled).
func TestDuplicateEventSkippedUnlessHandBackFailed(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.PlaceTask(tdShared, "i-a")
	h.collect()
	ev := h.trigger(h.events[0])
	ctx := h.r.Invocation(context.Background())
	keys, err := h.r.Keys(ctx, ev)
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %v %v", keys, err)
	}
	res, err := h.r.Reconcile(ctx, keys[0])
	if err != nil || res.Done() {
		t.Fatalf("want the key handed back after the create: %+v %v", res, err)
	}
	again, err := h.r.Keys(h.r.Invocation(context.Background()), ev)
	if err != nil || len(again) != 0 {
		t.Fatalf("duplicate not skipped: %v %v", again, err)
	}
	h.r.HandBackFailed(ctx, keys[0])
	again, err = h.r.Keys(h.r.Invocation(context.Background()), ev)
	if err != nil || len(again) != 1 || again[0] != keys[0] {
		t.Fatalf("redelivery after a failed hand-back skipped: %v %v", again, err)
	}
}

// A retry is dropped as superseded only if a later pass of its key handed
// the key back; the pass that handed this very retry back does not count,
// whatever the sub-millisecond part of its clock (hints carry whole
// milliseconds). Before, a chain died whenever its retry came back to the
// process that had sent it.
func TestOwnRetryIsNotSuperseded(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.Advance(123456789 * time.Nanosecond)
	h.w.PlaceTask(tdShared, "i-a")
	h.collect()
	ctx := h.r.Invocation(context.Background())
	keys, err := h.r.Keys(ctx, h.trigger(h.events[0]))
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %v %v", keys, err)
	}
	res, err := h.r.Reconcile(ctx, keys[0])
	if err != nil || res.Done() {
		t.Fatalf("want the key handed back: %+v %v", res, err)
	}
	h.w.Advance(res.RetryAfter)
	again, err := h.r.Keys(h.r.Invocation(context.Background()), reconcile.Retry{Key: keys[0], Hint: res.Hint})
	if err != nil || len(again) != 1 {
		t.Fatalf("the key's own retry was dropped: %v %v", again, err)
	}
}

// A live draining instance's event names its volumes; while a task is
// still meant to run there (a standalone task, which a drain does not
// stop, keeps the drain's release off) the pass reads nothing (the
// invocation lists the instance's tasks once, for the drain's release)
// and comes back after Timing.DrainDefer (the STOPPED events of the
// instance's tasks name the volumes they hold first). Back, a pass for one
// that a task there still uses ends (the task's STOPPED event names the key
// again) instead of coming back on its own; after any other pass of the
// key it is dropped unread. Named by another trigger in the same
// invocation too, the key keeps its own retry.
func TestDrainingInstanceEventEndsWhileATaskHoldsTheVolume(t *testing.T) {
	h, key, t1 := sharedRunning(t, "i-a")
	draining := h.draining("i-a")
	const tdWeb = "arn:aws:ecs:us-east-1:111122223333:task-definition/web:1"
	h.w.AddTaskDef(cloudtest.TaskDef{ARN: tdWeb})
	web := h.w.PlaceTask(tdWeb, "i-a")
	h.w.Complete(cloudtest.Op{Kind: "start", ID: web})
	h.wantRunning(web)

	h.w.StopTask(t1, "drain") // ECS asked the task to stop; its container still runs

	ecs := func() (n int) {
		for op, c := range h.w.Calls() {
			if strings.HasPrefix(op, "ECS:") {
				n += c
			}
		}
		return n
	}
	before := ecs()
	h.invoke(draining)
	deferred := h.lastResult(key)
	if deferred.Done() || deferred.RetryAfter < 30*time.Second || !strings.Contains(deferred.Reason, "draining") {
		t.Fatalf("pass of the draining instance's event: %+v; want it handed back past the tasks' stop, naming the draining instance", deferred)
	}
	// One ECS call, none per volume: the drain's release asks whether a
	// task is still meant to run there (ReleaseDrained).
	if read := ecs() - before; read != 1 {
		t.Fatalf("the draining instance's event cost %d ECS calls, want one (the release's ListTasks) before the deferred look", read)
	}
	h.w.Advance(deferred.RetryAfter)
	h.invoke(reconcile.Retry{Key: key, Hint: deferred.Hint})
	if res := h.lastResult(key); !res.Done() || !strings.Contains(res.Reason, "draining") {
		t.Fatalf("deferred pass of the draining instance: %+v; want done, naming the draining instance", res)
	}
	// Another pass of the key (not one that leans on others) since the
	// drain's: its retry is dropped unread.
	h.invoke(draining)
	deferred = h.lastResult(key)
	h.w.Advance(time.Second)
	h.invoke(reconcile.Retry{Key: key})
	n := len(h.results[key])
	h.w.Advance(deferred.RetryAfter)
	h.invoke(reconcile.Retry{Key: key, Hint: deferred.Hint})
	if len(h.results[key]) != n {
		t.Fatalf("the drain's retry ran after a later pass of the key: %+v", h.lastResult(key))
	}

	h.invoke(draining, reconcile.Retry{Key: key})
	if res := h.lastResult(key); res.Done() || res.RetryAfter <= 0 {
		t.Fatalf("pass named by a retry too: %+v; want it to come back while the task holds the volume", res)
	}
	if v := h.oneVolume(volName); v.Att == nil || v.Att.Instance != "i-a" {
		t.Fatalf("volume moved while its task runs: %+v", v.Att)
	}
}

// The drain's deferred look, run by a process that did not see the
// handoff, ends on EC2's word that the volume left the draining instance:
// one batched DescribeVolumes, no ECS call. While the volume is still
// there (an idle attachment whose task's events were lost), the look goes
// on and releases it.
func TestDrainLookEndsOnceTheVolumeLeftTheDrainingInstance(t *testing.T) {
	h, key, t1 := sharedRunning(t, "i-a", "i-b")
	h.invoke(h.draining("i-a"))
	deferred := h.lastResult(key)
	if deferred.Done() || !strings.Contains(deferred.Hint, `"i":"i-a"`) {
		t.Fatalf("the drain's pass: %+v; want it deferred with the draining instance in its hint", deferred)
	}

	h.w.StopTask(t1, "drain")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t1})
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(300)
	h.wantRunning(t2)
	if v := h.oneVolume(volName); v.Att == nil || v.Att.Instance != "i-b" {
		t.Fatalf("the volume did not follow its task: %+v", v.Att)
	}
	other := h.otherProcess()
	before := h.w.Calls()
	ctx := other.Invocation(context.Background())
	keys, err := other.Keys(ctx, reconcile.Retry{Key: key, Hint: deferred.Hint})
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys of the drain's retry: %v %v", keys, err)
	}
	res, err := other.Reconcile(ctx, key)
	if err != nil || !res.Done() || !strings.Contains(res.Reason, "draining instance i-a any more") {
		t.Fatalf("the drain's look after the handoff: %+v %v; want done on EC2's word", res, err)
	}
	after := h.w.Calls()
	for op, n := range after {
		if d := n - before[op]; d != 0 && op != "EC2:DescribeVolumes" {
			t.Errorf("the drain's look after the handoff made %d %s calls; want one DescribeVolumes only", d, op)
		}
	}
	if d := after["EC2:DescribeVolumes"] - before["EC2:DescribeVolumes"]; d != 1 {
		t.Errorf("the drain's look made %d DescribeVolumes calls, want 1", d)
	}

	// The volume idle on a draining instance, its task's STOPPED events
	// lost: the look goes on and releases it.
	h.w.StopTask(t2, "drain")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t2})
	h.w.TakeEvents()
	h.invoke(h.draining("i-b"))
	deferred = h.lastResult(key)
	h.w.Advance(deferred.RetryAfter)
	h.invoke(reconcile.Retry{Key: key, Hint: deferred.Hint})
	h.settle(300)
	h.noViolations()
	if v := h.oneVolume(volName); v.Att != nil {
		t.Fatalf("the idle volume stayed on the draining instance: %+v", v.Att)
	}
}

// A task event that comes while this process's mount command runs reads
// nothing (the volume's next move waits for the command's end anyway);
// what it told is not lost: the command's end is then looked at in full.
// Here the task stops before its mount ends, and the volume is released
// rather than left mounted for nobody.
func TestTaskEventWhileOwnCommandRunsIsWeighedAtItsEnd(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	t1 := h.w.PlaceTask(tdShared, "i-a")
	mountPending := func() bool {
		for _, c := range h.commandsOf(mountDoc) {
			if c.Status == "Pending" {
				return true
			}
		}
		return false
	}
	h.settleExcept(func(op cloudtest.Op) bool { return op.Kind == "command" }, 100, mountPending)
	if !mountPending() {
		t.Fatal("no mount command sent")
	}
	h.collect()
	h.events = nil // the events of the way here are old news
	h.w.StopTask(t1, "stopped by a user")
	for _, op := range h.w.Pending() {
		if op.Kind != "command" {
			h.w.Advance(time.Second)
			h.w.Complete(op)
		}
	}
	h.collect()
	if len(h.events) == 0 {
		t.Fatalf("no event of the stopped task; pending %v", h.w.Pending())
	}
	ecs := func() (n int) {
		for op, c := range h.w.Calls() {
			if strings.HasPrefix(op, "ECS:") {
				n += c
			}
		}
		return n
	}
	key := reconcile.Key{Cluster: cluster, Volume: volName}
	before := ecs()
	for len(h.events) > 0 {
		h.deliverEvent(0)
	}
	if res := h.results[key]; len(res) == 0 || !strings.Contains(res[len(res)-1].Reason, "this process's") {
		t.Fatalf("task event while the mount runs: %+v; want it left to the command's end", res)
	}
	if n := ecs() - before; n != 0 {
		t.Fatalf("the task event's pass made %d ECS calls while the command ran, want none", n)
	}
	h.completeCommand(mountDoc, "i-a")
	h.settle(300)
	h.noViolations()
	if v := h.oneVolume(volName); v.Att != nil {
		t.Fatalf("volume still attached to %s for a task that stopped while its mount ran", v.Att.Instance)
	}
}
