package reconcile_test

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// A shared volume whose next task is placed in another AZ: without
// azmove the task is stopped with a reason that says how to enable the
// move; with azmove=snapshot the volume moves by one snapshot to a volume
// made from it in the task's AZ (its filesystem kept: no second format),
// and the old volume stays, tagged as moved and no longer the key's. Every
// event is delivered twice: one snapshot, one new volume.
func TestVolumeMovesToTheTasksAZBySnapshot(t *testing.T) {
	for _, move := range []bool{false, true} {
		name := map[bool]string{false: "without azmove", true: "azmove=snapshot"}[move]
		t.Run(name, func(t *testing.T) {
			// A long name, as real ones can be: the advice must survive ECS's
			// 255 characters of stopped reason.
			vol := "pgdata-" + strings.Repeat("x", 60)
			h := newHarness(t)
			h.w.AddInstance("i-a", "us-east-1a")
			h.w.AddInstance("i-b", "us-east-1b")
			td := "arn:aws:ecs:us-east-1:111122223333:task-definition/pg:1"
			opts := map[string]string{"volumetype": "gp3", "size": "10", "iops": "4000"}
			if move {
				opts["azmove"] = "snapshot"
			}
			h.w.AddTaskDef(cloudtest.TaskDef{ARN: td, Volumes: []cloudtest.DockerVolume{{
				Name: vol, Driver: "tether", Scope: "shared", Autoprovision: true, DriverOpts: opts}}})
			t1 := h.w.PlaceTask(td, "i-a")
			h.settle(300)
			h.wantRunning(t1)
			old := h.oneVolume(vol)
			formats := len(h.w.Mkfs())

			h.w.StopTask(t1, "moved by the scheduler")
			t2 := h.w.PlaceTask(td, "i-b")
			settleTwice(h, 600)
			h.noViolations()
			if !move {
				h.wantStoppedBecause(t2, "azmove=snapshot")
				if n := len(h.w.Snapshots()); n != 0 {
					t.Fatalf("%d snapshots without azmove", n)
				}
				return
			}
			h.wantRunning(t2)
			if n := len(h.w.Snapshots()); n != 1 {
				t.Fatalf("%d snapshots, want 1: %+v", n, h.w.Snapshots())
			}
			nv := h.oneVolume(vol)
			if nv.ID == old.ID || nv.AZ != "us-east-1b" || nv.Att == nil || nv.Att.Instance != "i-b" || nv.Type != "gp3" || nv.IOPS != 4000 || nv.Tags["tether:moved-from"] != old.ID {
				t.Fatalf("the key's volume after the move: %+v; want a new gp3 4000 IOPS volume in us-east-1b on i-b, moved from %s", nv, old.ID)
			}
			if len(h.w.Mkfs()) != formats {
				t.Fatalf("the moved volume was formatted again: %v", h.w.Mkfs())
			}
			var kept bool
			for _, v := range h.w.Volumes() {
				if v.ID == old.ID {
					kept = v.Tags["tether:moved-to"] == nv.ID && v.Tags["tether:volume"] == "" && v.Tags["tether:moved-name"] == vol && v.Att == nil
				}
			}
			if !kept {
				t.Fatalf("old volume %s not kept, detached and tagged as moved to %s: %+v", old.ID, nv.ID, h.w.Volumes())
			}
			if !strings.Contains(h.logs.String(), "snapshot started") {
				t.Fatal("the move's progress is not logged")
			}
		})
	}
}

// Two passes in two processes may each snapshot the volume for one move
// (EC2's CreateSnapshot takes no client token): the move goes on from the
// oldest and deletes the other.
func TestASecondSnapshotOfOneMoveIsDeleted(t *testing.T) {
	h, _, t2 := moveToOtherAZ(t)
	snapshotted := func() bool { return len(h.w.Snapshots()) > 0 }
	h.settleExcept(func(op cloudtest.Op) bool { return op.Kind == "snapshot" }, 300, snapshotted)
	if !snapshotted() {
		t.Fatal("no snapshot for the move")
	}
	first := h.w.Snapshots()[0]
	// Another process's pass, a moment later.
	h.w.Advance(time.Millisecond)
	var tags []ec2types.Tag
	for k, v := range first.Tags {
		tags = append(tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	if _, err := h.w.EC2().CreateSnapshot(context.Background(), &ec2.CreateSnapshotInput{VolumeId: aws.String(first.VolumeID),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot, Tags: tags}}}); err != nil {
		t.Fatal(err)
	}
	h.settle(600)
	h.noViolations()
	h.wantRunning(t2)
	if s := h.w.Snapshots(); len(s) != 1 || s[0].ID != first.ID {
		t.Fatalf("snapshots %+v: want the first (%s) alone", s, first.ID)
	}
	if v := h.oneVolume("pgdata"); v.AZ != "us-east-1b" {
		t.Fatalf("the key's volume in %s, want us-east-1b", v.AZ)
	}
}

