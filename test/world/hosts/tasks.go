package hosts

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/world/hosts/engine"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Task and container states as the ECS agent reports them.
const (
	StatusPending = "PENDING"
	StatusRunning = "RUNNING"
	StatusStopped = "STOPPED"
)

// ReasonEssentialExited is the stopped reason when an essential container
// exits on its own.
const ReasonEssentialExited = "Essential container in task exited"

// ECS agent's container labels (amazon-ecs-agent agent/engine/docker_task_engine.go).
const (
	LabelTaskARN           = "com.amazonaws.ecs.task-arn"
	LabelContainerName     = "com.amazonaws.ecs.container-name"
	LabelTaskDefFamily     = "com.amazonaws.ecs.task-definition-family"
	LabelTaskDefVersion    = "com.amazonaws.ecs.task-definition-version"
	LabelCluster           = "com.amazonaws.ecs.cluster"
	defaultStopTimeout     = 30 * time.Second
	containerStartTimeout  = 3 * time.Minute // the ECS agent's; dockerd's Mount timeout is 2 min
	dockerCallTimeout      = 2 * time.Minute
	volumeDriverLocal      = "local"
	scopeTask, scopeShared = "task", "shared"
)

// ErrUnknownTask is returned by StopTask for a task this instance never ran.
var ErrUnknownTask = errors.New("unknown task")

// ErrInvalidTask is returned by StartTask for a spec the ECS agent would
// reject.
var ErrInvalidTask = errors.New("invalid task")

