package reconcile_test

import (
	"testing"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
)

// snapshot-before-delete: a task-scoped volume is snapshotted when its task
// stops and deleted only once the snapshot is complete; snapshots=scheduled
// tags a volume for the stack's Data Lifecycle Manager policy.
func TestSnapshotBeforeDeleteAndScheduledTag(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	td := "arn:aws:ecs:us-east-1:111122223333:task-definition/etl:1"
	h.w.AddTaskDef(cloudtest.TaskDef{ARN: td, Volumes: []cloudtest.DockerVolume{{
		Name: "work", Driver: "tether", Scope: "task",
		DriverOpts: map[string]string{"size": "2", "snapshot-before-delete": "true", "snapshots": "scheduled"}}}})
	task := h.w.PlaceTask(td, "i-a")
	h.settle(300)
	h.wantRunning(task)
	vols := h.w.Volumes()
	if len(vols) != 1 || vols[0].Tags["tether:snapshots"] != cluster || vols[0].Tags["tether:snapshot-before-delete"] != "true" {
		t.Fatalf("volumes %+v: want one tagged for scheduled snapshots and a snapshot before its delete", vols)
	}
	id := vols[0].ID
	h.w.StopTask(task, "done")
	h.settle(400)
	h.noViolations()
	snaps := h.w.Snapshots()
	if len(snaps) != 1 || snaps[0].VolumeID != id || snaps[0].State != "completed" || snaps[0].Tags["tether:final-of"] != id {
		t.Fatalf("snapshots %+v: want one completed snapshot of %s", snaps, id)
	}
	for _, v := range h.w.Volumes() {
		if v.ID == id {
			t.Fatalf("volume %s kept after its snapshot completed", id)
		}
	}
	if j := journalHas(h.w.Journal(), "DeleteVolume "+id+" ok"); j != 1 {
		t.Fatalf("DeleteVolume of %s seen %d times: %v", id, j, h.w.Journal())
	}
}
