package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tether-ecs/tether/agent/plugin"
	"github.com/tether-ecs/tether/internal/volspec"
)

// MountTimeoutError is Mount's answer when the volume was not mounted on
// this host within the wait. Its text is what `docker run` prints.
type MountTimeoutError struct {
	Volume     string        // tether name
	DockerName string        // as dockerd asked
	VolumeID   string        // the bound EBS volume, "" when none is bound yet
	LastLook   error         // why the last look failed (wraps ErrNotAttached), may be nil
	Waited     time.Duration // the wait limit
}

func (e *MountTimeoutError) Error() string {
	vol := fmt.Sprintf("volume %q", e.Volume)
	if e.DockerName != e.Volume {
		vol = fmt.Sprintf("volume %q (docker volume %q)", e.Volume, e.DockerName)
	}
	var what string
	switch {
	case e.VolumeID == "":
		what = "no EBS volume bound to it on this instance yet"
	case e.LastLook != nil:
		what = fmt.Sprintf("EBS volume %s: %v", e.VolumeID, e.LastLook)
	default:
		what = fmt.Sprintf("EBS volume %s is not mounted", e.VolumeID)
	}
	return fmt.Sprintf("tether: %s is not mounted on this instance after waiting %s: %s; tether's reconciler attaches and mounts it when ECS places the task here. The container was not started",
		vol, e.Waited, what)
}

// Unwrap lets errors.Is find ErrNotMountedHere and the last look's cause.
func (e *MountTimeoutError) Unwrap() []error {
	if e.LastLook == nil {
		return []error{ErrNotMountedHere}
	}
	return []error{ErrNotMountedHere, e.LastLook}
}

// hostAnswerMin is the least time an attempt waits for the host's mount
// before answering dockerd, even at the wait's end (so a look that finds
// the device absent is never taken for a slow mount). The answer comes at
// most the wait plus this (110 s + 5 s, within dockerd's 2 minutes).
const hostAnswerMin = 5 * time.Second

// hostOpLimit bounds a mount (fsck included) or unmount the driver starts.
const hostOpLimit = 5 * time.Minute

// hostContext is the context of a change to the host: once started, a
// mount or unmount is finished even if dockerd hangs up or the agent is
// asked to stop, because half of one (fsck killed, mount without its
// bookkeeping) is worse than a late answer.
func hostContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), hostOpLimit)
}

// look is what one attempt to mount found.
type look struct {
	volumeID string // bound EBS volume, "" if none
	err      error  // why it is not mountable now (wraps ErrNotAttached)
}

func (l look) waitingFor() string {
	if l.volumeID == "" {
		return "the reconciler to bind, attach and mount an EBS volume (no EBS volume bound yet)"
	}
	return fmt.Sprintf("EBS volume %s to be attached (%v) and mounted", l.volumeID, l.err)
}

