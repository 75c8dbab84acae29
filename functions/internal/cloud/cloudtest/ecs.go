package cloudtest

import (
	"context"
	"fmt"
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
		CreatedAt: aws.Time(t.Created), Version: t.Version, Group: aws.String(t.Group),
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

// ListTasks implements cloud.ECSAPI as the ECS API reference describes it:
// filters cluster, containerInstance (an unknown one is
// InvalidParameterException), family, serviceName (an unknown one is
// ServiceNotFoundException), desiredStatus (default RUNNING; outside the
// model's enum a ClientException), startedBy (then the only filter:
// desiredStatus and launchType count as filters too, the stricter
// reading the local world also takes); maxResults 1 to 100 (default 100),
// pages by nextToken.
func (c *ECS) ListTasks(_ context.Context, in *ecs.ListTasksInput, _ ...func(*ecs.Options)) (*ecs.ListTasksOutput, error) {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("ECS:ListTasks"); err != nil {
		return nil, err
	}
	switch in.DesiredStatus {
	case "", ecstypes.DesiredStatusRunning, ecstypes.DesiredStatusPending, ecstypes.DesiredStatusStopped:
	default: // botocore's ecs model: DesiredStatus enum; ECS answers a model violation with ClientException
		return nil, apiErr("ClientException", "1 validation error detected: Value '%s' at 'desiredStatus' failed to satisfy constraint: Member must satisfy enum value set: [RUNNING, PENDING, STOPPED]", in.DesiredStatus)
	}
	if in.StartedBy != nil && (in.Family != nil || in.ContainerInstance != nil || in.ServiceName != nil || in.DesiredStatus != "" || in.LaunchType != "") {
		return nil, apiErr("InvalidParameterException", "startedBy must be the only filter.")
	}
	desired := string(in.DesiredStatus)
	if desired == "" {
		desired = "RUNNING"
	}
	ci := aws.ToString(in.ContainerInstance)
	if ci != "" && w.cis[ci] == nil {
		return nil, apiErr("InvalidParameterException", "Container instance can not be found.")
	}
	if name := aws.ToString(in.ServiceName); name != "" && w.services[name[strings.LastIndexByte(name, '/')+1:]] == nil {
		return nil, apiErr("ServiceNotFoundException", "Service not found.")
	}
	if in.StartedBy != nil {
		return &ecs.ListTasksOutput{}, nil // tether's tasks are not started by anyone the fake knows
	}
	var arns []string
	for _, t := range w.sortedTasksLocked() {
		switch {
		case t.DesiredStatus != desired:
		case ci != "" && t.CI != ci:
		case in.Family != nil && familyOf(t.TaskDef) != aws.ToString(in.Family):
		case in.ServiceName != nil && t.Group != "service:"+aws.ToString(in.ServiceName):
		default:
			arns = append(arns, t.ARN)
		}
	}
	page, next, err := paginate(arns, in.MaxResults, in.NextToken, 100)
	if err != nil {
		return nil, err
	}
	return &ecs.ListTasksOutput{TaskArns: page, NextToken: next}, nil
}

// paginate cuts one page (maxResults 1 to limit, default limit); the token
// is the index of the next item.
func paginate(items []string, maxResults *int32, token *string, limit int32) ([]string, *string, error) {
	n := limit
	if maxResults != nil {
		n = aws.ToInt32(maxResults)
		if n < 1 || n > limit {
			return nil, nil, apiErr("InvalidParameterException", "maxResults must be between 1 and %d.", limit)
		}
	}
	from := 0
	if token != nil {
		if _, err := fmt.Sscanf(aws.ToString(token), "page-%d", &from); err != nil || from < 0 || from > len(items) {
			return nil, nil, apiErr("InvalidParameterException", "Invalid nextToken.")
		}
	}
	to := min(len(items), from+int(n))
	var next *string
	if to < len(items) {
		next = aws.String(fmt.Sprintf("page-%d", to))
	}
	return items[from:to], next, nil
}

func familyOf(taskDefARN string) string {
	s := taskDefARN[strings.LastIndexByte(taskDefARN, '/')+1:]
	family, _, _ := strings.Cut(s, ":")
	return family
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
	if len(in.Tasks) == 0 || len(in.Tasks) > 100 {
		return nil, apiErr("InvalidParameterException", "Tasks must have 1 to 100 elements.")
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
	for _, c := range td.Containers {
		cd := ecstypes.ContainerDefinition{Name: aws.String(c.Name), Essential: c.Essential}
		if c.User != "" {
			cd.User = aws.String(c.User)
		}
		for _, m := range c.Mounts {
			cd.MountPoints = append(cd.MountPoints, ecstypes.MountPoint{SourceVolume: aws.String(m), ContainerPath: aws.String("/data/" + m)})
		}
		out.ContainerDefinitions = append(out.ContainerDefinitions, cd)
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
	// Of the cluster query language, the one expression tether sends:
	// "ec2InstanceId == ID"; any other filter is refused.
	only := ""
	if f := aws.ToString(in.Filter); f != "" {
		id, ok := strings.CutPrefix(f, "ec2InstanceId == ")
		if !ok || id == "" {
			return nil, apiErr("InvalidParameterException", "filter %q not served by the fake", f)
		}
		only = id
	}
	var arns []string
	for arn, ci := range w.cis {
		if ci.Status != "INACTIVE" && (only == "" || ci.EC2ID == only) {
			arns = append(arns, arn)
		}
	}
	sort.Strings(arns)
	page, next, err := paginate(arns, in.MaxResults, in.NextToken, 100)
	if err != nil {
		return nil, err
	}
	return &ecs.ListContainerInstancesOutput{ContainerInstanceArns: page, NextToken: next}, nil
}

// DescribeContainerInstances implements cloud.ECSAPI.
func (c *ECS) DescribeContainerInstances(_ context.Context, in *ecs.DescribeContainerInstancesInput, _ ...func(*ecs.Options)) (*ecs.DescribeContainerInstancesOutput, error) {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("ECS:DescribeContainerInstances"); err != nil {
		return nil, err
	}
	if len(in.ContainerInstances) == 0 || len(in.ContainerInstances) > 100 {
		return nil, apiErr("InvalidParameterException", "containerInstances must have 1 to 100 elements.")
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
	// ECS API reference, StopTask, reason: "Up to 255 characters are allowed".
	if len(aws.ToString(in.Reason)) > 255 {
		return nil, apiErr("InvalidParameterException", "reason can be up to 255 characters.")
	}
	t := w.findTaskLocked(aws.ToString(in.Task))
	if t == nil {
		return nil, apiErr("InvalidParameterException", "The referenced task was not found.")
	}
	w.stopLocked(t, aws.ToString(in.Reason))
	return &ecs.StopTaskOutput{Task: &ecstypes.Task{TaskArn: aws.String(t.ARN)}}, nil
}

// DescribeServices implements cloud.ECSAPI (1 to 10 services; unknown ones
// are failures, as ECS answers them).
func (c *ECS) DescribeServices(_ context.Context, in *ecs.DescribeServicesInput, _ ...func(*ecs.Options)) (*ecs.DescribeServicesOutput, error) {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("ECS:DescribeServices"); err != nil {
		return nil, err
	}
	if len(in.Services) == 0 || len(in.Services) > 10 {
		return nil, apiErr("InvalidParameterException", "services must have 1 to 10 elements.")
	}
	out := &ecs.DescribeServicesOutput{}
	for _, name := range in.Services {
		sv := w.services[name[strings.LastIndexByte(name, '/')+1:]]
		if sv == nil {
			out.Failures = append(out.Failures, ecstypes.Failure{Arn: aws.String(name), Reason: aws.String("MISSING")})
			continue
		}
		out.Services = append(out.Services, ecstypes.Service{ServiceName: aws.String(sv.Name), DesiredCount: sv.Desired,
			DeploymentConfiguration: &ecstypes.DeploymentConfiguration{MinimumHealthyPercent: aws.Int32(sv.MinimumHealthy), MaximumPercent: aws.Int32(sv.MaximumPct)}})
	}
	return out, nil
}
