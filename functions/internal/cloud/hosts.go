package cloud

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/smithy-go"
)

// Hosts that go away (issue 13): the calls tether makes about instances
// themselves rather than their volumes. They are a seam of their own so
// that only the function that acts on hosts (functions/hosts) holds them:
// drain a container instance, read EC2's status checks, stop a hung
// instance, heartbeat and complete an Auto Scaling lifecycle action.

// HostsEC2API is the part of *ec2.Client the host rules use.
type HostsEC2API interface {
	DescribeInstanceStatus(ctx context.Context, params *ec2.DescribeInstanceStatusInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstanceStatusOutput, error)
	StopInstances(ctx context.Context, params *ec2.StopInstancesInput, optFns ...func(*ec2.Options)) (*ec2.StopInstancesOutput, error)
}

// HostsECSAPI is the part of *ecs.Client the host rules use.
type HostsECSAPI interface {
	UpdateContainerInstancesState(ctx context.Context, params *ecs.UpdateContainerInstancesStateInput, optFns ...func(*ecs.Options)) (*ecs.UpdateContainerInstancesStateOutput, error)
}

// AutoScalingAPI is the part of *autoscaling.Client the termination hold uses.
type AutoScalingAPI interface {
	RecordLifecycleActionHeartbeat(ctx context.Context, params *autoscaling.RecordLifecycleActionHeartbeatInput, optFns ...func(*autoscaling.Options)) (*autoscaling.RecordLifecycleActionHeartbeatOutput, error)
	CompleteLifecycleAction(ctx context.Context, params *autoscaling.CompleteLifecycleActionInput, optFns ...func(*autoscaling.Options)) (*autoscaling.CompleteLifecycleActionOutput, error)
}

var (
	_ HostsEC2API    = (*ec2.Client)(nil)
	_ HostsECSAPI    = (*ecs.Client)(nil)
	_ AutoScalingAPI = (*autoscaling.Client)(nil)
)

// InstanceHealth is EC2's word on an instance's status checks
// (DescribeInstanceStatus; EC2 user guide, "Status checks for your
// instances": EC2 checks every running instance every minute).
type InstanceHealth struct {
	ID    string
	State string // EC2's instance state (running, stopping, ...)
	// Impaired: the instance status check fails (the guest does not
	// answer: a hung kernel, exhausted memory); ImpairedSince when it began
	// failing, zero when EC2 did not say.
	Impaired      bool
	ImpairedSince time.Time
	// SystemImpaired: the system status check fails (the AWS side: power,
	// network, the physical host).
	SystemImpaired      bool
	SystemImpairedSince time.Time
	// Summary is the instance check's summary: ok, impaired,
	// initializing, insufficient-data, not-applicable (not running).
	Summary string
}

// ImpairedFor is how long the instance has failed a status check at now
// (the longer of the two; zero when it passes them).
func (h InstanceHealth) ImpairedFor(now time.Time) time.Duration {
	var d time.Duration
	if h.Impaired && !h.ImpairedSince.IsZero() {
		d = now.Sub(h.ImpairedSince)
	}
	if h.SystemImpaired && !h.SystemImpairedSince.IsZero() {
		d = max(d, now.Sub(h.SystemImpairedSince))
	}
	return max(d, 0)
}

// LifecycleAction names one Auto Scaling lifecycle action (a hook's hold
// on one instance).
type LifecycleAction struct {
	Group      string
	Hook       string
	InstanceID string
	Token      string
}

// Lifecycle action results.
const (
	LifecycleContinue = "CONTINUE"
	LifecycleAbandon  = "ABANDON"
)

// Hosts implements the host calls over the narrow SDK interfaces, with the
// seam's retryers and error classes (ErrNotFound, ErrThrottled, ...).
type Hosts struct {
	ec2  HostsEC2API
	ecs  HostsECSAPI
	asg  AutoScalingAPI
	opts Options
}

// NewHosts builds the SDK clients from cfg (AWS_ENDPOINT_URL included, as
// for New).
func NewHosts(cfg aws.Config, o Options) *Hosts {
	o = o.withDefaults()
	return NewHostsWithClients(
		ec2.NewFromConfig(cfg, func(eo *ec2.Options) { eo.Retryer = newRetryer(o, false) }),
		ecs.NewFromConfig(cfg, func(eo *ecs.Options) { eo.Retryer = newRetryer(o, false) }),
		autoscaling.NewFromConfig(cfg, func(ao *autoscaling.Options) { ao.Retryer = newRetryer(o, false) }),
		o)
}

// NewHostsWithClients wraps given clients (real ones, or fakes in tests).
func NewHostsWithClients(e HostsEC2API, c HostsECSAPI, a AutoScalingAPI, o Options) *Hosts {
	return &Hosts{ec2: e, ecs: c, asg: a, opts: o.withDefaults()}
}

