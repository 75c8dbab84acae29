package ssmsim

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// waitUntil polls cond (bounded) and fails with what it waited for.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// invocationView is the test view of one invocation.
func (w *world) invocationView(id, inst string) (Invocation, bool) {
	for _, inv := range w.srv.Invocations() {
		if inv.CommandID == id && inv.InstanceID == inst {
			return inv, true
		}
	}
	return Invocation{}, false
}

// get is GetCommandInvocation once the invocation is visible (SSM's
// eventual consistency), bounded.
func (w *world) get(t *testing.T, id, inst string) *ssm.GetCommandInvocationOutput {
	t.Helper()
	var out *ssm.GetCommandInvocationOutput
	waitUntil(t, "the invocation visible", func() bool {
		var err error
		out, err = w.ssm.GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{CommandId: aws.String(id), InstanceId: aws.String(inst)})
		if err != nil && code(t, err) != "InvocationDoesNotExist" {
			t.Fatalf("GetCommandInvocation: %v", err)
		}
		return err == nil
	})
	return out
}

func (w *world) pingStatus(t *testing.T, inst string) types.PingStatus {
	t.Helper()
	di, err := w.ssm.DescribeInstanceInformation(context.Background(), &ssm.DescribeInstanceInformationInput{
		InstanceInformationFilterList: []types.InstanceInformationFilter{{Key: types.InstanceInformationFilterKeyInstanceIds, ValueSet: []string{inst}}}})
	if err != nil || len(di.InstanceInformationList) != 1 {
		t.Fatalf("DescribeInstanceInformation %s: %+v %v", inst, di, err)
	}
	return di.InstanceInformationList[0].PingStatus
}

func (w *world) status(t *testing.T, inst string) string {
	t.Helper()
	out, err := w.ssm.SendCommand(context.Background(), &ssm.SendCommandInput{DocumentName: aws.String(stack + "-status"), InstanceIds: []string{inst}})
	if err != nil {
		t.Fatalf("SendCommand status to %s: %v", inst, err)
	}
	return *out.Command.CommandId
}

// SSM down on a live host, before SSM notices: the command is accepted and
// waits, Pending, for the agent; nothing runs on the host until the agent
// is back.
func TestCommandWaitsForAStoppedAgent(t *testing.T) {
	w := newWorldWith(t, Config{Profile: latency.Instant(), ConnectionLostAfter: time.Hour})
	if err := w.srv.StopAgent(instA); err != nil {
		t.Fatal(err)
	}
	if ps := w.pingStatus(t, instA); ps != types.PingStatusOnline {
		t.Fatalf("ping status right after the agent stopped: %s, want Online until SSM notices", ps)
	}
	id := w.status(t, instA)
	waitUntil(t, "the invocation held for the agent", func() bool {
		inv, _ := w.invocationView(id, instA)
		return inv.AwaitingAgent
	})
	if inv := w.get(t, id, instA); inv.Status != types.CommandInvocationStatusPending || inv.ResponseCode != -1 || w.a.lastScript() != "" {
		t.Fatalf("command for a stopped agent: %s %d, script %q", inv.Status, inv.ResponseCode, w.a.lastScript())
	}
	if err := w.srv.StartAgent(instA); err != nil {
		t.Fatal(err)
	}
	if got := w.waitInvocation(t, id, instA); got.Status != types.CommandInvocationStatusSuccess || w.a.lastScript() != "tether-agent status --json\n" {
		t.Errorf("after the agent came back: %s, script %q", got.Status, w.a.lastScript())
	}
}

// Once SSM shows the node ConnectionLost, SendCommand refuses it:
// InvalidInstanceId ("SSM Agent isn't running").
func TestConnectionLostRefusesCommands(t *testing.T) {
	w := newWorld(t, latency.Instant())
	if err := w.srv.StopAgent(instB); err != nil {
		t.Fatal(err)
	}
	if ps := w.pingStatus(t, instB); ps != types.PingStatusConnectionLost {
		t.Fatalf("ping status %s, want ConnectionLost", ps)
	}
	_, err := w.ssm.SendCommand(context.Background(), &ssm.SendCommandInput{DocumentName: aws.String(stack + "-status"), InstanceIds: []string{instB}})
	if code(t, err) != "InvalidInstanceId" {
		t.Fatalf("SendCommand to a ConnectionLost node: %v", err)
	}
	if err := w.srv.SetOnline(instB, true); err != nil {
		t.Fatal(err)
	}
	if got := w.waitInvocation(t, w.status(t, instB), instB); got.Status != types.CommandInvocationStatusSuccess {
		t.Errorf("after the agent came back: %+v", got)
	}
}

