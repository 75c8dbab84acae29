package bench

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/world"
)

// Goals, as issue 9 and 11 set them.
const (
	HandoffGoal     = "≤ 1.15"
	BucketGoal      = "≤ 1.3"
	EC2Goal         = "≤ 4"
	EC2MutatingGoal = "≤ 2.1"
	ECSGoal         = "≤ 6"
	ECSScalingGoal  = "≤ the 10 figure"
	ZeroGoal        = "0"
)

// The cluster sizes (unrelated running tasks) the ECS scaling keys name.
const (
	unrelatedKeyFewer = 10
	unrelatedKeyMore  = 500
)

// DistortionLimit is how much slower k concurrent container starts on one
// real host may be than one alone before real hosts are judged to distort
// a many-handoffs run on this machine.
const DistortionLimit = 1.5

// ChooseHosts decides real or fake hosts for the many-handoffs run from
// the measured container starts: alone, and k at once on one host.
func ChooseHosts(alone, concurrent []time.Duration) (world.HostKind, float64) {
	a, c := Median(alone), Median(concurrent)
	if a <= 0 || c <= 0 {
		return world.FakeHosts, 0
	}
	d := float64(c) / float64(a)
	if d > DistortionLimit {
		return world.FakeHosts, d
	}
	return world.RealHosts, d
}

// drawnFloor is the floor with this handoff's own detach and attach, as
// the world drew them (the realistic profile's tails are long: a detach
// p99 is 20 s), in place of their means; the SSM command and the
// container start stay the floor's.
func drawnFloor(tl Timeline, f Floor) (time.Duration, bool) {
	span := func(a, b Mark) (time.Duration, bool) {
		if tl.At[a].IsZero() || tl.At[b].IsZero() {
			return 0, false
		}
		return tl.At[b].Sub(tl.At[a]), true
	}
	d, ok1 := span(MarkDetachCalled, MarkDetached)
	a, ok2 := span(MarkAttachCalled, MarkAttached)
	if !ok1 || !ok2 {
		return 0, false
	}
	return d + a + f.SSMCommand + f.ContainerStart, true
}

// split divides a handoff's time into the world's draws on the critical
// path (the drawn floor), ECS's own steps before the old task stopped, and
// the rest: tether's overhead.
func split(h Handoff, tl Timeline, f Floor) (world, ecs, tether time.Duration, ok bool) {
	world, ok = drawnFloor(tl, f)
	stopped, seen := tl.Offset(MarkOldStopped)
	if !ok || !seen || !h.OK() {
		return 0, 0, 0, false
	}
	return world, stopped, h.Duration() - world - stopped, true
}

// splitRow adds the median split of the handoffs' time.
func splitRow(r *Report, run RunResult, f Floor) {
	var worlds, ecss, tethers []time.Duration
	for i, tl := range run.Timelines {
		if w, e, t, ok := split(run.Handoffs[i], tl, f); ok {
			worlds, ecss, tethers = append(worlds, w), append(ecss, e), append(tethers, t)
		}
	}
	if len(worlds) == 0 {
		return
	}
	r.Add("  where the time goes", secs(Median(tethers)), "", fmt.Sprintf("median tether overhead per handoff; the world's draws on the path %s, ECS stopping the old task %s (medians of %d)",
		secs(Median(worlds)), secs(Median(ecss)), len(worlds)))
}

// failedNote says how failed handoffs entered the median.
func failedNote(run RunResult) string {
	if n := run.Failed(); n > 0 {
		return fmt.Sprintf("; %d failed, counted as never finishing", n)
	}
	return ""
}

func durations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.1f", d.Seconds())
	}
	return strings.Join(parts, " ") + " s"
}

// events says whether the run's world sent detachVolume events.
func events(run RunResult) string {
	if run.DetachEvents {
		return "with the detachVolume event"
	}
	return "without the detachVolume event"
}

