package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"golang.org/x/time/rate"

	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/world"
)

// Fleet drives the benchmark's services on a running world through the
// real ECS and EC2 clients, as an operator with the aws CLI would. Its
// requests go through Meter, so the calls counted for tether leave them
// out, and are paced below the world's request-rate limits.
type Fleet struct {
	W     *world.World
	ECS   *ecs.Client
	EC2   *ec2.Client
	Meter *Meter
	Log   *slog.Logger
	pace  map[string]*rate.Limiter // by ECS action
}

// pacedActions are the ECS actions the bench calls in bulk while setting
// up: it paces them below their buckets (ecssim.DefaultLimits:
// RegisterTaskDefinition 20 refilled at 1/s, so 200 task definitions take
// over three minutes), rather than raising the world's limits.
var pacedActions = []string{"RegisterTaskDefinition", "CreateService", "RunTask", "UpdateContainerInstancesState"}

// paceShare is the part of a bucket's burst and refill the bench's pacer
// uses: the bench's limiter and the world's bucket start full at slightly
// different moments, so the bench keeps below the bucket, not at it.
const paceShare = 0.9

// NewFleet makes the clients for w: metered, paced, and retrying a
// throttled or failed call up to benchAttempts times with backoff and no
// client-side retry quota (the bench's setup must not fail on a throttle
// tether's functions caused in the same account).
func NewFleet(w *world.World, log *slog.Logger) *Fleet {
	m := NewMeter(nil)
	cfg := w.AWSConfig()
	cfg.HTTPClient = m.Client()
	cfg.Retryer = func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts, o.MaxBackoff, o.RateLimiter = benchAttempts, 5*time.Second, ratelimit.None
		})
	}
	f := &Fleet{W: w, ECS: ecs.NewFromConfig(cfg), EC2: ec2.NewFromConfig(cfg), Meter: m, Log: log, pace: map[string]*rate.Limiter{}}
	limits := w.ECS().Gate().Limits()
	for _, a := range pacedActions {
		if b, ok := limits[a]; ok && b.Refill > 0 {
			f.pace[a] = rate.NewLimiter(rate.Limit(b.Refill*paceShare), max(1, int(b.Size*paceShare)))
		}
	}
	return f
}

// benchAttempts bounds the attempts of each of the bench's own calls.
const benchAttempts = 10

// wait takes a token of action's pacer, if it has one.
func (f *Fleet) wait(ctx context.Context, action string) error {
	if l := f.pace[action]; l != nil {
		return l.Wait(ctx)
	}
	return nil
}

// Service is one benchmark service: one task with its own shared tether
// volume, moved by draining its instance.
type Service struct {
	Name       string
	VolumeName string
	VolumeID   string
	Task       string // the running task's ARN
	Instance   string // its EC2 instance
}

// containerCommand keeps the container up and lets it stop at once on
// SIGTERM (sh as PID 1 ignores signals it does not trap), so the old
// task's stop costs no stop timeout.
const containerCommand = "trap 'exit 0' TERM; sleep 2147483647 & wait"

// taskCPU is each task's CPU units: with ECS's default 2048 registered per
// instance, at most 20 of them fit on one instance, so placement cannot
// pile more volumes on an instance than the run means to.
const taskCPU = 100

