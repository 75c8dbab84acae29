// Package mounts reads the kernel's mount table and mounts and unmounts
// block devices with the mount(2) family of syscalls (no mount binary).
//
// Devices are compared by device number (major:minor), never by path: the
// same device has many names (/dev/nvme1n1, a by-id link, /dev/xvdf).
package mounts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Entry is one mount of the calling process's mount namespace.
type Entry struct {
	Mountpoint string
	Source     string // as the kernel recorded it, e.g. /dev/nvme1n1
	FSType     string
	Dev        DevNumber
}

// DevNumber is a block device's major:minor.
type DevNumber struct{ Major, Minor uint32 }

func (d DevNumber) String() string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }

// ErrNotBlockDevice marks a path that is not a block device.
var ErrNotBlockDevice = errors.New("not a block device")

// DeviceNumber returns the device number of the block device at path
// (following links).
func DeviceNumber(path string) (DevNumber, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return DevNumber{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return DevNumber{}, fmt.Errorf("%w: %s", ErrNotBlockDevice, path)
	}
	return DevNumber{Major: unix.Major(st.Rdev), Minor: unix.Minor(st.Rdev)}, nil
}

func entryOf(info *mountinfo.Info) Entry {
	return Entry{
		Mountpoint: info.Mountpoint,
		Source:     info.Source,
		FSType:     info.FSType,
		Dev:        DevNumber{Major: uint32(info.Major), Minor: uint32(info.Minor)},
	}
}

// At returns the topmost mount at mountpoint (an absolute path without
// links), if any.
func At(mountpoint string) (Entry, bool, error) {
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(filepath.Clean(mountpoint)))
	if err != nil {
		return Entry{}, false, fmt.Errorf("read mount table: %w", err)
	}
	if len(infos) == 0 {
		return Entry{}, false, nil
	}
	// Mounts stacked on one path are listed in mount order: the last is on top.
	return entryOf(infos[len(infos)-1]), true, nil
}

// OfDevice returns every mount of the block device dev.
func OfDevice(dev DevNumber) ([]Entry, error) {
	infos, err := mountinfo.GetMounts(func(info *mountinfo.Info) (skip, stop bool) {
		return uint32(info.Major) != dev.Major || uint32(info.Minor) != dev.Minor, false
	})
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	entries := make([]Entry, 0, len(infos))
	for _, info := range infos {
		entries = append(entries, entryOf(info))
	}
	return entries, nil
}

// Under returns every mount whose mountpoint is dir or below it.
func Under(dir string) ([]Entry, error) {
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(filepath.Clean(dir)))
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	entries := make([]Entry, 0, len(infos))
	for _, info := range infos {
		entries = append(entries, entryOf(info))
	}
	return entries, nil
}

// Options returns the mount data tether uses for fstype. xfs gets nouuid:
// two volumes restored from one snapshot share a filesystem UUID, and xfs
// refuses to mount the second without it.
func Options(fstype string) string {
	if fstype == "xfs" {
		return "nouuid"
	}
	return ""
}

// Flags are the mount(2) flags tether mounts a volume with: nosuid and
// nodev unless devSuid (a driverOpt asks for set-user-ID programs and
// device nodes on the volume). A data volume needs neither, and a
// filesystem that moved between hosts should not bring them along.
func Flags(devSuid bool) uintptr {
	if devSuid {
		return 0
	}
	return unix.MS_NOSUID | unix.MS_NODEV
}

// Mount mounts the block device dev (fstype) on target, read-write, with
// flags (Flags).
func Mount(dev, target, fstype string, flags uintptr) error {
	if err := unix.Mount(dev, target, fstype, flags, Options(fstype)); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", dev, fstype, target, err)
	}
	return nil
}

// ErrBusy marks a filesystem the kernel will not unmount because something
// still uses it.
var ErrBusy = errors.New("filesystem busy")

// Unmount flushes the filesystem at target and unmounts it. EBUSY is
// retried a few times over about two seconds (a process that just exited
// may still be closing its files); after that the error wraps ErrBusy.
func Unmount(target string) error {
	if err := Syncfs(target); err != nil {
		return err
	}
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		err = unix.Unmount(target, 0)
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("unmount %s: %w: %w", target, ErrBusy, err)
	default:
		return fmt.Errorf("unmount %s: %w", target, err)
	}
}

// Detach unmounts target lazily (MNT_DETACH): it disappears now and the
// filesystem is released when its last user lets go.
func Detach(target string) error {
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach %s: %w", target, err)
	}
	return nil
}

// Syncfs writes the filesystem mounted at path to its device.
func Syncfs(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return &os.PathError{Op: "syncfs", Path: path, Err: err}
	}
	return nil
}

// FlushDevice writes the block device's dirty buffers and drops its cache
// (BLKFLSBUF), so a detach that follows loses nothing and a later attach
// elsewhere reads the disk, not this host's memory.
func FlushDevice(dev string) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dev, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, unix.BLKFLSBUF, 0); err != nil {
		return &os.PathError{Op: "BLKFLSBUF", Path: dev, Err: err}
	}
	return nil
}
