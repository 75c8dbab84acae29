package hostops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-ecs/tether/agent/blockdev"
	"github.com/tether-ecs/tether/agent/driver"
	"github.com/tether-ecs/tether/agent/fsys"
	"github.com/tether-ecs/tether/agent/mounts"
	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/internal/volspec"
)

// MountRequest is the mount command's input.
type MountRequest struct {
	VolumeID   string
	Name       string
	FSType     string        // for a blank device; "" = volspec.DefaultFSType
	DeviceName string        // Xen device name from the attachment, or ""
	Wait       time.Duration // how long to wait for the device to appear
	// FormatIfBlank is the reconciler's grant to format a device that
	// proves blank (a volume it created empty and never saw formatted).
	FormatIfBlank bool
	// SizeGiB is the volume's size: a device found only by its Xen name
	// must have exactly this size. 0: unknown.
	SizeGiB int
	// Attachment is the attachment token the command is for (echoed).
	Attachment string
	// DevSuid mounts without nosuid,nodev (the volume's driverOpt).
	DevSuid bool
	// FormatOwner ("" or UID[:GID], agentproto.ParseFormatOwner): who may
	// write in the root of a filesystem this mount makes (fsys.OwnRoot).
	// Only applied right after this call's own granted format.
	FormatOwner string
}

// ErrInUse marks a mount that conflicts with what the host already has
// mounted: NAME from another device, or the device somewhere else.
var ErrInUse = fmt.Errorf("%w: conflicting mount", ErrConflict)

// ErrNotTheVolume marks a device that is not provably the volume: a Xen
// device whose size is not the volume's.
var ErrNotTheVolume = fmt.Errorf("%w: device is not the volume", ErrConflict)

// ErrReleased marks a binding the unmount command released: the plugin
// waits for the reconciler's next mount instead of mounting it itself.
var ErrReleased = errors.New("volume released by the unmount command")

// ErrAttachmentReleased marks a mount command for the very attachment an
// unmount released: that attachment is on its way to being detached, and
// is never mounted again (agentproto.ExitReleased).
var ErrAttachmentReleased = errors.New("attachment released for detach")

