package world_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/world"
)

const pluginAttr = "ecs.capability.docker-plugin.tether"

// registerTetherTask registers family with one busybox container using a
// shared tether volume named volume, optionally pinned to an AZ.
func registerTetherTask(t *testing.T, ctx context.Context, c *ecs.Client, family, volume, az string) {
	t.Helper()
	in := &ecs.RegisterTaskDefinitionInput{
		Family: aws.String(family),
		ContainerDefinitions: []types.ContainerDefinition{{
			Name: aws.String("app"), Image: aws.String("busybox"), Memory: aws.Int32(64), Essential: aws.Bool(true),
			EntryPoint:  []string{"sh", "-c"},
			Command:     []string{"trap 'exit 0' TERM; while true; do sleep 1; done"},
			MountPoints: []types.MountPoint{{SourceVolume: aws.String(volume), ContainerPath: aws.String("/data")}},
		}},
		Volumes: []types.Volume{{Name: aws.String(volume), DockerVolumeConfiguration: &types.DockerVolumeConfiguration{
			Scope: types.ScopeShared, Autoprovision: aws.Bool(true), Driver: aws.String("tether"), DriverOpts: map[string]string{"size": "1"},
		}}},
	}
	if az != "" {
		in.PlacementConstraints = []types.TaskDefinitionPlacementConstraint{{Type: types.TaskDefinitionPlacementConstraintTypeMemberOf,
			Expression: aws.String("attribute:ecs.availability-zone==" + az)}}
	}
	if _, err := c.RegisterTaskDefinition(ctx, in); err != nil {
		t.Fatal(err)
	}
}

// Placement follows the AZ constraint and the plugin capability: a task
// with a tether volume only lands on an instance of its AZ that advertises
// ecs.capability.docker-plugin.tether; with none left, RunTask says why.
func TestPlacementByAZAndCapability(t *testing.T) {
	w := world.StartT(t, world.Options{AZs: 2})
	ctx := ctxT(t)
	launch := func(az string, noPlugin bool) world.Instance {
		in, err := w.LaunchInstance(ctx, world.LaunchOptions{AZ: az, NoPlugin: noPlugin})
		if err != nil {
			t.Fatal(err)
		}
		return *in
	}
	withPlugin, without, otherAZ := launch("us-west-2a", false), launch("us-west-2a", true), launch("us-west-2b", false)
	sn := w.ECS().Snapshot("default")
	for _, ci := range sn.Instances {
		_, has := ci.Attributes[pluginAttr]
		if want := ci.EC2InstanceID != without.ID; has != want {
			t.Errorf("%s advertises the tether plugin: %v, want %v", ci.EC2InstanceID, has, want)
		}
	}

	c := ecs.NewFromConfig(w.AWSConfig())
	registerTetherTask(t, ctx, c, "in-a", "vol-a", "us-west-2a")
	registerTetherTask(t, ctx, c, "in-b", "vol-b", "us-west-2b")
	placed := func(family string, count int32) []string {
		out, err := c.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String("default"), TaskDefinition: aws.String(family), Count: aws.Int32(count)})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Failures) > 0 {
			t.Fatalf("RunTask %s: failures %+v", family, out.Failures)
		}
		var ids []string
		for _, task := range out.Tasks {
			ti, ok := w.ECS().Snapshot("default").Task(aws.ToString(task.TaskArn))
			if !ok {
				t.Fatalf("task %s not in the cluster", aws.ToString(task.TaskArn))
			}
			ids = append(ids, ti.EC2InstanceID)
		}
		return ids
	}
	for _, id := range placed("in-a", 3) {
		if id != withPlugin.ID {
			t.Errorf("a tether task of us-west-2a placed on %s, want %s (the only one there with the plugin)", id, withPlugin.ID)
		}
	}
	for _, id := range placed("in-b", 2) {
		if id != otherAZ.ID {
			t.Errorf("a tether task of us-west-2b placed on %s, want %s", id, otherAZ.ID)
		}
	}

	// With the capable instance draining, nothing in us-west-2a can take it.
	if err := w.DrainInstance(ctx, withPlugin.ID); err != nil {
		t.Fatal(err)
	}
	out, err := c.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String("default"), TaskDefinition: aws.String("in-a")})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Tasks) != 0 {
		t.Fatalf("placed %d tasks with no capable instance left in us-west-2a", len(out.Tasks))
	}
	reasons := map[string]string{}
	for _, f := range out.Failures {
		reasons[aws.ToString(f.Arn)] = aws.ToString(f.Reason)
	}
	if got := reasons[without.ContainerInstanceArn]; got != "ATTRIBUTE" {
		t.Errorf("failure for the instance without the plugin: %q (all: %v), want ATTRIBUTE", got, reasons)
	}
	if got := reasons[otherAZ.ContainerInstanceArn]; !strings.Contains(got, "MemberOf") {
		t.Errorf("failure for the instance in us-west-2b: %q (all: %v), want the MemberOf constraint", got, reasons)
	}
}

