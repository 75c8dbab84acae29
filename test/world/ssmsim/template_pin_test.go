package ssmsim

import (
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

// dumpDocuments describes every document the server holds, in name order,
// as the tests below pin it.
func dumpDocuments(s *Server, ids map[string]string) string {
	var b strings.Builder
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		d := s.documents[ids[id]]
		timeout := d.step.timeout
		if timeout == "" {
			timeout = fmt.Sprint(defaultExecutionTimeout)
		}
		fmt.Fprintf(&b, "%s -> %s: step %s, timeout %s, description %q\n", id, d.name, d.step.name, timeout, d.description)
		for _, p := range d.order {
			q := d.params[p]
			fmt.Fprintf(&b, "  param %s: type %s, default %v (%v), pattern %q, allowed %v\n", p, q.Type, q.Default, q.hasDefault, q.AllowedPattern, q.AllowedValues)
		}
		for _, line := range d.step.runCommand {
			fmt.Fprintf(&b, "  run %s\n", line)
		}
		fmt.Fprintf(&b, "  raw %s\n", d.raw)
	}
	return b.String()
}

// What LoadTemplate makes of the test template, pinned so a change of the
// template reader shows here. The repository's template.yaml is not loaded
// here: its documents refuse Windows and macOS in steps of their own, which
// the world's Linux instances skip, and samlocal hands this server each
// document without them (samlocal's testdata/repo-template.load pins what
// it hands over).
func TestLoadTemplatePinned(t *testing.T) {
	for _, c := range []struct{ path, stack, golden string }{
		{"testdata/template.yaml", "teststack", "testdata/template.documents"},
	} {
		t.Run(c.path, func(t *testing.T) {
			s := New(Config{Logger: slog.New(slog.DiscardHandler)})
			defer s.Close()
			ids, err := s.LoadTemplate(c.path, c.stack)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(c.golden)
			if err != nil {
				t.Fatal(err)
			}
			if got := dumpDocuments(s, ids); got != string(want) {
				t.Errorf("LoadTemplate(%s) made\n%s\nwant (%s)\n%s", c.path, got, c.golden, want)
			}
		})
	}
}
