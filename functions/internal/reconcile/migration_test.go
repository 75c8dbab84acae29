package reconcile_test

import (
	"context"
	"testing"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// adoptByOperator tags a volume as `tether adopt` does, with the
// operator's credentials (the functions may not).
func adoptByOperator(t *testing.T, h *harness, volumeID, name string) {
	t.Helper()
	tags := reconcile.AdoptionTags(reconcile.Key{Cluster: cluster, Volume: name}, h.w.Now())
	if _, ok := tags["tether:blank"]; ok {
		t.Fatalf("adoption tags %v grant a format", tags)
	}
	if err := h.c.TagVolume(context.Background(), volumeID, tags); err != nil {
		t.Fatal(err)
	}
}

// Migration from REX-Ray: the task definition changes only its driver
// (autoprovision true), and a volume with the name exists that tether does
// not own. tether creates no second, empty volume: the task stops with a
// reason naming `tether adopt`; once an operator adopted the volume, the
// next task gets it, with its data (never a format grant).
func TestAutoprovisionNeverShadowsAVolumeTetherDoesNotOwn(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	rexray := h.w.AddVolume("us-east-1a", map[string]string{"Name": volName})

	first := h.w.PlaceTask(tdShared, "i-a")
	h.settle(300)
	h.noViolations()
	h.wantStoppedBecause(first, "tether adopt "+rexray+" --name "+volName+" --cluster "+cluster)
	j := h.w.Journal()
	if journalHas(j, "CreateVolume") != 0 || journalHas(j, "AttachVolume") != 0 || journalHas(j, "CreateTags") != 0 {
		t.Fatalf("created, attached or tagged beside a volume tether does not own: %v", j)
	}
	if metricSum(t, h, "TasksStopped") != 1 {
		t.Fatalf("TasksStopped %v, want 1", metricSum(t, h, "TasksStopped"))
	}

	adoptByOperator(t, h, rexray, volName)
	second := h.w.PlaceTask(tdShared, "i-a")
	h.settle(300)
	h.noViolations()
	h.wantRunning(second)
	if v := h.oneVolume(volName); v.ID != rexray {
		t.Fatalf("served %s, want the adopted %s", v.ID, rexray)
	}
	for _, c := range h.commandsOf(mountDoc) {
		if c.Params["FormatIfBlank"] != "false" {
			t.Fatalf("the adopted volume's mount was granted a format: %v", c.Params)
		}
	}
	if n := journalHas(h.w.Journal(), "CreateVolume"); n != 0 {
		t.Fatalf("%d volumes created", n)
	}
}

// Another cluster's tether volume with the same Name is not this cluster's
// to adopt, nor in the way: autoprovision creates this cluster's own.
// Two volumes of the name that tether does not own: tether will not choose.
func TestOtherOwnersOfTheName(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddVolume("us-east-1a", map[string]string{"Name": volName, "tether:cluster": "other", "tether:volume": volName, "tether:scope": "shared"})
	task := h.w.PlaceTask(tdShared, "i-a")
	h.settle(300)
	h.noViolations()
	h.wantRunning(task)
	if v := h.oneVolume(volName); v.Tags["tether:cluster"] != cluster {
		t.Fatalf("served %+v", v)
	}

	td := "arn:aws:ecs:us-east-1:111122223333:task-definition/twice:1"
	h.w.AddTaskDef(cloudtest.TaskDef{ARN: td, Volumes: []cloudtest.DockerVolume{{Name: "twice", Driver: "tether", Scope: "shared", Autoprovision: true}}})
	h.w.AddVolume("us-east-1a", map[string]string{"Name": "twice"})
	h.w.AddVolume("us-east-1a", map[string]string{"Name": "twice"})
	stopped := h.w.PlaceTask(td, "i-a")
	h.settle(300)
	h.wantStoppedBecause(stopped, "none is tether's")
	if len(h.keyVolumes("twice")) != 0 {
		t.Fatalf("created a volume beside two it does not own")
	}
}
