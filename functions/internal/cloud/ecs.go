package cloud

import (
	"context"
	"fmt"
	"sort"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// maxTaskDefs bounds the process-lifetime task definition cache.
const maxTaskDefs = 1024

// MaxStopReason is the longest reason ECS StopTask accepts.
const MaxStopReason = 255

// TaskDefinition implements Cloud. Revisions are immutable, so an answer is
// kept for the life of the process.
func (a *AWS) TaskDefinition(ctx context.Context, arn string) (TaskDefinition, error) {
	a.taskDefsMu.Lock()
	td, ok := a.taskDefs[arn]
	a.taskDefsMu.Unlock()
	if ok {
		return td, nil
	}
	out, err := a.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String(arn)})
	if err != nil {
		if apiCode(err) == codeECSClient {
			return TaskDefinition{}, fmt.Errorf("%w: ecs DescribeTaskDefinition %q: %w", ErrNotFound, arn, err)
		}
		return TaskDefinition{}, classify(err, fmt.Sprintf("ecs DescribeTaskDefinition %q", arn))
	}
	td = TaskDefinition{ARN: arn}
	if out.TaskDefinition != nil {
		for _, v := range out.TaskDefinition.Volumes {
			d := v.DockerVolumeConfiguration
			if d == nil {
				continue
			}
			td.Volumes = append(td.Volumes, DockerVolume{
				Name: aws.ToString(v.Name), Driver: aws.ToString(d.Driver), Scope: string(d.Scope),
				Autoprovision: aws.ToBool(d.Autoprovision), DriverOpts: d.DriverOpts,
			})
		}
	}
	a.taskDefsMu.Lock()
	if len(a.taskDefs) >= maxTaskDefs {
		a.taskDefs = map[string]TaskDefinition{}
	}
	a.taskDefs[arn] = td
	a.taskDefsMu.Unlock()
	return td, nil
}

func (a *AWS) listTasks(ctx context.Context, in *ecs.ListTasksInput) ([]string, error) {
	var arns []string
	for {
		out, err := a.ecs.ListTasks(ctx, in)
		if err != nil {
			return nil, classify(err, fmt.Sprintf("ecs ListTasks in %q", aws.ToString(in.Cluster)))
		}
		arns = append(arns, out.TaskArns...)
		if aws.ToString(out.NextToken) == "" {
			return arns, nil
		}
		in.NextToken = out.NextToken
	}
}

// LiveTasks implements Cloud.
func (a *AWS) LiveTasks(ctx context.Context, cluster string) ([]Task, error) {
	s := a.sessionOf(ctx)
	if s != nil {
		s.mu.Lock()
		ts, ok := s.live[cluster]
		s.mu.Unlock()
		if ok {
			return ts, nil
		}
		v, err, _ := s.flight.Do("live/"+cluster, func() (any, error) { return a.liveTasks(ctx, cluster) })
		if err != nil {
			return nil, err
		}
		ts = v.([]Task)
		s.mu.Lock()
		s.live[cluster] = ts
		s.mu.Unlock()
		return ts, nil
	}
	return a.liveTasks(ctx, cluster)
}

func (a *AWS) liveTasks(ctx context.Context, cluster string) ([]Task, error) {
	arns, err := a.listTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String(cluster), DesiredStatus: ecstypes.DesiredStatusRunning, MaxResults: aws.Int32(100)})
	if err != nil {
		return nil, err
	}
	return a.describeTasks(ctx, cluster, arns)
}

// StoppingTasks implements Cloud.
func (a *AWS) StoppingTasks(ctx context.Context, cluster, containerInstanceARN string) ([]Task, error) {
	s := a.sessionOf(ctx)
	k := cluster + "/" + containerInstanceARN
	if s != nil {
		s.mu.Lock()
		ts, ok := s.stopping[k]
		s.mu.Unlock()
		if ok {
			return ts, nil
		}
	}
	arns, err := a.listTasks(ctx, &ecs.ListTasksInput{
		Cluster: aws.String(cluster), ContainerInstance: aws.String(containerInstanceARN),
		DesiredStatus: ecstypes.DesiredStatusStopped, MaxResults: aws.Int32(100),
	})
	if apiCode(err) == codeECSInvalidParameter {
		// ECS no longer knows the container instance (deregistered).
		return nil, fmt.Errorf("%w: container instance %q: %w", ErrNotFound, containerInstanceARN, err)
	}
	if err != nil {
		return nil, err
	}
	all, err := a.describeTasks(ctx, cluster, arns)
	if err != nil {
		return nil, err
	}
	var ts []Task
	for _, t := range all {
		if t.LastStatus != "STOPPED" {
			ts = append(ts, t)
		}
	}
	if s != nil {
		s.mu.Lock()
		s.stopping[k] = ts
		s.mu.Unlock()
	}
	return ts, nil
}

// Tasks implements Cloud. Always asks ECS: callers use it for the tasks an
// event named, whose state is what they want fresh.
func (a *AWS) Tasks(ctx context.Context, cluster string, ids []string) ([]Task, error) {
	return a.describeTasks(ctx, cluster, ids)
}

