package cloud

import (
	"context"
	"strings"
	"time"
)

// Tags tether puts on the EBS volumes it owns (docs/contracts.md).
const (
	TagName    = "Name"
	TagCluster = "tether:cluster"
	TagVolume  = "tether:volume"
	TagScope   = "tether:scope"
	TagTask    = "tether:task"
	// TagBlank: tether created the volume empty (no snapshot): the only
	// volumes a mount may be granted to format (agentproto.ParamFormatIfBlank).
	TagBlank = "tether:blank"
	// TagFormatted: when tether first saw the volume mounted with a
	// filesystem (RFC 3339). Once set, no mount is granted a format again.
	TagFormatted = "tether:formatted"
	// TagFamilies: the task definition families whose tasks used the volume
	// (comma-separated), so a pass can list just their tasks.
	TagFamilies = "tether:families"
	// TagAdopted: when an operator claimed the volume for tether (`tether
	// adopt`, RFC 3339): tether did not create it.
	TagAdopted = "tether:adopted"
	// An AZ move (driverOpt azmove=snapshot): the snapshot it makes carries
	// TagMoveOf (the volume moved) and TagMoveTo (the AZ); the new volume,
	// the key's tags and TagMovedFrom; the old one, once the new exists,
	// TagMovedTo and an empty tether:volume (it is no longer the key's),
	// its name kept in TagMovedName. It is kept unless the driverOpts ask
	// (azmove-delete-after): then it also carries TagMovedAt (RFC 3339, UTC)
	// and TagDeleteAfter (a Go duration, also on the move's snapshot), the
	// facts the sweep deletes it on once the new volume is in use.
	TagMoveOf = "tether:move-of"
	TagMoveTo = "tether:move-to"
	// TagMoving: on a volume, an AZ move's mark, written before its
	// snapshot and carried by it; an attach or detach of the volume clears
	// it first (the snapshot is then stale), so a move uses only a snapshot
	// taken since the volume was last used.
	TagMoving      = "tether:moving"
	TagMovedFrom   = "tether:moved-from"
	TagMovedTo     = "tether:moved-to"
	TagMovedName   = "tether:moved-name"
	TagMovedAt     = "tether:moved-at"
	TagDeleteAfter = "tether:delete-after"
	// TagSnapshots: the stack's Data Lifecycle Manager policy snapshots
	// volumes whose value is their cluster (driverOpt snapshots=scheduled).
	TagSnapshots = "tether:snapshots"
	// TagSnapshotFirst: a task-scoped volume is snapshotted before it is
	// deleted (driverOpt snapshot-before-delete); the snapshot carries
	// TagFinalOf, the volume's id.
	TagSnapshotFirst = "tether:snapshot-before-delete"
	TagFinalOf       = "tether:final-of"

	ScopeShared = "shared"
	ScopeTask   = "task"
)

// EBS volume and attachment states, as EC2 spells them.
const (
	VolumeCreating  = "creating"
	VolumeAvailable = "available"
	VolumeInUse     = "in-use"
	VolumeDeleting  = "deleting"
	VolumeDeleted   = "deleted"
	VolumeError     = "error"

	AttachAttaching = "attaching"
	AttachAttached  = "attached"
	AttachDetaching = "detaching"
	AttachDetached  = "detached"
	AttachBusy      = "busy"
)

// Volume is an EBS volume as tether sees it.
type Volume struct {
	ID          string
	AZ          string
	State       string
	SizeGiB     int32
	Type        string
	IOPS        int32 // provisioned (io1/io2/gp3; gp2's burst baseline as EC2 reports it)
	Throughput  int32 // MiB/s, gp3
	Encrypted   bool
	KMSKeyID    string
	CreateTime  time.Time
	Tags        map[string]string
	Attachments []Attachment // current ones; "detached" entries are dropped
	// MultiAttach: EBS Multi-Attach is enabled (io1/io2). tether serves
	// single-attach volumes only.
	MultiAttach bool
	// ReadAt: when EC2 answered with this copy (zero: not known, e.g. a
	// copy put together from memory). A step that others race for (an
	// attach) reads a copy that has aged again first.
	ReadAt time.Time
}

// Attachment is one attachment of a volume to an instance.
type Attachment struct {
	InstanceID string
	Device     string
	State      string
	AttachTime time.Time
}

