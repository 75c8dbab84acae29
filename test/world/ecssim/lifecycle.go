package ecssim

import (
	"context"
	"errors"
	"time"

	"github.com/tether-ecs/tether/test/world/worldapi"
)

// A task's lifecycle as ECS runs it on EC2:
//
//	PROVISIONING (awsvpc: ENI attach) → PENDING (agent pulls and starts) →
//	ACTIVATING (load balancer registration) → RUNNING → DEACTIVATING →
//	STOPPING (agent stops the containers) → DEPROVISIONING (ENI detach) →
//	STOPPED
//
// PROVISIONING/DEPROVISIONING happen for awsvpc tasks only and
// ACTIVATING/DEACTIVATING for service tasks behind a load balancer, as in
// ECS. Every change of lastStatus, desiredStatus or a container bumps the
// task's version and publishes an ECS Task State Change.

// hostCall is one call into a Host, made outside the lock.
type hostCall struct {
	t     *task
	host  worldapi.Host
	start bool
	spec  worldapi.TaskSpec
}

// taskChangedLocked bumps the version and queues the state change event.
func (s *Server) taskChangedLocked(t *task) {
	t.version++
	t.updatedAt = s.now()
	s.pending = append(s.pending, s.taskEvent(t))
	s.changedLocked()
}

func (s *Server) setStatusLocked(t *task, status string) {
	now := s.now()
	t.lastStatus = status
	switch status {
	case statusStopping:
		if t.stoppingAt.IsZero() {
			t.stoppingAt = now
		}
	case statusDeprovisioning:
		t.eni.status = "DETACHED"
	case statusStopped:
		t.stoppedAt = now
		if t.stoppingAt.IsZero() {
			t.stoppingAt = now
		}
		if t.execStopped.IsZero() {
			t.execStopped = now
		}
		if t.awsvpc() {
			t.eni.status = "DELETED"
		}
		for _, c := range t.containers {
			c.lastStatus = statusStopped
		}
	}
	s.taskChangedLocked(t)
	if status == statusStopped {
		s.instanceChangedLocked(t.instance) // resources released
		s.log.Info("task stopped", "cluster", t.cluster.name, "task", t.arn, "instance", t.instance.ec2InstanceID, "stopCode", t.stopCode, "reason", t.stopReason)
	}
}

// requestStopLocked sets desiredStatus STOPPED; the scheduler does the rest.
func (s *Server) requestStopLocked(t *task, code, reason string) {
	if t.desired == statusStopped {
		return
	}
	t.desired = statusStopped
	t.stopCode, t.stopReason = code, reason
	s.taskChangedLocked(t)
	s.log.Info("task stop requested", "cluster", t.cluster.name, "task", t.arn, "stopCode", code, "reason", reason)
}

// stopDeadLocked ends a task whose instance is gone: nothing to ask the host.
func (s *Server) stopDeadLocked(t *task, code, reason string) {
	t.desired = statusStopped
	t.stopCode, t.stopReason = code, reason
	t.hostStopped = true
	s.setStatusLocked(t, statusStopped)
}

// advanceLocked moves a task through every step that is due, one event per
// state, and returns the host calls to make and when to look again.
func (s *Server) advanceLocked(t *task, now time.Time) (calls []hostCall, wake time.Time) {
	for t.live() {
		before := t.lastStatus
		var call *hostCall
		call, wake = s.stepLocked(t, now)
		if call != nil {
			calls = append(calls, *call)
		}
		if t.lastStatus == before {
			break
		}
	}
	return calls, wake
}

