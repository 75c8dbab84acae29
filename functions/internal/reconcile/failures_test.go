package reconcile_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/internal/volspec"
)

// Each test here is one failure from DESIGN.md's "What the field has learned".

func journalHas(j []string, prefix string) int {
	n := 0
	for _, e := range j {
		if strings.HasPrefix(e, prefix) {
			n++
		}
	}
	return n
}

func indexOf(j []string, pred func(string) bool) int {
	for i, e := range j {
		if pred(e) {
			return i
		}
	}
	return -1
}

// runningShared starts the shared-volume task on i-a and lets it settle.
func runningShared(t *testing.T, h *harness) (task string, v cloudtest.Volume) {
	t.Helper()
	task = h.w.PlaceTask(tdShared, "i-a")
	h.settle(300)
	h.noViolations()
	h.wantRunning(task)
	return task, h.oneVolume(volName)
}

// An attach that never ends on a live host is not force-detached on a
// timer: the mount sent with it waits for the device, the agent answers
// that none appeared (a fact: nothing on the host holds the volume), and
// past StuckAttach the attachment is undone with a plain detach and tried
// again under another name.
func TestStuckAttachIsUndoneWithoutForceAndRetriedWithAnotherDevice(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.StickNextAttach("i-a")
	task, v := runningShared(t, h)
	j := h.w.Journal()
	var attaches []string
	for _, e := range j {
		if strings.HasPrefix(e, "AttachVolume "+v.ID) {
			attaches = append(attaches, e)
		}
	}
	if len(attaches) != 2 {
		t.Fatalf("want a stuck attach and a second one, got %v", attaches)
	}
	first, second := strings.Fields(attaches[0])[3], strings.Fields(attaches[1])[3]
	if first == second {
		t.Fatalf("retried with the stuck device name %s", first)
	}
	if journalHas(j, "DetachVolume "+v.ID+" i-a force=true") != 0 || journalHas(j, "DetachVolume "+v.ID+" i-a force=false ok") != 1 {
		t.Fatalf("want one plain detach of the stuck attachment, no force: %v", j)
	}
	noDevice := indexOf(j, func(e string) bool { return e == "mount "+v.ID+" i-a exit=4" })
	detach := indexOf(j, func(e string) bool { return strings.HasPrefix(e, "DetachVolume "+v.ID) })
	if noDevice < 0 || detach < noDevice {
		t.Fatalf("detached before the agent said no device appeared: %v", j)
	}
	if h.w.Elapsed(start) < 90*time.Second {
		t.Fatalf("undone before the 90 s stuck rule (%s)", h.w.Elapsed(start))
	}
	h.wantRunning(task)
}

func TestUnmountBusyDelaysTheDetach(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1, v := runningShared(t, h)
	h.w.BusyUnmount(v.ID, 2)
	h.w.StopTask(t1, "drain")
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(400)
	h.noViolations()
	h.wantRunning(t2)
	j := h.w.Journal()
	busy := journalHas(j, "unmount "+v.ID+" i-a exit=3")
	if busy != 2 {
		t.Fatalf("want 2 busy unmounts, got %d: %v", busy, j)
	}
	ok := indexOf(j, func(e string) bool { return e == "unmount "+v.ID+" i-a exit=0" })
	det := indexOf(j, func(e string) bool { return strings.HasPrefix(e, "DetachVolume "+v.ID+" i-a") })
	if ok < 0 || det < ok {
		t.Fatalf("detach (at %d) before the successful unmount (at %d): %v", det, ok, j)
	}
	if journalHas(j, "DetachVolume "+v.ID+" i-a force=true") != 0 {
		t.Fatalf("force detach although the agent answered: %v", j)
	}
}

func TestCreateFailedAsynchronouslyUsesANewClientToken(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.FailNextCreates(1)
	task, _ := runningShared(t, h)
	j := h.w.Journal()
	var tokens []string
	for _, e := range j {
		if strings.HasPrefix(e, "CreateVolume ") && strings.HasSuffix(e, " ok") {
			tokens = append(tokens, strings.Fields(e)[1])
		}
	}
	if len(tokens) < 2 || tokens[0] == tokens[len(tokens)-1] {
		t.Fatalf("want a second create with another token after the first vanished: %v", j)
	}
	h.wantRunning(task)
}

