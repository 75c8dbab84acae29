package ecssim

import (
	"context"
	"fmt"
)

// TaskInfo is a test's view of one task.
type TaskInfo struct {
	Arn, ID              string
	Cluster              string
	Service              string // "" for RunTask/StartTask tasks
	Group, StartedBy     string
	TaskDefinitionArn    string
	ContainerInstanceArn string
	EC2InstanceID        string
	AZ                   string
	LastStatus           string
	DesiredStatus        string
	StopCode             string
	StoppedReason        string
	Version              int64
	Containers           []ContainerInfo
	// Orphaned: ECS stopped the task when its container instance was
	// deregistered with force; its containers were never asked to stop
	// and may still run on the host.
	Orphaned bool
}

// ContainerInfo is a test's view of one container.
type ContainerInfo struct {
	Name, LastStatus, Reason string
	ExitCode                 *int
}

// InstanceInfo is a test's view of one container instance.
type InstanceInfo struct {
	Arn, EC2InstanceID, AZ, Status string
	AgentConnected                 bool
	Version                        int64
	Attributes                     map[string]string
	RemainingCPU, RemainingMemory  int32
}

// ServiceInfo is a test's view of one service.
type ServiceInfo struct {
	Name, Arn, Status, TaskDefinitionArn string
	Desired, Running, Pending            int32
	Events                               []string // newest first
}

// Snapshot is the state of one cluster, in creation order.
type Snapshot struct {
	Tasks     []TaskInfo
	Instances []InstanceInfo
	Services  []ServiceInfo
}

// Task returns the task with the given ARN or id.
func (sn Snapshot) Task(ref string) (TaskInfo, bool) {
	for _, t := range sn.Tasks {
		if t.Arn == ref || t.ID == ref {
			return t, true
		}
	}
	return TaskInfo{}, false
}

// ServiceTasks returns the tasks of one service, oldest first.
func (sn Snapshot) ServiceTasks(name string) []TaskInfo {
	var out []TaskInfo
	for _, t := range sn.Tasks {
		if t.Service == name {
			out = append(out, t)
		}
	}
	return out
}

// Snapshot returns a copy of a cluster's state.
func (s *Server) Snapshot(clusterName string) Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked(clusterName)
}

func (s *Server) snapshotLocked(clusterName string) Snapshot {
	var sn Snapshot
	c := s.clusters[clusterName]
	if c == nil {
		return sn
	}
	sn.Tasks = make([]TaskInfo, 0, len(c.taskOrder))
	for _, id := range c.taskOrder {
		t := c.tasks[id]
		ti := TaskInfo{
			Arn: t.arn, ID: t.id, Cluster: c.name, Group: t.group, StartedBy: t.startedBy,
			TaskDefinitionArn: t.def.arn, ContainerInstanceArn: t.instance.arn,
			EC2InstanceID: t.instance.ec2InstanceID, AZ: t.instance.az,
			LastStatus: t.lastStatus, DesiredStatus: t.desired, StopCode: t.stopCode,
			StoppedReason: t.stopReason, Version: t.version, Orphaned: t.orphaned,
		}
		if t.service != nil {
			ti.Service = t.service.name
		}
		ti.Containers = make([]ContainerInfo, 0, len(t.containers))
		for _, ct := range t.containers {
			ti.Containers = append(ti.Containers, ContainerInfo{Name: ct.name, LastStatus: ct.lastStatus, Reason: ct.reason, ExitCode: ct.exitCode})
		}
		sn.Tasks = append(sn.Tasks, ti)
	}
	for _, id := range c.instanceOrder {
		ci := c.instances[id]
		cpu, mem, _, _ := ci.remaining()
		sn.Instances = append(sn.Instances, InstanceInfo{
			Arn: ci.arn, EC2InstanceID: ci.ec2InstanceID, AZ: ci.az, Status: ci.status,
			AgentConnected: ci.agentConnected, Version: ci.version, Attributes: copyMap(ci.attributes),
			RemainingCPU: cpu, RemainingMemory: mem,
		})
	}
	for _, name := range c.serviceOrder {
		sv := c.services[name]
		o := s.serviceOut(sv, false)
		si := ServiceInfo{Name: sv.name, Arn: sv.arn, Status: sv.status, TaskDefinitionArn: sv.def.arn, Desired: o.DesiredCount, Running: o.RunningCount, Pending: o.PendingCount}
		for _, e := range sv.events {
			si.Events = append(si.Events, e.Message)
		}
		sn.Services = append(sn.Services, si)
	}
	return sn
}

// WaitFor blocks until cond holds for the cluster's state, checked after
// every change, or ctx ends; the error then says what was awaited and shows
// the tasks as they were. When it returns nil, the events of the state cond
// saw have been handed to the Publisher.
func (s *Server) WaitFor(ctx context.Context, clusterName, what string, cond func(Snapshot) bool) error {
	for {
		s.mu.Lock()
		sn := s.snapshotLocked(clusterName)
		changed := s.changed
		s.mu.Unlock()
		if cond(sn) {
			s.afterChange() // the events of what cond saw are published on return
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ecssim: waiting for %s in cluster %s: %w; tasks: %s", what, clusterName, ctx.Err(), sn.summary())
		case <-changed:
		}
	}
}

func (sn Snapshot) summary() string {
	out := ""
	for _, t := range sn.Tasks {
		out += fmt.Sprintf("[%s %s/%s on %s %s %q] ", t.ID[:8], t.LastStatus, t.DesiredStatus, t.EC2InstanceID, t.StopCode, t.StoppedReason)
	}
	if out == "" {
		return "none"
	}
	return out
}
