package world_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/world"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// pingStatus is the instance's SSM agent as DescribeInstanceInformation
// reports it.
func pingStatus(t *testing.T, w *world.World, id string) string {
	t.Helper()
	out, err := ssm.NewFromConfig(w.AWSConfig()).DescribeInstanceInformation(ctxT(t), &ssm.DescribeInstanceInformationInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range out.InstanceInformationList {
		if aws.ToString(in.InstanceId) == id {
			return string(in.PingStatus)
		}
	}
	return "absent"
}

func containerInstance(w *world.World, id string) ecssim.InstanceInfo {
	for _, ci := range w.ECS().Snapshot("default").Instances {
		if ci.EC2InstanceID == id {
			return ci
		}
	}
	return ecssim.InstanceInfo{}
}

// waitFor polls cond (bounded by ctx) and fails with what it waited for.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	for {
		ok, now := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waited for %s; now: %s", what, now)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestEC2StopsAndTerminationsReachSSMAndECS: whoever stops or terminates
// an instance (the world's controls or a StopInstances/TerminateInstances
// call, as tether's hung-host rule makes), SSM and ECS see what they would
// in AWS: a stopped instance's agents are gone, a terminated instance's
// container instance is INACTIVE. A hung instance stays running in EC2 with
// its agents silent.
func TestEC2StopsAndTerminationsReachSSMAndECS(t *testing.T) {
	w := world.StartT(t, world.Options{Instances: 4, Seed: 3})
	ctx := ctxT(t)
	ec2c := ec2.NewFromConfig(w.AWSConfig())
	ins := w.Instances()
	byAPIStop, byAPITerminate, byControl, hung := ins[0].ID, ins[1].ID, ins[2].ID, ins[3].ID

	if _, err := ec2c.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{byAPIStop}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ec2c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{byAPITerminate}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the stopped instance's agents gone", func() (bool, string) {
		ping, ci := pingStatus(t, w, byAPIStop), containerInstance(w, byAPIStop)
		return ping == "ConnectionLost" && !ci.AgentConnected && ci.Status == "ACTIVE", ping + " " + ci.Status
	})
	if h, _ := w.FakeHost(byAPIStop); !h.State().Down {
		t.Error("the stopped instance's host still runs")
	}
	waitFor(t, ctx, "the terminated instance deregistered", func() (bool, string) {
		ci := containerInstance(w, byAPITerminate)
		return ci.Status == "INACTIVE" && pingStatus(t, w, byAPITerminate) == "ConnectionLost", ci.Status
	})

	if err := w.StopInstance(ctx, byControl, true); err != nil {
		t.Fatal(err)
	}
	if st, _ := w.EC2().InstanceState(byControl); st != "stopped" || pingStatus(t, w, byControl) != "ConnectionLost" || containerInstance(w, byControl).AgentConnected {
		t.Errorf("after StopInstance: EC2 %s, SSM %s, ECS agent connected %v", st, pingStatus(t, w, byControl), containerInstance(w, byControl).AgentConnected)
	}

	if err := w.HangInstance(ctx, hung, 0); err != nil {
		t.Fatal(err)
	}
	st, err := ec2c.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{InstanceIds: []string{hung}})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.InstanceStatuses) != 1 || st.InstanceStatuses[0].InstanceState.Name != ec2types.InstanceStateNameRunning ||
		st.InstanceStatuses[0].InstanceStatus.Status != ec2types.SummaryStatusImpaired || pingStatus(t, w, hung) != "ConnectionLost" ||
		containerInstance(w, hung).AgentConnected || containerInstance(w, hung).Status != "ACTIVE" {
		t.Errorf("hung instance: %+v, SSM %s, ECS %+v", st.InstanceStatuses, pingStatus(t, w, hung), containerInstance(w, hung))
	}
}

// TestDetachEventsOption: the world's EC2 sends the detachVolume event only
// with Options.DetachEvents.
func TestDetachEventsOption(t *testing.T) {
	for _, on := range []bool{false, true} {
		w := world.StartT(t, world.Options{Instances: 1, DetachEvents: on})
		ctx := ctxT(t)
		ec2c := ec2.NewFromConfig(w.AWSConfig())
		in := w.Instances()[0]
		var mu sync.Mutex
		var seen []string
		record := eventbus.FuncTarget{Name: "record", Fn: func(_ context.Context, e worldapi.Event) error {
			var d struct{ Event, Result string }
			if err := json.Unmarshal(e.Detail, &d); err != nil {
				return err
			}
			mu.Lock()
			seen = append(seen, d.Event+"/"+d.Result)
			mu.Unlock()
			return nil
		}}
		if err := w.Bus().PutRule("ebs-events", `{"source":["aws.ec2"],"detail-type":["EBS Volume Notification"]}`, record); err != nil {
			t.Fatal(err)
		}
		vol, err := ec2c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(in.AZ), Size: aws.Int32(1)})
		if err != nil {
			t.Fatal(err)
		}
		id := aws.ToString(vol.VolumeId)
		available := ec2.NewVolumeAvailableWaiter(ec2c, func(o *ec2.VolumeAvailableWaiterOptions) {
			o.MinDelay, o.MaxDelay = time.Millisecond, 10*time.Millisecond
		})
		if err := available.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := ec2c.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(in.ID), Device: aws.String("/dev/xvdf")}); err != nil {
			t.Fatal(err)
		}
		inUse := ec2.NewVolumeInUseWaiter(ec2c, func(o *ec2.VolumeInUseWaiterOptions) { o.MinDelay, o.MaxDelay = time.Millisecond, 10*time.Millisecond })
		if err := inUse.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}}, time.Minute); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "attached", func() (bool, string) {
			s, a, _ := w.EC2().VolumeState(id)
			return a == "attached", s + "/" + a
		})
		if _, err := ec2c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(id)}); err != nil {
			t.Fatal(err)
		}
		if err := available.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := w.Bus().Settle(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got := append([]string(nil), seen...)
		mu.Unlock()
		if want := map[bool]string{false: "createVolume/available", true: "createVolume/available detachVolume/detached"}[on]; strings.Join(got, " ") != want {
			t.Errorf("DetachEvents %v: EBS events %v, want %s", on, got, want)
		}
	}
}
