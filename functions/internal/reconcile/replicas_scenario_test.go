package reconcile_test

import (
	"testing"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
)

const tdReplicas = "arn:aws:ecs:us-east-1:111122223333:task-definition/db:1"

// replicaOf: the replica volume named name, its holder, its instance.
func replicaOf(h *harness, name string) (id, holder, instance string) {
	h.t.Helper()
	v := h.oneVolume(name)
	if v.Tags["tether:replica-of"] != "db" || v.Tags["Name"] != name {
		h.t.Fatalf("%s: tags %v", name, v.Tags)
	}
	if v.Att != nil && v.Att.State == "attached" {
		instance = v.Att.Instance
	}
	return v.ID, v.Tags["tether:replica-task"], instance
}

// Two replicas get db-0 (the older task) and db-1, each created in its
// task's AZ, held by its task, attached and mounted (as db-<N>) where it
// runs. The task of db-0 stops (a drain); its replacement waits for db-0
// rather than take a new ordinal, and gets the same volume; db-1 stays.
// Every event is delivered twice, the second time after the first's passes.
func TestReplicasGetTheirOwnVolumesAndKeepThemAcrossADrain(t *testing.T) {
	h := newHarness(t)
	h.w.AddTaskDef(cloudtest.TaskDef{ARN: tdReplicas, Volumes: []cloudtest.DockerVolume{{
		Name: "db", Driver: "tether", Scope: "shared", Autoprovision: true,
		DriverOpts: map[string]string{"size": "1", "Replicas": "true"},
	}}})
	for _, in := range []string{"i-a", "i-b", "i-c"} {
		h.w.AddInstance(in, "us-east-1a")
	}
	t0 := h.w.PlaceTask(tdReplicas, "i-a")
	h.w.Advance(1e9)
	t1 := h.w.PlaceTask(tdReplicas, "i-b")
	settleTwice(h, 400)
	h.noViolations()
	id0, holder0, at0 := replicaOf(h, "db-0")
	id1, holder1, at1 := replicaOf(h, "db-1")
	if holder0 != t0 || at0 != "i-a" || holder1 != t1 || at1 != "i-b" {
		t.Fatalf("db-0 held by %s on %s, db-1 by %s on %s; want %s on i-a, %s on i-b", holder0, at0, holder1, at1, t0, t1)
	}
	names := map[string]string{}
	for _, c := range h.commandsOf(mountDoc) {
		names[c.Params["VolumeId"]] = c.Params["VolumeName"]
	}
	if names[id0] != "db-0" || names[id1] != "db-1" {
		t.Fatalf("mounted as %v", names)
	}

	h.w.Drain("i-a")
	h.w.StopTask(t0, "drain")
	t2 := h.w.PlaceTask(tdReplicas, "i-c")
	settleTwice(h, 600)
	h.noViolations()
	id0b, holder0b, at0b := replicaOf(h, "db-0")
	id1b, holder1b, at1b := replicaOf(h, "db-1")
	if id0b != id0 || holder0b != t2 || at0b != "i-c" {
		t.Fatalf("after the drain db-0 is %s held by %s on %s; want %s held by %s on i-c", id0b, holder0b, at0b, id0, t2)
	}
	if id1b != id1 || holder1b != t1 || at1b != "i-b" {
		t.Fatalf("db-1 moved: %s held by %s on %s", id1b, holder1b, at1b)
	}
	if vs := h.keyVolumes("db-2"); len(vs) != 0 {
		t.Fatalf("a third replica was made: %+v", vs)
	}
	if h.failed != 0 {
		t.Fatalf("%d passes failed", h.failed)
	}
}

// settleTwice settles, then delivers every event of the run again (late
// duplicates) and settles again.
func settleTwice(h *harness, steps int) {
	h.t.Helper()
	var seen []cloudtest.Event
	for step := 0; ; step++ {
		if step == steps {
			h.t.Fatalf("did not settle in %d steps", steps)
		}
		h.collect()
		switch {
		case len(h.events) > 0:
			seen = append(seen, h.events[0])
			h.deliverEvent(0)
			continue
		case len(h.w.Pending()) > 0:
			h.w.Advance(1e9)
			h.w.Complete(h.w.Pending()[0])
			continue
		case len(h.queue) > 0:
			h.deliverRetry(h.earliestRetry())
			continue
		}
		break
	}
	h.events = append(h.events, seen...)
	h.settle(steps)
}
