// Package worldapi is the contract between the parts of the local AWS world:
// the service simulators (EC2, ECS, SSM) on one side, the guest hosts that
// really run block devices, dockerd and tether-agent on the other, and the
// event bus between them. Nothing here does work; each part implements or
// consumes these types, so a fake Host can stand in for a real one.
package worldapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Event is one EventBridge event in its envelope, as AWS delivers it.
type Event struct {
	Version    string          `json:"version"` // always "0"
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"` // aws.ecs, aws.ec2, aws.events
	Account    string          `json:"account"`
	Time       string          `json:"time"` // RFC 3339, seconds precision, "Z"
	Region     string          `json:"region"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

// Publisher takes events from a simulator. Publish must not block on
// delivery: the bus delivers at least once, later, to whatever targets match.
type Publisher interface {
	Publish(Event)
}

// Attachment is what EC2 hands a host when a volume is attached to it.
type Attachment struct {
	VolumeID    string // vol-...
	BackingFile string // sparse file holding the volume's bytes
	DeviceName  string // as given to AttachVolume, e.g. /dev/xvdf
}

// ErrDeviceBusy is returned by DetachDevice when the guest still has the
// device open or mounted (EC2 then keeps the attachment "detaching"/busy).
var ErrDeviceBusy = errors.New("device busy: still mounted or open in the guest")

// ErrHostDown is returned by every Host method once the instance is dead.
var ErrHostDown = errors.New("host is down")

// CommandResult is the outcome of one SSM aws:runShellScript step.
type CommandResult struct {
	Stdout   string
	Stderr   string
	ExitCode int
	Started  time.Time
	Ended    time.Time
}

// Host is the guest side of one EC2 instance / ECS container instance.
type Host interface {
	InstanceID() string

	// AttachDevice makes the volume's backing file a block device in this
	// instance only, with the NVMe-style by-id link
	// /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<hex>.
	AttachDevice(ctx context.Context, a Attachment) error
	// DetachDevice removes it. ErrDeviceBusy while mounted, unless force.
	DetachDevice(ctx context.Context, volumeID string, force bool) error

	// RunShellScript runs an SSM document's script in the instance, as
	// root, with the instance's PATH (tether-agent on it).
	RunShellScript(ctx context.Context, script string, timeout time.Duration) (CommandResult, error)

	// Attributes the ECS agent registers: name -> value ("" for name-only
	// capability attributes). Computed when called, as the agent does at
	// registration (ecs.capability.docker-plugin.tether only if the plugin
	// socket answers).
	Attributes(ctx context.Context) (map[string]string, error)

	// StartTask does what the ECS agent does for a task placed here:
	// Docker volumes (shared/task scope, autoprovision), containers with the
	// ECS labels, start, watch. It returns once the work is under way and
	// reports every state change through report, from any goroutine.
	StartTask(ctx context.Context, spec TaskSpec, report func(TaskUpdate)) error
	// StopTask stops the task's containers (SIGTERM, then SIGKILL after the
	// stop timeout); the STOPPED report follows through report.
	StopTask(ctx context.Context, taskArn string) error

	// Kill ends the instance abruptly: its processes die, its devices go.
	Kill() error
	// RestartAgent restarts tether-agent serve, as systemd would.
	RestartAgent(ctx context.Context) error
	// Close tears the instance down cleanly; idempotent.
	Close() error
}

// ScriptEnvRunner is a Host that runs a script with environment variables
// added to the instance's own, as SSM Agent runs an aws:runShellScript step:
// its AWS_SSM_* variables and a document's SSM_<Name> parameters
// (interpolationType ENV_VAR). The world's SSM runs documents only on hosts
// that implement it.
type ScriptEnvRunner interface {
	RunShellScriptEnv(ctx context.Context, script string, env map[string]string, timeout time.Duration) (CommandResult, error)
}

// TaskSpec is a task as the ECS agent receives it.
type TaskSpec struct {
	TaskArn           string
	ClusterArn        string
	Family            string
	Revision          int32
	Containers        []ContainerSpec
	Volumes           []VolumeSpec
	StopTimeout       time.Duration
	NetworkMode       string // awsvpc, bridge, host: the world runs all as none/host
	TaskDefinitionArn string
}

// ContainerSpec is one container definition, the parts the world runs.
type ContainerSpec struct {
	Name        string
	Image       string
	EntryPoint  []string
	Command     []string
	Environment map[string]string
	MountPoints []MountPoint
	Essential   bool
	// User is the container definition's user ("" for the image's), given
	// to Docker as the ECS agent does (Config.User).
	User string
}

// MountPoint binds a task volume into a container.
type MountPoint struct {
	SourceVolume  string
	ContainerPath string
	ReadOnly      bool
}

// VolumeSpec is one task-definition volume.
type VolumeSpec struct {
	Name   string
	Docker *DockerVolumeConfiguration // nil: a bind/host volume
	Host   string                     // host.sourcePath, if any
}

// DockerVolumeConfiguration mirrors the task definition's field.
type DockerVolumeConfiguration struct {
	Scope         string // "task" or "shared"
	Autoprovision bool
	Driver        string
	DriverOpts    map[string]string
	Labels        map[string]string
}

// TaskUpdate is one state change the agent reports for a task.
type TaskUpdate struct {
	TaskArn       string
	Status        string // PENDING, RUNNING, STOPPED (the agent's view)
	StoppedReason string // why it stopped or failed to start (plugin errors verbatim)
	Containers    []ContainerUpdate
}

// ContainerUpdate is one container's state within a TaskUpdate.
type ContainerUpdate struct {
	Name      string
	RuntimeID string
	Status    string // PENDING, RUNNING, STOPPED
	ExitCode  *int
	Reason    string
}

// NewEvent builds one event as AWS's services send them: version "0", a
// fresh UUID as id, the time now in RFC 3339 at seconds precision (UTC),
// and detail encoded as JSON.
func NewEvent(source, account, region, detailType string, resources []string, detail any) (Event, error) {
	raw, err := json.Marshal(detail)
	if err != nil {
		return Event{}, fmt.Errorf("worldapi: %s detail: %w", detailType, err)
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	h := hex.EncodeToString(id[:])
	return Event{
		Version: "0", ID: h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32],
		DetailType: detailType, Source: source, Account: account, Region: region,
		Time: time.Now().UTC().Format(time.RFC3339), Resources: resources, Detail: raw,
	}, nil
}
