package world_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/tether-ecs/tether/test/world/autoscalingsim"
	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/world"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// seen is one event as a rule delivered it, with what EC2 said of the
// instance at that moment.
type seen struct {
	ev      worldapi.Event
	ec2Then string
}

// busLog records every aws.autoscaling and aws.ec2 instance event the bus
// delivers, noting the instance's EC2 state at delivery.
type busLog struct {
	mu  sync.Mutex
	all []seen
}

func recordBus(t *testing.T, w *world.World) *busLog {
	t.Helper()
	l := &busLog{}
	target := eventbus.FuncTarget{Name: "record", Fn: func(_ context.Context, e worldapi.Event) error {
		var d struct {
			ID  string `json:"instance-id"`
			ID2 string `json:"EC2InstanceId"`
		}
		_ = json.Unmarshal(e.Detail, &d)
		st, _ := w.EC2().InstanceState(d.ID + d.ID2)
		l.mu.Lock()
		l.all = append(l.all, seen{e, st})
		l.mu.Unlock()
		return nil
	}}
	pattern := `{"source":["aws.autoscaling","aws.ec2"],"detail-type":["EC2 Instance-terminate Lifecycle Action","EC2 Instance-launch Lifecycle Action",
"EC2 Instance Terminate Successful","EC2 Instance Launch Successful","EC2 Instance State-change Notification",
"EC2 Spot Instance Interruption Warning","EC2 Instance Rebalance Recommendation"]}`
	if err := w.Bus().PutRule("record-hosts", pattern, target); err != nil {
		t.Fatal(err)
	}
	return l
}

// of lists the events about instance id, in delivery order.
func (l *busLog) of(id string) []seen {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []seen
	for _, s := range l.all {
		if strings.Contains(string(s.ev.Detail), `"`+id+`"`) {
			out = append(out, s)
		}
	}
	return out
}

// names are the detail types (EC2 states for state changes) of events,
// sorted: EventBridge does not keep the order events were sent in, nor
// does the world's bus.
func names(ss []seen) string {
	var out []string
	for _, s := range ss {
		if s.ev.DetailType == "EC2 Instance State-change Notification" {
			var d struct{ State string }
			_ = json.Unmarshal(s.ev.Detail, &d)
			out = append(out, d.State)
			continue
		}
		out = append(out, s.ev.DetailType)
	}
	slices.Sort(out)
	return strings.Join(out, " | ")
}

// detailKeys are the detail's top-level keys, sorted.
func detailKeys(t *testing.T, e worldapi.Event) []string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(e.Detail, &m); err != nil {
		t.Fatal(err)
	}
	return slices.Sorted(maps.Keys(m))
}

