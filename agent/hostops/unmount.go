package hostops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/tether-ecs/tether/agent/blockdev"
	"github.com/tether-ecs/tether/agent/dockerapi"
	"github.com/tether-ecs/tether/agent/mounts"
	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/internal/volspec"
)

// UnmountRequest is the unmount command's input.
type UnmountRequest struct {
	VolumeID   string
	Name       string
	Force      bool   // go past containers that hold the volume (the kernel's check stays)
	Attachment string // the attachment the command is for (echoed)
}

// User is a container using a volume (or, for the unmount command, one
// that may be about to).
type User struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state,omitempty"` // dockerd's: created, running, ...
}

func (u User) holder() agentproto.Holder {
	return agentproto.Holder{Kind: "container", ID: u.ID, Name: u.Name, State: u.State}
}

// ErrBusy marks a volume that containers (starting or running), processes
// or the kernel (another mount namespace, a stacked device, an exclusive
// opener) still hold.
var ErrBusy = errors.New("volume in use")

// BusyError names who holds a volume: containers, the plugin's counts, and
// what the kernel shows.
type BusyError struct {
	Name     string
	Users    []User
	MountIDs []string // the plugin's answered Mounts not yet unmounted
	Adopted  int      // the plugin's uses from before its start
	Pending  int      // the plugin's Mounts in progress
	// Kernel: processes with files open on it, mounts in other
	// namespaces, stacked devices, exclusive openers.
	Kernel []agentproto.Holder
	// Forced: --force went past the containers, and the kernel still
	// holds the filesystem (a lazy unmount is not an unmount).
	Forced bool
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
	for _, k := range e.Kernel {
		parts = append(parts, describeHolder(k))
	}
	what := "is held (containers starting or running)"
	if len(e.Kernel) > 0 {
		what = "is still held on this host: the kernel does not let go of it, so it is not safe to detach"
	}
	if e.Forced {
		what += " (--force went past the containers; a lazy unmount is not an unmount)"
	}
	return fmt.Sprintf("volume %s %s: %s", e.Name, what, strings.Join(parts, "; "))
}

func describeHolder(k agentproto.Holder) string {
	var b strings.Builder
	switch k.Kind {
	case "namespace":
		fmt.Fprintf(&b, "mounted at %s in another mount namespace (%s)", k.Name, k.ID)
	case "process":
		fmt.Fprintf(&b, "open by a process")
		if k.Name != "" {
			fmt.Fprintf(&b, " (%s)", k.Name)
		}
	case "device":
		fmt.Fprintf(&b, "device %s", k.Name)
	default:
		fmt.Fprintf(&b, "%s %s", k.Kind, k.Name)
	}
	if k.PID > 0 {
		fmt.Fprintf(&b, ", pid %d %s", k.PID, k.Command)
	}
	if k.ContainerID != "" {
		fmt.Fprintf(&b, ", container %s", shortID(k.ContainerID))
	}
	return b.String()
}

