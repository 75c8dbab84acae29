package bench

import (
	"encoding/json"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/world"
)

// The JSON `make bench` writes has exactly the documented keys, measured
// or not (null).
func TestResultsJSONHasExactlyTheKeys(t *testing.T) {
	full := Results{
		HandoffRatio1: Ptr(1.1), HandoffRatio1DetachEvent: Ptr(1.05), HandoffRatio200: Ptr(1.2), HandoffRatio200Bucket: Ptr(1.25),
		FailedHandoffs: Ptr(0), EC2CallsPerHandoff: Ptr(4.5), EC2MutatingCallsPerHandoff: Ptr(2.0), ECSCallsPerHandoff: Ptr(5.5),
		SSMCallsPerHandoff: Ptr(3.0), ECSCallsPerHandoff10Unrelated: Ptr(5.0), ECSCallsPerHandoff500Unrelated: Ptr(5.0),
		ThrottledCalls: Ptr(3), RecursiveInvocationsDropped: Ptr(0), ForcedDetachesLive: Ptr(0), MkfsWithoutGrant: Ptr(0),
		MountOverheadRatio: Ptr(1.01), DataPathRatio: Ptr(0.99), Format1TiBSeconds: Ptr(0.4),
		BootstrapBytes: Ptr(int64(9 << 20)), ColdInitMs: Ptr(20.5),
		DeadHostHandoffOverFloorS: Ptr(58.0), ScaleInHandoffRatio: Ptr(1.2), GrowOnlineSeconds: Ptr(14.5),
		AZMoveSecondsPerGiB: Ptr(30.5),
	}
	for name, r := range map[string]Results{"measured": full, "nothing measured": {}} {
		path := filepath.Join(t.TempDir(), "bench.json")
		if err := r.WriteJSON(path); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, raw)
		}
		var keys []string
		for k, v := range got {
			keys = append(keys, k)
			if name == "measured" && v == nil {
				t.Errorf("%s: %s is null", name, k)
			}
			if name == "nothing measured" && v != nil {
				t.Errorf("%s: %s = %v, want null", name, k, v)
			}
		}
		slices.Sort(keys)
		want := slices.Sorted(slices.Values(Keys))
		if !slices.Equal(keys, want) {
			t.Errorf("%s: keys %v, want exactly %v", name, keys, want)
		}
	}
	raw, _ := json.Marshal(full)
	if !strings.Contains(string(raw), `"handoff_ratio_1":1.1`) || !strings.Contains(string(raw), `"bootstrap_bytes":9437184`) {
		t.Errorf("values not written as given: %s", raw)
	}
}

// The floor is detach + attach + one SSM command (delivery + completion)
// + the measured container start, each the profile's mean: a log-normal's
// mean is median * exp(sigma^2/2), sigma = ln(p99/median)/z99.
func TestFloorIsTheSumOfTheProfilesMeans(t *testing.T) {
	p := latency.Realistic()
	mean := func(op latency.Op) float64 {
		d := p.Dists[op]
		sigma := math.Log(float64(d.P99)/float64(d.Median)) / 2.3263478740408408
		return float64(d.Median) * math.Exp(sigma*sigma/2)
	}
	const start = 300 * time.Millisecond
	f := NewFloor(p, start, "test")
	want := mean(latency.DetachVolume) + mean(latency.AttachVolume) + mean(latency.SSMDelivery) + mean(latency.SSMCompletion) + float64(start)
	if got := float64(f.Total()); math.Abs(got-want) > float64(time.Millisecond) {
		t.Fatalf("floor %v, want %v (%s)", f.Total(), time.Duration(want), f.Parts())
	}
	// The realistic profile's published means: detach ~8 s, attach ~3.8 s.
	if f.Detach < 7500*time.Millisecond || f.Detach > 8500*time.Millisecond || f.Attach < 3500*time.Millisecond || f.Attach > 4100*time.Millisecond {
		t.Errorf("detach %v, attach %v: not the profile's documented means", f.Detach, f.Attach)
	}
	if f.ContainerStart != start || f.SSMCommand != p.Mean(latency.SSMDelivery)+p.Mean(latency.SSMCompletion) {
		t.Errorf("parts: %s", f.Parts())
	}
	if r := f.Ratio(2 * f.Total()); r != 2 {
		t.Errorf("ratio of twice the floor = %v, want 2", r)
	}
	if r := (Floor{}).Ratio(time.Second); r != 0 {
		t.Errorf("ratio over a zero floor = %v, want 0", r)
	}
	if !strings.Contains(f.Parts(), "detach 7.") || !strings.HasSuffix(f.Parts(), "= "+secs(f.Total())) {
		t.Errorf("parts printed as %q", f.Parts())
	}
}