// CreateServices registers n task definitions, each with its own shared
// tether volume, and one service of one task each (maximumPercent 100,
// minimumHealthyPercent 0, as the seed's MySQL service: the old task
// stops before its replacement starts). It creates the services batch at
// a time and waits, at most wait per batch, until each batch runs, while
// the next batch's task definitions are registered at the pace ECS
// allows: the steady state before the drain is set up, not measured.
func (f *Fleet) CreateServices(ctx context.Context, prefix string, n, batch int, wait time.Duration) ([]*Service, error) {
	svcs := make([]*Service, n)
	for i := range svcs {
		svcs[i] = &Service{Name: fmt.Sprintf("%s-%03d", prefix, i), VolumeName: fmt.Sprintf("%s-vol-%03d", prefix, i)}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type registered struct {
		arn string
		err error
	}
	defs := make(chan registered, n)
	go func() {
		defer close(defs)
		for _, s := range svcs {
			arn, err := f.registerTaskDefinition(ctx, s, map[string]string{"size": "1", "volumetype": "gp3"})
			defs <- registered{arn, err}
			if err != nil {
				return
			}
		}
	}()
	for chunk := range slices.Chunk(svcs, max(batch, 1)) {
		for _, s := range chunk {
			d, ok := <-defs
			if !ok {
				return nil, ctx.Err()
			}
			if d.err != nil {
				return nil, d.err
			}
			if err := f.createService(ctx, s, d.arn); err != nil {
				return nil, err
			}
		}
		wctx, wcancel := context.WithTimeout(ctx, wait)
		err := f.waitRunning(wctx, chunk)
		wcancel()
		if err != nil {
			return nil, err
		}
		f.Log.Info("services running", "services", chunk[len(chunk)-1].Name)
	}
	return svcs, f.lookUpVolumes(ctx, svcs)
}

// registerTaskDefinition registers s's family: one busybox container with
// s's shared tether volume of driverOpts at /data.
func (f *Fleet) registerTaskDefinition(ctx context.Context, s *Service, driverOpts map[string]string) (string, error) {
	if err := f.wait(ctx, "RegisterTaskDefinition"); err != nil {
		return "", err
	}
	td, err := f.ECS.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String(s.Name),
		NetworkMode:             ecstypes.NetworkModeBridge,
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityEc2},
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: aws.String("app"), Image: aws.String("busybox"), Essential: aws.Bool(true),
			Cpu: taskCPU, Memory: aws.Int32(64),
			EntryPoint:  []string{"sh", "-c"},
			Command:     []string{containerCommand},
			MountPoints: []ecstypes.MountPoint{{SourceVolume: aws.String(s.VolumeName), ContainerPath: aws.String("/data")}},
		}},
		Volumes: []ecstypes.Volume{{
			Name: aws.String(s.VolumeName),
			DockerVolumeConfiguration: &ecstypes.DockerVolumeConfiguration{
				Scope: ecstypes.ScopeShared, Autoprovision: aws.Bool(true), Driver: aws.String("tether"),
				DriverOpts: driverOpts,
			},
		}},
	})
	if err != nil {
		return "", fmt.Errorf("bench: register task definition %s: %w", s.Name, err)
	}
	return aws.ToString(td.TaskDefinition.TaskDefinitionArn), nil
}

func (f *Fleet) createService(ctx context.Context, s *Service, taskDefinition string) error {
	if err := f.wait(ctx, "CreateService"); err != nil {
		return err
	}
	if _, err := f.ECS.CreateService(ctx, &ecs.CreateServiceInput{
		Cluster: aws.String(f.W.Options().Cluster), ServiceName: aws.String(s.Name), TaskDefinition: aws.String(taskDefinition),
		DesiredCount: aws.Int32(1), LaunchType: ecstypes.LaunchTypeEc2,
		DeploymentConfiguration: &ecstypes.DeploymentConfiguration{MaximumPercent: aws.Int32(100), MinimumHealthyPercent: aws.Int32(0)},
	}); err != nil {
		return fmt.Errorf("bench: create service %s: %w", s.Name, err)
	}
	return nil
}

// unrelatedStartedBy marks the unrelated tasks (RunTask's startedBy).
const unrelatedStartedBy = "tether-bench-unrelated"

// unrelatedFamily is the unrelated tasks' task definition: no volume.
const unrelatedFamily = "bench-unrelated"

