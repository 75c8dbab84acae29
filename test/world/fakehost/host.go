// Package fakehost is an in-memory worldapi.Host: a guest that models what
// tether cares about — attached devices by volume id, a filesystem and data
// per volume (Disks, shared by all hosts: blank, formatted, foreign, torn
// superblock, raw data), mounts made by a simulated `tether-agent
// mount`/`unmount`/`status`/`version` run through RunShellScript under the
// same contract as the real agent (internal/agentproto: the format grant
// and blank proof, exit codes, JSON results and failures, mount
// generations, attachment tokens, the release marker, the kernel's holders
// of a device), DetachDevice busy while anything holds the device, and
// tasks whose containers start only once their tether volumes are mounted
// (the plugin's bounded wait, then STOPPED with a plugin-like reason; the
// plugin never remounts a released volume). Test controls inject chaos's
// faults: a slow flush, a torn superblock after a force detach, a hook to
// race the plugin against a detach, kernel holders. It is for fast tests
// of the simulators and of the reconciler at scale; test/world/hosts has
// the real thing.
package fakehost

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand"
	"sort"
	"sync"
	"time"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Options configure a Host.
type Options struct {
	InstanceID   string
	AZ           string
	InstanceType string // ecs.instance-type (default t3.medium)
	Disks        *Disks // shared storage; a private one when nil
	Seed         int64
	// PluginWait bounds the plugin's Mount wait for the reconciler (the real
	// plugin waits under dockerd's 2-minute timeout). Default 100s.
	PluginWait time.Duration
	// NoPlugin: tether-agent serve is not running, so the capability
	// ecs.capability.docker-plugin.tether is not advertised.
	NoPlugin bool
	Root     string // tether-agent --root default (/var/lib/tether)
	Logger   *slog.Logger
}

