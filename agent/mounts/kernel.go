package mounts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// The kernel's view of a block device, whoever holds it: what "unmounted"
// means for tether. A mount in the caller's namespace is only one of the
// ways a filesystem stays alive: another mount namespace (a container's,
// one a process unshared while the volume was mounted, a lazy unmount's
// leftovers still open) keeps it mounted and writable, and a device-mapper
// or md device stacked on it holds the device itself.

// NamespaceMount is a mount of a device in some mount namespace of the
// host, with one process that lives in that namespace.
type NamespaceMount struct {
	Namespace   string // e.g. mnt:[4026532301]
	Mountpoint  string // as that namespace sees it
	PID         int
	Command     string // the process's comm
	ContainerID string // from the process's cgroup, when it runs in a container
}

// procDir is /proc; tests do not change it.
const procDir = "/proc"

// MountsInEveryNamespace finds every mount of dev in every mount namespace
// of the host: it reads /proc/<pid>/mountinfo of one process per namespace
// (namespaces deduplicated by their /proc/<pid>/ns/mnt link). A process
// that exits meanwhile is skipped. The caller's namespace is included.
func MountsInEveryNamespace(dev DevNumber) ([]NamespaceMount, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	seen := map[string]bool{}
	var out []NamespaceMount
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		ns, err := os.Readlink(filepath.Join(procDir, e.Name(), "ns", "mnt"))
		if err != nil || seen[ns] {
			continue // gone, or a kernel thread, or a namespace read already
		}
		f, err := os.Open(filepath.Join(procDir, e.Name(), "mountinfo"))
		if err != nil {
			continue
		}
		infos, err := mountinfo.GetMountsFromReader(f, func(info *mountinfo.Info) (skip, stop bool) {
			return uint32(info.Major) != dev.Major || uint32(info.Minor) != dev.Minor, false
		})
		f.Close()
		if err != nil {
			continue // the process exited while we read
		}
		seen[ns] = true
		for _, info := range infos {
			out = append(out, NamespaceMount{Namespace: ns, Mountpoint: info.Mountpoint, PID: pid,
				Command: Comm(pid), ContainerID: ContainerOf(pid)})
		}
	}
	return out, nil
}

// Comm is a process's command name, "" if it is gone.
func Comm(pid int) string {
	b, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "comm"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// containerIDPattern: a container id as runtimes put it in cgroup paths
// (docker-<id>.scope under systemd, /docker/<id> under cgroupfs, containerd
// and ECS's /ecs/<task>/<id>).
var containerIDPattern = regexp.MustCompile(`[0-9a-f]{64}`)

// ContainerOf is the container id in a process's cgroup path, "" if none.
func ContainerOf(pid int) string {
	b, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return ""
	}
	ids := containerIDPattern.FindAllString(string(b), -1)
	if len(ids) == 0 {
		return ""
	}
	return ids[len(ids)-1] // the innermost
}

// StackedHolders lists the devices the kernel stacked on dev
// (/sys/dev/block/MAJ:MIN/holders: device-mapper, md), sorted.
func StackedHolders(dev DevNumber) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join("/sys/dev/block", dev.String(), "holders"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // the device went away: nothing holds it
	}
	if err != nil {
		return nil, fmt.Errorf("holders of %s: %w", dev, err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out, nil
}

// ErrHeldExclusively marks a device some opener holds with O_EXCL (a
// mounted filesystem anywhere, mkfs, fsck, a stacked device).
var ErrHeldExclusively = errors.New("device held exclusively")

// OpenExclusive tries an O_EXCL open of the block device dev, the kernel's
// own answer to "does anything still hold it": a filesystem mounted in any
// namespace, even lazily detached, holds it. It returns nil when the open
// succeeded (and closes it), ErrHeldExclusively (wrapped) on EBUSY.
func OpenExclusive(dev string) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("%w: %s: %w", ErrHeldExclusively, dev, err)
	}
	if err != nil {
		return &os.PathError{Op: "open O_EXCL", Path: dev, Err: err}
	}
	return unix.Close(fd)
}

// OpenedBy lists the processes that have dev (device number) open: who
// holds a device O_EXCL when no mount explains it. A process that exits
// meanwhile is skipped.
func OpenedBy(dev DevNumber) []NamespaceMount {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil
	}
	var out []NamespaceMount
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		fdDir := filepath.Join(procDir, e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			var st unix.Stat_t
			if unix.Stat(filepath.Join(fdDir, fd.Name()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
				continue
			}
			if unix.Major(st.Rdev) == dev.Major && unix.Minor(st.Rdev) == dev.Minor {
				out = append(out, NamespaceMount{PID: pid, Command: Comm(pid), ContainerID: ContainerOf(pid)})
				break
			}
		}
	}
	return out
}

// DevicePath is /dev/<name> of a device number, from sysfs.
func DevicePath(dev DevNumber) (string, error) {
	link, err := os.Readlink(filepath.Join("/sys/dev/block", dev.String()))
	if err != nil {
		return "", fmt.Errorf("device %s: %w", dev, err)
	}
	return filepath.Join("/dev", filepath.Base(link)), nil
}

// OpenUnder lists the processes whose working directory, root or open
// files are dir or below it (in the caller's view of paths): why the
// kernel refuses to unmount it.
func OpenUnder(dir string) []NamespaceMount {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil
	}
	dir = filepath.Clean(dir)
	under := func(p string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	var out []NamespaceMount
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		base := filepath.Join(procDir, e.Name())
		hit := false
		for _, l := range []string{"cwd", "root"} {
			if p, err := os.Readlink(filepath.Join(base, l)); err == nil && under(p) {
				hit = true
			}
		}
		if !hit {
			fds, _ := os.ReadDir(filepath.Join(base, "fd"))
			for _, fd := range fds {
				if p, err := os.Readlink(filepath.Join(base, "fd", fd.Name())); err == nil && under(p) {
					hit = true
					break
				}
			}
		}
		if hit {
			out = append(out, NamespaceMount{PID: pid, Command: Comm(pid), ContainerID: ContainerOf(pid)})
		}
	}
	return out
}