// CreateVolumeRequest is what CreateVolume needs; Token makes it idempotent.
type CreateVolumeRequest struct {
	Token      string
	AZ         string
	SizeGiB    int32
	Type       string
	IOPS       int32
	Throughput int32
	Encrypted  bool
	KMSKeyID   string
	SnapshotID string
	Tags       map[string]string
}

// Instance is an EC2 instance's state, placement and block device names.
type Instance struct {
	ID      string
	State   string // pending, running, shutting-down, terminated, stopping, stopped
	AZ      string
	Devices []string // device names in use (block device mappings)
}

// Halted reports whether EC2 says the instance is stopped or terminated:
// nothing runs there, so nothing can hold its volumes. The only state in
// which tether force-detaches without an operator asking.
func (i Instance) Halted() bool { return i.State == "stopped" || i.State == "terminated" }

// Halting reports whether the instance is on its way down (stopping,
// shutting-down): its containers may still be flushing after SIGTERM.
func (i Instance) Halting() bool { return i.State == "stopping" || i.State == "shutting-down" }

// TaskDefinition keeps what tether needs from an ECS task definition.
type TaskDefinition struct {
	ARN     string
	Volumes []DockerVolume // only volumes with a dockerVolumeConfiguration
}

// DockerVolume is one task-definition volume with a dockerVolumeConfiguration.
type DockerVolume struct {
	Name          string
	Driver        string
	Scope         string // "task" or "shared"
	Autoprovision bool
	DriverOpts    map[string]string
	// Mounters are the task definition's containers that mount this volume
	// (a mountPoint whose sourceVolume is Name), in definition order.
	Mounters []Container
}

// Container is what tether needs of one container definition.
type Container struct {
	Name      string
	User      string // the definition's user as written ("" for the image's); see the reconciler's owner rule
	Essential bool
}

// Task is an ECS task as tether sees it.
type Task struct {
	ARN                  string
	TaskDefinitionARN    string
	ContainerInstanceARN string
	AZ                   string
	LastStatus           string
	DesiredStatus        string
	CreatedAt            time.Time
	StartedAt            time.Time // zero until RUNNING
	StoppedAt            time.Time // zero until STOPPED
	Version              int64
	// Group: "service:NAME" for a service's tasks, "family:NAME" (or a
	// user's group) for tasks run alone.
	Group string
	// StoppedReason: why ECS (or tether) stopped it.
	StoppedReason string
}

// Family is the task definition family of the task ("" if its definition
// ARN cannot be read).
func (t Task) Family() string { return FamilyOf(t.TaskDefinitionARN) }

// Service is the name of the service the task belongs to, if any.
func (t Task) Service() string {
	if name, ok := strings.CutPrefix(t.Group, "service:"); ok {
		return name
	}
	return ""
}

// FamilyOf reads the family from a task definition ARN
// (arn:…:task-definition/FAMILY:REVISION) or a FAMILY:REVISION reference.
func FamilyOf(taskDefinition string) string {
	s := taskDefinition
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		s = s[i+1:]
	}
	family, _, _ := strings.Cut(s, ":")
	return family
}

// TaskQuery scopes a task listing: every field set narrows it.
type TaskQuery struct {
	Family            string // task definition family
	ContainerInstance string // container instance ARN
	Desired           string // RUNNING (default) or STOPPED
}

// Service is an ECS service's deployment settings.
type Service struct {
	Name                  string
	DesiredCount          int32
	MinimumHealthyPercent int32
	MaximumPercent        int32
}

// KeepsOldTaskDuringDeploy: the scheduler starts a replacement before it
// stops the task it replaces (the default: minimumHealthyPercent 100,
// maximumPercent 200), so a single-attach volume can never pass from the
// old task to the new one.
func (s Service) KeepsOldTaskDuringDeploy() bool {
	if s.DesiredCount <= 0 || s.MaximumPercent <= 100 {
		return false
	}
	// ECS rounds the minimum number of healthy tasks up.
	minHealthy := (int64(s.DesiredCount)*int64(s.MinimumHealthyPercent) + 99) / 100
	return minHealthy >= int64(s.DesiredCount)
}

// Live reports whether the task may still use its volumes on its instance.
func (t Task) Live() bool { return t.DesiredStatus == "RUNNING" || t.LastStatus != "STOPPED" }

