package hostops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/tether-ecs/tether/agent/dockerapi"
	"github.com/tether-ecs/tether/agent/mounts"
	"github.com/tether-ecs/tether/internal/volspec"
)

// UnmountRequest is the unmount command's input.
type UnmountRequest struct {
	VolumeID string
	Name     string
	Force    bool // unmount even while containers use the volume
}

// UnmountResult is the unmount command's output.
type UnmountResult struct {
	VolumeID   string `json:"volumeId"`
	Name       string `json:"name"`
	Mountpoint string `json:"mountpoint"`
	Device     string `json:"device,omitempty"`
	WasMounted bool   `json:"wasMounted"`
	// Detached: the kernel still had users, and --force detached the mount
	// lazily; the filesystem goes when they let go.
	Detached bool   `json:"detached,omitempty"`
	Users    []User `json:"users,omitempty"` // forced past these
}

// User is a container using a volume (or, for the unmount command, one
// that may be about to).
type User struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state,omitempty"` // dockerd's: created, running, ...
}

// ErrBusy marks a volume that containers (starting or running, or, for
// the kernel, processes) still use.
var ErrBusy = errors.New("volume in use")

// BusyError names who holds a volume: containers, and the plugin's counts.
type BusyError struct {
	Name     string
	Users    []User
	MountIDs []string // the plugin's answered Mounts not yet unmounted
	Adopted  int      // the plugin's uses from before its start
	Pending  int      // the plugin's Mounts in progress
}

