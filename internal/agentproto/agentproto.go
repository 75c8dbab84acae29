// Package agentproto is the contract between tether's reconciler and
// tether-agent's commands, which the reconciler runs through tether's SSM
// documents: the exit codes, the parameters, and the one JSON line each
// command prints on stdout. The agent, the reconciler and the local world's
// fake host all import it, so a drift between them is a compile error
// (docs/contracts.md explains each rule in words).
package agentproto

import (
	"bufio"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Protocol is the version of this contract (the commands' flags, exit
// codes and JSON): `tether-agent version --json` reports it, and the
// reconciler refuses an agent that speaks another. Protocol 2 is the
// grant to format, the release marker, mount generations and attachment
// tokens.
const Protocol = 2

// Agent names the agent that printed a line: every mount and unmount result
// and every failure carries it, so the reconciler learns an instance's agent
// from the commands it sends anyway (no extra SSM round trip) and acts on no
// answer of an agent that speaks another Protocol. Empty (omitted) in lines of an agent older than
// this field: the reconciler then cannot tell and goes on.
type Agent struct {
	AgentVersion string `json:"agentVersion,omitempty"` // the release (VersionResult.Version)
	Protocol     int    `json:"protocol,omitempty"`     // Protocol
}

// ThisAgent is the Agent value of an agent of this Protocol at a release.
func ThisAgent(version string) Agent { return Agent{AgentVersion: version, Protocol: Protocol} }

// Reported: the line named its agent's protocol.
func (a Agent) Reported() bool { return a.Protocol != 0 }

// VersionResult is what `tether-agent version --json` prints.
type VersionResult struct {
	Version  string `json:"version"`  // the release, stamped at build (-ldflags -X main.version=...)
	Protocol int    `json:"protocol"` // Protocol
}

// Exit codes of tether-agent's commands. SSM reports them as the
// invocation's ResponseCode; the class decides what the reconciler does.
const (
	// ExitOK: done, also when there was nothing to do.
	ExitOK = 0
	// ExitFailed: failed for a reason no other code names (an unexpected
	// I/O or tool error). The reconciler retries a bounded number of times.
	ExitFailed = 1
	// ExitBadInput: usage or validation error; nothing was changed. Permanent.
	ExitBadInput = 2
	// ExitBusy: something on the host still holds the volume: a container
	// (running, or starting with its Mount answered), a process with files
	// open in it, another mount namespace where it is mounted, a kernel
	// holder of the device. Output names the holders. Retry once they let go.
	ExitBusy = 3
	// ExitNoDevice: the volume's device did not appear within the wait (it
	// is not attached to this host, or not yet visible).
	ExitNoDevice = 4
	// ExitRefused: the device holds something tether must not touch
	// (partition table, LVM, RAID, LUKS, swap, an unsupported filesystem,
	// contradicting signatures). Permanent until an operator acts.
	ExitRefused = 5
	// ExitNotFormatted: the device has no filesystem tether can mount, and
	// mount either had no format grant (--format-if-blank) or could not
	// prove the device blank (raw data, a lost primary superblock, a read
	// error). Nothing was written. An operator decides (docs/contracts.md).
	ExitNotFormatted = 6
	// ExitNeedsRepair: the filesystem is damaged beyond what a safe check
	// repairs (fsck exit 4 or worse). Nothing was mounted. Operator repair.
	ExitNeedsRepair = 7
	// ExitConflict: the host's state contradicts the request: another
	// volume is mounted under the name, the device is mounted elsewhere,
	// the device found is not the volume (identity or size mismatch).
	ExitConflict = 8
	// ExitRetryable: a transient condition (the volume's lock was held past
	// the command's wait, the device is still settling): retry soon.
	ExitRetryable = 9
	// ExitReleased: mount was asked for an attachment an unmount released
	// (the command's --attachment): a released attachment is only ever
	// detached, never mounted again, so a mount racing the reconciler's
	// detach cannot slip in. Detach it and attach the volume again (a new
	// attachment has a new token).
	ExitReleased = 10
)

// Class is the name of an exit code's class, as the JSON output spells it.
type Class string

// Classes, one per exit code.
const (
	ClassOK           Class = "ok"
	ClassFailed       Class = "failed"
	ClassBadInput     Class = "bad-input"
	ClassBusy         Class = "busy"
	ClassNoDevice     Class = "no-device"
	ClassRefused      Class = "refused"
	ClassNotFormatted Class = "not-formatted"
	ClassNeedsRepair  Class = "needs-repair"
	ClassConflict     Class = "conflict"
	ClassRetryable    Class = "retryable"
	ClassReleased     Class = "released"
)

var classByCode = map[int]Class{
	ExitOK: ClassOK, ExitFailed: ClassFailed, ExitBadInput: ClassBadInput, ExitBusy: ClassBusy,
	ExitNoDevice: ClassNoDevice, ExitRefused: ClassRefused, ExitNotFormatted: ClassNotFormatted,
	ExitNeedsRepair: ClassNeedsRepair, ExitConflict: ClassConflict, ExitRetryable: ClassRetryable,
	ExitReleased: ClassReleased,
}

// ClassOf names an exit code's class; unknown codes (a shell's 126/127, a
// signal's 128+n, SSM's -1) are ClassFailed.
func ClassOf(code int) Class {
	if c, ok := classByCode[code]; ok {
		return c
	}
	return ClassFailed
}

// Permanent reports whether retrying the same command cannot help: only a
// person (or a changed request) can.
func Permanent(code int) bool {
	switch code {
	case ExitBadInput, ExitRefused, ExitNotFormatted, ExitNeedsRepair, ExitConflict:
		return true
	}
	return false
}

// SSM document parameters (template.yaml's documents pass them to the
// agent's flags; every value is validated by the document's allowedPattern
// and again by the agent).
const (
	ParamVolumeID      = "VolumeId"      // --volume-id
	ParamVolumeName    = "VolumeName"    // --name
	ParamFSType        = "FsType"        // --fstype (mount)
	ParamDevice        = "Device"        // --device (mount): the attachment's device name, "" if unknown
	ParamFormatIfBlank = "FormatIfBlank" // --format-if-blank (mount): "true" or "false"
	ParamSizeGiB       = "SizeGiB"       // --size-gib (mount): the volume's size, to confirm a device found by name
	ParamAttachment    = "Attachment"    // --attachment (mount, unmount): the attachment the command is for
	ParamForce         = "Force"         // --force (unmount): "true" or "false"
	ParamDevSuid       = "DevSuid"       // --dev-suid (mount): "true" for a volume whose driverOpts has devsuid=true
	ParamFormatOwner   = "FormatOwner"   // --format-owner (mount): UID[:GID] for the root of a filesystem this mount makes; "" for none
	// ParamReleasedFor (unmount of several volumes): for each volume, the
	// id of the task it is released for ("" for none). Not the agent's:
	// the reconciler reads it back from SSM, as it reads a single unmount's
	// comment, so whichever process sees the command's end knows who waits.
	ParamReleasedFor = "ReleasedFor"
)

// An unmount command may carry several volumes of one instance, so that a
// drain releases a host's volumes with one SendCommand (SSM's SendCommand
// bucket is the tightest one a mass handoff meets): VolumeId, VolumeName and
// Attachment are then lists of as many items, joined by ListSep, item i of
// each describing volume i. The agent unmounts each and prints one line per
// volume; its exit code is the first non-zero one of theirs.
const (
	ListSep = ","
	// MaxBatch bounds the volumes of one unmount command: 24 lines of the
	// agent's results fit SSM's 24,000 characters of output with room to
	// spare (a line is under 600 characters).
	MaxBatch = 24
)

// SplitList splits a list parameter into its items ("" is no item).
func SplitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ListSep)
}