// HandoffRows adds a single-handoff run's ratio under key
// (handoff_ratio_1 or handoff_ratio_1_detach_event) and sets it in set.
func HandoffRows(r *Report, key string, set **float64, run RunResult, floor Floor) {
	ds := run.Durations()
	if med, ok := run.Median(); !ok {
		r.Add(key, "n/a", HandoffGoal, fmt.Sprintf("%d of %d handoffs finished (%s)", len(ds), len(run.Handoffs), events(run)))
	} else {
		ratio := floor.Ratio(med)
		*set = Ptr(ratio)
		r.Add(key, Ratio(ratio), HandoffGoal, fmt.Sprintf("median %s of %d handoffs %s (%s%s) / floor %s",
			secs(med), len(run.Handoffs), events(run), durations(ds), failedNote(run), secs(floor.Total())))
	}
	var drawn []float64
	for i, tl := range run.Timelines {
		if f, ok := drawnFloor(tl, floor); ok && run.Handoffs[i].OK() {
			drawn = append(drawn, float64(run.Handoffs[i].Duration())/float64(f))
		}
	}
	if len(drawn) > 0 {
		slices.Sort(drawn)
		r.Add("  vs this run's draws", Ratio(drawn[len(drawn)/2]), "", "median of handoff / (the detach and attach the world drew for it + the floor's SSM command and container start)")
	}
	splitRow(r, run, floor)
	var each strings.Builder
	for i, tl := range run.Timelines {
		fmt.Fprintf(&each, "  #%d %s: %s\n", i+1, secs(run.Handoffs[i].Duration()), tl.Line())
	}
	r.Phases = append(r.Phases, fmt.Sprintf("phases of the single handoffs %s (%s hosts):\n%s  each handoff, seconds from the drain:\n%s  the functions' warnings and errors meanwhile:\n%s",
		events(run), run.Hosts, Summarize(run.Timelines).Format("  "), each.String(), FormatFindings(run.Findings, 8, "  ")))
}

// FloorRow adds the floor's parts.
func FloorRow(r *Report, floor Floor) {
	r.Add("  floor", secs(floor.Total()), "", floor.Parts())
}

// ConcurrentRows adds the many-handoffs figures: the median against the
// floor (handoff_ratio_200) and against the floor the request-rate
// buckets allow (handoff_ratio_200_bucket).
func ConcurrentRows(r *Report, run RunResult, floor Floor, instances int) {
	ds := run.Durations()
	limits := DefaultLimits()
	bound := BucketBound(floor, limits, len(run.Handoffs))
	boundMed := Median(bound)
	if med, ok := run.Median(); !ok {
		r.Add("handoff_ratio_200", "n/a", HandoffGoal, fmt.Sprintf("%d of %d handoffs finished", len(ds), len(run.Handoffs)))
		r.Add("handoff_ratio_200_bucket", "n/a", BucketGoal, "")
	} else {
		ratio := floor.Ratio(med)
		r.Results.HandoffRatio200 = Ptr(ratio)
		slices.Sort(ds)
		r.Add("handoff_ratio_200", Ratio(ratio), HandoffGoal, fmt.Sprintf("median %s of %d concurrent handoffs on %d %s instances %s (finished: min %s, max %s%s) / floor %s",
			secs(med), len(run.Handoffs), instances, run.Hosts, events(run), secs(ds[0]), secs(ds[len(ds)-1]), failedNote(run), secs(floor.Total())))
		bucket := float64(med) / float64(boundMed)
		r.Results.HandoffRatio200Bucket = Ptr(bucket)
		r.Add("handoff_ratio_200_bucket", Ratio(bucket), BucketGoal,
			fmt.Sprintf("the same median / the floor's steps for %d handoffs at once through the world's buckets (%s): median %s, last %s",
				len(run.Handoffs), limits, secs(boundMed), secs(bound[len(bound)-1])))
	}
	splitRow(r, run, floor)
	// The slowest handoffs show what the median hides.
	order := make([]int, len(run.Handoffs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmpHandoff(run.Handoffs[b], run.Handoffs[a]) })
	var slow strings.Builder
	for _, i := range order[:min(3, len(order))] {
		h := run.Handoffs[i]
		fmt.Fprintf(&slow, "  %s %s (%s -> %s)%s: %s\n", h.Service, secs(h.Duration()), h.OldInstance, h.NewInstance, failureNote(h), run.Timelines[i].Line())
	}
	r.Phases = append(r.Phases, fmt.Sprintf("phases of the %d concurrent handoffs (%s hosts; handoff times p10 %s, p50 %s, p90 %s):\n%s  the slowest, seconds from the drain:\n%s  the functions' warnings and errors meanwhile:\n%s",
		len(run.Handoffs), run.Hosts, secs(Quantile(ds, 0.1)), secs(Quantile(ds, 0.5)), secs(Quantile(ds, 0.9)),
		Summarize(run.Timelines).Format("  "), slow.String(), FormatFindings(run.Findings, 8, "  ")))
}

