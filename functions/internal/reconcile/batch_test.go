package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// twoOnOneHost runs a task of each of two task definitions, each with a
// volume of its own, on i-a; it stops both and places their replacements
// on i-b. It returns the two volumes and the replacements.
func twoOnOneHost(t *testing.T) (*harness, []cloudtest.Volume, []string) {
	t.Helper()
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	var olds []string
	for _, name := range []string{"data-a", "data-b"} {
		td := "arn:aws:ecs:us-east-1:111122223333:task-definition/" + name + ":1"
		h.w.AddTaskDef(cloudtest.TaskDef{ARN: td, Volumes: []cloudtest.DockerVolume{{
			Name: name, Driver: "tether", Scope: "shared", Autoprovision: true, DriverOpts: map[string]string{"size": "1"}}}})
		olds = append(olds, h.w.PlaceTask(td, "i-a"))
	}
	h.settle(300)
	vols := []cloudtest.Volume{h.oneVolume("data-a"), h.oneVolume("data-b")}
	var news []string
	for i, old := range olds {
		h.wantRunning(old)
		h.w.StopTask(old, "drain")
		h.w.Complete(cloudtest.Op{Kind: "stop", ID: old})
		news = append(news, h.w.PlaceTask("arn:aws:ecs:us-east-1:111122223333:task-definition/"+[]string{"data-a", "data-b"}[i]+":1", "i-b"))
	}
	return h, vols, news
}

// One unmount command that another process sent for both volumes of a
// host: each volume's pass finds it (its parameters name the volume)
// instead of sending its own, the command's end names both keys (its
// parameters, as its comment cannot), each reads its own line of the
// agent's answer, and both move with their data.
func TestAnUnmountOfSeveralVolumesReleasesEachForItsTask(t *testing.T) {
	h, vols, news := twoOnOneHost(t)
	ids, names, atts := []string{}, []string{}, []string{}
	for _, v := range vols {
		ids, names = append(ids, v.ID), append(names, v.Tags["tether:volume"])
		atts = append(atts, agentproto.AttachmentToken("i-a", v.Att.Time.UnixMilli()))
	}
	if _, err := h.c.SendCommand(context.Background(), unmountDoc, "i-a", map[string]string{
		agentproto.ParamVolumeID: agentproto.JoinList(ids), agentproto.ParamVolumeName: agentproto.JoinList(names),
		agentproto.ParamAttachment: agentproto.JoinList(atts), agentproto.ParamForce: "false",
	}, ""); err != nil {
		t.Fatal(err)
	}
	h.settle(400)
	for _, task := range news {
		h.wantRunning(task)
	}
	for _, name := range []string{"data-a", "data-b"} {
		if got := h.oneVolume(name); got.Att == nil || got.Att.Instance != "i-b" {
			t.Errorf("volume %s: %+v, want it on i-b", got.ID, got.Att)
		}
	}
	unmounts := 0
	for _, c := range h.w.Commands() {
		if c.Unmount {
			unmounts++
		}
	}
	if unmounts != 1 {
		t.Fatalf("%d unmount commands, want the one of both volumes only", unmounts)
	}
	h.noViolations()
}

// The batch's answer for a volume still in use (busy) holds that volume
// only: the other moves, and the busy one is unmounted again on its own
// once its container lets go.
func TestABusyVolumeInAnUnmountOfSeveralHoldsOnlyItself(t *testing.T) {
	h, vols, news := twoOnOneHost(t)
	h.w.BusyUnmount(vols[1].ID, 1)
	ids, names := []string{}, []string{}
	for _, v := range vols {
		ids, names = append(ids, v.ID), append(names, v.Tags["tether:volume"])
	}
	if _, err := h.c.SendCommand(context.Background(), unmountDoc, "i-a", map[string]string{
		agentproto.ParamVolumeID: agentproto.JoinList(ids), agentproto.ParamVolumeName: agentproto.JoinList(names), agentproto.ParamForce: "false",
	}, ""); err != nil {
		t.Fatal(err)
	}
	h.settle(600)
	for _, task := range news {
		h.wantRunning(task)
	}
	var lone int
	for _, c := range h.w.Commands() {
		if c.Unmount && c.Params[agentproto.ParamVolumeID] == vols[1].ID {
			lone++
		}
		if c.Unmount && c.Params[agentproto.ParamVolumeID] == vols[0].ID {
			t.Errorf("volume %s was released by the batch, yet unmounted again alone", vols[0].ID)
		}
	}
	if lone == 0 {
		t.Fatalf("the busy volume %s was never unmounted on its own", vols[1].ID)
	}
	h.noViolations()
}

