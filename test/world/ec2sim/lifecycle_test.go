package ec2sim

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/tether-ecs/tether/test/world/latency"
)

// slow is a profile whose listed operations take an hour: the state they
// leave stays observable until a test moves it on.
func slow(ops ...latency.Op) func(*Config) {
	return func(c *Config) {
		p := latency.Profile{Name: "slow", Dists: map[latency.Op]latency.Dist{}}
		for _, op := range ops {
			p.Dists[op] = latency.Dist{Median: time.Hour}
		}
		c.Profile = p
	}
}

// hook records Config.InstanceStateChanged's calls.
type hook struct {
	mu     sync.Mutex
	states map[string][]string
}

func (h *hook) changed(id, state string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.states[id] = append(h.states[id], state)
}

func (h *hook) of(id string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.states[id], " ")
}

func describeInstance(t *testing.T, w *world, id string) types.Instance {
	t.Helper()
	d, err := w.ec2.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	return d.Reservations[0].Instances[0]
}

// TestStopInstancesPassesThroughStopping: StopInstances answers stopping;
// the instance stays stopping (its volumes stay attached and cannot be
// detached, forced or not) until the stop ends, then is stopped with its
// volumes still attached and its guest gone; each state is published as
// an EC2 Instance State-change Notification and told to the hook, in order.
func TestStopInstancesPassesThroughStopping(t *testing.T) {
	h := &hook{states: map[string][]string{}}
	w := newWorld(t, slow(OpStopInstance), func(c *Config) { c.InstanceStateChanged = h.changed })
	ctx := context.Background()
	host := w.addInstance(t, instA, azA)
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "in-use", "attached")

	out, err := w.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{instA}})
	if err != nil {
		t.Fatal(err)
	}
	sc := out.StoppingInstances[0]
	if aws.ToString(sc.InstanceId) != instA || sc.CurrentState.Name != types.InstanceStateNameStopping || aws.ToInt32(sc.CurrentState.Code) != 64 ||
		sc.PreviousState.Name != types.InstanceStateNameRunning || aws.ToInt32(sc.PreviousState.Code) != 16 {
		t.Errorf("StopInstances answered %+v", sc)
	}
	if st := describeInstance(t, w, instA).State.Name; st != types.InstanceStateNameStopping {
		t.Fatalf("after StopInstances: %s", st)
	}
	for _, force := range []bool{false, true} {
		code, msg := apiErr(t, detach(t, w, vol, force))
		if code != "IncorrectInstanceState" || !strings.Contains(msg, "not in a state in which volumes can be detached") {
			t.Errorf("detach (force %v) while stopping: %q %q", force, code, msg)
		}
	}
	spare := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	if code, _ := apiErr(t, attach(t, w, spare, instA, "/dev/xvdg")); code != "IncorrectInstanceState" {
		t.Errorf("attach while stopping: %q", code)
	}
	// Asking again changes nothing; Force ends the stopping now.
	again, err := w.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{instA}})
	if err != nil || again.StoppingInstances[0].PreviousState.Name != types.InstanceStateNameStopping {
		t.Errorf("second StopInstances: %+v %v", again, err)
	}
	if _, err := w.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{instA}, Force: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	stopped := ec2.NewInstanceStoppedWaiter(w.ec2, func(o *ec2.InstanceStoppedWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Millisecond, 5*time.Millisecond
	})
	if err := stopped.Wait(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instA}}, 10*time.Second); err != nil {
		t.Fatalf("InstanceStopped waiter: %v", err)
	}
	in := describeInstance(t, w, instA)
	if !strings.HasPrefix(aws.ToString(in.StateTransitionReason), "User initiated (") || in.StateReason == nil ||
		aws.ToString(in.StateReason.Code) != "Client.UserInitiatedShutdown" {
		t.Errorf("stopped instance: reason %q %+v", aws.ToString(in.StateTransitionReason), in.StateReason)
	}
	// EBS: a stopped instance keeps its volumes.
	if s, a, _ := w.srv.VolumeState(vol); s != "in-use" || a != "attached" {
		t.Errorf("volume of a stopped instance: %s/%s, want in-use/attached", s, a)
	}
	host.mu.Lock()
	killed := host.killed
	host.mu.Unlock()
	if !killed {
		t.Error("the stopped instance's guest was not killed")
	}
	// A stopped instance takes attaches (attached at once, no guest) and
	// gives its volumes up at once (no guest to wait for).
	if err := attach(t, w, spare, instA, "/dev/xvdg"); err != nil {
		t.Fatalf("attach to a stopped instance: %v", err)
	}
	w.waitState(t, spare, "in-use", "attached")
	if err := detach(t, w, vol, false); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "available", "")

	if got := strings.Join(instanceStates(w, instA), " "); got != "pending running stopping stopped" {
		t.Errorf("published states %q", got)
	}
	eventually(t, "the hook heard every state", func() (bool, string) {
		got := h.of(instA)
		return got == "pending running stopping stopped", got
	})
	for _, e := range w.events.list() {
		if e.DetailType != detailInstance {
			continue
		}
		var d map[string]any
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			t.Fatal(err)
		}
		if e.Source != "aws.ec2" || len(e.Resources) != 1 || e.Resources[0] != "arn:aws:ec2:us-west-2:123456789012:instance/"+instA ||
			len(d) != 2 || d["instance-id"] != instA || d["state"] == "" {
			t.Errorf("state-change event %+v detail %v", e, d)
		}
	}
}