type task struct {
	spec   worldapi.TaskSpec
	report func(worldapi.TaskUpdate)
	log    *slog.Logger

	mu         sync.Mutex
	status     string
	reason     string
	containers []*taskContainer
	volumes    map[string]string // task volume name -> Docker volume name or host path (bind source)
	owned      []string          // Docker volumes this task created and removes at stop

	stopReq  chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

type taskContainer struct {
	spec     worldapi.ContainerSpec
	name     string // Docker name
	id       string
	status   string
	exitCode *int
	reason   string
}

type exitEvent struct {
	c      *taskContainer
	result engine.WaitResult
}

// StartTask runs the task as the ECS agent does: Docker volumes (shared
// scope: inspect, create if missing and autoprovision, else fail; task
// scope: ecs-<family>-<revision>-<volume>-<hex>), then containers named and
// labelled as the agent names them, then starts. It returns once the task
// is accepted; PENDING, RUNNING and STOPPED follow through report.
func (in *Instance) StartTask(ctx context.Context, spec worldapi.TaskSpec, report func(worldapi.TaskUpdate)) error {
	if err := in.alive(); err != nil {
		return err
	}
	if err := validateTask(spec); err != nil {
		return fmt.Errorf("instance %s: %w", in.cfg.InstanceID, err)
	}
	if spec.StopTimeout <= 0 {
		spec.StopTimeout = defaultStopTimeout
	}
	t := &task{
		spec:    spec,
		report:  report,
		log:     in.log.With("task", spec.TaskArn),
		status:  StatusPending,
		volumes: map[string]string{},
		stopReq: make(chan struct{}),
		done:    make(chan struct{}),
	}
	for _, c := range spec.Containers {
		t.containers = append(t.containers, &taskContainer{spec: c, status: StatusPending})
	}
	in.mu.Lock()
	if in.down {
		in.mu.Unlock()
		return fmt.Errorf("instance %s: %w", in.cfg.InstanceID, worldapi.ErrHostDown)
	}
	if _, dup := in.tasks[spec.TaskArn]; dup {
		in.mu.Unlock()
		return fmt.Errorf("instance %s: task %q already placed here: %w", in.cfg.InstanceID, spec.TaskArn, ErrInvalidTask)
	}
	in.tasks[spec.TaskArn] = t
	in.wg.Add(1)
	in.mu.Unlock()
	go in.runTask(t)
	return nil
}

func validateTask(spec worldapi.TaskSpec) error {
	if spec.TaskArn == "" || spec.Family == "" || len(spec.Containers) == 0 {
		return fmt.Errorf("%w: task arn, family and containers are required", ErrInvalidTask)
	}
	vols := map[string]worldapi.VolumeSpec{}
	for _, v := range spec.Volumes {
		if d := v.Docker; d != nil && d.Scope == scopeTask && d.Autoprovision {
			return fmt.Errorf("%w: volume %q: autoprovision is only allowed for shared scope", ErrInvalidTask, v.Name)
		}
		vols[v.Name] = v
	}
	essential := false
	for _, c := range spec.Containers {
		essential = essential || c.Essential
		for _, mp := range c.MountPoints {
			if _, ok := vols[mp.SourceVolume]; !ok {
				return fmt.Errorf("%w: container %q mounts unknown volume %q", ErrInvalidTask, c.Name, mp.SourceVolume)
			}
		}
	}
	if !essential {
		return fmt.Errorf("%w: no essential container", ErrInvalidTask)
	}
	return nil
}

// StopTask stops the task's containers (their stop signal, then SIGKILL
// after the task's stop timeout); STOPPED follows through report. Stopping
// a task that already stopped does nothing. A container whose start is
// blocked in a volume plugin's Mount is stopped once the start returns.
func (in *Instance) StopTask(ctx context.Context, taskArn string) error {
	if err := in.alive(); err != nil {
		return err
	}
	in.mu.Lock()
	t, ok := in.tasks[taskArn]
	in.mu.Unlock()
	if !ok {
		return fmt.Errorf("instance %s: task %q: %w", in.cfg.InstanceID, taskArn, ErrUnknownTask)
	}
	t.stopOnce.Do(func() { close(t.stopReq) })
	return nil
}

func (t *task) stopRequested() bool {
	select {
	case <-t.stopReq:
		return true
	default:
		return false
	}
}

// publish reports the task's current state (unless the instance is gone:
// a dead agent reports nothing).
func (in *Instance) publish(t *task) {
	if in.life.Err() != nil {
		return
	}
	t.mu.Lock()
	u := worldapi.TaskUpdate{TaskArn: t.spec.TaskArn, Status: t.status, StoppedReason: t.reason}
	for _, c := range t.containers {
		u.Containers = append(u.Containers, worldapi.ContainerUpdate{
			Name: c.spec.Name, RuntimeID: c.id, Status: c.status, ExitCode: c.exitCode, Reason: c.reason,
		})
	}
	t.mu.Unlock()
	t.log.Info("task state", "status", u.Status, "reason", u.StoppedReason)
	t.report(u)
}

func (t *task) setContainer(c *taskContainer, status, reason string, exitCode *int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c.status, c.exitCode = status, exitCode
	if reason != "" {
		c.reason = reason
	}
}

func (in *Instance) runTask(t *task) {
	defer in.wg.Done()
	defer close(t.done)
	ctx := in.life
	in.publish(t)

	reason := in.createVolumes(ctx, t)
	if reason == "" {
		reason = in.createContainers(ctx, t)
	}
	exits := make(chan exitEvent, len(t.containers))
	running := 0
	if reason == "" {
		running, reason = in.startContainers(ctx, t, exits)
	}
	if ctx.Err() != nil {
		return // the instance died under the task
	}
	stopping := reason != "" || t.stopRequested()
	if !stopping {
		t.mu.Lock()
		t.status = StatusRunning
		t.mu.Unlock()
		in.publish(t)
	} else if running > 0 {
		go in.stopContainers(ctx, t)
	}
	stopReq := t.stopReq
	for running > 0 {
		select {
		case <-ctx.Done():
			return
		case <-stopReq:
			stopReq = nil
			if !stopping {
				stopping = true
				go in.stopContainers(ctx, t)
			}
		case ev := <-exits:
			running--
			if ev.result.Err != nil && ctx.Err() != nil {
				return
			}
			code := ev.result.ExitCode
			t.setContainer(ev.c, StatusStopped, "", &code)
			if ev.c.spec.Essential && !stopping {
				stopping = true
				reason = ReasonEssentialExited
				go in.stopContainers(ctx, t)
			}
			if running > 0 {
				in.publish(t) // a container stopped; the task goes on
			}
		}
	}
	t.mu.Lock()
	t.status, t.reason = StatusStopped, reason
	for _, c := range t.containers {
		if c.status != StatusStopped {
			c.status = StatusStopped // never started
		}
	}
	t.mu.Unlock()
	in.publish(t)
	in.cleanupTask(ctx, t)
}

// createVolumes does the agent's volume initialisation; it returns the
// stopped reason on failure ("" when done).
func (in *Instance) createVolumes(ctx context.Context, t *task) string {
	for _, v := range t.spec.Volumes {
		switch {
		case v.Docker == nil && v.Host != "":
			t.volumes[v.Name] = v.Host
		case v.Docker == nil:
			// An empty host volume: the agent makes a task-scoped local one.
			name := taskVolumeName(t.spec, v.Name)
			if _, err := in.createVolume(ctx, engine.VolumeCreateRequest{Name: name, Driver: volumeDriverLocal}); err != nil {
				return "CannotCreateVolumeError: " + err.Error()
			}
			t.volumes[v.Name] = name
			t.owned = append(t.owned, name)
		case v.Docker.Scope == scopeTask:
			name := taskVolumeName(t.spec, v.Name)
			req := engine.VolumeCreateRequest{Name: name, Driver: driverOrLocal(v.Docker.Driver), DriverOpts: v.Docker.DriverOpts, Labels: v.Docker.Labels}
			if _, err := in.createVolume(ctx, req); err != nil {
				return "CannotCreateVolumeError: " + err.Error()
			}
			t.volumes[v.Name] = name
			t.owned = append(t.owned, name)
		default: // shared
			if reason := in.sharedVolume(ctx, v); reason != "" {
				return reason
			}
			t.volumes[v.Name] = v.Name
		}
	}
	return ""
}

func (in *Instance) createVolume(ctx context.Context, req engine.VolumeCreateRequest) (engine.Volume, error) {
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	return in.docker.VolumeCreate(ctx, req)
}

// sharedVolume inspects a shared volume and creates it when missing and
// autoprovisioned (ECS_SHARED_VOLUME_MATCH_FULL_CONFIG=false: an existing
// volume is used as it is).
func (in *Instance) sharedVolume(ctx context.Context, v worldapi.VolumeSpec) string {
	ictx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	_, err := in.docker.VolumeInspect(ictx, v.Name)
	cancel()
	switch {
	case err == nil:
		return ""
	case !v.Docker.Autoprovision:
		return fmt.Sprintf("initialize volume: volume detection failed, volume '%s' does not exist and autoprovision is set to false: %v", v.Name, err)
	case !errors.Is(err, engine.ErrNotFound):
		return "CannotInspectVolumeError: " + err.Error()
	}
	req := engine.VolumeCreateRequest{Name: v.Name, Driver: driverOrLocal(v.Docker.Driver), DriverOpts: v.Docker.DriverOpts, Labels: v.Docker.Labels}
	if _, err := in.createVolume(ctx, req); err != nil {
		return "CannotCreateVolumeError: " + err.Error()
	}
	return ""
}

func driverOrLocal(d string) string {
	if d == "" {
		return volumeDriverLocal
	}
	return d
}

// createContainers creates every container; a failure of an essential one
// is the task's stopped reason.
func (in *Instance) createContainers(ctx context.Context, t *task) string {
	clusterName := t.spec.ClusterArn
	if i := strings.LastIndex(clusterName, "/"); i >= 0 {
		clusterName = clusterName[i+1:] // the agent labels with ECS_CLUSTER, a name
	}
	for _, c := range t.containers {
		cfg := engine.ContainerConfig{
			Image: c.spec.Image,
			// the container definition's user, as the ECS agent passes it
			// (amazon-ecs-agent agent/api/container: Config.User)
			User:       c.spec.User,
			Entrypoint: c.spec.EntryPoint,
			Cmd:        c.spec.Command,
			Env:        envList(c.spec.Environment),
			Labels: map[string]string{
				LabelTaskARN:        t.spec.TaskArn,
				LabelContainerName:  c.spec.Name,
				LabelTaskDefFamily:  t.spec.Family,
				LabelTaskDefVersion: strconv.Itoa(int(t.spec.Revision)),
				LabelCluster:        clusterName,
			},
			HostConfig: engine.HostConfig{NetworkMode: networkMode(t.spec.NetworkMode)},
		}
		for _, mp := range c.spec.MountPoints {
			bind := t.volumes[mp.SourceVolume] + ":" + mp.ContainerPath
			if mp.ReadOnly {
				bind += ":ro"
			}
			cfg.HostConfig.Binds = append(cfg.HostConfig.Binds, bind)
		}
		c.name = containerName(t.spec, c.spec.Name)
		cctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
		id, err := in.docker.ContainerCreate(cctx, c.name, cfg)
		cancel()
		if err != nil {
			reason := "CannotCreateContainerError: " + err.Error()
			if errors.Is(err, engine.ErrNotFound) {
				reason = "CannotPullContainerError: " + err.Error()
			}
			t.setContainer(c, StatusStopped, reason, nil)
			if c.spec.Essential {
				return reason
			}
			continue
		}
		t.mu.Lock()
		c.id = id
		t.mu.Unlock()
	}
	return ""
}

// startContainers starts the created containers in order, each with its
// exit watched; it returns how many run and, if an essential one failed to
// start, the task's stopped reason.
func (in *Instance) startContainers(ctx context.Context, t *task, exits chan<- exitEvent) (int, string) {
	running := 0
	for _, c := range t.containers {
		if c.id == "" || t.stopRequested() {
			continue
		}
		wctx, cancelWait := context.WithCancel(ctx)
		waitCh, err := in.docker.ContainerWait(wctx, c.id)
		if err == nil {
			sctx, cancel := context.WithTimeout(ctx, containerStartTimeout)
			err = in.docker.ContainerStart(sctx, c.id)
			cancel()
		}
		if err != nil {
			cancelWait()
			reason := "CannotStartContainerError: " + err.Error()
			t.setContainer(c, StatusStopped, reason, nil)
			if c.spec.Essential {
				return running, reason
			}
			continue
		}
		running++
		t.setContainer(c, StatusRunning, "", nil)
		go func(c *taskContainer) {
			defer cancelWait()
			exits <- exitEvent{c: c, result: <-waitCh}
		}(c)
	}
	return running, ""
}

// stopContainers stops every running container of the task at once, as
// the agent does, each with the task's stop timeout.
func (in *Instance) stopContainers(ctx context.Context, t *task) {
	t.mu.Lock()
	var ids []string
	for _, c := range t.containers {
		if c.status == StatusRunning {
			ids = append(ids, c.id)
		}
	}
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, t.spec.StopTimeout+dockerCallTimeout)
			defer cancel()
			if err := in.docker.ContainerStop(sctx, id, t.spec.StopTimeout); err != nil && ctx.Err() == nil {
				t.log.Warn("container stop", "container", id, "err", err)
			}
		}()
	}
	wg.Wait()
}