// tally is calls and handoffs over runs.
type tally struct {
	handoffs int
	calls    Calls
	ec2By    map[string]float64
	sweeps   int
	perRun   []string
	cut      []string
}

func tallyOf(runs []RunResult) tally {
	t := tally{calls: NewCalls(), ec2By: map[string]float64{}}
	for _, run := range runs {
		if len(run.Handoffs) == 0 {
			continue
		}
		t.handoffs += len(run.Handoffs)
		t.calls.Add(run.Calls)
		for k, v := range run.EC2ByFunction {
			t.ec2By[k] += v
		}
		t.sweeps += run.Sweeps
		if run.Cut > 0 {
			t.cut = append(t.cut, fmt.Sprintf("%s %d of %d", run.Name, run.Cut, len(run.Windows)))
		}
		t.perRun = append(t.perRun, fmt.Sprintf("%s: EC2 %.2f, ECS %.2f, SSM %.2f", run.Name,
			run.PerHandoff(run.Calls.Service("ec2")), run.PerHandoff(run.Calls.Service("ecs")), run.PerHandoff(run.Calls.Service("ssm"))))
	}
	return t
}

func (t tally) per(n int) float64 { return float64(n) / float64(t.handoffs) }

// CallRows adds failed_handoffs over every run, the calls per handoff of
// the headline runs (the strict world without the detachVolume event),
// and throttled_calls over every run's windows.
func CallRows(r *Report, headline, all []RunResult) {
	failed, handoffs := 0, 0
	var reasons []string
	for _, run := range all {
		failed += run.Failed()
		handoffs += len(run.Handoffs)
		for _, h := range run.Handoffs {
			if !h.OK() && len(reasons) < 5 {
				reasons = append(reasons, fmt.Sprintf("%s/%s: %s", run.Name, h.Service, h.Failure))
			}
		}
	}
	detail := fmt.Sprintf("of %d handoffs in all runs", handoffs)
	if len(reasons) > 0 {
		detail += "; " + strings.Join(reasons, "; ")
	}
	r.Results.FailedHandoffs = Ptr(failed)
	r.Add("failed_handoffs", fmt.Sprint(failed), ZeroGoal, detail)

	t := tallyOf(headline)
	if t.handoffs > 0 {
		c := t.calls
		ec2, mut, ecs, ssm := t.per(c.Service("ec2")), t.per(c.Mutating("ec2")), t.per(c.Service("ecs")), t.per(c.Service("ssm"))
		r.Results.EC2CallsPerHandoff, r.Results.EC2MutatingCallsPerHandoff = Ptr(ec2), Ptr(mut)
		r.Results.ECSCallsPerHandoff, r.Results.SSMCallsPerHandoff = Ptr(ecs), Ptr(ssm)
		r.Add("ec2_calls_per_handoff", fmt.Sprintf("%.2f", ec2), EC2Goal, fmt.Sprintf("%d EC2 calls / %d handoffs: %s; by function (their EC2Requests metric): %s",
			c.Service("ec2"), t.handoffs, c.Of("ec2"), floatList(t.ec2By)))
		r.Add("ec2_mutating_calls_per_handoff", fmt.Sprintf("%.2f", mut), EC2MutatingGoal, fmt.Sprintf("%d EC2 calls that change something (all but Describe*) / %d handoffs", c.Mutating("ec2"), t.handoffs))
		r.Add("ecs_calls_per_handoff", fmt.Sprintf("%.2f", ecs), ECSGoal, fmt.Sprintf("%d / %d: %s", c.Service("ecs"), t.handoffs, c.Of("ecs")))
		r.Add("ssm_calls_per_handoff", fmt.Sprintf("%.2f", ssm), "", fmt.Sprintf("%d / %d: %s", c.Service("ssm"), t.handoffs, c.Of("ssm")))
		cut := "every window closed with tether quiet"
		if len(t.cut) > 0 {
			cut = "windows closed at their bound with tether still busy, its later calls not counted (the figures are lower bounds): " + strings.Join(t.cut, ", ")
		}
		r.Add("  calls per run", "", "", fmt.Sprintf("%s; %d sweeps ended in these windows; %s", strings.Join(t.perRun, "; "), t.sweeps, cut))
	}

	every := tallyOf(all)
	r.Results.ThrottledCalls = Ptr(every.calls.ThrottledTotal())
	r.Add("throttled_calls", fmt.Sprint(every.calls.ThrottledTotal()), "", "tether's calls a rate limit refused, in every run's windows: "+countList(every.calls.Throttled, ""))
}

