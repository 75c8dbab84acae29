// Package cloudtest is an in-memory EC2, ECS and SSM with real state, behind
// the narrow SDK interfaces of package cloud, for fast tests of the
// reconciler's logic. It is never kinder than AWS: it refuses what the
// local world (test/world) and AWS refuse (the conformance table,
// conformance_test.go, asks both every request tether makes and holds
// them to AWS's documented answers), and sends only the events AWS
// documents (no attachVolume event for a successful attach; detachVolume
// only when SendDetachEvents asks for it). Nothing completes by itself:
// attaches, detaches, creates, deletes, SSM commands and task starts stay
// "in flight" until the test driver completes them, in whatever order it
// likes. SSM's eventual consistency is kept: right after SendCommand,
// GetCommandInvocation answers InvocationDoesNotExist until the clock has
// moved on or the command has run. The guest side of
// each instance is modelled too (what is mounted, which containers use
// which volume), so tests can check tether's safety rules against it.
//
// It is not the local AWS world (test/world): no HTTP, no real devices.
package cloudtest

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/functions/internal/cloud"
)

// World is the whole fake cloud. Its methods are safe for concurrent use.
type World struct {
	mu  sync.Mutex
	now time.Time
	seq int

	volumes   map[string]*Volume
	snapshots map[string]*Snapshot
	tokens    map[string]*token
	instances map[string]*Instance // by EC2 id
	cis       map[string]*ContainerInstance
	taskDefs  map[string]TaskDef
	tasks     map[string]*Task
	commands  map[string]*Command

	events     []Event
	calls      map[string]int
	throttle   map[string]int
	violations []string

	badKMSKeys  map[string]bool  // creates with these keys vanish
	stuck       map[string]bool  // instance/device: attach never completes
	busyUnmount map[string]int   // volume id: unmounts answered busy this many times
	mountExits  map[string][]int // volume id: exit codes of the next mounts
	journal     []string         // mutating calls and agent results, in order
	stickNext   map[string]bool  // instance: its next attach gets stuck
	failCreates int              // the next creates fail asynchronously

	blockedState string           // how a detach the guest holds up shows: busy or detaching
	holds        map[string]*Hold // "Service:Operation[/document]" -> the next call to hold
	slow         map[string]time.Duration
	poisonNext   map[string]int // instance: the next attaches' names are poisoned

	services     map[string]*Service
	detachEvents bool // EBS detachVolume events are sent (an option in the world too)
	liveForceOK  bool // a force detach of a running instance is an operator's, not a violation
	mkfs         []string
	whileMounted []string          // DetachVolume calls made while the guest had the filesystem mounted
	refuseAttach map[string]string // instance -> error code every AttachVolume to it gets
}

// Service is an ECS service's deployment settings (DescribeServices).
type Service struct {
	Name                                string
	Desired, MinimumHealthy, MaximumPct int32
}

// New returns an empty world whose clock starts at start.
func New(start time.Time) *World {
	return &World{
		now: start, volumes: map[string]*Volume{}, snapshots: map[string]*Snapshot{}, tokens: map[string]*token{}, instances: map[string]*Instance{},
		cis: map[string]*ContainerInstance{}, taskDefs: map[string]TaskDef{}, tasks: map[string]*Task{},
		commands: map[string]*Command{}, calls: map[string]int{}, throttle: map[string]int{},
		badKMSKeys: map[string]bool{}, stuck: map[string]bool{}, busyUnmount: map[string]int{}, mountExits: map[string][]int{},
		stickNext: map[string]bool{}, blockedState: "detaching", holds: map[string]*Hold{}, slow: map[string]time.Duration{}, poisonNext: map[string]int{},
		services: map[string]*Service{}, refuseAttach: map[string]string{},
	}
}

