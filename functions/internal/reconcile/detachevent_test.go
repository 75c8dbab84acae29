package reconcile_test

import (
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// detachAsked runs a handoff from i-a to i-b up to the DetachVolume from
// i-a (the detach itself left pending) and returns the volume and when the
// detach was asked.
func detachAsked(t *testing.T, h *harness) (cloudtest.Volume, time.Time) {
	t.Helper()
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1, v := runningShared(t, h)
	h.w.StopTask(t1, "drain")
	h.w.PlaceTask(tdShared, "i-b")
	detaches := func(op cloudtest.Op) bool { return op.Kind == "detach" }
	h.settleExcept(detaches, 300, func() bool { return journalHas(h.w.Journal(), "DetachVolume "+v.ID+" i-a") > 0 })
	return v, h.w.Now()
}

// completeDetach ends the pending detach of volumeID a second later and
// returns the events it sent.
func completeDetach(t *testing.T, h *harness, volumeID string) []cloudtest.Event {
	t.Helper()
	h.w.Advance(time.Second)
	h.w.Complete(cloudtest.Op{Kind: "detach", ID: volumeID})
	return h.w.TakeEvents()
}

// With EC2's detachVolume event, the handoff goes on when the detach ends:
// the event's pass attaches the volume where it is needed before the
// detach's own look at DescribeVolumes is due, and that look, when it
// comes, finds the chain moved on (no EC2 call).
func TestDetachEventAttachesBeforeThePoll(t *testing.T) {
	h := newHarness(t)
	h.w.SendDetachEvents(true)
	v, asked := detachAsked(t, h)
	evs := completeDetach(t, h, v.ID)
	if len(evs) != 1 || evs[0].Action != "detachVolume" {
		t.Fatalf("EC2 sent %+v, want one detachVolume event", evs)
	}
	polls := len(h.queue)
	h.invoke(h.trigger(evs[0]))
	if journalHas(h.w.Journal(), "AttachVolume "+v.ID+" i-b") != 1 {
		t.Fatalf("the detachVolume event's pass did not attach to i-b: %v", h.w.Journal())
	}
	if d := h.w.Now().Sub(asked); d >= 4*time.Second {
		t.Fatalf("attached %s after the detach was asked; the first poll is due after 4 s", d)
	}
	before := h.w.EC2Calls()
	for ; polls > 0; polls-- {
		h.deliverRetry(h.earliestRetry())
	}
	if n := h.w.EC2Calls() - before; n != 0 {
		t.Fatalf("the detach's polls after the event made %d EC2 calls; the chain had moved on", n)
	}
	h.settle(300)
	h.noViolations()
	if n := journalHas(h.w.Journal(), "AttachVolume "+v.ID+" i-b"); n != 1 {
		t.Fatalf("%d attaches to i-b, want 1", n)
	}
}

// The detach's own retry and EC2's event in one invocation (one SQS batch):
// the pass trusts the event and attaches without reading DescribeVolumes
// (which may still show the detach in progress for a moment).
func TestDetachEventInTheRetrysInvocationSkipsTheLook(t *testing.T) {
	h := newHarness(t)
	h.w.SendDetachEvents(true)
	v, _ := detachAsked(t, h)
	evs := completeDetach(t, h, v.ID)
	if len(h.queue) == 0 {
		t.Fatal("no retry of the detach queued")
	}
	m := h.queue[h.earliestRetry()]
	h.queue = nil
	before := h.w.Calls()["EC2:DescribeVolumes"]
	h.invoke(reconcile.Retry{Key: m.key, Hint: m.hint}, h.trigger(evs[0]))
	if journalHas(h.w.Journal(), "AttachVolume "+v.ID+" i-b") != 1 {
		t.Fatalf("no attach to i-b in the invocation of the retry and the event: %v", h.w.Journal())
	}
	if n := h.w.Calls()["EC2:DescribeVolumes"] - before; n != 0 {
		t.Fatalf("%d DescribeVolumes in that invocation; the event says the detach ended", n)
	}
	h.settle(300)
	h.noViolations()
}
