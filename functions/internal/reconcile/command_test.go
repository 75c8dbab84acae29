package reconcile_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// SSM's event for the end of tether's unmount wakes the key at once, in the
// process that sent it (from memory, no SSM call to find the key) or in
// another one (the invocation's comment names it: no ListCommands), and the
// pass goes on to the detach after one look at the attachment the
// unmount's result names (and, in the process that knows the key's family,
// one scoped ListTasks: does a task want the volume there now?). Events of other documents, of commands still running
// and of commands SSM does not know name no key.
func TestCommandEventWakesTheKey(t *testing.T) {
	for _, elsewhere := range []bool{false, true} {
		name := "same process"
		if elsewhere {
			name = "another process"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.w.AddInstance("i-a", "us-east-1a")
			h.w.AddInstance("i-b", "us-east-1a")
			t1, v := runningShared(t, h)
			h.w.StopTask(t1, "drain")
			h.w.Complete(cloudtest.Op{Kind: "stop", ID: t1})
			h.collect()
			for len(h.events) > 0 {
				h.deliverEvent(0)
			}
			unmounts := h.commandsOf(unmountDoc)
			if len(unmounts) != 1 || unmounts[0].Status != "Pending" {
				t.Fatalf("want one unmount sent: %+v", unmounts)
			}
			h.completeCommand(unmountDoc, "i-a")
			h.collect()
			var ev reconcile.CommandChanged
			for _, e := range h.events {
				if e.Kind == "command" {
					ev = h.trigger(e).(reconcile.CommandChanged)
				}
			}
			if ev.CommandID != unmounts[0].ID || ev.Status != "Success" || ev.InstanceID != "i-a" || ev.Document != unmountDoc {
				t.Fatalf("command event %+v", ev)
			}

			r := h.r
			if elsewhere {
				r = h.otherProcess()
			}
			calls := h.w.Calls()
			ctx := r.Invocation(context.Background())
			keys, err := r.Keys(ctx, ev)
			if err != nil || len(keys) != 1 || keys[0] != (reconcile.Key{Cluster: cluster, Volume: volName}) {
				t.Fatalf("keys %v %v", keys, err)
			}
			if lists := h.w.Calls()["SSM:ListCommands"] - calls["SSM:ListCommands"]; lists != 0 {
				t.Errorf("%d ListCommands to find the key", lists)
			}
			res, err := r.Reconcile(ctx, keys[0])
			if err != nil || res.Done() {
				t.Fatalf("pass after the unmount: %+v %v", res, err)
			}
			if journalHas(h.w.Journal(), "DetachVolume "+v.ID+" i-a force=false ok") != 1 {
				t.Fatalf("no detach after the unmount's event: %v", h.w.Journal())
			}
			after := h.w.Calls()
			if n := after["EC2:DescribeVolumes"] - calls["EC2:DescribeVolumes"]; n != 2 {
				// One look to judge the attachment, one past every cache
				// right before DetachVolume (which names the instance, not
				// the attachment).
				t.Errorf("the woken pass read EC2 %d times (DescribeVolumes), want 2: one to judge, one right before the detach", n)
			}
			// The unmount's result is the fact the detach needs; ECS is
			// asked once, scoped to the key's family (which another process
			// reads from the volume's tag), whether a task wants the volume
			// on that instance now; another process first learns the
			// instance's container instance (once per process).
			want := map[string]int{"ECS:ListTasks": 1}
			if elsewhere {
				want["ECS:ListContainerInstances"], want["ECS:DescribeContainerInstances"] = 1, 1
			}
			for op, n := range after {
				if strings.HasPrefix(op, "ECS:") && n-calls[op] != want[op] {
					t.Errorf("the woken pass made %d %s calls, want %d", n-calls[op], op, want[op])
				}
			}

			for _, other := range []reconcile.CommandChanged{
				{CommandID: ev.CommandID, InstanceID: "i-a", Document: "someone-elses-document", Status: "Success"},
				{CommandID: ev.CommandID, InstanceID: "i-a", Document: unmountDoc, Status: "InProgress"},
				{CommandID: "00000000-0000-4000-8000-0000000fffff", InstanceID: "i-a", Document: unmountDoc, Status: "Success"},
			} {
				if keys, err := r.Keys(r.Invocation(context.Background()), other); err != nil || len(keys) != 0 {
					t.Errorf("%+v named %v %v, want nothing", other, keys, err)
				}
			}
		})
	}
}

