package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// FunctionLine is one JSON line a function wrote on its output: a slog
// record (time, level, msg) or an EMF line (its metrics, timed by
// _aws.Timestamp). The emulator's own lines are not JSON and are skipped.
type FunctionLine struct {
	Function string // the template's logical id
	Time     time.Time
	Level    string
	Msg      string
	Metrics  map[string]float64 // EMF metrics of the line; nil for a log record
}

// ParseFunctionOutput reads every function's output (by logical id), in
// order within each function.
func ParseFunctionOutput(outputs map[string]string) []FunctionLine {
	var out []FunctionLine
	for _, id := range slices.Sorted(maps.Keys(outputs)) {
		sc := bufio.NewScanner(strings.NewReader(outputs[id]))
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			if l, ok := parseFunctionLine(id, sc.Bytes()); ok {
				out = append(out, l)
			}
		}
	}
	return out
}

func parseFunctionLine(id string, line []byte) (FunctionLine, bool) {
	if len(line) == 0 || line[0] != '{' {
		return FunctionLine{}, false
	}
	var rec map[string]json.RawMessage
	if json.Unmarshal(line, &rec) != nil {
		return FunctionLine{}, false
	}
	l := FunctionLine{Function: id}
	if raw, ok := rec["_aws"]; ok {
		var meta struct {
			Timestamp         int64 `json:"Timestamp"`
			CloudWatchMetrics []struct {
				Metrics []struct{ Name string } `json:"Metrics"`
			} `json:"CloudWatchMetrics"`
		}
		if json.Unmarshal(raw, &meta) != nil {
			return FunctionLine{}, false
		}
		l.Time = time.UnixMilli(meta.Timestamp)
		l.Metrics = map[string]float64{}
		for _, d := range meta.CloudWatchMetrics {
			for _, m := range d.Metrics {
				var v float64
				if json.Unmarshal(rec[m.Name], &v) == nil {
					l.Metrics[m.Name] = v
				}
			}
		}
		return l, true
	}
	if json.Unmarshal(rec["time"], &l.Time) != nil {
		return FunctionLine{}, false
	}
	_ = json.Unmarshal(rec["level"], &l.Level)
	_ = json.Unmarshal(rec["msg"], &l.Msg)
	return l, true
}

// Span is a stretch of time [From, To].
type Span struct{ From, To time.Time }

// Contains says whether t is in the span.
func (s Span) Contains(t time.Time) bool { return !t.Before(s.From) && !t.After(s.To) }

// inSpans says whether t is in one of spans; nil spans hold every time.
func inSpans(spans []Span, t time.Time) bool {
	return spans == nil || slices.ContainsFunc(spans, func(s Span) bool { return s.Contains(t) })
}

// MetricSums adds up each function's EMF metric name over the lines in
// the spans (nil spans: every line), by function.
func MetricSums(lines []FunctionLine, name string, spans []Span) map[string]float64 {
	out := map[string]float64{}
	for _, l := range lines {
		if v, ok := l.Metrics[name]; ok && inSpans(spans, l.Time) {
			out[l.Function] += v
		}
	}
	return out
}

// Sum is the total over functions.
func Sum(byFunction map[string]float64) float64 {
	t := 0.0
	for _, v := range byFunction {
		t += v
	}
	return t
}

// msgInvocationDone is the line each function's dispatcher writes at the
// end of an invocation.
const msgInvocationDone = "invocation done"

// Invocations counts function's invocations that ended in the spans
// (nil: ever).
func Invocations(lines []FunctionLine, function string, spans []Span) int {
	n := 0
	for _, l := range lines {
		if l.Function == function && l.Msg == msgInvocationDone && inSpans(spans, l.Time) {
			n++
		}
	}
	return n
}

// Finding is one kind of warning or error the functions logged, and how
// often.
type Finding struct {
	Function string
	Level    string
	Msg      string
	Count    int
}

// FunctionFindings counts the WARN and ERROR records each function
// logged at or after since, by message: where a slow or failed handoff's
// time went, in tether's own words.
func FunctionFindings(lines []FunctionLine, since time.Time) []Finding {
	counts := map[Finding]int{}
	for _, l := range lines {
		if l.Metrics == nil && !l.Time.Before(since) && (l.Level == "WARN" || l.Level == "ERROR") {
			counts[Finding{Function: l.Function, Level: l.Level, Msg: l.Msg}]++
		}
	}
	out := make([]Finding, 0, len(counts))
	for f, n := range counts {
		f.Count = n
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b Finding) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Function+a.Msg, b.Function+b.Msg)
	})
	return out
}

// FormatFindings renders the n most frequent findings.
func FormatFindings(fs []Finding, n int, indent string) string {
	if len(fs) == 0 {
		return indent + "no warnings or errors\n"
	}
	var b strings.Builder
	for _, f := range fs[:min(n, len(fs))] {
		fmt.Fprintf(&b, "%s%5d %-5s %s: %s\n", indent, f.Count, f.Level, f.Function, f.Msg)
	}
	if len(fs) > n {
		fmt.Fprintf(&b, "%s(%d more kinds)\n", indent, len(fs)-n)
	}
	return b.String()
}
