package reconcile_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// staleMount sets up the benchmark's stuck handoff (fleet-vol-178): T1 on
// i-a is drained and T2 placed on i-b; a pass attaches the volume to i-b
// for T2 and is slow to send the mount that follows (held before its
// SendCommand) while the attach ends. It returns that pass, T2 and the volume.
func staleMount(t *testing.T, h *harness, shows string) (*held, string, cloudtest.Volume) {
	t.Helper()
	h.w.BlockedDetachShows(shows)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1, v := runningShared(t, h)
	h.w.StopTask(t1, "drain")
	t2 := h.w.PlaceTask(tdShared, "i-b")
	held := h.runUntilHeld(h.w.HoldNext("SSM:SendCommand", mountDoc), 400)
	for _, op := range h.w.Pending() { // the attach the held pass made ends meanwhile
		if op.Kind == "attach" {
			h.w.Complete(op)
		}
	}
	return held, t2, v
}

// failToStart: T2 gives up waiting for its volume (its plugin Mount timed
// out) and ECS stops it; the triggers of its events are returned.
func failToStart(h *harness, task string) []reconcile.Trigger {
	h.w.StopTask(task, "CannotStartContainerError: volume not mounted in time")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: task})
	h.collect()
	var triggers []reconcile.Trigger
	for _, ev := range h.events {
		triggers = append(triggers, h.trigger(ev))
	}
	h.events = nil
	return triggers
}

// A stale mount on the instance the volume was moving to, which runs after
// the volume was released there, must not leave the detach waiting for the
// guest: the agent refuses to mount an attachment an unmount released
// (agentproto.ExitReleased), and the detach ends. Two orders:
// the stale mount sent just before the unmount but run just after it (SSM
// does not order commands), and sent after the DetachVolume (the device is
// still there while EC2 detaches it). And two ways EC2 shows the held-up
// detach: "detaching" (in practice, and in the local world) or "busy".
func TestStaleMountAfterTheReleaseDoesNotStickTheDetach(t *testing.T) {
	for _, order := range []string{"sent before the unmount, run after it", "sent after the detach"} {
		for _, shows := range []string{"detaching", "busy"} {
			t.Run(order+"/"+shows, func(t *testing.T) {
				h := newHarness(t)
				stale, t2, v := staleMount(t, h, shows)
				triggers := failToStart(h, t2)
				if order == "sent before the unmount, run after it" {
					fresh := h.invokeHeld(h.w.HoldNext("SSM:SendCommand", unmountDoc), triggers...)
					if !fresh.stopped() {
						t.Fatalf("no pass unmounted the volume on i-b after its task stopped")
					}
					stale.release() // the mount goes out first...
					h.w.Advance(time.Second)
					fresh.release() // ...then the unmount,
					h.completeCommand(unmountDoc, "i-b")
					h.completeCommand(mountDoc, "i-b") // which runs first.
				} else {
					h.invoke(triggers...)
					h.completeCommand(unmountDoc, "i-b")
					for i := 0; i < 10 && len(h.queue) > 0 && journalHas(h.w.Journal(), "DetachVolume "+v.ID+" i-b") == 0; i++ {
						h.deliverRetry(h.earliestRetry())
					}
					if journalHas(h.w.Journal(), "DetachVolume "+v.ID+" i-b force=false ok") != 1 {
						t.Fatalf("no detach from i-b after the unmount: %v", h.w.Journal())
					}
					stale.release()
					h.completeCommand(mountDoc, "i-b")
				}
				// The stale mount is for the attachment the unmount released:
				// the agent refuses it (a released attachment is only ever
				// detached), so it cannot hold the detach up.
				if journalHas(h.w.Journal(), "mount "+v.ID+" i-b exit=10") != 1 {
					t.Fatalf("the stale mount was not refused as released: %v", h.w.Journal())
				}

				h.settle(400)
				h.noViolations()
				after := h.oneVolume(volName)
				if after.Att != nil || after.State != "available" {
					t.Fatalf("volume not released: %+v attachment %+v", after, after.Att)
				}
				if in := h.w.InstanceState("i-b"); len(in.Mounted) != 0 {
					t.Fatalf("still mounted on i-b: %v", in.Mounted)
				}
				if h.failed != 0 {
					t.Fatalf("%d passes failed", h.failed)
				}
			})
		}
	}
}

// A pass whose reads took longer than Timing.StaleDecision (here: one
// SSM call slowed by 15 s, as throttled retries can) takes no step: what it
// read may be untrue by now. It hands the key back, a fresh pass takes the
// step, and the handoff completes with one unmount and one mount.
func TestPassTooOldToActTakesNoStep(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1, _ := runningShared(t, h)
	unmounts := len(h.commandsOf(unmountDoc))
	h.w.SlowNext("SSM:ListCommands", 15*time.Second)
	h.w.StopTask(t1, "drain")
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(400)
	h.noViolations()
	h.wantRunning(t2)
	if !strings.Contains(h.logs.String(), "pass too old to act on what it read") {
		t.Fatalf("no pass refused to act on an old decision")
	}
	if n := len(h.commandsOf(unmountDoc)) - unmounts; n != 1 {
		t.Fatalf("%d unmount commands for one handoff, want 1", n)
	}
	if n := len(h.commandsOf(mountDoc)); n != 2 {
		t.Fatalf("%d mount commands for two placements, want 2", n)
	}
}

// A pass that judged an attachment released and is slow to detach it
// must not detach the volume's next attachment on the same instance:
// EC2's DetachVolume names the instance, not the attachment. Chaos
// (CHAOS_SEED=7 CHAOS_HANDOFFS=21 CHAOS_KINDS=drain) caught a retry pass
// that read the unmount's result, stalled for seconds, and detached the
// volume from under a new task on that host. Here the stale pass is held
// in its last read before the detach (the mount commands it checks for a
// race) while another pass detaches, and T2 is placed on the same host,
// attached anew and mounted. The harness's clock runs fast (each settle
// step advances it), so StaleDecision is lifted here: the stall in chaos
// was 3.8 s, well inside it, and the attachment itself must decide.
func TestStaleReleaseDoesNotDetachANewerAttachment(t *testing.T) {
	h := newHarness(t, func(c *reconcile.Config) { c.Timing.StaleDecision = time.Hour })
	h.w.AddInstance("i-a", "us-east-1a")
	t1, v := runningShared(t, h)
	h.w.StopTask(t1, "stopped by chaos")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t1})
	stale := h.runUntilHeld(h.w.HoldNext("SSM:ListCommands", mountDoc), 400)
	h.settle(400) // another pass detaches meanwhile
	if journalHas(h.w.Journal(), "DetachVolume "+v.ID+" i-a force=false ok") != 1 {
		t.Fatalf("no detach from i-a while the stale pass waited: %v", h.w.Journal())
	}
	t2 := h.w.PlaceTask(tdShared, "i-a")
	h.settle(400)
	h.wantRunning(t2)
	stale.release()
	h.settle(400)
	h.noViolations()
	h.wantRunning(t2)
	if n := journalHas(h.w.Journal(), "DetachVolume "+v.ID+" i-a"); n != 1 {
		t.Fatalf("%d detaches from i-a, want only the first one (the stale pass detached T2's attachment): %v", n, h.w.Journal())
	}
	if in := h.w.InstanceState("i-a"); len(in.Mounted) != 1 {
		t.Fatalf("T2's volume not mounted on i-a: %v", in.Mounted)
	}
}
