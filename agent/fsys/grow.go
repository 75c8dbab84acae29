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

// GrowOnline grows the filesystem mounted at mountpoint from dev to the
// size of the device, when the device is larger than the filesystem by at
// least one block, and reports whether it grew: resize2fs on the mounted
// device (ext4 grows online) or xfs_growfs on the mount point. Never
// offline: no e2fsck -f and resize of an unmounted filesystem, which takes
// minutes on a large volume while a container waits. (An online ext resize
// needs CAP_SYS_RESOURCE.)
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
