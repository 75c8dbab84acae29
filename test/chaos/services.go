package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"
)

// volumeDef is one tether volume of a service's task definition.
type volumeDef struct {
	name   string // Docker volume name
	shared bool   // scope shared (else task)
	opts   map[string]string
}

// tetherName is the name tether gives the volume for one task: the Docker
// name for shared scope, task-<task id>-<volume> for task scope
// (docs/contracts.md).
func (v volumeDef) tetherName(taskArn string) string {
	if v.shared {
		return v.name
	}
	return "task-" + taskArn[strings.LastIndexByte(taskArn, '/')+1:] + "-" + v.name
}

// serviceDef is one ECS service of the run and its task definition.
type serviceDef struct {
	name    string
	az      string // placement constraint; "" for none
	volumes []volumeDef
	taskDef string // ARN, once registered
}

// sharedVolume is the service's shared volume, if it has one.
func (s *serviceDef) sharedVolume() (volumeDef, bool) {
	for _, v := range s.volumes {
		if v.shared {
			return v, true
		}
	}
	return volumeDef{}, false
}

// planServices draws the services of a run from its seed: shared-scope
// services pinned to an AZ (as the seed walkthrough's placement
// constraint does), every fifth with a task-scope scratch volume too, and
// services with only a task-scope volume, placed anywhere.
func planServices(rng *rand.Rand, c Config, azs []string) []*serviceDef {
	var out []*serviceDef
	kinds := []string{"gp3", "gp2"}
	for i := range c.SharedServices {
		opts := map[string]string{"size": strconv.Itoa(1 + rng.IntN(4)), "volumetype": kinds[rng.IntN(len(kinds))]}
		if rng.IntN(4) == 0 {
			opts["fstype"] = "xfs"
		}
		s := &serviceDef{name: fmt.Sprintf("svc-%02d", i), az: azs[i%len(azs)],
			volumes: []volumeDef{{name: fmt.Sprintf("data-%02d", i), shared: true, opts: opts}}}
		if i%5 == 4 {
			s.volumes = append(s.volumes, volumeDef{name: "scratch", opts: map[string]string{"size": "1"}})
		}
		out = append(out, s)
	}
	for i := range c.TaskServices {
		out = append(out, &serviceDef{name: fmt.Sprintf("job-%02d", i),
			volumes: []volumeDef{{name: "scratch", opts: map[string]string{"size": strconv.Itoa(1 + rng.IntN(2))}}}})
	}
	return out
}

// ecsAPI is the part of the ECS client the run drives.
type ecsAPI interface {
	RegisterTaskDefinition(context.Context, *ecs.RegisterTaskDefinitionInput, ...func(*ecs.Options)) (*ecs.RegisterTaskDefinitionOutput, error)
	CreateService(context.Context, *ecs.CreateServiceInput, ...func(*ecs.Options)) (*ecs.CreateServiceOutput, error)
	UpdateService(context.Context, *ecs.UpdateServiceInput, ...func(*ecs.Options)) (*ecs.UpdateServiceOutput, error)
	DeleteService(context.Context, *ecs.DeleteServiceInput, ...func(*ecs.Options)) (*ecs.DeleteServiceOutput, error)
	StopTask(context.Context, *ecs.StopTaskInput, ...func(*ecs.Options)) (*ecs.StopTaskOutput, error)
	UpdateContainerInstancesState(context.Context, *ecs.UpdateContainerInstancesStateInput, ...func(*ecs.Options)) (*ecs.UpdateContainerInstancesStateOutput, error)
	DeregisterContainerInstance(context.Context, *ecs.DeregisterContainerInstanceInput, ...func(*ecs.Options)) (*ecs.DeregisterContainerInstanceOutput, error)
	StartTask(context.Context, *ecs.StartTaskInput, ...func(*ecs.Options)) (*ecs.StartTaskOutput, error)
}

var _ ecsAPI = (*ecs.Client)(nil)

// revision is a copy of the service's definition for a new task
// definition revision: its own volumes and driverOpts (the old revision's
// tasks keep theirs), not registered yet.
func (s *serviceDef) revision() *serviceDef {
	n := &serviceDef{name: s.name, az: s.az}
	for _, v := range s.volumes {
		v.opts = maps.Clone(v.opts)
		n.volumes = append(n.volumes, v)
	}
	return n
}

// register registers the service's task definition.
func (s *serviceDef) register(ctx context.Context, api ecsAPI) error {
	in := &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String(s.name),
		RequiresCompatibilities: []types.Compatibility{types.CompatibilityEc2},
		ContainerDefinitions: []types.ContainerDefinition{{
			Name: aws.String("app"), Image: aws.String("busybox"), Cpu: 64, Memory: aws.Int32(64), Essential: aws.Bool(true),
			Command: []string{"sh", "-c", "cat /data/generation; date > /data/generation; sleep infinity"},
		}},
	}
	for _, v := range s.volumes {
		// ECS refuses autoprovision on task scope.
		dv := &types.DockerVolumeConfiguration{Scope: types.ScopeTask, Driver: aws.String("tether"), DriverOpts: v.opts}
		if v.shared {
			dv.Scope, dv.Autoprovision = types.ScopeShared, aws.Bool(true)
		}
		in.Volumes = append(in.Volumes, types.Volume{Name: aws.String(v.name), DockerVolumeConfiguration: dv})
		in.ContainerDefinitions[0].MountPoints = append(in.ContainerDefinitions[0].MountPoints,
			types.MountPoint{SourceVolume: aws.String(v.name), ContainerPath: aws.String("/" + v.name)})
	}
	if s.az != "" {
		in.PlacementConstraints = []types.TaskDefinitionPlacementConstraint{{
			Type: types.TaskDefinitionPlacementConstraintTypeMemberOf, Expression: aws.String("attribute:ecs.availability-zone==" + s.az)}}
	}
	out, err := api.RegisterTaskDefinition(ctx, in)
	if err != nil {
		return fmt.Errorf("register task definition %s: %w", s.name, err)
	}
	s.taskDef = aws.ToString(out.TaskDefinition.TaskDefinitionArn)
	return nil
}

// create creates the service: one task, replaced only once the old one
// has stopped (minimumHealthyPercent 0, maximumPercent 100, as tether's
// README asks of services with a shared volume).
func (s *serviceDef) create(ctx context.Context, api ecsAPI, cluster string, desired int32) error {
	_, err := api.CreateService(ctx, &ecs.CreateServiceInput{
		Cluster: aws.String(cluster), ServiceName: aws.String(s.name), TaskDefinition: aws.String(s.taskDef),
		DesiredCount: aws.Int32(desired), LaunchType: types.LaunchTypeEc2,
		DeploymentConfiguration: &types.DeploymentConfiguration{MaximumPercent: aws.Int32(100), MinimumHealthyPercent: aws.Int32(0)},
	})
	return err
}

// retrying calls f until it succeeds, a client error says no, or the
// bound passes: the run's own calls meet the same injected faults as
// tether's.
func retrying(ctx context.Context, what string, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var err error
	for attempt := 0; ; attempt++ {
		if err = f(ctx); err == nil {
			return nil
		}
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorFault() == smithy.FaultClient && ae.ErrorCode() != "ThrottlingException" {
			return fmt.Errorf("%s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up after %d attempts: %w", what, attempt+1, err)
		case <-time.After(time.Duration(50*(attempt+1)) * time.Millisecond):
		}
	}
}
