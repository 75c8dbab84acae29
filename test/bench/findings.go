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

// Finding is one kind of warning or error the functions logged, and how
// often.
type Finding struct {
	Function string
	Level    string
	Msg      string
	Count    int
}

// FunctionFindings counts the WARN and ERROR lines each function logged
// (slog JSON on its output) at or after since, by message: where a slow
// or failed handoff's time went, in tether's own words.
func FunctionFindings(outputs map[string]string, since time.Time) []Finding {
	counts := map[Finding]int{}
	for id, out := range outputs {
		sc := bufio.NewScanner(strings.NewReader(out))
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if len(line) == 0 || line[0] != '{' {
				continue // the emulator's own lines
			}
			var rec struct {
				Time  time.Time `json:"time"`
				Level string    `json:"level"`
				Msg   string    `json:"msg"`
			}
			if json.Unmarshal(line, &rec) != nil || rec.Time.Before(since) {
				continue
			}
			if rec.Level == "WARN" || rec.Level == "ERROR" {
				counts[Finding{Function: id, Level: rec.Level, Msg: rec.Msg}]++
			}
		}
	}
	out := make([]Finding, 0, len(counts))
	for _, f := range slices.Collect(maps.Keys(counts)) {
		f.Count = counts[f]
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