// A pass in another process (Lambda runs several) that finds a detach in
// progress on a host ECS still serves, asked by another pass, ends: the
// pass that asked polls it, so a second chain of polls would only read EC2
// again.
func TestAnotherProcessLeavesADetachInProgressToItsChain(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1, v := runningShared(t, h)
	h.w.StopTask(t1, "drain")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t1})
	h.collect()
	for len(h.events) > 0 {
		h.deliverEvent(0)
	}
	h.completeCommand(unmountDoc, "i-a")
	h.collect()
	for len(h.events) > 0 {
		h.deliverEvent(0)
	}
	if journalHas(h.w.Journal(), "DetachVolume "+v.ID+" i-a force=false ok") != 1 {
		t.Fatalf("no detach after the unmount: %v", h.w.Journal())
	}
	chains := len(h.queue)
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.collect()
	other := h.otherProcess()
	key := reconcile.Key{Cluster: cluster, Volume: volName}
	for _, e := range h.events {
		ctx := other.Invocation(context.Background())
		keys, err := other.Keys(ctx, h.trigger(e))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			res, err := other.Reconcile(ctx, k)
			if err != nil || k != key || !res.Done() || !strings.Contains(res.Reason, "in flight") {
				t.Fatalf("the other process's pass for %s: %+v %v; want it done, leaving the detach to its chain", t2, res, err)
			}
		}
	}
	h.events = nil
	if len(h.queue) != chains {
		t.Fatalf("retries %d, want the detach's own chain alone (%d)", len(h.queue), chains)
	}
	h.settle(300)
	h.noViolations()
	h.wantRunning(t2)
}

// A mount's end in a process whose copy of the volume predates its
// filesystem (another process's first mount made it, and that mount's end
// tagged the volume tether:formatted) does not tag it again; and since the
// mount went without the grant (the agent echoes it), the end reads
// nothing from EC2 either: the agent's answer is the fact.
func TestAMountsEndInAProcessThatKnewTheVolumeBeforeItsFilesystemDoesNotTagItAgain(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	key := reconcile.Key{Cluster: cluster, Volume: volName}
	t1 := h.w.PlaceTask(tdShared, "i-a")
	h.collect()
	h.deliverEvent(0) // t1's event: the volume is created
	other := h.otherProcess()
	ctx := other.Invocation(context.Background())
	if _, err := other.Keys(ctx, reconcile.Retry{Key: key}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Reconcile(ctx, key); err != nil { // reads the volume: blank, no filesystem yet
		t.Fatal(err)
	}
	h.settle(300)
	h.wantRunning(t1)
	if v := h.oneVolume(volName); v.Tags["tether:formatted"] == "" {
		t.Fatalf("volume after its first mount: %+v, want it tagged tether:formatted", v.Tags)
	}
	h.w.StopTask(t1, "drain")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t1})
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(300)
	h.wantRunning(t2)
	mounts := h.commandsOf(mountDoc)
	last := mounts[len(mounts)-1]
	if last.Instance != "i-b" || last.Params[agentproto.ParamFormatIfBlank] != "false" {
		t.Fatalf("the handoff's mount: %+v, want one on i-b without the grant", last)
	}

	// SSM's event of that mount reaches the other process (again, or late).
	before := h.w.Calls()
	ctx = other.Invocation(context.Background())
	ev := reconcile.CommandChanged{CommandID: last.ID, InstanceID: "i-b", Document: mountDoc, Status: "Success"}
	if keys, err := other.Keys(ctx, ev); err != nil || len(keys) != 1 {
		t.Fatalf("keys of the mount's event: %v %v", keys, err)
	}
	if res, err := other.Reconcile(ctx, key); err != nil || !res.Done() || !strings.Contains(res.Reason, "mounted on i-b") {
		t.Fatalf("the mount's end in the other process: %+v %v", res, err)
	}
	after := h.w.Calls()
	if n := after["EC2:CreateTags"] - before["EC2:CreateTags"]; n != 0 {
		t.Errorf("the mount's end tagged the volume %d times, want none (it is tagged already)", n)
	}
	if n := after["EC2:DescribeVolumes"] - before["EC2:DescribeVolumes"]; n != 0 {
		t.Errorf("the mount's end read the volume %d times, want none (the mount had no grant: nothing to record)", n)
	}
	h.noViolations()
}