// Host is one fake EC2 instance.
type Host struct {
	opts Options
	log  *slog.Logger

	mu            sync.Mutex
	rng           *rand.Rand
	down          bool
	closed        bool
	changed       chan struct{}
	devices       map[string]string // volume id -> device path
	backing       map[string]string // volume id -> the world's backing file (its size is the device's)
	nextNVMe      int
	mounts        map[string]*mount              // by tether name
	bindings      map[string]*binding            // by tether name
	kernel        map[string][]agentproto.Holder // volume id -> what else holds its device (test control)
	lazy          map[string]map[string]bool     // volume id -> task ARNs whose containers keep it mounted after a forced unmount
	slowFlush     map[string]chan struct{}       // volume id -> the next unmount's flush ends when closed
	unmountHook   func(volumeID, name string)
	tasks         map[string]*fakeTask
	agentRestarts int
	forcedUnmount int
	scripts       []string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type mount struct {
	volumeID, device, fsType string
	// flushing: an unmount is flushing it (SlowFlush): still mounted, held
	// by the unmount (the agent's volume lock), handed to nobody.
	flushing bool
}

// binding is <root>/bindings/NAME: the volume last mounted under NAME, its
// mount generation, the release marker and the attachment token.
type binding struct {
	volumeID   string
	generation int64
	released   bool
	attachment string
}

var _ worldapi.Host = (*Host)(nil)

// New returns a running host.
func New(opts Options) *Host {
	if opts.InstanceType == "" {
		opts.InstanceType = "t3.medium"
	}
	if opts.Disks == nil {
		opts.Disks = NewDisks()
	}
	if opts.PluginWait == 0 {
		opts.PluginWait = 100 * time.Second
	}
	if opts.Root == "" {
		opts.Root = "/var/lib/tether"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Host{
		opts: opts, log: opts.Logger.With("component", "fakehost", "instance", opts.InstanceID),
		rng: rand.New(rand.NewSource(opts.Seed)), changed: make(chan struct{}),
		devices: map[string]string{}, backing: map[string]string{}, nextNVMe: 1, mounts: map[string]*mount{},
		bindings: map[string]*binding{}, tasks: map[string]*fakeTask{},
		kernel: map[string][]agentproto.Holder{}, lazy: map[string]map[string]bool{}, slowFlush: map[string]chan struct{}{},
		ctx: ctx, cancel: cancel,
	}
}

// InstanceID implements worldapi.Host.
func (h *Host) InstanceID() string { return h.opts.InstanceID }

// Disks returns the storage this host writes to.
func (h *Host) Disks() *Disks { return h.opts.Disks }

// aliveLocked answers ErrHostDown once the host is killed or closed, as
// every worldapi.Host method must from then on.
func (h *Host) aliveLocked() error {
	if h.down || h.closed {
		return worldapi.ErrHostDown
	}
	return nil
}

func (h *Host) changedLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// AttachDevice implements worldapi.Host: the volume appears as the next
// NVMe namespace, found by its by-id link.
func (h *Host) AttachDevice(_ context.Context, a worldapi.Attachment) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.aliveLocked(); err != nil {
		return err
	}
	if dev, ok := h.devices[a.VolumeID]; ok {
		return fmt.Errorf("fakehost %s: %s already attached as %s", h.opts.InstanceID, a.VolumeID, dev)
	}
	dev := fmt.Sprintf("/dev/nvme%dn1", h.nextNVMe)
	h.nextNVMe++
	h.devices[a.VolumeID] = dev
	h.backing[a.VolumeID] = a.BackingFile
	h.changedLocked()
	h.log.Info("device attached", "volume", a.VolumeID, "device", dev, "requested", a.DeviceName)
	return nil
}

// DetachDevice implements worldapi.Host: busy while the guest holds the
// device (mounted, kept by containers' namespaces after a forced unmount,
// or a kernel holder) unless forced; a forced detach of a held volume
// counts as unclean (and tears its superblock under TearOnForceDetach).
func (h *Host) DetachDevice(_ context.Context, volumeID string, force bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.aliveLocked(); err != nil {
		return err
	}
	if _, ok := h.devices[volumeID]; !ok {
		return nil
	}
	held := false
	for name, m := range h.mounts {
		if m.volumeID != volumeID {
			continue
		}
		if !force {
			return fmt.Errorf("fakehost %s: %s mounted as %s: %w", h.opts.InstanceID, volumeID, name, worldapi.ErrDeviceBusy)
		}
		delete(h.mounts, name)
		held = true
		h.log.Warn("forced detach of a mounted volume", "volume", volumeID, "name", name)
	}
	if holders := h.holdersLocked(volumeID); len(holders) > 0 {
		if !force {
			return fmt.Errorf("fakehost %s: %s held (%s): %w", h.opts.InstanceID, volumeID, holders[0].Name, worldapi.ErrDeviceBusy)
		}
		held = true
		delete(h.lazy, volumeID)
		delete(h.kernel, volumeID)
	}
	if held {
		h.opts.Disks.unclean(volumeID)
	}
	delete(h.devices, volumeID)
	delete(h.backing, volumeID)
	h.changedLocked()
	h.log.Info("device detached", "volume", volumeID, "force", force)
	return nil
}

// Attributes implements worldapi.Host with what the ECS agent registers.
func (h *Host) Attributes(_ context.Context) (map[string]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.aliveLocked(); err != nil {
		return nil, err
	}
	attrs := map[string]string{
		"ecs.availability-zone":              "",
		"ecs.instance-type":                  h.opts.InstanceType,
		"ecs.os-type":                        "linux",
		"ecs.os-family":                      "LINUX",
		"ecs.cpu-architecture":               "x86_64",
		"ecs.capability.task-eni":            "",
		"ecs.capability.docker-plugin.local": "",
		"com.amazonaws.ecs.capability.logging-driver.awslogs":   "",
		"com.amazonaws.ecs.capability.logging-driver.json-file": "",
		"com.amazonaws.ecs.capability.docker-remote-api.1.25":   "",
		"ecs.capability.execution-role-awslogs":                 "",
	}
	if h.opts.AZ != "" {
		attrs["ecs.availability-zone"] = h.opts.AZ
	} else {
		delete(attrs, "ecs.availability-zone")
	}
	if !h.opts.NoPlugin {
		attrs["ecs.capability.docker-plugin.tether"] = ""
	}
	return attrs, nil
}

// SetPlugin starts or stops tether-agent serve. Attributes already
// registered with ECS do not change, as with the real agent.
func (h *Host) SetPlugin(serving bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.opts.NoPlugin = !serving
	h.changedLocked()
}

// Kill implements worldapi.Host: everything stops at once, without reports;
// mounted volumes count as unclean.
func (h *Host) Kill() error {
	h.mu.Lock()
	if h.down {
		h.mu.Unlock()
		return nil
	}
	h.down = true
	for _, m := range h.mounts {
		h.opts.Disks.unclean(m.volumeID)
	}
	for vol := range h.lazy {
		h.opts.Disks.unclean(vol)
	}
	h.mounts = map[string]*mount{}
	h.lazy, h.kernel = map[string]map[string]bool{}, map[string][]agentproto.Holder{}
	h.devices = map[string]string{}
	h.backing = map[string]string{}
	h.changedLocked()
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
	h.log.Info("host killed")
	return nil
}

// RestartAgent implements worldapi.Host (tether-agent serve restarts; the
// plugin's state is on disk, so nothing is lost).
func (h *Host) RestartAgent(_ context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.aliveLocked(); err != nil {
		return err
	}
	h.agentRestarts++
	h.changedLocked()
	return nil
}

// Close implements worldapi.Host.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.changedLocked()
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
	return nil
}

