package bench

import (
	"fmt"
	"slices"
	"time"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/world/fakehost"
	"github.com/tether-ecs/tether/test/world/ssmsim"
	"github.com/tether-ecs/tether/test/world/world"
)

// Safety is what a world saw over its whole life (setup included) of the
// steps tether must never take on a guess (issue 11) and of Lambda's
// recursive-loop detection.
type Safety struct {
	// ForcedLive: force detaches of an instance EC2 had running, as the
	// world saw them (DetachVolume with Force=true). ForcedLiveMetric:
	// tether's own count of them (its ForcedDetachesLive metric).
	ForcedLive       int
	ForcedLiveMetric float64
	// Formats: filesystems the hosts made; WithoutGrant: of those, made
	// by a mount not given --format-if-blank.
	Formats, WithoutGrant int
	// RecursiveDropped: invocations Lambda's recursive-loop detection
	// stopped; LongestChain: the most invocations one chain reached.
	RecursiveDropped, LongestChain int
}

// Add adds o into s (LongestChain: the longer).
func (s *Safety) Add(o Safety) {
	s.ForcedLive += o.ForcedLive
	s.ForcedLiveMetric += o.ForcedLiveMetric
	s.Formats += o.Formats
	s.WithoutGrant += o.WithoutGrant
	s.RecursiveDropped += o.RecursiveDropped
	s.LongestChain = max(s.LongestChain, o.LongestChain)
}

// metricForcedDetachesLive is tether's metric of force detaches of a host
// EC2 did not say was stopped or terminated
// (functions/internal/reconcile.MetricForcedDetachesLive; the bench reads
// the functions' output as CloudWatch would, not their code).
const metricForcedDetachesLive = "ForcedDetachesLive"

// ForcedDetaches counts the forced detaches in the world's journal
// ("volume detaching" with force, or a pending detach upgraded to force)
// whose instance was live: not stopped or terminated. The bench stops and
// terminates no instance, so the state EC2 gives now is the state it had
// then; an instance EC2 no longer knows counts as live (the stricter
// reading).
func ForcedDetaches(entries []Entry, state func(instance string) (string, error)) int {
	n := 0
	for _, e := range entries {
		forced := (e.Msg == msgDetaching && e.Attrs["force"] == "true") || e.Msg == msgDetachForced
		if !forced {
			continue
		}
		st, err := state(e.Attrs["instance"])
		if err != nil || (st != "stopped" && st != "terminated") {
			n++
		}
	}
	return n
}

// Formats counts the filesystems made on fake hosts (their disks record
// each mkfs and whether it was granted) and on real hosts (each mount
// command's result says whether it formatted; its parameters whether it
// had the grant): invocations are the real hosts' only, a fake host's
// format is in its disks' records. Real hosts format only in the mount
// command: the plugin's own mounts never format (agent/hostops).
func Formats(mkfs []fakehost.Mkfs, invocations []ssmsim.Invocation, mountDocument string) (formats, withoutGrant int) {
	for _, m := range mkfs {
		formats++
		if !m.Granted {
			withoutGrant++
		}
	}
	for _, inv := range invocations {
		if inv.Document != mountDocument {
			continue
		}
		var stdout string
		for _, st := range inv.Steps {
			if st.Name == agentproto.StepMount {
				stdout = st.Stdout
			}
		}
		out, ok := agentproto.ParseOutput(stdout)
		if !ok {
			continue
		}
		if r, ok := out.Mount(); ok && r.Formatted {
			formats++
			if !slices.Equal(inv.Parameters[agentproto.ParamFormatIfBlank], []string{"true"}) {
				withoutGrant++
			}
		}
	}
	return formats, withoutGrant
}

// worldSafety reads a world's safety figures before it closes.
func worldSafety(w *world.World, j *Journal, lines []FunctionLine) Safety {
	var s Safety
	s.ForcedLive = ForcedDetaches(j.Entries(time.Time{}), w.EC2().InstanceState)
	s.ForcedLiveMetric = Sum(MetricSums(lines, metricForcedDetachesLive, nil))
	var real []ssmsim.Invocation
	for _, inv := range w.SSM().Invocations() {
		if _, ok := w.RealHost(inv.InstanceID); ok {
			real = append(real, inv)
		}
	}
	s.Formats, s.WithoutGrant = Formats(w.Disks().Mkfs(), real, w.Deployment().Documents["MountDocument"])
	s.RecursiveDropped, s.LongestChain = w.RecursiveInvocationsDropped(), w.LongestChain()
	return s
}

// String says it in words.
func (s Safety) String() string {
	return fmt.Sprintf("force detaches of live hosts %d (tether's ForcedDetachesLive %g), formats %d (%d without the grant), recursive invocations dropped %d (longest chain %d)",
		s.ForcedLive, s.ForcedLiveMetric, s.Formats, s.WithoutGrant, s.RecursiveDropped, s.LongestChain)
}
