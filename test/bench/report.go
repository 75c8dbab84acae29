package bench

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/world"
)

// HandoffGoal is the goal of both handoff ratios.
const HandoffGoal = "≤ 1.15"

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

// drawnFloor is the floor with this handoff's own draws: the detach,
// attach and mount command as the world timed them (the mount command
// with the agent's mount in it), plus the measured container start.
func drawnFloor(tl Timeline, ssm, containerStart time.Duration) (time.Duration, bool) {
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
	// The plugin mounts a device it knows by itself, without the mount
	// command: then the floor's SSM command is the profile's.
	m, ok := span(MarkMountSent, MarkMountDone)
	if !ok {
		m = ssm
	}
	return d + a + m + containerStart, true
}

// split divides a handoff's time into the world's draws on the critical
// path (the drawn floor), ECS's own steps before the old task stopped, and
// the rest: tether's overhead.
func split(h Handoff, tl Timeline, f Floor) (world, ecs, tether time.Duration, ok bool) {
	world, ok = drawnFloor(tl, f.SSMCommand, f.ContainerStart)
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
	r.Add("  where the time goes", secs(Median(tethers)), "", fmt.Sprintf("median tether overhead per handoff; the world's own draws on the path %s, ECS stopping the old task %s (medians of %d)",
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

// HandoffRows adds the single-handoff figures.
func HandoffRows(r *Report, run RunResult, floor Floor) {
	ds := run.Durations()
	if med, ok := run.Median(); !ok {
		r.Add("handoff_ratio_1", "n/a", HandoffGoal, fmt.Sprintf("%d of %d handoffs finished", len(ds), len(run.Handoffs)))
	} else {
		ratio := floor.Ratio(med)
		r.Results.HandoffRatio1 = Ptr(ratio)
		r.Add("handoff_ratio_1", Ratio(ratio), HandoffGoal, fmt.Sprintf("median %s of %d handoffs (%s%s) / floor %s",
			secs(med), len(run.Handoffs), durations(ds), failedNote(run), secs(floor.Total())))
	}
	r.Add("  floor", secs(floor.Total()), "", floor.Parts())
	var drawn []float64
	for i, tl := range run.Timelines {
		if f, ok := drawnFloor(tl, floor.SSMCommand, floor.ContainerStart); ok && run.Handoffs[i].OK() {
			drawn = append(drawn, float64(run.Handoffs[i].Duration())/float64(f))
		}
	}
	if len(drawn) > 0 {
		slices.Sort(drawn)
		r.Add("  vs this run's draws", Ratio(drawn[len(drawn)/2]), "", "median of handoff / (the detach, attach and mount command the world drew for it + container start)")
	}
	splitRow(r, run, floor)
	var each strings.Builder
	for i, tl := range run.Timelines {
		fmt.Fprintf(&each, "  #%d %s: %s\n", i+1, secs(run.Handoffs[i].Duration()), tl.Line())
	}
	r.Phases = append(r.Phases, fmt.Sprintf("phases of the single handoffs (%s hosts):\n%s  each handoff, seconds from the drain:\n%s  the functions' warnings and errors meanwhile:\n%s",
		run.Hosts, Summarize(run.Timelines).Format("  "), each.String(), FormatFindings(run.Findings, 8, "  ")))
}

// ConcurrentRows adds the many-handoffs figures.
func ConcurrentRows(r *Report, run RunResult, floor Floor, instances int) {
	ds := run.Durations()
	bound := BucketBound(floor, DefaultLimits(), len(run.Handoffs))
	boundMed := Median(bound)
	if med, ok := run.Median(); !ok {
		r.Add("handoff_ratio_200", "n/a", HandoffGoal, fmt.Sprintf("%d of %d handoffs finished", len(ds), len(run.Handoffs)))
	} else {
		ratio := floor.Ratio(med)
		r.Results.HandoffRatio200 = Ptr(ratio)
		slices.Sort(ds)
		r.Add("handoff_ratio_200", Ratio(ratio), HandoffGoal, fmt.Sprintf("median %s of %d concurrent handoffs on %d %s instances (finished: min %s, max %s%s) / floor %s",
			secs(med), len(run.Handoffs), instances, run.Hosts, secs(ds[0]), secs(ds[len(ds)-1]), failedNote(run), secs(floor.Total())))
		r.Add("  vs bucket-bound floor", Ratio(float64(med)/float64(boundMed)), "",
			fmt.Sprintf("the floor's steps for %d handoffs at once through EC2's and SSM's documented token buckets (Detach, Attach, SendCommand 50 + 5/s): median %s, last %s",
				len(run.Handoffs), secs(boundMed), secs(bound[len(bound)-1])))
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

// CallRows adds failed_handoffs, ec2_calls_per_handoff and throttled_calls
// over the runs.
func CallRows(r *Report, runs ...RunResult) {
	failed, handoffs, calls, throttled := 0, 0, 0, 0
	var perRun, reasons []string
	allCalls, allThrottled := map[string]int{}, map[string]int{}
	for _, run := range runs {
		failed += run.Failed()
		handoffs += len(run.Handoffs)
		calls += run.EC2Calls
		throttled += run.ThrottledTotal()
		addTo(allCalls, run.Calls)
		addTo(allThrottled, run.Throttled)
		if len(run.Handoffs) > 0 {
			perRun = append(perRun, fmt.Sprintf("%s %.2f", run.Name, float64(run.EC2Calls)/float64(len(run.Handoffs))))
		}
		for _, h := range run.Handoffs {
			if !h.OK() && len(reasons) < 5 {
				reasons = append(reasons, fmt.Sprintf("%s: %s", h.Service, h.Failure))
			}
		}
	}
	detail := fmt.Sprintf("%d handoffs", handoffs)
	if len(reasons) > 0 {
		detail += "; " + strings.Join(reasons, "; ")
	}
	r.Results.FailedHandoffs = Ptr(failed)
	r.Add("failed_handoffs", fmt.Sprint(failed), "0", detail)
	if handoffs > 0 {
		per := float64(calls) / float64(handoffs)
		r.Results.EC2CallsPerHandoff = Ptr(per)
		r.Add("ec2_calls_per_handoff", fmt.Sprintf("%.2f", per), "≤ 6", fmt.Sprintf("%d EC2 calls / %d handoffs (per run: %s): %s",
			calls, handoffs, strings.Join(perRun, ", "), countList(allCalls)))
	}
	r.Results.ThrottledCalls = Ptr(throttled)
	r.Add("throttled_calls", fmt.Sprint(throttled), "", countList(allThrottled))
}

func countList(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
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
	return int(a.Duration() - b.Duration())
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