func (e *BusyError) Error() string {
	var parts []string
	if len(e.Users) > 0 {
		names := make([]string, 0, len(e.Users))
		for _, u := range e.Users {
			n := u.Name + " (" + shortID(u.ID)
			if u.State != "" {
				n += ", " + u.State
			}
			names = append(names, n+")")
		}
		parts = append(parts, "containers "+strings.Join(names, ", "))
	}
	if len(e.MountIDs) > 0 {
		ids := make([]string, 0, len(e.MountIDs))
		for _, id := range e.MountIDs {
			ids = append(ids, shortID(id))
		}
		parts = append(parts, "plugin mount IDs "+strings.Join(ids, ", ")+" (answered Mounts dockerd has not unmounted: containers starting or running)")
	}
	if e.Adopted > 0 {
		parts = append(parts, fmt.Sprintf("%d use(s) the plugin found at its start", e.Adopted))
	}
	if e.Pending > 0 {
		parts = append(parts, fmt.Sprintf("%d plugin Mount(s) in progress", e.Pending))
	}
	return fmt.Sprintf("volume %s is held (containers starting or running): %s", e.Name, strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrBusy) true.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// ErrWrongVolume marks a request for a volume id that is not the one
// mounted under the name.
var ErrWrongVolume = errors.New("another volume is mounted under this name")

// UnmountVolume flushes and unmounts NAME, refusing (BusyError) while a
// container holds it or may be about to (see holding) unless req.Force.
// Not mounted is a success. It holds the volume's lock throughout, so that
// no plugin Mount is answered between the check and the unmount, and
// leaves the mount point sealed (see sealMountpoint).
func (h *Host) UnmountVolume(ctx context.Context, req UnmountRequest) (UnmountResult, error) {
	if err := errors.Join(volspec.ValidateVolumeID(req.VolumeID), volspec.ValidateName(req.Name)); err != nil {
		return UnmountResult{}, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	log := h.log.With("volumeId", req.VolumeID, "volume", req.Name)
	res := UnmountResult{VolumeID: req.VolumeID, Name: req.Name, Mountpoint: h.Mountpoint(req.Name)}
	unlock, err := h.lockBounded(ctx, req.Name)
	if err != nil {
		return res, err
	}
	defer unlock()

	current, mounted, err := mounts.At(res.Mountpoint)
	if err != nil {
		return res, err
	}
	if !mounted {
		log.Info("not mounted; nothing to do", "mountpoint", res.Mountpoint)
		h.sealIfUnmounted(log, req.Name)
		return res, nil
	}
	res.WasMounted, res.Device = true, current.Source
	// Which volume is mounted: the binding says, else the device itself.
	bound, ok, err := h.Binding(req.Name)
	if err != nil {
		return res, err
	}
	if !ok {
		bound, _ = h.finder.VolumeIDOf(current.Source)
	}
	if bound != "" && bound != req.VolumeID {
		return res, fmt.Errorf("%w: %s holds %s, not %s", ErrWrongVolume, res.Mountpoint, bound, req.VolumeID)
	}

	hd, err := h.holding(ctx, log, req.Name)
	switch {
	case err != nil && !req.Force:
		return res, fmt.Errorf("cannot tell whether containers use %s (unmount --force skips this check): %w", req.Name, err)
	case err != nil:
		log.Warn("cannot ask dockerd about containers; unmounting anyway (--force)", "error", err.Error())
	case hd.busy() && !req.Force:
		return res, &BusyError{Name: req.Name, Users: hd.users, MountIDs: hd.mountIDs, Adopted: hd.adopted, Pending: hd.pending}
	case hd.busy():
		log.Warn("unmounting a volume containers hold or may be about to (--force)", "users", hd.users,
			"mountIds", hd.mountIDs, "adopted", hd.adopted, "pending", hd.pending)
		res.Users = hd.users
	}
	res.Detached, err = h.unmount(log, req.Name, current, req.Force)
	return res, err
}

// Unmount flushes and unmounts NAME (driver.Host); the caller holds the
// volume's lock and has decided no container needs it.
func (h *Host) Unmount(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	current, mounted, err := mounts.At(h.Mountpoint(name))
	if err != nil || !mounted {
		return err
	}
	log := h.log.With("volume", name)
	if id, ok, _ := h.Binding(name); ok {
		log = log.With("volumeId", id)
	}
	_, err = h.unmount(log, name, current, false)
	return err
}

// unmount syncs, unmounts and flushes the device. With force, a filesystem
// the kernel reports busy is detached lazily (and reported so).
func (h *Host) unmount(log *slog.Logger, name string, current mounts.Entry, force bool) (detached bool, err error) {
	mp := h.Mountpoint(name)
	err = mounts.Unmount(mp)
	if errors.Is(err, mounts.ErrBusy) {
		if !force {
			return false, fmt.Errorf("%w: %w (a process on this host has files open in it)", ErrBusy, err)
		}
		log.Warn("filesystem busy; detaching it lazily (--force): the device stays in use until its last user lets go", "mountpoint", mp)
		if err := mounts.Detach(mp); err != nil {
			return false, err
		}
		h.sealIfUnmounted(log, name)
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if err := mounts.FlushDevice(current.Source); err != nil {
		log.Warn("could not flush the device's buffers after unmount", "device", current.Source, "error", err.Error())
	}
	log.Info("unmounted and flushed", "device", current.Source, "mountpoint", mp)
	h.sealIfUnmounted(log, name)
	return false, nil
}

// users are the running containers that use tether volume NAME: those that
// mount the Docker volume NAME, and those whose mount source is NAME's
// mount point (a task-scoped Docker volume has another Docker name). No
// dockerd on this host means no containers.
func (h *Host) users(ctx context.Context, log *slog.Logger, name string) ([]User, error) {
	list, err := h.runningContainers(ctx, log)
	if err != nil {
		return nil, err
	}
	return h.usersIn(list, name), nil
}

// runningContainers lists the running (and paused) containers; none when
// this host has no dockerd.
func (h *Host) runningContainers(ctx context.Context, log *slog.Logger) ([]dockerapi.Container, error) {
	list, err := h.docker.ListContainers(ctx, dockerapi.ListOptions{})
	if errors.Is(err, dockerapi.ErrNoDaemon) {
		log.Warn("no dockerd on this host: no container can use a volume", "error", err.Error())
		return nil, nil
	}
	return list, err
}

// usersIn picks NAME's users from a container list.
func (h *Host) usersIn(list []dockerapi.Container, name string) []User {
	var users []User
	for _, c := range list {
		if h.references(c, name) {
			users = append(users, User{ID: c.ID, Name: c.Name()})
		}
	}
	return users
}