// ContainerInstance is an ECS container instance.
type ContainerInstance struct {
	ARN            string
	EC2InstanceID  string
	AZ             string // attribute ecs.availability-zone
	Status         string // ACTIVE, DRAINING, INACTIVE, REGISTERING, DEREGISTERING, REGISTRATION_FAILED
	AgentConnected bool
}

// Gone reports whether ECS no longer runs anything on the instance.
func (c ContainerInstance) Gone() bool {
	return c.Status == "INACTIVE" || c.Status == "DEREGISTERING" || c.Status == "REGISTRATION_FAILED"
}

// CommandStatus is the outcome class of one SSM command on one instance.
type CommandStatus int

const (
	CommandPending     CommandStatus = iota // not finished yet
	CommandSucceeded                        // exit 0
	CommandFailed                           // ran and exited non-zero (ExitCode), or ran out of time
	CommandUnreachable                      // never ran: the instance's agent did not answer
)

func (s CommandStatus) String() string {
	switch s {
	case CommandPending:
		return "pending"
	case CommandSucceeded:
		return "succeeded"
	case CommandFailed:
		return "failed"
	case CommandUnreachable:
		return "unreachable"
	}
	return "unknown"
}

// Unmount is one volume of an unmount command (SendUnmount).
type Unmount struct {
	VolumeID, Name string
	Attachment     string // agentproto.AttachmentToken, "" when unknown
	Next           string // the task the volume is released for, "" for none
}

// Command is one SSM command on one instance.
type Command struct {
	ID         string
	Document   string
	InstanceID string
	Params     map[string]string
	Requested  time.Time
	Status     CommandStatus
	ExitCode   int // meaningful when Status is CommandFailed; -1 when unknown
	Detail     string
	// Started and Ended: when the instance ran it (zero when unknown:
	// not yet, never, or not asked; Commands leaves them zero).
	Started, Ended time.Time
	// Output is the command's standard output as SSM keeps it (the
	// agent's JSON line, agentproto.ParseOutput); Command only.
	Output string
	// Comment is what SendCommand was given (CommandComment).
	Comment string
}

// Finished reports whether the command will not change any more.
func (c Command) Finished() bool { return c.Status != CommandPending }