// Without the retry chain's hint, the spent token shows up as
// IdempotentParameterMismatch; the reconciler confirms it before moving on,
// and still creates exactly one volume.
func TestIdempotentParameterMismatchWithoutHint(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.FailNextCreates(1)
	task := h.w.PlaceTask(tdShared, "i-a")
	h.collect()
	h.deliverEvent(0) // creates (and the create will fail)
	h.w.Complete(h.w.Pending()[0])
	h.queue, h.events = nil, nil // lose the hint chain and the failure event
	h.w.TakeEvents()
	h.sweep()
	h.settle(300)
	h.noViolations()
	h.wantRunning(task)
	j := h.w.Journal()
	if journalHas(j, "CreateVolume ") < 3 || !strings.Contains(strings.Join(j, "\n"), "IdempotentParameterMismatch") {
		t.Fatalf("want a refused token, then a new one: %v", j)
	}
	h.oneVolume(volName)
}

func TestConcurrentCreatesRaceToOneVolume(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	task := h.w.PlaceTask(tdShared, "i-a")
	h.collect()
	ev := h.trigger(h.events[0])
	h.events = nil
	done := make(chan struct{})
	for i := 0; i < 4; i++ {
		go func() { h.invokeConcurrent(ev); done <- struct{}{} }()
	}
	for i := 0; i < 4; i++ {
		<-done
	}
	h.settle(300)
	h.noViolations()
	h.wantRunning(task)
	h.oneVolume(volName)
}

func TestUnusableKMSKeyFailsTheTaskClearly(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	td := "arn:aws:ecs:us-east-1:111122223333:task-definition/kms:1"
	h.w.AddTaskDef(cloudtest.TaskDef{ARN: td, Volumes: []cloudtest.DockerVolume{{
		Name: "secret", Driver: "tether", Scope: "shared", Autoprovision: true, DriverOpts: map[string]string{"kmskeyid": "alias/gone"},
	}}})
	h.w.BadKMSKey("alias/gone")
	task := h.w.PlaceTask(td, "i-a")
	h.settle(300)
	h.noViolations()
	h.wantStoppedBecause(task, "KMS key alias/gone")
	if vs := h.keyVolumes("secret"); len(vs) != 0 {
		t.Fatalf("volumes left: %+v", vs)
	}
}

// A name EC2 refuses although no attachment uses it (poisoned, as after a
// force detach of a Xen device) is remembered: never tried again on that
// instance, by this pass or a later one.
func TestPoisonedDeviceNamesAreSkipped(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.PoisonNextAttachNames("i-a", 5)
	task, v := runningShared(t, h)
	h.wantRunning(task)
	if err := volspec.ValidateDeviceName(v.Att.Device); err != nil {
		t.Fatalf("attached as %s: %v", v.Att.Device, err)
	}
	refused := refusedNames(h.w.Journal())
	if len(refused) != 5 {
		t.Fatalf("refused names %v, want the 5 poisoned ones", refused)
	}
	// A second volume on the same instance tries none of them again.
	h.w.AddTaskDef(cloudtest.TaskDef{ARN: tdOther, Volumes: []cloudtest.DockerVolume{{Name: "other-vol", Driver: "tether", Scope: "shared", Autoprovision: true}}})
	other := h.w.PlaceTask(tdOther, "i-a")
	h.settle(300)
	h.noViolations()
	h.wantRunning(other)
	tried := map[string]int{}
	for _, e := range h.w.Journal() {
		if strings.HasPrefix(e, "AttachVolume ") {
			tried[strings.Fields(e)[3]]++
		}
	}
	for d, n := range tried {
		if n > 1 {
			t.Fatalf("device %s tried %d times: %v", d, n, tried)
		}
	}
}

const tdOther = "arn:aws:ecs:us-east-1:111122223333:task-definition/other:1"

// refusedNames lists the device names AttachVolume refused, in order.
func refusedNames(journal []string) []string {
	var out []string
	for _, e := range journal {
		if f := strings.Fields(e); len(f) == 5 && f[0] == "AttachVolume" && f[4] == "InvalidParameterValue" {
			out = append(out, f[3])
		}
	}
	return out
}

