package autoscalingsim

import (
	"context"
	"fmt"
	"time"
)

// The instance lifecycle (user guide, "Amazon EC2 Auto Scaling instance
// lifecycle", "How lifecycle hooks work"): a launched instance is Pending;
// with a launch hook it waits in Pending:Wait, then Pending:Proceed, then
// InService. An instance taken out of service (scale-in, a user's
// TerminateInstanceInAutoScalingGroup, a failed health check) is
// Terminating; with a termination hook it waits in Terminating:Wait, then
// Terminating:Proceed while EC2 terminates it, then Terminated. A
// Terminated instance stays listed for a while (TerminatedRetention of
// world time), then leaves the group.

// Lifecycle states (the LifecycleState enum of botocore's model).
const (
	StatePending            = "Pending"
	StatePendingWait        = "Pending:Wait"
	StatePendingProceed     = "Pending:Proceed"
	StateInService          = "InService"
	StateTerminating        = "Terminating"
	StateTerminatingWait    = "Terminating:Wait"
	StateTerminatingProceed = "Terminating:Proceed"
	StateTerminated         = "Terminated"
)

// Health statuses.
const (
	Healthy   = "Healthy"
	Unhealthy = "Unhealthy"
)

const (
	// TerminatedRetention is how long a Terminated instance stays listed
	// (world time).
	TerminatedRetention = time.Minute
	// LaunchRetry is how long a group waits before retrying a failed
	// launch or termination (world time).
	LaunchRetry = 10 * time.Second
)

type instance struct {
	id, az    string
	group     *group
	state     string
	health    string
	protected bool
	launched  time.Time
	seq       int64
	actions   map[string]*lifecycleAction // by hook name, while in a wait state
	activity  activity                    // the launch or termination under way or last made
}

type activity struct {
	id, cause, description string
	start                  time.Time
}

func (in *instance) terminating() bool {
	switch in.state {
	case StateTerminating, StateTerminatingWait, StateTerminatingProceed, StateTerminated:
		return true
	}
	return false
}

// activeCount is how many members count toward the desired capacity:
// every instance not on its way out.
func (g *group) activeCount() int {
	n := 0
	for _, in := range g.members {
		if !in.terminating() {
			n++
		}
	}
	return n
}

func (g *group) inFlight() int {
	n := 0
	for _, c := range g.launching {
		n += c
	}
	return n
}

// reconcileLocked brings the group to its desired capacity: launches what
// is missing (zones balanced), takes out of service what is extra (by the
// termination policy) and returns the ids it selected for termination.
// Caller holds s.mu.
func (s *Server) reconcileLocked(g *group) []string {
	active, inFlight := g.activeCount(), g.inFlight()
	if missing := g.desired - active - inFlight; missing > 0 {
		for range missing {
			s.launchLocked(g, s.launchZoneLocked(g), active+inFlight)
			inFlight++
		}
		return nil
	}
	extra := active - g.desired
	if extra <= 0 {
		return nil
	}
	var ids []string
	for _, in := range s.pickLocked(g, extra) {
		now := time.Now()
		cur := g.activeCount()
		cause := fmt.Sprintf("%s  At %s an instance was taken out of service in response to a difference between desired and actual capacity, shrinking the capacity from %d to %d.  At %s instance %s was selected for termination.",
			g.cause, ts(now), cur, cur-1, ts(now), in.id)
		s.startTerminateLocked(in, cause)
		ids = append(ids, in.id)
	}
	return ids
}

// launchZoneLocked is the group's zone with the fewest instances (active
// or being launched): Auto Scaling balances instances across zones (user
// guide, "Instance distribution across Availability Zones"). Caller holds
// s.mu.
func (s *Server) launchZoneLocked(g *group) string {
	best, bestN := "", -1
	for _, az := range g.azs {
		n := g.launching[az]
		for _, in := range g.members {
			if in.az == az && !in.terminating() {
				n++
			}
		}
		if bestN < 0 || n < bestN {
			best, bestN = az, n
		}
	}
	return best
}