// Mount returns the volume's mount point once a tether filesystem is
// mounted there, and counts the mount ID as a user. If the filesystem is
// not mounted but its EBS volume is bound and attached here, it mounts it;
// otherwise it waits, bounded by the mount wait, for the reconciler's
// `tether-agent mount`. It never returns a directory that is not a mounted
// tether filesystem.
func (d *Driver) Mount(ctx context.Context, req plugin.MountRequest) (plugin.MountResponse, error) {
	if err := validName(req.Name); err != nil {
		return plugin.MountResponse{}, err
	}
	if req.ID == "" {
		return plugin.MountResponse{}, fmt.Errorf("tether: volume %q: Mount without a mount ID", req.Name)
	}
	name, err := d.tetherName(ctx, req.Name)
	if err != nil {
		return plugin.MountResponse{}, fmt.Errorf("tether: %w", err)
	}
	replicated := !strings.HasPrefix(req.Name, taskVolumePrefix) && d.replicated(req.Name)
	if replicated {
		// Docker has one volume of the name per host: containers of two
		// tasks on it would share one replica. Refuse before mapping.
		tasks, err := d.host.TasksUsing(ctx, req.Name)
		if err != nil {
			return plugin.MountResponse{}, fmt.Errorf("tether: volume %q: asking dockerd which tasks use it: %w", req.Name, err)
		}
		if len(tasks) > 1 {
			return plugin.MountResponse{}, fmt.Errorf("tether: volume %q: containers of tasks %v use it on this instance: %w", req.Name, tasks, errReplicaAmbiguous)
		}
	}
	log := d.log.With("volume", name, "dockerVolume", req.Name, "mountId", req.ID)
	inProgress := d.mountInProgress(name)
	defer func() { inProgress() }()
	start := time.Now()
	deadline := start.Add(d.wait)
	lastProgress := start
	for attempt := 0; ; attempt++ {
		var mounted bool
		var l look
		if replicated && name == req.Name {
			// No replica of the name is mounted here yet: wait for the
			// reconciler's mount (it knows which replica the task holds).
			if name, _, err = d.replicaName(req.Name); err != nil {
				return plugin.MountResponse{}, fmt.Errorf("tether: %w", err)
			}
			if name == "" {
				name = req.Name
			} else {
				// Counted under the replica from now on (Holders).
				log = d.log.With("volume", name, "dockerVolume", req.Name, "mountId", req.ID)
				inProgress()
				inProgress = d.mountInProgress(name)
			}
		}
		if !replicated || name != req.Name {
			mounted, l, err = d.tryMount(ctx, log, name, req, deadline)
			if err != nil {
				return plugin.MountResponse{}, err
			}
		}
		if mounted && replicated {
			if err := d.writeReplicaFile(name); err != nil {
				log.Warn("could not write the replica's ordinal file", "file", volspec.ReplicaFile, "error", err.Error())
			}
		}
		if mounted {
			if attempt > 0 {
				log.Info("volume mounted after waiting", "waited", time.Since(start).Round(time.Millisecond).String())
			}
			return plugin.MountResponse{Mountpoint: d.MountPath(name)}, nil
		}
		now := time.Now()
		switch {
		case attempt == 0:
			log.Info("volume not mounted here yet; waiting", "waitingFor", l.waitingFor(), "limit", d.wait.String())
		case now.Sub(lastProgress) >= progressEvery:
			lastProgress = now
			log.Info("still waiting for the volume", "waitingFor", l.waitingFor(),
				"waited", now.Sub(start).Round(time.Second).String(), "limit", d.wait.String())
		}
		remaining := deadline.Sub(now)
		if remaining <= 0 {
			e := &MountTimeoutError{Volume: name, DockerName: req.Name, VolumeID: l.volumeID, LastLook: l.err, Waited: d.wait}
			log.Error("gave up waiting for the volume", "error", e.Error())
			return plugin.MountResponse{}, e
		}
		timer := time.NewTimer(min(d.poll, remaining))
		select {
		case <-ctx.Done():
			timer.Stop()
			return plugin.MountResponse{}, fmt.Errorf("tether: volume %q: stopped waiting for it to be mounted after %s: %w",
				name, time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-timer.C:
		}
	}
}

// mountInProgress counts a Mount of name until the returned func is called
// (Holders reports it: a container about to hold the volume).
func (d *Driver) mountInProgress(name string) (done func()) {
	d.mu.Lock()
	d.pending[name]++
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.pending[name]--; d.pending[name] <= 0 {
			delete(d.pending, name)
		}
	}
}

// tryMount is one attempt, under the volume's lock: count the ID if the
// volume's device is mounted, or mount it if its device is attached. The
// whole attempt answers by the deadline: a mount that takes longer (an
// fsck) goes on in the background with the lock, and this Mount fails with
// a message saying so; it is never cut short (hostContext).
func (d *Driver) tryMount(ctx context.Context, log *slog.Logger, name string, req plugin.MountRequest, deadline time.Time) (bool, look, error) {
	// Taking the lock may wait for a mount command in progress (mkfs), but
	// not past the deadline.
	lockCtx, cancel := context.WithDeadline(ctx, deadline)
	unlock, err := d.lockVolume(lockCtx, name)
	cancel()
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("a mount or unmount of it on this instance still holds its lock after %s: %w", d.wait, err)
		}
		return false, look{}, fmt.Errorf("tether: %w", err)
	}
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	st, err := d.stateLocked(ctx, log, name, req.Name)
	if err != nil {
		return false, look{}, fmt.Errorf("tether: %w", err)
	}
	mounted, err := d.host.MountedVolume(name)
	if err != nil {
		return false, look{}, fmt.Errorf("tether: volume %q: %w", name, err)
	}
	if !mounted {
		volumeID, bound, err := d.host.Binding(name)
		if err != nil {
			return false, look{}, fmt.Errorf("tether: volume %q: reading its binding: %w", name, err)
		}
		if !bound {
			return false, look{}, nil
		}
		hostCtx, cancelHost := hostContext(ctx)
		done := make(chan error, 1)
		go func() { done <- d.host.MountAttached(hostCtx, name) }()
		// A look that finds the device absent answers at once; a mount
		// (fsck, grow) gets until the deadline, and at least hostAnswerMin.
		answerBy := time.NewTimer(max(time.Until(deadline), hostAnswerMin))
		defer answerBy.Stop()
		select {
		case err = <-done:
			cancelHost()
		case <-answerBy.C:
			return false, look{}, d.handOver(log, name, volumeID, done, cancelHost, &unlock)
		case <-ctx.Done():
			// The caller is gone: nothing to answer; the mount finishes
			// (never cut short) before the lock is let go.
			err = <-done
			cancelHost()
			if err == nil {
				err = ctx.Err()
			}
			return false, look{}, fmt.Errorf("tether: volume %q: the caller is gone: %w", name, errors.Join(ctx.Err(), err))
		}
		if errors.Is(err, ErrNotAttached) {
			return false, look{volumeID: volumeID, err: err}, nil
		}
		if err != nil {
			return false, look{}, fmt.Errorf("tether: volume %q: mounting EBS volume %s: %w", name, volumeID, err)
		}
		// Fail closed: trust the mount table, not the call that said it worked.
		if mounted, err = d.host.MountedVolume(name); err != nil {
			return false, look{}, fmt.Errorf("tether: volume %q: %w", name, err)
		}
		if !mounted {
			return false, look{}, fmt.Errorf("tether: volume %q: mounting EBS volume %s reported success but nothing is mounted at %s",
				name, volumeID, d.MountPath(name))
		}
		log.Info("mounted the bound EBS volume, attached here", "volumeId", volumeID)
	}
	if err := ctx.Err(); err != nil {
		// dockerd gave up on this call (or the agent is stopping): it will
		// never Unmount this ID, so it must not be counted.
		return false, look{}, fmt.Errorf("tether: volume %q: mounted, but the caller is gone: %w", name, err)
	}
	log.Info("volume in use", "users", st.addUse(req.ID))
	return true, look{}, nil
}