// Twenty volumes attaching at once to one instance (a drain's replacement
// tasks) get twenty different names, none refused: the process allocates
// names per instance, counting the ones its passes are attaching now. (The
// benchmark saw 223 refusals with 21 names and refusals taken for poison.)
func TestConcurrentAttachesToOneInstanceShareNoName(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	var tasks []string
	for i := range 20 {
		td := fmt.Sprintf("arn:aws:ecs:us-east-1:111122223333:task-definition/fleet-%02d:1", i)
		h.w.AddTaskDef(cloudtest.TaskDef{ARN: td, Volumes: []cloudtest.DockerVolume{{Name: fmt.Sprintf("fleet-vol-%02d", i), Driver: "tether", Scope: "shared", Autoprovision: true}}})
		tasks = append(tasks, h.w.PlaceTask(td, "i-a"))
	}
	h.collect()
	for len(h.events) > 0 {
		h.deliverEvent(0) // creates
	}
	for _, op := range h.w.Pending() {
		if op.Kind == "create" {
			h.w.Complete(op)
		}
	}
	h.collect()
	var wg sync.WaitGroup
	for _, ev := range h.events { // twenty "available" events: twenty attaches at once
		wg.Add(1)
		go func() { defer wg.Done(); h.invoke(h.trigger(ev)) }()
	}
	wg.Wait()
	h.events = nil
	if r := refusedNames(h.w.Journal()); len(r) != 0 {
		t.Fatalf("device names refused: %v", r)
	}
	h.settle(2000)
	h.noViolations()
	names := map[string]bool{}
	for _, v := range h.w.Volumes() {
		if v.Att == nil || v.Att.Instance != "i-a" || names[v.Att.Device] {
			t.Fatalf("volume %s attachment %+v (names so far %v)", v.ID, v.Att, names)
		}
		names[v.Att.Device] = true
	}
	for _, task := range tasks {
		h.wantRunning(task)
	}
}

func TestThrottlingHandsTheKeyBackAndLosesNoWork(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.Throttle("EC2:DescribeVolumes", 2)
	h.w.Throttle("ECS:DescribeTaskDefinition", 1)
	h.w.Throttle("EC2:AttachVolume", 1)
	task := h.w.PlaceTask(tdShared, "i-a")
	h.settle(300)
	h.noViolations()
	h.wantRunning(task)
	throttled := 0
	for _, rs := range h.results {
		for _, r := range rs {
			if r.Reason == "throttled by AWS" {
				throttled++
				if r.RetryAfter <= 0 {
					t.Fatalf("throttled pass not handed back: %+v", r)
				}
			}
		}
	}
	if throttled < 2 {
		t.Fatalf("want throttled passes handed back with RetryAfter, got %d", throttled)
	}
	if h.failed == 0 {
		t.Fatalf("the throttled Keys call must fail so its message is redelivered")
	}
}

func TestWrongAZStopsTheTaskAndLeavesTheVolume(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-c", "us-east-1b")
	t1, v := runningShared(t, h)
	h.w.StopTask(t1, "scale in")
	h.settle(300)
	t2 := h.w.PlaceTask(tdShared, "i-c")
	h.settle(300)
	h.noViolations()
	h.wantStoppedBecause(t2, "ecs.availability-zone == us-east-1a")
	v2 := h.oneVolume(volName)
	if v2.ID != v.ID || v2.Att != nil {
		t.Fatalf("volume moved or attached: %+v", v2)
	}
	if journalHas(h.w.Journal(), "AttachVolume "+v.ID+" i-c") != 0 {
		t.Fatalf("attach to the wrong AZ attempted")
	}
}

func TestAutoprovisionFalse(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	td := "arn:aws:ecs:us-east-1:111122223333:task-definition/pre:1"
	h.w.AddTaskDef(cloudtest.TaskDef{ARN: td, Volumes: []cloudtest.DockerVolume{{Name: "premade", Driver: "tether", Scope: "shared"}}})

	missing := h.w.PlaceTask(td, "i-a")
	h.settle(200)
	h.wantStoppedBecause(missing, "does not exist")
	if journalHas(h.w.Journal(), "CreateVolume") != 0 {
		t.Fatalf("created a volume although autoprovision is false")
	}

	// A volume made outside tether is not claimed by the functions: the
	// task says how an operator claims it.
	id := h.w.AddVolume("us-east-1a", map[string]string{"Name": "premade"})
	refused := h.w.PlaceTask(td, "i-a")
	h.settle(300)
	h.wantStoppedBecause(refused, "tether adopt "+id+" --name premade --cluster "+cluster)
	if journalHas(h.w.Journal(), "CreateTags") != 0 || journalHas(h.w.Journal(), "AttachVolume "+id) != 0 {
		t.Fatalf("the functions tagged or attached a volume tether does not own: %v", h.w.Journal())
	}

	adoptByOperator(t, h, id, "premade")
	task := h.w.PlaceTask(td, "i-a")
	h.settle(300)
	h.noViolations()
	h.wantRunning(task)
	if v := h.oneVolume("premade"); v.ID != id {
		t.Fatalf("the adopted volume is not the one served: %+v", v)
	}
}

