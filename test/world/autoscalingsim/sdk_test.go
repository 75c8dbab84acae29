package autoscalingsim

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
)

// createGroup creates a group through the SDK with the given hooks.
func createGroup(t *testing.T, w *world, name, template string, desired int, azs []string, hooks ...types.LifecycleHookSpecification) {
	t.Helper()
	_, err := w.client.CreateAutoScalingGroup(context.Background(), &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name), MinSize: aws.Int32(0), MaxSize: aws.Int32(10), DesiredCapacity: aws.Int32(int32(desired)),
		LaunchTemplate:    &types.LaunchTemplateSpecification{LaunchTemplateName: aws.String(template), Version: aws.String("$Latest")},
		AvailabilityZones: azs, LifecycleHookSpecificationList: hooks,
		Tags: []types.Tag{{Key: aws.String("team"), Value: aws.String("storage"), PropagateAtLaunch: aws.Bool(true)}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func terminateHook(name string, heartbeat int32, result string) types.LifecycleHookSpecification {
	return types.LifecycleHookSpecification{LifecycleHookName: aws.String(name), LifecycleTransition: aws.String(TransitionTerminating),
		HeartbeatTimeout: aws.Int32(heartbeat), DefaultResult: aws.String(result), NotificationMetadata: aws.String(`{"cluster":"default"}`)}
}

// TestScaleInHoldsUntilCompleteLifecycleAction: a scale-in with a
// termination hook leaves the picked instance in Terminating:Wait, running
// in EC2, with one "EC2 Instance-terminate Lifecycle Action" in the
// documented shape; unknown tokens and instances are refused with AWS's
// messages; CompleteLifecycleAction by token lets EC2 terminate it (its
// shutting-down and terminated events after the lifecycle event), then
// "EC2 Instance Terminate Successful". The token is no longer active after.
func TestScaleInHoldsUntilCompleteLifecycleAction(t *testing.T) {
	w := newWorld(t, 1)
	ctx := context.Background()
	createGroup(t, w, "ecs-asg", "ecs-ondemand", 2, []string{azA}, terminateHook("tether-drain", 3600, ResultContinue))
	ids := w.inService(t, "ecs-asg", 2)

	if _, err := w.client.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("ecs-asg"), DesiredCapacity: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	victim := ids[0] // the oldest: closest to the next billing hour
	eventually(t, victim+" in Terminating:Wait", func() (bool, string) {
		st := w.lifecycleState(t, victim)
		return st == StateTerminatingWait, st
	})
	if st := w.ec2State(victim); st != "running" {
		t.Errorf("held instance is %s in EC2, want running", st)
	}
	if st := w.lifecycleState(t, ids[1]); st != StateInService {
		t.Errorf("the other instance is %s", st)
	}
	evs := w.events.lifecycleEvents(t, victim)
	if len(evs) != 1 {
		t.Fatalf("lifecycle events for %s: %+v", victim, evs)
	}
	ev := evs[0]
	if ev.AutoScalingGroupName != "ecs-asg" || ev.LifecycleHookName != "tether-drain" || ev.LifecycleTransition != TransitionTerminating ||
		len(ev.LifecycleActionToken) != 36 || ev.NotificationMetadata != `{"cluster":"default"}` || ev.Origin != "AutoScalingGroup" || ev.Destination != "EC2" {
		t.Errorf("lifecycle event detail %+v", ev)
	}

	complete := func(token, instance string) error {
		in := &autoscaling.CompleteLifecycleActionInput{AutoScalingGroupName: aws.String("ecs-asg"), LifecycleHookName: aws.String("tether-drain"),
			LifecycleActionResult: aws.String(ResultContinue)}
		if token != "" {
			in.LifecycleActionToken = aws.String(token)
		}
		if instance != "" {
			in.InstanceId = aws.String(instance)
		}
		_, err := w.client.CompleteLifecycleAction(ctx, in)
		return err
	}
	unknown := "00000000-0000-4000-8000-000000000000"
	if err := complete(unknown, ""); code(t, err) != "ValidationError" || message(err) != "No active Lifecycle Action found with token "+unknown {
		t.Errorf("unknown token: %v", err)
	}
	if err := complete("", ids[1]); code(t, err) != "ValidationError" || message(err) != "No active Lifecycle Action found with instance ID "+ids[1] {
		t.Errorf("instance without an action: %v", err)
	}
	if err := complete(ev.LifecycleActionToken, ids[1]); code(t, err) != "ValidationError" {
		t.Errorf("token with another instance's id: %v", err)
	}
	if st := w.lifecycleState(t, victim); st != StateTerminatingWait {
		t.Fatalf("refused completions moved the instance to %s", st)
	}
	if err := complete(ev.LifecycleActionToken, victim); err != nil {
		t.Fatal(err)
	}
	eventually(t, victim+" Terminated", func() (bool, string) {
		st := w.lifecycleState(t, victim)
		return st == StateTerminated && w.ec2State(victim) == "terminated", st + "/" + w.ec2State(victim)
	})
	if err := complete(ev.LifecycleActionToken, ""); code(t, err) != "ValidationError" {
		t.Errorf("completing a finished action: %v", err)
	}

	// Order on the bus: the lifecycle action, EC2's shutting-down and
	// terminated, then Auto Scaling's Terminate Successful.
	var order []string
	for _, e := range w.events.list() {
		if !strings.Contains(string(e.Detail), victim) {
			continue
		}
		switch e.DetailType {
		case "EC2 Instance State-change Notification":
			var d struct{ State string }
			_ = json.Unmarshal(e.Detail, &d)
			order = append(order, d.State)
		default:
			order = append(order, e.DetailType)
		}
		if e.DetailType == DetailTerminateSuccessful {
			var d ActivityDetail
			if err := json.Unmarshal(e.Detail, &d); err != nil {
				t.Fatal(err)
			}
			g, _ := w.asg.Group("ecs-asg")
			if e.Source != "aws.autoscaling" || len(e.Resources) != 2 || e.Resources[0] != g.ARN || !strings.HasSuffix(e.Resources[1], ":instance/"+victim) ||
				d.StatusCode != "InProgress" || d.Description != "Terminating EC2 instance: "+victim || d.Details["Availability Zone"] != azA ||
				!strings.HasPrefix(d.Details["Subnet ID"], "subnet-") || d.Origin != "AutoScalingGroup" || d.Destination != "EC2" ||
				!strings.Contains(d.Cause, "was selected for termination") || d.StartTime == "" || d.EndTime == "" {
				t.Errorf("terminate successful: %+v %s", e.Resources, e.Detail)
			}
		}
	}
	want := "pending running EC2 Instance Launch Successful EC2 Instance-terminate Lifecycle Action shutting-down terminated EC2 Instance Terminate Successful"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("events for %s:\n got %s\nwant %s", victim, got, want)
	}
	g, _ := w.asg.Group("ecs-asg")
	if g.Desired != 1 {
		t.Errorf("desired %d", g.Desired)
	}
}

// TestHeartbeatTimeoutEndsWithDefaultResult: with no completion, the
// hook's DefaultResult applies once its heartbeat timeout passes (world
// time): CONTINUE on a termination hook lets the instance terminate;
// ABANDON on a launch hook terminates the new instance and a replacement
// launches. A heartbeat pushes the deadline out by the heartbeat timeout,
// never past the global timeout.
func TestHeartbeatTimeoutEndsWithDefaultResult(t *testing.T) {
	w := newWorld(t, 0.002) // 30 s of world time is 60 ms
	ctx := context.Background()
	createGroup(t, w, "g", "ecs-ondemand", 1, []string{azA}, terminateHook("drain", 30, ResultContinue))
	first := w.inService(t, "g", 1)[0]
	if _, err := w.client.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("g"), DesiredCapacity: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, first+" terminated after the heartbeat timeout", func() (bool, string) {
		return w.ec2State(first) == "terminated", w.lifecycleState(t, first) + "/" + w.ec2State(first)
	})
	if n := len(w.events.lifecycleEvents(t, first)); n != 1 {
		t.Errorf("%d lifecycle events", n)
	}

	// A launch hook whose DefaultResult is ABANDON: each launched instance
	// times out in Pending:Wait and is terminated, and the group keeps
	// trying. Complete one by instance id to keep it.
	if _, err := w.client.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{AutoScalingGroupName: aws.String("g"), LifecycleHookName: aws.String("boot"),
		LifecycleTransition: aws.String(TransitionLaunching), HeartbeatTimeout: aws.Int32(30)}); err != nil {
		t.Fatal(err)
	}
	hooks, err := w.client.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String("g"), LifecycleHookNames: []string{"boot"}})
	if err != nil || len(hooks.LifecycleHooks) != 1 {
		t.Fatalf("%+v %v", hooks, err)
	}
	if h := hooks.LifecycleHooks[0]; aws.ToString(h.DefaultResult) != ResultAbandon || aws.ToInt32(h.GlobalTimeout) != 3000 || aws.ToInt32(h.HeartbeatTimeout) != 30 {
		t.Errorf("hook defaults: result %s global %d heartbeat %d", aws.ToString(h.DefaultResult), aws.ToInt32(h.GlobalTimeout), aws.ToInt32(h.HeartbeatTimeout))
	}
	if _, err := w.client.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("g"), DesiredCapacity: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	var abandoned string
	eventually(t, "a launch abandoned by its timeout", func() (bool, string) {
		for _, a := range w.events.list() {
			if a.DetailType == DetailLaunchLifecycleAction {
				var d LifecycleActionDetail
				_ = json.Unmarshal(a.Detail, &d)
				if w.ec2State(d.EC2InstanceID) == "terminated" {
					abandoned = d.EC2InstanceID
					return true, ""
				}
			}
		}
		return false, "no launch-hook instance terminated yet"
	})
	if st := w.lifecycleState(t, abandoned); st != StateTerminated && st != "absent" {
		t.Errorf("abandoned launch: %s", st)
	}
	// Raise the timeout, so the next launch waits long enough to complete.
	if _, err := w.client.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{AutoScalingGroupName: aws.String("g"), LifecycleHookName: aws.String("boot"),
		HeartbeatTimeout: aws.Int32(7200)}); err != nil {
		t.Fatal(err)
	}
	var waiting ActionInfo
	eventually(t, "a launch in Pending:Wait under the 7200 s hook", func() (bool, string) {
		for _, a := range w.asg.Actions() {
			if a.Hook == "boot" && a.GlobalDeadline.Sub(a.Started) > 100*time.Second {
				waiting = a
				return true, ""
			}
		}
		return false, "none"
	})
	if got := waiting.GlobalDeadline.Sub(waiting.Started); got != time.Duration(float64(172800*time.Second)*0.002) {
		t.Errorf("global timeout of a 7200 s hook: %v of real time, want 48 h scaled", got)
	}
	before := waiting.Deadline
	if _, err := w.client.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{AutoScalingGroupName: aws.String("g"),
		LifecycleHookName: aws.String("boot"), InstanceId: aws.String(waiting.InstanceID)}); err != nil {
		t.Fatal(err)
	}
	var after ActionInfo
	for _, a := range w.asg.Actions() {
		if a.Token == waiting.Token {
			after = a
		}
	}
	if !after.Deadline.After(before) {
		t.Errorf("heartbeat did not move the deadline: %v -> %v", before, after.Deadline)
	}
	if _, err := w.client.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{AutoScalingGroupName: aws.String("g"),
		LifecycleHookName: aws.String("boot"), InstanceId: aws.String(waiting.InstanceID), LifecycleActionResult: aws.String(ResultContinue)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, waiting.InstanceID+" InService", func() (bool, string) {
		st := w.lifecycleState(t, waiting.InstanceID)
		return st == StateInService, st
	})
	if _, err := w.client.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{AutoScalingGroupName: aws.String("g"),
		LifecycleHookName: aws.String("boot"), LifecycleActionToken: aws.String(waiting.Token)}); code(t, err) != "ValidationError" {
		t.Errorf("heartbeat on a completed action: %v", err)
	}
}