// RunUnrelated starts add more standalone tasks that have nothing to do
// with tether (no volume; placed only on hosts without tether's plugin),
// and waits, at most wait, until total of them run.
func (f *Fleet) RunUnrelated(ctx context.Context, add, total int, wait time.Duration) error {
	if err := f.wait(ctx, "RegisterTaskDefinition"); err != nil {
		return err
	}
	// Registering the same family again makes a new revision; any will do.
	td, err := f.ECS.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family: aws.String(unrelatedFamily), NetworkMode: ecstypes.NetworkModeBridge,
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityEc2},
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: aws.String("app"), Image: aws.String("busybox"), Essential: aws.Bool(true),
			// ECS's minimum container memory is 6 MiB.
			Memory: aws.Int32(8), EntryPoint: []string{"sh", "-c"}, Command: []string{containerCommand},
		}},
	})
	if err != nil {
		return fmt.Errorf("bench: register %s: %w", unrelatedFamily, err)
	}
	for add > 0 {
		n := min(add, 10) // RunTask's count is at most 10
		if err := f.wait(ctx, "RunTask"); err != nil {
			return err
		}
		out, err := f.ECS.RunTask(ctx, &ecs.RunTaskInput{
			Cluster: aws.String(f.W.Options().Cluster), TaskDefinition: td.TaskDefinition.TaskDefinitionArn,
			Count: aws.Int32(int32(n)), LaunchType: ecstypes.LaunchTypeEc2, StartedBy: aws.String(unrelatedStartedBy),
			PlacementConstraints: []ecstypes.PlacementConstraint{{
				Type: ecstypes.PlacementConstraintTypeMemberOf, Expression: aws.String("attribute:ecs.capability.docker-plugin.tether !exists"),
			}},
		})
		if err != nil {
			return fmt.Errorf("bench: run %d unrelated tasks: %w", n, err)
		}
		if len(out.Failures) > 0 || len(out.Tasks) != n {
			return fmt.Errorf("bench: run %d unrelated tasks: %d started, failures %+v", n, len(out.Tasks), out.Failures)
		}
		add -= n
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	running := 0
	err = f.W.ECS().WaitFor(wctx, f.W.Options().Cluster, fmt.Sprintf("%d unrelated tasks RUNNING", total), func(sn ecssim.Snapshot) bool {
		running = 0
		for _, t := range sn.Tasks {
			if t.StartedBy == unrelatedStartedBy && t.LastStatus == "RUNNING" && t.DesiredStatus == "RUNNING" {
				running++
			}
		}
		return running == total
	})
	if err != nil {
		return fmt.Errorf("bench: %d of %d unrelated tasks RUNNING: %w", running, total, wctx.Err())
	}
	f.Log.Info("unrelated tasks running", "tasks", total)
	return nil
}

// waitRunning waits until every service has its task RUNNING and notes
// task and instance; the error says how far it got.
func (f *Fleet) waitRunning(ctx context.Context, svcs []*Service) error {
	cluster := f.W.Options().Cluster
	byName := map[string]*Service{}
	for _, s := range svcs {
		byName[s.Name] = s
	}
	var running, failed int
	var reason string
	err := f.W.ECS().WaitFor(ctx, cluster, fmt.Sprintf("%d services RUNNING", len(svcs)), func(sn ecssim.Snapshot) bool {
		running, failed = 0, 0
		for _, t := range sn.Tasks {
			s := byName[t.Service]
			switch {
			case s == nil:
			case t.LastStatus == "RUNNING" && t.DesiredStatus == "RUNNING":
				s.Task, s.Instance = t.Arn, t.EC2InstanceID
				running++
			case t.LastStatus == "STOPPED":
				failed++
				reason = t.StoppedReason
			}
		}
		return running == len(svcs)
	})
	if err != nil {
		return fmt.Errorf("bench: %d of %d services RUNNING (%d tasks failed to start, the last: %.300q): %w",
			running, len(svcs), failed, reason, ctx.Err())
	}
	return nil
}