// Holders lists every holder as the JSON failure names them.
func (e *BusyError) Holders() []agentproto.Holder {
	var out []agentproto.Holder
	for _, u := range e.Users {
		out = append(out, u.holder())
	}
	for _, id := range e.MountIDs {
		out = append(out, agentproto.Holder{Kind: "plugin", ID: id, Name: "answered Mount"})
	}
	if e.Adopted > 0 {
		out = append(out, agentproto.Holder{Kind: "plugin", Name: fmt.Sprintf("%d use(s) adopted at the plugin's start", e.Adopted)})
	}
	if e.Pending > 0 {
		out = append(out, agentproto.Holder{Kind: "plugin", Name: fmt.Sprintf("%d Mount(s) in progress", e.Pending)})
	}
	return append(out, e.Kernel...)
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
var ErrWrongVolume = fmt.Errorf("%w: another volume is mounted under this name", ErrConflict)

// UnmountVolume flushes and unmounts NAME and says "safe to detach" only
// when the kernel agrees: the device is mounted in no mount namespace of
// the host, has no stacked holders, and opens O_EXCL. Before it unmounts
// it refuses (BusyError) while a container holds NAME or may be about to
// (see holding) unless req.Force; after it, forced or not, a kernel that
// still holds the device is a BusyError naming the holder. Success marks
// the binding released: the plugin does not mount it again until the next
// mount command. Not mounted is a success once the kernel agrees. It holds
// the volume's locks throughout, so that no plugin Mount is answered
// between the check and the unmount, and leaves the mount point sealed.
func (h *Host) UnmountVolume(ctx context.Context, req UnmountRequest) (agentproto.UnmountResult, error) {
	if err := errors.Join(volspec.ValidateVolumeID(req.VolumeID), volspec.ValidateName(req.Name), agentproto.ValidateAttachment(req.Attachment)); err != nil {
		return agentproto.UnmountResult{}, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	log := h.log.With("volumeId", req.VolumeID, "volume", req.Name)
	res := agentproto.UnmountResult{VolumeID: req.VolumeID, Name: req.Name, Mountpoint: h.Mountpoint(req.Name), Attachment: req.Attachment}
	unlock, err := h.lockVolume(ctx, req.Name, req.VolumeID)
	if err != nil {
		return res, err
	}
	defer unlock()

	b, bound, err := h.readBinding(req.Name)
	if err != nil {
		return res, err
	}
	current, mounted, err := mounts.At(res.Mountpoint)
	if err != nil {
		return res, err
	}
	var devNum mounts.DevNumber
	if mounted {
		res.WasMounted, res.Device, devNum = true, current.Source, current.Dev
		// Which volume is mounted: the binding says, else the device itself.
		owner := b.VolumeID
		if !bound {
			owner, _ = h.finder.VolumeIDOf(current.Source)
		}
		if owner != "" && owner != req.VolumeID {
			return res, fmt.Errorf("%w: %s holds %s, not %s", ErrWrongVolume, res.Mountpoint, owner, req.VolumeID)
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
			for _, u := range hd.users {
				res.Users = append(res.Users, u.holder())
			}
		}
		if err := h.unmount(log, req.Name, req.Force); err != nil {
			return res, err
		}
	} else {
		dev, err := h.finder.Find(log, req.VolumeID, "")
		switch {
		case errors.Is(err, blockdev.ErrNotFound):
			log.Info("not mounted, and the device is not on this host; nothing holds it", "mountpoint", res.Mountpoint)
		case err != nil:
			return res, err
		default:
			res.Device = dev.Path
			if devNum, err = mounts.DeviceNumber(dev.Path); err != nil {
				return res, err
			}
		}
	}

	if res.Device != "" {
		kernel, err := kernelHolders(devNum, res.Device)
		if err != nil {
			return res, err
		}
		if len(kernel) > 0 {
			e := &BusyError{Name: req.Name, Kernel: kernel, Forced: req.Force}
			log.Warn("the kernel still holds the volume's device; not safe to detach", "device", res.Device, "holders", kernel)
			return res, e
		}
		if err := mounts.FlushDevice(res.Device); err != nil {
			log.Warn("could not flush the device's buffers", "device", res.Device, "error", err.Error())
		}
	}
	h.sealIfUnmounted(log, req.Name)
	res.Released = true
	switch {
	case bound && b.VolumeID == req.VolumeID:
		res.Generation = b.Generation
		if !b.Released || b.Attachment != req.Attachment {
			b.Released, b.Attachment = true, req.Attachment
			if err := h.writeBinding(req.Name, b); err != nil {
				return res, err
			}
		}
	case req.Attachment != "":
		// Never mounted under NAME here (or NAME last held another
		// volume): the release is recorded all the same, or a mount
		// command for this attachment sent before the release could
		// mount it between the release and its detach.
		next := binding{VolumeID: req.VolumeID, Generation: b.Generation, Released: true, Attachment: req.Attachment}
		res.Generation = next.Generation
		if err := h.writeBinding(req.Name, next); err != nil {
			return res, err
		}
	}
	log.Info("unmounted: the kernel holds the device nowhere on this host; released until the next mount command",
		"device", res.Device, "wasMounted", res.WasMounted, "generation", res.Generation)
	return res, nil
}

// kernelHolders is what holds the block device dev (devPath) on this host:
// mounts in any mount namespace, stacked devices, an exclusive opener
// (named through the processes that have it open, when it can be).
func kernelHolders(dev mounts.DevNumber, devPath string) ([]agentproto.Holder, error) {
	var out []agentproto.Holder
	ns, err := mounts.MountsInEveryNamespace(dev)
	if err != nil {
		return nil, err
	}
	for _, m := range ns {
		out = append(out, agentproto.Holder{Kind: "namespace", ID: m.Namespace, Name: m.Mountpoint, PID: m.PID, Command: m.Command, ContainerID: m.ContainerID})
	}
	stacked, err := mounts.StackedHolders(dev)
	if err != nil {
		return nil, err
	}
	for _, s := range stacked {
		out = append(out, agentproto.Holder{Kind: "device", Name: s})
	}
	if len(out) > 0 {
		return out, nil
	}
	err = mounts.OpenExclusive(devPath)
	switch {
	case errors.Is(err, mounts.ErrHeldExclusively):
		procs := mounts.OpenedBy(dev)
		for _, p := range procs {
			out = append(out, agentproto.Holder{Kind: "process", Name: devPath + " open", PID: p.PID, Command: p.Command, ContainerID: p.ContainerID})
		}
		if len(out) == 0 {
			out = append(out, agentproto.Holder{Kind: "device", Name: devPath + " held open exclusively (O_EXCL) by the kernel or a process tether cannot see"})
		}
		return out, nil
	case errors.Is(err, os.ErrNotExist):
		return nil, nil // the device went away: nothing holds it here
	case err != nil:
		return nil, err
	}
	return nil, nil
}

// Unmount flushes and unmounts NAME (driver.Host); the caller holds the
// volume's lock and has decided no container needs it. The binding is not
// released: the plugin may mount the volume again for the next container.
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
	if err := h.unmount(log, name, false); err != nil {
		return err
	}
	if err := mounts.FlushDevice(current.Source); err != nil {
		log.Warn("could not flush the device's buffers after unmount", "device", current.Source, "error", err.Error())
	}
	return nil
}

// unmount syncs and unmounts NAME's filesystem. The kernel refusing (busy)
// is a BusyError naming the processes with files open in it, unless force:
// then it is detached lazily, and the caller's kernel check decides.
func (h *Host) unmount(log *slog.Logger, name string, force bool) error {
	mp := h.Mountpoint(name)
	err := mounts.Unmount(mp)
	if errors.Is(err, mounts.ErrBusy) {
		if !force {
			e := &BusyError{Name: name}
			for _, p := range mounts.OpenUnder(mp) {
				e.Kernel = append(e.Kernel, agentproto.Holder{Kind: "process", Name: "files open under " + mp, PID: p.PID, Command: p.Command, ContainerID: p.ContainerID})
			}
			if len(e.Kernel) == 0 {
				e.Kernel = []agentproto.Holder{{Kind: "process", Name: "the kernel reports " + mp + " busy"}}
			}
			return e
		}
		log.Warn("filesystem busy; detaching it lazily (--force): it is unmounted only when the kernel lets go of the device", "mountpoint", mp)
		if err := mounts.Detach(mp); err != nil {
			return err
		}
		h.sealIfUnmounted(log, name)
		return nil
	}
	if err != nil {
		return err
	}
	log.Info("unmounted", "mountpoint", mp)
	h.sealIfUnmounted(log, name)
	return nil
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