// JoinList joins items into a list parameter.
func JoinList(items []string) string { return strings.Join(items, ListSep) }

// Names of the step of tether's SSM documents that runs tether-agent (on
// Linux; earlier steps refuse other platforms). A document of several steps
// answers GetCommandInvocation only for a named step: pass it as PluginName.
const (
	StepMount   = "mount"
	StepUnmount = "unmount"
	StepStatus  = "status"
)

// attachmentPattern: an attachment token is opaque to the agent; the
// reconciler makes it from the instance and EC2's attach time.
var attachmentPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// ValidateAttachment accepts "" (not given) or an attachment token.
func ValidateAttachment(s string) error {
	if s != "" && !attachmentPattern.MatchString(s) {
		return fmt.Errorf("invalid attachment %q: want 1 to 64 of A-Z a-z 0-9 . _ : -", s)
	}
	return nil
}

// AttachmentToken names one attachment of a volume: the instance and the
// time EC2 reports the attach began (unix milliseconds). A volume detached
// and attached again to the same instance gets a new token.
func AttachmentToken(instanceID string, attachTimeMS int64) string {
	return fmt.Sprintf("%s:%d", instanceID, attachTimeMS)
}

// MountResult is what `tether-agent mount --json` prints on success.
type MountResult struct {
	VolumeID  string `json:"volumeId"`
	Name      string `json:"name"`
	Device    string `json:"device"`
	FSType    string `json:"fstype"`
	Formatted bool   `json:"formatted"`
	// Granted echoes --format-if-blank: whether this mount could have
	// formatted the device (nil from an agent older than this field). A
	// mount without the grant leaves nothing for its end to record.
	Granted        *bool  `json:"granted,omitempty"`
	Grown          bool   `json:"grown"`
	Mountpoint     string `json:"mountpoint"`
	AlreadyMounted bool   `json:"alreadyMounted"`
	// Checked: the filesystem was checked (fsck) before this mount because
	// it was not cleanly unmounted.
	Checked bool `json:"checked,omitempty"`
	// Attachment echoes --attachment.
	Attachment string `json:"attachment,omitempty"`
	// Generation counts the mounts of NAME on this host: each mount that
	// was not already in place adds one. An unmount result counts only for
	// the generation it released.
	Generation int64 `json:"generation"`
	// DeviceBytes: the device's size as the kernel sees it after this
	// mount (after a rescan where one is needed); 0 from an agent older
	// than online grow. A grow is done once it is the volume's size in
	// force and FilesystemBytes follows it.
	DeviceBytes int64 `json:"deviceBytes,omitempty"`
	// FilesystemBytes: the mounted filesystem's data size after this
	// mount, and its online grow if Grown (0: unknown).
	FilesystemBytes int64 `json:"filesystemBytes,omitempty"`
	// GrowError: the device is larger than the filesystem but growing it
	// failed (the mount itself stands; the next mount tries again).
	GrowError string `json:"growError,omitempty"`
	Agent
}

