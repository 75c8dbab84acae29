package ssmsim

import (
	"flag"
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
		fmt.Fprintf(&b, "%s -> %s: platforms %v, description %q\n", id, d.name, d.platforms(), d.description)
		for _, p := range d.order {
			q := d.params[p]
			fmt.Fprintf(&b, "  param %s: type %s, default %v (%v), pattern %q, allowed %v, interpolation %q\n", p, q.Type, q.Default, q.hasDefault, q.AllowedPattern, q.AllowedValues, q.InterpolationType)
		}
		for _, st := range d.steps {
			timeout := st.timeout
			if timeout == "" {
				timeout = fmt.Sprint(defaultExecutionTimeout)
			}
			fmt.Fprintf(&b, "  step %s: %s, precondition %v, timeout %s\n", st.name, st.action, st.precondition, timeout)
			for _, line := range st.runCommand {
				fmt.Fprintf(&b, "    run %s\n", line)
			}
		}
		fmt.Fprintf(&b, "  raw %s\n", d.raw)
	}
	return b.String()
}

// -update rewrites the pinned files from what LoadTemplate makes now (after
// a deliberate change of a template or of the reader; review the diff).
var update = flag.Bool("update", false, "rewrite testdata/*.documents")

// What LoadTemplate makes of the test template and of the repository's
// template.yaml (its documents whole: the steps that refuse Windows and
// macOS, the Linux step, the ENV_VAR parameters), pinned so a change of
// either or of the reader shows here.
func TestLoadTemplatePinned(t *testing.T) {
	for _, c := range []struct{ path, stack, golden string }{
		{"testdata/template.yaml", "teststack", "testdata/template.documents"},
		{"../../../template.yaml", "tether", "testdata/repo-template.documents"},
	} {
		t.Run(c.path, func(t *testing.T) {
			s := New(Config{Logger: slog.New(slog.DiscardHandler)})
			defer s.Close()
			ids, err := s.LoadTemplate(c.path, c.stack)
			if err != nil {
				t.Fatal(err)
			}
			got := dumpDocuments(s, ids)
			if *update {
				if err := os.WriteFile(c.golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(c.golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("LoadTemplate(%s) made\n%s\nwant (%s)\n%s", c.path, got, c.golden, want)
			}
		})
	}
}