// Under the buckets, handoffs within every bucket's burst take the plain
// floor; later ones wait for tokens at the refill rate.
func TestBucketBound(t *testing.T) {
	f := Floor{Detach: 8 * time.Second, Attach: 4 * time.Second, SSMCommand: time.Second, ContainerStart: time.Second}
	b := awsproto.Bucket{Size: 50, Refill: 5}
	got := BucketBound(f, Limits{Detach: b, Attach: b, SendCommand: b}, 200)
	if len(got) != 200 {
		t.Fatalf("%d finish times, want 200", len(got))
	}
	for i := range 50 {
		if got[i] != f.Total() {
			t.Fatalf("handoff %d: %v, want the floor %v", i, got[i], f.Total())
		}
	}
	// The 51st detach waits 0.2 s for a token, the 200th 30 s; later
	// buckets have refilled by then, so nothing else waits.
	if want := f.Total() + 200*time.Millisecond; absDiff(got[50], want) > time.Millisecond {
		t.Errorf("handoff 51: %v, want %v", got[50], want)
	}
	if want := f.Total() + 30*time.Second; absDiff(got[199], want) > time.Millisecond {
		t.Errorf("handoff 200: %v, want %v", got[199], want)
	}
	if !slices.IsSorted(got) {
		t.Errorf("finish times out of order")
	}
	// No limits: everyone takes the floor.
	for i, d := range BucketBound(f, Limits{}, 10) {
		if d != f.Total() {
			t.Errorf("unlimited handoff %d: %v", i, d)
		}
	}
	if l := DefaultLimits(); l.Detach.Size != 50 || l.Attach.Refill != 5 || l.SendCommand.Size != 50 {
		t.Errorf("world's documented limits read as %+v", l)
	}
}

func absDiff(a, b time.Duration) time.Duration {
	if a > b {
		return a - b
	}
	return b - a
}

func TestParseBenchOutput(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/tether-ecs/tether/agent/driver
BenchmarkContainerStart/attached-2         	      30	 512345678 ns/op	       301.2 local-ms	       310.5 tether-ms	         1.031 ratio	         8.100 paired-delta-ms	         1.020 min-ratio	        12.00 Mount-ms
BenchmarkFirstUseFormat/ext4/1TiB-2   	       5	 412345678 ns/op	         0.4123 s/first-mount
--- SKIP: BenchmarkSomething
PASS
`
	got, err := ParseBenchOutput(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	a := got["BenchmarkContainerStart/attached"]
	if a["ratio"] != 1.031 || a["min-ratio"] != 1.020 || a["Mount-ms"] != 12 || a["ns/op"] != 512345678 {
		t.Errorf("attached: %v", a)
	}
	if got["BenchmarkFirstUseFormat/ext4/1TiB"]["s/first-mount"] != 0.4123 {
		t.Errorf("format: %v", got)
	}
	if len(got) != 2 {
		t.Errorf("parsed %d benchmarks, want 2: %v", len(got), got)
	}
	if _, err := ParseBenchOutput(strings.NewReader("BenchmarkX-2 5 abc ns/op\n")); err == nil {
		t.Error("a result line with a non-number value was accepted")
	}
}

func TestAgentRows(t *testing.T) {
	var r Report
	AgentRows(&r, AgentFigures{
		Format: map[string]float64{"ext4": 0.4, "xfs": 0.7}, Write: 0.98, Read: 1.01,
		Start: map[string]Metrics{"attached": {"ratio": 1.04, "tether-ms": 300, "local-ms": 290}},
	})
	if *r.Results.MountOverheadRatio != 1.04 || *r.Results.DataPathRatio != 0.98 || *r.Results.Format1TiBSeconds != 0.7 {
		t.Errorf("results %+v", r.Results)
	}
	r.Add("handoff_ratio_1", "1.100", HandoffGoal, "")
	var out strings.Builder
	r.Print(&out)
	if i, j := strings.Index(out.String(), "| `handoff_ratio_1` |"), strings.Index(out.String(), "| `mount_overhead_ratio` |"); i < 0 || j < i {
		t.Errorf("the Markdown rows are not in the keys' order:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "| `mount_overhead_ratio` | 1.040 | ≤ 1.05 |") || strings.Contains(out.String(), "| `  ") {
		t.Errorf("the Markdown table of the figures:\n%s", out.String())
	}
	var empty Report
	AgentRows(&empty, AgentFigures{})
	if empty.Results.MountOverheadRatio != nil || empty.Results.DataPathRatio != nil || empty.Results.Format1TiBSeconds != nil || len(empty.Rows) != 3 {
		t.Errorf("nothing measured gave %+v, rows %v", empty.Results, empty.Rows)
	}
}

