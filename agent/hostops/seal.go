package hostops

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/tether-ecs/tether/agent/mounts"
)

// A mount point with nothing mounted on it is sealed: mode 000 and
// immutable (FS_IMMUTABLE_FL). Mode 000 stops every user but root; the
// immutable flag stops root too, in a container or not (creating a file in
// an immutable directory fails, and clearing the flag takes
// CAP_LINUX_IMMUTABLE, which containers do not get). So a container given
// the empty directory, however that happened, cannot write its data onto
// the host's disk. Mounting on a sealed directory works: mount(2) does not
// change the directory. A filesystem without the flag (some lack
// FS_IOC_SETFLAGS) gets mode 000 and a warning.

// fsImmutableFL is FS_IMMUTABLE_FL of linux/fs.h (x/sys/unix lacks it).
const fsImmutableFL = 0x00000010

// errMounted marks a directory that is the root of a mount: sealing it
// would seal the volume's filesystem, not the mount point.
var errMounted = errors.New("a filesystem is mounted on it")

// sealIfUnmounted seals NAME's mount point if it exists and nothing is
// mounted on it; a failure is logged, not returned (the seal is a second
// line of defence: the plugin never hands out an unmounted mount point).
// The caller holds the volume's lock.
func (h *Host) sealIfUnmounted(log *slog.Logger, name string) {
	mp := h.Mountpoint(name)
	// The mount table first (a bind of the same filesystem keeps the device
	// number), then the device number of what was opened (race-free: an fd
	// opened before a mount is still the mount point's own directory).
	_, mounted, err := mounts.At(mp)
	if err == nil && mounted {
		err = fmt.Errorf("seal %s: %w", mp, errMounted)
	}
	if err == nil {
		err = sealMountpoint(log, mp)
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
	case errors.Is(err, errMounted):
		log.Info("mount point not sealed: still a mount on it", "mountpoint", mp)
	case err != nil:
		log.Warn("could not seal the unmounted mount point", "mountpoint", mp, "error", err.Error())
	}
}

// SealUnmountedMountpoints seals every mount point under <root>/volumes
// that nothing is mounted on (those left mode 0700 by an older agent);
// serve runs it at start. Failures are logged.
func (h *Host) SealUnmountedMountpoints() {
	entries, err := os.ReadDir(filepath.Join(h.root, "volumes"))
	if err != nil {
		h.log.Warn("cannot list the mount points to seal them", "error", err.Error())
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || checkName(name) != nil {
			continue
		}
		log := h.log.With("volume", name)
		if id, ok, _ := h.Binding(name); ok {
			log = log.With("volumeId", id)
		}
		h.sealIfUnmounted(log, name)
	}
}

// sealMountpoint makes the directory mp mode 000 and immutable, unless a
// filesystem is mounted on it (errMounted).
func sealMountpoint(log *slog.Logger, mp string) error {
	fd, err := unix.Open(mp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: mp, Err: err}
	}
	defer unix.Close(fd)
	var st, parent unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: mp, Err: err}
	}
	if err := unix.Stat(filepath.Dir(mp), &parent); err != nil {
		return &os.PathError{Op: "stat", Path: filepath.Dir(mp), Err: err}
	}
	if st.Dev != parent.Dev {
		return fmt.Errorf("seal %s: %w", mp, errMounted)
	}
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	supported := !noFlags(err)
	if err != nil && supported {
		return &os.PathError{Op: "FS_IOC_GETFLAGS", Path: mp, Err: err}
	}
	immutable := supported && flags&fsImmutableFL != 0
	if immutable && st.Mode&0o7777 == 0 {
		return nil // sealed already
	}
	if immutable { // a mode to fix first: chmod of an immutable inode fails
		if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags&^fsImmutableFL)); err != nil {
			return &os.PathError{Op: "FS_IOC_SETFLAGS", Path: mp, Err: err}
		}
	}
	if err := unix.Fchmod(fd, 0); err != nil {
		return &os.PathError{Op: "chmod", Path: mp, Err: err}
	}
	if supported {
		err = unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|fsImmutableFL))
		supported = !noFlags(err)
	}
	if !supported {
		log.Warn("the filesystem cannot make the mount point immutable; it is mode 000 only (root in a container could still write into it)",
			"mountpoint", mp)
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "FS_IOC_SETFLAGS", Path: mp, Err: err}
	}
	log.Info("mount point sealed (mode 000, immutable)", "mountpoint", mp)
	return nil
}

// unsealMountpoint clears the immutable flag of mp (the mount point, not a
// filesystem mounted on it), so that it can be removed or renamed.
func unsealMountpoint(mp string) error {
	fd, err := unix.Open(mp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: mp, Err: err}
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if noFlags(err) || (err == nil && flags&fsImmutableFL == 0) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "FS_IOC_GETFLAGS", Path: mp, Err: err}
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags&^fsImmutableFL)); err != nil {
		return &os.PathError{Op: "FS_IOC_SETFLAGS", Path: mp, Err: err}
	}
	return nil
}

// noFlags: the filesystem has no inode flags (FS_IOC_GETFLAGS/SETFLAGS).
func noFlags(err error) bool {
	return errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)
}
