package ec2sim

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/latency"
)

// Instance lifecycle (EC2 user guide, "Instance state changes", "Stop and
// start Amazon EC2 instances", "Terminate Amazon EC2 instances"): a stop
// passes through stopping (the OS shuts down; "if the instance OS does not
// shut down cleanly within a few minutes, a hard shutdown is performed")
// to stopped, and a stopped instance keeps its EBS volumes attached; a
// termination passes through shutting-down to terminated, after which the
// volumes are released ("gradually disassociated"): those attached with
// DeleteOnTermination are deleted, the others become available. Every
// state entered is published as an EC2 Instance State-change Notification.
// While an instance is stopping or shutting-down its volumes cannot be
// detached, forced or not (see detachVolume).

// The instance transitions a latency profile times (a profile without
// them makes them instant).
const (
	OpStopInstance      latency.Op = "StopInstance"      // stopping -> stopped
	OpTerminateInstance latency.Op = "TerminateInstance" // shutting-down -> terminated
)

// RealisticInstanceDists are the instance transitions' durations for the
// realistic profile. The EC2 user guide gives "a few minutes" for both: an
// OS that has not shut down within a few minutes is stopped hard, and an
// instance "in the shutting-down state longer than a few minutes" is
// delayed ("Troubleshoot instance termination"); clean shutdowns of small
// Linux instances take tens of seconds.
func RealisticInstanceDists() map[latency.Op]latency.Dist {
	return map[latency.Op]latency.Dist{
		OpStopInstance:      {Median: 40 * time.Second, P99: 3 * time.Minute},
		OpTerminateInstance: {Median: 30 * time.Second, P99: 2 * time.Minute},
	}
}

func instanceStateCode(name string) int32 {
	switch name {
	case "running":
		return 16
	case "shutting-down":
		return 32
	case "terminated":
		return 48
	case "stopping":
		return 64
	case "stopped":
		return 80
	}
	return 0 // pending
}

// beginLocked moves the instance into stopping or shutting-down, publishes
// it and schedules the end of the transition after the profile's time (at
// once when forced). Caller holds s.mu.
func (s *Server) beginLocked(in *instance, to string, force bool) {
	in.state = to
	s.instanceEventLocked(in)
	s.scheduleEndLocked(in, force)
}

func (s *Server) scheduleEndLocked(in *instance, now bool) {
	in.transition++
	gen := in.transition
	op := OpStopInstance
	if in.state == "shutting-down" {
		op = OpTerminateInstance
	}
	d := s.lat.Sample(op)
	if now {
		d = 0
	}
	s.afterLocked(d, func(context.Context) { s.endTransition(in, gen) })
}

