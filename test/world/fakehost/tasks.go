package fakehost

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tether-ecs/tether/agent/hostops"
	"github.com/tether-ecs/tether/internal/volspec"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Driver is the Docker volume driver name tether registers.
const Driver = "tether"

type fakeTask struct {
	spec    worldapi.TaskSpec
	report  func(worldapi.TaskUpdate)
	status  string            // PENDING, RUNNING, STOPPED
	names   []string          // tether volume names it mounts
	docker  map[string]string // tether name -> Docker volume name
	runtime map[string]string // container name -> runtime id
	// held: the tether volumes whose plugin Mount this task's container
	// got an answer for while it starts; the plugin counts it as a user
	// from then on, as the agent does by mount ID.
	held   map[string]bool
	cancel context.CancelFunc
}

// tetherVolume is one of the task's volumes served by tether.
type tetherVolume struct {
	name, docker string
}

// tetherVolumes names the task's tether volumes as the ECS agent and the
// plugin do: shared scope uses the volume name; task scope gets
// ecs-<family>-<revision>-<volume>-<hex> from the agent, which the plugin
// maps to task-<task id>-<volume>.
func (h *Host) tetherVolumes(spec worldapi.TaskSpec) ([]tetherVolume, string) {
	taskID := spec.TaskArn[strings.LastIndexByte(spec.TaskArn, '/')+1:]
	var out []tetherVolume
	for _, v := range spec.Volumes {
		dv := v.Docker
		if dv == nil || dv.Driver != Driver {
			continue
		}
		if dv.Scope == "task" && dv.Autoprovision {
			return nil, fmt.Sprintf("volume [%s] : task scoped volume could not be autoprovisioned", v.Name)
		}
		if _, err := volspec.ParseDriverOpts(dv.DriverOpts); err != nil {
			return nil, fmt.Sprintf("CannotCreateContainerError: Error response from daemon: create %s: VolumeDriver.Create: %v", v.Name, err)
		}
		tv := tetherVolume{name: v.Name, docker: v.Name}
		if dv.Scope == "task" {
			tv.name = "task-" + taskID + "-" + v.Name
			tv.docker = fmt.Sprintf("ecs-%s-%d-%s-%s", spec.Family, spec.Revision, v.Name, h.hexLocked(20))
		}
		if err := volspec.ValidateName(tv.name); err != nil {
			return nil, fmt.Sprintf("CannotCreateContainerError: Error response from daemon: create %s: VolumeDriver.Create: %v", tv.docker, err)
		}
		out = append(out, tv)
	}
	return out, ""
}

func (h *Host) hexLocked(n int) string {
	const hex = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = hex[h.rng.Intn(16)]
	}
	return string(b)
}

// StartTask implements worldapi.Host: the containers start once every
// tether volume is mounted on this host, or the task stops with the
// plugin's error after PluginWait.
func (h *Host) StartTask(_ context.Context, spec worldapi.TaskSpec, report func(worldapi.TaskUpdate)) error {
	h.mu.Lock()
	if err := h.aliveLocked(); err != nil {
		h.mu.Unlock()
		return err
	}
	if _, dup := h.tasks[spec.TaskArn]; dup {
		h.mu.Unlock()
		return fmt.Errorf("fakehost %s: task %s already started", h.opts.InstanceID, spec.TaskArn)
	}
	ctx, cancel := context.WithCancel(h.ctx)
	t := &fakeTask{spec: spec, report: report, status: "PENDING", docker: map[string]string{}, runtime: map[string]string{}, held: map[string]bool{}, cancel: cancel}
	vols, failure := h.tetherVolumes(spec)
	for _, v := range vols {
		t.names = append(t.names, v.name)
		t.docker[v.name] = v.docker
	}
	for _, c := range spec.Containers {
		t.runtime[c.Name] = h.hexLocked(64)
	}
	h.tasks[spec.TaskArn] = t
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		defer cancel()
		h.runTask(ctx, t, failure)
	}()
	return nil
}

