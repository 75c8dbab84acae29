package ssmsim

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/worldapi"
)

// managedInstance is one node registered with SSM: its host, its platform
// and its SSM agent, which may stop while the host lives.
type managedInstance struct {
	id           string
	host         worldapi.Host
	platform     Platform
	agentVersion string
	agentUp      bool      // the agent runs and polls for commands
	downSince    time.Time // when it stopped (its last ping)
}

// DefaultAgentVersion is the SSM Agent a node runs unless SetAgentVersion
// says otherwise: the release of 2026-05-05 (amazon-ssm-agent 3.3.4364.0),
// which interpolates ENV_VAR parameters into environment variables.
const DefaultAgentVersion = "3.3.4364.0"

// interpolation is how the node's agent hands a step its parameters: into
// environment variables from 3.3.2746.0 on, pasted into the script before.
func (in *managedInstance) interpolation() interpolation {
	if versionAtLeast(in.agentVersion, firstEnvVarAgent) {
		return envVars
	}
	return pasteValues
}

// agentVersionPattern is an SSM Agent version: four dot-separated numbers.
var agentVersionPattern = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$`)

// versionAtLeast compares two agent versions number by number.
func versionAtLeast(v, min string) bool {
	a, b := strings.Split(v, "."), strings.Split(min, ".")
	for i := range a {
		x, _ := strconv.Atoi(a[i])
		y, _ := strconv.Atoi(b[i])
		if x != y {
			return x > y
		}
	}
	return true
}

// Platform is what DescribeInstanceInformation reports of a node
// (PlatformType is Linux, Windows or MacOS).
type Platform struct{ Type, Name, Version string }

// Platforms a test can give a node (SetPlatform).
var (
	PlatformLinux   = Platform{Type: "Linux", Name: "Amazon Linux", Version: "2023"}
	PlatformWindows = Platform{Type: "Windows", Name: "Microsoft Windows Server 2022 Datacenter", Version: "10.0.20348"}
	PlatformMacOS   = Platform{Type: "MacOS", Name: "macOS", Version: "14.5"}
)

// lastPing is LastPingDateTime: now while the agent runs, else when it
// stopped.
func (in *managedInstance) lastPing(now time.Time) time.Time {
	if in.agentUp {
		return now
	}
	return in.downSince
}

// pingStatusLocked is the node's PingStatus as SSM sees it: a stopped agent
// still shows Online until ConnectionLostAfter has passed since its last
// ping.
func (s *Server) pingStatusLocked(in *managedInstance, now time.Time) string {
	if in.agentUp || now.Sub(in.downSince) < s.cfg.ConnectionLostAfter {
		return "Online"
	}
	return "ConnectionLost"
}

// AddInstance registers a managed instance: a Linux node whose agent
// (DefaultAgentVersion) runs. The host must run scripts with environment
// variables (worldapi.ScriptEnvRunner), as SSM Agent does.
func (s *Server) AddInstance(id string, host worldapi.Host) error {
	if !instanceIDPattern.MatchString(id) {
		return fmt.Errorf("ssmsim: instance id %q: want i- and 8 or 17 characters", id)
	}
	if _, ok := host.(worldapi.ScriptEnvRunner); host != nil && !ok {
		return fmt.Errorf("ssmsim: instance %s: its host cannot run a script with environment variables (worldapi.ScriptEnvRunner)", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.instances[id] != nil {
		return fmt.Errorf("ssmsim: instance %s already registered", id)
	}
	s.instances[id] = &managedInstance{id: id, host: host, platform: PlatformLinux, agentVersion: DefaultAgentVersion, agentUp: true}
	s.signalLocked()
	return nil
}

// SetPlatform changes what the node runs. On a platform none of a
// document's plugins supports, SendCommand answers UnsupportedPlatformType;
// a step whose plugin the platform lacks, or whose precondition it does not
// meet, is skipped by the agent and counts as a success (steps.go).
func (s *Server) SetPlatform(id string, p Platform) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	if in == nil {
		return fmt.Errorf("ssmsim: instance %s is not registered", id)
	}
	in.platform = p
	return nil
}

// SetAgentVersion changes the node's SSM Agent version: from 3.3.2746.0
// on, ENV_VAR parameters reach scripts as SSM_<Name> variables; an older
// agent pastes every value into the script. DescribeInstanceInformation
// reports it.
func (s *Server) SetAgentVersion(id, version string) error {
	if !agentVersionPattern.MatchString(version) {
		return fmt.Errorf("ssmsim: agent version %q: want four numbers, like %s", version, DefaultAgentVersion)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	if in == nil {
		return fmt.Errorf("ssmsim: instance %s is not registered", id)
	}
	in.agentVersion = version
	return nil
}

// StopAgent stops the node's SSM agent while the host lives on ("SSM down
// on a live host"). Commands not yet delivered wait, Pending, for the agent
// until they expire (Delivery Timed Out); a command the agent was running
// goes on running on the host (the agent's unit stops only the agent:
// KillMode=process), but its result reaches SSM only when the agent is
// back, and if it is not back before the command expires the invocation
// ends Delivery Timed Out. After Config.ConnectionLostAfter the node shows
// ConnectionLost and SendCommand refuses it (InvalidInstanceId: "SSM Agent
// isn't running", SendCommand's errors in the SSM API reference).
func (s *Server) StopAgent(id string) error { return s.setAgent(id, false) }

// StartAgent undoes StopAgent: the agent polls again, picks up what waited
// for it and reports what ran while it was away.
func (s *Server) StartAgent(id string) error { return s.setAgent(id, true) }

// SetOnline is StartAgent (true) or StopAgent (false), the older name.
func (s *Server) SetOnline(id string, online bool) error { return s.setAgent(id, online) }

func (s *Server) setAgent(id string, up bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	if in == nil {
		return fmt.Errorf("ssmsim: instance %s is not registered", id)
	}
	s.setAgentLocked(in, up)
	return nil
}

func (s *Server) setAgentLocked(in *managedInstance, up bool) {
	if in.agentUp == up {
		return
	}
	in.agentUp = up
	if !up {
		in.downSince = time.Now()
	}
	s.signalLocked()
	s.log.Info("ssm agent", "instance", in.id, "running", up)
}
