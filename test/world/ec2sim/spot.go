package ec2sim

import (
	"context"
	"fmt"
	"time"
)

// Spot interruptions (EC2 user guide, "Spot Instance interruptions",
// "Spot Instance interruption notices", "EC2 instance rebalance
// recommendations"): before it reclaims a Spot Instance, EC2 sends an "EC2
// Instance Rebalance Recommendation" (it "can arrive along with the
// two-minute interruption notice") and an "EC2 Spot Instance Interruption
// Warning" two minutes before it stops or terminates the instance; then it
// stops or terminates it as it does any instance (stopping/shutting-down,
// the state-change events, the volumes released on termination), with the
// StateReason Server.SpotInstanceShutdown or Server.SpotInstanceTermination
// (EC2 API reference, StateReason). Hibernation gets no two-minute warning;
// the world launches no instance enabled for hibernation, so it refuses it.
// The instance metadata item spot/instance-action is not modelled: the
// world has no IMDS.

const (
	detailSpotWarning = "EC2 Spot Instance Interruption Warning"
	detailRebalance   = "EC2 Instance Rebalance Recommendation"
)

// SpotNotice is how long before the interruption EC2 warns (the user
// guide's "two minutes"); the world scales it to its own time.
const SpotNotice = 2 * time.Minute

// SpotInterruptionWarning is the detail of an "EC2 Spot Instance
// Interruption Warning".
type SpotInterruptionWarning struct {
	InstanceID     string `json:"instance-id"`
	InstanceAction string `json:"instance-action"` // terminate, stop, hibernate
}

// RebalanceRecommendation is the detail of an "EC2 Instance Rebalance
// Recommendation".
type RebalanceRecommendation struct {
	InstanceID string `json:"instance-id"`
}

// InterruptSpotInstance reclaims a running Spot Instance as EC2 does: the
// rebalance recommendation and the interruption warning (instance-action
// "terminate" or "stop") now, then, notice later, the stop or termination.
// It returns when the interruption is due. A second call while one is
// pending is refused.
func (s *Server) InterruptSpotInstance(id, action string, notice time.Duration) (time.Time, error) {
	var code string
	switch action {
	case "terminate":
		code = "Server.SpotInstanceTermination"
	case "stop":
		code = "Server.SpotInstanceShutdown"
	case "hibernate":
		return time.Time{}, fmt.Errorf("ec2sim: %s: the world launches no instance enabled for hibernation", id)
	default:
		return time.Time{}, fmt.Errorf("ec2sim: %s: instance-action %q: want terminate or stop", id, action)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	switch {
	case in == nil:
		return time.Time{}, fmt.Errorf("ec2sim: %w", errInstanceNotFound(id))
	case !in.spot:
		return time.Time{}, fmt.Errorf("ec2sim: %s is an On-Demand instance: EC2 interrupts only Spot Instances", id)
	case in.state != "running":
		return time.Time{}, fmt.Errorf("ec2sim: %s is %s: EC2 interrupts running Spot Instances", id, in.state)
	case in.spotDue:
		return time.Time{}, fmt.Errorf("ec2sim: %s already has an interruption pending", id)
	}
	in.spotDue = true
	due := time.Now().Add(notice)
	s.log.Warn("spot interruption warning", "instance", id, "action", action, "notice", notice)
	s.publish(detailRebalance, []string{s.arn("instance", id)}, RebalanceRecommendation{InstanceID: id})
	// The warning's resource is the instance in its zone, without the
	// account: "The ARN format of the Spot Instance interruption event is
	// arn:aws:ec2:availability-zone:instance/instance-id" (user guide; the
	// same in aws-node-termination-handler's sample).
	s.publish(detailSpotWarning, []string{"arn:aws:ec2:" + in.az + ":instance/" + id},
		SpotInterruptionWarning{InstanceID: id, InstanceAction: action})
	s.afterLocked(notice, func(context.Context) {
		s.mu.Lock()
		defer s.mu.Unlock()
		in.spotDue = false
		if in.state != "running" && in.state != "pending" {
			return // stopped or terminated by someone else meanwhile
		}
		to := "shutting-down"
		if action == "stop" {
			to = "stopping"
		}
		s.log.Warn("spot instance interrupted", "instance", id, "action", action)
		in.reasonCode = code
		s.beginLocked(in, to, false)
	})
	return due, nil
}

// stateReasonXML is DescribeInstances' StateReason for a code (EC2 API
// reference, StateReason: "Code: Message").
func stateReasonXML(code string) *xmlStateReason {
	msg := map[string]string{
		"Client.UserInitiatedShutdown":   "User initiated shutdown",
		"Server.SpotInstanceShutdown":    "Spot instance shutdown",
		"Server.SpotInstanceTermination": "Spot instance termination",
	}
	if code == "" {
		code = "Client.UserInitiatedShutdown"
	}
	return &xmlStateReason{Code: code, Message: code + ": " + msg[code]}
}

// ImpairedSince reports whether either status check of the instance fails
// now and, if so, since when (the earlier of the two), as
// DescribeInstanceStatus would show it. Auto Scaling's health checks read
// it.
func (s *Server) ImpairedSince(id string) (time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	if in == nil {
		return time.Time{}, false, fmt.Errorf("ec2sim: %w", errInstanceNotFound(id))
	}
	if in.state != "running" {
		return time.Time{}, false, nil
	}
	now := time.Now()
	var since time.Time
	for _, t := range []time.Time{in.status.systemSince, in.status.instanceSince} {
		if !t.IsZero() && !now.Before(t) && (since.IsZero() || t.Before(since)) {
			since = t
		}
	}
	return since, !since.IsZero(), nil
}

// IsSpot reports whether the instance is a Spot Instance.
func (s *Server) IsSpot(id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	if in == nil {
		return false, fmt.Errorf("ec2sim: %w", errInstanceNotFound(id))
	}
	return in.spot, nil
}
