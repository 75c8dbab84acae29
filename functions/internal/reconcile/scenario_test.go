package reconcile_test

import (
	"strings"
	"testing"

	"github.com/tether-ecs/tether/functions/internal/fakeaws"
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

var _ = fakeaws.Op{}