func unmountCommands(h *harness) (cmds []cloudtest.Command) {
	for _, c := range h.w.Commands() {
		if c.Unmount {
			cmds = append(cmds, c)
		}
	}
	return cmds
}

// A draining instance whose tasks are all stopping: its event's invocation
// releases the instance's volumes with one unmount command, and both move
// on that command's answer; their tasks' STOPPED events send no unmount of
// their own.
func TestADrainReleasesTheHostsVolumesWithOneCommand(t *testing.T) {
	h, vols, news := twoOnOneHost(t)
	h.ecsCost = map[string]int{}
	h.invoke(h.draining("i-a"))
	cmds := unmountCommands(h)
	if len(cmds) != 1 || len(agentproto.SplitList(cmds[0].Params[agentproto.ParamVolumeID])) != 2 {
		t.Fatalf("unmount commands after the drain event: %+v; want one for both volumes", cmds)
	}
	// The drain's passes of the keys end there: the release's end carries
	// them on, so no deferred look of the draining instance is queued.
	for _, name := range []string{"data-a", "data-b"} {
		if res := h.lastResult(reconcile.Key{Cluster: cluster, Volume: name}); !res.Done() || !strings.Contains(res.Reason, "in its release") {
			t.Errorf("%s: the drain's pass %+v, want it done (the release carries the volume)", name, res)
		}
	}
	h.settle(400)
	for _, task := range news {
		h.wantRunning(task)
	}
	for _, v := range vols {
		name := v.Tags["tether:volume"]
		if got := h.oneVolume(name); got.Att == nil || got.Att.Instance != "i-b" {
			t.Errorf("volume %s: %+v, want it on i-b", name, got.Att)
		}
	}
	if cmds := unmountCommands(h); len(cmds) != 1 {
		t.Fatalf("%d unmount commands, want the drain's one", len(cmds))
	}
	// The release's end asks for the detaches without reading ECS: no
	// task was meant to run on the draining instance when it was sent.
	for k, n := range h.ecsCost {
		if strings.HasPrefix(k, "reconcile.CommandChanged ") {
			t.Errorf("SSM command ends cost %d ECS calls (%s), want none", n, k)
		}
	}
	h.noViolations()
}

// The drain's next events reach other processes (a drain sends one per
// task that stops, and Lambda spreads them): a process whose release finds
// an unmount on the instance carrying the same attachments sends none. Once
// that unmount failed, the volumes it carried are released again.
func TestADrainsReleaseIsSentOnceAcrossProcesses(t *testing.T) {
	h, vols, news := twoOnOneHost(t)
	h.w.BusyUnmount(vols[1].ID, 1) // the first release fails for it
	h.invoke(h.draining("i-a"))
	if cmds := unmountCommands(h); len(cmds) != 1 {
		t.Fatalf("%d unmount commands after the first drain event, want 1", len(cmds))
	}
	release := func() {
		t.Helper()
		other := h.otherProcess()
		ctx := other.Invocation(context.Background())
		if _, err := other.Keys(ctx, h.draining("i-a")); err != nil {
			t.Fatal(err)
		}
		other.ReleaseDrained(ctx)
	}
	release()
	if cmds := unmountCommands(h); len(cmds) != 1 {
		t.Fatalf("%d unmount commands after another process saw the drain, want the first one only: %+v", len(cmds), cmds)
	}
	first := unmountCommands(h)[0]
	h.w.Complete(cloudtest.Op{Kind: "command", ID: first.ID})
	if c := unmountCommands(h)[0]; c.Status != "Failed" {
		t.Fatalf("the first release: %+v, want it failed (one volume busy)", c)
	}
	release()
	cmds := unmountCommands(h)
	if len(cmds) != 2 || len(agentproto.SplitList(cmds[1].Params[agentproto.ParamVolumeID])) != 2 {
		t.Fatalf("unmount commands once the first failed: %+v; want a second release of both volumes", cmds)
	}
	settledOnB(t, h, vols, news)
}

