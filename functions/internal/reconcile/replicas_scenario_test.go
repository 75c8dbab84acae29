package reconcile_test

import (
	"strings"
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

// A replica is attached for a task only where no other replica of the name
// is: the agent maps the Docker name to the one replica mounted there. Both
// replicas stop; a new task on db-1's instance gets db-0 (the lowest free),
// which is brought there only once db-1 has left.
func TestReplicaWaitsForAnotherReplicaToLeaveItsInstance(t *testing.T) {
	h := newHarness(t)
	h.w.AddTaskDef(cloudtest.TaskDef{ARN: tdReplicas, Volumes: []cloudtest.DockerVolume{{
		Name: "db", Driver: "tether", Scope: "shared", Autoprovision: true,
		DriverOpts: map[string]string{"size": "1", "replicas": "true"},
	}}})
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t0 := h.w.PlaceTask(tdReplicas, "i-a")
	h.w.Advance(1e9)
	t1 := h.w.PlaceTask(tdReplicas, "i-b")
	h.settle(400)
	h.w.StopTask(t0, "scale in")
	h.settle(400) // db-0 released, available
	h.w.StopTask(t1, "scale in")
	t2 := h.w.PlaceTask(tdReplicas, "i-b")
	// t2's events first; t1's STOPPED (which releases db-1) held back.
	h.collect()
	for i := 0; i < len(h.events); {
		if h.events[i].Task == t2 {
			h.deliverEvent(i)
			h.collect()
			continue
		}
		i++
	}
	for range 8 { // a few retries (t2 waits, well within its deadline)
		switch {
		case len(h.w.Pending()) > 0:
			h.w.Complete(h.w.Pending()[0])
		case len(h.queue) > 0:
			h.deliverRetry(h.earliestRetry())
		}
		if v := h.oneVolume("db-0"); v.Att != nil && v.Att.Instance == "i-b" {
			t.Fatalf("db-0 attached to i-b while db-1 is still there")
		}
	}
	h.settle(600)
	h.noViolations()
	_, holder0, at0 := replicaOf(h, "db-0")
	_, _, at1 := replicaOf(h, "db-1")
	if holder0 != t2 || at0 != "i-b" || at1 != "" {
		t.Fatalf("db-0 held by %s on %q, db-1 on %q; want db-0 held by %s on i-b, db-1 detached", holder0, at0, at1, t2)
	}
	// Never both on i-b: db-1's detach from i-b came before db-0's attach there.
	var detach1, attach0 = -1, -1
	for i, line := range h.w.Journal() {
		switch {
		case strings.HasPrefix(line, "DetachVolume "+h.oneVolume("db-1").ID+" i-b"):
			detach1 = i
		case strings.HasPrefix(line, "AttachVolume "+h.oneVolume("db-0").ID+" i-b"):
			attach0 = i
		}
	}
	if detach1 < 0 || attach0 < 0 || attach0 < detach1 {
		t.Fatalf("db-1 detached from i-b at journal line %d, db-0 attached there at %d:\n%s", detach1, attach0, strings.Join(h.w.Journal(), "\n"))
	}
	if h.failed != 0 {
		t.Fatalf("%d passes failed", h.failed)
	}
}