// The agent stops while its command runs: the script finishes on the live
// host, but SSM shows the invocation InProgress, without output, until the
// agent is back to report it.
func TestResultWaitsForTheAgent(t *testing.T) {
	w := newWorldWith(t, Config{Profile: latency.Instant(), ConnectionLostAfter: time.Hour})
	release := make(chan struct{})
	w.a.mu.Lock()
	w.a.block = release
	w.a.mu.Unlock()
	w.a.set(worldapi.CommandResult{Stdout: "done\n"}, nil)
	id := w.status(t, instA)
	waitUntil(t, "the script running on the host", func() bool { return w.a.lastScript() != "" })
	if err := w.srv.StopAgent(instA); err != nil {
		t.Fatal(err)
	}
	close(release)
	waitUntil(t, "the result held for the agent", func() bool {
		inv, _ := w.invocationView(id, instA)
		return inv.AwaitingAgent
	})
	inv := w.get(t, id, instA)
	if inv.Status != types.CommandInvocationStatusInProgress || aws.ToString(inv.StatusDetails) != "In Progress" ||
		aws.ToString(inv.StandardOutputContent) != "" || inv.ResponseCode != -1 {
		t.Fatalf("while the agent is down: %s %q %q %d", inv.Status, aws.ToString(inv.StatusDetails), aws.ToString(inv.StandardOutputContent), inv.ResponseCode)
	}
	if err := w.srv.StartAgent(instA); err != nil {
		t.Fatal(err)
	}
	if got := w.waitInvocation(t, id, instA); got.Status != types.CommandInvocationStatusSuccess || aws.ToString(got.StandardOutputContent) != "done\n" {
		t.Errorf("after the agent came back: %s %q", got.Status, aws.ToString(got.StandardOutputContent))
	}
}

// A command whose agent never comes back expires at ExpiresAfter, the
// delivery timeout plus the execution timeout: TimedOut, "Delivery Timed
// Out", counted in DeliveryTimedOutCount and not as an error.
func TestCommandExpiresWhileTheAgentIsDown(t *testing.T) {
	w := newWorldWith(t, Config{Profile: latency.Instant(), ConnectionLostAfter: time.Hour})
	if err := w.srv.StopAgent(instA); err != nil {
		t.Fatal(err)
	}
	out, err := w.ssm.SendCommand(context.Background(), &ssm.SendCommandInput{DocumentName: aws.String(stack + "-mount"), InstanceIds: []string{instA},
		Parameters: map[string][]string{"VolumeId": {"vol-0123456789abcdef0"}, "VolumeName": {"db"}}, TimeoutSeconds: aws.Int32(30)})
	if err != nil {
		t.Fatal(err)
	}
	c := out.Command
	if got := aws.ToTime(c.ExpiresAfter).Sub(aws.ToTime(c.RequestedDateTime)); got.Round(time.Second) != (30+120)*time.Second {
		t.Errorf("ExpiresAfter is %v after the request, want the 30 s delivery timeout + the step's 120 s", got)
	}
	// The shortest delivery timeout SSM accepts is 30 s: move the request
	// back past its expiry instead of waiting.
	w.srv.mu.Lock()
	w.srv.commands[*c.CommandId].requested = time.Now().Add(-151 * time.Second)
	w.srv.signalLocked()
	w.srv.mu.Unlock()
	got := w.waitInvocation(t, *c.CommandId, instA)
	if got.Status != types.CommandInvocationStatusTimedOut || aws.ToString(got.StatusDetails) != "Delivery Timed Out" || w.a.lastScript() != "" {
		t.Errorf("expired command: %s %q, script %q", got.Status, aws.ToString(got.StatusDetails), w.a.lastScript())
	}
	lc, err := w.ssm.ListCommands(context.Background(), &ssm.ListCommandsInput{CommandId: c.CommandId})
	if err != nil || len(lc.Commands) != 1 || lc.Commands[0].Status != types.CommandStatusTimedOut ||
		aws.ToString(lc.Commands[0].StatusDetails) != "Delivery Timed Out" || lc.Commands[0].DeliveryTimedOutCount != 1 || lc.Commands[0].ErrorCount != 0 {
		t.Errorf("the command: %+v %v", lc, err)
	}
}

// A host that is gone: the invocation fails Undeliverable and the node
// shows ConnectionLost.
func TestDeadHostIsUndeliverable(t *testing.T) {
	w := newWorld(t, latency.Instant())
	w.b.set(worldapi.CommandResult{}, worldapi.ErrHostDown)
	got := w.waitInvocation(t, w.status(t, instB), instB)
	if got.Status != types.CommandInvocationStatusFailed || aws.ToString(got.StatusDetails) != "Undeliverable" {
		t.Errorf("dead host: %+v", got)
	}
	if ps := w.pingStatus(t, instB); ps != types.PingStatusConnectionLost {
		t.Errorf("dead host's ping status: %s", ps)
	}
}