// Cloud is everything the reconciler asks of AWS. Lookups that find nothing
// return ErrNotFound; every error wraps one of this package's sentinels when
// one applies, with the AWS error kept as the cause.
type Cloud interface {
	// VolumesByKey: the volumes tagged tether:cluster=cluster, tether:volume=name.
	VolumesByKey(ctx context.Context, cluster, name string) ([]Volume, error)
	// VolumeByID: ErrNotFound when EC2 does not know it (any more).
	VolumeByID(ctx context.Context, id string) (Volume, error)
	// VolumesByName: volumes tagged Name=name (volumes made outside tether).
	VolumesByName(ctx context.Context, name string) ([]Volume, error)
	// ClusterVolumes: every volume tagged tether:cluster=cluster.
	ClusterVolumes(ctx context.Context, cluster string) ([]Volume, error)
	// InstanceVolumes: the cluster's volumes attached to an instance.
	InstanceVolumes(ctx context.Context, cluster, instanceID string) ([]Volume, error)
	Instance(ctx context.Context, id string) (Instance, error)
	CreateVolume(ctx context.Context, req CreateVolumeRequest) (Volume, error)
	// AttachVolume returns the attachment EC2 began (its AttachTime names it).
	AttachVolume(ctx context.Context, volumeID, instanceID, device string) (Attachment, error)
	// DetachVolume detaches the attachment judged (instance, device and,
	// when known, attach time): ErrAttachmentChanged when the volume no
	// longer has it, read right before the request.
	DetachVolume(ctx context.Context, volumeID string, a Attachment, force bool) error
	DeleteVolume(ctx context.Context, volumeID string) error
	TagVolume(ctx context.Context, volumeID string, tags map[string]string) error
	// ModifyVolume asks EBS for an Elastic Volumes change (online grow):
	// a *ModifyTooSoonError (ErrModifyTooSoon) under the six-hour cooldown
	// or while a modification is in progress, with when the next is
	// allowed if known; ErrInvalidRequest with AWS's message for a shrink
	// or a change EBS does not allow (a person must change the request).
	ModifyVolume(ctx context.Context, volumeID string, c VolumeChange) (Modification, error)
	// VolumeModification: the volume's latest modification (state, target
	// size, type, IOPS, throughput, start time); ErrNotFound when it was
	// never modified. Its size is usable by the guest once InForce.
	VolumeModification(ctx context.Context, volumeID string) (Modification, error)
	// CreateSnapshot snapshots a volume, tagged from its creation;
	// SnapshotsTagged lists the account's own snapshots with a tag.
	CreateSnapshot(ctx context.Context, volumeID, description string, tags map[string]string) (EBSSnapshot, error)
	SnapshotsTagged(ctx context.Context, key, value string) ([]EBSSnapshot, error)
	// DeleteSnapshot deletes a snapshot tether made (a duplicate of an AZ
	// move's); one already gone is no error.
	DeleteSnapshot(ctx context.Context, snapshotID string) error

	TaskDefinition(ctx context.Context, arn string) (TaskDefinition, error)
	// LiveTasks: every task of the cluster whose desired status is
	// RUNNING. Its cost grows with the cluster: for the sweep only.
	LiveTasks(ctx context.Context, cluster string) ([]Task, error)
	// TasksOf: the tasks a scoped listing finds (by family, container
	// instance, desired status), described. ErrNotFound when ECS does not
	// know the container instance.
	TasksOf(ctx context.Context, cluster string, q TaskQuery) ([]Task, error)
	// ListTaskARNs: a scoped listing's task ARNs alone.
	ListTaskARNs(ctx context.Context, cluster string, q TaskQuery) ([]string, error)
	// TaskHomes: what never changes about tasks (definition, container
	// instance, creation, group), kept by the process; statuses may be empty.
	TaskHomes(ctx context.Context, cluster string, ids []string) ([]Task, error)
	// Tasks: by ARN or id; unknown ones are left out.
	Tasks(ctx context.Context, cluster string, ids []string) ([]Task, error)
	ContainerInstance(ctx context.Context, cluster, arn string) (ContainerInstance, error)
	// ContainerInstanceHome: which EC2 instance and AZ a container instance
	// is, kept by the process (Status empty: unknown).
	ContainerInstanceHome(ctx context.Context, cluster, arn string) (ContainerInstance, error)
	// ContainerInstanceOf: the container instance of an EC2 instance
	// (Status empty when not read in this invocation); ErrNotFound when the
	// cluster has none (deregistered).
	ContainerInstanceOf(ctx context.Context, cluster, ec2InstanceID string) (ContainerInstance, error)
	StopTask(ctx context.Context, cluster, taskARN, reason string) error
	// Service: a service's deployment settings; ErrNotFound if unknown.
	Service(ctx context.Context, cluster, name string) (Service, error)

	// KnownVolume returns what never changes about a volume this process
	// has seen (id, AZ, creation time, tags), without asking EC2; State and
	// Attachments are empty.
	KnownVolume(id string) (Volume, bool)

	// SendCommand runs document on one instance; the comment is made from
	// the parameters and next, the id of the task the step serves next
	// ("" for none) (CommandComment), so SSM's answers name them.
	SendCommand(ctx context.Context, document, instanceID string, params map[string]string, next string) (string, error)
	// SendUnmount runs the unmount document for one volume of an
	// instance. Concurrent calls for volumes of the same instance are
	// sent as one command (a list of volumes: agentproto.ListSep); each
	// caller gets that command's id. Force is never set.
	SendUnmount(ctx context.Context, document, instanceID string, u Unmount) (string, error)
	// SendUnmounts runs the unmount document for up to agentproto.MaxBatch
	// volumes of one instance as one command.
	SendUnmounts(ctx context.Context, document, instanceID string, us []Unmount) (string, error)
	// Command: one invocation's status, exit code, output and comment, for
	// the document's step named plugin (tether's documents have several
	// steps: SSM answers only for a named one). ErrNotFound until SSM has
	// a result for that step.
	Command(ctx context.Context, commandID, instanceID, plugin string) (Command, error)
	// Commands: a document's commands on an instance requested after a time,
	// newest first; Status is the summary (ExitCode -1 until asked by Command).
	Commands(ctx context.Context, document, instanceID string, after time.Time) ([]Command, error)
	// CommandByID: a command's document, parameters and request time
	// (instanceID is only copied into the answer).
	CommandByID(ctx context.Context, commandID, instanceID string) (Command, error)
}
