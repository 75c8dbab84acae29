package demo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// Watcher follows a service's tasks and a named EBS volume through the
// SDK while the walkthrough waits (the seed's own commands go through the
// aws CLI).
type Watcher struct {
	ECS     *ecs.Client
	EC2     *ec2.Client
	Cluster string
}

// NewWatcher makes a Watcher from an SDK configuration (the world's).
func NewWatcher(cfg aws.Config, cluster string) *Watcher {
	return &Watcher{ECS: ecs.NewFromConfig(cfg), EC2: ec2.NewFromConfig(cfg), Cluster: cluster}
}

// Task is one ECS task as the walkthrough cares about it.
type Task struct {
	Arn, ID              string
	LastStatus           string
	DesiredStatus        string
	ContainerInstanceArn string
	InstanceID           string // EC2 instance id ("" before placement)
	StartedAt, StoppedAt time.Time
	StoppedReason        string
}

// Running reports a task that runs and is meant to.
func (t Task) Running() bool { return t.LastStatus == "RUNNING" && t.DesiredStatus == "RUNNING" }

// String is "3f2a9c1e PENDING on i-0abc…".
func (t Task) String() string {
	s := shortID(t.ID) + " " + t.LastStatus
	if t.DesiredStatus != "" && t.DesiredStatus != t.LastStatus && t.DesiredStatus != "RUNNING" {
		s += " (desired " + t.DesiredStatus + ")"
	}
	if t.InstanceID != "" {
		s += " on " + t.InstanceID
	}
	if t.LastStatus == "STOPPED" && t.StoppedReason != "" {
		s += " (" + truncate(t.StoppedReason, 300) + ")"
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Volume is one EBS volume as the walkthrough cares about it.
type Volume struct {
	ID, State, AZ, Type string
	SizeGiB             int32
	InstanceID          string // attached to ("" when not)
	AttachState         string // attaching, attached, detaching ("" when not)
}

// String is "vol-0abc in-use, attached to i-0def", "vol-0abc in-use,
// detaching from i-0def" or "vol-0abc available".
func (v Volume) String() string {
	if v.InstanceID == "" {
		return v.ID + " " + v.State
	}
	prep := "to"
	if v.AttachState == "detaching" || v.AttachState == "detached" {
		prep = "from"
	}
	return fmt.Sprintf("%s %s, %s %s %s", v.ID, v.State, v.AttachState, prep, v.InstanceID)
}

// ServiceTasks returns the service's tasks, live and stopped, oldest first.
func (w *Watcher) ServiceTasks(ctx context.Context, service string) ([]Task, error) {
	var arns []string
	for _, desired := range []ecstypes.DesiredStatus{ecstypes.DesiredStatusRunning, ecstypes.DesiredStatusStopped} {
		p := ecs.NewListTasksPaginator(w.ECS, &ecs.ListTasksInput{Cluster: &w.Cluster, ServiceName: &service, DesiredStatus: desired})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("list tasks of %s: %w", service, err)
			}
			arns = append(arns, page.TaskArns...)
		}
	}
	return w.describeTasks(ctx, arns)
}

func (w *Watcher) describeTasks(ctx context.Context, arns []string) ([]Task, error) {
	var tasks []Task
	instances := map[string]string{}
	for chunk := range slices.Chunk(arns, 100) {
		out, err := w.ECS.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: &w.Cluster, Tasks: chunk})
		if err != nil {
			return nil, fmt.Errorf("describe tasks: %w", err)
		}
		for _, t := range out.Tasks {
			task := Task{Arn: aws.ToString(t.TaskArn), LastStatus: aws.ToString(t.LastStatus), DesiredStatus: aws.ToString(t.DesiredStatus),
				ContainerInstanceArn: aws.ToString(t.ContainerInstanceArn), StoppedReason: aws.ToString(t.StoppedReason),
				StartedAt: aws.ToTime(t.StartedAt), StoppedAt: aws.ToTime(t.StoppedAt)}
			task.ID = task.Arn[strings.LastIndex(task.Arn, "/")+1:]
			if task.ContainerInstanceArn != "" {
				instances[task.ContainerInstanceArn] = ""
			}
			tasks = append(tasks, task)
		}
	}
	if len(instances) > 0 {
		out, err := w.ECS.DescribeContainerInstances(ctx, &ecs.DescribeContainerInstancesInput{Cluster: &w.Cluster,
			ContainerInstances: slices.Collect(func(yield func(string) bool) {
				for arn := range instances {
					if !yield(arn) {
						return
					}
				}
			})})
		if err != nil {
			return nil, fmt.Errorf("describe container instances: %w", err)
		}
		for _, ci := range out.ContainerInstances {
			instances[aws.ToString(ci.ContainerInstanceArn)] = aws.ToString(ci.Ec2InstanceId)
		}
		for i := range tasks {
			tasks[i].InstanceID = instances[tasks[i].ContainerInstanceArn]
		}
	}
	slices.SortStableFunc(tasks, func(a, b Task) int { return a.StartedAt.Compare(b.StartedAt) })
	return tasks, nil
}

