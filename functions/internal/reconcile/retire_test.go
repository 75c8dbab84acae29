package reconcile_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
)

// movedWith runs a task with an azmove=snapshot volume (plus extra
// driverOpts) on i-a (us-east-1a), stops it, places the next on i-b
// (us-east-1b) and settles: the old volume, the new one and the next task.
func movedWith(t *testing.T, extra map[string]string) (*harness, cloudtest.Volume, cloudtest.Volume, string) {
	t.Helper()
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1b")
	td := "arn:aws:ecs:us-east-1:111122223333:task-definition/pg:1"
	opts := map[string]string{"size": "2", "azmove": "snapshot"}
	for k, v := range extra {
		opts[k] = v
	}
	h.w.AddTaskDef(cloudtest.TaskDef{ARN: td, Volumes: []cloudtest.DockerVolume{{
		Name: "pgdata", Driver: "tether", Scope: "shared", Autoprovision: true, DriverOpts: opts}}})
	t1 := h.w.PlaceTask(td, "i-a")
	h.settle(300)
	h.wantRunning(t1)
	old := h.oneVolume("pgdata")
	h.w.StopTask(t1, "moved")
	t2 := h.w.PlaceTask(td, "i-b")
	h.settle(600)
	h.noViolations()
	h.wantRunning(t2)
	nv := h.oneVolume("pgdata")
	if nv.ID == old.ID || nv.AZ != "us-east-1b" || nv.Att == nil {
		t.Fatalf("after the move: %+v, want a new volume attached in us-east-1b", nv)
	}
	if n := len(h.moveSnapshots(old.ID)); n != 1 {
		t.Fatalf("%d move snapshots of %s, want 1", n, old.ID)
	}
	return h, h.volume(old.ID), nv, t2
}

// volume is the world's volume id (State "" when EC2 no longer has it).
func (h *harness) volume(id string) cloudtest.Volume {
	for _, v := range h.w.Volumes() {
		if v.ID == id {
			return v
		}
	}
	return cloudtest.Volume{ID: id}
}

func (h *harness) moveSnapshots(of string) []cloudtest.Snapshot {
	var out []cloudtest.Snapshot
	for _, s := range h.w.Snapshots() {
		if s.Tags["tether:move-of"] == of {
			out = append(out, s)
		}
	}
	return out
}

// sweepAfter moves the clock on by d and sweeps the cluster, then lets
// what the sweep started settle.
func (h *harness) sweepAfter(d time.Duration) {
	h.t.Helper()
	h.w.Advance(d)
	h.sweep()
	h.settle(300)
	h.noViolations()
}

// Without azmove-delete-after a move's old volume is kept, however long
// the new one has been in use: no tag asks for its deletion, no sweep
// deletes it.
func TestAMovedVolumeIsKeptWithoutDeleteAfter(t *testing.T) {
	h, old, nv, t2 := movedWith(t, nil)
	if _, ok := old.Tags["tether:delete-after"]; ok || old.Tags["tether:moved-at"] != "" {
		t.Fatalf("old volume tagged for deletion without the option: %v", old.Tags)
	}
	for range 3 {
		h.sweepAfter(10000 * time.Hour)
	}
	h.wantRunning(t2)
	if v := h.volume(old.ID); v.State != "available" || v.Tags["tether:moved-to"] != nv.ID {
		t.Fatalf("old volume %s after the sweeps: %+v, want it kept (available, moved to %s)", old.ID, v, nv.ID)
	}
	if n := len(h.moveSnapshots(old.ID)); n != 1 {
		t.Fatalf("%d move snapshots after the sweeps, want the move's one kept", n)
	}
	if strings.Contains(h.logs.String(), "moved volume deleted") {
		t.Fatal("a deletion is logged")
	}
}