// handOver leaves a mount still running to finish on its own, holding the
// volume's lock until it does, and is the Mount's answer meanwhile.
func (d *Driver) handOver(log *slog.Logger, name, volumeID string, done <-chan error, cancelHost context.CancelFunc, unlock *func()) error {
	handed := *unlock
	*unlock = nil
	go func() {
		err := <-done
		cancelHost()
		handed()
		log.Info("the mount that outlived its Mount call finished", "volumeId", volumeID, "error", fmt.Sprint(err))
	}()
	log.Warn("mounting takes longer than the plugin may answer; it goes on in the background", "volumeId", volumeID)
	return fmt.Errorf("tether: volume %q: mounting EBS volume %s on this instance takes longer than the plugin may take to answer dockerd (a filesystem check or a slow device); it goes on, and the container's next start finds it mounted",
		name, volumeID)
}

// Unmount releases the use named by the mount ID; when the last use is
// gone it flushes and unmounts the filesystem (the EBS volume stays
// attached until the reconciler detaches it). See users for IDs from before
// a restart.
func (d *Driver) Unmount(ctx context.Context, req plugin.UnmountRequest) (plugin.UnmountResponse, error) {
	if err := validName(req.Name); err != nil {
		return plugin.UnmountResponse{}, err
	}
	name, err := d.tetherName(ctx, req.Name)
	if err != nil {
		return plugin.UnmountResponse{}, fmt.Errorf("tether: %w", err)
	}
	log := d.log.With("volume", name, "dockerVolume", req.Name, "mountId", req.ID)
	unlock, err := d.lockVolume(ctx, name)
	if err != nil {
		return plugin.UnmountResponse{}, fmt.Errorf("tether: %w", err)
	}
	defer unlock()
	st, err := d.stateLocked(ctx, log, name, req.Name)
	if err != nil {
		return plugin.UnmountResponse{}, fmt.Errorf("tether: %w", err)
	}
	how, left := st.releaseUse(req.ID)
	if how == releasedNothing {
		log.Warn("unmount ignored", "match", how, "users", left)
		return plugin.UnmountResponse{}, nil
	}
	if n := left; n > 0 {
		log.Info("volume still in use", "match", how, "users", n)
		return plugin.UnmountResponse{}, nil
	}
	_, mounted, err := d.host.IsMounted(name)
	if err != nil {
		return plugin.UnmountResponse{}, fmt.Errorf("tether: volume %q: reading the mount table: %w", name, err)
	}
	if !mounted {
		log.Info("last user gone; the volume was already unmounted", "match", how)
		return plugin.UnmountResponse{}, nil
	}
	uses, err := d.host.ContainersUsing(ctx, req.Name)
	if err != nil {
		log.Error("last user gone, but dockerd cannot confirm no other container uses the volume; leaving it mounted",
			"match", how, "error", err.Error())
		return plugin.UnmountResponse{}, nil
	}
	if len(uses) > 1 {
		// dockerd still lists the stopping container; more means others.
		others := -1 // the stopping container
		for _, u := range uses {
			others += u.Mounts
		}
		log.Warn("dockerd lists other containers using the volume; keeping it mounted and adopting them",
			"match", how, "containers", len(uses), "users", st.adopt(others))
		return plugin.UnmountResponse{}, nil
	}
	hostCtx, cancel := hostContext(ctx)
	defer cancel()
	if err := d.host.Unmount(hostCtx, name); err != nil {
		return plugin.UnmountResponse{}, fmt.Errorf("tether: volume %q: last container gone, but unmounting it failed: %w", name, err)
	}
	log.Info("last user gone; volume flushed and unmounted, EBS volume still attached", "match", how)
	return plugin.UnmountResponse{}, nil
}
