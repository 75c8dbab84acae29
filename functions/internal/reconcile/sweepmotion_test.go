package reconcile_test

import (
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
)

// A handoff whose events were lost: the process's previous sweep, a minute
// ago, saw the key at rest. This sweep finds it changed (the old task
// gone, a new one pending) and leaves it to its events once, sending and
// changing nothing; the next sweep hands the volume over.
func TestASweepLeavesAKeyItsEventsAreMovingOnce(t *testing.T) {
	h, t2, v := lostHandoff(t)

	h.w.Advance(time.Minute)
	calls := h.w.Calls()
	h.sweep()
	if got := h.w.Calls()["SSM:SendCommand"] - calls["SSM:SendCommand"]; got != 0 {
		t.Fatalf("the sweep that leaves the key sent %d commands", got)
	}
	if len(h.queue) != 0 {
		t.Fatalf("the sweep that leaves the key handed it back: %v", h.queue)
	}
	if n := journalHas(h.w.Journal(), "DetachVolume "+v.ID); n != 0 {
		t.Fatalf("detached by a sweep that leaves the key: %v", h.w.Journal())
	}

	h.w.Advance(time.Minute)
	h.sweep()
	h.settle(400)
	h.noViolations()
	h.wantRunning(t2)
	if n := journalHas(h.w.Journal(), "DetachVolume "+v.ID); n != 1 {
		t.Fatalf("want one detach by the next sweep's chain, got %d: %v", n, h.w.Journal())
	}
}

// The same lost events, but the process's previous sweep is older than
// Timing.SweepMotion: the change may be that old, so the sweep looks at
// the key at once.
func TestASweepLooksAtAKeyChangedSinceAnOldSweep(t *testing.T) {
	h, t2, v := lostHandoff(t)

	h.w.Advance(3 * time.Minute)
	calls := h.w.Calls()
	h.sweep()
	if got := h.w.Calls()["SSM:SendCommand"] - calls["SSM:SendCommand"]; got == 0 {
		t.Fatal("the sweep did not start the release of a key changed since an old sweep")
	}
	h.settle(400)
	h.noViolations()
	h.wantRunning(t2)
	if n := journalHas(h.w.Journal(), "DetachVolume "+v.ID); n != 1 {
		t.Fatalf("want one detach, got %d: %v", n, h.w.Journal())
	}
}

// lostHandoff: a volume at rest on i-a, seen so by a sweep; then its task
// stopped and a new one was placed on i-b, and every event of that was
// lost. It returns the new task and the volume.
func lostHandoff(t *testing.T) (*harness, string, cloudtest.Volume) {
	t.Helper()
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1, v := runningShared(t, h)
	h.sweep() // at rest: looked at, nothing to do
	h.w.StopTask(t1, "drain")
	stopped(h)
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.collect()
	h.events = nil
	return h, t2, v
}

// stopped completes the world's pending task stops.
func stopped(h *harness) {
	h.t.Helper()
	n := 0
	for _, op := range h.w.Pending() {
		if op.Kind == "stop" {
			h.w.Complete(op)
			n++
		}
	}
	if n == 0 {
		h.t.Fatalf("no task stop pending")
	}
}