// Volume is an EBS volume.
type Volume struct {
	ID, AZ, State string
	Size          int32
	Type          string
	IOPS          int32 // as DescribeVolumes reports it (gp2's baseline; 0 where the type has none)
	Throughput    int32 // MiB/s (gp3)
	Encrypted     bool
	KMSKeyID      string
	Created       time.Time
	Tags          map[string]string
	Att           *Attachment
	Formatted     bool // holds a filesystem (blank when created without a snapshot)
	// FSGiB: the size its filesystem spans, as the guest last grew it (0:
	// no mount has measured it yet; it spans the volume). A mount grows
	// it to Size, as tether-agent does online.
	FSGiB       int32
	MultiAttach bool
	// Mod: the latest Elastic Volumes modification (nil: never modified).
	Mod      *Modification
	token    string
	vanishes bool
}

// Attachment is a volume's attachment.
type Attachment struct {
	Instance, Device, State string
	Time                    time.Time
	Force                   bool
	Blocked                 bool // a detach the guest holds up (the filesystem is mounted)
}

type token struct {
	params string
	volume string
	failed bool
}

// Instance is an EC2 instance and its guest.
type Instance struct {
	ID, AZ, State string
	CI            string            // container instance ARN
	SSMDown       bool              // SSM agent does not answer
	OldAgent      bool              // tether-agent older than mount --format-owner: exit 2 on that flag
	Mounted       map[string]string // volume id -> tether name (filesystem mounted by tether)
	Bindings      map[string]string // tether name -> volume id last mounted (plugin can remount)
	Released      map[string]bool   // tether name -> released by unmount: the plugin does not remount it
	ReleasedFor   map[string]string // tether name -> the attachment its unmount released (never mounted again)
	Generation    map[string]int64  // tether name -> mounts so far (agentproto.MountResult.Generation)
	Poisoned      map[string]bool   // device names EC2 refuses on this instance
	AttachLimit   int               // EBS attachments the instance takes, root included (0: 28, Nitro's)
	ClockSkew     time.Duration     // the instance's clock minus the world's (SSM execution times)
}

// ContainerInstance is an ECS container instance.
type ContainerInstance struct {
	ARN, EC2ID, Status string
	AgentConnected     bool
}

// TaskDef is a task definition's tether-relevant part.
type TaskDef struct {
	ARN        string
	Volumes    []DockerVolume
	Containers []Container
}

// Container is a container definition: its user, and the task volumes it
// mounts (sourceVolume of its mountPoints).
type Container struct {
	Name, User string
	Essential  *bool // nil: ECS's default (essential)
	Mounts     []string
}

// DockerVolume is a task definition volume with a dockerVolumeConfiguration.
type DockerVolume struct {
	Name, Driver, Scope string
	Autoprovision       bool
	DriverOpts          map[string]string
}

// Task is an ECS task.
type Task struct {
	ARN, TaskDef, CI, AZ      string
	LastStatus, DesiredStatus string
	Created, Started, Stopped time.Time
	StoppedReason             string
	Version                   int64
	Group                     string // service:NAME or family:NAME
}

// Command is one SSM command on one instance.
type Command struct {
	ID, Document, Instance string
	Params                 map[string]string
	Requested              time.Time
	Started, Ended         time.Time // when the agent ran it (zero until then; never for an undeliverable one)
	Status                 string    // Pending, Success, Failed, TimedOut
	Details                string
	Exit                   int32
	Unmount                bool   // runs tether-agent unmount (else mount)
	Comment                string // as sent
	Output                 string // the agent's JSON line (agentproto)
}

// Event is what EventBridge would deliver, with the state at emission.
type Event struct {
	Kind string // task, volume, instance, command

	Task                      string // task events
	Version                   int64
	TaskDef, CI               string
	LastStatus, DesiredStatus string
	Created, Started, Stopped time.Time
	Group, AZ                 string

	Volume, Action, Result string // volume events: createVolume/attachVolume/...

	Instance, EC2ID, Status string // instance events (container instance ARN); command events: EC2ID, Status
	AgentConnected          bool

	Command, Document string // command events (SSM's, when an invocation ends)
}

// Now is the world's clock.
func (w *World) Now() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

// Advance moves the clock.
func (w *World) Advance(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.now = w.now.Add(d)
}

func (w *World) id(prefix string) string {
	w.seq++
	return fmt.Sprintf("%s%017x", prefix, w.seq)
}

