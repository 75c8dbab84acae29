package reconcile

import (
	"context"
	"time"
)

// Hosts that go away (issue 13). EC2 and Auto Scaling say when an instance
// leaves; these triggers carry what they say. HostChanged is the
// reconciler's own (it names the keys of the instance's volumes); the
// others are worked by the hosts function (functions/internal/hosts),
// which drains, holds and fences instances and leaves the volumes' moves
// to the reconciler.

// HostChanged: an EC2 Instance State-change Notification. stopped and
// terminated are the facts that let a volume leave an instance without its
// host (the force rule); stopping and shutting-down say that it is on its
// way there.
type HostChanged struct {
	InstanceID string
	State      string // pending, running, stopping, stopped, shutting-down, terminated
}

// HostInterrupted: EC2's Spot Instance Interruption Warning: EC2 stops or
// terminates the instance two minutes later.
type HostInterrupted struct {
	InstanceID string
	Action     string // terminate, stop, hibernate
}

// TerminationHold: Auto Scaling holds an instance in Terminating:Wait for
// tether's lifecycle hook (EC2 Instance-terminate Lifecycle Action), or
// tether's own continuation of that hold (its hold message).
type TerminationHold struct {
	Group      string
	Hook       string
	InstanceID string
	Token      string
	// Started is when the lifecycle action began (the event's time): the
	// hold's deadline counts from it.
	Started time.Time
	// Passes counts the passes of this hold so far (0 for the event).
	Passes int
}

// HostWatch: an instance whose ECS agent disconnected, looked at again
// until it answers, halts, or is found hung (tether's watch message; the
// ECS event starts it).
type HostWatch struct {
	Cluster    string
	InstanceID string
	// Since is when the watch began (the disconnect's event time).
	Since time.Time
}

func (HostChanged) trigger()     {}
func (HostInterrupted) trigger() {}
func (TerminationHold) trigger() {}
func (HostWatch) trigger()       {}

// hostKeys names the keys of the cluster's volumes attached to an instance
// EC2 says is leaving or has left. A pass of each then acts on EC2's word
// (release.go: force only once stopped or terminated); a running or
// pending instance's change says nothing about its volumes.
func (r *Reconciler) hostKeys(ctx context.Context, t HostChanged) ([]Key, error) {
	switch t.State {
	case "stopping", "stopped", "shutting-down", "terminated":
	default:
		return nil, nil
	}
	vols, err := r.cloud.InstanceVolumes(ctx, r.cluster, t.InstanceID)
	if err != nil {
		return nil, err
	}
	keys := r.keysFromVolumes(r.cluster, vols)
	if len(keys) > 0 {
		r.log.Info("instance leaving with tether volumes attached", "instance", t.InstanceID, "state", t.State, "volumes", len(keys))
	}
	return keys, nil
}
