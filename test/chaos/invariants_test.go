package chaos

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/test/world/fakehost"
)

// The invariant checks on synthetic observations: each broken invariant
// is reported once, and a healthy history is not.

func newTestWatcher() *watcher {
	return newWatcher(nil, "default", "tether-mount", nil, nil)
}

func disk(writes ...string) fakehost.DiskState {
	return fakehost.DiskState{FSType: "ext4", Formats: 1, Writes: writes, Checksum: chain(writes)}
}

func kinds(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Kind)
	}
	return out
}

func TestHistoryMayOnlyGrow(t *testing.T) {
	wt := newTestWatcher()
	wt.checkDiskLocked("vol-1", disk("t1"), nil)
	wt.checkDiskLocked("vol-1", disk("t1", "t2"), nil)
	wt.checkDiskLocked("vol-1", disk("t1", "t2"), nil) // seen again: nothing new
	if len(wt.violations) != 0 {
		t.Fatalf("a growing history was reported: %v", wt.violations)
	}
	if got := wt.vols["vol-1"].writes; len(got) != 2 || wt.writers["t2"][0] != "vol-1" {
		t.Fatalf("verified history %v, writers %v", got, wt.writers)
	}
	wt.checkDiskLocked("vol-1", disk("t1"), nil) // t2's generation vanished
	wt.checkDiskLocked("vol-1", disk("t1"), nil) // the same condition: reported once
	if k := kinds(wt.violations); len(k) != 1 || k[0] != "lost-write" {
		t.Fatalf("rolled-back history: violations %v, want one lost-write", wt.violations)
	}
}

func TestAReplacedHistoryIsALostWrite(t *testing.T) {
	wt := newTestWatcher()
	wt.checkDiskLocked("vol-1", disk("t1", "t2"), nil)
	wt.checkDiskLocked("vol-1", disk("t1", "t3"), nil)
	if k := kinds(wt.violations); len(k) != 1 || k[0] != "lost-write" {
		t.Fatalf("violations %v, want one lost-write", wt.violations)
	}
}

func TestSecondFormatAndBadChecksum(t *testing.T) {
	wt := newTestWatcher()
	ds := disk("t1")
	wt.checkDiskLocked("vol-1", ds, nil)
	ds.Formats = 2
	ds.Checksum = "0000"
	wt.checkDiskLocked("vol-1", ds, nil)
	got := strings.Join(kinds(wt.violations), ",")
	if got != "reformat,checksum" {
		t.Fatalf("violations %s, want reformat,checksum", got)
	}
}

func TestUncleanDetachUnlessAnInstanceDied(t *testing.T) {
	wt := newTestWatcher()
	ds := disk("t1")
	wt.checkDiskLocked("vol-1", ds, nil)
	wt.vols["vol-1"].unclean = 1 // what kill accounts for
	ds.Unclean = 1
	wt.checkDiskLocked("vol-1", ds, nil)
	if len(wt.violations) != 0 {
		t.Fatalf("an instance death's unclean detach was reported: %v", wt.violations)
	}
	ds.Unclean = 2
	wt.checkDiskLocked("vol-1", ds, []string{"i-1"})
	if k := kinds(wt.violations); len(k) != 1 || k[0] != "unclean-detach" {
		t.Fatalf("violations %v, want one unclean-detach", wt.violations)
	}
}

// task records a task the way the watcher's event handler does.
func (wt *watcher) task(arn, instance string, def *serviceDef, running, stopped time.Time) {
	wt.tasks[arn] = &taskObs{arn: arn, instance: instance, def: def, seenAt: running.Add(-time.Second), runningAt: running, stoppedAt: stopped}
}