// commandID is shaped as SSM's: a UUID.
func (w *World) commandID() string {
	w.seq++
	return fmt.Sprintf("00000000-0000-4000-8000-%012x", w.seq)
}

func (w *World) call(op string) error {
	w.calls[op]++
	if d := w.slow[op]; d > 0 {
		delete(w.slow, op)
		w.now = w.now.Add(d)
	}
	if w.throttle[op] > 0 {
		w.throttle[op]--
		return &smithy.GenericAPIError{Code: "RequestLimitExceeded", Message: "Request limit exceeded."}
	}
	return nil
}

// apiErr is a refusal of the request (a client fault, HTTP 400 in AWS).
func apiErr(code, format string, args ...any) error {
	return &smithy.GenericAPIError{Code: code, Message: fmt.Sprintf(format, args...), Fault: smithy.FaultClient}
}

func (w *World) violate(format string, args ...any) {
	w.violations = append(w.violations, fmt.Sprintf("%s: ", w.now.Format(time.TimeOnly))+fmt.Sprintf(format, args...))
}

// Calls returns the number of calls per "Service:Operation".
func (w *World) Calls() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for k, v := range w.calls {
		out[k] = v
	}
	return out
}

// EC2Calls sums the EC2 calls made so far.
func (w *World) EC2Calls() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for k, v := range w.calls {
		if strings.HasPrefix(k, "EC2:") {
			n += v
		}
	}
	return n
}

// note appends to the journal.
func (w *World) note(format string, args ...any) {
	w.journal = append(w.journal, fmt.Sprintf(format, args...))
}

// Journal returns the mutating calls (with their outcome) and the agent's
// command results, in order: "CreateVolume vol-… ok", "DetachVolume vol-…
// i-a force=false ok", "unmount vol-… i-a exit=3", ...
func (w *World) Journal() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.journal...)
}

// Violations returns every safety rule broken so far.
func (w *World) Violations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.violations...)
}

// TakeEvents returns and clears the events emitted so far.
func (w *World) TakeEvents() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	ev := w.events
	w.events = nil
	return ev
}

// Faults.

// Throttle makes the next n calls of op ("EC2:AttachVolume") fail with
// RequestLimitExceeded.
func (w *World) Throttle(op string, n int) { w.mu.Lock(); w.throttle[op] += n; w.mu.Unlock() }

// SlowNext makes the next call of op take d of the world's clock (a call
// the SDK retried for a while, throttled), whatever it answers.
func (w *World) SlowNext(op string, d time.Duration) { w.mu.Lock(); w.slow[op] = d; w.mu.Unlock() }

// BadKMSKey makes creates with key vanish when they complete.
func (w *World) BadKMSKey(key string) { w.mu.Lock(); w.badKMSKeys[key] = true; w.mu.Unlock() }

// StuckDevice makes attaches as device on instance never complete.
func (w *World) StuckDevice(instance, device string) {
	w.mu.Lock()
	w.stuck[instance+"/"+device] = true
	w.mu.Unlock()
}

// StickNextAttach makes the next attach to instance stay "attaching" (a
// device name that stays unusable, as after a Xen force detach).
func (w *World) StickNextAttach(instance string) {
	w.mu.Lock()
	w.stickNext[instance] = true
	w.mu.Unlock()
}

// FailNextCreates makes the next n creates fail asynchronously: the volume
// exists in "creating", then vanishes, and its client token is spent.
func (w *World) FailNextCreates(n int) { w.mu.Lock(); w.failCreates += n; w.mu.Unlock() }

// PoisonDevice makes EC2 refuse device on instance (InvalidParameterValue).
func (w *World) PoisonDevice(instance, device string) {
	w.mu.Lock()
	w.instances[instance].Poisoned[device] = true
	w.mu.Unlock()
}

// PoisonNextAttachNames makes the next n AttachVolume calls to instance
// find their device name poisoned (refused now and from then on).
func (w *World) PoisonNextAttachNames(instance string, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.poisonNext[instance] += n
}

// BusyUnmount makes the next n unmounts of volume answer busy (exit 3).
func (w *World) BusyUnmount(volumeID string, n int) {
	w.mu.Lock()
	w.busyUnmount[volumeID] += n
	w.mu.Unlock()
}

