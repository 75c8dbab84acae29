package reconcile_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// An EC2 state change names the keys of the cluster's volumes attached to
// the instance when it is leaving (stopping, shutting-down) or gone
// (stopped, terminated); a running instance's, or one without tether
// volumes, names none.
func TestHostChangedNamesTheInstanceVolumes(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	runningShared(t, h)
	ctx := h.r.Invocation(context.Background())
	want := []reconcile.Key{{Cluster: cluster, Volume: volName}}
	for _, st := range []string{"stopping", "stopped", "shutting-down", "terminated"} {
		keys, err := h.r.Keys(ctx, reconcile.HostChanged{InstanceID: "i-a", State: st})
		if err != nil || !slices.Equal(keys, want) {
			t.Errorf("%s: keys %v (%v), want %v", st, keys, err, want)
		}
	}
	for _, tr := range []reconcile.HostChanged{{InstanceID: "i-a", State: "running"}, {InstanceID: "i-a", State: "pending"}, {InstanceID: "i-b", State: "stopped"}} {
		if keys, err := h.r.Keys(ctx, tr); err != nil || len(keys) != 0 {
			t.Errorf("%+v: keys %v (%v), want none", tr, keys, err)
		}
	}
}

// A stopped host's volume follows its task: EC2 says stopped, ECS stopped
// the task there, the unmount cannot reach the host, and the volume is
// force-detached on EC2's word (ForcedDetachesGone, never Live) and
// mounted where the replacement runs.
func TestStoppedHostVolumeFollowsItsTask(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	runningShared(t, h)
	h.w.SetSSMDown("i-a", true)
	h.w.SetInstanceState("i-a", "stopped")
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.invoke(reconcile.HostChanged{InstanceID: "i-a", State: "stopped"})
	h.settle(400)
	h.noViolations()
	h.wantRunning(t2)
	if v := h.oneVolume(volName); v.Att == nil || v.Att.Instance != "i-b" {
		t.Fatalf("volume %+v, want attached to i-b", v)
	}
	if !slices.ContainsFunc(h.w.Journal(), func(e string) bool {
		return strings.HasPrefix(e, "DetachVolume ") && strings.Contains(e, "i-a force=true")
	}) {
		t.Errorf("no force detach from the stopped host:\n%s", strings.Join(h.w.Journal(), "\n"))
	}
	if gone, live := metricSum(t, h, "ForcedDetachesGone"), metricSum(t, h, "ForcedDetachesLive"); gone != 1 || live != 0 {
		t.Errorf("ForcedDetachesGone %v ForcedDetachesLive %v, want 1 and 0", gone, live)
	}
}

// health is EC2's status checks as a test sets them.
type health map[string]cloud.InstanceHealth

func (h health) InstanceHealth(_ context.Context, id string) (cloud.InstanceHealth, error) {
	if s, ok := h[id]; ok {
		return s, nil
	}
	return cloud.InstanceHealth{}, cloud.ErrNotFound
}

// A hung host (EC2: running, its ECS agent disconnected, ECS still showing
// its task RUNNING) is never forced: the volume stays fenced there, and a
// task that waits for it elsewhere is stopped past the wait deadline with
// the facts (the agent, EC2's status check) and the ways out. Once EC2
// says the host stopped, the volume moves to the next task.
func TestHungHostIsFencedWithTheFacts(t *testing.T) {
	impaired := health{}
	h := newHarness(t, func(c *reconcile.Config) { c.Health = impaired })
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1, v := runningShared(t, h)
	h.w.HangInstance("i-a")
	impaired["i-a"] = cloud.InstanceHealth{ID: "i-a", State: "running", Impaired: true, ImpairedSince: h.w.Now().Add(-4 * time.Minute), Summary: "impaired"}
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(400)
	h.noViolations()
	h.wantStoppedBecause(t2, "held by instance i-a, whose ECS agent is disconnected (EC2: running, status check impaired ")
	h.wantStoppedBecause(t2, "tether release --force")
	h.wantRunning(t1)
	for _, e := range h.w.Journal() {
		if strings.HasPrefix(e, "DetachVolume") {
			t.Fatalf("a hung host's volume was detached: %s", e)
		}
	}
	if got := h.oneVolume(volName); got.Att == nil || got.Att.Instance != "i-a" {
		t.Fatalf("volume %+v, want still on i-a", got)
	}
	if !strings.Contains(h.metrics.String(), `"ReasonClass":"host-fenced"`) {
		t.Errorf("no TasksStopped with ReasonClass host-fenced in %s", h.metrics.String())
	}

	// The way out: the host stops (an operator, or HungHostAction=stop).
	h.w.SetInstanceState("i-a", "stopped")
	t3 := h.w.PlaceTask(tdShared, "i-b")
	h.invoke(reconcile.HostChanged{InstanceID: "i-a", State: "stopped"})
	h.settle(400)
	h.noViolations()
	h.wantRunning(t3)
	if got := h.oneVolume(volName); got.ID != v.ID || got.Att == nil || got.Att.Instance != "i-b" {
		t.Fatalf("volume %+v, want %s attached to i-b", got, v.ID)
	}
	if live := metricSum(t, h, "ForcedDetachesLive"); live != 0 {
		t.Errorf("ForcedDetachesLive %v", live)
	}
}

// A holder's instance that EC2 says is on its way down keeps the waiting
// task waiting (ECS stops the tasks of a stopping instance), with a reason
// that says so if the deadline comes first.
func TestHolderOnAHaltingHostWaitsForECS(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	runningShared(t, h)
	h.w.HangInstance("i-a")
	h.w.SetInstanceState("i-a", "stopping")
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(400)
	h.wantStoppedBecause(t2, "which EC2 says is stopping")
}

// The operator's way out of a fence without stopping the host: ECS lets go
// of the hung host's tasks (deregister-container-instance --force), and a
// forced release (reconcile.Release, tether release --force) detaches the
// volume from the host that cannot answer; the next task gets it. The
// force is the operator's (ForcedDetachesLive), never tether's own.
func TestOperatorReleasesAFencedVolume(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	_, v := runningShared(t, h)
	h.w.HangInstance("i-a")
	t2 := h.w.PlaceTask(tdShared, "i-b")
	h.settle(400)
	h.wantStoppedBecause(t2, "whose ECS agent is disconnected")

	h.w.ForgetInstance("i-a")
	h.w.AllowLiveForce() // the operator asked
	t3 := h.w.PlaceTask(tdShared, "i-b")
	h.invoke(reconcile.Release{Key: reconcile.Key{Cluster: cluster, Volume: volName}, Force: true, Reason: "host i-a hung", Operator: "test"})
	h.settle(400)
	h.noViolations()
	h.wantRunning(t3)
	if got := h.oneVolume(volName); got.ID != v.ID || got.Att == nil || got.Att.Instance != "i-b" {
		t.Fatalf("volume %+v, want %s attached to i-b", got, v.ID)
	}
	if live := metricSum(t, h, "ForcedDetachesLive"); live != 1 {
		t.Errorf("ForcedDetachesLive %v, want 1 (the operator's force)", live)
	}
}