// MountVolume finds the volume's device (waiting up to req.Wait) and
// mounts it at <root>/volumes/NAME: a supported filesystem is mounted as
// it is (checked first if it was not left cleanly) and grown online; a
// device without a signature gets req.FSType only with req.FormatIfBlank
// and only once it proves blank (fsys.Prepare); anything else is refused.
// Mounting what is already mounted is a success with AlreadyMounted set.
// It holds the volume's locks (name, then volume id) throughout, writes
// the binding (next generation, not released) before it mounts.
func (h *Host) MountVolume(ctx context.Context, req MountRequest) (agentproto.MountResult, error) {
	if req.FSType == "" {
		req.FSType = volspec.DefaultFSType
	}
	if err := ValidateMountRequest(req); err != nil {
		return agentproto.MountResult{}, err
	}
	log := h.log.With("volumeId", req.VolumeID, "volume", req.Name)
	// Wait for the device without the lock: the plugin may need it meanwhile.
	if _, err := h.finder.Wait(ctx, log, req.VolumeID, req.DeviceName, req.Wait); err != nil {
		return agentproto.MountResult{}, err
	}
	unlock, err := h.lockVolume(ctx, req.Name, req.VolumeID)
	if err != nil {
		return agentproto.MountResult{}, err
	}
	defer unlock()
	// Look again under the lock: the device may have gone or changed.
	dev, err := h.finder.Find(log, req.VolumeID, req.DeviceName)
	if err != nil {
		return agentproto.MountResult{}, err
	}
	log.Info("found the volume's device", "device", dev.Path, "how", dev.How, "confirmed", dev.Confirmed)
	owner, err := agentproto.ParseFormatOwner(req.FormatOwner)
	if err != nil {
		return agentproto.MountResult{}, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	opts := mountOptions{fsType: req.FSType, grant: req.FormatIfBlank, attachment: req.Attachment, devSuid: req.DevSuid, owner: owner, command: true}
	if !dev.Confirmed {
		// Already mounted under NAME from this very device: its identity
		// was confirmed when it was mounted, and its size may since have
		// grown (Elastic Volumes) past or short of --size-gib.
		if !h.mountedFrom(req.Name, dev.Path) {
			if err := confirmBySize(dev.Path, req.VolumeID, req.SizeGiB); err != nil {
				return agentproto.MountResult{}, err
			}
		}
		opts.neverFormat = fmt.Sprintf("%s was found by its device name %s only (a Xen device has no serial that proves it is %s), so tether never formats it", dev.Path, req.DeviceName, req.VolumeID)
	}
	return h.mountDevice(ctx, log, req.Name, req.VolumeID, dev.Path, opts)
}

// mountedFrom reports whether NAME's mount point is mounted from devPath.
func (h *Host) mountedFrom(name, devPath string) bool {
	devNum, err := mounts.DeviceNumber(devPath)
	if err != nil {
		return false
	}
	current, mounted, err := mounts.At(h.Mountpoint(name))
	return err == nil && mounted && current.Dev == devNum
}

// confirmBySize checks a device found by its Xen name: its size must be
// the volume's exactly (EBS sizes are whole GiB).
func confirmBySize(dev, volumeID string, sizeGiB int) error {
	if sizeGiB <= 0 {
		return fmt.Errorf("%w: %s was found by its device name only and --size-gib was not given, so it cannot be confirmed as %s", ErrNotTheVolume, dev, volumeID)
	}
	size, err := fsys.DeviceSize(dev)
	if err != nil {
		return err
	}
	if want := int64(sizeGiB) << 30; size != want {
		return fmt.Errorf("%w: %s (found by its device name) has %d bytes, not %d GiB: it is not %s", ErrNotTheVolume, dev, size, sizeGiB, volumeID)
	}
	return nil
}

// ValidateMountRequest checks every field with volspec (and the device
// name's shape); the error wraps ErrBadInput.
func ValidateMountRequest(req MountRequest) error {
	errs := []error{volspec.ValidateVolumeID(req.VolumeID), volspec.ValidateName(req.Name), volspec.ValidateFSType(req.FSType),
		agentproto.ValidateAttachment(req.Attachment)}
	if _, err := agentproto.ParseFormatOwner(req.FormatOwner); err != nil {
		errs = append(errs, err)
	}
	if req.DeviceName != "" {
		errs = append(errs, blockdev.ValidateDeviceName(req.DeviceName))
	}
	if req.Wait < 0 {
		errs = append(errs, fmt.Errorf("invalid wait %s: negative", req.Wait))
	}
	if req.SizeGiB < 0 || req.SizeGiB > 65536 {
		errs = append(errs, fmt.Errorf("invalid size %d GiB: want 1 to 65536 (0: unknown)", req.SizeGiB))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	return nil
}

// MountAttached mounts NAME's bound volume if its device is attached to
// this host (driver.Host). Never formats; a released binding is not
// mounted (ErrReleased, wrapping driver.ErrNotAttached: the plugin waits
// for the reconciler). The caller holds NAME's lock; this takes the volume
// id's.
func (h *Host) MountAttached(ctx context.Context, name string) error {
	b, ok, err := h.readBinding(name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: volume %s has no binding (%s): it was never mounted on this host", driver.ErrNotAttached, name, h.bindingPath(name))
	}
	if b.Released {
		return fmt.Errorf("%w: %w: EBS volume %s (generation %d, device %s) was unmounted by the reconciler and may be detaching; only its next mount command mounts it here again",
			driver.ErrNotAttached, ErrReleased, b.VolumeID, b.Generation, h.finder.ByIDLink(b.VolumeID))
	}
	log := h.log.With("volume", name, "volumeId", b.VolumeID)
	unlock, err := h.lockVolumeID(ctx, b.VolumeID)
	if err != nil {
		return err
	}
	defer unlock()
	dev, err := h.finder.Find(log, b.VolumeID, "")
	if errors.Is(err, blockdev.ErrNotFound) {
		return fmt.Errorf("%w: %w", driver.ErrNotAttached, err)
	}
	if err != nil {
		return err
	}
	_, err = h.mountDevice(ctx, log, name, b.VolumeID, dev.Path, mountOptions{attachment: b.Attachment, devSuid: b.DevSuid})
	return err
}

// mountOptions say how mountDevice may treat the device.
type mountOptions struct {
	fsType      string // made on a proven-blank device with grant
	grant       bool
	neverFormat string // why the device may never be formatted, "" if it may
	attachment  string
	devSuid     bool
	owner       *agentproto.FormatOwner // for the root of a filesystem made by this call; nil: root's
	command     bool                    // the mount command (it clears a release); else the plugin
}

// mountDevice mounts devPath (volumeID's device) at NAME's mount point.
// The caller holds the volume's locks.
func (h *Host) mountDevice(ctx context.Context, log *slog.Logger, name, volumeID, devPath string, o mountOptions) (agentproto.MountResult, error) {
	mp := h.Mountpoint(name)
	granted := o.grant
	res := agentproto.MountResult{VolumeID: volumeID, Name: name, Device: devPath, Mountpoint: mp, Attachment: o.attachment, Granted: &granted}
	devNum, err := mounts.DeviceNumber(devPath)
	if err != nil {
		return res, err
	}
	old, bound, err := h.readBinding(name)
	if err != nil {
		return res, err
	}
	if bound && old.VolumeID != volumeID {
		old = binding{} // another volume's generations are not this one's
	}
	// The reconciler detaches an attachment once its unmount released it.
	// A mount command for that attachment can only come from a pass that
	// decided before the release: refusing it (under the lock the unmount
	// took) means no mount can slip in between the release and the detach.
	if o.command && o.attachment != "" && old.Released && old.Attachment == o.attachment {
		return res, fmt.Errorf("%w: %s (%s) was released by an unmount for attachment %s (generation %d) and is being detached; it mounts again once attached anew",
			ErrAttachmentReleased, name, volumeID, o.attachment, old.Generation)
	}

	current, mounted, err := mounts.At(mp)
	if err != nil {
		return res, err
	}
	if mounted {
		if current.Dev != devNum {
			return res, fmt.Errorf("%w: %s is already mounted at %s from %s (%s), not from %s's device %s (%s)",
				ErrInUse, name, mp, current.Source, current.Dev, volumeID, devPath, devNum)
		}
		log.Info("already mounted", "device", devPath, "mountpoint", mp, "fstype", current.FSType, "generation", old.Generation)
		res.AlreadyMounted, res.FSType, res.Generation = true, current.FSType, old.Generation
		// The mount command again on a mounted volume is how a grown
		// volume (Elastic Volumes) reaches its filesystem: nothing is
		// unmounted or remounted, the containers using it keep it.
		h.growOnline(ctx, log, &res, devPath, mp, current.FSType)
		if o.command && (old.Released || old.Attachment != o.attachment || old.VolumeID == "") {
			b := old
			b.VolumeID, b.Released, b.Attachment, b.DevSuid = volumeID, false, o.attachment, o.devSuid
			return res, h.writeBinding(name, b)
		}
		return res, nil
	}
	elsewhere, err := mounts.OfDevice(devNum)
	if err != nil {
		return res, err
	}
	if len(elsewhere) > 0 {
		return res, fmt.Errorf("%w: %s's device %s is already mounted at %s", ErrInUse, volumeID, devPath, elsewhere[0].Mountpoint)
	}

	prep, err := fsys.Prepare(ctx, h.runner, h.inspector, log, devPath, fsys.PrepareOptions{FSType: o.fsType, FormatIfBlank: o.grant, NeverFormat: o.neverFormat})
	if err != nil {
		return res, err
	}
	res.FSType, res.Formatted, res.Checked = prep.FSType, prep.Formatted, prep.Checked
	if err := os.MkdirAll(filepath.Dir(mp), 0o700); err != nil {
		return res, err
	}
	if err := os.Mkdir(mp, 0); err != nil && !errors.Is(err, os.ErrExist) {
		return res, err
	}
	// Nothing is mounted on it yet: sealed, it stays unusable if this mount
	// is undone behind tether's back (umount by hand).
	h.sealIfUnmounted(log, name)
	// The binding first: whatever happens next, the host knows which
	// volume and which generation NAME is about.
	next := binding{VolumeID: volumeID, Generation: old.Generation + 1, Attachment: o.attachment, DevSuid: o.devSuid}
	if err := h.writeBinding(name, next); err != nil {
		return res, err
	}
	res.Generation = next.Generation
	if err := mounts.Mount(devPath, mp, prep.FSType, mounts.Flags(o.devSuid)); err != nil {
		if errors.Is(err, unix.EUCLEAN) || errors.Is(err, unix.EBADMSG) {
			report := ""
			if prep.FSType == volspec.FSXFS {
				report = "; " + fsys.ReportXFS(ctx, h.runner, devPath)
			}
			return res, fmt.Errorf("%w: the kernel found the filesystem corrupt: %w%s", fsys.ErrFilesystemErrors, err, report)
		}
		return res, err
	}
	log.Info("mounted", "device", devPath, "mountpoint", mp, "fstype", prep.FSType, "formatted", prep.Formatted,
		"checked", prep.Checked, "generation", next.Generation, "nosuidNodev", !o.devSuid)
	// Ownership only on the filesystem this call made: one that was there
	// keeps whatever its users made of it. A failure here is not retried by
	// a later mount (the filesystem is no longer new), so it is an error
	// that says how to finish by hand.
	if prep.Formatted && o.owner != nil {
		if err := fsys.OwnRoot(mp, *o.owner); err != nil {
			return res, fmt.Errorf("%s (%s) was formatted and is mounted at %s, but its root was not given to %s (a later mount never does it; chown/chmod it by hand as docs/contracts.md says): %w",
				name, volumeID, mp, o.owner, err)
		}
		log.Info("gave the new filesystem's root to the container's user", "mountpoint", mp, "formatOwner", o.owner.String())
	} else if o.owner != nil {
		log.Info("format owner not applied: the filesystem was not made by this mount", "mountpoint", mp, "formatOwner", o.owner.String())
	}
	if prep.Formatted {
		h.measure(log, &res, devPath, mp, prep.FSType)
	} else {
		h.growOnline(ctx, log, &res, devPath, mp, prep.FSType)
	}
	return res, nil
}

// growOnline has the kernel read the device's size again where it must be
// told (a loop device: blockdev.Finder.RefreshSize) and grows the mounted
// filesystem to it, online (fsys.GrowOnline), recording Grown, the sizes
// and any failure in res. A failure is logged and reported (GrowError),
// not returned: the volume is mounted and usable as it is, and the next
// mount command tries again.
func (h *Host) growOnline(ctx context.Context, log *slog.Logger, res *agentproto.MountResult, devPath, mp, fstype string) {
	if err := h.finder.RefreshSize(devPath); err != nil {
		log.Warn("could not have the kernel read the device's size again", "device", devPath, "error", err.Error())
		res.GrowError = err.Error()
	}
	grown, err := fsys.GrowOnline(ctx, h.runner, log, devPath, mp, fstype)
	if err != nil {
		log.Warn("could not grow the mounted filesystem; it keeps its size", "device", devPath, "mountpoint", mp, "error", err.Error())
		res.GrowError = err.Error()
	}
	res.Grown = grown
	h.measure(log, res, devPath, mp, fstype)
}

// measure records the device's and the mounted filesystem's sizes in res
// (best effort: a size that cannot be read stays 0, unknown).
func (h *Host) measure(log *slog.Logger, res *agentproto.MountResult, devPath, mp, fstype string) {
	if n, err := fsys.DeviceSize(devPath); err == nil {
		res.DeviceBytes = n
	} else {
		log.Warn("could not read the device's size", "device", devPath, "error", err.Error())
	}
	if fs, err := fsys.MountedSize(devPath, mp, fstype); err == nil {
		res.FilesystemBytes = fs.Bytes()
	} else {
		log.Warn("could not read the filesystem's size", "device", devPath, "mountpoint", mp, "error", err.Error())
	}
}
