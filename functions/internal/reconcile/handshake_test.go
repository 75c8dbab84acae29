package reconcile_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// agentsSSM stands in for the agents of some instances: it rewrites the
// JSON line of their commands' answers to name another agent (the fake
// agent of cloudtest names none), as an agent of that release would.
type agentsSSM struct {
	cloud.SSMAPI
	mu     sync.Mutex
	agents map[string]agentproto.Agent // instance -> the agent there
	asked  int                         // GetCommandInvocation answers rewritten
}

func (s *agentsSSM) set(instance string, a agentproto.Agent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.agents[instance] = a
}

func (s *agentsSSM) GetCommandInvocation(ctx context.Context, in *ssm.GetCommandInvocationInput, opts ...func(*ssm.Options)) (*ssm.GetCommandInvocationOutput, error) {
	out, err := s.SSMAPI.GetCommandInvocation(ctx, in, opts...)
	if err != nil || out.StandardOutputContent == nil {
		return out, err
	}
	s.mu.Lock()
	a, ok := s.agents[aws.ToString(in.InstanceId)]
	s.mu.Unlock()
	line := strings.TrimSpace(aws.ToString(out.StandardOutputContent))
	var m map[string]any
	if !ok || json.Unmarshal([]byte(line), &m) != nil {
		return out, nil
	}
	put := m
	if e, isErr := m["error"].(map[string]any); isErr {
		put = e
	}
	put["agentVersion"], put["protocol"] = a.AgentVersion, a.Protocol
	b, _ := json.Marshal(m)
	cp := *out
	cp.StandardOutputContent = aws.String(string(b) + "\n")
	s.mu.Lock()
	s.asked++
	s.mu.Unlock()
	return &cp, nil
}

func newAgentsHarness(t *testing.T) (*harness, *agentsSSM) {
	s := &agentsSSM{agents: map[string]agentproto.Agent{}}
	h := newHarnessSSM(t, func(c cloud.SSMAPI) cloud.SSMAPI { s.SSMAPI = c; return s })
	return h, s
}

// An instance whose tether-agent speaks another protocol refuses the
// mount's flags (bad input): the waiting task is stopped with a reason
// naming both versions, not "bad input"; the next task placed there is
// stopped before anything is attached there; no SSM command other than
// tether's mount and unmount is ever sent (the check rides on their output).
func TestAgentOfAnotherProtocolIsNamedAndAvoided(t *testing.T) {
	h, agents := newAgentsHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	agents.set("i-a", agentproto.ThisAgent("v0.4.0"))
	agents.set("i-b", agentproto.Agent{AgentVersion: "v0.9.0", Protocol: agentproto.Protocol + 1})
	t1, v := runningShared(t, h)
	h.w.StopTask(t1, "drain")
	h.settle(300)

	h.w.MountExits(v.ID, agentproto.ExitBadInput)
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(300)
	h.noViolations()
	h.wantStoppedBecause(t2, "tether-agent v0.9.0 on i-b speaks protocol 3, these functions")
	h.wantStoppedBecause(t2, "speak protocol 2")
	if metricSum(t, h, "TasksStopped") != 1 {
		t.Fatalf("TasksStopped %v, want 1", metricSum(t, h, "TasksStopped"))
	}
	attachesToB := journalHas(h.w.Journal(), "AttachVolume "+v.ID+" i-b")

	t3 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(300)
	h.noViolations()
	h.wantStoppedBecause(t3, "speaks protocol 3")
	if n := journalHas(h.w.Journal(), "AttachVolume "+v.ID+" i-b"); n != attachesToB {
		t.Fatalf("attached to i-b again (%d attaches, %d before) although its agent is known to speak another protocol", n, attachesToB)
	}
	for _, c := range h.w.Commands() {
		if c.Document != mountDoc && c.Document != unmountDoc {
			t.Fatalf("a command of %s was sent: the handshake must ride on the mount's output", c.Document)
		}
	}

	// The volume stays on i-b (its agent's unmount answers cannot be read)
	// until an operator forces it away; then a task on an instance whose
	// agent speaks this protocol gets it.
	h.w.AllowLiveForce()
	h.w.AddInstance("i-c", "us-east-1a")
	agents.set("i-c", agentproto.ThisAgent("v0.4.0"))
	t4 := h.w.PlaceTask(tdShared, "i-c")
	h.invoke(reconcile.Release{Key: reconcile.Key{Cluster: cluster, Volume: volName}, Instance: "i-b", Force: true, Reason: "agent of another protocol", Operator: "test"})
	h.settle(300)
	h.noViolations()
	h.wantRunning(t4)
	if agents.asked == 0 {
		t.Fatal("no answer was rewritten: the test did not test the handshake")
	}
}

// The agent of a host was upgraded ahead of the functions while a task ran
// there: when the volume must leave, its unmount is not acted on (no detach
// on the word of an agent whose results tether cannot read). The task
// waiting elsewhere is stopped past its deadline with a reason that says so.
func TestUnmountOfAnotherProtocolIsNotActedOn(t *testing.T) {
	h, agents := newAgentsHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1, v := runningShared(t, h)
	agents.set("i-a", agentproto.Agent{AgentVersion: "v0.9.0", Protocol: agentproto.Protocol + 1})
	h.w.StopTask(t1, "drain")
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(400)
	h.noViolations()
	if n := journalHas(h.w.Journal(), "DetachVolume "+v.ID); n != 0 {
		t.Fatalf("detached on the word of an agent of another protocol: %v", h.w.Journal())
	}
	h.wantStoppedBecause(t2, "speaks protocol 3 and these functions protocol 2")
}
