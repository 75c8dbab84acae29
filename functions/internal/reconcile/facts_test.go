package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// Issue 11's reconciler findings, each a test that failed before its fix:
// a destructive step rests on a fact tether can show, never on a timer.

// settleHolding is settle, except that ops skip says are never completed
// (an unmount that runs past every timer, say).
func (h *harness) settleHolding(maxSteps int, skip func(cloudtest.Op) bool) {
	h.t.Helper()
	for step := 0; step < maxSteps; step++ {
		h.collect()
		var ops []cloudtest.Op
		for _, op := range h.w.Pending() {
			if !skip(op) {
				ops = append(ops, op)
			}
		}
		switch {
		case len(h.events) > 0:
			h.deliverEvent(0)
		case len(ops) > 0:
			h.w.Advance(time.Second)
			h.w.Complete(ops[0])
		case len(h.queue) > 0:
			h.deliverRetry(h.earliestRetry())
		default:
			return
		}
	}
	h.t.Fatalf("did not settle in %d steps; queue=%v pending=%v", maxSteps, h.queue, h.w.Pending())
}

func unmountOf(h *harness) func(cloudtest.Op) bool {
	return func(op cloudtest.Op) bool {
		if op.Kind != "command" {
			return false
		}
		for _, c := range h.w.Commands() {
			if c.ID == op.ID {
				return c.Document == unmountDoc
			}
		}
		return false
	}
}

// An unmount still running long after it was sent (a database flushing
// gigabytes on a slow volume) was force-detached after 2 minutes. Now the
// new task waits and is stopped past its deadline with a reason that says
// what it waited for, the wait is counted once past the threshold, and the
// volume is detached only after the unmount's own success.
func TestRunningUnmountIsNeverForcedHoweverLong(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1, v := runningShared(t, h)
	h.w.StopTask(t1, "drain")
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settleHolding(400, unmountOf(h))
	for range 10 { // ten more minutes of the unmount running, with sweeps
		h.w.Advance(time.Minute)
		h.sweep()
		h.settleHolding(400, unmountOf(h))
	}
	h.noViolations()
	if n := journalHas(h.w.Journal(), "DetachVolume "+v.ID); n != 0 {
		t.Fatalf("detached while the unmount still runs: %v", h.w.Journal())
	}
	h.wantStoppedBecause(t2, "unmount has run for")
	if got := metricSum(t, h, "WaitsPastThreshold"); got < 1 {
		t.Fatalf("WaitsPastThreshold %v: the long wait was not counted", got)
	}

	h.completeCommand(unmountDoc, "i-a") // the flush ends
	t3 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(400)
	h.noViolations()
	h.wantRunning(t3)
	if n := journalHas(h.w.Journal(), "DetachVolume "+v.ID+" i-a force=true"); n != 0 || metricSum(t, h, "ForcedDetachesLive") != 0 {
		t.Fatalf("forced: %v", h.w.Journal())
	}
}

// An instance EC2 says is stopping or shutting down (its containers may
// still be flushing after SIGTERM) was force-detached at once once ECS
// forgot it. Now tether waits through those states and forces only when
// EC2 says stopped or terminated.
func TestHaltingHostIsWaitedThroughThenForced(t *testing.T) {
	for _, c := range []struct{ halting, halted string }{{"stopping", "stopped"}, {"shutting-down", "terminated"}} {
		t.Run(c.halting, func(t *testing.T) {
			h := newHarness(t)
			h.w.AddInstance("i-a", "us-east-1a")
			h.w.AddInstance("i-b", "us-east-1a")
			_, v := runningShared(t, h)
			h.w.SetInstanceState("i-a", c.halting)
			h.w.ForgetInstance("i-a") // ECS deregisters it; the guest flushes on
			t2 := h.w.PlaceTask(tdShared, "i-b")
			placed := h.w.Now()
			for h.w.Elapsed(placed) < 40*time.Second { // well within the task's deadline
				h.w.Advance(time.Second)
				h.collect()
				for len(h.events) > 0 {
					h.deliverEvent(0)
				}
				if i := h.earliestRetry(); len(h.queue) > 0 && !h.queue[i].due.After(h.w.Now()) {
					h.deliverRetry(i)
				}
			}
			if n := journalHas(h.w.Journal(), "DetachVolume "+v.ID); n != 0 {
				t.Fatalf("detached while EC2 says %s: %v", c.halting, h.w.Journal())
			}
			h.w.SetInstanceState("i-a", c.halted)
			h.settle(400)
			h.noViolations()
			if n := journalHas(h.w.Journal(), "DetachVolume "+v.ID+" i-a force=true ok"); n != 1 {
				t.Fatalf("want one force detach once EC2 says %s: %v", c.halted, h.w.Journal())
			}
			h.wantRunning(t2)
			if metricSum(t, h, "ForcedDetachesGone") != 1 || metricSum(t, h, "ForcedDetachesLive") != 0 {
				t.Fatalf("forced detaches: gone %v, live %v", metricSum(t, h, "ForcedDetachesGone"), metricSum(t, h, "ForcedDetachesLive"))
			}
		})
	}
}

