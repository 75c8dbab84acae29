package reconcile

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// The handshake with each instance's tether-agent. Every mount result and
// every failure line names the agent that printed it (agentproto.Agent),
// so the reconciler learns an instance's agent from the mount it sends
// anyway: no SSM round trip of its own. This process remembers what each
// instance's agent said; an agent of another agentproto.Protocol has the
// tasks waiting there stopped with a reason naming both versions, and no
// volume is attached or mounted there again until Timing.AgentRecheck has
// passed (an upgraded agent is then seen at the next mount).

// functionsVersion is this build's version, for the reasons tether gives
// (the Go toolchain stamps the module's version from VCS at build).
var functionsVersion = func() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}()

// agentAnswered records the agent that printed a mount's line on inst; ok
// false when it speaks another protocol than this reconciler.
func (p *pass) agentAnswered(inst string, res result) (agentproto.Agent, bool) {
	if !res.parsed {
		return agentproto.Agent{}, true
	}
	a := res.out.AgentOf()
	if !a.Reported() {
		if p.r.mem.noteAgent(inst, a, p.now) {
			p.log.Warn("tether-agent does not name its version in its output (older than the version handshake); upgrade it", "instance", inst)
		}
		return a, true
	}
	if p.r.mem.noteAgent(inst, a, p.now) {
		p.log.Info("tether-agent answered", "instance", inst, "agentVersion", a.AgentVersion, "protocol", a.Protocol)
	}
	return a, a.Protocol == agentproto.Protocol
}

// knownMismatch: this process saw inst's agent speak another protocol less
// than Timing.AgentRecheck ago.
func (p *pass) knownMismatch(inst string) (agentproto.Agent, bool) {
	a, at, ok := p.r.mem.agentOf(inst)
	if !ok || !a.Reported() || a.Protocol == agentproto.Protocol || p.now.Sub(at) >= p.r.t.AgentRecheck {
		return agentproto.Agent{}, false
	}
	return a, true
}

// protocolMismatch stops the tasks waiting on inst with a reason naming
// both versions; the volume is left as it is (a release goes on as usual).
func (p *pass) protocolMismatch(ctx context.Context, waiting []need, v cloud.Volume, inst string, a agentproto.Agent) (Result, error) {
	version := a.AgentVersion
	if version == "" {
		version = "(unnamed)"
	}
	reason := fmt.Sprintf("tether-agent %s on %s speaks protocol %d, these functions (tether %s) speak protocol %d: install the matching tether-agent release on the instance; volume %s (%s) is not mounted there",
		version, inst, a.Protocol, functionsVersion, agentproto.Protocol, p.key.Volume, v.ID)
	p.log.Error("tether-agent speaks another protocol", "volumeId", v.ID, "instance", inst, "agentVersion", a.AgentVersion,
		"protocol", a.Protocol, "want", agentproto.Protocol, "functionsVersion", functionsVersion)
	if err := p.failNeeders(ctx, waiting, reasonProtocol, reason); err != nil {
		return Result{}, err
	}
	return done(fmt.Sprintf("agent on %s speaks protocol %d", inst, a.Protocol)), nil
}

// agentSeen is what an instance's agent last said, and when.
type agentSeen struct {
	agent agentproto.Agent
	at    time.Time
}