// TestRequestsAreChecked: the API reference's rules, with AWS's codes.
func TestRequestsAreChecked(t *testing.T) {
	w := newWorld(t, 1)
	ctx := context.Background()
	createGroup(t, w, "g", "ecs-ondemand", 1, []string{azA})
	id := w.inService(t, "g", 1)[0]
	name := aws.String("g")
	cases := []struct {
		what, code, msg string
		call            func() error
	}{
		{"desired above max", "ValidationError", "New SetDesiredCapacity value 11 is above max value 10 for the AutoScalingGroup.", func() error {
			_, err := w.client.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: name, DesiredCapacity: aws.Int32(11)})
			return err
		}},
		{"unknown group", "ValidationError", "AutoScalingGroup name not found - AutoScalingGroup 'nope' not found", func() error {
			_, err := w.client.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("nope"), DesiredCapacity: aws.Int32(1)})
			return err
		}},
		{"update below min", "ValidationError", "Desired capacity:0 must be between the specified min size:1 and max size:10", func() error {
			_, err := w.client.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: name, MinSize: aws.Int32(1), DesiredCapacity: aws.Int32(0)})
			return err
		}},
		{"duplicate group", "AlreadyExists", "", func() error {
			_, err := w.client.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: name, MinSize: aws.Int32(0), MaxSize: aws.Int32(1),
				LaunchTemplate: &types.LaunchTemplateSpecification{LaunchTemplateName: aws.String("ecs-ondemand")}, AvailabilityZones: []string{azA}})
			return err
		}},
		{"no launch template", "ValidationError", "Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter.", func() error {
			_, err := w.client.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("h"), MinSize: aws.Int32(0), MaxSize: aws.Int32(1), AvailabilityZones: []string{azA}})
			return err
		}},
		{"unknown launch template", "ValidationError", "You must use a valid fully-formed launch template. The specified launch template, with template name nope, does not exist.", func() error {
			_, err := w.client.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("h"), MinSize: aws.Int32(0), MaxSize: aws.Int32(1),
				LaunchTemplate: &types.LaunchTemplateSpecification{LaunchTemplateName: aws.String("nope")}, AvailabilityZones: []string{azA}})
			return err
		}},
		{"heartbeat too short", "ValidationError", "", func() error {
			_, err := w.client.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{AutoScalingGroupName: name, LifecycleHookName: aws.String("x"),
				LifecycleTransition: aws.String(TransitionTerminating), HeartbeatTimeout: aws.Int32(29)})
			return err
		}},
		{"bad transition", "ValidationError", "", func() error {
			_, err := w.client.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{AutoScalingGroupName: name, LifecycleHookName: aws.String("x"),
				LifecycleTransition: aws.String("autoscaling:EC2_INSTANCE_STOPPING")})
			return err
		}},
		{"new hook without a transition", "ValidationError", "", func() error {
			_, err := w.client.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{AutoScalingGroupName: name, LifecycleHookName: aws.String("x")})
			return err
		}},
		{"SQS notification target", "ValidationError", "", func() error {
			_, err := w.client.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{AutoScalingGroupName: name, LifecycleHookName: aws.String("x"),
				LifecycleTransition: aws.String(TransitionTerminating), NotificationTargetARN: aws.String("arn:aws:sqs:us-west-2:123456789012:q"),
				RoleARN: aws.String("arn:aws:iam::123456789012:role/r")})
			return err
		}},
		{"bad result", "ValidationError", "", func() error {
			_, err := w.client.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{AutoScalingGroupName: name, LifecycleHookName: aws.String("x"),
				InstanceId: aws.String(id), LifecycleActionResult: aws.String("RETRY")})
			return err
		}},
		{"neither token nor instance", "ValidationError", "", func() error {
			_, err := w.client.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{AutoScalingGroupName: name, LifecycleHookName: aws.String("x"),
				LifecycleActionResult: aws.String(ResultContinue)})
			return err
		}},
		{"decrement below min", "ValidationError", "Currently, desiredSize equals minSize (1). Terminating instance without replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag to false or lower group's min size.", func() error {
			if _, err := w.client.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: name, MinSize: aws.Int32(1)}); err != nil {
				return err
			}
			_, err := w.client.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{InstanceId: aws.String(id), ShouldDecrementDesiredCapacity: aws.Bool(true)})
			return err
		}},
		{"unknown instance", "ValidationError", "Instance Id not found - No managed instance found for instance ID: i-0123456789abcdef0", func() error {
			_, err := w.client.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{InstanceId: aws.String("i-0123456789abcdef0"), ShouldDecrementDesiredCapacity: aws.Bool(false)})
			return err
		}},
	}
	for _, c := range cases {
		err := c.call()
		if code(t, err) != c.code || (c.msg != "" && message(err) != c.msg) {
			t.Errorf("%s: %v, want %s %q", c.what, err, c.code, c.msg)
		}
	}
	if g, _ := w.asg.Group("g"); g.Desired != 1 || len(g.Hooks) != 0 {
		t.Errorf("refused requests changed the group: %+v", g)
	}
}

