package autoscalingsim

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/tether-ecs/tether/test/world/motoserver"
)

// TestAgainstMoto runs the same calls against this Auto Scaling and moto's
// (server mode) and holds ours to the shapes and codes moto answers where
// moto implements them: groups from a launch template, lifecycle hooks
// (defaults: ABANDON, 3600 s), the desired-capacity bounds, the instances'
// lifecycle states and the TerminateInstanceInAutoScalingGroup activity.
// moto implements neither CompleteLifecycleAction nor
// RecordLifecycleActionHeartbeat and its hooks hold no instance, so those
// are checked against the API reference and user guide only
// (sdk_test.go).
func TestAgainstMoto(t *testing.T) {
	url := motoserver.Start(t)
	ctx := context.Background()
	creds := credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")
	motoEC2 := ec2.New(ec2.Options{Region: "us-west-2", BaseEndpoint: aws.String(url), Credentials: creds})
	if _, err := motoEC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("ecs-ondemand"),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Medium}}); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, 1)
	targets := []struct {
		name string
		c    *autoscaling.Client
	}{
		{"autoscalingsim", w.client},
		{"moto", autoscaling.New(autoscaling.Options{Region: "us-west-2", BaseEndpoint: aws.String(url), Credentials: creds})},
	}
	for _, tg := range targets {
		c := tg.c
		if _, err := c.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g"),
			MinSize: aws.Int32(1), MaxSize: aws.Int32(3), DesiredCapacity: aws.Int32(2), AvailabilityZones: []string{azA},
			LaunchTemplate: &types.LaunchTemplateSpecification{LaunchTemplateName: aws.String("ecs-ondemand"), Version: aws.String("$Latest")}}); err != nil {
			t.Fatalf("%s: %v", tg.name, err)
		}
		// Our instances launch in the background; moto's at once.
		var groups *autoscaling.DescribeAutoScalingGroupsOutput
		eventually(t, tg.name+": 2 instances InService", func() (bool, string) {
			var err error
			groups, err = c.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"g", "absent"}})
			if err != nil || len(groups.AutoScalingGroups) != 1 {
				return false, "describe failed"
			}
			n := 0
			for _, in := range groups.AutoScalingGroups[0].Instances {
				if string(in.LifecycleState) == StateInService && aws.ToString(in.HealthStatus) == Healthy {
					n++
				}
			}
			return n == 2, fmt.Sprintf("%+v", groups.AutoScalingGroups[0].Instances)
		})
		g := groups.AutoScalingGroups[0]
		if aws.ToInt32(g.DesiredCapacity) != 2 || aws.ToString(g.LaunchTemplate.LaunchTemplateName) != "ecs-ondemand" || aws.ToString(g.HealthCheckType) != "EC2" ||
			aws.ToInt32(g.DefaultCooldown) != 300 || len(g.AvailabilityZones) != 1 || g.CreatedTime == nil || aws.ToString(g.AutoScalingGroupARN) == "" {
			t.Errorf("%s: group %+v", tg.name, g)
		}
		// moto replaces a group created twice and takes a desired capacity
		// above the max: it is kinder than the model (AlreadyExistsFault)
		// and AWS there, so those two are checked on ours only.
		if tg.name != "moto" {
			if _, err := c.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g"),
				MinSize: aws.Int32(2), MaxSize: aws.Int32(3), AvailabilityZones: []string{azA},
				LaunchTemplate: &types.LaunchTemplateSpecification{LaunchTemplateName: aws.String("ecs-ondemand")}}); code(t, err) != "AlreadyExists" {
				t.Errorf("%s: duplicate group: %v", tg.name, err)
			}
			if _, err := c.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("g"), DesiredCapacity: aws.Int32(4)}); err == nil {
				t.Errorf("%s: desired above max accepted", tg.name)
			}
		}

		if _, err := c.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{AutoScalingGroupName: aws.String("g"), LifecycleHookName: aws.String("drain"),
			LifecycleTransition: aws.String(TransitionTerminating)}); err != nil {
			t.Fatalf("%s: %v", tg.name, err)
		}
		hooks, err := c.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String("g")})
		if err != nil || len(hooks.LifecycleHooks) != 1 {
			t.Fatalf("%s: %+v %v", tg.name, hooks, err)
		}
		h := hooks.LifecycleHooks[0]
		if aws.ToString(h.DefaultResult) != ResultAbandon || aws.ToInt32(h.HeartbeatTimeout) != 3600 || aws.ToString(h.LifecycleTransition) != TransitionTerminating ||
			aws.ToString(h.AutoScalingGroupName) != "g" || aws.ToString(h.LifecycleHookName) != "drain" {
			t.Errorf("%s: hook %+v", tg.name, h)
		}
		if _, err := c.DeleteLifecycleHook(ctx, &autoscaling.DeleteLifecycleHookInput{AutoScalingGroupName: aws.String("g"), LifecycleHookName: aws.String("drain")}); err != nil {
			t.Errorf("%s: delete hook: %v", tg.name, err)
		}

		id := aws.ToString(g.Instances[0].InstanceId)
		inst, err := c.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{id, "i-0000000000000dead"}})
		if err != nil || len(inst.AutoScalingInstances) != 1 {
			t.Fatalf("%s: %+v %v", tg.name, inst, err)
		}
		if d := inst.AutoScalingInstances[0]; aws.ToString(d.AutoScalingGroupName) != "g" || aws.ToString(d.AvailabilityZone) != azA ||
			aws.ToString(d.LifecycleState) != StateInService || aws.ToString(d.HealthStatus) != Healthy || d.ProtectedFromScaleIn == nil {
			t.Errorf("%s: instance %+v", tg.name, d)
		}
		act, err := c.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{InstanceId: aws.String(id),
			ShouldDecrementDesiredCapacity: aws.Bool(true)})
		if err != nil || act.Activity == nil || aws.ToString(act.Activity.AutoScalingGroupName) != "g" || aws.ToString(act.Activity.ActivityId) == "" {
			t.Fatalf("%s: terminate: %+v %v", tg.name, act, err)
		}
		eventually(t, tg.name+": desired 1", func() (bool, string) {
			out, err := c.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"g"}})
			return err == nil && aws.ToInt32(out.AutoScalingGroups[0].DesiredCapacity) == 1, "not yet"
		})
	}
}