// With azmove-delete-after=24h the old volume is tagged with when it moved
// and the delay; sweeps before the delay keep it; the first sweep after it
// deletes it and the move's snapshot (logged, counted) and leaves the new
// volume, in use, alone; a later sweep finds nothing more to do.
func TestAMovedVolumeIsDeletedAfterTheDelayOnceTheNewOneIsInUse(t *testing.T) {
	h, old, nv, t2 := movedWith(t, map[string]string{"azmove-delete-after": "24h"})
	at, err := time.Parse(time.RFC3339, old.Tags["tether:moved-at"])
	if err != nil || old.Tags["tether:delete-after"] != "24h0m0s" || old.Tags["tether:moved-to"] != nv.ID {
		t.Fatalf("old volume's tags %v: want moved-to %s, moved-at (RFC 3339) and delete-after 24h0m0s", old.Tags, nv.ID)
	}
	if d := h.w.Now().Sub(at); d < 0 || d > time.Hour {
		t.Fatalf("moved-at %s, now %s", at, h.w.Now())
	}
	for _, v := range h.w.Volumes() {
		if v.ID != old.ID && v.Tags["tether:delete-after"] != "" {
			t.Fatalf("volume %s carries tether:delete-after: %v", v.ID, v.Tags)
		}
	}

	h.sweepAfter(at.Add(24*time.Hour - time.Minute).Sub(h.w.Now()))
	if v := h.volume(old.ID); v.State != "available" || len(h.moveSnapshots(old.ID)) != 1 {
		t.Fatalf("a minute before the delay: old volume %+v, snapshots %v; want both kept", v, h.moveSnapshots(old.ID))
	}

	h.sweepAfter(2 * time.Minute)
	if v := h.volume(old.ID); v.State != "" && v.State != "deleting" {
		t.Fatalf("after the delay: old volume %+v, want it deleted", v)
	}
	if s := h.moveSnapshots(old.ID); len(s) != 0 {
		t.Fatalf("after the delay: move snapshots %+v, want none", s)
	}
	h.wantRunning(t2)
	if v := h.volume(nv.ID); v.State != "in-use" || v.Att == nil || v.Att.Instance != "i-b" || v.Tags["tether:volume"] != "pgdata" {
		t.Fatalf("new volume after the old one's deletion: %+v, want it untouched (in use on i-b)", v)
	}
	if !strings.Contains(h.metrics.String(), `"MovedVolumesDeleted"`) {
		t.Fatal("no MovedVolumesDeleted metric")
	}
	logged := strings.Count(h.logs.String(), "moved volume deleted")
	if logged != 1 {
		t.Fatalf("deletion logged %d times, want once", logged)
	}

	// Idempotent: the volume gone (or going), a later sweep does nothing more.
	h.sweepAfter(time.Hour)
	if n := strings.Count(h.logs.String(), "moved volume deleted"); n != logged {
		t.Fatalf("a later sweep deleted again (%d deletions logged)", n)
	}
	if strings.Contains(h.logs.String(), "could not delete the moved volume") {
		t.Fatalf("a sweep failed to retire:\n%s", tail(h.logs.String(), 20))
	}
}

// The new volume not in use (its task stopped, tether released it): the
// old one is kept after the delay, until the new one is in use again.
func TestAMovedVolumeIsKeptWhileTheNewOneIsNotInUse(t *testing.T) {
	h, old, nv, t2 := movedWith(t, map[string]string{"azmove-delete-after": "1h"})
	h.w.StopTask(t2, "scaled to zero")
	h.settle(600)
	h.noViolations()
	if v := h.volume(nv.ID); v.Att != nil || v.State != "available" {
		t.Fatalf("new volume after its task stopped: %+v, want it released", v)
	}
	for range 2 {
		h.sweepAfter(48 * time.Hour)
	}
	if v := h.volume(old.ID); v.State != "available" || len(h.moveSnapshots(old.ID)) != 1 {
		t.Fatalf("old volume %+v, snapshots %v: want both kept while the new volume is not in use", v, h.moveSnapshots(old.ID))
	}
	// In use again (in its AZ): the next sweep retires the old one.
	td := "arn:aws:ecs:us-east-1:111122223333:task-definition/pg:1"
	t3 := h.w.PlaceTask(td, "i-b")
	h.settle(600)
	h.wantRunning(t3)
	h.sweepAfter(time.Minute)
	if v := h.volume(old.ID); v.State != "" && v.State != "deleting" {
		t.Fatalf("old volume %+v once the new one is in use again, want it deleted", v)
	}
	if v := h.volume(nv.ID); v.State != "in-use" {
		t.Fatalf("new volume %+v, want it in use", v)
	}
}

// A move whose retag of the old volume failed (here: throttled once) is
// finished by a later pass that lists the key's volumes (settleMoves),
// which does not know the task's driverOpts: it reads the delay from the
// move's snapshot, so the old volume still carries it and is retired
// after it. (While the new volume's task runs, passes decide from ECS
// alone and leave the retag for the next pass that lists the volumes:
// here, the release when that task stops.)
func TestAnInterruptedMoveKeepsItsDelay(t *testing.T) {
	h, v, t2 := moveToOtherAZWith(t, map[string]string{"azmove-delete-after": "2h"})
	snapshotted := func() bool { return len(h.w.Snapshots()) > 0 }
	h.settleExcept(func(op cloudtest.Op) bool { return op.Kind == "snapshot" }, 300, snapshotted)
	if s := h.w.Snapshots(); len(s) != 1 || s[0].Tags["tether:delete-after"] != "2h0m0s" {
		t.Fatalf("the move's snapshot %+v: want one, carrying tether:delete-after=2h0m0s", s)
	}
	// The retag refused once: it is done again before the new volume's
	// attach, with the delay the snapshot carries.
	h.w.Throttle("EC2:CreateTags", 1)
	h.settle(600)
	h.noViolations()
	h.wantRunning(t2)
	h.w.StopTask(t2, "scaled to zero")
	h.settle(600)
	h.noViolations()
	old := h.volume(v.ID)
	if old.Tags["tether:delete-after"] != "2h0m0s" || old.Tags["tether:moved-at"] == "" || old.Tags["tether:moved-to"] == "" {
		t.Fatalf("old volume's tags once a pass finished the move: %v; want moved-to, moved-at and delete-after 2h0m0s", old.Tags)
	}
	td := "arn:aws:ecs:us-east-1:111122223333:task-definition/pg:1"
	t3 := h.w.PlaceTask(td, "i-b")
	h.settle(600)
	h.wantRunning(t3)
	h.sweepAfter(2 * time.Hour)
	if v := h.volume(v.ID); v.State != "" && v.State != "deleting" {
		t.Fatalf("old volume %+v after the delay, want it deleted", v)
	}
}
