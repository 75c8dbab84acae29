package eventbus

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

// dumpWiring describes what LoadTemplate made, in a stable order.
func dumpWiring(b *Bus, w *Wiring) string {
	var out strings.Builder
	for _, id := range slices.Sorted(maps.Keys(w.Queues)) {
		q := w.Queues[id]
		o := q.Options()
		dlq := ""
		if o.DeadLetter != nil {
			dlq = o.DeadLetter.Name()
		}
		fmt.Fprintf(&out, "queue %s: %s visibility %s delay %s wait %s dead-letter %q after %d\n",
			id, q.Name(), o.VisibilityTimeout, o.DelaySeconds, o.ReceiveWaitTime, dlq, o.MaxReceiveCount)
	}
	b.mu.Lock()
	for _, r := range b.rules {
		kind := "schedule"
		if r.pattern != nil {
			kind = "pattern " + r.pattern.String()
		}
		if s := b.schedules[r.name]; s != nil {
			kind += fmt.Sprintf(" every %s", s.every)
		}
		targets := make([]string, len(r.targets))
		for i, t := range r.targets {
			targets[i] = t.String()
		}
		fmt.Fprintf(&out, "rule %s: %s -> %v\n", r.name, kind, targets)
	}
	b.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(w.Mappings)) {
		m := w.Mappings[name]
		inv := "in-process"
		if r, ok := m.inv.(*reserved); ok {
			inv = fmt.Sprintf("reserved %d", cap(r.slots))
		}
		fmt.Fprintf(&out, "mapping %s: %s %+v (%s)\n", name, m.queue.Name(), m.opts, inv)
	}
	fmt.Fprintf(&out, "rules %v\nschedules %v\nunwired %v\n", w.Rules, w.Schedules, w.Unwired)
	return out.String()
}

// -update rewrites the pinned wirings from what LoadTemplate makes now
// (after a deliberate change of template.yaml; review the diff).
var update = flag.Bool("update", false, "rewrite testdata/*.wiring")

// What LoadTemplate makes of the repository's template.yaml, pinned so a
// change of the template reader shows here.
func TestLoadTemplatePinned(t *testing.T) {
	nop := func(context.Context, []byte) error { return nil }
	for _, c := range []struct {
		name, golden string
		groups       string // AutoScalingGroupNames
		functions    func(b *Bus) map[string]Invoker
	}{
		{"every function", "testdata/repo-template.wiring", "", func(b *Bus) map[string]Invoker {
			return map[string]Invoker{
				"TaskStateFunction": b.Function("taskstate", nop),
				"DrainFunction":     b.Function("drain", nop),
				"SweepFunction":     b.Function("sweep", nop),
				"HostsFunction":     b.Function("hosts", nop),
			}
		}},
		{"with termination hooks", "testdata/repo-template-hooks.wiring", "asg-a,asg-b", func(b *Bus) map[string]Invoker {
			return map[string]Invoker{"HostsFunction": b.Function("hosts", nop)}
		}},
		{"no function", "testdata/repo-template-unwired.wiring", "", func(*Bus) map[string]Invoker { return nil }},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := New(Options{Seed: 1})
			defer b.Close()
			w, err := b.LoadTemplate("../../../template.yaml", TemplateOptions{
				StackName: "tether", Params: map[string]string{"ClusterName": "demo", "AutoScalingGroupNames": c.groups}, Functions: c.functions(b),
			})
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(c.golden, []byte(dumpWiring(b, w)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(c.golden)
			if err != nil {
				t.Fatal(err)
			}
			if got := dumpWiring(b, w); got != string(want) {
				t.Errorf("LoadTemplate made\n%s\nwant (%s)\n%s", got, c.golden, want)
			}
		})
	}
}
