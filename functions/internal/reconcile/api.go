// Package reconcile is tether's reconciler core: level-triggered, with no
// Lambda types. The function layer turns each event into a Trigger, asks
// Keys which keys it names, and calls Reconcile once per key:
//
//	r, err := reconcile.NewFromEnv(ctx, os.Getenv, awsCfg, os.Stderr, os.Stdout)
//	...
//	ctx = r.Invocation(ctx)                 // once per Lambda invocation
//	keys, err := r.Keys(reconcile.WithEventID(ctx, eventID), trigger)
//	res, err := r.Reconcile(ctx, key)       // each distinct key once
//
// Keys: an error means the trigger could not be resolved now (AWS failed):
// redeliver its message. No keys and no error: nothing of tether's (another
// cluster, a Fargate task, a stale or duplicate event, a superseded retry).
//
// Reconcile: Result.Done() means converged (or only a new event can move
// the key on); RetryAfter > 0 means hand the key back as a Retry{Key, Hint}
// after that delay (at most 15 minutes, SQS's limit). An error means the
// pass could not decide (AWS failed after the SDK's retries): redeliver the
// messages that named the key. Throttling is never an error but a
// RetryAfter. A key that is invalid or not this deployment's is Done with a
// reason, never an error.
//
// HandBackFailed(ctx, key): call it when a RetryAfter could not be
// requeued (the messages that named the key go back to SQS instead), so
// their redelivery is not taken for a duplicate.
//
// Invocation (optional but expected): the invocation's AWS answers are
// shared by its passes, Retry hints reach Reconcile, and the tasks named by
// task events are read once. Without it every call stands alone (hints are
// then kept in the process), which is correct but costs more AWS calls.
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

// TaskChanged: an ECS Task State Change of an EC2-launch-type task. The
// event is the task's state at Version: the reconciler uses it instead of
// describing the task again (the newest version seen wins).
type TaskChanged struct {
	Cluster              string // name
	TaskArn              string
	TaskDefinitionArn    string
	ContainerInstanceArn string // "" before placement
	LastStatus           string
	DesiredStatus        string
	Version              int64
	// Optional (zero when the event lacks them: the task is then described).
	CreatedAt, StartedAt, StoppedAt time.Time
	Group                           string // service:NAME or family:NAME
	AZ                              string
}

// InstanceChanged: an ECS Container Instance State Change.
type InstanceChanged struct {
	Cluster              string
	ContainerInstanceArn string
	EC2InstanceID        string
	Status               string // ACTIVE, DRAINING, INACTIVE, DEREGISTERING, REGISTERING
	AgentConnected       bool
	Version              int64
	// Remaining: the CPU units and MiB of memory its live tasks leave free
	// (the event's remainingResources; zero when it named none). A
	// draining instance takes no task, so each of its events frees more.
	RemainingCPU, RemainingMemory int64
}

// VolumeChanged: an EC2 EBS Volume Notification.
type VolumeChanged struct {
	VolumeID string
	Event    string // createVolume, deleteVolume, attachVolume, detachVolume, modifyVolume
	Result   string // available, deleted, attached, detached, failed, ...
	Cause    string
}

// CommandChanged: an SSM "EC2 Command Invocation Status-change
// Notification": one of tether's commands on one instance changed status.
type CommandChanged struct {
	CommandID  string
	InstanceID string
	Document   string // document name
	Status     string // Pending, InProgress, Delayed, Success, Failed, TimedOut, Cancelled, Cancelling
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

// Release: an operator asks for a key's volume to be released from the
// instance that holds it (`tether release`, through the retry queue). The
// release is the ordinary one (unmount through SSM, then detach), and it
// happens only where no live task needs the volume. With Force, a host that
// does not let go is force-detached: its SSM agent is silent or SSM refuses
// the unmount, the unmount fails, or it runs on past Timing.OperatorGrace.
// A force is never taken while a started task uses the volume on the
// instance (ECS, read afresh) or while the unmount answers that a container
// holds it: the operator takes responsibility only for what a host that
// cannot answer had not flushed. The force holds for the passes that
// follow (their hints carry it) until the volume has left the instance.
type Release struct {
	Key Key
	// Instance: the instance the operator saw the volume attached to and
	// confirmed forcing; a force applies to an attachment there only.
	// "": whichever instance holds it.
	Instance string
	Force    bool
	Reason   string // logged, and part of the metric's properties
	Operator string // who asked (logged)
}

func (TaskChanged) trigger()     {}
func (InstanceChanged) trigger() {}
func (VolumeChanged) trigger()   {}
func (CommandChanged) trigger()  {}
func (SweepRequested) trigger()  {}
func (Retry) trigger()           {}
func (Release) trigger()         {}
