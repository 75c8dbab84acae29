package world_test

import (
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/world"
)

// aws-sdk-go-v2's own waiters, unchanged but for shorter delays, against a
// world whose EC2 and ECS take time (realistic profile, scaled down): each
// waiter sees the intermediate state and then its success.
func TestSDKWaiters(t *testing.T) {
	w := world.StartT(t, world.Options{Instances: 1, Profile: "realistic*0.1"})
	ctx := ctxT(t)
	cfg := w.AWSConfig()
	ec2c, ecsc := ec2.NewFromConfig(cfg), ecs.NewFromConfig(cfg)
	instance := w.Instances()[0]

	created, err := ec2c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(instance.AZ), Size: aws.Int32(1), VolumeType: ec2types.VolumeTypeGp3})
	if err != nil {
		t.Fatal(err)
	}
	if created.State != ec2types.VolumeStateCreating {
		t.Fatalf("new volume is %s, want creating (so the waiter has something to wait for)", created.State)
	}
	vol := []string{aws.ToString(created.VolumeId)}
	if err := ec2.NewVolumeAvailableWaiter(ec2c, func(o *ec2.VolumeAvailableWaiterOptions) {
		o.MinDelay, o.MaxDelay = 50*time.Millisecond, 500*time.Millisecond
	}).Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: vol}, time.Minute); err != nil {
		t.Fatalf("VolumeAvailable: %v", err)
	}

	if _, err := ec2c.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: created.VolumeId, InstanceId: aws.String(instance.ID), Device: aws.String("/dev/xvdf")}); err != nil {
		t.Fatal(err)
	}
	if err := ec2.NewVolumeInUseWaiter(ec2c, func(o *ec2.VolumeInUseWaiterOptions) {
		o.MinDelay, o.MaxDelay = 50*time.Millisecond, 500*time.Millisecond
	}).Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: vol}, time.Minute); err != nil {
		t.Fatalf("VolumeInUse: %v", err)
	}

	if _, err := ecsc.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family: aws.String("sleeper"),
		ContainerDefinitions: []types.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("busybox"), Memory: aws.Int32(64),
			Essential: aws.Bool(true), Command: []string{"sleep", "3600"}}},
	}); err != nil {
		t.Fatal(err)
	}
	run, err := ecsc.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String("default"), TaskDefinition: aws.String("sleeper")})
	if err != nil || len(run.Tasks) != 1 {
		t.Fatalf("RunTask: %v %+v", err, run)
	}
	task := []string{aws.ToString(run.Tasks[0].TaskArn)}
	if s := aws.ToString(run.Tasks[0].LastStatus); s == "RUNNING" {
		t.Fatalf("task RUNNING at once; want it to pass through PROVISIONING/PENDING (status %s)", s)
	}
	if err := ecs.NewTasksRunningWaiter(ecsc, func(o *ecs.TasksRunningWaiterOptions) {
		o.MinDelay, o.MaxDelay = 50*time.Millisecond, 500*time.Millisecond
	}).Wait(ctx, &ecs.DescribeTasksInput{Cluster: aws.String("default"), Tasks: task}, time.Minute); err != nil {
		t.Fatalf("TasksRunning: %v", err)
	}
	if _, err := ecsc.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String("default"), Task: aws.String(task[0])}); err != nil {
		t.Fatal(err)
	}
	if err := ecs.NewTasksStoppedWaiter(ecsc, func(o *ecs.TasksStoppedWaiterOptions) {
		o.MinDelay, o.MaxDelay = 50*time.Millisecond, 500*time.Millisecond
	}).Wait(ctx, &ecs.DescribeTasksInput{Cluster: aws.String("default"), Tasks: task}, time.Minute); err != nil {
		t.Fatalf("TasksStopped: %v", err)
	}

	c := w.Counts()
	for _, call := range []string{"ec2:DescribeVolumes", "ecs:DescribeTasks"} {
		if c.Calls[call] < 2 {
			t.Errorf("%s called %d times; the waiters should have polled", call, c.Calls[call])
		}
	}
}

// The world's counters see throttling and injected faults as the SDK
// meets them (and retries past them).
func TestCountsThrottlingAndFaults(t *testing.T) {
	w := world.StartT(t, world.Options{})
	ctx := ctxT(t)
	ec2c := ec2.NewFromConfig(w.AWSConfig())
	w.EC2().ThrottleNext("DescribeVolumes", 2)
	if _, err := ec2c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{}); err != nil {
		t.Fatalf("DescribeVolumes after two throttles (the SDK retries): %v", err)
	}
	w.EC2().FailNext("CreateVolume", 1, awsproto.BadRequest("InsufficientVolumeCapacity", "no capacity"))
	_, err := ec2c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-west-2a"), Size: aws.Int32(1)})
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "InsufficientVolumeCapacity" {
		t.Fatalf("CreateVolume: %v, want the injected InsufficientVolumeCapacity", err)
	}
	c := w.Counts()
	if c.Throttled["ec2:DescribeVolumes"] != 2 || c.Calls["ec2:DescribeVolumes"] != 3 {
		t.Errorf("DescribeVolumes: %d throttled of %d calls, want 2 of 3", c.Throttled["ec2:DescribeVolumes"], c.Calls["ec2:DescribeVolumes"])
	}
	if c.Injected["ec2:CreateVolume"] != 1 || c.Errors["InsufficientVolumeCapacity"] != 1 || c.Errors["RequestLimitExceeded"] != 2 {
		t.Errorf("counts %+v", c)
	}
}
