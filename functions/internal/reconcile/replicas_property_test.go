package reconcile_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
)

// replicaModel: a service of replicas of "db" (replicas=true), placed
// distinctInstance on the property model's instances, under every action
// of the property model (lost, duplicate, late events, stale and
// concurrent passes, sweeps).
type replicaModel struct {
	*model
	live    map[string]string // desired-RUNNING replica task -> instance
	maxLive int               // most replicas not STOPPED at once
}

func newReplicaModel(rt *rapid.T) *replicaModel {
	m := &replicaModel{model: newModel(rt), live: map[string]string{}}
	m.h.w.AddTaskDef(cloudtest.TaskDef{ARN: tdReplicas, Volumes: []cloudtest.DockerVolume{{
		Name: "db", Driver: "tether", Scope: "shared", Autoprovision: true,
		DriverOpts: map[string]string{"size": "1", "replicas": "true"},
	}}})
	return m
}

func (m *replicaModel) countLive() {
	n := 0
	for _, t := range m.h.w.Tasks() {
		if t.TaskDef == tdReplicas && t.LastStatus != "STOPPED" {
			n++
		}
	}
	m.maxLive = max(m.maxLive, n)
}

func (m *replicaModel) actions() map[string]func(*rapid.T) {
	acts := m.model.actions()
	for _, k := range []string{"placeShared", "handoff", "stopShared", "placeScratch", "stopScratch"} {
		delete(acts, k)
	}
	acts["placeReplica"] = func(t *rapid.T) {
		var free []string
		for _, id := range instances {
			if !slices.Contains(mapsValues(m.live), id) && m.h.w.InstanceState(id).State == "running" {
				free = append(free, id)
			}
		}
		if len(m.live) >= 2 || len(free) == 0 {
			t.Skip("enough replicas")
		}
		in := rapid.SampledFrom(free).Draw(t, "instance")
		m.live[m.h.w.PlaceTask(tdReplicas, in)] = in
		m.countLive()
	}
	acts["stopReplica"] = func(t *rapid.T) {
		if len(m.live) == 0 {
			t.Skip("no replica")
		}
		arns := mapsKeys(m.live)
		slices.Sort(arns)
		arn := rapid.SampledFrom(arns).Draw(t, "replica")
		m.h.w.StopTask(arn, "drain or scale-in")
		delete(m.live, arn)
	}
	acts[""] = func(t *rapid.T) {
		m.h.w.CompleteOverdue(60e9)
		m.h.collect()
		m.h.noViolations()
		m.countLive()
		m.checkHeld(t, false)
	}
	return acts
}

// checkHeld: at every step, no replica is mounted on two instances (each
// instance runs at most one replica task, so a replica mounted twice would
// be one ordinal for two tasks), and no instance has two replicas attached
// (the agent could not tell which is its task's). Once settled: every live replica task is
// named by exactly one replica volume, attached and mounted where it runs
// (so ordinals are distinct), and no more volumes were made than replicas
// were ever alive at once (freed ordinals are taken again, never a new one).
func (m *replicaModel) checkHeld(t *rapid.T, settled bool) {
	h := m.h
	mountedAt := map[string][]string{} // volume id -> instances where db-N is mounted
	for _, id := range instances {
		for vid, name := range h.w.InstanceState(id).Mounted {
			if strings.HasPrefix(name, "db-") {
				mountedAt[vid] = append(mountedAt[vid], id)
			}
		}
	}
	holders := map[string]string{} // live task -> volume name it holds
	var vols []cloudtest.Volume
	onInstance := map[string]string{} // instance -> the replica attached there
	for _, v := range h.w.Volumes() {
		if v.Tags["tether:replica-of"] != "db" {
			continue
		}
		vols = append(vols, v)
		if v.Att != nil {
			if other, two := onInstance[v.Att.Instance]; two {
				t.Fatalf("replicas %s and %s both attached to %s", other, v.Tags["tether:volume"], v.Att.Instance)
			}
			onInstance[v.Att.Instance] = v.Tags["tether:volume"]
		}
		if len(mountedAt[v.ID]) > 1 {
			t.Fatalf("%s mounted on %v at once", v.Tags["tether:volume"], mountedAt[v.ID])
		}
		holder := v.Tags["tether:replica-task"]
		if _, live := m.live[holder]; !live {
			continue
		}
		if prev, dup := holders[holder]; dup && settled {
			t.Fatalf("task %s holds %s and %s", holder, prev, v.Tags["tether:volume"])
		}
		holders[holder] = v.Tags["tether:volume"]
		if settled && (v.Att == nil || v.Att.Instance != m.live[holder] || !slices.Contains(mountedAt[v.ID], m.live[holder])) {
			t.Fatalf("%s, held by %s on %s, is attached %+v and mounted on %v", v.Tags["tether:volume"], holder, m.live[holder], v.Att, mountedAt[v.ID])
		}
	}
	if !settled {
		return
	}
	for task, in := range m.live {
		if _, ok := holders[task]; !ok {
			t.Fatalf("live replica %s on %s holds no volume (%d volumes)", task, in, len(vols))
		}
	}
	if len(vols) > m.maxLive {
		t.Fatalf("%d replica volumes, but at most %d replicas were ever alive at once", len(vols), m.maxLive)
	}
	for _, v := range vols {
		if v.Tags["tether:volume"] != fmt.Sprintf("db-%s", v.Tags["tether:replica"]) {
			t.Fatalf("volume %s: tags %v", v.ID, v.Tags)
		}
	}
}

func mapsKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func mapsValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// Replicas under every ordering the property model explores: no ordinal is
// ever mounted for two tasks at once, and once settled every live replica
// holds exactly one volume of its own, where it runs.
func TestPropertyReplicasNeverShareAVolume(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		m := newReplicaModel(rt)
		rt.Repeat(m.actions())
		m.drain(rt, true)
		m.countLive()
		m.checkHeld(rt, true)
		m.h.noViolations()
	})
}

// The same with two reconcilers on one key at once.
func TestPropertyReplicasConcurrentReconcilers(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		m := newReplicaModel(rt)
		m.concurrent = true
		rt.Repeat(m.actions())
		m.drain(rt, true)
		m.countLive()
		m.checkHeld(rt, true)
		m.h.noViolations()
	})
}