func (h *Host) runTask(ctx context.Context, t *fakeTask, failure string) {
	log := h.log.With("task", t.spec.TaskArn)
	t.report(h.update(t, "PENDING", "", nil))
	if failure != "" {
		h.finish(t, failure, nil)
		return
	}
	for _, name := range t.names {
		if why := h.pluginMount(ctx, t, name); why != "" {
			if ctx.Err() != nil && h.isDown() {
				return // the instance died: nobody reports
			}
			log.Warn("plugin mount failed", "name", name, "why", why)
			h.finish(t, why, nil)
			return
		}
	}
	h.mu.Lock()
	if t.status != "PENDING" || h.down {
		h.mu.Unlock()
		return
	}
	t.status = "RUNNING"
	for _, name := range t.names {
		if m := h.mounts[name]; m != nil {
			h.opts.Disks.write(m.volumeID, t.spec.TaskArn)
		}
	}
	h.changedLocked()
	h.mu.Unlock()
	log.Info("task running", "volumes", t.names)
	t.report(h.update(t, "RUNNING", "", nil))
}

// pluginMount is VolumeDriver.Mount: ready when the reconciler has mounted
// the volume, or when the plugin can remount a known binding whose device is
// attached; otherwise it waits, bounded, and fails naming what it waited for.
func (h *Host) pluginMount(ctx context.Context, t *fakeTask, name string) string {
	deadline := time.NewTimer(h.opts.PluginWait)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		if h.opts.NoPlugin {
			h.mu.Unlock()
			return fmt.Sprintf("CannotCreateContainerError: Error response from daemon: create %s: error looking up volume plugin %s: plugin %q not found", t.docker[name], Driver, Driver)
		}
		m, mounted := h.mounts[name]
		if mounted && !m.flushing {
			t.held[name] = true
			h.mu.Unlock()
			return ""
		}
		// The plugin remounts a bound volume attached here by itself,
		// unless the unmount command released it (only the reconciler's
		// next mount may mount it again): never formats, never mounts what
		// is not a clean-enough filesystem.
		if b := h.bindings[name]; b != nil && !b.released && !mounted {
			if dev, attached := h.devices[b.volumeID]; attached {
				if d := h.opts.Disks.read(b.volumeID); d.fsType != "" && d.signature == "" && len(h.holdersLocked(b.volumeID)) == 0 {
					if d.dirty {
						h.opts.Disks.checked(b.volumeID)
					}
					b.generation++
					h.mounts[name] = &mount{volumeID: b.volumeID, device: dev, fsType: d.fsType}
					t.held[name] = true
					h.changedLocked()
					h.mu.Unlock()
					return ""
				}
			}
		}
		looked := "no device known yet (waiting for the reconciler to attach and mount it)"
		if b := h.bindings[name]; b != nil {
			looked = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_" + strings.ReplaceAll(b.volumeID, "-", "")
			if b.released {
				looked += " (released by the unmount command: waiting for the reconciler's mount)"
			}
		}
		changed := h.changed
		h.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return "CannotStartContainerError: task stopped while waiting for volume " + name
		case <-deadline.C:
			return fmt.Sprintf("CannotStartContainerError: Error response from daemon: error while mounting volume '%s': VolumeDriver.Mount: tether: volume %s not mounted on this host after %s; looked for %s",
				t.docker[name], name, h.opts.PluginWait, looked)
		}
	}
}

func (h *Host) isDown() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.down
}

// update builds a report for every container of the task.
func (h *Host) update(t *fakeTask, status, reason string, exit *int) worldapi.TaskUpdate {
	u := worldapi.TaskUpdate{TaskArn: t.spec.TaskArn, Status: status, StoppedReason: reason}
	for _, c := range t.spec.Containers {
		cu := worldapi.ContainerUpdate{Name: c.Name, Status: status, Reason: reason}
		if status != "PENDING" {
			cu.RuntimeID = t.runtime[c.Name]
		}
		if exit != nil {
			cu.ExitCode = exit
		}
		u.Containers = append(u.Containers, cu)
	}
	return u
}