// A handoff's marks come from the world's own log lines: ECS's by task,
// EC2's by volume, SSM's by command (mapped to the volume).
func TestBuildTimeline(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	h := Handoff{VolumeID: "vol-1", OldTask: "task/old", OldInstance: "i-a", NewTask: "task/new", NewInstance: "i-b",
		Drained: t0, Running: at(18)}
	e := func(s float64, msg string, kv ...string) Entry {
		a := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			a[kv[i]] = kv[i+1]
		}
		return Entry{Time: at(s), Msg: msg, Attrs: a}
	}
	entries := []Entry{
		e(-5, msgDetaching, "volume", "vol-1"), // before the drain: ignored
		e(0.01, msgStopRequested, "task", "task/old"),
		e(0.2, msgTaskStopped, "task", "task/old"),
		e(0.3, msgTaskStopped, "task", "task/other"),
		e(0.4, msgInstanceState, "instance", "i-b", "state", "terminated"), // another instance
		e(0.5, msgInstanceState, "instance", "i-a", "state", "shutting-down"),
		e(0.6, msgInstanceState, "instance", "i-a", "state", "terminated"),
		e(1, msgCommandSent, "command", "c-un", "document", "tether-unmount", "instances", "i-a"),
		e(1.1, msgCommandSent, "command", "c-x", "document", "tether-unmount", "instances", "i-c"), // another volume
		e(2.5, msgCommandFinished, "command", "c-un", "status", "Success"),
		e(4, msgDetaching, "volume", "vol-1", "instance", "i-a"),
		e(4.5, msgDetachWaiting, "volume", "vol-1"),
		e(12, msgDetached, "volume", "vol-1", "instance", "i-a"),
		e(13, msgAttaching, "volume", "vol-1", "instance", "i-b"),
		// The mount is sent once AttachVolume returned; the agent waits
		// for the device.
		e(13.05, msgCommandSent, "command", "c-m", "document", "tether-mount", "instances", "i-b"),
		e(17, msgAttached, "volume", "vol-1", "instance", "i-b"),
		e(18.5, msgCommandFinished, "command", "c-m", "status", "Success"), // after RUNNING: still the mount's end
		e(25, msgDetaching, "volume", "vol-1", "instance", "i-b"),          // later business
	}
	tl := BuildTimeline(h, entries, map[string]string{"c-un": "vol-1", "c-m": "vol-1", "c-x": "vol-2"}, Documents{Mount: "tether-mount", Unmount: "tether-unmount"})
	want := map[Mark]float64{MarkStopRequested: 0.01, MarkOldStopped: 0.2, MarkUnmountSent: 1, MarkUnmountDone: 2.5, MarkDetachCalled: 4,
		MarkDetached: 12, MarkAttachCalled: 13, MarkMountSent: 13.05, MarkAttached: 17, MarkMountDone: 18.5, MarkRunning: 18}
	for m, s := range want {
		if d, ok := tl.Offset(m); !ok || absDiff(d, time.Duration(s*float64(time.Second))) > time.Microsecond {
			t.Errorf("%s at %v (seen %v), want %vs", m, d, ok, s)
		}
	}
	if tl.UnmountCommands != 1 || tl.MountCommands != 1 || tl.DetachCalls != 1 || tl.AttachCalls != 1 || tl.BusyDetach != 1 {
		t.Errorf("counts %+v", tl)
	}
	if !tl.HostGone.Equal(at(0.6)) {
		t.Errorf("old host gone at %v, want EC2's terminated at %v", tl.HostGone, at(0.6))
	}
	// The marks in the order the path takes them: no gap is negative but
	// the last (the plugin's Mount returns before SSM reports the command
	// done).
	gaps := tl.Gaps()
	if len(gaps) != 11 || gaps[0].From != MarkDrain || gaps[len(gaps)-1].To != MarkRunning || gaps[len(gaps)-1].Took != -500*time.Millisecond {
		t.Errorf("gaps %+v", gaps)
	}
	for _, g := range gaps[:len(gaps)-1] {
		if g.Took < 0 {
			t.Errorf("gap %s -> %s is %v", g.From, g.To, g.Took)
		}
	}
	s := Summarize([]Timeline{tl, tl, tl})
	if s.N != 3 || s.Offsets[MarkDetached] != 12*time.Second || s.Gaps[MarkDetached] != 8*time.Second || s.Seen[MarkRunning] != 3 {
		t.Errorf("summary %+v", s)
	}
	if out := s.Format(""); !strings.Contains(out, "detached") || !strings.Contains(out, "world: detach (floor)") {
		t.Errorf("summary printed as\n%s", out)
	}
	// The drawn floor: this handoff's detach (8 s) and attach (4 s) as
	// drawn, plus the floor's SSM command (1 s) and container start.
	f := Floor{Detach: 9 * time.Second, Attach: 5 * time.Second, SSMCommand: time.Second, ContainerStart: 300 * time.Millisecond}
	if d, ok := drawnFloor(tl, f); !ok || d != 13300*time.Millisecond {
		t.Errorf("drawn floor %v %v, want 13.3s", d, ok)
	}
	// 18 s in all: 13.3 s the world's draws, 0.2 s ECS's stop, 4.5 s tether.
	h.Verified = true
	if w, e, tt, ok := split(h, tl, f); !ok || w != 13300*time.Millisecond || e != 200*time.Millisecond || tt != 4500*time.Millisecond {
		t.Errorf("split %v %v %v %v, want 13.3s 0.2s 4.5s", w, e, tt, ok)
	}
	h.Verified = false
	if _, _, _, ok := split(h, tl, f); ok {
		t.Error("a handoff without its data verified was split")
	}
}