// launchLocked asks the Launcher for one instance in az. Caller holds s.mu.
func (s *Server) launchLocked(g *group, az string, from int) {
	g.launching[az]++
	tags := map[string]string{"aws:autoscaling:groupName": g.name}
	for _, t := range g.tags {
		if t.PropagateAtLaunch {
			tags[t.Key] = t.Value
		}
	}
	act := activity{id: s.newUUID(), start: time.Now(),
		cause: fmt.Sprintf("%s  At %s an instance was started in response to a difference between desired and actual capacity, increasing the capacity from %d to %d.",
			g.cause, ts(time.Now()), from, from+1)}
	req := LaunchRequest{Group: g.name, AZ: az, Template: *g.template, Tags: tags}
	s.log.Info("launching instance", "group", g.name, "az", az, "spot", g.template.Spot)
	s.goLocked(func(ctx context.Context) {
		id, err := s.cfg.Launcher.Launch(ctx, req)
		s.launched(g, az, act, id, err)
	})
}

// launched records the outcome of a launch.
func (s *Server) launched(g *group, az string, act activity, id string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g.launching[az]--
	if s.closed {
		return
	}
	if err != nil {
		s.log.Warn("launch failed", "group", g.name, "az", az, "err", err)
		s.activityEventLocked(g, &instance{az: az, activity: act}, DetailLaunchUnsuccessful, err.Error())
		s.afterLocked(s.real(LaunchRetry), func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.reconcileLocked(g)
		})
		return
	}
	act.description = "Launching a new EC2 instance: " + id
	in := &instance{id: id, az: az, group: g, state: StatePending, health: Healthy, protected: g.newProtected,
		launched: time.Now(), seq: s.nextSeq(), actions: map[string]*lifecycleAction{}, activity: act}
	g.members[id] = in
	s.instances[id] = in
	s.log.Info("instance pending", "group", g.name, "instance", id, "az", az)
	if !s.enterWaitLocked(in, TransitionLaunching) {
		s.inServiceLocked(in)
	}
	s.reconcileLocked(g)
}

// inServiceLocked puts a launched instance in service. Caller holds s.mu.
func (s *Server) inServiceLocked(in *instance) {
	in.state = StateInService
	s.log.Info("instance in service", "group", in.group.name, "instance", in.id)
	s.activityEventLocked(in.group, in, DetailLaunchSuccessful, "")
}

// startTerminateLocked takes an instance out of service: Terminating, then
// Terminating:Wait for the group's termination hooks, or on at once.
// Caller holds s.mu.
func (s *Server) startTerminateLocked(in *instance, cause string) {
	in.state = StateTerminating
	in.activity = activity{id: s.newUUID(), start: time.Now(), cause: cause, description: "Terminating EC2 instance: " + in.id}
	s.log.Info("instance terminating", "group", in.group.name, "instance", in.id, "cause", cause)
	if !s.enterWaitLocked(in, TransitionTerminating) {
		s.proceedTerminateLocked(in)
	}
}

// proceedTerminateLocked has EC2 terminate the instance (Terminating:Proceed)
// and, once EC2 says terminated, marks it Terminated. A failure is
// announced and retried. Caller holds s.mu.
func (s *Server) proceedTerminateLocked(in *instance) {
	in.state = StateTerminatingProceed
	s.log.Info("instance terminating: proceeding", "group", in.group.name, "instance", in.id)
	s.goLocked(func(ctx context.Context) {
		err := s.cfg.EC2.TerminateInstance(ctx, in.id)
		s.mu.Lock()
		defer s.mu.Unlock()
		if ctx.Err() != nil || s.closed {
			return
		}
		if err != nil {
			s.log.Warn("terminating through EC2 failed", "instance", in.id, "err", err)
			s.activityEventLocked(in.group, in, DetailTerminateUnsuccessful, err.Error())
			s.afterLocked(s.real(LaunchRetry), func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.proceedTerminateLocked(in)
			})
			return
		}
		in.state = StateTerminated
		s.log.Info("instance terminated", "group", in.group.name, "instance", in.id)
		s.activityEventLocked(in.group, in, DetailTerminateSuccessful, "")
		s.afterLocked(s.real(TerminatedRetention), func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			delete(in.group.members, in.id)
			delete(s.instances, in.id)
		})
	})
}