// VolumeNamed finds the volume tagged Name=name, as the seed's cleanup
// does; false when there is none. Two volumes with one name is an error:
// tether must never make a second.
func (w *Watcher) VolumeNamed(ctx context.Context, name string) (Volume, bool, error) {
	out, err := w.EC2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{{Name: aws.String("tag:Name"), Values: []string{name}}}})
	if err != nil {
		return Volume{}, false, fmt.Errorf("describe volumes Name=%s: %w", name, err)
	}
	var live []ec2types.Volume
	for _, v := range out.Volumes {
		if v.State != ec2types.VolumeStateDeleted {
			live = append(live, v)
		}
	}
	switch len(live) {
	case 0:
		return Volume{}, false, nil
	case 1:
	default:
		ids := make([]string, len(live))
		for i, v := range live {
			ids[i] = aws.ToString(v.VolumeId)
		}
		return Volume{}, false, fmt.Errorf("%w: Name=%s is on %v", ErrTwoVolumes, name, ids)
	}
	v := live[0]
	vol := Volume{ID: aws.ToString(v.VolumeId), State: string(v.State), AZ: aws.ToString(v.AvailabilityZone),
		Type: string(v.VolumeType), SizeGiB: aws.ToInt32(v.Size)}
	for _, a := range v.Attachments {
		vol.InstanceID, vol.AttachState = aws.ToString(a.InstanceId), string(a.State)
	}
	return vol, true, nil
}

// shortID is the first 8 characters of a task id, as the ECS console
// shows them.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// ErrTwoVolumes: more than one live volume carries the walkthrough's Name.
var ErrTwoVolumes = errors.New("more than one volume with one name")

// TaskCheck is a Check that waits for a task of service satisfying want,
// stored in *found. It shows the service's newest tasks and the volume
// named volume as they change.
func (w *Watcher) TaskCheck(service, volume string, want func(Task) bool, found *Task) Check {
	return func(ctx context.Context) (bool, string, error) {
		tasks, err := w.ServiceTasks(ctx, service)
		if err != nil {
			return false, "", err
		}
		vol, ok, err := w.VolumeNamed(ctx, volume)
		if err != nil {
			return false, "", err
		}
		shown := tasks[max(0, len(tasks)-2):]
		parts := make([]string, len(shown))
		for i, t := range shown {
			parts[i] = t.String()
		}
		state := "task " + strings.Join(parts, ", ")
		if len(shown) == 0 {
			state = "no task yet"
		}
		if ok {
			state += "; " + volume + " " + vol.String()
		} else {
			state += "; no volume " + volume + " yet"
		}
		for i := len(tasks) - 1; i >= 0; i-- {
			if want(tasks[i]) {
				*found = tasks[i]
				return true, state, nil
			}
		}
		return false, state, nil
	}
}

// VolumeCheck is a Check that waits for the volume named name to satisfy
// want (ok false: there is none), stored in *found.
func (w *Watcher) VolumeCheck(name string, want func(v Volume, ok bool) bool, found *Volume) Check {
	return func(ctx context.Context) (bool, string, error) {
		vol, ok, err := w.VolumeNamed(ctx, name)
		if err != nil {
			return false, "", err
		}
		state := "no volume named " + name
		if ok {
			state = name + " " + vol.String()
		}
		*found = vol
		return want(vol, ok), state, nil
	}
}