// UnmountResult is what `tether-agent unmount --json` prints on success:
// the kernel agrees nothing on the host holds the device any more (it is
// mounted in no mount namespace, has no holders, and opened O_EXCL).
type UnmountResult struct {
	VolumeID   string `json:"volumeId"`
	Name       string `json:"name"`
	Mountpoint string `json:"mountpoint"`
	Device     string `json:"device,omitempty"`
	WasMounted bool   `json:"wasMounted"`
	// Released: the binding is marked released; the plugin will not mount
	// the volume again by itself until the next mount command.
	Released bool `json:"released"`
	// Generation is the mount generation this unmount released.
	Generation int64  `json:"generation"`
	Attachment string `json:"attachment,omitempty"`
	// Users: the containers --force went past, if any.
	Users []Holder `json:"users,omitempty"`
	Agent
}

// Holder is one thing that holds a volume or its device.
type Holder struct {
	Kind        string `json:"kind"` // container, process, namespace, device, plugin
	ID          string `json:"id,omitempty"`
	Name        string `json:"name,omitempty"`
	State       string `json:"state,omitempty"` // a container's dockerd state
	PID         int    `json:"pid,omitempty"`
	Command     string `json:"command,omitempty"`
	ContainerID string `json:"containerId,omitempty"` // from the process's cgroup
}