// MountExits makes the next mounts of volume exit with these codes.
func (w *World) MountExits(volumeID string, codes ...int) {
	w.mu.Lock()
	w.mountExits[volumeID] = append(w.mountExits[volumeID], codes...)
	w.mu.Unlock()
}

// BlockedDetachShows sets how DescribeVolumes shows a detach the guest
// holds up by keeping the filesystem mounted: "detaching" (the default;
// what DescribeVolumes shows in practice, and the local world too: the
// detach just never ends) or "busy" (the state EC2's API reference names).
func (w *World) BlockedDetachShows(state string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.blockedState = state
	for _, v := range w.volumes {
		if v.Att != nil && v.Att.Blocked {
			v.Att.State = state
		}
	}
}

// SendDetachEvents turns EBS detachVolume events on (the current EBS guide
// lists them; the world sends them only behind an option, so tether must
// not depend on them).
func (w *World) SendDetachEvents(on bool) { w.mu.Lock(); w.detachEvents = on; w.mu.Unlock() }

// AllowLiveForce makes a force detach of a running instance an operator's
// (not recorded as a violation).
func (w *World) AllowLiveForce() { w.mu.Lock(); w.liveForceOK = true; w.mu.Unlock() }

// SetInstanceState moves an instance through EC2's states. "stopping" and
// "shutting-down" leave its containers running (flushing after SIGTERM);
// "stopped" and "terminated" end them: its tasks stop, its mounts are gone
// and ECS's agent there disconnects.
func (w *World) SetInstanceState(instance, state string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	inst := w.instances[instance]
	inst.State = state
	if state != "stopped" && state != "terminated" {
		return
	}
	inst.Mounted = map[string]string{}
	ci := w.cis[inst.CI]
	ci.AgentConnected = false
	for _, t := range w.sortedTasksLocked() {
		if t.CI == ci.ARN && t.LastStatus != "STOPPED" {
			t.DesiredStatus, t.LastStatus, t.Stopped = "STOPPED", "STOPPED", w.now
			w.taskEventLocked(t)
		}
	}
}

// RefuseAttaches makes every AttachVolume to instance fail with code (e.g.
// UnsupportedOperation, as EC2 answers for an instance type that cannot
// take the volume).
func (w *World) RefuseAttaches(instance, code string) {
	w.mu.Lock()
	w.refuseAttach[instance] = code
	w.mu.Unlock()
}

// SetAttachLimit sets how many EBS attachments (root included) an instance takes.
func (w *World) SetAttachLimit(instance string, n int) {
	w.mu.Lock()
	w.instances[instance].AttachLimit = n
	w.mu.Unlock()
}

// SetClockSkew makes an instance's clock (SSM's execution times) differ from the world's.
func (w *World) SetClockSkew(instance string, d time.Duration) {
	w.mu.Lock()
	w.instances[instance].ClockSkew = d
	w.mu.Unlock()
}

// ForgetInstance: ECS forgets the container instance (deregister --force),
// its tasks with it; EC2 and the guest go on as they were.
func (w *World) ForgetInstance(instance string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ci := w.cis[w.instances[instance].CI]
	ci.Status, ci.AgentConnected = "INACTIVE", false
	for _, t := range w.sortedTasksLocked() {
		if t.CI == ci.ARN && t.LastStatus != "STOPPED" {
			t.DesiredStatus, t.LastStatus, t.Stopped = "STOPPED", "STOPPED", w.now
			w.taskEventLocked(t)
		}
	}
	w.events = append(w.events, Event{Kind: "instance", Instance: ci.ARN, EC2ID: instance, Status: ci.Status})
}

// AddService registers a service's deployment settings.
func (w *World) AddService(name string, desired, minHealthy, maxPct int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.services[name] = &Service{Name: name, Desired: desired, MinimumHealthy: minHealthy, MaximumPct: maxPct}
}

// DetachedWhileMounted lists the (non-force) DetachVolume calls made while
// the guest still had the volume's filesystem mounted.
func (w *World) DetachedWhileMounted() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.whileMounted...)
}

