package autoscalingsim

import (
	"fmt"
	"sort"
	"time"
)

// InstanceInfo is one member of a group as Auto Scaling sees it.
type InstanceInfo struct {
	ID, Group, AZ  string
	LifecycleState string // Pending ... Terminated
	HealthStatus   string // Healthy, Unhealthy
	Protected      bool
	Spot           bool // launched from a Spot template
}

// ActionInfo is one active lifecycle action.
type ActionInfo struct {
	Token, Group, Hook, InstanceID, Transition string
	Started, Deadline, GlobalDeadline          time.Time // real time
}

// GroupInfo is a group's sizes and members.
type GroupInfo struct {
	Name, ARN           string
	Min, Max, Desired   int
	Instances           []InstanceInfo // launch order, Terminated ones while still listed
	Launching           int            // launches under way
	TerminationPolicies []string
	LaunchTemplate      string   // its launch template's name
	Hooks               []string // its lifecycle hooks' names
}

func (in *instance) info() InstanceInfo {
	return InstanceInfo{ID: in.id, Group: in.group.name, AZ: in.az, LifecycleState: in.state, HealthStatus: in.health,
		Protected: in.protected, Spot: in.group.template.Spot}
}

// Instance returns an instance's Auto Scaling state.
func (s *Server) Instance(id string) (InstanceInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	if in == nil {
		return InstanceInfo{}, fmt.Errorf("autoscalingsim: instance %s is in no group", id)
	}
	return in.info(), nil
}

// Group returns a group's state.
func (s *Server) Group(name string) (GroupInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[name]
	if g == nil {
		return GroupInfo{}, fmt.Errorf("autoscalingsim: %w", errGroupNotFound(name))
	}
	out := GroupInfo{Name: g.name, ARN: g.arn, Min: g.min, Max: g.max, Desired: g.desired, Launching: g.inFlight(),
		TerminationPolicies: append([]string(nil), g.policies...), LaunchTemplate: g.template.Name}
	for _, in := range g.sortedMembers() {
		out.Instances = append(out.Instances, in.info())
	}
	for _, h := range sortedHooks(g) {
		out.Hooks = append(out.Hooks, h.name)
	}
	return out, nil
}

// InService lists the group's InService instance ids, in launch order.
func (s *Server) InService(name string) ([]string, error) {
	gi, err := s.Group(name)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, in := range gi.Instances {
		if in.LifecycleState == StateInService {
			ids = append(ids, in.ID)
		}
	}
	return ids, nil
}

// Actions lists the active lifecycle actions, oldest first.
func (s *Server) Actions() []ActionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ActionInfo, 0, len(s.actions))
	for _, a := range s.actions {
		out = append(out, ActionInfo{Token: a.token, Group: a.group.name, Hook: a.hook.name, InstanceID: a.inst.id,
			Transition: a.hook.transition, Started: a.started, Deadline: a.deadline, GlobalDeadline: a.globalDeadline})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].Token < out[j].Token
	})
	return out
}
