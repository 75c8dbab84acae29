package hostops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/tether-ecs/tether/agent/blockdev"
	"github.com/tether-ecs/tether/agent/driver"
	"github.com/tether-ecs/tether/agent/fsys"
	"github.com/tether-ecs/tether/agent/mounts"
	"github.com/tether-ecs/tether/internal/volspec"
)

// MountRequest is the mount command's input.
type MountRequest struct {
	VolumeID   string
	Name       string
	FSType     string        // for a blank device; "" = volspec.DefaultFSType
	DeviceName string        // Xen device name from the attachment, or ""
	Wait       time.Duration // how long to wait for the device to appear
}

// MountResult is the mount command's output (docs/contracts.md).
type MountResult struct {
	VolumeID       string `json:"volumeId"`
	Name           string `json:"name"`
	Device         string `json:"device"`
	FSType         string `json:"fstype"`
	Formatted      bool   `json:"formatted"`
	Grown          bool   `json:"grown"`
	Mountpoint     string `json:"mountpoint"`
	AlreadyMounted bool   `json:"alreadyMounted"`
}

// ErrInUse marks a mount that conflicts with what the host already has
// mounted: NAME from another device, or the device somewhere else.
var ErrInUse = errors.New("conflicting mount")

// MountVolume finds the volume's device (waiting up to req.Wait), and
// mounts it at <root>/volumes/NAME: a blank device gets req.FSType, a
// supported filesystem is mounted as it is and grown to the device, anything
// else is refused (fsys.ErrRefused). Mounting what is already mounted is a
// success with AlreadyMounted set. It holds the volume's lock throughout.
func (h *Host) MountVolume(ctx context.Context, req MountRequest) (MountResult, error) {
	if req.FSType == "" {
		req.FSType = volspec.DefaultFSType
	}
	if err := ValidateMountRequest(req); err != nil {
		return MountResult{}, err
	}
	log := h.log.With("volumeId", req.VolumeID, "volume", req.Name)
	// Wait for the device without the lock: the plugin may need it meanwhile.
	if _, err := h.finder.Wait(ctx, log, req.VolumeID, req.DeviceName, req.Wait); err != nil {
		return MountResult{}, err
	}
	unlock, err := h.lockBounded(ctx, req.Name)
	if err != nil {
		return MountResult{}, err
	}
	defer unlock()
	// Look again under the lock: the device may have gone or changed.
	dev, err := h.finder.Find(log, req.VolumeID, req.DeviceName)
	if err != nil {
		return MountResult{}, err
	}
	log.Info("found the volume's device", "device", dev.Path, "how", dev.How)
	return h.mountDevice(ctx, log, req.Name, req.VolumeID, dev.Path, req.FSType)
}

// ValidateMountRequest checks every field with volspec (and the device
// name's shape); the error wraps ErrBadInput.
func ValidateMountRequest(req MountRequest) error {
	errs := []error{volspec.ValidateVolumeID(req.VolumeID), volspec.ValidateName(req.Name), volspec.ValidateFSType(req.FSType)}
	if req.DeviceName != "" {
		errs = append(errs, blockdev.ValidateDeviceName(req.DeviceName))
	}
	if req.Wait < 0 {
		errs = append(errs, fmt.Errorf("invalid wait %s: negative", req.Wait))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	return nil
}

// MountAttached mounts NAME's bound volume if its device is attached to
// this host (driver.Host). Never formats: a blank device is an error. The
// caller holds the volume's lock.
func (h *Host) MountAttached(ctx context.Context, name string) error {
	volumeID, ok, err := h.Binding(name)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: volume %s has no binding (%s): it was never mounted on this host", driver.ErrNotAttached, name, h.bindingPath(name))
	}
	log := h.log.With("volumeId", volumeID, "volume", name)
	dev, err := h.finder.Find(log, volumeID, "")
	if errors.Is(err, blockdev.ErrNotFound) {
		return fmt.Errorf("%w: %w", driver.ErrNotAttached, err)
	}
	if err != nil {
		return err
	}
	_, err = h.mountDevice(ctx, log, name, volumeID, dev.Path, "")
	return err
}

// mountDevice mounts devPath (volumeID's device) at NAME's mount point.
// fstype "" means the device must already hold a filesystem.
func (h *Host) mountDevice(ctx context.Context, log *slog.Logger, name, volumeID, devPath, fstype string) (MountResult, error) {
	mp := h.Mountpoint(name)
	res := MountResult{VolumeID: volumeID, Name: name, Device: devPath, Mountpoint: mp}
	devNum, err := mounts.DeviceNumber(devPath)
	if err != nil {
		return res, err
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
		log.Info("already mounted", "device", devPath, "mountpoint", mp, "fstype", current.FSType)
		res.AlreadyMounted, res.FSType = true, current.FSType
		res.Grown = h.growOnline(ctx, log, devPath, mp, current.FSType)
		return res, h.writeBinding(name, volumeID)
	}
	elsewhere, err := mounts.OfDevice(devNum)
	if err != nil {
		return res, err
	}
	if len(elsewhere) > 0 {
		return res, fmt.Errorf("%w: %s's device %s is already mounted at %s", ErrInUse, volumeID, devPath, elsewhere[0].Mountpoint)
	}

	prep, err := fsys.Prepare(ctx, h.runner, log, devPath, fstype)
	if err != nil {
		return res, err
	}
	res.FSType, res.Formatted = prep.FSType, prep.Formatted
	if !prep.Formatted {
		grown, err := fsys.GrowOffline(ctx, h.runner, log, devPath, prep.FSType)
		if err != nil {
			return res, err
		}
		res.Grown = grown
	}
	if err := os.MkdirAll(filepath.Dir(mp), 0o700); err != nil {
		return res, err
	}
	if err := os.Mkdir(mp, 0); err != nil && !errors.Is(err, os.ErrExist) {
		return res, err
	}
	// Nothing is mounted on it yet: sealed, it stays unusable if this mount
	// is undone behind tether's back (umount by hand).
	h.sealIfUnmounted(log, name)
	if err := mounts.Mount(devPath, mp, prep.FSType); err != nil {
		return res, err
	}
	log.Info("mounted", "device", devPath, "mountpoint", mp, "fstype", prep.FSType, "formatted", prep.Formatted)
	if !prep.Formatted && !res.Grown {
		res.Grown = h.growOnline(ctx, log, devPath, mp, prep.FSType)
	}
	return res, h.writeBinding(name, volumeID)
}

// growOnline grows a mounted filesystem to its device. A failure is logged,
// not returned: the volume is mounted and usable, and the next mount grows
// it.
func (h *Host) growOnline(ctx context.Context, log *slog.Logger, devPath, mp, fstype string) bool {
	grown, err := fsys.GrowOnline(ctx, h.runner, log, devPath, mp, fstype)
	if err != nil {
		log.Warn("could not grow the mounted filesystem; it keeps its size", "device", devPath, "mountpoint", mp, "error", err.Error())
	}
	return grown
}