// lookUpVolumes finds each service's EBS volume by its Name tag.
func (f *Fleet) lookUpVolumes(ctx context.Context, svcs []*Service) error {
	byVolume := map[string]*Service{}
	var names []string
	for _, s := range svcs {
		byVolume[s.VolumeName] = s
		names = append(names, s.VolumeName)
	}
	for chunk := range slices.Chunk(names, 100) {
		p := ec2.NewDescribeVolumesPaginator(f.EC2, &ec2.DescribeVolumesInput{
			Filters: []ec2types.Filter{{Name: aws.String("tag:Name"), Values: chunk}},
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("bench: describe volumes: %w", err)
			}
			for _, v := range page.Volumes {
				for _, t := range v.Tags {
					if aws.ToString(t.Key) == "Name" && byVolume[aws.ToString(t.Value)] != nil {
						byVolume[aws.ToString(t.Value)].VolumeID = aws.ToString(v.VolumeId)
					}
				}
			}
		}
	}
	var missing []string
	for _, s := range svcs {
		if s.VolumeID == "" {
			missing = append(missing, s.VolumeName)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("bench: no EBS volume tagged Name=%s", strings.Join(missing, ", "))
	}
	return nil
}

// SetState sets container instances ACTIVE or DRAINING in one call.
func (f *Fleet) SetState(ctx context.Context, status ecstypes.ContainerInstanceStatus, instanceIDs ...string) error {
	var arns []string
	for _, id := range instanceIDs {
		in, err := f.W.Instance(id)
		if err != nil {
			return err
		}
		arns = append(arns, in.ContainerInstanceArn)
	}
	if err := f.wait(ctx, "UpdateContainerInstancesState"); err != nil {
		return err
	}
	_, err := f.ECS.UpdateContainerInstancesState(ctx, &ecs.UpdateContainerInstancesStateInput{
		Cluster: aws.String(f.W.Options().Cluster), ContainerInstances: arns, Status: status,
	})
	if err != nil {
		return fmt.Errorf("bench: set %v %s: %w", instanceIDs, status, err)
	}
	return nil
}

// Drain drains the instances at once and waits until every service whose
// task ran there has a replacement RUNNING elsewhere, or ctx ends. Each
// Handoff says when its replacement ran (zero: it did not). The services
// are updated to their new task and instance.
func (f *Fleet) Drain(ctx context.Context, svcs []*Service, instanceIDs ...string) ([]Handoff, error) {
	return f.Move(ctx, svcs, instanceIDs, func(ctx context.Context) error {
		return f.SetState(ctx, ecstypes.ContainerInstanceStatusDraining, instanceIDs...)
	})
}

// Move is Drain with another cause: act is what makes the instances'
// tasks leave (a drain, a scale-in through the termination hook, the
// host's death). The handoffs are timed from act's start; act runs while
// the replacements are awaited (a death returns only once EC2 has
// terminated the instance), and its error ends the wait.
func (f *Fleet) Move(ctx context.Context, svcs []*Service, instanceIDs []string, act func(context.Context) error) ([]Handoff, error) {
	cluster := f.W.Options().Cluster
	var moving []*Service
	for _, s := range svcs {
		if slices.Contains(instanceIDs, s.Instance) {
			moving = append(moving, s)
		}
	}
	handoffs := make([]Handoff, len(moving))
	idx := map[string]int{}
	for i, s := range moving {
		idx[s.Name] = i
		handoffs[i] = Handoff{Service: s.Name, VolumeName: s.VolumeName, VolumeID: s.VolumeID, OldTask: s.Task, OldInstance: s.Instance}
	}
	start := time.Now()
	for i := range handoffs {
		handoffs[i].Drained = start
	}
	actx, stopAct := context.WithCancel(ctx)
	defer stopAct()
	ctx, cancelWait := context.WithCancelCause(ctx)
	defer cancelWait(nil)
	acted := make(chan error, 1)
	go func() {
		err := act(actx)
		if err != nil {
			cancelWait(err)
		}
		acted <- err
	}()
	done := 0
	err := f.W.ECS().WaitFor(ctx, cluster, fmt.Sprintf("%d replacements RUNNING", len(moving)), func(sn ecssim.Snapshot) bool {
		now := time.Now()
		for _, t := range sn.Tasks {
			i, ok := idx[t.Service]
			if !ok || t.Arn == handoffs[i].OldTask || !handoffs[i].Running.IsZero() {
				continue
			}
			if t.LastStatus == "RUNNING" {
				handoffs[i].Running, handoffs[i].NewTask, handoffs[i].NewInstance = now, t.Arn, t.EC2InstanceID
				done++
			} else if t.LastStatus == "STOPPED" && handoffs[i].Failure == "" {
				// ECS will try again; remember why this one failed.
				handoffs[i].Failure = "a replacement stopped: " + t.StoppedReason
			}
		}
		return done == len(moving)
	})
	if err != nil {
		stopAct()
	}
	// The act ends before the handoffs are used: a death is complete
	// (EC2 terminated, ECS told) by the time its replacement runs.
	actErr := <-acted
	for i := range handoffs {
		h := &handoffs[i]
		if !h.Running.IsZero() {
			h.Failure = "" // a later replacement made it
			s := moving[i]
			s.Task, s.Instance = h.NewTask, h.NewInstance
		} else if h.Failure == "" {
			h.Failure = "no replacement RUNNING before the deadline"
		}
	}
	if actErr != nil && !errors.Is(actErr, context.Canceled) {
		return handoffs, fmt.Errorf("bench: moving %d services off %v: %w", len(moving), instanceIDs, actErr)
	}
	if err != nil && !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		// The world's error lists every task; the cause is enough here.
		return handoffs, fmt.Errorf("bench: waiting for %d replacements (%d RUNNING): %w", len(moving), done, context.Cause(ctx))
	}
	return handoffs, nil
}