// Failure is what a command prints on stdout (with --json) when it fails:
// {"error":{...}}. Message says what was found and how to proceed.
type Failure struct {
	// VolumeID names the volume the failure is about in a batched
	// unmount's lines (one per volume); omitted elsewhere.
	VolumeID string   `json:"volumeId,omitempty"`
	ExitCode int      `json:"exitCode"`
	Class    Class    `json:"class"`
	Message  string   `json:"message"`
	Found    string   `json:"found,omitempty"` // what the device holds (refused, not-formatted)
	Holders  []Holder `json:"holders,omitempty"`
	Agent
}

// Output is one command's JSON line, success or failure.
type Output struct {
	Error *Failure `json:"error,omitempty"`
	// Raw is the line itself, for the result types above.
	Raw json.RawMessage `json:"-"`
}

// ParseOutput finds the last JSON object line in a command's stdout (the
// document's shell may print lines of its own; SSM keeps the first 24,000
// characters, far more than one line). ok is false when there is none.
func ParseOutput(stdout string) (out Output, ok bool) {
	var last string
	jsonLines(stdout, func(line string) { last = line })
	if last == "" || json.Unmarshal([]byte(last), &out) != nil {
		return Output{}, false
	}
	out.Raw = json.RawMessage(last)
	return out, true
}

// VolumeID is the volume a line is about: a result's volumeId, or a
// failure's in a batched unmount ("" when the line names none).
func (o Output) VolumeID() string {
	if o.Error != nil {
		return o.Error.VolumeID
	}
	var v struct {
		VolumeID string `json:"volumeId"`
	}
	_ = json.Unmarshal(o.Raw, &v)
	return v.VolumeID
}

// ParseOutputFor finds the last JSON line about volumeID in a batched
// unmount's stdout, which prints one line per volume (results and
// failures name their volume). ok is false when no line names it: the
// agent refused the batch as a whole (an agent older than batches), or
// never got to the volume.
func ParseOutputFor(stdout, volumeID string) (out Output, ok bool) {
	jsonLines(stdout, func(line string) {
		var o Output
		if json.Unmarshal([]byte(line), &o) != nil {
			return
		}
		o.Raw = json.RawMessage(line)
		if o.VolumeID() == volumeID {
			out, ok = o, true
		}
	})
	return out, ok
}

// jsonLines calls each for every line of stdout that looks like a JSON
// object, trimmed, in order.
func jsonLines(stdout string, each func(line string)) {
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "{") && strings.HasSuffix(line, "}") {
			each(line)
		}
	}
}

// Mount decodes a successful mount's line.
func (o Output) Mount() (MountResult, bool) {
	var m MountResult
	if o.Error != nil || json.Unmarshal(o.Raw, &m) != nil || m.VolumeID == "" {
		return MountResult{}, false
	}
	return m, true
}

// AgentOf names the agent that printed the line: a result's or a failure's
// Agent (zero when the line names none).
func (o Output) AgentOf() Agent {
	if o.Error != nil {
		return o.Error.Agent
	}
	var a Agent
	_ = json.Unmarshal(o.Raw, &a)
	return a
}

// Version decodes `tether-agent version --json`.
func (o Output) Version() (VersionResult, bool) {
	var v VersionResult
	if o.Error != nil || json.Unmarshal(o.Raw, &v) != nil || v.Protocol == 0 {
		return VersionResult{}, false
	}
	return v, true
}

// Unmount decodes a successful unmount's line.
func (o Output) Unmount() (UnmountResult, bool) {
	var u UnmountResult
	if o.Error != nil || json.Unmarshal(o.Raw, &u) != nil || u.VolumeID == "" {
		return UnmountResult{}, false
	}
	return u, true
}
