package samlocal

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tether-ecs/tether/test/world/cfntemplate"
	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/ssmsim"
)

func dumpTemplate(t *Template) string {
	var b strings.Builder
	params := slices.SortedFunc(slices.Values(t.cfn.Parameters), func(a, b cfntemplate.Parameter) int { return strings.Compare(a.Name, b.Name) })
	for _, p := range params {
		fmt.Fprintf(&b, "parameter %s: type %s default %q (%v) pattern %q allowed %v min %v max %v\n",
			p.Name, p.Type, p.Default, p.HasDefault, p.AllowedPattern, p.AllowedValues, orDash(p.MinValue), orDash(p.MaxValue))
	}
	for _, r := range t.cfn.Resources {
		fmt.Fprintf(&b, "resource %s: %s\n", r.LogicalID, r.Type)
	}
	for _, ig := range t.Ignored() {
		fmt.Fprintf(&b, "ignored %s\n", ig)
	}
	// The documents as the world's SSM gets them: whole.
	for _, r := range t.cfn.OfType("AWS::SSM::Document") {
		content := r.Property("Content")
		for key, p := range cfntemplate.Pairs(cfntemplate.Child(content, "parameters")) {
			fmt.Fprintf(&b, "document %s parameter %s: default %q pattern %q interpolation %q\n", r.LogicalID, key.Value,
				value(cfntemplate.Child(p, "default")), value(cfntemplate.Child(p, "allowedPattern")), value(cfntemplate.Child(p, "interpolationType")))
		}
		for _, step := range cfntemplate.Child(content, "mainSteps").Content {
			var pre []string
			if eq := cfntemplate.Child(cfntemplate.Child(step, "precondition"), "StringEquals"); eq != nil {
				for _, a := range eq.Content {
					pre = append(pre, a.Value)
				}
			}
			fmt.Fprintf(&b, "document %s step %s (%s) precondition %v\n", r.LogicalID, value(cfntemplate.Child(step, "name")), value(cfntemplate.Child(step, "action")), pre)
			for _, line := range cfntemplate.Child(cfntemplate.Child(step, "inputs"), "runCommand").Content {
				fmt.Fprintf(&b, "  run %s\n", line.Value)
			}
		}
	}
	return b.String()
}

func value(n *yaml.Node) string {
	if n == nil {
		return "-"
	}
	return n.Value
}

func orDash(f *float64) any {
	if f == nil {
		return "-"
	}
	return *f
}

func dumpDeployment(d *Deployment) string {
	var b strings.Builder
	for _, id := range slices.Sorted(maps.Keys(d.Functions)) {
		fn := d.Functions[id]
		fmt.Fprintf(&b, "function %s: %s %s package %s code %s timeout %s memory %d reserved %d\n",
			id, fn.Name, fn.ARN, fn.Package, fn.CodeDir, fn.Timeout, fn.MemoryMB, fn.ReservedConcurrency)
		for _, k := range slices.Sorted(maps.Keys(fn.Env)) {
			fmt.Fprintf(&b, "  env %s=%s\n", k, fn.Env[k])
		}
	}
	for _, id := range slices.Sorted(maps.Keys(d.Queues)) {
		fmt.Fprintf(&b, "queue %s: %s\n", id, d.Queues[id].URL())
	}
	for _, id := range slices.Sorted(maps.Keys(d.Documents)) {
		fmt.Fprintf(&b, "document %s: %s\n", id, d.Documents[id])
	}
	for _, k := range slices.Sorted(maps.Keys(d.Outputs)) {
		fmt.Fprintf(&b, "output %s: %s\n", k, d.Outputs[k])
	}
	fmt.Fprintf(&b, "rules %v\nschedules %v\nhooks %v\nunwired %v\nnot created %v\nignored %d\n", d.Rules, d.Schedules, d.Hooks, d.Unwired, d.NotCreated, len(d.Ignored))
	return b.String()
}

// -update rewrites the pinned files from what Load and Deploy make now
// (after a deliberate change of template.yaml; review the diff).
var update = flag.Bool("update", false, "rewrite testdata/repo-template.*")

func checkGolden(t *testing.T, golden, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("got\n%s\nwant (%s)\n%s", got, golden, want)
	}
}

// What Load and Deploy make of the repository's template.yaml, pinned so a
// change of the template reader shows here.
func TestRepositoryTemplatePinned(t *testing.T) {
	tpl, err := Load("../../../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "testdata/repo-template.load", dumpTemplate(tpl))

	bus := eventbus.New(eventbus.Options{Seed: 1, QueueURLBase: "http://127.0.0.1:4566"})
	defer bus.Close()
	ssm := ssmsim.New(ssmsim.Config{Logger: slog.New(slog.DiscardHandler)})
	defer ssm.Close()
	d, err := Deploy(context.Background(), Config{
		Template: "../../../template.yaml", Parameters: map[string]string{"ClusterName": "demo", "LogLevel": "debug"},
		Endpoint: "http://127.0.0.1:4566", Bus: bus, SSM: ssm, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	checkGolden(t, "testdata/repo-template.deploy", dumpDeployment(d))
}