// A pass that decided on a listing older than another pass's snapshot (a
// sweep's, say) snapshots the volume a second time: it finds the older
// snapshot right after its own and deletes its own.
func TestALateSnapshotOfOneMoveDeletesItself(t *testing.T) {
	h, v, t2 := moveToOtherAZ(t)
	held := h.runUntilHeld(h.w.HoldNext("EC2:CreateSnapshot", ""), 400)
	// Another pass's snapshot lands while this one waits to send its own
	// (with the move's mark, which the held pass wrote on the volume).
	mark := h.oneVolume("pgdata").Tags["tether:moving"]
	if mark == "" {
		t.Fatal("the move did not mark the volume before its snapshot")
	}
	tags := []ec2types.Tag{{Key: aws.String("tether:cluster"), Value: aws.String(cluster)}, {Key: aws.String("tether:volume"), Value: aws.String("pgdata")},
		{Key: aws.String("tether:move-of"), Value: aws.String(v.ID)}, {Key: aws.String("tether:move-to"), Value: aws.String("us-east-1b")},
		{Key: aws.String("tether:moving"), Value: aws.String(mark)}}
	other, err := h.w.EC2().CreateSnapshot(context.Background(), &ec2.CreateSnapshotInput{VolumeId: aws.String(v.ID),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot, Tags: tags}}})
	if err != nil {
		t.Fatal(err)
	}
	// ...completes, and another pass makes the new volume from it before
	// the held pass sends its snapshot.
	h.w.Complete(cloudtest.Op{Kind: "snapshot", ID: aws.ToString(other.SnapshotId)})
	h.invoke(reconcile.Retry{Key: reconcile.Key{Cluster: cluster, Volume: "pgdata"}})
	made := false
	for _, nv := range h.keyVolumes("pgdata") {
		made = made || nv.Tags["tether:moved-from"] == v.ID
	}
	if !made {
		t.Fatalf("the key's volumes after the other pass: %+v; want a new one made from %s", h.keyVolumes("pgdata"), v.ID)
	}
	held.release()
	h.settle(600)
	h.noViolations()
	h.wantRunning(t2)
	if s := h.w.Snapshots(); len(s) != 1 || s[0].ID != aws.ToString(other.SnapshotId) {
		t.Fatalf("snapshots %+v: want the other pass's (%s) alone", s, aws.ToString(other.SnapshotId))
	}
}

// A task in the volume's own AZ takes it while its move's snapshot is
// being taken (chaos seed 20261212): the attach first deletes the move's
// snapshot and mark, since it would miss what that task writes; once the
// task stops, the move starts again from a new snapshot, taken after the
// volume's last use. Without this the move made the new volume from the
// first snapshot and lost the second task's writes.
func TestAMoveSnapshotTakenBeforeTheVolumesLastUseIsNotUsed(t *testing.T) {
	h, v, t2 := moveToOtherAZ(t)
	snapshotted := func() bool { return len(h.w.Snapshots()) > 0 }
	h.settleExcept(func(op cloudtest.Op) bool { return op.Kind == "snapshot" }, 300, snapshotted)
	first := h.w.Snapshots()[0]
	if first.Tags["tether:moving"] == "" || h.oneVolume("pgdata").Tags["tether:moving"] != first.Tags["tether:moving"] {
		t.Fatalf("the move's snapshot %+v and its volume do not carry the same mark", first)
	}
	td := "arn:aws:ecs:us-east-1:111122223333:task-definition/pg:1"
	t3 := h.w.PlaceTask(td, "i-a") // in the volume's own AZ: served first
	h.settleExcept(func(op cloudtest.Op) bool { return op.Kind == "snapshot" }, 300, func() bool {
		for _, task := range h.w.Tasks() {
			if task.ARN == t3 {
				return task.LastStatus == "RUNNING"
			}
		}
		return false
	})
	for _, s := range h.w.Snapshots() {
		if s.ID == first.ID {
			t.Fatalf("the move's snapshot %s outlived the volume's attach to a task in its own AZ", first.ID)
		}
	}
	if got := h.oneVolume("pgdata"); got.ID != v.ID || got.Tags["tether:moving"] != "" || got.Att == nil || got.Att.Instance != "i-a" {
		t.Fatalf("the volume after the own-AZ attach: %+v; want %s on i-a without the move's mark", got, v.ID)
	}
	h.w.StopTask(t3, "done")
	stopped := h.w.Now()
	h.settle(600)
	h.noViolations()
	h.wantRunning(t2)
	snaps := h.w.Snapshots()
	if len(snaps) != 1 || snaps[0].ID == first.ID || snaps[0].Started.Before(stopped) {
		t.Fatalf("snapshots %+v; want one new snapshot, taken after the own-AZ task stopped (%s)", snaps, stopped.Format(time.TimeOnly))
	}
	if nv := h.oneVolume("pgdata"); nv.AZ != "us-east-1b" || nv.Tags["tether:moved-from"] != v.ID || nv.Tags["tether:moving"] != "" {
		t.Fatalf("the key's volume after the move: %+v", nv)
	}
}