// TestScaleInThroughTerminationHook: the world's group scales in through
// its termination hook: the picked instance waits in Terminating:Wait,
// still running in EC2 and ACTIVE in ECS, with the documented lifecycle
// event on the bus; CompleteLifecycleAction (the SDK, by token from the
// event) lets EC2 terminate it, and ECS and the bus follow.
func TestScaleInThroughTerminationHook(t *testing.T) {
	w := world.StartT(t, world.Options{AZs: 2, Seed: 11})
	ctx := ctxT(t)
	log := recordBus(t, w)
	if err := w.CreateAutoScalingGroup(ctx, world.AutoScalingGroupOptions{Name: "ecs-asg", Desired: 2,
		Hooks: []autoscalingsim.HookSpec{{Name: "tether-drain", Transition: autoscalingsim.TransitionTerminating, Heartbeat: 3600, DefaultResult: "CONTINUE"}}}); err != nil {
		t.Fatal(err)
	}
	g, _ := w.AutoScaling().Group("ecs-asg")
	for _, in := range g.Instances {
		wi, err := w.Instance(in.ID)
		if err != nil || wi.ContainerInstanceArn == "" || wi.Spot {
			t.Errorf("group instance %s in the world: %+v %v", in.ID, wi, err)
		}
	}
	picked, err := w.ScaleIn(ctx, "ecs-asg", 1)
	if err != nil || len(picked) != 1 {
		t.Fatalf("%v %v", picked, err)
	}
	victim := picked[0]
	if err := w.WaitLifecycleState(ctx, victim, autoscalingsim.StateTerminatingWait); err != nil {
		t.Fatal(err)
	}
	if err := w.Bus().Settle(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := w.EC2().InstanceState(victim); st != "running" || containerInstance(w, victim).Status != "ACTIVE" {
		t.Errorf("held instance: EC2 %s, ECS %+v", st, containerInstance(w, victim))
	}
	var action worldapi.Event
	for _, s := range log.of(victim) {
		if s.ev.DetailType == autoscalingsim.DetailTerminateLifecycleAction {
			action = s.ev
		}
	}
	if action.Source != "aws.autoscaling" || len(action.Resources) != 1 || action.Resources[0] != g.ARN {
		t.Fatalf("lifecycle action event %+v", action)
	}
	if keys := strings.Join(detailKeys(t, action), ","); keys != "AutoScalingGroupName,Destination,EC2InstanceId,LifecycleActionToken,LifecycleHookName,LifecycleTransition,Origin" {
		t.Errorf("lifecycle action detail keys %s", keys)
	}
	var d autoscalingsim.LifecycleActionDetail
	_ = json.Unmarshal(action.Detail, &d)

	client := autoscaling.NewFromConfig(w.AWSConfig())
	if _, err := client.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{AutoScalingGroupName: aws.String(d.AutoScalingGroupName),
		LifecycleHookName: aws.String(d.LifecycleHookName), LifecycleActionToken: aws.String(d.LifecycleActionToken), InstanceId: aws.String(d.EC2InstanceID),
		LifecycleActionResult: aws.String("CONTINUE")}); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitLifecycleState(ctx, victim, autoscalingsim.StateTerminated); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "ECS told the instance is gone", func() (bool, string) {
		ci := containerInstance(w, victim)
		return ci.Status == "INACTIVE", ci.Status
	})
	if err := w.Bus().Settle(ctx); err != nil {
		t.Fatal(err)
	}
	want := "EC2 Instance Launch Successful | EC2 Instance Terminate Successful | EC2 Instance-terminate Lifecycle Action | pending | running | shutting-down | terminated"
	if got := names(log.of(victim)); got != want {
		t.Errorf("bus, for %s:\n got %s\nwant %s", victim, got, want)
	}
	for _, s := range log.of(victim) {
		// The hold: the action reached the bus while EC2 still ran the
		// instance; Terminate Successful once EC2 had terminated it.
		if s.ev.DetailType == autoscalingsim.DetailTerminateLifecycleAction && s.ec2Then != "running" {
			t.Errorf("lifecycle action delivered when EC2 said %s", s.ec2Then)
		}
		if s.ev.DetailType == autoscalingsim.DetailTerminateSuccessful {
			if s.ec2Then != "terminated" {
				t.Errorf("terminate successful delivered when EC2 said %s", s.ec2Then)
			}
			if keys := strings.Join(detailKeys(t, s.ev), ","); keys != "ActivityId,AutoScalingGroupName,Cause,Description,Destination,Details,EC2InstanceId,EndTime,Origin,RequestId,StartTime,StatusCode,StatusMessage" {
				t.Errorf("terminate successful keys %s", keys)
			}
		}
	}
	if calls := w.Counts().Calls["autoscaling:CompleteLifecycleAction"]; calls != 1 {
		t.Errorf("CompleteLifecycleAction calls: %d", calls)
	}
}

