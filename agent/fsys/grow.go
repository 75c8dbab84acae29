package fsys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// ErrGrowFailed marks a resize2fs/xfs_growfs that did not succeed.
var ErrGrowFailed = errors.New("grow failed")

// needsGrow reports whether a device of devSize bytes has room for at least
// one more block of a filesystem of size fs.
func needsGrow(devSize int64, fs FSSize) bool {
	return devSize-fs.Bytes() >= fs.BlockSize
}

// GrowOffline grows an ext2/3/4 filesystem on an unmounted device to the
// size of the device, and reports whether it grew. tether prefers this to an
// online resize for ext: it needs no CAP_SYS_RESOURCE, and resize2fs works
// on a freshly checked filesystem. Other filesystems are left alone (xfs
// grows only when mounted: GrowOnline).
func GrowOffline(ctx context.Context, r Runner, log *slog.Logger, dev, fstype string) (bool, error) {
	if !strings.HasPrefix(fstype, "ext") {
		return false, nil
	}
	devSize, err := DeviceSize(dev)
	if err != nil {
		return false, err
	}
	before, err := ExtSize(dev)
	if err != nil {
		return false, err
	}
	if !needsGrow(devSize, before) {
		return false, nil
	}
	log.Info("device is larger than its filesystem; checking and growing it before mount",
		"device", dev, "fstype", fstype, "deviceBytes", devSize, "filesystemBytes", before.Bytes())
	// resize2fs insists on a full check of a filesystem mounted since its
	// last check.
	checkArgs := []string{"-f", "-p", dev}
	res, err := r.Run(ctx, "e2fsck", checkArgs...)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrGrowFailed, err)
	}
	switch {
	case res.ExitCode&fsckUncorrected != 0:
		return false, fmt.Errorf("%w: %w", ErrFilesystemErrors, commandError("e2fsck", checkArgs, res))
	case res.ExitCode >= fsckOperational:
		return false, fmt.Errorf("%w: %w", ErrGrowFailed, commandError("e2fsck", checkArgs, res))
	}
	if err := runGrowTool(ctx, r, "resize2fs", dev); err != nil {
		return false, err
	}
	after, err := ExtSize(dev)
	if err != nil {
		return false, err
	}
	log.Info("filesystem grown", "device", dev, "fstype", fstype, "filesystemBytes", after.Bytes())
	return after.Bytes() > before.Bytes(), nil
}

// GrowOnline grows the filesystem mounted at mountpoint from dev to the
// size of the device, when the device is larger than the filesystem by at
// least one block, and reports whether it grew. (An online ext resize needs
// CAP_SYS_RESOURCE.)
func GrowOnline(ctx context.Context, r Runner, log *slog.Logger, dev, mountpoint, fstype string) (bool, error) {
	devSize, err := DeviceSize(dev)
	if err != nil {
		return false, err
	}
	before, err := MountedSize(dev, mountpoint, fstype)
	if err != nil {
		return false, err
	}
	if !needsGrow(devSize, before) {
		return false, nil
	}
	log.Info("device is larger than its mounted filesystem; growing it online",
		"device", dev, "fstype", fstype, "deviceBytes", devSize, "filesystemBytes", before.Bytes())
	if strings.HasPrefix(fstype, "ext") {
		err = runGrowTool(ctx, r, "resize2fs", dev)
	} else {
		err = runGrowTool(ctx, r, "xfs_growfs", "-d", mountpoint)
	}
	if err != nil {
		return false, err
	}
	after, err := MountedSize(dev, mountpoint, fstype)
	if err != nil {
		return false, err
	}
	log.Info("filesystem grown", "device", dev, "fstype", fstype, "filesystemBytes", after.Bytes())
	return after.Bytes() > before.Bytes(), nil
}

func runGrowTool(ctx context.Context, r Runner, name string, args ...string) error {
	res, err := r.Run(ctx, name, args...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrGrowFailed, err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%w: %w", ErrGrowFailed, commandError(name, args, res))
	}
	return nil
}
