package ec2sim

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

// Status checks (EC2 user guide, "Status checks for your instances"): EC2
// checks every running instance every minute. The system status check
// covers the AWS side (power, network, the physical host); the instance
// status check the guest (it sends an ARP request to the network interface:
// a hung kernel, exhausted memory or a corrupted file system fail it). A
// failed check makes the summary "impaired", with the failing detail
// ("reachability": "failed") and the time it failed since. Instances that
// are not running report "not-applicable" (DescribeInstanceStatus lists
// them only with IncludeAllInstances).
//
// The world's instances pass both checks until a test control says
// otherwise: ImpairInstanceStatus fails one at once, HangInstance makes
// the guest hang (it stops answering, its devices are not released) and
// fails the instance check later, as EC2's next checks would.

type statusChecks struct {
	systemSince, instanceSince time.Time // when the check failed; zero: passing
	hungSince                  time.Time // zero: the guest answers
}

func (c statusChecks) hung() bool { return !c.hungSince.IsZero() }

// StatusCheck names one of EC2's two instance checks.
type StatusCheck string

const (
	SystemCheck   StatusCheck = "system"
	InstanceCheck StatusCheck = "instance"
)

// ImpairInstanceStatus fails the instance's system or instance status
// check from now on, until RestoreInstanceStatus.
func (s *Server) ImpairInstanceStatus(id string, check StatusCheck) error {
	return s.withInstance(id, func(in *instance) error {
		switch check {
		case SystemCheck:
			in.status.systemSince = time.Now()
		case InstanceCheck:
			in.status.instanceSince = time.Now()
		default:
			return fmt.Errorf("ec2sim: status check %q: want system or instance", check)
		}
		s.log.Warn("status check impaired", "instance", id, "check", check)
		return nil
	})
}

// HangInstance makes the instance's guest hang while EC2 still says
// running: detaches from it stay "detaching" until forced, and its
// instance status check fails impairAfter from now (EC2 checks every
// minute, so a hang shows as impaired only after a while).
func (s *Server) HangInstance(id string, impairAfter time.Duration) error {
	return s.withInstance(id, func(in *instance) error {
		now := time.Now()
		in.status.hungSince = now
		in.status.instanceSince = now.Add(impairAfter)
		s.log.Warn("guest hung", "instance", id, "impairedAfter", impairAfter)
		return nil
	})
}

// RestoreInstanceStatus makes both checks pass again and ends a hang.
func (s *Server) RestoreInstanceStatus(id string) error {
	return s.withInstance(id, func(in *instance) error {
		in.status = statusChecks{}
		for _, vid := range in.devices {
			if v := s.volumes[vid]; v != nil && v.att != nil {
				nudge(v.att.wake)
			}
		}
		return nil
	})
}

func (s *Server) withInstance(id string, fn func(*instance) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	if in == nil {
		return fmt.Errorf("ec2sim: %w", errInstanceNotFound(id))
	}
	return fn(in)
}

// checkSummary is one check's answer at now: its status and detail.
func checkSummary(running bool, since, now time.Time) xmlStatusSummary {
	if !running {
		return xmlStatusSummary{Status: "not-applicable"}
	}
	d := xmlStatusDetail{Name: "reachability", Status: "passed"}
	status := "ok"
	if !since.IsZero() && !now.Before(since) {
		d.Status, d.ImpairedSince, status = "failed", ts(since), "impaired"
	}
	return xmlStatusSummary{Status: status, Details: &xmlStatusDetails{Items: []xmlStatusDetail{d}}}
}

func (s *Server) instanceStatusXML(in *instance, now time.Time) xmlInstanceStatus {
	running := in.state == "running"
	x := xmlInstanceStatus{InstanceID: in.id, AvailabilityZone: in.az,
		InstanceState:  xmlInstanceState{Code: instanceStateCode(in.state), Name: in.state},
		SystemStatus:   checkSummary(running, in.status.systemSince, now),
		InstanceStatus: checkSummary(running, in.status.instanceSince, now),
		EBSStatus:      checkSummary(running, time.Time{}, now),
	}
	x.Events.Items = []struct{}{}
	return x
}

func instanceStatusFilters() map[string]bool {
	return map[string]bool{
		"availability-zone": true, "instance-state-name": true, "instance-state-code": true,
		"instance-status.status": true, "instance-status.reachability": true,
		"system-status.status": true, "system-status.reachability": true,
	}
}

// describeInstanceStatus answers DescribeInstanceStatus: running instances
// only unless IncludeAllInstances; MaxResults 5-1000, not with InstanceIds
// (EC2 API reference, DescribeInstanceStatus).
func (s *Server) describeInstanceStatus(_ context.Context, form url.Values) (any, error) {
	ids := awsproto.List(form, "InstanceId")
	filters, err := parseFilters(form, instanceStatusFilters())
	if err != nil {
		return nil, err
	}
	all, _, err := optBool(form, "IncludeAllInstances")
	if err != nil {
		return nil, err
	}
	if err := instancePager().check(form, ids); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if s.instances[id] == nil {
			return nil, errInstanceNotFound(id)
		}
	}
	now := time.Now()
	var list []*instance
	var xs []xmlInstanceStatus
	for _, in := range s.instances {
		if (len(ids) > 0 && !slices.Contains(ids, in.id)) || (!all && in.state != "running") {
			continue
		}
		x := s.instanceStatusXML(in, now)
		field := func(name string) []string {
			switch name {
			case "availability-zone":
				return []string{in.az}
			case "instance-state-name":
				return []string{in.state}
			case "instance-state-code":
				return []string{strconv.Itoa(int(instanceStateCode(in.state)))}
			case "instance-status.status":
				return []string{x.InstanceStatus.Status}
			case "system-status.status":
				return []string{x.SystemStatus.Status}
			case "instance-status.reachability":
				return detailStatuses(x.InstanceStatus)
			case "system-status.reachability":
				return detailStatuses(x.SystemStatus)
			}
			return nil
		}
		if matches(filters, nil, field) {
			list = append(list, in)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
	start, end, next, err := instancePager().apply(form, ids, len(list), func(i int) int64 { return list[i].seq })
	if err != nil {
		return nil, err
	}
	for _, in := range list[start:end] {
		xs = append(xs, s.instanceStatusXML(in, now))
	}
	out := &describeInstanceStatusResponse{NextToken: next}
	out.Statuses.Items = append([]xmlInstanceStatus{}, xs...)
	return out, nil
}

func detailStatuses(sum xmlStatusSummary) []string {
	if sum.Details == nil {
		return nil
	}
	var out []string
	for _, d := range sum.Details.Items {
		out = append(out, d.Status)
	}
	return out
}