// Mkfs lists the formats the agent made: "vol-… i-… grant=true".
func (w *World) Mkfs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.mkfs...)
}

// SetOldAgent makes an instance's tether-agent one older than mount
// --format-owner (it exits 2 on the unknown flag, as Go's flag package).
func (w *World) SetOldAgent(instance string, old bool) {
	w.mu.Lock()
	w.instances[instance].OldAgent = old
	w.mu.Unlock()
}

// SetSSMDown makes an instance's SSM agent (un)reachable.
func (w *World) SetSSMDown(instance string, down bool) {
	w.mu.Lock()
	w.instances[instance].SSMDown = down
	w.mu.Unlock()
}

// Setup.

// AddInstance registers an EC2 instance in az as a container instance.
func (w *World) AddInstance(id, az string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	ci := "arn:aws:ecs:us-east-1:111122223333:container-instance/c/" + strings.TrimPrefix(id, "i-")
	w.instances[id] = &Instance{ID: id, AZ: az, State: "running", CI: ci, Mounted: map[string]string{}, Bindings: map[string]string{},
		Released: map[string]bool{}, ReleasedFor: map[string]string{}, Generation: map[string]int64{}, Poisoned: map[string]bool{}}
	w.cis[ci] = &ContainerInstance{ARN: ci, EC2ID: id, Status: "ACTIVE", AgentConnected: true}
	return ci
}

// AddTaskDef registers a task definition.
func (w *World) AddTaskDef(td TaskDef) { w.mu.Lock(); w.taskDefs[td.ARN] = td; w.mu.Unlock() }

// AddVolume makes a volume outside tether (e.g. a user's, for autoprovision
// false), holding a filesystem.
func (w *World) AddVolume(az string, tags map[string]string) string {
	return w.AddVolumeOf(az, "gp3", false, tags)
}

// AddVolumeOf makes a volume outside tether of a type, with Multi-Attach on or off.
func (w *World) AddVolumeOf(az, typ string, multiAttach bool, tags map[string]string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := &Volume{ID: w.id("vol-"), AZ: az, State: "available", Size: 8, Type: typ, Created: w.now, Tags: tags, Formatted: true, MultiAttach: multiAttach}
	w.volumes[v.ID] = v
	return v.ID
}

// AttachForeign attaches a new volume that is not tether's (no tags) to
// instance as each of devices: names other software took, which this
// process knows nothing of.
func (w *World) AttachForeign(instance string, devices ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range devices {
		v := &Volume{ID: w.id("vol-"), AZ: w.instances[instance].AZ, State: "in-use", Size: 8, Type: "gp3", Created: w.now,
			Att: &Attachment{Instance: instance, Device: d, State: "attached", Time: w.now}}
		w.volumes[v.ID] = v
	}
}

// Snapshots for assertions.

// Volumes returns copies of the volumes that exist (not deleted).
func (w *World) Volumes() []Volume {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Volume
	for _, v := range w.volumes {
		cp := *v
		if v.Att != nil {
			a := *v.Att
			cp.Att = &a
		}
		out = append(out, cp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// TaskState returns a copy of a task.
func (w *World) TaskState(arn string) Task {
	w.mu.Lock()
	defer w.mu.Unlock()
	return *w.tasks[arn]
}

// Tasks returns copies of all tasks.
func (w *World) Tasks() []Task {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Task
	for _, t := range w.tasks {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ARN < out[j].ARN })
	return out
}

// InstanceState returns a copy of an instance's guest state.
func (w *World) InstanceState(id string) Instance {
	w.mu.Lock()
	defer w.mu.Unlock()
	in := *w.instances[id]
	in.Mounted = copyMap(in.Mounted)
	in.Bindings = copyMap(in.Bindings)
	return in
}

// Commands returns copies of all SSM commands, oldest first.
func (w *World) Commands() []Command {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Command
	for _, c := range w.commands {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// The fake clients satisfy the seam's narrow SDK interfaces.
var (
	_ cloud.EC2API = (*EC2)(nil)
	_ cloud.ECSAPI = (*ECS)(nil)
	_ cloud.SSMAPI = (*SSM)(nil)
)