// State is a test's view of the guest.
type State struct {
	Down          bool
	Devices       map[string]string // volume id -> device
	Mounts        map[string]string // tether name -> volume id
	Tasks         map[string]string // task ARN -> PENDING, RUNNING, STOPPED
	AgentRestarts int
	ForcedUnmount int
	Scripts       int // RunShellScript calls
	// Bindings: tether name -> the binding (volume, generation, release).
	Bindings map[string]BindingState
}

// BindingState is a test's view of <root>/bindings/NAME.
type BindingState struct {
	VolumeID   string
	Generation int64
	Released   bool
	Attachment string
}

// State returns a copy of the guest's state.
func (h *Host) State() State {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := State{
		Down: h.down, Devices: map[string]string{}, Mounts: map[string]string{}, Tasks: map[string]string{},
		AgentRestarts: h.agentRestarts, ForcedUnmount: h.forcedUnmount, Scripts: len(h.scripts),
		Bindings: map[string]BindingState{},
	}
	for n, b := range h.bindings {
		st.Bindings[n] = BindingState{VolumeID: b.volumeID, Generation: b.generation, Released: b.released, Attachment: b.attachment}
	}
	for v, d := range h.devices {
		st.Devices[v] = d
	}
	for n, m := range h.mounts {
		st.Mounts[n] = m.volumeID
	}
	for a, t := range h.tasks {
		st.Tasks[a] = t.status
	}
	return st
}

// Scripts returns every script RunShellScript received, in order.
func (h *Host) Scripts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.scripts...)
}

// Holding is what the guest holds of one volume: what a detach must not
// go past.
type Holding struct {
	Attached bool     // the device is there
	Mounted  []string // tether names it is mounted under
	// Holders: containers' namespaces after a forced unmount, and other
	// holders (HoldDevice).
	Holders []agentproto.Holder
	// Bindings: the bindings that name the volume, by tether name.
	Bindings map[string]BindingState
}