// ScalingRows adds the ECS calls per handoff at each cluster size of the
// scaling run (the first two sizes are the 10 and 500 of the keys).
func ScalingRows(r *Report, s ScalingResult, sizes []int) {
	for i, run := range s.Runs {
		if len(run.Handoffs) == 0 || i >= len(sizes) {
			continue
		}
		per := run.PerHandoff(run.Calls.Service("ecs"))
		key, goal := fmt.Sprintf("ecs_calls_per_handoff_%d_unrelated", sizes[i]), ""
		switch sizes[i] {
		case unrelatedKeyFewer:
			r.Results.ECSCallsPerHandoff10Unrelated = Ptr(per)
			goal = ECSGoal
		case unrelatedKeyMore:
			r.Results.ECSCallsPerHandoff500Unrelated = Ptr(per)
			goal = ECSScalingGoal
		}
		idle := "not measured"
		if i < len(s.IdleSweeps) {
			idle = fmt.Sprintf("%d (%s)", s.IdleSweeps[i].Service("ecs"), s.IdleSweeps[i].Of("ecs"))
		}
		r.Add(key, fmt.Sprintf("%.2f", per), goal, fmt.Sprintf("%d ECS calls / %d handoffs%s with %d unrelated tasks running in the cluster: %s; %d sweeps ended in these windows, one sweep at rest makes %s ECS calls",
			run.Calls.Service("ecs"), len(run.Handoffs), failedNote(run), sizes[i], run.Calls.Of("ecs"), run.Sweeps, idle))
	}
}

// SafetyRows adds the safety figures over every world of the run.
func SafetyRows(r *Report, s Safety, worlds int) {
	r.Results.RecursiveInvocationsDropped = Ptr(s.RecursiveDropped)
	r.Add("recursive_invocations_dropped", fmt.Sprint(s.RecursiveDropped), ZeroGoal, fmt.Sprintf("Lambda's recursive-loop detection over %d worlds; longest chain of one trace %d invocations", worlds, s.LongestChain))
	forced := max(s.ForcedLive, int(s.ForcedLiveMetric))
	r.Results.ForcedDetachesLive = Ptr(forced)
	r.Add("forced_detaches_live", fmt.Sprint(forced), ZeroGoal, fmt.Sprintf("the world saw %d DetachVolume Force=true on an instance EC2 had running; tether's ForcedDetachesLive metric says %g (the larger is the figure)", s.ForcedLive, s.ForcedLiveMetric))
	r.Results.MkfsWithoutGrant = Ptr(s.WithoutGrant)
	r.Add("mkfs_without_grant", fmt.Sprint(s.WithoutGrant), ZeroGoal, fmt.Sprintf("of %d filesystems the hosts made (fake hosts' mkfs records; real hosts' mount results and their --format-if-blank parameter)", s.Formats))
}

// countList renders the counts whose keys start with prefix (the prefix
// cut), most first.
func countList(m map[string]int, prefix string) string {
	type kv struct {
		k string
		v int
	}
	var kvs []kv
	for k, v := range m {
		if rest, ok := strings.CutPrefix(k, prefix); ok && v > 0 {
			kvs = append(kvs, kv{rest, v})
		}
	}
	if len(kvs) == 0 {
		return "none"
	}
	slices.SortFunc(kvs, func(a, b kv) int { return cmp.Or(b.v-a.v, strings.Compare(a.k, b.k)) })
	parts := make([]string, len(kvs))
	for i, e := range kvs {
		parts[i] = fmt.Sprintf("%s %d", e.k, e.v)
	}
	return strings.Join(parts, ", ")
}

func floatList(m map[string]float64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %g", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// cmpHandoff orders handoffs by time, unfinished ones last.
func cmpHandoff(a, b Handoff) int {
	switch {
	case a.Running.IsZero() && b.Running.IsZero():
		return 0
	case a.Running.IsZero():
		return 1
	case b.Running.IsZero():
		return -1
	}
	return cmp.Compare(a.Duration(), b.Duration())
}

func failureNote(h Handoff) string {
	if h.OK() {
		return ""
	}
	return " FAILED: " + h.Failure
}

// Quantile is the q-th quantile (nearest rank) of d; 0 for none.
func Quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s)-1) + 0.5)
	return s[min(max(i, 0), len(s)-1)]
}
