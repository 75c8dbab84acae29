package ecssim

import (
	"strings"
	"time"
)

// run is the scheduler: on every change and when a timed step is due it
// keeps services at their desired count and advances task lifecycles.
func (s *Server) run() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wake := s.tick()
		s.afterChange()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !wake.IsZero() {
			timer.Reset(max(time.Until(wake), time.Millisecond))
		}
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		case <-timer.C:
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func (s *Server) tick() time.Time {
	s.mu.Lock()
	now := s.now()
	var wake time.Time
	var calls []hostCall
	for _, name := range s.order {
		c := s.clusters[name]
		for _, svName := range c.serviceOrder {
			wake = earliest(wake, s.reconcileServiceLocked(c.services[svName], now))
		}
		for _, t := range c.liveTasks() {
			tc, tw := s.advanceLocked(t, now)
			calls = append(calls, tc...)
			wake = earliest(wake, tw)
		}
	}
	s.mu.Unlock()
	for _, c := range calls {
		s.issue(c)
	}
	return wake
}

// reconcileServiceLocked does what ECS's service scheduler does for one
// service: stop tasks it no longer wants (instance DRAINING, old
// deployment, scaled down) and start replacements, keeping at least
// minimumHealthyPercent of desiredCount RUNNING and at most maximumPercent
// of it in PENDING, RUNNING or STOPPING.
func (s *Server) reconcileServiceLocked(sv *service, now time.Time) (wake time.Time) {
	if sv.status == statusInactive {
		return time.Time{}
	}
	c := sv.cluster
	var live, fresh, stale []*task
	var healthy int32
	for _, t := range c.liveTasks() {
		if t.service != sv {
			continue
		}
		live = append(live, t)
		if t.desired != statusRunning {
			continue
		}
		if t.lastStatus == statusRunning {
			healthy++
		}
		if t.instance.status != statusActive || t.startedBy != sv.deploymentID() {
			stale = append(stale, t)
		} else {
			fresh = append(fresh, t)
		}
	}
	if sv.status == statusDraining && len(live) == 0 {
		sv.status = statusInactive
		s.serviceEventLocked(sv, "has been deleted.")
		s.changedLocked()
		return time.Time{}
	}
	want := sv.desired
	scaleReason := "Scaling activity initiated by (deployment " + sv.deploymentID() + ")"

	// Scale down: newest and least advanced first.
	for int32(len(fresh)) > want {
		victim := fresh[len(fresh)-1]
		for _, t := range fresh {
			if t.lastStatus != statusRunning {
				victim = t
			}
		}
		fresh = remove(fresh, victim)
		if victim.lastStatus == statusRunning {
			healthy--
		}
		s.stopForServiceLocked(sv, victim, scaleReason)
	}

	// Retire stale tasks: those not yet RUNNING at once, RUNNING ones while
	// enough others stay RUNNING.
	minHealthy := (want*sv.minHealthy + 99) / 100
	for _, t := range stale {
		if t.lastStatus == statusRunning {
			if healthy-1 < minHealthy {
				continue
			}
			healthy--
		}
		reason := scaleReason
		if t.instance.status == statusDraining {
			reason = "Service " + sv.name + ": container instance is in DRAINING state"
		}
		s.stopForServiceLocked(sv, t, reason)
	}

	// Start replacements within maximumPercent.
	need := want - int32(len(fresh))
	room := want*sv.maxPercent/100 - int32(len(live))
	if n := min(need, room); n > 0 && sv.status == statusActive {
		if now.Before(sv.nextLaunch) {
			return sv.nextLaunch
		}
		p := placement{def: sv.def, constraints: sv.compiled, distinct: sv.distinct, group: "service:" + sv.name}
		var started []string
		for range n {
			ci, failures := s.choose(c, p)
			if ci == nil {
				s.unplacedLocked(sv, failures)
				break
			}
			t := s.newTaskLocked(c, sv.def, ci, sv, sv.deploymentID(), p.group, sv.network)
			started = append(started, t.id)
		}
		if len(started) > 0 {
			sv.lastPlaceError = ""
			s.serviceEventLocked(sv, "has started %d tasks: (task %s).", len(started), strings.Join(started, ") (task "))
		}
	}
	return time.Time{}
}

func (s *Server) stopForServiceLocked(sv *service, t *task, reason string) {
	s.requestStopLocked(t, StopServiceSchedulerInitiated, reason)
	s.serviceEventLocked(sv, "has stopped 1 running tasks: (task %s).", t.id)
}

// unplacedLocked records, once per distinct reason, that no instance fits.
func (s *Server) unplacedLocked(sv *service, failures []failureJSON) {
	msg := "was unable to place a task because no container instance met all of its requirements."
	if len(failures) > 0 {
		f := failures[0]
		_, id, _ := s.resourceID("container-instance", f.Arn)
		msg += " The closest matching (container-instance " + id + ") encountered error \"" + f.Reason + "\". For more information, see the Troubleshooting section."
	}
	if msg != sv.lastPlaceError {
		sv.lastPlaceError = msg
		s.serviceEventLocked(sv, "%s", msg)
		s.log.Warn("service task unplaceable", "cluster", sv.cluster.name, "service", sv.name, "why", msg)
	}
}

func remove(ts []*task, victim *task) []*task {
	out := ts[:0:0]
	for _, t := range ts {
		if t != victim {
			out = append(out, t)
		}
	}
	return out
}