// Holding returns what the guest holds of the volume; false once the host
// is down (it holds nothing).
func (h *Host) Holding(volumeID string) (Holding, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.aliveLocked() != nil {
		return Holding{}, false
	}
	_, attached := h.devices[volumeID]
	out := Holding{Attached: attached, Holders: h.holdersLocked(volumeID), Bindings: map[string]BindingState{}}
	for _, n := range h.knownNamesLocked() {
		if m := h.mounts[n]; m != nil && m.volumeID == volumeID {
			out.Mounted = append(out.Mounted, n)
		}
		if b := h.bindings[n]; b != nil && b.volumeID == volumeID {
			out.Bindings[n] = BindingState{VolumeID: b.volumeID, Generation: b.generation, Released: b.released, Attachment: b.attachment}
		}
	}
	return out, true
}

// HoldDevice makes something else on the host hold the volume's device (a
// process in another mount namespace, a stacked device): unmount is busy
// naming it, and DetachDevice busy, until ReleaseDevice.
func (h *Host) HoldDevice(volumeID string, holder agentproto.Holder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.kernel[volumeID] = append(h.kernel[volumeID], holder)
	h.changedLocked()
}

// ReleaseDevice drops the holders HoldDevice added.
func (h *Host) ReleaseDevice(volumeID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.kernel, volumeID)
	h.changedLocked()
}

// SlowFlush makes the next unmount of the volume flush until FinishFlush
// (or until its script's timeout ends it, the flush still running: the
// volume stays mounted): an unmount that runs past every timer. The
// plugin's own unmount after the last container flushes as slowly: the
// volume stays mounted until FinishFlush.
func (h *Host) SlowFlush(volumeID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.slowFlush[volumeID]; !ok {
		h.slowFlush[volumeID] = make(chan struct{})
	}
}

// FinishFlush ends a SlowFlush.
func (h *Host) FinishFlush(volumeID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ch, ok := h.slowFlush[volumeID]; ok {
		close(ch)
		delete(h.slowFlush, volumeID)
	}
}

// flushLocked starts the slow unmount of m, whose flush ends when gate
// closes: the filesystem stays mounted, and is handed to nobody, until
// then; then it is unmounted (whoever started the flush may have given up
// waiting: the flush goes on).
func (h *Host) flushLocked(name string, m *mount, gate chan struct{}) {
	if m.flushing || h.closed {
		return
	}
	m.flushing = true
	h.wg.Add(1) // under mu: Close cannot be waiting yet
	go func() {
		defer h.wg.Done()
		select {
		case <-gate:
		case <-h.ctx.Done():
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.mounts[name] == m {
			delete(h.mounts, name)
			h.changedLocked()
			h.log.Info("slow flush ended: volume unmounted", "name", name, "volume", m.volumeID)
		}
	}()
}

// OnUnmount sets a hook run (without the host's lock) right after each
// successful unmount command, before it answers: a test starts a task
// there to race the plugin against the reconciler's detach on this host.
func (h *Host) OnUnmount(hook func(volumeID, name string)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unmountHook = hook
}

// holdersLocked is what holds the volume's device besides a mount at its
// mount point: containers' namespaces after a forced unmount, and test
// holders.
func (h *Host) holdersLocked(volumeID string) []agentproto.Holder {
	var out []agentproto.Holder
	arns := make([]string, 0, len(h.lazy[volumeID]))
	for arn := range h.lazy[volumeID] {
		arns = append(arns, arn)
	}
	sort.Strings(arns)
	for _, arn := range arns {
		t := h.tasks[arn]
		if t == nil {
			continue
		}
		for _, c := range t.spec.Containers {
			out = append(out, agentproto.Holder{Kind: "namespace", Name: "/var/lib/tether/volumes/...", ID: "mnt:[" + t.runtime[c.Name][:8] + "]",
				Command: c.Name, ContainerID: t.runtime[c.Name]})
		}
	}
	return append(out, h.kernel[volumeID]...)
}

// knownNamesLocked lists every tether name with a binding or a mount.
func (h *Host) knownNamesLocked() []string {
	seen := map[string]bool{}
	for n := range h.mounts {
		seen[n] = true
	}
	for n := range h.bindings {
		seen[n] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