// TestTerminateInstancesPassesThroughShuttingDown: TerminateInstances
// answers shutting-down; the volumes stay attached (and undetachable)
// until the instance is terminated, then are released: deleted with
// DeleteOnTermination (the root volume), available otherwise. A terminated
// instance cannot be stopped; terminating it again is harmless.
func TestTerminateInstancesPassesThroughShuttingDown(t *testing.T) {
	w := newWorld(t, slow(OpTerminateInstance))
	ctx := context.Background()
	w.addInstance(t, instA, azA)
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "in-use", "attached")
	root := aws.ToString(describeInstance(t, w, instA).BlockDeviceMappings[0].Ebs.VolumeId)

	out, err := w.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{instA}})
	if err != nil {
		t.Fatal(err)
	}
	if c := out.TerminatingInstances[0]; c.CurrentState.Name != types.InstanceStateNameShuttingDown || c.PreviousState.Name != types.InstanceStateNameRunning {
		t.Errorf("TerminateInstances answered %+v", c)
	}
	if code, _ := apiErr(t, detach(t, w, vol, true)); code != "IncorrectInstanceState" {
		t.Errorf("force detach while shutting-down: %q", code)
	}
	if s, a, _ := w.srv.VolumeState(vol); s != "in-use" || a != "attached" {
		t.Errorf("while shutting-down: %s/%s", s, a)
	}
	if _, err := w.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{instA}}); code(t, err) != "IncorrectInstanceState" {
		t.Errorf("stop while shutting-down: %v", err)
	}
	// The hour-long shutting-down is cut short the way the world's
	// KillInstance path sees it: the control waits for the end.
	w.srv.mu.Lock()
	in := w.srv.instances[instA]
	w.srv.scheduleEndLocked(in, true)
	w.srv.mu.Unlock()
	if err := w.srv.TerminateInstance(ctx, instA); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "available", "")
	eventually(t, "root volume deleted", func() (bool, string) {
		_, _, err := w.srv.VolumeState(root)
		return err != nil, "still there"
	})
	if got := strings.Join(instanceStates(w, instA), " "); got != "pending running shutting-down terminated" {
		t.Errorf("published states %q", got)
	}
	again, err := w.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{instA}})
	if err != nil || again.TerminatingInstances[0].CurrentState.Name != types.InstanceStateNameTerminated {
		t.Errorf("terminate again: %+v %v", again, err)
	}
	gotCode, msg := apiErr(t, func() error {
		_, err := w.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{instA}})
		return err
	}())
	if gotCode != "IncorrectInstanceState" || msg != "This instance '"+instA+"' is not in a state from which it can be stopped." {
		t.Errorf("stop a terminated instance: %q %q", gotCode, msg)
	}
	if c, _ := apiErr(t, attach(t, w, vol, instA, "/dev/xvdf")); c != "IncorrectInstanceState" {
		t.Errorf("attach to a terminated instance: %q", c)
	}
	// Unknown ids fail the whole call.
	w.addInstance(t, instB, azA)
	if _, err := w.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{instB, "i-0000000000000000f"}}); code(t, err) != "InvalidInstanceID.NotFound" {
		t.Errorf("stop with an unknown id: %v", err)
	}
	if st, _ := w.srv.InstanceState(instB); st != "running" {
		t.Errorf("%s after a failed StopInstances: %s", instB, st)
	}
}

// TestStopControlWaitsForStopped: StopInstance (the test control) returns
// once EC2 says stopped.
func TestStopControlWaitsForStopped(t *testing.T) {
	w := newWorld(t)
	w.addInstance(t, instA, azA)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.srv.StopInstance(ctx, instA, false); err != nil {
		t.Fatal(err)
	}
	if st, _ := w.srv.InstanceState(instA); st != "stopped" {
		t.Errorf("after StopInstance: %s", st)
	}
	if err := w.srv.TerminateInstance(ctx, instA); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.StopInstance(ctx, instA, true); err == nil {
		t.Error("stopped a terminated instance")
	}
}