// cleanupTask removes the task's containers and its task-scoped volumes
// (the real agent waits about 3 hours; the world does not need to).
func (in *Instance) cleanupTask(ctx context.Context, t *task) {
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	for _, c := range t.containers {
		if c.id == "" {
			continue
		}
		if err := in.docker.ContainerRemove(ctx, c.id, true); err != nil && ctx.Err() == nil {
			t.log.Warn("container remove", "container", c.id, "err", err)
		}
	}
	for _, name := range t.owned {
		if err := in.docker.VolumeRemove(ctx, name, false); err != nil && ctx.Err() == nil {
			t.log.Warn("volume remove", "dockerVolume", name, "err", err)
		}
	}
}

// taskVolumeName is the agent's name for a task-scoped volume:
// ecs-<family>-<revision>-<volume>-<hex>.
func taskVolumeName(spec worldapi.TaskSpec, volume string) string {
	return "ecs-" + spec.Family + "-" + strconv.Itoa(int(spec.Revision)) + "-" + volume + "-" + randHex()
}

var invalidNameChars = regexp.MustCompile(`[^A-Za-z0-9-]+`)

// containerName is the agent's Docker name for a container:
// ecs-<family>-<revision>-<name without other than [A-Za-z0-9-]>-<hex>.
func containerName(spec worldapi.TaskSpec, name string) string {
	return "ecs-" + spec.Family + "-" + strconv.Itoa(int(spec.Revision)) + "-" +
		invalidNameChars.ReplaceAllString(name, "") + "-" + randHex()
}

// randHex is 20 hex digits in the agent's form: a random non-negative
// int64 as a varint in a 10-byte buffer.
func randHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	out := make([]byte, 10)
	binary.PutVarint(out, int64(binary.LittleEndian.Uint64(b[:])>>1))
	return hex.EncodeToString(out)
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// networkMode maps the task's mode to what an instance can give: its
// containers share the box's network (awsvpc, bridge, host), or none.
func networkMode(mode string) string {
	if mode == "none" {
		return "none"
	}
	return "host"
}
