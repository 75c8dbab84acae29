package cloudtest

import (
	"context"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// ECS is the fake ECS client (one cluster; its name is not checked).
type ECS struct{ w *World }

// ECS returns the world's ECS client.
func (w *World) ECS() *ECS { return &ECS{w} }

func (t *Task) toECS() ecstypes.Task {
	out := ecstypes.Task{
		TaskArn: aws.String(t.ARN), TaskDefinitionArn: aws.String(t.TaskDef), ContainerInstanceArn: aws.String(t.CI),
		AvailabilityZone: aws.String(t.AZ), LastStatus: aws.String(t.LastStatus), DesiredStatus: aws.String(t.DesiredStatus),
		CreatedAt: aws.Time(t.Created), Version: t.Version,
	}
	if !t.Started.IsZero() {
		out.StartedAt = aws.Time(t.Started)
	}
	if !t.Stopped.IsZero() {
		out.StoppedAt = aws.Time(t.Stopped)
	}
	if t.StoppedReason != "" {
		out.StoppedReason = aws.String(t.StoppedReason)
	}
	return out
}

// ListTasks implements cloud.ECSAPI (filters: containerInstance, desiredStatus).
func (c *ECS) ListTasks(_ context.Context, in *ecs.ListTasksInput, _ ...func(*ecs.Options)) (*ecs.ListTasksOutput, error) {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("ECS:ListTasks"); err != nil {
		return nil, err
	}
	desired := string(in.DesiredStatus)
	if desired == "" {
		desired = "RUNNING"
	}
	out := &ecs.ListTasksOutput{}
	for _, t := range w.sortedTasksLocked() {
		if t.DesiredStatus != desired {
			continue
		}
		if ci := aws.ToString(in.ContainerInstance); ci != "" && t.CI != ci {
			continue
		}
		out.TaskArns = append(out.TaskArns, t.ARN)
	}
	return out, nil
}

func (w *World) sortedTasksLocked() []*Task {
	out := make([]*Task, 0, len(w.tasks))
	for _, t := range w.tasks {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ARN < out[j].ARN })
	return out
}

func (w *World) findTaskLocked(ref string) *Task {
	if t, ok := w.tasks[ref]; ok {
		return t
	}
	for arn, t := range w.tasks {
		if strings.HasSuffix(arn, "/"+ref) {
			return t
		}
	}
	return nil
}

// DescribeTasks implements cloud.ECSAPI (ARNs or ids; unknown ones are failures).
func (c *ECS) DescribeTasks(_ context.Context, in *ecs.DescribeTasksInput, _ ...func(*ecs.Options)) (*ecs.DescribeTasksOutput, error) {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("ECS:DescribeTasks"); err != nil {
		return nil, err
	}
	out := &ecs.DescribeTasksOutput{}
	for _, ref := range in.Tasks {
		if t := w.findTaskLocked(ref); t != nil {
			out.Tasks = append(out.Tasks, t.toECS())
		} else {
			out.Failures = append(out.Failures, ecstypes.Failure{Arn: aws.String(ref), Reason: aws.String("MISSING")})
		}
	}
	return out, nil
}

// DescribeTaskDefinition implements cloud.ECSAPI.
func (c *ECS) DescribeTaskDefinition(_ context.Context, in *ecs.DescribeTaskDefinitionInput, _ ...func(*ecs.Options)) (*ecs.DescribeTaskDefinitionOutput, error) {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("ECS:DescribeTaskDefinition"); err != nil {
		return nil, err
	}
	td, ok := w.taskDefs[aws.ToString(in.TaskDefinition)]
	if !ok {
		return nil, apiErr("ClientException", "Unable to describe task definition.")
	}
	out := &ecstypes.TaskDefinition{TaskDefinitionArn: aws.String(td.ARN)}
	for _, v := range td.Volumes {
		out.Volumes = append(out.Volumes, ecstypes.Volume{Name: aws.String(v.Name), DockerVolumeConfiguration: &ecstypes.DockerVolumeConfiguration{
			Driver: aws.String(v.Driver), Scope: ecstypes.Scope(v.Scope), Autoprovision: aws.Bool(v.Autoprovision), DriverOpts: v.DriverOpts,
		}})
	}
	return &ecs.DescribeTaskDefinitionOutput{TaskDefinition: out}, nil
}

// ListContainerInstances implements cloud.ECSAPI (all but INACTIVE, as ECS).
func (c *ECS) ListContainerInstances(_ context.Context, in *ecs.ListContainerInstancesInput, _ ...func(*ecs.Options)) (*ecs.ListContainerInstancesOutput, error) {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("ECS:ListContainerInstances"); err != nil {
		return nil, err
	}
	out := &ecs.ListContainerInstancesOutput{}
	for arn, ci := range w.cis {
		if ci.Status != "INACTIVE" {
			out.ContainerInstanceArns = append(out.ContainerInstanceArns, arn)
		}
	}
	sort.Strings(out.ContainerInstanceArns)
	return out, nil
}

// DescribeContainerInstances implements cloud.ECSAPI.
func (c *ECS) DescribeContainerInstances(_ context.Context, in *ecs.DescribeContainerInstancesInput, _ ...func(*ecs.Options)) (*ecs.DescribeContainerInstancesOutput, error) {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("ECS:DescribeContainerInstances"); err != nil {
		return nil, err
	}
	out := &ecs.DescribeContainerInstancesOutput{}
	for _, arn := range in.ContainerInstances {
		ci, ok := w.cis[arn]
		if !ok {
			out.Failures = append(out.Failures, ecstypes.Failure{Arn: aws.String(arn), Reason: aws.String("MISSING")})
			continue
		}
		inst := w.instances[ci.EC2ID]
		out.ContainerInstances = append(out.ContainerInstances, ecstypes.ContainerInstance{
			ContainerInstanceArn: aws.String(arn), Ec2InstanceId: aws.String(ci.EC2ID), Status: aws.String(ci.Status),
			AgentConnected: ci.AgentConnected,
			Attributes:     []ecstypes.Attribute{{Name: aws.String("ecs.availability-zone"), Value: aws.String(inst.AZ)}},
		})
	}
	return out, nil
}

// StopTask implements cloud.ECSAPI: desired status STOPPED with the
// reason; the agent stops the containers when the driver says so.
func (c *ECS) StopTask(_ context.Context, in *ecs.StopTaskInput, _ ...func(*ecs.Options)) (*ecs.StopTaskOutput, error) {
	w := c.w
	w.wait("ECS:StopTask", "")
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("ECS:StopTask"); err != nil {
		return nil, err
	}
	t := w.findTaskLocked(aws.ToString(in.Task))
	if t == nil {
		return nil, apiErr("InvalidParameterException", "The referenced task was not found.")
	}
	if len(aws.ToString(in.Reason)) > 255 {
		return nil, apiErr("InvalidParameterException", "reason longer than 255 characters")
	}
	w.stopLocked(t, aws.ToString(in.Reason))
	return &ecs.StopTaskOutput{Task: &ecstypes.Task{TaskArn: aws.String(t.ARN)}}, nil
}