func TestHostileDriverOptsAndNamesCreateNothing(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	cases := []struct {
		name, reason string
		vol          cloudtest.DockerVolume
	}{
		{"shell in size", "driverOpts", cloudtest.DockerVolume{Name: "data", DriverOpts: map[string]string{"size": "5; rm -rf /"}}},
		{"unknown option", "unknown option", cloudtest.DockerVolume{Name: "data2", DriverOpts: map[string]string{"mountopts": "exec"}}},
		{"path in name", "invalid volume name", cloudtest.DockerVolume{Name: "../../etc"}},
		{"shell in name", "invalid volume name", cloudtest.DockerVolume{Name: "x$(reboot)"}},
		{"reserved name", "reserved", cloudtest.DockerVolume{Name: "task-0123456789abcdef0123456789abcdef-x"}},
	}
	for i, c := range cases {
		c.vol.Driver, c.vol.Scope, c.vol.Autoprovision = "tether", "shared", true
		td := "arn:aws:ecs:us-east-1:111122223333:task-definition/hostile:" + string(rune('1'+i))
		h.w.AddTaskDef(cloudtest.TaskDef{ARN: td, Volumes: []cloudtest.DockerVolume{c.vol}})
		task := h.w.PlaceTask(td, "i-a")
		h.settle(200)
		h.wantStoppedBecause(task, c.reason)
	}
	if n := journalHas(h.w.Journal(), "CreateVolume"); n != 0 {
		t.Fatalf("%d volumes created for hostile input", n)
	}
	h.noViolations()
}

func TestTwoRunningTasksNeverShareAnAttachment(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1, v := runningShared(t, h)
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(300)
	h.noViolations()
	h.wantRunning(t1)
	h.wantStoppedBecause(t2, "in use by running task")
	if h.w.Elapsed(h.w.TaskState(t2).Created) < 90*time.Second {
		t.Fatalf("second task failed before the deadline")
	}
	if journalHas(h.w.Journal(), "AttachVolume "+v.ID+" i-b") != 0 {
		t.Fatalf("tried to attach to a second instance")
	}
}

// Issue 11: a host whose SSM agent does not answer, while EC2 says it
// runs, is never force-detached, however long it stays silent: the new
// task is stopped with a reason that says what it waited for, and the
// volume stays where it is, safe. (Before: forced after 2 minutes.)
func TestUnreachableLiveHostIsNeverForceDetached(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1, v := runningShared(t, h)
	h.w.SetSSMDown("i-a", true)
	h.w.StopTask(t1, "drain")
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(600)
	h.w.Advance(30 * time.Minute)
	h.sweep()
	h.settle(600)
	h.noViolations()
	j := h.w.Journal()
	if n := journalHas(j, "DetachVolume "+v.ID); n != 0 {
		t.Fatalf("detached from a live host whose agent does not answer: %v", j)
	}
	h.wantStoppedBecause(t2, "i-a")
	if r := h.w.TaskState(t2).StoppedReason; !strings.Contains(r, "SSM") || !strings.Contains(r, "never force-detaches") {
		t.Fatalf("stopped reason does not say what the task waited for: %q", r)
	}
	if after := h.oneVolume(volName); after.Att == nil || after.Att.Instance != "i-a" {
		t.Fatalf("volume moved: %+v", after.Att)
	}
	if got := metricSum(t, h, "TasksStopped"); got != 1 {
		t.Fatalf("TasksStopped %v, want 1", got)
	}
}

func TestTerminatedHolderIsForceDetachedAtOnce(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	_, v := runningShared(t, h)
	h.w.Terminate("i-a")
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(300)
	h.noViolations()
	h.wantRunning(t2)
	j := h.w.Journal()
	if journalHas(j, "DetachVolume "+v.ID+" i-a force=true ok") != 1 {
		t.Fatalf("want one force detach from the terminated instance: %v", j)
	}
	for _, c := range h.commandsOf(unmountDoc) {
		if c.Instance == "i-a" {
			t.Fatalf("sent unmount to a terminated instance: %+v", c)
		}
	}
}