// InstanceHealth asks EC2 for the instance's status checks, whatever its
// state (IncludeAllInstances). ErrNotFound when EC2 does not know it.
func (h *Hosts) InstanceHealth(ctx context.Context, id string) (InstanceHealth, error) {
	out, err := h.ec2.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{
		InstanceIds: []string{id}, IncludeAllInstances: aws.Bool(true),
	})
	if err != nil {
		return InstanceHealth{}, classify(err, fmt.Sprintf("ec2 DescribeInstanceStatus %q", id))
	}
	for _, st := range out.InstanceStatuses {
		if aws.ToString(st.InstanceId) != id {
			continue
		}
		in := InstanceHealth{ID: id}
		if st.InstanceState != nil {
			in.State = string(st.InstanceState.Name)
		}
		if st.InstanceStatus != nil {
			in.Summary = string(st.InstanceStatus.Status)
			in.Impaired, in.ImpairedSince = failing(st.InstanceStatus)
		}
		if st.SystemStatus != nil {
			in.SystemImpaired, in.SystemImpairedSince = failing(st.SystemStatus)
		}
		return in, nil
	}
	return InstanceHealth{}, fmt.Errorf("%w: instance status of %q", ErrNotFound, id)
}

// failing reads a status summary: impaired, and since when its failed
// detail says (the earliest).
func failing(s *ec2types.InstanceStatusSummary) (bool, time.Time) {
	if s.Status != ec2types.SummaryStatusImpaired {
		return false, time.Time{}
	}
	var since time.Time
	for _, d := range s.Details {
		if d.Status == ec2types.StatusTypeFailed && d.ImpairedSince != nil && (since.IsZero() || d.ImpairedSince.Before(since)) {
			since = *d.ImpairedSince
		}
	}
	return true, since
}

// StopInstance stops the instance with Force (EC2 API reference,
// StopInstances: "forces the instances to stop. The instances do not have
// an opportunity to flush file system caches": the fence of a host that
// no longer answers). An instance already stopping, stopped or gone is
// ErrIncorrectState or ErrNotFound.
func (h *Hosts) StopInstance(ctx context.Context, id string) error {
	_, err := h.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{id}, Force: aws.Bool(true)})
	return classify(err, fmt.Sprintf("ec2 StopInstances %q (force)", id))
}

// DrainContainerInstance sets a container instance DRAINING (ECS then
// stops its service tasks and places replacements elsewhere). ErrNotFound
// when ECS does not know it in cluster (deregistered).
func (h *Hosts) DrainContainerInstance(ctx context.Context, cluster, arn string) error {
	out, err := h.ecs.UpdateContainerInstancesState(ctx, &ecs.UpdateContainerInstancesStateInput{
		Cluster: aws.String(cluster), ContainerInstances: []string{arn}, Status: "DRAINING",
	})
	if err != nil {
		return classify(err, fmt.Sprintf("ecs UpdateContainerInstancesState %q DRAINING", arn))
	}
	for _, f := range out.Failures {
		if aws.ToString(f.Arn) == arn || len(out.ContainerInstances) == 0 {
			return fmt.Errorf("%w: ecs UpdateContainerInstancesState %q: %s %s", ErrNotFound, arn, aws.ToString(f.Reason), aws.ToString(f.Detail))
		}
	}
	return nil
}

// RecordHeartbeat restarts the lifecycle action's heartbeat timeout.
// ErrNotFound: the action is no longer active (completed, timed out).
func (h *Hosts) RecordHeartbeat(ctx context.Context, a LifecycleAction) error {
	_, err := h.asg.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{
		AutoScalingGroupName: aws.String(a.Group), LifecycleHookName: aws.String(a.Hook),
		InstanceId: aws.String(a.InstanceID), LifecycleActionToken: optional(a.Token),
	})
	return classifyLifecycle(err, fmt.Sprintf("autoscaling RecordLifecycleActionHeartbeat %q/%q %q", a.Group, a.Hook, a.InstanceID))
}

// CompleteLifecycleAction ends the action with result (LifecycleContinue
// or LifecycleAbandon). ErrNotFound: the action is no longer active
// (another pass completed it, or it timed out): nothing left to do.
func (h *Hosts) CompleteLifecycleAction(ctx context.Context, a LifecycleAction, result string) error {
	_, err := h.asg.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String(a.Group), LifecycleHookName: aws.String(a.Hook),
		InstanceId: aws.String(a.InstanceID), LifecycleActionToken: optional(a.Token),
		LifecycleActionResult: aws.String(result),
	})
	return classifyLifecycle(err, fmt.Sprintf("autoscaling CompleteLifecycleAction %q/%q %q %s", a.Group, a.Hook, a.InstanceID, result))
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

// Auto Scaling answers a heartbeat or completion of an action that is no
// longer active with ValidationError "No active Lifecycle Action found
// with token ..." (or "... with instance ID ..."): the action is over.
const (
	codeValidation    = "ValidationError"
	noActiveLifecycle = "No active Lifecycle Action found"
)

func isNoActiveLifecycleAction(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == codeValidation && strings.Contains(apiErr.ErrorMessage(), noActiveLifecycle)
}

func classifyLifecycle(err error, what string) error {
	if err != nil && isNoActiveLifecycleAction(err) {
		return fmt.Errorf("%w: %s: %w", ErrNotFound, what, err)
	}
	return classify(err, what)
}