func TestHandoffsAreGenerationsWrittenFromAnotherInstance(t *testing.T) {
	wt := newTestWatcher()
	svc := &serviceDef{name: "svc-00", volumes: []volumeDef{{name: "data-00", shared: true}}}
	now := time.Now().Add(-time.Minute) // the tasks ran before the watcher saw their generations
	wt.task("a/t1", "i-1", svc, now, now.Add(time.Second))
	wt.task("a/t2", "i-1", svc, now.Add(2*time.Second), now.Add(3*time.Second)) // same instance: a restart, not a handoff
	wt.task("a/t3", "i-2", svc, now.Add(5*time.Second), time.Time{})
	wt.checkDiskLocked("vol-1", disk("a/t1", "a/t2", "a/t3"), nil)
	wt.vols["vol-1"].name = "data-00"
	wt.classifyLocked()
	if wt.handoffs != 1 || len(wt.durations) != 1 {
		t.Fatalf("%d handoffs (%v), want 1", wt.handoffs, wt.durations)
	}
	// t2 STOPPED at +3s; t3 was placed at +4s (after it) and ran at +5s.
	if d := wt.durations[0]; d != time.Second {
		t.Fatalf("handoff took %s, want 1s (t3 placed to t3 RUNNING)", d)
	}
	if wt.byName["data-00"] != "vol-1" {
		t.Fatalf("data-00 held by %q", wt.byName["data-00"])
	}
	// The same name's data on a second volume is split data.
	wt.task("a/t4", "i-1", svc, now.Add(9*time.Second), time.Time{})
	wt.checkDiskLocked("vol-2", disk("a/t4"), nil)
	wt.vols["vol-2"].name = "data-00"
	wt.classifyLocked()
	if k := kinds(wt.violations); len(k) != 1 || k[0] != "split-data" {
		t.Fatalf("violations %v, want one split-data", wt.violations)
	}
}

func TestTaskScopedVolumesMakeNoHandoffs(t *testing.T) {
	wt := newTestWatcher()
	svc := &serviceDef{name: "job-00", volumes: []volumeDef{{name: "scratch"}}}
	now := time.Now()
	wt.task("a/t1", "i-1", svc, now, now.Add(time.Second))
	wt.task("a/t2", "i-2", svc, now.Add(2*time.Second), time.Time{})
	wt.checkDiskLocked("vol-1", disk("a/t1", "a/t2"), nil)
	wt.vols["vol-1"].name = "task-t1-scratch"
	wt.classifyLocked()
	if wt.handoffs != 0 {
		t.Fatalf("%d handoffs counted on a task-scoped volume", wt.handoffs)
	}
}

func TestRunningTaskMustHaveWrittenItsGeneration(t *testing.T) {
	wt := newTestWatcher()
	svc := &serviceDef{name: "svc-04", volumes: []volumeDef{{name: "data-04", shared: true}, {name: "scratch"}}}
	now := time.Now()
	arn := "arn:aws:ecs:us-west-2:123456789012:task/default/abc"
	wt.task(arn, "i-1", svc, now, time.Time{})
	wt.pending[arn] = now.Add(10 * time.Second)
	wt.checkDiskLocked("vol-1", disk(arn), nil)
	wt.vols["vol-1"].name = "data-04"
	wt.verifyRunningLocked(now)
	if _, waiting := wt.pending[arn]; !waiting {
		t.Fatal("verified with its scratch volume's generation missing")
	}
	wt.verifyRunningLocked(now.Add(11 * time.Second))
	if k := kinds(wt.violations); len(k) != 1 || k[0] != "no-data" || !strings.Contains(wt.violations[0].Detail, "task-abc-scratch") {
		t.Fatalf("violations %v, want no-data naming task-abc-scratch", wt.violations)
	}

	wt2 := newTestWatcher()
	wt2.task(arn, "i-1", svc, now, time.Time{})
	wt2.pending[arn] = now.Add(10 * time.Second)
	wt2.checkDiskLocked("vol-1", disk(arn), nil)
	wt2.checkDiskLocked("vol-2", disk(arn), nil)
	wt2.vols["vol-1"].name, wt2.vols["vol-2"].name = "data-04", "task-abc-scratch"
	wt2.verifyRunningLocked(now)
	if len(wt2.pending) != 0 || len(wt2.violations) != 0 || !wt2.tasks[arn].verified {
		t.Fatalf("pending %v, violations %v", wt2.pending, wt2.violations)
	}
}