func (s *Server) stepLocked(t *task, now time.Time) (*hostCall, time.Time) {
	timing := s.opts.Timing
	if now.Before(t.due) {
		return nil, t.due
	}
	if t.desired == statusRunning {
		switch t.lastStatus {
		case statusProvisioning:
			t.eni.status = "ATTACHED"
			t.connectivity = now
			s.setStatusLocked(t, statusPending)
		case statusPending:
			if !t.hostStarting && !t.hostStarted && !t.hostStopped {
				t.hostStarting = true
				t.pullStarted = now
				return &hostCall{t: t, host: t.instance.host, start: true, spec: s.taskSpec(t)}, time.Time{}
			}
		case statusActivating:
			s.setStatusLocked(t, statusRunning)
		}
		return nil, time.Time{}
	}
	switch t.lastStatus {
	case statusProvisioning:
		t.hostStopped = true
		s.setStatusLocked(t, statusDeprovisioning)
		t.due = now.Add(timing.Deprovision)
	case statusPending, statusActivating, statusRunning:
		if t.hostStarting {
			return nil, time.Time{} // wait for StartTask to return
		}
		if t.hasLB && t.lastStatus != statusPending {
			s.setStatusLocked(t, statusDeactivating)
			t.due = now.Add(timing.Deactivate)
			return nil, time.Time{}
		}
		if !t.hostStarted {
			t.hostStopped = true
		}
		s.setStatusLocked(t, statusStopping)
	case statusDeactivating:
		s.setStatusLocked(t, statusStopping)
	case statusStopping:
		switch {
		case t.hostStopped && t.awsvpc():
			s.setStatusLocked(t, statusDeprovisioning)
			t.due = now.Add(timing.Deprovision)
		case t.hostStopped:
			s.setStatusLocked(t, statusStopped)
		case t.hostStarted && !t.hostStopping:
			t.hostStopping = true
			return &hostCall{t: t, host: t.instance.host}, time.Time{}
		}
	case statusDeprovisioning:
		s.setStatusLocked(t, statusStopped)
	}
	return nil, time.Time{}
}

// issue makes one host call in its own goroutine.
func (s *Server) issue(c hostCall) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, s.opts.HostTimeout)
		defer cancel()
		var err error
		if c.start {
			err = c.host.StartTask(ctx, c.spec, s.reporter(c.t))
		} else {
			err = c.host.StopTask(ctx, c.t.arn)
		}
		s.hostReturned(c, err)
	}()
}

func (s *Server) hostReturned(c hostCall, err error) {
	s.mu.Lock()
	t := c.t
	log := s.log.With("cluster", t.cluster.name, "task", t.arn, "instance", t.instance.ec2InstanceID)
	switch {
	case c.start && err == nil:
		t.hostStarting, t.hostStarted = false, true
	case c.start:
		t.hostStarting = false
		log.Warn("host refused the task", "err", err)
		if !t.hostStopped && !errors.Is(err, context.Canceled) {
			s.hostStoppedLocked(t, "CannotStartContainerError: "+err.Error())
		}
	case err != nil:
		// The agent could not stop it (host gone or broken): ECS would wait
		// for the agent; the world treats the containers as gone.
		log.Warn("host could not stop the task", "err", err)
		if !t.hostStopped && !errors.Is(err, context.Canceled) {
			s.hostStoppedLocked(t, "")
		}
	}
	s.changedLocked()
	s.mu.Unlock()
	s.afterChange()
}

// reporter receives the host's state changes for one task.
func (s *Server) reporter(t *task) func(worldapi.TaskUpdate) {
	return func(u worldapi.TaskUpdate) {
		s.mu.Lock()
		s.applyUpdateLocked(t, u)
		s.mu.Unlock()
		s.afterChange()
	}
}

func (s *Server) applyUpdateLocked(t *task, u worldapi.TaskUpdate) {
	if !t.live() || t.hostStopped {
		return
	}
	now := s.now()
	changed := false
	for _, cu := range u.Containers {
		for _, c := range t.containers {
			if c.name != cu.Name {
				continue
			}
			if c.lastStatus != cu.Status || c.runtimeID != cu.RuntimeID || c.reason != cu.Reason || (cu.ExitCode != nil) != (c.exitCode != nil) {
				changed = true
			}
			c.lastStatus, c.runtimeID, c.reason = cu.Status, cu.RuntimeID, cu.Reason
			if cu.ExitCode != nil {
				c.exitCode = ptr(*cu.ExitCode)
			}
		}
	}
	switch u.Status {
	case statusRunning:
		if t.lastStatus == statusPending {
			t.everRunning = true
			t.pullStopped, t.startedAt = now, now
			if t.service != nil {
				t.service.failures = 0
			}
			if t.desired == statusRunning && t.hasLB {
				s.setStatusLocked(t, statusActivating)
				t.due = now.Add(s.opts.Timing.Activate)
			} else {
				s.setStatusLocked(t, statusRunning)
			}
			return
		}
	case statusStopped:
		s.hostStoppedLocked(t, u.StoppedReason)
		return
	}
	if changed {
		s.taskChangedLocked(t)
	}
}

