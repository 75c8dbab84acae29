package reconcile

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
)

// checkAssignment: no ordinal held by two tasks, no task holding two
// ordinals, no task both holding and waiting, every holder live, and every
// held ordinal's volume (if any) in its holder's AZ.
func checkAssignment(t *testing.T, f replicaFacts, a assignment) {
	t.Helper()
	for n, arn := range a.holder {
		if got, ok := a.of[arn]; !ok || got != n {
			t.Fatalf("ordinal %d held by %s, which holds %d (%v)", n, arn, got, ok)
		}
		if tk, ok := f.known[arn]; holderGone(tk, ok) {
			t.Fatalf("ordinal %d held by %s, which is stopped or unknown", n, arn)
		}
		var first *replicaVol // the volume of the ordinal (the lowest id of several)
		for i, v := range f.vols {
			if v.ordinal == n && (first == nil || v.id < first.id) {
				first = &f.vols[i]
			}
		}
		if first != nil && first.az != f.azOf[arn] && first.holder != arn {
			t.Fatalf("ordinal %d (volume in %s) given to %s in %s", n, first.az, arn, f.azOf[arn])
		}
	}
	if len(a.holder) != len(a.of) {
		t.Fatalf("holder %v and of %v disagree", a.holder, a.of)
	}
	for arn, n := range a.waits {
		if _, ok := a.of[arn]; ok {
			t.Fatalf("%s holds an ordinal and waits for %d", arn, n)
		}
	}
}

func TestAssignReplicas(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	task := func(id string, age int, desired, last string) cloud.Task {
		return cloud.Task{ARN: "arn:aws:ecs:us-west-2:1:task/c/" + id, DesiredStatus: desired, LastStatus: last, CreatedAt: at.Add(time.Duration(age) * time.Second)}
	}
	a0 := task("a0", 0, "RUNNING", "RUNNING")
	b0 := task("b0", 1, "RUNNING", "RUNNING")
	aStopping := task("a0", 0, "STOPPED", "RUNNING")
	aStopped := task("a0", 0, "STOPPED", "STOPPED")
	a1 := task("a1", 5, "RUNNING", "PENDING")
	facts := func(vols []replicaVol, ts ...cloud.Task) replicaFacts {
		f := replicaFacts{vols: vols, known: map[string]cloud.Task{}, azOf: map[string]string{}}
		for _, tk := range ts {
			f.known[tk.ARN], f.azOf[tk.ARN] = tk, "az-a"
			f.needers = append(f.needers, tk.ARN)
		}
		return f
	}
	// Two new replicas: the older gets 0, the other 1.
	f := facts(nil, b0, a0)
	got := assign(f)
	checkAssignment(t, f, got)
	if got.of[a0.ARN] != 0 || got.of[b0.ARN] != 1 {
		t.Fatalf("fresh: %v", got.of)
	}
	vols := []replicaVol{{ordinal: 0, id: "vol-0", az: "az-a", holder: a0.ARN}, {ordinal: 1, id: "vol-1", az: "az-a", holder: b0.ARN}}
	// A drain: while a0 stops, its replacement waits for ordinal 0 ...
	f = facts(vols, aStopping, b0, a1)
	got = assign(f)
	checkAssignment(t, f, got)
	if got.waits[a1.ARN] != 0 || got.of[b0.ARN] != 1 || got.of[aStopping.ARN] != 0 {
		t.Fatalf("stopping: of %v waits %v", got.of, got.waits)
	}
	// ... and gets it once a0 is STOPPED; b0 keeps 1 though it is older.
	f = facts(vols, aStopped, b0, a1)
	got = assign(f)
	checkAssignment(t, f, got)
	if _, ok := got.of[aStopped.ARN]; ok || got.of[a1.ARN] != 0 || got.of[b0.ARN] != 1 {
		t.Fatalf("stopped: of %v", got.of)
	}
	// Scale-in then out: an unheld volume is the lowest free ordinal.
	f = facts([]replicaVol{{ordinal: 0, id: "vol-0", az: "az-a", holder: a0.ARN}, {ordinal: 1, id: "vol-1", az: "az-a", holder: "arn:gone"}}, a0, a1)
	got = assign(f)
	if got.of[a1.ARN] != 1 {
		t.Fatalf("scale-out: %v", got.of)
	}
	// Another AZ's volume is skipped: the task gets the next ordinal.
	f = facts([]replicaVol{{ordinal: 0, id: "vol-0", az: "az-b", holder: ""}}, a1)
	got = assign(f)
	if got.of[a1.ARN] != 1 {
		t.Fatalf("other AZ: %v", got.of)
	}
}

