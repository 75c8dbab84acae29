package chaos

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/world"
)

// The rules of template.yaml whose deliveries misbehave: every event
// tether's functions get. The sweep's schedule is left alone: it is what
// repairs the rest.
var faultyRules = []string{"TaskStateRule", "InstanceStateRule", "VolumeRule"}

// Actions whose calls fail at a seeded rate, by service, with the error
// each service answers when it has a problem of its own. ECS's failures
// are kept to the reads tether makes; the run's own ECS calls (services,
// StopTask, instance states) are not faulted.
var faultyActions = []struct {
	service string
	actions []string
	err     *awsproto.Error
	lo, hi  float64
}{
	{"ec2", []string{"CreateVolume", "AttachVolume", "DetachVolume", "DeleteVolume", "CreateTags"},
		awsproto.Errorf(500, "InternalError", "An internal error has occurred."), 0.01, 0.05},
	{"ec2", []string{"DescribeVolumes", "DescribeInstances"},
		awsproto.Errorf(503, "Unavailable", "The server is overloaded and can't handle the request."), 0.01, 0.03},
	{"ssm", []string{"SendCommand", "ListCommands", "GetCommandInvocation"},
		awsproto.Errorf(500, "InternalServerError", "An error occurred on the server side."), 0.01, 0.05},
	{"ecs", []string{"DescribeTasks", "ListTasks", "DescribeContainerInstances", "ListContainerInstances", "DescribeTaskDefinition"},
		awsproto.Errorf(500, "ServerException", "Server exception."), 0.005, 0.02},
}

// faultPlan is what one run injects, drawn from its seed.
type faultPlan struct {
	events eventbus.Faults
	rates  map[string]float64 // "service:Action" -> error probability
}

func planFaults(rng *rand.Rand) faultPlan {
	between := func(lo, hi float64) float64 { return lo + rng.Float64()*(hi-lo) }
	p := faultPlan{
		events: eventbus.Faults{
			Drop: between(0.01, 0.03), Duplicate: between(0.03, 0.08), Reorder: between(0.03, 0.08), Delay: between(0.03, 0.08),
			// Wall time: 0.5 to 25 s of world time at the instant profile's scale.
			DelayMin: 50 * time.Millisecond, DelayMax: 2500 * time.Millisecond,
		},
		rates: map[string]float64{},
	}
	for _, f := range faultyActions {
		for _, a := range f.actions {
			p.rates[f.service+":"+a] = between(f.lo, f.hi)
		}
	}
	return p
}

// apply turns the plan on (on=true) or every fault off.
func (p faultPlan) apply(w *world.World, on bool) error {
	ev := eventbus.Faults{}
	if on {
		ev = p.events
	}
	for _, r := range faultyRules {
		if err := w.Bus().SetFaults(r, ev); err != nil {
			return fmt.Errorf("faults on rule %s: %w", r, err)
		}
	}
	for _, f := range faultyActions {
		for _, a := range f.actions {
			rate := 0.0
			if on {
				rate = p.rates[f.service+":"+a]
			}
			switch f.service {
			case "ec2":
				w.EC2().SetErrorRate(a, rate, f.err)
			case "ssm":
				w.SSM().SetErrorRate(a, rate, f.err)
			case "ecs":
				w.ECS().Gate().SetErrorRate(a, rate, f.err)
			}
		}
	}
	return nil
}

// describe lists the plan's rates for the report.
func (p faultPlan) describe() []string {
	out := []string{fmt.Sprintf("events: drop %.3f, duplicate %.3f, reorder %.3f, delay %.3f (%s-%s wall)",
		p.events.Drop, p.events.Duplicate, p.events.Reorder, p.events.Delay, p.events.DelayMin, p.events.DelayMax)}
	for _, k := range slices.Sorted(maps.Keys(p.rates)) {
		out = append(out, fmt.Sprintf("%s errors %.3f", k, p.rates[k]))
	}
	return out
}

// injectedFaults counts what was injected, by kind.
func injectedFaults(w *world.World, c world.Counts) map[string]int {
	out := map[string]int{}
	stats := w.Bus().Stats()
	for _, r := range faultyRules {
		s := stats[r]
		out["event dropped"] += s.Dropped
		out["event duplicated"] += s.Duplicated
		out["event reordered"] += s.Reordered
		out["event delayed"] += s.Delayed
	}
	for a, n := range c.Injected {
		out["error "+a] += n
	}
	for a, n := range w.ECS().Gate().Counts().Injected {
		out["error ecs:"+a] += n
	}
	return out
}