// The journal keeps the world's marks with the logger's attributes, the
// SSM "instances" list flattened.
func TestJournalFromWorldLogs(t *testing.T) {
	j := NewJournal()
	log := slog.New(j.Handler()).With("component", "ssm")
	log.Info("command sent", "command", "c-1", "document", "tether-mount", "instances", []string{"i-b"})
	log.Info("something else", "volume", "vol-1")
	slog.New(j.Handler()).With("component", "ec2").Info("volume detached", "volume", "vol-1", "instance", "i-a")
	got := j.Entries(time.Time{})
	if len(got) != 2 {
		t.Fatalf("%d entries, want 2: %+v", len(got), got)
	}
	if got[0].Msg != msgCommandSent || got[0].Attrs["instances"] != "i-b" || got[0].Attrs["component"] != "ssm" || got[0].Attrs["command"] != "c-1" {
		t.Errorf("first entry %+v", got[0])
	}
	if got[1].Attrs["volume"] != "vol-1" || got[1].Time.Before(got[0].Time) {
		t.Errorf("second entry %+v", got[1])
	}
	if n := len(j.Entries(time.Now().Add(time.Hour))); n != 0 {
		t.Errorf("entries after the future: %d", n)
	}
}

func TestChooseHosts(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	if k, d := ChooseHosts(ms(300, 280, 320), ms(2300, 2000, 2500)); k != world.FakeHosts || d < 7 {
		t.Errorf("8x slower concurrent starts chose %s (%.2f)", k, d)
	}
	if k, _ := ChooseHosts(ms(300), ms(330, 310, 350)); k != world.RealHosts {
		t.Errorf("barely slower concurrent starts chose %s", k)
	}
	if k, _ := ChooseHosts(nil, nil); k != world.FakeHosts {
		t.Errorf("nothing measured chose %s", k)
	}
}

