package reconcile_test

import (
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// settleExcept is settle, except that the pending operations hold says
// are left pending (an SSM command that runs on and on).
func (h *harness) settleExcept(hold func(cloudtest.Op) bool, maxSteps int, until func() bool) {
	h.t.Helper()
	for step := 0; step < maxSteps; step++ {
		if until() {
			return
		}
		h.collect()
		var ready []cloudtest.Op
		for _, op := range h.w.Pending() {
			if !hold(op) {
				ready = append(ready, op)
			}
		}
		switch {
		case len(h.events) > 0:
			h.deliverEvent(0)
		case len(ready) > 0:
			h.w.Advance(time.Second)
			h.w.Complete(ready[0])
		case len(h.queue) > 0:
			h.deliverRetry(h.earliestRetry())
		default:
			maxSteps = step // nothing left to do: the condition decides
		}
	}
	if !until() {
		h.t.Fatalf("condition not reached in %d steps; queue=%v pending=%v", maxSteps, h.queue, h.w.Pending())
	}
}

// unmountsOf: is op an SSM unmount command?
func (h *harness) unmountsOf(op cloudtest.Op) bool { return h.commandOf(unmountDoc, op) }

// mountsOf: is op an SSM mount command?
func (h *harness) mountsOf(op cloudtest.Op) bool { return h.commandOf(mountDoc, op) }

// commandOf: is op an SSM command of document doc?
func (h *harness) commandOf(doc string, op cloudtest.Op) bool {
	if op.Kind != "command" {
		return false
	}
	for _, c := range h.w.Commands() {
		if c.ID == op.ID {
			return c.Document == doc
		}
	}
	return false
}

var releaseKey = reconcile.Key{Cluster: cluster, Volume: volName}

// An operator's force waits for an unmount that is still running for
// Timing.OperatorGrace, and the chain of passes that follows the Release
// (its hints) forces after it: the Release's own invocation has long ended.
func TestOperatorForceGivesARunningUnmountItsGraceThenForces(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AllowLiveForce()
	t1, v := runningShared(t, h)
	h.w.StopTask(t1, "scaled in")
	sent := func() bool { return len(h.commandsOf(unmountDoc)) > 0 }
	h.settleExcept(h.unmountsOf, 100, sent)

	h.invoke(reconcile.Release{Key: releaseKey, Instance: "i-a", Force: true, Reason: "the flush hangs", Operator: "test"})
	if n := journalHas(h.w.Journal(), "DetachVolume "+v.ID); n != 0 {
		t.Fatalf("forced before the running unmount had its grace: %v", h.w.Journal())
	}
	asked := h.w.Now()
	forced := func() bool { return journalHas(h.w.Journal(), "DetachVolume "+v.ID+" i-a force=true") > 0 }
	h.settleExcept(h.unmountsOf, 200, forced)
	if waited := h.w.Now().Sub(asked); waited > 30*time.Second {
		t.Fatalf("forced %s after the operator asked; want within the grace (20 s) and a pass", waited)
	}
	if got := metricSum(t, h, "ForcedDetachesLive"); got != 1 {
		t.Fatalf("ForcedDetachesLive %v, want 1", got)
	}
	h.noViolations()
}

// A force is refused while the unmount answers that a container on the
// (reachable) host holds the volume: the handoff goes on without force and
// ends with a plain detach once the container let go.
func TestOperatorForceRefusedWhileAContainerHoldsTheVolume(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AllowLiveForce()
	t1, v := runningShared(t, h)
	h.w.AddInstance("i-b", "us-east-1a")
	h.w.BusyUnmount(v.ID, 3)
	h.w.StopTask(t1, "drained")
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.invoke(reconcile.Release{Key: releaseKey, Instance: "i-a", Force: true, Reason: "hurry", Operator: "test"})
	h.settle(300)
	h.noViolations()
	h.wantRunning(t2)
	j := h.w.Journal()
	if journalHas(j, "DetachVolume "+v.ID+" i-a force=true") != 0 {
		t.Fatalf("forced while a container held the volume: %v", j)
	}
	if journalHas(j, "DetachVolume "+v.ID+" i-a force=false ok") != 1 || journalHas(j, "unmount "+v.ID+" i-a exit=3") != 3 {
		t.Fatalf("want three busy unmounts, then a plain detach: %v", j)
	}
}

// A force applies to the instance the operator confirmed: the volume
// attached elsewhere is not forced away from there.
func TestOperatorForceOnlyFromTheInstanceConfirmed(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AllowLiveForce()
	t1, v := runningShared(t, h)
	h.w.SetSSMDown("i-a", true)
	h.w.StopTask(t1, "scaled in")
	h.settle(200)
	h.invoke(reconcile.Release{Key: releaseKey, Instance: "i-0000000000000000f", Force: true, Reason: "wrong host", Operator: "test"})
	h.settle(200)
	if n := journalHas(h.w.Journal(), "DetachVolume "+v.ID); n != 0 {
		t.Fatalf("forced from i-a on a release confirmed for another instance: %v", h.w.Journal())
	}
	h.invoke(reconcile.Release{Key: releaseKey, Instance: "i-a", Force: true, Reason: "host i-a is wedged", Operator: "test"})
	if n := journalHas(h.w.Journal(), "DetachVolume "+v.ID+" i-a force=true"); n != 1 {
		t.Fatalf("want one force detach from i-a: %v", h.w.Journal())
	}
	h.noViolations()
}

// An operator's plain release right after the host refused (a container
// held the volume; the operator has since stopped it) while nothing waits
// for the volume: the answer older than the ask does not count; the
// Release's own pass sends the unmount again (it does not wait out
// BusyWait), and the volume is detached without force.
func TestOperatorReleaseAsksTheHostAgain(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	t1, v := runningShared(t, h)
	h.w.BusyUnmount(v.ID, 2) // the task's STOPPED event and the volume's own pass each unmount once
	h.w.StopTask(t1, "scaled in")
	busy := func() bool { return journalHas(h.w.Journal(), "unmount "+v.ID+" i-a exit=3") > 0 }
	h.settleExcept(func(cloudtest.Op) bool { return false }, 200, busy)
	if n := journalHas(h.w.Journal(), "DetachVolume "+v.ID); n != 0 {
		t.Fatalf("detached after a busy unmount: %v", h.w.Journal())
	}
	sent := len(h.commandsOf(unmountDoc))
	h.invoke(reconcile.Release{Key: releaseKey, Instance: "i-a", Reason: "the backup is done", Operator: "test"})
	if n := len(h.commandsOf(unmountDoc)); n != sent+1 {
		t.Fatalf("the Release's pass sent %d unmounts; want one at once (the busy answer predates the ask)", n-sent)
	}
	h.settle(200)
	h.noViolations()
	j := h.w.Journal()
	if journalHas(j, "unmount "+v.ID+" i-a exit=0") == 0 || journalHas(j, "DetachVolume "+v.ID+" i-a force=false ok") != 1 || journalHas(j, "DetachVolume "+v.ID+" i-a force=true") != 0 {
		t.Fatalf("want the unmount asked again, then a plain detach: %v", j)
	}
}