func (a *AWS) describeTasks(ctx context.Context, cluster string, ids []string) ([]Task, error) {
	var out []Task
	for len(ids) > 0 {
		n := min(len(ids), 100)
		resp, err := a.ecs.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(cluster), Tasks: ids[:n]})
		if err != nil {
			return nil, classify(err, fmt.Sprintf("ecs DescribeTasks in %q", cluster))
		}
		for _, t := range resp.Tasks {
			out = append(out, fromECSTask(t))
		}
		ids = ids[n:]
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ARN < out[j].ARN })
	return out, nil
}

func fromECSTask(t ecstypes.Task) Task {
	return Task{
		ARN: aws.ToString(t.TaskArn), TaskDefinitionARN: aws.ToString(t.TaskDefinitionArn),
		ContainerInstanceARN: aws.ToString(t.ContainerInstanceArn), AZ: aws.ToString(t.AvailabilityZone),
		LastStatus: aws.ToString(t.LastStatus), DesiredStatus: aws.ToString(t.DesiredStatus),
		CreatedAt: aws.ToTime(t.CreatedAt), StartedAt: aws.ToTime(t.StartedAt), StoppedAt: aws.ToTime(t.StoppedAt),
		Version: t.Version,
	}
}

// ContainerInstance implements Cloud.
func (a *AWS) ContainerInstance(ctx context.Context, cluster, arn string) (ContainerInstance, error) {
	s := a.sessionOf(ctx)
	if s != nil {
		s.mu.Lock()
		ci, ok := s.cis[arn]
		s.mu.Unlock()
		if ok {
			return ci, nil
		}
	}
	cis, err := a.describeContainerInstances(ctx, cluster, []string{arn})
	if err != nil {
		return ContainerInstance{}, err
	}
	if len(cis) == 0 {
		return ContainerInstance{}, fmt.Errorf("%w: container instance %q in %q", ErrNotFound, arn, cluster)
	}
	return cis[0], nil
}

// ContainerInstances implements Cloud.
func (a *AWS) ContainerInstances(ctx context.Context, cluster string) ([]ContainerInstance, error) {
	s := a.sessionOf(ctx)
	if s != nil {
		s.mu.Lock()
		cis, ok := s.cisListed[cluster]
		s.mu.Unlock()
		if ok {
			return cis, nil
		}
	}
	in := &ecs.ListContainerInstancesInput{Cluster: aws.String(cluster), MaxResults: aws.Int32(100)}
	var arns []string
	for {
		out, err := a.ecs.ListContainerInstances(ctx, in)
		if err != nil {
			return nil, classify(err, fmt.Sprintf("ecs ListContainerInstances in %q", cluster))
		}
		arns = append(arns, out.ContainerInstanceArns...)
		if aws.ToString(out.NextToken) == "" {
			break
		}
		in.NextToken = out.NextToken
	}
	cis, err := a.describeContainerInstances(ctx, cluster, arns)
	if err != nil {
		return nil, err
	}
	if s != nil {
		s.mu.Lock()
		s.cisListed[cluster] = cis
		s.mu.Unlock()
	}
	return cis, nil
}

func (a *AWS) describeContainerInstances(ctx context.Context, cluster string, arns []string) ([]ContainerInstance, error) {
	var out []ContainerInstance
	for len(arns) > 0 {
		n := min(len(arns), 100)
		resp, err := a.ecs.DescribeContainerInstances(ctx, &ecs.DescribeContainerInstancesInput{Cluster: aws.String(cluster), ContainerInstances: arns[:n]})
		if err != nil {
			return nil, classify(err, fmt.Sprintf("ecs DescribeContainerInstances in %q", cluster))
		}
		for _, c := range resp.ContainerInstances {
			ci := ContainerInstance{
				ARN: aws.ToString(c.ContainerInstanceArn), EC2InstanceID: aws.ToString(c.Ec2InstanceId),
				Status: aws.ToString(c.Status), AgentConnected: c.AgentConnected,
			}
			for _, at := range c.Attributes {
				if aws.ToString(at.Name) == "ecs.availability-zone" {
					ci.AZ = aws.ToString(at.Value)
				}
			}
			out = append(out, ci)
		}
		arns = arns[n:]
	}
	if s := a.sessionOf(ctx); s != nil {
		s.mu.Lock()
		for _, ci := range out {
			s.cis[ci.ARN] = ci
		}
		s.mu.Unlock()
	}
	return out, nil
}

// StopTask implements Cloud; the reason is cut to what ECS accepts.
func (a *AWS) StopTask(ctx context.Context, cluster, taskARN, reason string) error {
	_, err := a.ecs.StopTask(ctx, &ecs.StopTaskInput{
		Cluster: aws.String(cluster), Task: aws.String(taskARN), Reason: aws.String(TruncateReason(reason)),
	}, ecsRetryer(a.retry.stopTask))
	if s := a.sessionOf(ctx); s != nil {
		s.mu.Lock()
		delete(s.live, cluster)
		s.stopping = map[string][]Task{}
		s.mu.Unlock()
	}
	return classify(err, fmt.Sprintf("ecs StopTask %q", taskARN))
}

// TruncateReason cuts s to MaxStopReason bytes on a rune boundary.
func TruncateReason(s string) string {
	if len(s) <= MaxStopReason {
		return s
	}
	cut := MaxStopReason
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