// liveWatch records the most tasks of a service alive (not STOPPED) at
// once, at every change of the cluster.
type liveWatch struct {
	mu  sync.Mutex
	max int
}

func watchLive(t *testing.T, w *world.World, service string) *liveWatch {
	lw := &liveWatch{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.ECS().WaitFor(ctx, w.Options().Cluster, "never", func(sn ecssim.Snapshot) bool {
			n := 0
			for _, ti := range sn.ServiceTasks(service) {
				if ti.LastStatus != "STOPPED" {
					n++
				}
			}
			lw.mu.Lock()
			lw.max = max(lw.max, n)
			lw.mu.Unlock()
			return false
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return lw
}

func (lw *liveWatch) most() int {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.max
}

// startService creates a one-task service (maximumPercent 100,
// minimumHealthyPercent 0, as the seed) and waits for its task to run.
func startService(t *testing.T, ctx context.Context, w *world.World, name, family string) ecssim.TaskInfo {
	t.Helper()
	c := ecs.NewFromConfig(w.AWSConfig())
	if _, err := c.CreateService(ctx, &ecs.CreateServiceInput{
		Cluster: aws.String(w.Options().Cluster), ServiceName: aws.String(name), TaskDefinition: aws.String(family),
		DesiredCount: aws.Int32(1), LaunchType: types.LaunchTypeEc2,
		DeploymentConfiguration: &types.DeploymentConfiguration{MaximumPercent: aws.Int32(100), MinimumHealthyPercent: aws.Int32(0)},
	}); err != nil {
		t.Fatal(err)
	}
	return waitTask(t, ctx, w, name, name+"'s task RUNNING", func(ti ecssim.TaskInfo) bool { return ti.LastStatus == "RUNNING" })
}

func waitTask(t *testing.T, ctx context.Context, w *world.World, service, what string, cond func(ecssim.TaskInfo) bool) ecssim.TaskInfo {
	t.Helper()
	var found ecssim.TaskInfo
	if err := w.ECS().WaitFor(ctx, w.Options().Cluster, what, func(sn ecssim.Snapshot) bool {
		for _, ti := range sn.ServiceTasks(service) {
			if cond(ti) {
				found = ti
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

// volumeOf returns the one EBS volume tagged Name=name.
func volumeOf(t *testing.T, ctx context.Context, w *world.World, name string) ec2types.Volume {
	t.Helper()
	out, err := ec2.NewFromConfig(w.AWSConfig()).DescribeVolumes(ctx, &ec2.DescribeVolumesInput{
		Filters: []ec2types.Filter{{Name: aws.String("tag:Name"), Values: []string{name}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Volumes) != 1 {
		t.Fatalf("%d volumes tagged Name=%s, want 1", len(out.Volumes), name)
	}
	return out.Volumes[0]
}

func attachedTo(v ec2types.Volume) string {
	for _, a := range v.Attachments {
		if a.State == ec2types.VolumeAttachmentStateAttached {
			return aws.ToString(a.InstanceId)
		}
	}
	return ""
}

// Draining the instance of a one-task service with minimumHealthyPercent 0
// and maximumPercent 100 stops the task before its replacement starts (the
// volume can only be in one place), and the replacement gets the volume.
func TestDrainWithMinimumZeroMaximumHundred(t *testing.T) {
	w := world.StartT(t, withFunctions(t, world.Options{Instances: 2}, world.EmulatedFunctions))
	ctx := ctxT(t)
	registerTetherTask(t, ctx, ecs.NewFromConfig(w.AWSConfig()), "db", "db-data", "")
	lw := watchLive(t, w, "db")
	first := startService(t, ctx, w, "db", "db")
	vol := volumeOf(t, ctx, w, "db-data")
	if attachedTo(vol) != first.EC2InstanceID {
		t.Fatalf("db-data attached to %q, want %s", attachedTo(vol), first.EC2InstanceID)
	}

	if err := w.DrainInstance(ctx, first.EC2InstanceID); err != nil {
		t.Fatal(err)
	}
	second := waitTask(t, ctx, w, "db", "the replacement RUNNING", func(ti ecssim.TaskInfo) bool {
		return ti.Arn != first.Arn && ti.LastStatus == "RUNNING"
	})
	if second.EC2InstanceID == first.EC2InstanceID {
		t.Fatalf("replacement on the draining instance %s", first.EC2InstanceID)
	}
	if got := lw.most(); got != 1 {
		t.Errorf("at most %d tasks of the service alive at once, want 1 (maximumPercent 100)", got)
	}
	if old, _ := w.ECS().Snapshot("default").Task(first.Arn); old.LastStatus != "STOPPED" || old.StopCode != ecssim.StopServiceSchedulerInitiated {
		t.Errorf("drained task: %s, stop code %s; want STOPPED by the service scheduler", old.LastStatus, old.StopCode)
	}
	after := volumeOf(t, ctx, w, "db-data")
	if aws.ToString(after.VolumeId) != aws.ToString(vol.VolumeId) || attachedTo(after) != second.EC2InstanceID {
		t.Fatalf("db-data after the drain: %s attached to %q; want %s on %s", aws.ToString(after.VolumeId), attachedTo(after), aws.ToString(vol.VolumeId), second.EC2InstanceID)
	}
	disk, ok := w.Disks().Volume(aws.ToString(vol.VolumeId))
	if !ok || disk.Formats != 1 || disk.Unclean != 0 || !slices.Equal(disk.Writes, []string{first.Arn, second.Arn}) {
		t.Fatalf("db-data's contents: %+v; want one format, clean handoff, written by %s then %s", disk, first.ID, second.ID)
	}
}

// An instance that dies under a running task: ECS stops the task
// (TerminationNotice), EC2 detaches the volume, the service's replacement
// runs on the other instance with the same volume and its data.
func TestInstanceDeath(t *testing.T) {
	w := world.StartT(t, withFunctions(t, world.Options{Instances: 2}, world.EmulatedFunctions))
	ctx := ctxT(t)
	registerTetherTask(t, ctx, ecs.NewFromConfig(w.AWSConfig()), "db", "db-data", "")
	first := startService(t, ctx, w, "db", "db")
	vol := aws.ToString(volumeOf(t, ctx, w, "db-data").VolumeId)

	if err := w.KillInstance(ctx, first.EC2InstanceID); err != nil {
		t.Fatal(err)
	}
	if state, err := w.EC2().InstanceState(first.EC2InstanceID); err != nil || state != "terminated" {
		t.Errorf("EC2 instance %s is %q (%v), want terminated", first.EC2InstanceID, state, err)
	}
	old, _ := w.ECS().Snapshot("default").Task(first.Arn)
	if old.LastStatus != "STOPPED" || old.StopCode != ecssim.StopTerminationNotice {
		t.Errorf("task on the dead instance: %s / %s (%s), want STOPPED / TerminationNotice", old.LastStatus, old.StopCode, old.StoppedReason)
	}
	for _, ci := range w.ECS().Snapshot("default").Instances {
		if ci.EC2InstanceID == first.EC2InstanceID && (ci.Status != "INACTIVE" || ci.AgentConnected) {
			t.Errorf("dead container instance: %s, agent connected %v; want INACTIVE, disconnected", ci.Status, ci.AgentConnected)
		}
	}
	second := waitTask(t, ctx, w, "db", "the replacement RUNNING", func(ti ecssim.TaskInfo) bool {
		return ti.Arn != first.Arn && ti.LastStatus == "RUNNING"
	})
	if second.EC2InstanceID == first.EC2InstanceID {
		t.Fatal("replacement on the dead instance")
	}
	after := volumeOf(t, ctx, w, "db-data")
	if aws.ToString(after.VolumeId) != vol || attachedTo(after) != second.EC2InstanceID {
		t.Fatalf("db-data: %s attached to %q; want %s on %s", aws.ToString(after.VolumeId), attachedTo(after), vol, second.EC2InstanceID)
	}
	disk, _ := w.Disks().Volume(vol)
	if disk.Formats != 1 || !slices.Equal(disk.Writes, []string{first.Arn, second.Arn}) {
		t.Fatalf("db-data's contents: %+v; want the first task's data kept (one format)", disk)
	}
	if disk.Unclean != 1 {
		t.Errorf("unclean detaches %d, want 1 (the host died with it mounted)", disk.Unclean)
	}
}

// A task whose tether volume is never mounted (no reconciler here) is
// STOPPED with the plugin's own error, through dockerd and the ECS agent,
// and its container never runs.
func TestVolumeNeverMountedStopsTheTaskWithThePluginsError(t *testing.T) {
	requireRealHosts(t)
	w := world.StartT(t, world.Options{Instances: 1, Hosts: world.RealHosts, AgentBinary: agentBinary(t), AgentArgs: []string{"--mount-wait", "3s"}})
	ctx := ctxT(t)
	c := ecs.NewFromConfig(w.AWSConfig())
	registerTetherTask(t, ctx, c, "lonely", "never-vol", "")
	out, err := c.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String("default"), TaskDefinition: aws.String("lonely")})
	if err != nil || len(out.Tasks) != 1 {
		t.Fatalf("RunTask: %v, %+v", err, out)
	}
	arn := aws.ToString(out.Tasks[0].TaskArn)
	if err := ecs.NewTasksStoppedWaiter(c, fastECSWaiter).Wait(ctx, &ecs.DescribeTasksInput{Cluster: aws.String("default"), Tasks: []string{arn}}, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	d, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String("default"), Tasks: []string{arn}})
	if err != nil {
		t.Fatal(err)
	}
	task := d.Tasks[0]
	reason := aws.ToString(task.StoppedReason)
	for _, want := range []string{"never-vol", "is not mounted on this instance after waiting 3s"} {
		if !strings.Contains(reason, want) {
			t.Errorf("stoppedReason %q lacks %q", reason, want)
		}
	}
	if task.StopCode != types.TaskStopCodeTaskFailedToStart {
		t.Errorf("stopCode %s, want TaskFailedToStart", task.StopCode)
	}
	for _, ct := range task.Containers {
		if ct.ExitCode != nil {
			t.Errorf("container %s ran (exit %d)", aws.ToString(ct.Name), *ct.ExitCode)
		}
	}
}

func fastECSWaiter(o *ecs.TasksStoppedWaiterOptions) {
	o.MinDelay, o.MaxDelay = 100*time.Millisecond, time.Second
}