func TestFunctionFindings(t *testing.T) {
	since := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	out := map[string]string{
		"TaskStateFunction": `--- environment 0
{"time":"2026-01-01T00:00:05Z","level":"WARN","msg":"too early"}
{"time":"2026-01-01T00:00:11Z","level":"WARN","msg":"device name refused; trying another"}
{"time":"2026-01-01T00:00:12Z","level":"WARN","msg":"device name refused; trying another"}
{"time":"2026-01-01T00:00:12Z","level":"INFO","msg":"attaching"}
{"time":"2026-01-01T00:00:13Z","level":"ERROR","msg":"key failed"}
`,
	}
	fs := FunctionFindings(ParseFunctionOutput(out), since)
	if len(fs) != 2 || fs[0].Msg != "device name refused; trying another" || fs[0].Count != 2 || fs[1].Level != "ERROR" {
		t.Fatalf("findings %+v", fs)
	}
	if s := FormatFindings(fs, 1, ""); !strings.Contains(s, "2 WARN  TaskStateFunction: device name refused") || !strings.Contains(s, "(1 more kinds)") {
		t.Errorf("printed as %q", s)
	}
}

func TestMedianAndQuantile(t *testing.T) {
	d := []time.Duration{4, 1, 3, 2}
	if m := Median(d); m != 2 { // (2+3)/2 in integer nanoseconds
		t.Errorf("median %v", m)
	}
	if m := Median(d[:3]); m != 3 {
		t.Errorf("odd median %v", m)
	}
	if Median(nil) != 0 || Quantile(nil, 0.5) != 0 {
		t.Error("empty")
	}
	if q := Quantile(d, 0.9); q != 4 {
		t.Errorf("p90 %v", q)
	}
	if !slices.Equal(d, []time.Duration{4, 1, 3, 2}) {
		t.Error("Median sorted its input")
	}
}

// A failed handoff counts in the median as one that never finished.
func TestRunMedianCountsFailures(t *testing.T) {
	t0 := time.Now()
	ok := func(s int) Handoff {
		return Handoff{Drained: t0, Running: t0.Add(time.Duration(s) * time.Second), Verified: true}
	}
	failed := Handoff{Drained: t0, Failure: "no replacement RUNNING before the deadline"}
	unverified := ok(1)
	unverified.Verified = false
	r := RunResult{Handoffs: []Handoff{ok(10), ok(20), ok(30), failed, unverified}}
	if m, good := r.Median(); !good || m != 30*time.Second {
		t.Errorf("median %v %v, want 30s (10, 20, 30 and two that never finished)", m, good)
	}
	if r.Failed() != 2 || len(r.Durations()) != 3 {
		t.Errorf("failed %d, durations %v", r.Failed(), r.Durations())
	}
	r = RunResult{Handoffs: []Handoff{ok(10), failed}}
	if _, good := r.Median(); good {
		t.Error("a median with half the handoffs failed")
	}
}

// The hosts rows: the dead host's median less the floor, the scale-in's
// median over the drain's; a run where half failed has no figure.
func TestHostsRows(t *testing.T) {
	t0 := time.Unix(1000, 0)
	run := func(name string, secs ...float64) RunResult {
		r := RunResult{Name: name}
		for _, s := range secs {
			h := Handoff{Service: "s", Drained: t0, Running: t0.Add(time.Duration(s * float64(time.Second))), Verified: true}
			r.Handoffs = append(r.Handoffs, h)
			r.Timelines = append(r.Timelines, Timeline{At: [numMarks]time.Time{MarkDrain: t0, MarkRunning: h.Running}})
		}
		return r
	}
	floor := Floor{Detach: 8 * time.Second, Attach: 4 * time.Second, SSMCommand: time.Second, ContainerStart: time.Second}
	var rep Report
	HostsRows(&rep, HostsResult{ScaleIn: run("scale-in", 12, 14, 13), Drain: run("hosts-drain", 10, 10, 30), Dead: run("dead-host", 50, 60, 58)}, floor)
	if v := rep.Results.DeadHostHandoffOverFloorS; v != nil {
		t.Errorf("dead_host_handoff_over_floor_s %v without EC2's terminated seen, want none", *v)
	}
	gone := run("dead-host", 50, 60, 58)
	for i := range gone.Timelines {
		gone.Timelines[i].HostGone = t0.Add(40 * time.Second)
		gone.Timelines[i].At[MarkOldStopped] = t0.Add(41 * time.Second)
	}
	rep = Report{}
	HostsRows(&rep, HostsResult{Dead: gone}, floor)
	if v := rep.Results.DeadHostHandoffOverFloorS; v == nil || *v != 4 {
		t.Errorf("dead_host_handoff_over_floor_s %v, want 58 - 40 - 14 = 4 (from EC2's terminated)", v)
	}
	i := slices.IndexFunc(rep.Rows, func(r Row) bool { return r.Figure == "  from the host's death" })
	if i < 0 || rep.Rows[i].Value != "44.0" {
		t.Errorf("from the host's death: rows %+v, want one of 58 - 14 = 44.0", rep.Rows)
	}
	rep = Report{}
	HostsRows(&rep, HostsResult{ScaleIn: run("scale-in", 12, 14, 13), Drain: run("hosts-drain", 10, 10, 30), Dead: run("dead-host", 50, 60, 58)}, floor)
	if v := rep.Results.ScaleInHandoffRatio; v == nil || *v != 1.3 {
		t.Errorf("scale_in_handoff_ratio %v, want 13 / 10", v)
	}
	failed := run("dead-host", 50, 60)
	failed.Handoffs[1].Failure = "no replacement RUNNING before the deadline"
	rep = Report{}
	HostsRows(&rep, HostsResult{Dead: failed}, floor)
	if rep.Results.DeadHostHandoffOverFloorS != nil || rep.Results.ScaleInHandoffRatio != nil {
		t.Errorf("figures from failed runs: %+v", rep.Results)
	}
}