// A task still meant to run on the draining instance (a standalone task a
// drain does not stop) keeps the drain's release off: the stopped tasks'
// volumes move one by one on their STOPPED events, the running task's
// volume stays mounted where it is.
func TestATaskStillRunningOnADrainedHostKeepsTheReleaseOff(t *testing.T) {
	h, _, news := twoOnOneHost(t)
	stays := h.w.PlaceTask(tdShared, "i-a")
	h.settle(200)
	h.wantRunning(stays)
	before := len(unmountCommands(h))
	h.invoke(h.draining("i-a"))
	if cmds := unmountCommands(h); len(cmds) != before {
		t.Fatalf("unmount commands after the drain event: %+v; want none new while a task is meant to run there", cmds[before:])
	}
	h.settle(400)
	for _, task := range append(news, stays) {
		h.wantRunning(task)
	}
	for _, c := range unmountCommands(h) {
		if ids := agentproto.SplitList(c.Params[agentproto.ParamVolumeID]); len(ids) != 1 || c.Params[agentproto.ParamVolumeName] == volName {
			t.Errorf("unmount %+v: want one volume each, never the running task's", c.Params)
		}
	}
	h.noViolations()
}

// The release's end delivered again after the volumes moved on (SSM's
// events come late, and twice): each key's pass ends on the volume's one
// read, without reading ECS.
func TestALateUnmountEndOfAVolumeThatMovedOnReadsNoECS(t *testing.T) {
	h, _, news := twoOnOneHost(t)
	h.invoke(h.draining("i-a"))
	release := unmountCommands(h)[0]
	h.settle(400)
	for _, task := range news {
		h.wantRunning(task)
	}
	h.ecsCost = map[string]int{}
	h.invoke(reconcile.CommandChanged{CommandID: release.ID, InstanceID: "i-a", Document: unmountDoc, Status: "Success"})
	for _, name := range []string{"data-a", "data-b"} {
		if res := h.lastResult(reconcile.Key{Cluster: cluster, Volume: name}); !res.Done() || !strings.Contains(res.Reason, "superseded") {
			t.Errorf("%s: the late end's pass %+v, want it superseded", name, res)
		}
	}
	for k, n := range h.ecsCost {
		t.Errorf("the late end cost %d ECS calls (%s), want none", n, k)
	}
	h.noViolations()
}

// A drain's release sent while a task was still stopping answers busy for
// its volume: once that task has stopped, its volume is unmounted on its
// own at once, not after the wait a busy unmount of its own would earn.
func TestAVolumeBusyAtTheDrainsReleaseIsUnmountedOnceItsTaskStopped(t *testing.T) {
	h, vols, news := twoOnOneHost(t)
	h.w.BusyUnmount(vols[1].ID, 1)
	h.invoke(h.draining("i-a"))
	h.settle(400)
	for _, task := range news {
		h.wantRunning(task)
	}
	var release, own *cloudtest.Command
	for _, c := range unmountCommands(h) {
		switch {
		case cloud.IsReleaseComment(c.Comment):
			release = &c
		case c.Params[agentproto.ParamVolumeID] == vols[1].ID && own == nil:
			own = &c
		}
	}
	if release == nil || own == nil {
		t.Fatalf("want the drain's release and an unmount of %s alone; got %+v", vols[1].ID, unmountCommands(h))
	}
	if wait := own.Requested.Sub(release.Ended); wait > 5*time.Second {
		t.Fatalf("the busy volume's own unmount went %s after the release's answer, want at once", wait)
	}
	h.noViolations()
}

// A STOPPED event of a task on a draining host, while the drain's release
// runs there, ends on that release (whose end carries the key on) without
// reading the key's tasks.
func TestAStoppedEventWhileTheDrainsReleaseRunsReadsNoTasks(t *testing.T) {
	stoppedEventsReadNoTasks(t, false)
}

// The same once the release has released both volumes, before its end's
// passes ran: the STOPPED events' passes take that end's step themselves,
// the detach, as it does, without reading ECS (not the key's tasks, nor the
// draining host's state: the release is the fact).
func TestAStoppedEventRightAfterTheDrainsReleaseReadsNoTasks(t *testing.T) {
	stoppedEventsReadNoTasks(t, true)
}

