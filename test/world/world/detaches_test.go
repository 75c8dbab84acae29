package world_test

import (
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/tether-ecs/tether/test/world/ec2sim"
	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/world"
)

// DetachesAsked records every detach EC2 accepted with EC2's word on the
// instance and what the guest held when it was asked: chaos's facts for
// "no force-detach of a live host" and "no detach while the kernel holds
// the device".
func TestDetachesAskedSayWhatEC2AndTheGuestHeld(t *testing.T) {
	w := world.StartT(t, world.Options{Instances: 2, Seed: 5,
		EC2Latency: map[latency.Op]latency.Dist{ec2sim.OpStopInstance: {Median: time.Hour, P99: time.Hour}}})
	ctx := ctxT(t)
	c := ec2.NewFromConfig(w.AWSConfig())
	ins := w.Instances()
	attach := func(inst, device string) string {
		t.Helper()
		v, err := c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(ins[0].AZ), Size: aws.Int32(1)})
		if err != nil {
			t.Fatal(err)
		}
		id := aws.ToString(v.VolumeId)
		waitFor(t, ctx, id+" available", func() (bool, string) { st, _, _ := w.EC2().VolumeState(id); return st == "available", st })
		if _, err := c.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: v.VolumeId, InstanceId: aws.String(inst), Device: aws.String(device)}); err != nil {
			t.Fatal(err)
		}
		h, _ := w.FakeHost(inst)
		waitFor(t, ctx, id+" on "+inst, func() (bool, string) { _, ok := h.State().Devices[id]; return ok, "" })
		return id
	}
	mounted, held := attach(ins[0].ID, "/dev/sdf"), attach(ins[1].ID, "/dev/sdf")
	h0, _ := w.FakeHost(ins[0].ID)
	if res, err := h0.RunShellScript(ctx, "tether-agent mount --volume-id "+mounted+" --name data --format-if-blank", time.Minute); err != nil || res.ExitCode != 0 {
		t.Fatalf("mount: %+v %v", res, err)
	}
	if _, err := c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(mounted)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(mounted), Force: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	got := w.DetachesAsked(0)
	if len(got) != 2 {
		t.Fatalf("DetachesAsked = %+v; want the detach and the forced one", got)
	}
	d := got[0]
	if d.VolumeID != mounted || d.InstanceID != ins[0].ID || d.Force || d.InstanceState != "running" ||
		d.Guest == nil || !slices.Equal(d.Guest.Mounted, []string{"data"}) || d.Guest.Bindings["data"].Released {
		t.Errorf("the detach of a mounted volume: %+v (guest %+v)", d, d.Guest)
	}
	if f := got[1]; !f.Force || f.InstanceState != "running" {
		t.Errorf("the forced detach from a running instance: %+v", f)
	}

	// A stop takes EC2Latency's time: stopping, where EC2 refuses detaches.
	out, err := c.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{ins[1].ID}})
	if err != nil || out.StoppingInstances[0].CurrentState.Name != ec2types.InstanceStateNameStopping {
		t.Fatalf("StopInstances: %+v %v", out, err)
	}
	if st, _ := w.EC2().InstanceState(ins[1].ID); st != "stopping" {
		t.Fatalf("right after StopInstances: %s; want stopping (EC2Latency)", st)
	}
	if _, err := c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(held), Force: aws.Bool(true)}); err == nil {
		t.Fatal("a detach from a stopping instance was accepted")
	}
	if err := w.StopInstance(ctx, ins[1].ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(held), Force: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	got = w.DetachesAsked(2)
	if len(got) != 1 || got[0].VolumeID != held || got[0].InstanceID != ins[1].ID || got[0].InstanceState != "stopped" || got[0].Guest != nil {
		t.Fatalf("the forced detach from a stopped instance: %+v", got)
	}
}

// A hung instance comes back with ResumeInstance: its agents answer again
// and EC2's checks pass.
func TestResumeInstanceEndsAHang(t *testing.T) {
	w := world.StartT(t, world.Options{Instances: 1, Seed: 6})
	ctx := ctxT(t)
	id := w.Instances()[0].ID
	if err := w.HangInstance(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if pingStatus(t, w, id) != "ConnectionLost" || containerInstance(w, id).AgentConnected {
		t.Fatalf("hung: SSM %s, ECS %+v", pingStatus(t, w, id), containerInstance(w, id))
	}
	if err := w.ResumeInstance(id); err != nil {
		t.Fatal(err)
	}
	st, err := ec2.NewFromConfig(w.AWSConfig()).DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	if pingStatus(t, w, id) != "Online" || !containerInstance(w, id).AgentConnected || st.InstanceStatuses[0].InstanceStatus.Status != ec2types.SummaryStatusOk {
		t.Fatalf("resumed: SSM %s, ECS %+v, EC2 %+v", pingStatus(t, w, id), containerInstance(w, id), st.InstanceStatuses[0].InstanceStatus)
	}
}