func TestGrowRows(t *testing.T) {
	t0 := time.Unix(1000, 0)
	grow := func(name string, modified, grown float64) Grow {
		at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
		return Grow{Service: name, VolumeID: "vol-0123456789abcdef0", Running: t0, Modified: at(modified), Grown: at(grown), FSBytes: 2 << 30}
	}
	var rep Report
	GrowRows(&rep, GrowResult{Grows: []Grow{grow("a", 6, 20), grow("b", 5, 14), grow("c", 7, 31)}, ModifyVolumes: 3})
	if v := rep.Results.GrowOnlineSeconds; v == nil || *v != 20 {
		t.Errorf("grow_online_seconds %v, want the median 20", v)
	}
	i := slices.IndexFunc(rep.Rows, func(r Row) bool { return r.Figure == "grow_online_seconds" })
	if i < 0 || rep.Rows[i].Value != "20.0" || !strings.Contains(rep.Rows[i].Detail, "RUNNING") {
		t.Errorf("rows %+v, want grow_online_seconds 20.0 with its definition", rep.Rows)
	}
	j := slices.IndexFunc(rep.Rows, func(r Row) bool { return r.Figure == "  RUNNING -> ModifyVolume" })
	if j < 0 || rep.Rows[j].Value != "6.00s" {
		t.Errorf("rows %+v, want RUNNING -> ModifyVolume 6.00s", rep.Rows)
	}

	// A failed grow is left out of the median and named.
	failed := grow("c", 7, 31)
	failed.Failure = "the filesystem not grown in the container within 2m0s of the update"
	rep = Report{}
	GrowRows(&rep, GrowResult{Grows: []Grow{grow("a", 6, 20), grow("b", 5, 14), failed}})
	if v := rep.Results.GrowOnlineSeconds; v == nil || *v != 17 {
		t.Errorf("grow_online_seconds %v, want the median 17 of the two that finished", v)
	}
	if i := slices.IndexFunc(rep.Rows, func(r Row) bool { return r.Figure == "grow_online_seconds" }); i < 0 || !strings.Contains(rep.Rows[i].Detail, failed.Failure) {
		t.Errorf("rows %+v, want the failure named", rep.Rows)
	}

	// Nothing grown: null and n/a.
	never := grow("a", 6, 20)
	never.Grown, never.Failure = time.Time{}, "the filesystem not grown in the container within 2m0s of the update"
	rep = Report{}
	GrowRows(&rep, GrowResult{Grows: []Grow{never}})
	if rep.Results.GrowOnlineSeconds != nil || len(rep.Rows) != 1 || rep.Rows[0].Value != "n/a" {
		t.Errorf("no grow finished: %+v %+v", rep.Results.GrowOnlineSeconds, rep.Rows)
	}
}