func stoppedEventsReadNoTasks(t *testing.T, releaseEnded bool) {
	h, vols, news := twoOnOneHost(t)
	stopped := drainReleased(h)
	if cmds := unmountCommands(h); len(cmds) != 1 || cmds[0].Status != "Pending" {
		t.Fatalf("unmount commands after the drain event: %+v; want the release, running", cmds)
	}
	if len(stopped) != 2 {
		t.Fatalf("%d STOPPED events, want 2", len(stopped))
	}
	if releaseEnded {
		h.completeCommand(unmountDoc, "i-a")
	}
	// The events reach another process, which knows nothing of the release.
	other := h.otherProcess()
	before := h.w.Calls()
	for _, tr := range stopped {
		ctx := other.Invocation(context.Background())
		keys, err := other.Keys(ctx, tr)
		if err != nil || len(keys) != 1 {
			t.Fatalf("keys of %+v: %v %v", tr, keys, err)
		}
		res, err := other.Reconcile(ctx, keys[0])
		switch {
		case err != nil:
			t.Fatalf("%s: the STOPPED event's pass: %v", keys[0].Volume, err)
		case releaseEnded && (res.Done() || !strings.Contains(res.Reason, "detaching")):
			t.Errorf("%s: the STOPPED event's pass %+v, want it to detach on the release's word", keys[0].Volume, res)
		case releaseEnded:
			h.queue = append(h.queue, msg{key: keys[0], hint: res.Hint, due: h.w.Now().Add(res.RetryAfter)})
		case !res.Done() || !strings.Contains(res.Reason, "in flight (another pass's)"):
			t.Errorf("%s: the STOPPED event's pass %+v, want it done on the release in flight", keys[0].Volume, res)
		}
	}
	after := h.w.Calls()
	// Nor the draining instance's state: the release is the fact.
	for _, op := range []string{"ECS:ListTasks", "ECS:DescribeTasks", "ECS:DescribeContainerInstances", "ECS:ListContainerInstances"} {
		if n := after[op] - before[op]; n != 0 {
			t.Errorf("the STOPPED events' passes: %s %d times, want none", op, n)
		}
	}
	if n, want := after["EC2:DetachVolume"]-before["EC2:DetachVolume"], map[bool]int{false: 0, true: 2}[releaseEnded]; n != want {
		t.Errorf("the STOPPED events' passes: %d DetachVolume, want %d", n, want)
	}
	if cmds := unmountCommands(h); len(cmds) != 1 {
		t.Fatalf("%d unmount commands, want the release only", len(cmds))
	}
	settledOnB(t, h, vols, news)
}

// The release's own end, when it comes after its volumes were detached by
// the passes of the tasks' STOPPED events (in another process), leaves the
// attach to those passes' chains: no AttachVolume (which would race them,
// and EC2 refuse one), no read of ECS.
func TestALateReleaseEndLeavesTheAttachToTheDetachsChain(t *testing.T) {
	h, vols, news := twoOnOneHost(t)
	stopped := drainReleased(h)
	h.completeCommand(unmountDoc, "i-a")
	var releaseEnd []reconcile.Trigger
	for _, ev := range h.w.TakeEvents() {
		if ev.Kind == "command" {
			releaseEnd = append(releaseEnd, h.trigger(ev))
		} else {
			h.events = append(h.events, ev)
		}
	}
	if len(releaseEnd) == 0 {
		t.Fatal("no SSM event for the release's end")
	}
	chains := h.otherProcess()
	for _, tr := range stopped {
		ctx := chains.Invocation(context.Background())
		keys, err := chains.Keys(ctx, tr)
		if err != nil || len(keys) != 1 {
			t.Fatalf("keys of %+v: %v %v", tr, keys, err)
		}
		res, err := chains.Reconcile(ctx, keys[0])
		if err != nil || res.Done() || !strings.Contains(res.Reason, "detaching") {
			t.Fatalf("%s: the STOPPED event's pass %+v %v, want it to detach", keys[0].Volume, res, err)
		}
		h.queue = append(h.queue, msg{key: keys[0], hint: res.Hint, due: h.w.Now().Add(res.RetryAfter)})
	}
	for _, op := range h.w.Pending() {
		if op.Kind == "detach" {
			h.w.Complete(op)
		}
	}
	for _, v := range vols {
		if got := h.oneVolume(v.Tags["tether:volume"]); got.Att != nil {
			t.Fatalf("volume %s still attached (%+v) before the release's end", v.ID, got.Att)
		}
	}
	late := h.otherProcess()
	before := h.w.Calls()
	for _, tr := range releaseEnd {
		ctx := late.Invocation(context.Background())
		keys, err := late.Keys(ctx, tr)
		if err != nil {
			t.Fatalf("keys of %+v: %v", tr, err)
		}
		for _, k := range keys {
			res, err := late.Reconcile(ctx, k)
			if err != nil || !res.Done() || !strings.Contains(res.Reason, "in flight (another pass's)") {
				t.Errorf("%s: the late release end's pass %+v %v, want it done, the chain going on", k.Volume, res, err)
			}
		}
	}
	after := h.w.Calls()
	for _, op := range []string{"EC2:AttachVolume", "ECS:ListTasks", "ECS:DescribeTasks"} {
		if n := after[op] - before[op]; n != 0 {
			t.Errorf("the late release end's passes: %s %d times, want none", op, n)
		}
	}
	settledOnB(t, h, vols, news)
	if n := h.w.Calls()["EC2:AttachVolume"]; n < 2 {
		t.Fatalf("%d AttachVolume in all, want the chains' two at least", n)
	}
}

