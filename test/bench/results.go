package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// Results are the figures `make bench` writes to BENCH_OUT, with exactly
// these keys. A figure that could not be measured is null.
type Results struct {
	HandoffRatio1            *float64 `json:"handoff_ratio_1"`
	HandoffRatio1DetachEvent *float64 `json:"handoff_ratio_1_detach_event"`
	HandoffRatio200          *float64 `json:"handoff_ratio_200"`
	HandoffRatio200Bucket    *float64 `json:"handoff_ratio_200_bucket"`
	FailedHandoffs           *int     `json:"failed_handoffs"`
	// Calls per handoff: tether's calls in the handoff windows of the runs
	// on the strict world without the detachVolume event (single and 200).
	EC2CallsPerHandoff         *float64 `json:"ec2_calls_per_handoff"`
	EC2MutatingCallsPerHandoff *float64 `json:"ec2_mutating_calls_per_handoff"`
	ECSCallsPerHandoff         *float64 `json:"ecs_calls_per_handoff"`
	SSMCallsPerHandoff         *float64 `json:"ssm_calls_per_handoff"`
	// The same ECS figure in one world with 10, then 500, unrelated tasks
	// running in the cluster.
	ECSCallsPerHandoff10Unrelated  *float64 `json:"ecs_calls_per_handoff_10_unrelated"`
	ECSCallsPerHandoff500Unrelated *float64 `json:"ecs_calls_per_handoff_500_unrelated"`
	ThrottledCalls                 *int     `json:"throttled_calls"`
	RecursiveInvocationsDropped    *int     `json:"recursive_invocations_dropped"`
	ForcedDetachesLive             *int     `json:"forced_detaches_live"`
	MkfsWithoutGrant               *int     `json:"mkfs_without_grant"`
	MountOverheadRatio             *float64 `json:"mount_overhead_ratio"`
	DataPathRatio                  *float64 `json:"data_path_ratio"`
	Format1TiBSeconds              *float64 `json:"format_1tib_seconds"`
	BootstrapBytes                 *int64   `json:"bootstrap_bytes"`
	ColdInitMs                     *float64 `json:"cold_init_ms"`
	// Hosts that go away (issue 13): a host that dies without a drain,
	// its volume's handoff less the floor; a scale-in through tether's
	// termination hook against a drain in the same world.
	DeadHostHandoffOverFloorS *float64 `json:"dead_host_handoff_over_floor_s"`
	ScaleInHandoffRatio       *float64 `json:"scale_in_handoff_ratio"`
	// Online grow: from a new revision's task RUNNING (its volume asking
	// for a larger size) to its container seeing the filesystem grown.
	GrowOnlineSeconds *float64 `json:"grow_online_seconds"`
	// AZ move by snapshot: from the drain that places a task in another
	// AZ to its replacement there reading its data, per GiB of the volume.
	AZMoveSecondsPerGiB *float64 `json:"az_move_seconds_per_gib"`
}

// Keys are the JSON keys of Results, in order.
var Keys = []string{
	"handoff_ratio_1", "handoff_ratio_1_detach_event", "handoff_ratio_200", "handoff_ratio_200_bucket", "failed_handoffs",
	"ec2_calls_per_handoff", "ec2_mutating_calls_per_handoff", "ecs_calls_per_handoff", "ssm_calls_per_handoff",
	"ecs_calls_per_handoff_10_unrelated", "ecs_calls_per_handoff_500_unrelated",
	"throttled_calls", "recursive_invocations_dropped", "forced_detaches_live", "mkfs_without_grant",
	"mount_overhead_ratio", "data_path_ratio", "format_1tib_seconds", "bootstrap_bytes", "cold_init_ms",
	"dead_host_handoff_over_floor_s", "scale_in_handoff_ratio", "grow_online_seconds",
	"az_move_seconds_per_gib",
}

// WriteJSON writes the results to path.
func (r Results) WriteJSON(path string) error {
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	return nil
}

// Ptr returns a pointer to v (for the Results fields).
func Ptr[T any](v T) *T { return &v }

// Row is one line of the table: a figure, its value, its goal and what it
// is made of.
type Row struct {
	Figure string // the JSON key, or a detail's name
	Value  string
	Goal   string
	Detail string
}

// Report is everything a run measured: the JSON figures, the table's rows,
// notes (how things were measured, what was decided) and the phase
// breakdowns.
type Report struct {
	Results Results
	Rows    []Row
	Notes   []string
	Phases  []string // titled phase breakdowns
}

// Add appends a row.
func (r *Report) Add(figure, value, goal, detail string) {
	r.Rows = append(r.Rows, Row{Figure: figure, Value: value, Goal: goal, Detail: detail})
}

// Note appends a note.
func (r *Report) Note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Print writes the table, the phase breakdowns and the notes.
func (r *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tvalue\tgoal\tparts / detail")
	fmt.Fprintln(tw, "------\t-----\t----\t--------------")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", row.Figure, row.Value, row.Goal, row.Detail)
	}
	tw.Flush()
	for _, p := range r.Phases {
		fmt.Fprintf(w, "\n%s", p)
		if !strings.HasSuffix(p, "\n") {
			fmt.Fprintln(w)
		}
	}
	r.markdown(w)
	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
}

// Ratio formats a ratio.
func Ratio(v float64) string { return fmt.Sprintf("%.3f", v) }

// markdown writes the rows of the JSON figures as a Markdown table, the
// shape of README's "Measured here" (figure, value, goal), from this run.
func (r *Report) markdown(w io.Writer) {
	var rows []Row
	for _, row := range r.Rows {
		if slices.Contains(Keys, row.Figure) {
			rows = append(rows, row)
		}
	}
	// In the keys' order, whatever order the parts ran in.
	slices.SortStableFunc(rows, func(a, b Row) int { return slices.Index(Keys, a.Figure) - slices.Index(Keys, b.Figure) })
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "\nthe figures as a Markdown table (README's \"Measured here\"):")
	fmt.Fprintln(w, "| figure | value | goal |\n|---|---|---|")
	for _, row := range rows {
		fmt.Fprintf(w, "| `%s` | %s | %s |\n", row.Figure, row.Value, row.Goal)
	}
}