// EBS fails the move's new volume after CreateVolume returned (chaos seed
// 20261212: a KMS key in the wrong state): the old volume stays the key's,
// never marked moved, so no empty volume is made for the key; the move
// tries again with the next client token and the task gets the data.
func TestAMoveWhoseNewVolumeEBSFailsKeepsTheOldOne(t *testing.T) {
	h, v, t2 := moveToOtherAZ(t)
	snapshotted := func() bool { return len(h.w.Snapshots()) > 0 }
	h.settleExcept(func(op cloudtest.Op) bool { return op.Kind == "snapshot" }, 300, snapshotted)
	h.w.FailNextCreates(1)
	h.settle(600)
	h.noViolations()
	h.wantRunning(t2)
	if old := h.volume(v.ID); old.Tags["tether:moved-to"] == "" || old.Tags["tether:volume"] != "" {
		t.Fatalf("old volume's tags after the move: %v; want it marked moved", old.Tags)
	}
	nv := h.oneVolume("pgdata")
	if nv.AZ != "us-east-1b" || nv.Tags["tether:moved-from"] != v.ID || !nv.Formatted {
		t.Fatalf("the key's volume after the move: %+v; want one made from %s's snapshot in us-east-1b", nv, v.ID)
	}
	if n := len(h.w.Mkfs()); n != 1 {
		t.Fatalf("%d formats: the key got an empty volume (%v)", n, h.w.Mkfs())
	}
}

// moveToOtherAZ runs a task with an azmove=snapshot volume on i-a
// (us-east-1a), stops it and places the next on i-b (us-east-1b): the
// volume before the move, and the next task.
func moveToOtherAZ(t *testing.T) (*harness, cloudtest.Volume, string) {
	t.Helper()
	return moveToOtherAZWith(t, nil)
}

// moveToOtherAZWith is moveToOtherAZ with more driverOpts.
func moveToOtherAZWith(t *testing.T, extra map[string]string) (*harness, cloudtest.Volume, string) {
	t.Helper()
	opts := map[string]string{"size": "2", "azmove": "snapshot"}
	maps.Copy(opts, extra)
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1b")
	td := "arn:aws:ecs:us-east-1:111122223333:task-definition/pg:1"
	h.w.AddTaskDef(cloudtest.TaskDef{ARN: td, Volumes: []cloudtest.DockerVolume{{
		Name: "pgdata", Driver: "tether", Scope: "shared", Autoprovision: true, DriverOpts: opts}}})
	t1 := h.w.PlaceTask(td, "i-a")
	h.settle(300)
	h.wantRunning(t1)
	v := h.oneVolume("pgdata")
	h.w.StopTask(t1, "moved")
	return h, v, h.w.PlaceTask(td, "i-b")
}