// endTransition ends a stopping or shutting-down: the guest is gone (its
// host killed, its devices with it), and the instance is stopped (volumes
// stay attached) or terminated (volumes released).
func (s *Server) endTransition(in *instance, gen uint64) {
	s.mu.Lock()
	if in.transition != gen {
		s.mu.Unlock()
		return
	}
	host := in.host
	s.mu.Unlock()
	if host != nil {
		if err := host.Kill(); err != nil {
			s.log.Warn("killing the guest", "instance", in.id, "err", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if in.transition != gen {
		return
	}
	s.guestGoneLocked(in)
	in.stateReason = ""
	if in.reasonCode == "" {
		in.stateReason = "User initiated (" + time.Now().UTC().Format("2006-01-02 15:04:05 GMT") + ")"
	}
	switch in.state {
	case "stopping":
		in.state = "stopped"
		s.instanceEventLocked(in)
	case "shutting-down":
		in.state = "terminated"
		s.instanceEventLocked(in)
		s.releaseVolumesLocked(in)
	}
}

// guestGoneLocked records that the instance's guest no longer exists: no
// attachment has a device in it, and detaches waiting for it end. Caller
// holds s.mu.
func (s *Server) guestGoneLocked(in *instance) {
	in.guestGone = true
	for _, vid := range in.devices {
		if v := s.volumes[vid]; v != nil && v.att != nil && v.att.instanceID == in.id {
			nudge(v.att.wake)
		}
	}
}

// releaseVolumesLocked detaches every volume of a terminated instance a
// detach's time later, deleting those with DeleteOnTermination, then
// closes in.settled. Until then the attachments show "detaching". Caller
// holds s.mu.
func (s *Server) releaseVolumesLocked(in *instance) {
	type held struct {
		v *volume
		a *attachment
	}
	var vols []held
	for _, vid := range in.devices {
		if v := s.volumes[vid]; v != nil && v.att != nil && v.att.instanceID == in.id {
			v.att.gen++ // stop any attach or detach worker
			v.att.state = attDetaching
			vols = append(vols, held{v, v.att})
		}
	}
	s.afterLocked(s.lat.Sample(latency.DetachVolume), func(context.Context) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, h := range vols {
			s.finishDetachLocked(h.v, h.a)
			if h.a.deleteOnTermination && h.v.state == stateAvailable {
				h.v.state = stateDeleting
				s.afterLocked(s.lat.Sample(latency.DeleteVolume), func(context.Context) { s.finishDelete(h.v.id, "") })
			}
		}
		close(in.settled)
		s.log.Info("terminated instance's volumes released", "instance", in.id, "volumes", len(vols))
	})
}

func (s *Server) stopInstances(_ context.Context, form url.Values) (any, error) {
	return s.changeInstances(form, "StopInstances")
}

func (s *Server) terminateInstances(_ context.Context, form url.Values) (any, error) {
	return s.changeInstances(form, "TerminateInstances")
}

// changeInstances answers StopInstances and TerminateInstances: every id
// must exist (else InvalidInstanceID.NotFound and nothing changes); each
// instance's previous and current state is returned.
func (s *Server) changeInstances(form url.Values, action string) (any, error) {
	ids := awsproto.List(form, "InstanceId")
	if len(ids) == 0 {
		return nil, errMissing("InstanceId")
	}
	force, _, err := optBool(form, "Force")
	if err != nil {
		return nil, err
	}
	if hib, _, err := optBool(form, "Hibernate"); err != nil {
		return nil, err
	} else if hib {
		// The world launches no instance enabled for hibernation.
		return nil, awsproto.BadRequest("UnsupportedHibernationConfiguration",
			"The instance %s is not configured for hibernation.", ids[0])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		in := s.instances[id]
		if in == nil {
			return nil, errInstanceNotFound(id)
		}
		// "You can force an instance to stop ... while the instance is in
		// any state, except shutting-down and terminated" (EC2 user guide,
		// "Troubleshoot Amazon EC2 instance stop issues").
		if action == "StopInstances" && (in.state == "shutting-down" || in.state == "terminated") {
			return nil, errIncorrectInstanceState("This instance '%s' is not in a state from which it can be stopped.", id)
		}
	}
	if err := s.resources.take(action, len(ids)); err != nil {
		return nil, err
	}
	out := &instanceStateChangeResponse{}
	out.Instances.Items = []xmlStateChange{}
	for _, id := range ids {
		in := s.instances[id]
		prev := in.state
		if action == "StopInstances" {
			s.stopLocked(in, force)
		} else {
			s.terminateLocked(in)
		}
		out.Instances.Items = append(out.Instances.Items, xmlStateChange{InstanceID: id,
			CurrentState:  xmlInstanceState{Code: instanceStateCode(in.state), Name: in.state},
			PreviousState: xmlInstanceState{Code: instanceStateCode(prev), Name: prev}})
	}
	return out, nil
}

// stopLocked starts a stop; a forced stop of a stopping instance ends it
// now. Caller holds s.mu.
func (s *Server) stopLocked(in *instance, force bool) {
	switch in.state {
	case "pending", "running":
		s.log.Info("instance stopping", "instance", in.id, "force", force)
		in.reasonCode = ""
		s.beginLocked(in, "stopping", force)
	case "stopping":
		if force {
			s.log.Info("stop forced", "instance", in.id)
			s.scheduleEndLocked(in, true)
		}
	}
}

// terminateLocked starts a termination (a no-op once under way) and
// returns the channel closed when its volumes are released. Caller holds
// s.mu.
func (s *Server) terminateLocked(in *instance) <-chan struct{} {
	switch in.state {
	case "shutting-down", "terminated":
	default:
		s.log.Info("instance shutting down", "instance", in.id)
		in.reasonCode = ""
		s.beginLocked(in, "shutting-down", false)
	}
	return in.settled
}

// TerminateInstance terminates the instance as TerminateInstances does and
// returns once it is terminated and its volumes are released (or ctx
// ends).
func (s *Server) TerminateInstance(ctx context.Context, id string) error {
	s.mu.Lock()
	in := s.instances[id]
	if in == nil {
		s.mu.Unlock()
		return fmt.Errorf("ec2sim: %w", errInstanceNotFound(id))
	}
	done := s.terminateLocked(in)
	s.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ec2sim: terminating %s: %w", id, ctx.Err())
	}
}

// StopInstance stops the instance as StopInstances does (force ends a
// stopping at once) and returns once it is stopped (or ctx ends).
func (s *Server) StopInstance(ctx context.Context, id string, force bool) error {
	s.mu.Lock()
	in := s.instances[id]
	if in == nil {
		s.mu.Unlock()
		return fmt.Errorf("ec2sim: %w", errInstanceNotFound(id))
	}
	if in.state == "shutting-down" || in.state == "terminated" {
		s.mu.Unlock()
		return fmt.Errorf("ec2sim: %w", errIncorrectInstanceState("This instance '%s' is not in a state from which it can be stopped.", id))
	}
	s.stopLocked(in, force)
	s.mu.Unlock()
	for {
		st, err := s.InstanceState(id)
		if err != nil || st == "stopped" {
			return err
		}
		if st != "stopping" {
			return fmt.Errorf("ec2sim: %s became %s while stopping", id, st)
		}
		if !sleep(ctx, 5*time.Millisecond) {
			return fmt.Errorf("ec2sim: stopping %s: %w", id, ctx.Err())
		}
	}
}
