package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-ecs/tether/internal/volspec"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// ByIDDir is where the NVMe by-id links live (private to each machine).
const ByIDDir = "/dev/disk/by-id"

// ErrNotAttached is returned by DetachLoop for a volume this machine does
// not hold.
var ErrNotAttached = errors.New("volume not attached to this machine")

// ErrAlreadyAttached is returned by AttachLoop for a volume this machine
// already holds.
var ErrAlreadyAttached = errors.New("volume already attached to this machine")

type loop struct {
	dev        string // /dev/loopN
	backing    string
	link       string // path of the by-id link inside the machine
	deviceName string // as given (e.g. /dev/xvdf); recorded only
}

// ByIDLink is the link udev makes for an EBS volume on a Nitro instance:
// /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<hex>.
func ByIDLink(volumeID string) string {
	return filepath.Join(ByIDDir, "nvme-Amazon_Elastic_Block_Store_"+strings.Replace(volumeID, "-", "", 1))
}

// AttachLoop makes backingFile a block device for this machine: a loop
// device (direct I/O off, no partition scan) and, inside the machine only,
// the by-id link for volumeID pointing at it. deviceName (the name given to
// EC2's AttachVolume) is recorded but no /dev/xvd* name is made: /dev is
// shared by all machines. It returns the loop device.
func (m *Machine) AttachLoop(ctx context.Context, backingFile, volumeID, deviceName string) (string, error) {
	if err := volspec.ValidateVolumeID(volumeID); err != nil {
		return "", fmt.Errorf("sandbox %s: %w", m.id, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkOpen(); err != nil {
		return "", err
	}
	if _, ok := m.loops[volumeID]; ok {
		return "", fmt.Errorf("sandbox %s: %s: %w", m.id, volumeID, ErrAlreadyAttached)
	}
	if st, err := os.Stat(backingFile); err != nil {
		return "", fmt.Errorf("sandbox %s: backing file for %s: %w", m.id, volumeID, err)
	} else if !st.Mode().IsRegular() {
		return "", fmt.Errorf("sandbox %s: backing file %q for %s is not a regular file", m.id, backingFile, volumeID)
	}
	out, err := exec.CommandContext(ctx, "losetup", "--find", "--show", "--direct-io=off", "--", backingFile).Output()
	if err != nil {
		return "", fmt.Errorf("sandbox %s: losetup %s for %s: %w", m.id, backingFile, volumeID, exitDetail(err))
	}
	dev := strings.TrimSpace(string(out))
	link := ByIDLink(volumeID)
	if err := os.Symlink(dev, m.Path(link)); err != nil {
		return "", errors.Join(fmt.Errorf("sandbox %s: by-id link for %s: %w", m.id, volumeID, err),
			releaseLoop(ctx, dev))
	}
	m.loops[volumeID] = &loop{dev: dev, backing: backingFile, link: link, deviceName: deviceName}
	m.log.Info("volume attached", "volume", volumeID, "device", dev, "link", link, "deviceName", deviceName)
	return dev, nil
}

// LoopDevice is the loop device holding volumeID in this machine, if any.
func (m *Machine) LoopDevice(volumeID string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.loops[volumeID]
	if !ok {
		return "", false
	}
	return l.dev, true
}

// DetachLoop removes volumeID's device from the machine: the by-id link and
// the loop device. While the device is mounted in the machine (or held open
// exclusively anywhere) it returns an error wrapping worldapi.ErrDeviceBusy
// and changes nothing, unless force; a forced detach of a mounted device
// leaves the kernel to drop the loop when the filesystem lets go of it (the
// filesystem stays usable until then, unlike a real force detach).
func (m *Machine) DetachLoop(ctx context.Context, volumeID string, force bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkOpen(); err != nil {
		return err
	}
	l, ok := m.loops[volumeID]
	if !ok {
		return fmt.Errorf("sandbox %s: %s: %w", m.id, volumeID, ErrNotAttached)
	}
	if busy := m.holdersOf(l.dev); busy != "" {
		if !force {
			return fmt.Errorf("sandbox %s: detach %s (%s): %w: %s", m.id, volumeID, l.dev, worldapi.ErrDeviceBusy, busy)
		}
		m.log.Warn("force detaching a busy device", "volume", volumeID, "device", l.dev, "busy", busy)
	}
	if err := os.Remove(m.Path(l.link)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sandbox %s: remove link for %s: %w", m.id, volumeID, err)
	}
	if err := detachLoopDevice(ctx, l.dev); err != nil {
		// Still held: Close will try again.
		return fmt.Errorf("sandbox %s: detach %s (%s): %w", m.id, volumeID, l.dev, err)
	}
	delete(m.loops, volumeID)
	m.log.Info("volume detached", "volume", volumeID, "device", l.dev, "force", force)
	return nil
}

// holdersOf says why dev is busy ("" when it is not): where the machine's
// processes have it mounted, or that someone holds it exclusively (a mount
// in any namespace does).
func (m *Machine) holdersOf(dev string) string {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return ""
	}
	majmin := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	var where []string
	seen := map[string]bool{}
	pids, _ := m.Processes()
	for _, pid := range append([]int{m.pid}, pids...) {
		for _, mp := range mountsOf(pid, majmin) {
			if !seen[mp] {
				seen[mp] = true
				where = append(where, mp)
			}
		}
	}
	if len(where) > 0 {
		return "mounted at " + strings.Join(where, ", ")
	}
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		return "held open exclusively (mounted or claimed)"
	}
	if err == nil {
		unix.Close(fd)
	}
	return ""
}

// mountsOf lists the mount points in pid's namespace of the device
// major:minor (field 3 of mountinfo; field 5 is the mount point).
func mountsOf(pid int, majmin string) []string {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && fields[2] == majmin {
			out = append(out, fields[4])
		}
	}
	return out
}

func detachLoopDevice(ctx context.Context, dev string) error {
	if out, err := exec.CommandContext(ctx, "losetup", "--detach", dev).CombinedOutput(); err != nil {
		return fmt.Errorf("losetup --detach %s: %w: %s", dev, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// releaseLoop detaches dev and waits (bounded) until the kernel has let it
// go: a loop still held by a dying filesystem is only marked autoclear.
func releaseLoop(ctx context.Context, dev string) error {
	if err := detachLoopDevice(ctx, dev); err != nil {
		return err
	}
	backing := filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file")
	const limit = 30 * time.Second
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(backing); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still bound to its backing file %s after detach", dev, limit)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to be released: %w", dev, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// exitDetail adds a failed command's stderr to its error.
func exitDetail(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}