// hostStoppedLocked records that the task's containers are gone. A task
// that was meant to run failed: it failed to start or its essential
// container exited, and a service backs off before replacing a task that
// never started.
func (s *Server) hostStoppedLocked(t *task, reason string) {
	now := s.now()
	t.hostStopped = true
	t.execStopped = now
	for _, c := range t.containers {
		c.lastStatus = statusStopped
		if c.reason == "" && !t.everRunning {
			c.reason = reason
		}
	}
	if t.desired == statusRunning {
		t.desired = statusStopped
		if t.everRunning {
			t.stopCode, t.stopReason = StopEssentialContainerExited, "Essential container in task exited"
		} else {
			t.stopCode, t.stopReason = StopTaskFailedToStart, reason
			if t.stopReason == "" {
				t.stopReason = "Task failed to start"
			}
			if sv := t.service; sv != nil {
				sv.failures++
				backoff := s.opts.Timing.RetryBase << min(sv.failures-1, 20)
				if backoff > s.opts.Timing.RetryMax || backoff <= 0 {
					backoff = s.opts.Timing.RetryMax
				}
				sv.nextLaunch = now.Add(backoff)
			}
		}
	}
	s.taskChangedLocked(t)
}

// taskSpec is what the ECS agent receives for the task.
func (s *Server) taskSpec(t *task) worldapi.TaskSpec {
	d := t.def
	spec := worldapi.TaskSpec{
		TaskArn: t.arn, ClusterArn: t.cluster.arn, Family: d.family, Revision: d.revision,
		StopTimeout: 30 * time.Second, NetworkMode: d.req.NetworkMode, TaskDefinitionArn: d.arn,
	}
	if spec.NetworkMode == "" {
		spec.NetworkMode = "bridge"
	}
	for _, cd := range d.req.ContainerDefinitions {
		cs := worldapi.ContainerSpec{
			Name: cd.Name, Image: cd.Image, EntryPoint: cd.EntryPoint, Command: cd.Command,
			Environment: map[string]string{}, Essential: cd.Essential == nil || *cd.Essential, User: cd.User,
		}
		for _, kv := range cd.Environment {
			cs.Environment[kv.Name] = kv.Value
		}
		for _, mp := range cd.MountPoints {
			cs.MountPoints = append(cs.MountPoints, worldapi.MountPoint{SourceVolume: mp.SourceVolume, ContainerPath: mp.ContainerPath, ReadOnly: mp.ReadOnly})
		}
		if cd.StopTimeout != nil {
			spec.StopTimeout = max(spec.StopTimeout, time.Duration(*cd.StopTimeout)*time.Second)
		}
		spec.Containers = append(spec.Containers, cs)
	}
	for _, v := range d.req.Volumes {
		vs := worldapi.VolumeSpec{Name: v.Name}
		if v.Host != nil {
			vs.Host = v.Host.SourcePath
		}
		if dv := v.DockerVolumeConfiguration; dv != nil {
			vs.Docker = &worldapi.DockerVolumeConfiguration{
				Scope: dv.Scope, Autoprovision: dv.Autoprovision != nil && *dv.Autoprovision,
				Driver: dv.Driver, DriverOpts: copyMap(dv.DriverOpts), Labels: copyMap(dv.Labels),
			}
		}
		spec.Volumes = append(spec.Volumes, vs)
	}
	return spec
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