// A pass that decided to attach the key's volume and takes its step after
// another pass moved that volume to another AZ (chaos seed 20261214: a
// slow pass, throttled, acts up to Timing.StaleDecision after its reads)
// must not attach the old volume: the key would be served from two. The
// volume is read again right before the attach, and the pass looks again.
func TestAStalePassDoesNotAttachAVolumeMovedMeanwhile(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1b")
	td := "arn:aws:ecs:us-east-1:111122223333:task-definition/pg:1"
	h.w.AddTaskDef(cloudtest.TaskDef{ARN: td, Volumes: []cloudtest.DockerVolume{{
		Name: "pgdata", Driver: "tether", Scope: "shared", Autoprovision: true, DriverOpts: map[string]string{"size": "2", "azmove": "snapshot"}}}})
	t1 := h.w.PlaceTask(td, "i-a")
	h.settle(300)
	h.wantRunning(t1)
	old := h.oneVolume("pgdata")
	h.w.StopTask(t1, "done")
	h.settle(300)
	if v := h.oneVolume("pgdata"); v.Att != nil {
		t.Fatalf("the volume stayed attached after its task stopped: %+v", v.Att)
	}

	// A task in the volume's AZ: its pass decides to attach, and waits
	// before its step (held at the instance's device names).
	t3, stale := heldBeforeAttach(t, h, td, "i-a", "the new task's")
	// Meanwhile that task goes, one in the other AZ comes, and other
	// passes move the volume there.
	h.w.StopTask(t3, "gone")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t3})
	t2 := h.w.PlaceTask(td, "i-b")
	h.settle(600)
	h.wantRunning(t2)
	if nv := h.oneVolume("pgdata"); nv.ID == old.ID || nv.Tags["tether:moved-from"] != old.ID {
		t.Fatalf("the key's volume: %+v; want the one moved from %s", nv, old.ID)
	}
	releaseWantNotAttached(t, h, stale, old.ID)
}

// The same with the waiting task of a definition that does not ask for
// moves (chaos seed 20261215): another task's pass had begun a move when
// the stale pass read the volume (its mark was on it), and other passes
// finished a move while it waited. The volume is read again before the
// attach whenever a move may be under way, whatever the waiting task's
// driverOpts.
func TestAStalePassOfATaskWithoutAZMoveDoesNotAttachAVolumeMovedMeanwhile(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1b")
	movable := "arn:aws:ecs:us-east-1:111122223333:task-definition/pg:1"
	plain := "arn:aws:ecs:us-east-1:111122223333:task-definition/pg-plain:1"
	for td, opts := range map[string]map[string]string{movable: {"size": "2", "azmove": "snapshot"}, plain: {"size": "2"}} {
		h.w.AddTaskDef(cloudtest.TaskDef{ARN: td, Volumes: []cloudtest.DockerVolume{{
			Name: "pgdata", Driver: "tether", Scope: "shared", Autoprovision: true, DriverOpts: opts}}})
	}
	t1 := h.w.PlaceTask(movable, "i-a")
	h.settle(300)
	h.wantRunning(t1)
	old := h.oneVolume("pgdata")
	h.w.StopTask(t1, "done")
	h.settle(300)

	// A task in the other AZ: its pass begins the move (the snapshot
	// pends; the mark is on the volume).
	t2 := h.w.PlaceTask(movable, "i-b")
	for _, ev := range h.w.TakeEvents() {
		if ev.Kind == "task" && ev.Task == t2 {
			h.invoke(h.trigger(ev))
		}
	}
	marked := false
	for _, v := range h.w.Volumes() {
		marked = marked || v.ID == old.ID && v.Tags["tether:moving"] != ""
	}
	if !marked {
		t.Fatal("the move did not begin: no mark on the volume")
	}
	// A task of the plain definition in the volume's AZ: its pass reads
	// the marked volume, decides to attach, and waits before its step.
	t3, stale := heldBeforeAttach(t, h, plain, "i-a", "the plain task's")
	h.w.StopTask(t3, "gone")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t3})
	h.settle(600)
	h.wantRunning(t2)
	releaseWantNotAttached(t, h, stale, old.ID)
}

// heldBeforeAttach places a task of td on inst and runs the pass of its
// event until it has decided to attach the key's volume and waits before
// its step (held at the instance's device names): a stale pass.
func heldBeforeAttach(t *testing.T, h *harness, td, inst, whose string) (string, *held) {
	t.Helper()
	task := h.w.PlaceTask(td, inst)
	var placed reconcile.Trigger
	for _, ev := range h.w.TakeEvents() {
		if ev.Kind == "task" && ev.Task == task {
			placed = h.trigger(ev)
		}
	}
	stale := h.invokeHeld(h.w.HoldNext("EC2:DescribeInstances", ""), placed)
	select {
	case <-stale.hold.Reached():
	default:
		t.Fatal(whose + " pass did not get to its attach")
	}
	return task, stale
}

// releaseWantNotAttached lets the stale pass go on, fails if it attached
// the moved volume, then settles the world and checks it.
func releaseWantNotAttached(t *testing.T, h *harness, stale *held, moved string) {
	t.Helper()
	stale.release()
	for _, v := range h.w.Volumes() {
		if v.ID == moved && v.Att != nil {
			t.Fatalf("the stale pass attached the moved volume %s to %s", v.ID, v.Att.Instance)
		}
	}
	h.settle(300)
	h.noViolations()
}
