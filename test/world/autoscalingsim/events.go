package autoscalingsim

import (
	"time"

	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Auto Scaling sends its events to EventBridge with source aws.autoscaling
// ("Amazon EC2 Auto Scaling event reference", user guide; EventBridge's
// events reference lists the same detail types). Only these are sent, in
// the samples' shapes:
//   - "EC2 Instance-launch Lifecycle Action" and "EC2 Instance-terminate
//     Lifecycle Action" when an instance enters Pending:Wait or
//     Terminating:Wait for a hook: resources [the group's ARN], detail
//     {LifecycleActionToken, AutoScalingGroupName, LifecycleHookName,
//     EC2InstanceId, LifecycleTransition, NotificationMetadata (only when
//     the hook has some), Origin, Destination}. Origin and Destination are
//     "provided ... if that information is available": EC2 ->
//     AutoScalingGroup on launch, AutoScalingGroup -> EC2 on termination.
//   - "EC2 Instance Launch Successful" / "Unsuccessful" and "EC2 Instance
//     Terminate Successful" / "Unsuccessful": resources [the group's ARN,
//     the instance's ARN], detail {StatusCode (InProgress as in the
//     samples, Failed when unsuccessful), Description, AutoScalingGroupName,
//     ActivityId, Details {"Availability Zone", "Subnet ID"}, RequestId,
//     StatusMessage, EndTime, EC2InstanceId, StartTime, Cause, Origin,
//     Destination}.
// The events are "produced on a best-effort basis": tether must not depend
// on them for correctness. No autoscaling:TEST_NOTIFICATION is sent: AWS
// sends it only to SNS/SQS notification targets, which the world refuses.

// Detail types of the events above.
const (
	DetailLaunchLifecycleAction    = "EC2 Instance-launch Lifecycle Action"
	DetailTerminateLifecycleAction = "EC2 Instance-terminate Lifecycle Action"
	DetailLaunchSuccessful         = "EC2 Instance Launch Successful"
	DetailLaunchUnsuccessful       = "EC2 Instance Launch Unsuccessful"
	DetailTerminateSuccessful      = "EC2 Instance Terminate Successful"
	DetailTerminateUnsuccessful    = "EC2 Instance Terminate Unsuccessful"
)

// LifecycleActionDetail is the detail of a lifecycle action event.
type LifecycleActionDetail struct {
	LifecycleActionToken string `json:"LifecycleActionToken"`
	AutoScalingGroupName string `json:"AutoScalingGroupName"`
	LifecycleHookName    string `json:"LifecycleHookName"`
	EC2InstanceID        string `json:"EC2InstanceId"`
	LifecycleTransition  string `json:"LifecycleTransition"`
	NotificationMetadata string `json:"NotificationMetadata,omitempty"`
	Origin               string `json:"Origin"`
	Destination          string `json:"Destination"`
}

// ActivityDetail is the detail of a launch or terminate (un)successful
// event.
type ActivityDetail struct {
	Origin               string            `json:"Origin"`
	Destination          string            `json:"Destination"`
	StatusCode           string            `json:"StatusCode"`
	Description          string            `json:"Description,omitempty"`
	AutoScalingGroupName string            `json:"AutoScalingGroupName"`
	ActivityID           string            `json:"ActivityId"`
	Details              map[string]string `json:"Details"`
	RequestID            string            `json:"RequestId"`
	StatusMessage        string            `json:"StatusMessage"`
	EndTime              string            `json:"EndTime"`
	EC2InstanceID        string            `json:"EC2InstanceId"`
	StartTime            string            `json:"StartTime"`
	Cause                string            `json:"Cause"`
}

func (s *Server) publish(detailType string, resources []string, detail any) {
	if s.cfg.Publisher == nil {
		return
	}
	ev, err := worldapi.NewEvent("aws.autoscaling", s.cfg.Account, s.cfg.Region, detailType, resources, detail)
	if err != nil {
		s.log.Error("encoding event detail", "detailType", detailType, "err", err)
		return
	}
	s.cfg.Publisher.Publish(ev)
}

// lifecycleEventLocked announces an instance entering a wait state for a
// hook. Caller holds s.mu.
func (s *Server) lifecycleEventLocked(a *lifecycleAction) {
	d := LifecycleActionDetail{LifecycleActionToken: a.token, AutoScalingGroupName: a.group.name, LifecycleHookName: a.hook.name,
		EC2InstanceID: a.inst.id, LifecycleTransition: a.hook.transition, NotificationMetadata: a.hook.metadata}
	typ := DetailLaunchLifecycleAction
	d.Origin, d.Destination = "EC2", "AutoScalingGroup"
	if a.hook.transition == TransitionTerminating {
		typ = DetailTerminateLifecycleAction
		d.Origin, d.Destination = "AutoScalingGroup", "EC2"
	}
	s.log.Info("lifecycle action", "group", a.group.name, "hook", a.hook.name, "instance", a.inst.id,
		"transition", a.hook.transition, "token", a.token)
	s.publish(typ, []string{a.group.arn}, d)
}

// activityEventLocked announces the end of an instance's launch or
// termination activity. Caller holds s.mu.
func (s *Server) activityEventLocked(g *group, in *instance, detailType, failure string) {
	d := ActivityDetail{StatusCode: "InProgress", AutoScalingGroupName: g.name, ActivityID: in.activity.id,
		Details:   map[string]string{"Availability Zone": in.az, "Subnet ID": s.subnet(in.az)},
		RequestID: in.activity.id, StatusMessage: failure, EndTime: ts(time.Now()), EC2InstanceID: in.id,
		StartTime: ts(in.activity.start), Cause: in.activity.cause}
	switch detailType {
	case DetailLaunchSuccessful, DetailLaunchUnsuccessful:
		d.Origin, d.Destination = "EC2", "AutoScalingGroup"
	default:
		d.Origin, d.Destination = "AutoScalingGroup", "EC2"
	}
	if failure == "" {
		d.Description = in.activity.description
	} else {
		d.StatusCode = "Failed"
	}
	resources := []string{g.arn}
	if in.id != "" {
		resources = append(resources, s.instanceARN(in.id))
	}
	s.log.Info("scaling activity", "group", g.name, "instance", in.id, "event", detailType, "failure", failure)
	s.publish(detailType, resources, d)
}
