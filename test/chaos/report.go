package chaos

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what one run did and found.
type Report struct {
	Config   Config
	Elapsed  time.Duration // the whole run, world start to checks (wall)
	OpsPhase time.Duration // the operations phase (wall)
	Settled  bool

	Handoffs  int
	Durations []time.Duration // wall time of each completed handoff whose ends were both seen

	Ops, Skipped, Failed map[OpKind]int
	FaultPlan            []string
	Faults               map[string]int // injected, by kind
	Calls                map[string]int // "service:Action" -> calls answered
	Throttled            map[string]int // "ec2:Action", "ssm:Action" -> refused by a rate limit (or a burst)
	Errors               map[string]int // error code -> answers with it
	Tasks                int
	TaskFailures         map[string]int // stoppedReason (ids masked) of tasks that failed to start
	DLQ                  map[string]int // dead-letter queue -> messages
	DLQExplained         []string
	// Outcomes: what happened that breaks no invariant but says how tether
	// met the faults (volumes of dead hosts served again, tasks stopped
	// while a live host held their volume, forced detaches by EC2 state,
	// plugin races, torn superblocks and their repairs).
	Outcomes map[string]int
	// RecursiveDropped is Lambda's RecursiveInvocationsDropped over the
	// run; LongestChain the longest SQS -> Lambda chain.
	RecursiveDropped, LongestChain int
	// History: the operations up to the first violation (the last ones).
	History []string

	Violations []Violation
	Stories    map[string][]string // volume id -> what the watcher saw of it (volumes named by violations)
}

// Broken reports whether any invariant was broken.
func (r *Report) Broken() bool { return len(r.Violations) > 0 }

// FirstViolationHandoffs is the handoff count at the first violation.
func (r *Report) FirstViolationHandoffs() int {
	if len(r.Violations) == 0 {
		return r.Handoffs
	}
	return r.Violations[0].Handoffs
}

func (r *run) report(p faultPlan) *Report {
	c := r.w.Counts()
	rep := &Report{
		Config: r.cfg, Ops: r.sched.done, Skipped: r.sched.skipped, Failed: r.sched.failed,
		Faults: injectedFaults(r.w, c), Calls: c.Calls, Throttled: c.Throttled, Errors: c.Errors,
		TaskFailures: map[string]int{}, DLQ: map[string]int{}, Stories: map[string][]string{}, Outcomes: map[string]int{},
		RecursiveDropped: r.w.RecursiveInvocationsDropped(), LongestChain: r.w.LongestChain(),
	}
	if !r.cfg.NoFaults {
		rep.FaultPlan = p.describe()
	}
	for a, n := range r.w.ECS().Gate().Counts().Throttled {
		rep.Throttled["ecs:"+a] += n
	}
	rep.Tasks = len(r.w.ECS().Snapshot(r.cluster).Tasks)
	return rep
}

// fill copies the watcher's findings into the report; wanted are the
// shared volumes whose service runs at the end.
func (wt *watcher) fill(rep *Report, wanted map[string]bool) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	rep.Handoffs = wt.handoffs
	rep.Durations = slices.Clone(wt.durations)
	for k, n := range wt.outcomes {
		rep.Outcomes[k] += n
	}
	for vol, d := range wt.deaths {
		if !d.servedAt.IsZero() {
			continue
		}
		// An outcome, not a violation: a service that wants it and does
		// not run it is the settle check's violation.
		why := "its service was deleted or scaled in"
		if v := wt.vols[vol]; v != nil && wanted[v.name] {
			why = "its service wants it"
		}
		rep.Outcomes["volumes of a dead instance not served again by the end ("+why+")"]++
	}
	rep.Violations = slices.Clone(wt.violations)
	for _, v := range wt.violations {
		if vo := wt.vols[v.Volume]; vo != nil {
			rep.Stories[v.Volume] = slices.Clone(vo.story)
		}
	}
}

// Percentile returns the p-th percentile (0-100) of ds.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p / 100 * float64(len(s)-1))
	return s[i]
}

