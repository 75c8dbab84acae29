package ec2sim

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// TestSpotInterruption: a Spot Instance says so in DescribeInstances; an
// interruption sends the rebalance recommendation and the two-minute
// warning (the user guide's shapes, the warning's resource in the zone ARN
// format) before the instance leaves running, then EC2 terminates it with
// Server.SpotInstanceTermination. On-Demand instances and hibernation are
// refused.
func TestSpotInterruption(t *testing.T) {
	w := newWorld(t)
	spot, onDemand := "i-0000000000000a001", "i-0000000000000a002"
	if err := w.srv.AddInstance(InstanceSpec{ID: spot, AZ: azA, Host: newFakeHost(spot), Spot: true}); err != nil {
		t.Fatal(err)
	}
	w.addInstance(t, onDemand, azA)
	if in := describeInstance(t, w, spot); in.InstanceLifecycle != types.InstanceLifecycleTypeSpot {
		t.Errorf("spot instance: InstanceLifecycle %q", in.InstanceLifecycle)
	}
	if in := describeInstance(t, w, onDemand); in.InstanceLifecycle != "" {
		t.Errorf("on-demand instance: InstanceLifecycle %q, want none", in.InstanceLifecycle)
	}
	if _, err := w.srv.InterruptSpotInstance(onDemand, "terminate", time.Millisecond); err == nil {
		t.Error("interrupting an On-Demand instance succeeded")
	}
	if _, err := w.srv.InterruptSpotInstance(spot, "hibernate", time.Millisecond); err == nil {
		t.Error("hibernate succeeded on an instance not enabled for hibernation")
	}

	// A long notice: the instance must still be running after the warning.
	due, err := w.srv.InterruptSpotInstance(spot, "terminate", 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := w.srv.InstanceState(spot); st != "running" && time.Now().Before(due) {
		t.Errorf("right after the warning the instance is %s", st)
	}
	if _, err := w.srv.InterruptSpotInstance(spot, "terminate", time.Millisecond); err == nil {
		t.Error("a second interruption while one is pending succeeded")
	}
	eventually(t, spot+" terminated", func() (bool, string) {
		st, _ := w.srv.InstanceState(spot)
		return st == "terminated", st
	})
	var order []string
	for _, ev := range w.events.list() {
		switch ev.DetailType {
		case detailSpotWarning:
			var d SpotInterruptionWarning
			if err := json.Unmarshal(ev.Detail, &d); err != nil || d.InstanceID != spot || d.InstanceAction != "terminate" {
				t.Errorf("warning detail %s (%v)", ev.Detail, err)
			}
			if len(ev.Resources) != 1 || ev.Resources[0] != "arn:aws:ec2:"+azA+":instance/"+spot || ev.Source != "aws.ec2" {
				t.Errorf("warning envelope: source %s resources %v", ev.Source, ev.Resources)
			}
			order = append(order, "warning")
		case detailRebalance:
			var d map[string]string
			if err := json.Unmarshal(ev.Detail, &d); err != nil || len(d) != 1 || d["instance-id"] != spot {
				t.Errorf("rebalance detail %s (%v)", ev.Detail, err)
			}
			order = append(order, "rebalance")
		case detailInstance:
			var d InstanceStateChange
			_ = json.Unmarshal(ev.Detail, &d)
			if d.InstanceID == spot {
				order = append(order, d.State)
			}
		}
	}
	if got := strings.Join(order, " "); got != "pending running rebalance warning shutting-down terminated" {
		t.Errorf("events for the spot instance: %s", got)
	}
	in := describeInstance(t, w, spot)
	if in.StateReason == nil || aws.ToString(in.StateReason.Code) != "Server.SpotInstanceTermination" {
		t.Errorf("state reason %+v", in.StateReason)
	}
}