// TestTerminationPolicyAndReplacement: scale-in takes from the zone with
// the most instances, the oldest there; TerminateInstanceInAutoScalingGroup
// without decrement launches a replacement; an instance EC2 stops is
// unhealthy at once and replaced; one whose status checks stay impaired is
// replaced after the grace; a failed launch sends Launch Unsuccessful and
// is retried. Instances carry aws:autoscaling:groupName.
func TestTerminationPolicyAndReplacement(t *testing.T) {
	w := newWorld(t, 0.001) // the 5 min status-check grace is 300 ms
	ctx := context.Background()
	createGroup(t, w, "g", "ecs-spot", 3, []string{azA, azB})
	ids := w.inService(t, "g", 3)
	zones, perZone := map[string]string{}, map[string]int{}
	for _, id := range ids {
		in, _ := w.asg.Instance(id)
		zones[id] = in.AZ
		perZone[in.AZ]++
		if !in.Spot {
			t.Errorf("%s from the spot template is not Spot", id)
		}
	}
	if perZone[azA] != 2 || perZone[azB] != 1 {
		t.Fatalf("zones not balanced: %v", zones)
	}
	picked, err := w.asg.ScaleIn("g", 1)
	if err != nil || len(picked) != 1 || zones[picked[0]] != azA {
		t.Fatalf("scale in picked %v (%v); zones %v", picked, err, zones)
	}
	eventually(t, picked[0]+" terminated", func() (bool, string) { return w.ec2State(picked[0]) == "terminated", w.ec2State(picked[0]) })

	remaining, _ := w.asg.InService("g")
	out, err := w.client.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{InstanceId: aws.String(remaining[0]),
		ShouldDecrementDesiredCapacity: aws.Bool(false)})
	if err != nil || out.Activity.StatusCode != types.ScalingActivityStatusCodeInProgress || !strings.Contains(aws.ToString(out.Activity.Description), remaining[0]) {
		t.Fatalf("%+v %v", out, err)
	}
	eventually(t, "a replacement InService", func() (bool, string) {
		now, _ := w.asg.InService("g")
		return len(now) == 2 && !slices.Contains(now, remaining[0]), strings.Join(now, ",")
	})

	now, _ := w.asg.InService("g")
	// Auto Scaling sees it stopping and terminates it at once, so the stop
	// may end in terminated: StopInstance's error says so and is expected.
	_ = w.ec2.StopInstance(ctx, now[0], true)
	eventually(t, "the stopped instance replaced", func() (bool, string) {
		in, _ := w.asg.Instance(now[0])
		cur, _ := w.asg.InService("g")
		return in.HealthStatus == Unhealthy && w.ec2State(now[0]) == "terminated" && len(cur) == 2 && !slices.Contains(cur, now[0]),
			in.LifecycleState + " " + in.HealthStatus + " " + strings.Join(cur, ",")
	})

	hungID, _ := w.asg.InService("g")
	if err := w.ec2.HangInstance(hungID[0], 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the impaired instance replaced", func() (bool, string) {
		in, _ := w.asg.Instance(hungID[0])
		return in.HealthStatus == Unhealthy && w.ec2State(hungID[0]) == "terminated", in.LifecycleState
	})

	w.mu.Lock()
	w.failNext = 1
	w.mu.Unlock()
	if _, err := w.client.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String("g"), DesiredCapacity: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	w.inService(t, "g", 3)
	failed := 0
	for _, e := range w.events.list() {
		if e.DetailType == DetailLaunchUnsuccessful {
			var d ActivityDetail
			_ = json.Unmarshal(e.Detail, &d)
			if d.StatusCode != "Failed" || !strings.Contains(d.StatusMessage, "InsufficientInstanceCapacity") {
				t.Errorf("launch unsuccessful detail %s", e.Detail)
			}
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d Launch Unsuccessful events, want 1", failed)
	}
	groups, err := w.client.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"g"}})
	if err != nil || len(groups.AutoScalingGroups) != 1 {
		t.Fatalf("%+v %v", groups, err)
	}
	g := groups.AutoScalingGroups[0]
	if aws.ToInt32(g.DesiredCapacity) != 3 || aws.ToString(g.LaunchTemplate.LaunchTemplateName) != "ecs-spot" || !strings.HasPrefix(aws.ToString(g.AutoScalingGroupARN), "arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:") ||
		len(g.AvailabilityZones) != 2 || aws.ToString(g.HealthCheckType) != "EC2" || len(g.Instances) < 3 {
		t.Errorf("group %+v", g)
	}
}