// TestTerminationHookTimesOutWithDefaultResult: nobody completes the
// action; once the heartbeat timeout (30 s of world time) passes, the
// DefaultResult (CONTINUE) applies and EC2 terminates the instance.
func TestTerminationHookTimesOutWithDefaultResult(t *testing.T) {
	w := world.StartT(t, world.Options{Seed: 12, TimeScale: 0.005})
	ctx := ctxT(t)
	if err := w.CreateAutoScalingGroup(ctx, world.AutoScalingGroupOptions{Name: "g", Desired: 1,
		Hooks: []autoscalingsim.HookSpec{{Name: "drain", Transition: autoscalingsim.TransitionTerminating, Heartbeat: 30, DefaultResult: "CONTINUE"}}}); err != nil {
		t.Fatal(err)
	}
	picked, err := w.ScaleIn(ctx, "g", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WaitLifecycleState(ctx, picked[0], autoscalingsim.StateTerminated); err != nil {
		t.Fatal(err)
	}
	if st, _ := w.EC2().InstanceState(picked[0]); st != "terminated" {
		t.Errorf("EC2 %s", st)
	}
	if n := w.Counts().Calls["autoscaling:CompleteLifecycleAction"]; n != 0 {
		t.Errorf("%d completions: the timeout, not a call, ended the wait", n)
	}
}

// TestSpotInterruptionWarnsBeforeTheInstanceGoes: a Spot Instance of a
// group gets the rebalance recommendation and the interruption warning
// while EC2 still says running; SpotNotice later EC2 terminates it; Auto
// Scaling then takes it through the termination hook (after the fact, as
// the user guide says) and launches a replacement. An On-Demand instance
// cannot be interrupted.
func TestSpotInterruptionWarnsBeforeTheInstanceGoes(t *testing.T) {
	w := world.StartT(t, world.Options{Instances: 1, Seed: 13, TimeScale: 0.005})
	ctx := ctxT(t)
	log := recordBus(t, w)
	if _, err := w.SpotInterrupt(ctx, w.Instances()[0].ID, "terminate"); !errors.Is(err, world.ErrNotSpot) {
		t.Errorf("interrupting an On-Demand instance: %v", err)
	}
	if err := w.CreateAutoScalingGroup(ctx, world.AutoScalingGroupOptions{Name: "spot", Desired: 1, Spot: true,
		Hooks: []autoscalingsim.HookSpec{{Name: "drain", Transition: autoscalingsim.TransitionTerminating, Heartbeat: 30, DefaultResult: "CONTINUE"}}}); err != nil {
		t.Fatal(err)
	}
	ids, _ := w.AutoScaling().InService("spot")
	id := ids[0]
	if in, _ := w.Instance(id); !in.Spot {
		t.Fatalf("%s is not Spot", id)
	}
	due, err := w.SpotInterrupt(ctx, id, "terminate")
	if err != nil {
		t.Fatal(err)
	}
	// The warning went out before SpotInterrupt returned; EC2 acts only at
	// the due time (checked only while it has not come).
	if st, _ := w.EC2().InstanceState(id); time.Now().Before(due) && st != "running" {
		t.Errorf("before the notice ran out EC2 said %s", st)
	}
	if notice := w.SpotNotice(); notice != time.Duration(float64(2*time.Minute)*0.005) {
		t.Errorf("spot notice %v, want two minutes of world time", notice)
	}
	waitFor(t, ctx, "a replacement InService and the interrupted instance Terminated", func() (bool, string) {
		now, _ := w.AutoScaling().InService("spot")
		in, _ := w.AutoScaling().Instance(id)
		return len(now) == 1 && now[0] != id && in.LifecycleState == autoscalingsim.StateTerminated, in.LifecycleState + " " + strings.Join(now, ",")
	})
	if err := w.Bus().Settle(ctx); err != nil {
		t.Fatal(err)
	}
	evs := log.of(id)
	want := "EC2 Instance Launch Successful | EC2 Instance Rebalance Recommendation | EC2 Instance Terminate Successful | EC2 Instance-terminate Lifecycle Action | EC2 Spot Instance Interruption Warning | pending | running | shutting-down | terminated"
	if got := names(evs); got != want {
		t.Errorf("bus, for %s:\n got %s\nwant %s", id, got, want)
	}
	for _, s := range evs {
		// Without Capacity Rebalancing the hook fires only once EC2 has
		// interrupted the instance.
		if s.ev.DetailType == autoscalingsim.DetailTerminateLifecycleAction && s.ec2Then != "shutting-down" && s.ec2Then != "terminated" {
			t.Errorf("lifecycle action for the Spot Instance delivered when EC2 said %s", s.ec2Then)
		}
		if s.ev.DetailType == "EC2 Spot Instance Interruption Warning" {
			if keys := strings.Join(detailKeys(t, s.ev), ","); keys != "instance-action,instance-id" || s.ev.Source != "aws.ec2" ||
				!strings.HasSuffix(s.ev.Resources[0], ":instance/"+id) {
				t.Errorf("warning %+v %s", s.ev.Resources, s.ev.Detail)
			}
		}
	}
}

// TestHungGroupInstanceIsReplaced: a hung instance stays running in EC2
// with its agents silent; once its instance status check is impaired for
// Auto Scaling's grace, the group marks it Unhealthy, takes it through the
// termination hook and replaces it.
func TestHungGroupInstanceIsReplaced(t *testing.T) {
	w := world.StartT(t, world.Options{Seed: 14, TimeScale: 0.005})
	ctx := ctxT(t)
	if err := w.CreateAutoScalingGroup(ctx, world.AutoScalingGroupOptions{Name: "g", Desired: 1,
		Hooks: []autoscalingsim.HookSpec{{Name: "drain", Transition: autoscalingsim.TransitionTerminating, Heartbeat: 30, DefaultResult: "ABANDON"}}}); err != nil {
		t.Fatal(err)
	}
	ids, _ := w.AutoScaling().InService("g")
	if err := w.HangInstance(ctx, ids[0], 0); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitLifecycleState(ctx, ids[0], autoscalingsim.StateTerminatingWait); err != nil {
		t.Fatal(err)
	}
	if in, _ := w.AutoScaling().Instance(ids[0]); in.HealthStatus != autoscalingsim.Unhealthy {
		t.Errorf("hung instance %+v", in)
	}
	if st, _ := w.EC2().InstanceState(ids[0]); st != "running" || pingStatus(t, w, ids[0]) != "ConnectionLost" {
		t.Errorf("held hung instance: EC2 %s, SSM %s", st, pingStatus(t, w, ids[0]))
	}
	if err := w.WaitLifecycleState(ctx, ids[0], autoscalingsim.StateTerminated); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "a replacement InService", func() (bool, string) {
		now, _ := w.AutoScaling().InService("g")
		return len(now) == 1 && now[0] != ids[0], strings.Join(now, ",")
	})
}