func TestReplayCommand(t *testing.T) {
	got := Config{Seed: 42, Kinds: []OpKind{OpDrain, OpKill}, NoFaults: true}.ReplayCommand(17)
	want := "CHAOS_SEED=42 CHAOS_HANDOFFS=17 CHAOS_KINDS=drain,kill CHAOS_FAULTS=off make chaos"
	if got != want {
		t.Fatalf("replay command %q, want %q", got, want)
	}
	c, err := ConfigFromEnv(func(k string) string {
		return map[string]string{EnvSeed: "42", EnvHandoffs: "17", EnvKinds: "drain,kill", EnvFaults: "off"}[k]
	})
	if err != nil || c.Seed != 42 || c.Handoffs != 17 || len(c.Kinds) != 2 || !c.NoFaults {
		t.Fatalf("ConfigFromEnv: %+v, %v", c, err)
	}
	if _, err := ConfigFromEnv(func(k string) string { return map[string]string{EnvSeed: "x"}[k] }); err == nil {
		t.Fatal("a bad seed was accepted")
	}
	all := parseKinds("-stick-attach")
	if len(all) != len(AllKinds())-1-len(optInKinds) || slices.Contains(all, OpStickAttach) || formatKinds(all) != "-stick-attach" {
		t.Fatalf("all but stick-attach: %v, written %q", all, formatKinds(all))
	}
	// A run of every kind draws the hosts kinds, and its world has the
	// Auto Scaling group they act on.
	var every Config
	if !every.allowed(OpScaleIn) || !every.hostsGoAway() || !every.allowed(OpDrain) {
		t.Fatal("a run of every kind leaves the hosts kinds out")
	}
	if drains := (Config{Kinds: parseKinds("drain")}); drains.hostsGoAway() {
		t.Fatal("a run of drains alone has an Auto Scaling group")
	}
	named := Config{Kinds: parseKinds("scale-in,spot-interrupt,hang-member,drain")}
	if !named.allowed(OpScaleIn) || !named.allowed(OpHangMember) || !named.hostsGoAway() || named.allowed(OpKill) {
		t.Fatalf("named opt-in kinds: %v", named.Kinds)
	}
	if got := formatKinds(named.Kinds); !slices.Equal(slices.Sorted(slices.Values(parseKinds(got))), slices.Sorted(slices.Values(named.Kinds))) {
		t.Fatalf("opt-in kinds written %q, read back %v", got, parseKinds(got))
	}
	c = Config{Seed: 1, Instances: 2, AZs: 1, SharedServices: 5}
	if got := c.ReplayCommand(3); got != "CHAOS_SEED=1 CHAOS_HANDOFFS=3 CHAOS_SHAPE=2,1,5,0 make chaos" {
		t.Fatalf("replay command with a shape: %q", got)
	}
}

func TestDeadLetterExplanations(t *testing.T) {
	outputs := []string{
		`{"level":"INFO","msg":"key handed back","messageId":"m1","tookMs":14029}` + "\n" +
			`{"level":"INFO","msg":"key converged","messageId":"m1","tookMs":9}` + "\n" +
			`{"level":"WARN","msg":"message goes back to the queue","messageId":"m2","why":"keys not known"}`,
	}
	if got := explain(outputs, "m2"); got != "message goes back to the queue: keys not known" {
		t.Errorf("m2: %q", got)
	}
	if got := explain(outputs, "m1"); !strings.Contains(got, "handled without error 2 times") || !strings.Contains(got, "14.029s") {
		t.Errorf("m1: %q", got)
	}
	if got := explain(outputs, "m3"); got != "" {
		t.Errorf("a message no log names was explained: %q", got)
	}
	if got := failureKind("tether: volume data-07 (vol-0abc) on i-0123 failed after 2.5s"); got != "tether: volume NAME (vol-X) on i-X failed after Ns" {
		t.Errorf("failureKind: %q", got)
	}
}

// An AZ move: the volume made from the old one's snapshot continues its
// history (no split data, no handoff counted twice); one made from a
// snapshot that lost a verified generation is a violation.
func TestAMovedVolumeContinuesTheHistory(t *testing.T) {
	wt := newTestWatcher()
	wt.checkDiskLocked("vol-old", disk("t1", "t2"), nil)
	wt.vols["vol-old"].name = "data-00"
	wt.classifyLocked()
	moved := disk("t1", "t2", "t3")
	moved.RestoredFrom, moved.FromSnapshot = "vol-old", "snap-1"
	wt.checkDiskLocked("vol-new", moved, nil)
	wt.classifyLocked()
	if len(wt.violations) != 0 {
		t.Fatalf("a move that carried the history was reported: %v", wt.violations)
	}
	if wt.byName["data-00"] != "vol-new" || wt.vols["vol-new"].name != "data-00" || !wt.movedLocked("vol-old", "vol-new") {
		t.Fatalf("byName %v, new volume %+v: want the name's data in vol-new", wt.byName, wt.vols["vol-new"])
	}
	if got := wt.vols["vol-new"].writes; !slices.Equal(got, []string{"t1", "t2", "t3"}) {
		t.Fatalf("verified history of the new volume %v", got)
	}

	lost := disk("t1")
	lost.RestoredFrom, lost.FromSnapshot = "vol-new", "snap-2"
	wt.checkDiskLocked("vol-3", lost, nil)
	if k := kinds(wt.violations); len(k) != 1 || k[0] != "move-lost-write" {
		t.Fatalf("violations %v, want one move-lost-write", wt.violations)
	}
}