// ECS forgot the instance (deregister --force) while EC2 still runs it, and
// one unmount was undeliverable: tether forced. Now it waits on the live
// host with a deadline on the waiting task; the volume stays put.
func TestECSForgotALiveInstanceAndOneCommandFailedNoForce(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	_, v := runningShared(t, h)
	h.w.ForgetInstance("i-a")
	h.runUntilHeld(h.w.HoldNext("SSM:SendCommand", unmountDoc), 200).release()
	h.w.SetSSMDown("i-a", true) // the unmount sent is not delivered
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(600)
	h.w.Advance(10 * time.Minute)
	h.sweep()
	h.settle(600)
	h.noViolations()
	if n := journalHas(h.w.Journal(), "DetachVolume "+v.ID); n != 0 {
		t.Fatalf("detached from a running instance ECS forgot: %v", h.w.Journal())
	}
	if journalHas(h.w.Journal(), "tether-unmount "+v.ID+" i-a undeliverable") == 0 {
		t.Fatalf("scenario not reproduced: no undeliverable unmount: %v", h.w.Journal())
	}
	h.wantStoppedBecause(t2, "ECS no longer knows it")
}

// A mount sent before the unmount ran after it (SSM does not order
// commands) and mounted the filesystem again; the instance's clock, by which
// SSM reports execution times, is two minutes behind. The old core compared
// those times and reused the unmount's result: it detached while the
// filesystem was mounted. Now a released attachment is never mounted again
// (the agent refuses, agentproto.ExitReleased), so the detach is safe.
func TestUnmountResultNotReusedAfterARemount(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	t1, v := runningShared(t, h)
	h.w.SetClockSkew("i-a", -2*time.Minute)
	// A pass that decided earlier sends a mount (as the reconciler would).
	stale, err := h.w.SSM(mountDoc, unmountDoc).SendCommand(context.Background(), &ssm.SendCommandInput{
		DocumentName: aws.String(mountDoc), InstanceIds: []string{"i-a"}, Comment: aws.String("tether " + v.ID + " " + volName),
		Parameters: map[string][]string{agentproto.ParamVolumeID: {v.ID}, agentproto.ParamVolumeName: {volName},
			agentproto.ParamFSType: {"ext4"}, agentproto.ParamDevice: {v.Att.Device}, agentproto.ParamFormatIfBlank: {"false"},
			agentproto.ParamAttachment: {agentproto.AttachmentToken("i-a", v.Att.Time.UnixMilli())}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.w.Advance(time.Second)
	h.w.StopTask(t1, "scaled in")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t1})
	h.collect()
	for len(h.events) > 0 {
		h.deliverEvent(0)
	}
	h.completeCommand(unmountDoc, "i-a")                                      // the unmount runs first,
	h.w.Complete(cloudtest.Op{Kind: "command", ID: *stale.Command.CommandId}) // then the older mount
	// The older mount is for the attachment the unmount released: the
	// agent refuses it, so the filesystem is not mounted again under the
	// detach (before the fence, it was, and the generations told it).
	if journalHas(h.w.Journal(), "mount "+v.ID+" i-a exit=10") != 1 {
		t.Fatalf("the late mount was not refused as released: %v", h.w.Journal())
	}
	h.settle(400)
	h.noViolations()
	if d := h.w.DetachedWhileMounted(); len(d) != 0 {
		t.Fatalf("detached while the filesystem was mounted again: %v\n%v", d, h.w.Journal())
	}
	if after := h.oneVolume(volName); after.Att != nil || after.State != "available" {
		t.Fatalf("volume not released: %+v", after.Att)
	}
}

// A mount result is not reused after an unmount either: a task placed on
// the host right after the volume was released there gets a new mount
// (the agent's released marker keeps the plugin from remounting it by
// itself); before, the old mount's success was taken as "mounted" and the
// task waited for a mount that never came.
func TestMountResultNotReusedAfterAnUnmount(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	t1, v := runningShared(t, h)
	h.w.StopTask(t1, "scaled in")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t1})
	h.collect()
	for len(h.events) > 0 {
		h.deliverEvent(0)
	}
	t3 := h.w.PlaceTask(tdShared, "i-a") // placed while the unmount runs
	h.completeCommand(unmountDoc, "i-a")
	h.settle(400)
	h.noViolations()
	h.wantRunning(t3)
	if n := journalHas(h.w.Journal(), "mount "+v.ID+" i-a exit=0"); n != 2 {
		t.Fatalf("want a second mount for the new task, got %d: %v", n, h.w.Journal())
	}
	if !strings.HasPrefix(h.w.InstanceState("i-a").Mounted[v.ID], volName) {
		t.Fatalf("not mounted on i-a")
	}
}