// az_move_seconds_per_gib is the median of each move's seconds over its
// size; the sub-row has the raw seconds; failed moves are left out and
// named; none finished is null and n/a.
func TestAZMoveRows(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	move := func(name string, gib int, running, read float64) AZMove {
		at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
		return AZMove{Service: name, SizeGiB: gib, FromAZ: "us-west-2a", ToAZ: "us-west-2b", OldVolumeID: "vol-0123456789abcdef0",
			NewVolumeID: "vol-0123456789abcdef1", Drained: t0, Running: at(running), Read: at(read)}
	}
	var rep Report
	// 40/1, 60/2, 80/4: 40, 30, 20 s per GiB.
	AZMoveRows(&rep, AZMoveResult{Moves: []AZMove{move("a", 1, 39.5, 40), move("b", 2, 59, 60), move("c", 4, 79, 80)}, Snapshots: 3})
	if v := rep.Results.AZMoveSecondsPerGiB; v == nil || *v != 30 {
		t.Errorf("az_move_seconds_per_gib %v, want the median 30", v)
	}
	i := slices.IndexFunc(rep.Rows, func(r Row) bool { return r.Figure == "az_move_seconds_per_gib" })
	if i < 0 || rep.Rows[i].Value != "30.0" || !strings.Contains(rep.Rows[i].Detail, "2 GiB 60.00s") || !strings.Contains(rep.Rows[i].Detail, "3 CreateSnapshot") {
		t.Errorf("rows %+v, want az_move_seconds_per_gib 30.0 with each move", rep.Rows)
	}
	if i+1 >= len(rep.Rows) || rep.Rows[i+1].Figure != "  seconds per move" || rep.Rows[i+1].Value != "60.00s" {
		t.Errorf("rows %+v, want the raw seconds' median 60.00s under it", rep.Rows)
	}

	// A failed move is left out and named.
	failed := move("c", 4, 79, 80)
	failed.Read, failed.Failure = time.Time{}, "no replacement RUNNING before the deadline"
	rep = Report{}
	AZMoveRows(&rep, AZMoveResult{Moves: []AZMove{move("a", 1, 39, 40), move("b", 2, 59, 60), failed}})
	if v := rep.Results.AZMoveSecondsPerGiB; v == nil || *v != 35 {
		t.Errorf("az_move_seconds_per_gib %v, want the median 35 of the two that finished", v)
	}
	if i := slices.IndexFunc(rep.Rows, func(r Row) bool { return r.Figure == "az_move_seconds_per_gib" }); i < 0 || !strings.Contains(rep.Rows[i].Detail, failed.Failure) {
		t.Errorf("the failed move is not named: %+v", rep.Rows)
	}

	// Nothing finished: null and n/a.
	rep = Report{}
	AZMoveRows(&rep, AZMoveResult{Moves: []AZMove{failed}})
	if rep.Results.AZMoveSecondsPerGiB != nil || len(rep.Rows) != 1 || rep.Rows[0].Value != "n/a" {
		t.Errorf("no move finished: %+v %+v", rep.Results.AZMoveSecondsPerGiB, rep.Rows)
	}
}

// An unmount of several volumes (a drain's release) is each volume's
// unmount: sent when it was sent, done when it ended, whatever the other
// volumes' lines said (its status is the batch's).
func TestBuildTimelineReadsAnUnmountOfSeveralVolumes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	h := Handoff{VolumeID: "vol-2", OldInstance: "i-a", NewInstance: "i-b", Drained: t0}
	entries := []Entry{
		{Time: at(1), Msg: msgCommandSent, Attrs: map[string]string{"command": "c-b", "document": "tether-unmount", "instances": "i-a"}},
		{Time: at(2), Msg: msgCommandFinished, Attrs: map[string]string{"command": "c-b", "status": "Failed"}},
	}
	tl := BuildTimeline(h, entries, map[string]string{"c-b": "vol-1,vol-2,vol-3"}, Documents{Mount: "tether-mount", Unmount: "tether-unmount"})
	if d, ok := tl.Offset(MarkUnmountSent); !ok || d != time.Second || tl.UnmountCommands != 1 {
		t.Errorf("unmount sent %v (seen %v), %d commands; want 1s, one", d, ok, tl.UnmountCommands)
	}
	if d, ok := tl.Offset(MarkUnmountDone); !ok || d != 2*time.Second {
		t.Errorf("unmount done %v (seen %v), want 2s", d, ok)
	}
	other := BuildTimeline(Handoff{VolumeID: "vol-4", Drained: t0}, entries, map[string]string{"c-b": "vol-1,vol-2,vol-3"}, Documents{Mount: "tether-mount", Unmount: "tether-unmount"})
	if _, ok := other.Offset(MarkUnmountSent); ok {
		t.Error("a volume the command does not name")
	}
}
