package cloud_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/test/world/autoscalingsim"
	"github.com/tether-ecs/tether/test/world/world"
)

// The host seam over the real SDK clients against the local world's EC2,
// ECS and Auto Scaling (their wire protocols and answers): status checks
// before and after a hang, a forced stop, a drain, and a lifecycle action
// heartbeated, completed, and then no longer active (ErrNotFound).
func TestHostsSeamAgainstTheWorld(t *testing.T) {
	w := world.StartT(t, world.Options{Instances: 1, Seed: 21, AutoScalingGroups: []world.AutoScalingGroupOptions{{Name: "g", Desired: 1,
		Hooks: []autoscalingsim.HookSpec{{Name: "tether-test", Transition: autoscalingsim.TransitionTerminating, Heartbeat: 300, DefaultResult: "CONTINUE"}}}}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h := cloud.NewHosts(w.AWSConfig(), cloud.Options{})
	inst := w.Instances()[0]

	got, err := h.InstanceHealth(ctx, inst.ID)
	if err != nil || got.State != "running" || got.Impaired || got.SystemImpaired || got.Summary != "ok" {
		t.Fatalf("healthy instance: %+v, %v", got, err)
	}
	if err := w.HangInstance(ctx, inst.ID, 0); err != nil {
		t.Fatal(err)
	}
	got, err = h.InstanceHealth(ctx, inst.ID)
	if err != nil || !got.Impaired || got.ImpairedSince.IsZero() || got.Summary != "impaired" || got.ImpairedFor(time.Now().Add(time.Minute)) < time.Minute {
		t.Fatalf("hung instance: %+v, %v", got, err)
	}
	if _, err := h.InstanceHealth(ctx, "i-0123456789abcdef0"); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("unknown instance: %v, want ErrNotFound", err)
	}

	if err := h.DrainContainerInstance(ctx, "default", inst.ContainerInstanceArn); err != nil {
		t.Fatal(err)
	}
	for _, ci := range w.ECS().Snapshot("default").Instances {
		if ci.EC2InstanceID == inst.ID && ci.Status != "DRAINING" {
			t.Errorf("container instance %s after the drain", ci.Status)
		}
	}
	if err := h.DrainContainerInstance(ctx, "default", "arn:aws:ecs:us-west-2:123456789012:container-instance/default/0123456789abcdef0123456789abcdef"); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("drain of an unknown container instance: %v, want ErrNotFound", err)
	}

	if err := h.StopInstance(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	for st := ""; st != "stopped"; {
		if st, err = w.EC2().InstanceState(inst.ID); err != nil || (st != "stopping" && st != "stopped") {
			t.Fatalf("after a forced stop EC2 says %q (%v)", st, err)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}

	picked, err := w.ScaleIn(ctx, "g", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WaitLifecycleState(ctx, picked[0], autoscalingsim.StateTerminatingWait); err != nil {
		t.Fatal(err)
	}
	var a cloud.LifecycleAction
	for _, act := range w.AutoScaling().Actions() {
		if act.InstanceID == picked[0] {
			a = cloud.LifecycleAction{Group: act.Group, Hook: act.Hook, InstanceID: act.InstanceID, Token: act.Token}
		}
	}
	if err := h.RecordHeartbeat(ctx, a); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if err := h.CompleteLifecycleAction(ctx, a, cloud.LifecycleContinue); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if err := h.CompleteLifecycleAction(ctx, a, cloud.LifecycleContinue); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("completing it again: %v, want ErrNotFound (no active lifecycle action)", err)
	}
	if err := h.RecordHeartbeat(ctx, a); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("heartbeat of a completed action: %v, want ErrNotFound", err)
	}
	if err := w.WaitLifecycleState(ctx, picked[0], autoscalingsim.StateTerminated); err != nil {
		t.Fatal(err)
	}
}