// drainReleased drains i-a of twoOnOneHost's world and delivers the drain
// event (the release goes out); the tasks' STOPPED events are returned
// for the test to deliver, the others queued.
func drainReleased(h *harness) []reconcile.Trigger {
	h.w.Drain("i-a")
	var stopped []reconcile.Trigger
	for _, ev := range h.w.TakeEvents() {
		if ev.Kind == "task" && ev.LastStatus == "STOPPED" {
			stopped = append(stopped, h.trigger(ev))
		} else {
			h.events = append(h.events, ev)
		}
	}
	h.invoke(h.draining("i-a"))
	return stopped
}

// settledOnB settles twoOnOneHost's world after a handoff: the new tasks
// run, both volumes are on i-b, and nothing unsafe happened.
func settledOnB(t *testing.T, h *harness, vols []cloudtest.Volume, news []string) {
	t.Helper()
	h.settle(400)
	for _, task := range news {
		h.wantRunning(task)
	}
	for _, v := range vols {
		if got := h.oneVolume(v.Tags["tether:volume"]); got.Att == nil || got.Att.Instance != "i-b" {
			t.Errorf("volume %s: %+v, want it on i-b", v.ID, got.Att)
		}
	}
	h.noViolations()
}

// A drain sends an event each time a task stops on the instance. Once this
// process's release carries every volume there, a later event of the same
// drain (a later version, with more CPU or memory free and less of
// neither) reads nothing; one that does not prove it is the same drain (no
// more free, or past DrainDefer) reads the instance's volumes as before.
func TestLaterEventsOfADrainWhoseVolumesAReleaseCarriesReadNothing(t *testing.T) {
	h, vols, news := twoOnOneHost(t)
	event := func(version, cpu, mem int64) reconcile.InstanceChanged {
		e := h.draining("i-a")
		e.Version, e.RemainingCPU, e.RemainingMemory = version, cpu, mem
		return e
	}
	reads := func(e reconcile.InstanceChanged) int {
		t.Helper()
		before := h.w.EC2Calls()
		h.invoke(e)
		return h.w.EC2Calls() - before
	}
	if n := reads(event(10, 1024, 2048)); n == 0 {
		t.Fatal("the drain's first event read nothing")
	}
	if cmds := unmountCommands(h); len(cmds) != 1 {
		t.Fatalf("%d unmount commands after the drain's first event, want its release", len(cmds))
	}
	if n := reads(event(11, 1536, 2560)); n != 0 {
		t.Errorf("a later event of the drain (a task stopped) made %d EC2 calls, want none", n)
	}
	if n := reads(event(11, 2048, 3072)); n == 0 {
		t.Error("an event whose version is not later read nothing")
	}
	if n := reads(event(12, 1536, 2560)); n == 0 {
		t.Error("an event with no more free (a host made ACTIVE that took tasks) read nothing")
	}
	h.w.Advance(time.Minute) // past DrainDefer
	if n := reads(event(13, 4096, 8192)); n == 0 {
		t.Error("an event past DrainDefer after the release read nothing")
	}
	if cmds := unmountCommands(h); len(cmds) != 1 {
		t.Fatalf("%d unmount commands, want the first release only", len(cmds))
	}
	settledOnB(t, h, vols, news)
}