// finish stops the task: its containers are gone, and the plugin unmounts
// every tether volume no other running task still uses.
func (h *Host) finish(t *fakeTask, reason string, exit *int) {
	h.mu.Lock()
	if t.status == "STOPPED" || h.down {
		h.mu.Unlock()
		return
	}
	t.status = "STOPPED"
	for vol, arns := range h.lazy { // its containers' namespaces go with them
		delete(arns, t.spec.TaskArn)
		if len(arns) == 0 {
			delete(h.lazy, vol)
		}
	}
	for _, name := range t.names {
		if m := h.mounts[name]; m != nil && !h.inUseLocked(name) {
			if gate, slow := h.slowFlush[m.volumeID]; slow {
				h.log.Info("plugin unmount flushing slowly", "name", name, "volume", m.volumeID)
				h.flushLocked(name, m, gate)
				continue
			}
			delete(h.mounts, name)
			h.log.Info("plugin unmounted volume after its last user", "name", name, "volume", m.volumeID, "task", t.spec.TaskArn)
		}
	}
	h.changedLocked()
	h.mu.Unlock()
	t.cancel()
	t.report(h.update(t, "STOPPED", reason, exit))
}

// StopTask implements worldapi.Host: SIGTERM; the containers exit 0.
func (h *Host) StopTask(_ context.Context, taskArn string) error {
	h.mu.Lock()
	t, ok := h.tasks[taskArn]
	switch err := h.aliveLocked(); {
	case err != nil:
		h.mu.Unlock()
		return err
	case !ok:
		h.mu.Unlock()
		return fmt.Errorf("fakehost %s: no task %s", h.opts.InstanceID, taskArn)
	}
	var exit *int
	if t.status == "RUNNING" {
		zero := 0
		exit = &zero
	}
	h.wg.Add(1) // under mu: Close cannot be waiting yet
	h.mu.Unlock()
	go func() { // reports come asynchronously, as from the agent
		defer h.wg.Done()
		h.finish(t, "", exit)
	}()
	return nil
}

// ExitTask makes the task's containers exit by themselves with code.
func (h *Host) ExitTask(taskArn string, code int) error {
	h.mu.Lock()
	t, ok := h.tasks[taskArn]
	h.mu.Unlock()
	if !ok {
		return fmt.Errorf("fakehost %s: no task %s", h.opts.InstanceID, taskArn)
	}
	h.finish(t, "Essential container in task exited", &code)
	return nil
}

// inUseLocked reports whether a container uses the tether volume: a
// running one, or one still starting whose Mount the plugin answered.
func (h *Host) inUseLocked(name string) bool { return len(h.usersLocked(name)) > 0 }

// holdsLocked: the task's containers hold the tether volume (running, or
// starting with the plugin's Mount answered).
func (t *fakeTask) holdsLocked(name string) bool {
	return slices.Contains(t.names, name) && (t.status == "RUNNING" || t.status == "PENDING" && t.held[name])
}

// usersLocked names the containers that hold the tether volume (running,
// or starting with the plugin's Mount answered), as Docker would (ECS agent
// container names, dockerd's state), sorted.
func (h *Host) usersLocked(name string) []hostops.User {
	var out []hostops.User
	for _, t := range h.tasks {
		if !t.holdsLocked(name) {
			continue
		}
		state := "running"
		if t.status == "PENDING" {
			state = "created"
		}
		for _, c := range t.spec.Containers {
			rid := t.runtime[c.Name]
			out = append(out, hostops.User{ID: rid, Name: fmt.Sprintf("ecs-%s-%d-%s-%s", t.spec.Family, t.spec.Revision, c.Name, rid[:20]), State: state})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
