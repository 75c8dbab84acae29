package autoscalingsim

import (
	"fmt"
	"time"
)

// Health checks (user guide, "Health checks for Auto Scaling instances",
// Amazon EC2 status checks): "If the instance is in any Amazon EC2 state
// other than running, or if its status for the status checks becomes
// impaired, Amazon EC2 Auto Scaling considers the instance to be unhealthy
// and replaces it"; a state other than running "is treated as an immediate
// failure", while for impaired status checks it "waits a few minutes"
// (Config.ImpairedGrace). The health check grace period delays only the
// status-check rule ("During the health check grace period, if Amazon EC2
// Auto Scaling detects that an instance is no longer in the running state,
// it marks it as unhealthy and replaces it"). An unhealthy InService
// instance is terminated through the group's termination hooks while a
// replacement launches (the desired capacity does not change). A Spot
// Instance is therefore replaced only after EC2 has interrupted it
// (Capacity Rebalancing, which would act on the rebalance recommendation,
// is not modelled): its termination hook fires for an instance already
// gone, and "you must still complete the lifecycle action".

// InstanceStateChanged tells Auto Scaling of an EC2 state change (the world
// forwards ec2sim's Config.InstanceStateChanged), so a member that leaves
// running is replaced at once.
func (s *Server) InstanceStateChanged(id, state string) {
	if state == "running" || state == "pending" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unhealthyLocked(id, fmt.Sprintf("At %s an instance was taken out of service in response to an EC2 health check indicating it has been terminated or stopped.", ts(time.Now())))
}

// unhealthyLocked marks an InService member unhealthy and replaces it.
// Caller holds s.mu.
func (s *Server) unhealthyLocked(id, cause string) {
	in := s.instances[id]
	if in == nil || in.state != StateInService {
		return
	}
	in.health = Unhealthy
	s.log.Warn("instance unhealthy", "group", in.group.name, "instance", id, "cause", cause)
	s.startTerminateLocked(in, cause)
	s.reconcileLocked(in.group)
}

// healthChecks looks at every InService member's EC2 state and status
// checks until the server closes.
func (s *Server) healthChecks() {
	t := time.NewTicker(s.cfg.HealthCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		type member struct {
			id     string
			inSvc  time.Time
			graceS int
		}
		s.mu.Lock()
		var ms []member
		for _, in := range s.instances {
			if in.state == StateInService {
				ms = append(ms, member{id: in.id, inSvc: in.launched, graceS: in.group.grace})
			}
		}
		s.mu.Unlock()
		for _, m := range ms {
			state, err := s.cfg.EC2.InstanceState(m.id)
			if err != nil {
				continue
			}
			if state != "running" && state != "pending" {
				s.InstanceStateChanged(m.id, state)
				continue
			}
			since, impaired, err := s.cfg.EC2.ImpairedSince(m.id)
			if err != nil || !impaired {
				continue
			}
			if time.Since(m.inSvc) < s.real(time.Duration(m.graceS)*time.Second) || time.Since(since) < s.real(s.cfg.ImpairedGrace) {
				continue
			}
			s.mu.Lock()
			s.unhealthyLocked(m.id, fmt.Sprintf("At %s an instance was taken out of service in response to an EC2 instance status checks failure.", ts(time.Now())))
			s.mu.Unlock()
		}
	}
}