// Print writes the report as tables.
func (r *Report) Print(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "\ntether chaos — seed %d, target %d handoffs, profile %s, functions %s\n", c.Seed, c.Handoffs, c.Profile, c.Functions)
	fmt.Fprintf(w, "%d instances in %d AZs, %d shared-scope services (AZ-pinned), %d task-scope services; operation every %s on average\n",
		c.Instances, c.AZs, c.SharedServices, c.TaskServices, c.OpInterval)
	fmt.Fprintf(w, "wall time %s (operations %s); settled: %v; tasks %d\n", r.Elapsed.Round(time.Second), r.OpsPhase.Round(time.Second), r.Settled, r.Tasks)
	fmt.Fprintf(w, "handoff: a shared volume's attachment moved to another instance and the next task started on its verified history\n")
	fmt.Fprintf(w, "(its generation written on top of every earlier one); time from the old task's STOPPED, or the new task's placement\n")
	fmt.Fprintf(w, "if later, to the new task's RUNNING\n\n")

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "handoffs completed\t%d\n", r.Handoffs)
	if len(r.Durations) > 0 {
		fmt.Fprintf(tw, "handoff time (world = wall / %.2g)\tp50 %s\tp90 %s\tp99 %s\tmax %s\t(n=%d)\n", timeScale,
			worldTime(Percentile(r.Durations, 50)), worldTime(Percentile(r.Durations, 90)), worldTime(Percentile(r.Durations, 99)), worldTime(Percentile(r.Durations, 100)), len(r.Durations))
		fmt.Fprintf(tw, "handoff time (wall)\tp50 %s\tp90 %s\tp99 %s\tmax %s\n",
			wallTime(Percentile(r.Durations, 50)), wallTime(Percentile(r.Durations, 90)), wallTime(Percentile(r.Durations, 99)), wallTime(Percentile(r.Durations, 100)))
	}
	fmt.Fprintf(tw, "violations\t%d\n", len(r.Violations))
	fmt.Fprintf(tw, "recursive invocations dropped\t%d\t(longest SQS -> Lambda chain %d)\n", r.RecursiveDropped, r.LongestChain)
	tw.Flush()

	section(w, "outcomes (no violation: how tether met the faults)", func(tw io.Writer) {
		for _, k := range slices.Sorted(maps.Keys(r.Outcomes)) {
			fmt.Fprintf(tw, "%s\t%d\n", k, r.Outcomes[k])
		}
	})

	section(w, "operations (done / skipped: no target / failed)", func(tw io.Writer) {
		kinds := map[OpKind]bool{}
		for _, m := range []map[OpKind]int{r.Ops, r.Skipped, r.Failed} {
			for k := range m {
				kinds[k] = true
			}
		}
		for _, k := range slices.Sorted(maps.Keys(kinds)) {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", k, r.Ops[k], r.Skipped[k], r.Failed[k])
		}
	})
	section(w, "faults injected", func(tw io.Writer) {
		for _, line := range r.FaultPlan {
			fmt.Fprintf(tw, "plan\t%s\n", line)
		}
		for _, k := range slices.Sorted(maps.Keys(r.Faults)) {
			fmt.Fprintf(tw, "%s\t%d\n", k, r.Faults[k])
		}
	})
	section(w, "EC2 calls (answered / throttled)", func(tw io.Writer) {
		for _, k := range slices.Sorted(maps.Keys(r.Calls)) {
			if strings.HasPrefix(k, "ec2:") {
				fmt.Fprintf(tw, "%s\t%d\t%d\n", strings.TrimPrefix(k, "ec2:"), r.Calls[k], r.Throttled[k])
			}
		}
	})
	section(w, "other calls (answered / throttled)", func(tw io.Writer) {
		for _, k := range slices.Sorted(maps.Keys(r.Calls)) {
			if !strings.HasPrefix(k, "ec2:") {
				fmt.Fprintf(tw, "%s\t%d\t%d\n", k, r.Calls[k], r.Throttled[k])
			}
		}
	})
	section(w, "error answers by code", func(tw io.Writer) {
		for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
			fmt.Fprintf(tw, "%s\t%d\n", k, r.Errors[k])
		}
	})
	section(w, "tasks stopped before they ran (stoppedReason, ids masked; chaos's own stops left out)", func(tw io.Writer) {
		for _, k := range slices.Sorted(maps.Keys(r.TaskFailures)) {
			fmt.Fprintf(tw, "%d\t%s\n", r.TaskFailures[k], k)
		}
	})
	section(w, "dead-letter queues", func(tw io.Writer) {
		for _, k := range slices.Sorted(maps.Keys(r.DLQ)) {
			fmt.Fprintf(tw, "%s\t%d\n", k, r.DLQ[k])
		}
		for _, e := range r.DLQExplained {
			fmt.Fprintf(tw, "explained\t%s\n", e)
		}
	})
	if len(r.Violations) == 0 {
		fmt.Fprintf(w, "\nno violations\n")
		return
	}
	fmt.Fprintf(w, "\nVIOLATIONS (%d)\n", len(r.Violations))
	for _, v := range r.Violations {
		fmt.Fprintf(w, "  %s\n", v)
	}
	if len(r.History) > 0 {
		fmt.Fprintf(w, "\noperations before the first violation (n, time, kind, target):\n")
		for _, line := range r.History {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(r.Stories)) {
		fmt.Fprintf(w, "\nwhat the watcher saw of %s:\n", id)
		for _, line := range r.Stories[id] {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	fmt.Fprintf(w, "\nseed %d; replay: %s\n", c.Seed, c.ReplayCommand(r.FirstViolationHandoffs()+1))
}

func section(w io.Writer, title string, body func(io.Writer)) {
	fmt.Fprintf(w, "\n%s\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	body(tw)
	tw.Flush()
}

func worldTime(d time.Duration) string {
	return (time.Duration(float64(d) / timeScale)).Round(10 * time.Millisecond).String()
}
func wallTime(d time.Duration) string { return d.Round(time.Millisecond).String() }
