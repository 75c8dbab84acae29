package cloud

import (
	"context"
	"time"
)

// Tags tether puts on the EBS volumes it owns (docs/contracts.md).
const (
	TagName    = "Name"
	TagCluster = "tether:cluster"
	TagVolume  = "tether:volume"
	TagScope   = "tether:scope"
	TagTask    = "tether:task"

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
	Encrypted   bool
	KMSKeyID    string
	CreateTime  time.Time
	Tags        map[string]string
	Attachments []Attachment // current ones; "detached" entries are dropped
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

// Gone reports whether the instance can no longer hold a volume in use.
func (i Instance) Gone() bool {
	switch i.State {
	case "shutting-down", "terminated", "stopping", "stopped":
		return true
	}
	return false
}

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
	AttachVolume(ctx context.Context, volumeID, instanceID, device string) error
	DetachVolume(ctx context.Context, volumeID, instanceID string, force bool) error
	DeleteVolume(ctx context.Context, volumeID string) error
	TagVolume(ctx context.Context, volumeID string, tags map[string]string) error

	TaskDefinition(ctx context.Context, arn string) (TaskDefinition, error)
	// LiveTasks: the cluster's tasks whose desired status is RUNNING.
	LiveTasks(ctx context.Context, cluster string) ([]Task, error)
	// StoppingTasks: tasks on a container instance whose desired status is
	// STOPPED but which have not stopped yet.
	StoppingTasks(ctx context.Context, cluster, containerInstanceARN string) ([]Task, error)
	// Tasks: by ARN or id; unknown ones are left out.
	Tasks(ctx context.Context, cluster string, ids []string) ([]Task, error)
	ContainerInstance(ctx context.Context, cluster, arn string) (ContainerInstance, error)
	ContainerInstances(ctx context.Context, cluster string) ([]ContainerInstance, error)
	StopTask(ctx context.Context, cluster, taskARN, reason string) error

	// KnownVolume returns what never changes about a volume this process
	// has seen (id, AZ, creation time, tags), without asking EC2; State and
	// Attachments are empty.
	KnownVolume(id string) (Volume, bool)

	SendCommand(ctx context.Context, document, instanceID string, params map[string]string) (string, error)
	Command(ctx context.Context, commandID, instanceID string) (Command, error)
	// Commands: a document's commands on an instance requested after a time,
	// newest first; Status is the summary (ExitCode -1 until asked by Command).
	Commands(ctx context.Context, document, instanceID string, after time.Time) ([]Command, error)
	// CommandByID: a command's document, parameters and request time
	// (instanceID is only copied into the answer).
	CommandByID(ctx context.Context, commandID, instanceID string) (Command, error)
}
