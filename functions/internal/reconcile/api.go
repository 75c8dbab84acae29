package reconcile

import "time"

// Key names one tether volume of one cluster: the unit the reconciler
// converges. Events only produce keys; everything else is read fresh.
type Key struct {
	Cluster string `json:"cluster"` // cluster name (not ARN)
	Volume  string `json:"volume"`  // tether volume name (volspec.ValidateName)
}

// Result says whether a key has converged.
type Result struct {
	// RetryAfter > 0: not finished; look again after this long (an attach or
	// detach is in flight, an SSM command runs, a task still holds it).
	RetryAfter time.Duration
	// Reason says what the key waits for, or what was done; it is logged.
	Reason string
	// Hint, when set, lets the next pass skip a read it already knows the
	// answer to (e.g. the SSM command id it waits for). Only an optimisation:
	// a pass without it reaches the same end state.
	Hint string
}

// Done reports whether the key needs no further pass.
func (r Result) Done() bool { return r.RetryAfter <= 0 }

// Trigger is what one event means to the reconciler. The function layer
// decodes events into triggers; Keys turns a trigger into the keys to look at.
type Trigger interface{ trigger() }

// TaskChanged: an ECS Task State Change of an EC2-launch-type task.
type TaskChanged struct {
	Cluster              string // name
	TaskArn              string
	TaskDefinitionArn    string
	ContainerInstanceArn string // "" before placement
	LastStatus           string
	DesiredStatus        string
	Version              int64
}

// InstanceChanged: an ECS Container Instance State Change.
type InstanceChanged struct {
	Cluster              string
	ContainerInstanceArn string
	EC2InstanceID        string
	Status               string // ACTIVE, DRAINING, INACTIVE, DEREGISTERING, REGISTERING
	AgentConnected       bool
	Version              int64
}

// VolumeChanged: an EC2 EBS Volume Notification.
type VolumeChanged struct {
	VolumeID string
	Event    string // createVolume, deleteVolume, attachVolume, detachVolume, modifyVolume
	Result   string // available, deleted, attached, detached, failed, ...
	Cause    string
}

// SweepRequested: the schedule; every tether volume of the cluster.
type SweepRequested struct {
	Cluster string
}

// Retry: a key handed back earlier with RetryAfter (tether's own message).
type Retry struct {
	Key  Key
	Hint string
}

func (TaskChanged) trigger()     {}
func (InstanceChanged) trigger() {}
func (VolumeChanged) trigger()   {}
func (SweepRequested) trigger()  {}
func (Retry) trigger()           {}
