package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// Results are the figures `make bench` writes to BENCH_OUT, with exactly
// these keys. A figure that could not be measured is null.
type Results struct {
	HandoffRatio1      *float64 `json:"handoff_ratio_1"`
	HandoffRatio200    *float64 `json:"handoff_ratio_200"`
	FailedHandoffs     *int     `json:"failed_handoffs"`
	EC2CallsPerHandoff *float64 `json:"ec2_calls_per_handoff"`
	ThrottledCalls     *int     `json:"throttled_calls"`
	MountOverheadRatio *float64 `json:"mount_overhead_ratio"`
	DataPathRatio      *float64 `json:"data_path_ratio"`
	Format1TiBSeconds  *float64 `json:"format_1tib_seconds"`
	BootstrapBytes     *int64   `json:"bootstrap_bytes"`
	ColdInitMs         *float64 `json:"cold_init_ms"`
}

// Keys are the JSON keys of Results, in order.
var Keys = []string{
	"handoff_ratio_1", "handoff_ratio_200", "failed_handoffs", "ec2_calls_per_handoff", "throttled_calls",
	"mount_overhead_ratio", "data_path_ratio", "format_1tib_seconds", "bootstrap_bytes", "cold_init_ms",
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
	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
}

// Ratio formats a ratio.
func Ratio(v float64) string { return fmt.Sprintf("%.3f", v) }