// TestAssignNeverSharesAnOrdinal: over random facts (tags naming any task,
// several volumes per ordinal, stopped, stopping, unknown and unplaced
// tasks, two AZs) no two tasks ever hold one ordinal and no task holds two;
// and the assignment does not depend on the order facts were read in.
func TestAssignNeverSharesAnOrdinal(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 1))
	at := time.Unix(1_800_000_000, 0)
	statuses := [][2]string{{"RUNNING", "RUNNING"}, {"RUNNING", "PENDING"}, {"STOPPED", "RUNNING"}, {"STOPPED", "STOPPED"}, {"RUNNING", "PROVISIONING"}}
	for i := 0; i < 5000; i++ {
		f := replicaFacts{known: map[string]cloud.Task{}, azOf: map[string]string{}}
		nt := 1 + rng.IntN(8)
		var arns []string
		for j := 0; j < nt; j++ {
			arn := fmt.Sprintf("arn:aws:ecs:r:1:task/c/%02d", j)
			arns = append(arns, arn)
			if rng.IntN(8) == 0 {
				continue // ECS no longer knows it
			}
			st := statuses[rng.IntN(len(statuses))]
			f.known[arn] = cloud.Task{ARN: arn, DesiredStatus: st[0], LastStatus: st[1], CreatedAt: at.Add(time.Duration(rng.IntN(4)) * time.Second)}
			f.needers = append(f.needers, arn)
			f.azOf[arn] = []string{"", "az-a", "az-b"}[rng.IntN(3)]
		}
		for j := rng.IntN(8); j > 0; j-- {
			holder := ""
			if rng.IntN(3) > 0 {
				holder = arns[rng.IntN(len(arns))]
			}
			f.vols = append(f.vols, replicaVol{ordinal: rng.IntN(5), id: fmt.Sprintf("vol-%08x", rng.Uint32()), az: []string{"az-a", "az-b"}[rng.IntN(2)], holder: holder})
		}
		a := assign(f)
		checkAssignment(t, f, a)
		g := f
		g.vols = append([]replicaVol(nil), f.vols...)
		g.needers = append([]string(nil), f.needers...)
		rng.Shuffle(len(g.vols), func(x, y int) { g.vols[x], g.vols[y] = g.vols[y], g.vols[x] })
		rng.Shuffle(len(g.needers), func(x, y int) { g.needers[x], g.needers[y] = g.needers[y], g.needers[x] })
		b := assign(g)
		if fmt.Sprint(a.of) != fmt.Sprint(b.of) || fmt.Sprint(a.waits) != fmt.Sprint(b.waits) {
			t.Fatalf("order of facts changed the assignment: %v/%v vs %v/%v", a.of, a.waits, b.of, b.waits)
		}
	}
}

func TestReplicaKeysOfNamesTheTaggedHolder(t *testing.T) {
	td := cloud.TaskDefinition{Volumes: []cloud.DockerVolume{
		{Name: "db", Driver: "tether", Scope: "shared", DriverOpts: map[string]string{"REPLICAS": " true "}},
		{Name: "logs", Driver: "tether", Scope: "shared"},
	}}
	if got := Replicated(td); len(got) != 1 || got[0] != "db" {
		t.Fatalf("Replicated = %v", got)
	}
	vol := func(name, base, holder string) cloud.Volume {
		return cloud.Volume{ID: "vol-" + name, Tags: map[string]string{cloud.TagCluster: "c", cloud.TagVolume: name, TagReplicaOf: base, TagReplicaTask: holder}}
	}
	vols := []cloud.Volume{vol("db-0", "db", "arn:t1"), vol("db-1", "db", "arn:t2"), vol("other-0", "other", "arn:t1")}
	if got := ReplicaKeysOf("c", "arn:t1", td, vols); len(got) != 1 || got[0] != (Key{Cluster: "c", Volume: "db-0"}) {
		t.Fatalf("ReplicaKeysOf = %v", got)
	}
	if keys, _ := keysOf("c", "arn:t1", td); len(keys) != 1 || keys[0].Volume != "logs" {
		t.Fatalf("keysOf names a replicated volume itself: %v", keys)
	}
}