func TestMountRefusedFailsTheTaskAndDeviceNotFoundIsRetried(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1, v := runningShared(t, h)
	h.w.StopTask(t1, "drain")
	h.settle(300)
	h.w.MountExits(v.ID, 4)
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(300)
	h.noViolations()
	h.wantRunning(t2)
	if n := journalHas(h.w.Journal(), "mount "+v.ID+" i-b"); n != 2 {
		t.Fatalf("want one failed and one good mount on i-b, got %d", n)
	}

	h.w.StopTask(t2, "drain")
	h.settle(300)
	h.w.MountExits(v.ID, 5)
	h.w.AddInstance("i-c", "us-east-1a") // no binding there: the plugin cannot mount it itself
	t3 := h.w.PlaceTask(tdShared, "i-c")
	h.settle(300)
	h.noViolations()
	h.wantStoppedBecause(t3, "refused to mount")
	if n := journalHas(h.w.Journal(), "mount "+v.ID+" i-c exit=5"); n != 1 {
		t.Fatalf("a refused mount (exit 5) must not be retried, got %d", n)
	}
}

// invokeConcurrent is invoke, safe to run from several goroutines.
func (h *harness) invokeConcurrent(tr reconcile.Trigger) { h.invoke(tr) }

// An operator's force (the entry point of `tether release --force`) on a
// live host whose SSM agent is silent: it detaches (counted as a live
// force), unless a started task on the host uses the volume now (read
// afresh right before; its plugin remounted the still-attached device).
func TestOperatorForceReleasesALiveHostButSparesAStartedTask(t *testing.T) {
	for _, started := range []bool{true, false} {
		t.Run(fmt.Sprintf("started task %t", started), func(t *testing.T) {
			h := newHarness(t)
			h.w.AddInstance("i-a", "us-east-1a")
			h.w.AllowLiveForce()
			t1, v := runningShared(t, h)
			h.w.SetSSMDown("i-a", true)
			h.w.StopTask(t1, "scaled in")
			h.settle(200)
			if journalHas(h.w.Journal(), "DetachVolume "+v.ID) != 0 {
				t.Fatalf("detached without an operator while the agent is silent: %v", h.w.Journal())
			}
			if started {
				t2 := h.w.PlaceTask(tdShared, "i-a")
				for _, op := range h.w.Pending() {
					if op.Kind == "start" && op.ID == t2 {
						h.w.Complete(op)
					}
				}
				h.wantRunning(t2)
				h.w.TakeEvents()
			}
			h.invoke(reconcile.Release{Key: reconcile.Key{Cluster: cluster, Volume: volName}, Force: true, Reason: "host i-a is wedged", Operator: "test"})
			forced := journalHas(h.w.Journal(), "DetachVolume "+v.ID+" i-a force=true")
			if started && forced != 0 {
				t.Fatalf("forced under a started task: %v", h.w.Journal())
			}
			if !started && (forced != 1 || metricSum(t, h, "ForcedDetachesLive") != 1) {
				t.Fatalf("operator force: %d force detaches, ForcedDetachesLive %v; want 1, 1", forced, metricSum(t, h, "ForcedDetachesLive"))
			}
			h.noViolations()
		})
	}
}

// Every name of the first range is taken on the instance by volumes this
// process knows nothing of (another process attached them): after three
// refusals the pass reads the instance's mappings, avoids them all, and
// attaches under a free name of the second range. Mapped names are not
// refusals: they must not use up the pass's tries (the benchmark's 200
// handoffs failed "EC2 refused every device name tried (12)").
func TestMappedNamesDoNotCountAsRefusals(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	var first []string
	for c := 'f'; c <= 'z'; c++ {
		first = append(first, "/dev/xvd"+string(c))
	}
	h.w.AttachForeign("i-a", first...)
	task, v := runningShared(t, h)
	h.wantRunning(task)
	if len(v.Att.Device) != len("/dev/xvdfa") {
		t.Fatalf("attached as %s, want a name of the second range", v.Att.Device)
	}
	if n := len(refusedNames(h.w.Journal())); n > 3 {
		t.Fatalf("%d names refused; want at most 3 before the mappings are read: %v", n, h.w.Journal())
	}
	if h.failed != 0 {
		t.Fatalf("%d passes failed", h.failed)
	}
}
