// Package hostops is what tether-agent does to its host: mount a volume's
// device under <root>/volumes/NAME (formatting it only when blank), unmount
// and flush it, report every tether volume, and answer the volume driver's
// questions (agent/driver's Host interface) about mounts, bindings and the
// containers that use a volume.
//
// Host layout (docs/contracts.md): <root>/volumes/NAME mount points,
// <root>/bindings/NAME the volume last mounted under NAME (its id, mount
// generation, release marker, attachment), <root>/locks/NAME and
// <root>/volume-locks/VOLUME-ID the flocks shared by serve, mount and
// unmount (per name, then per volume id).
package hostops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-ecs/tether/agent/blockdev"
	"github.com/tether-ecs/tether/agent/dockerapi"
	"github.com/tether-ecs/tether/agent/driver"
	"github.com/tether-ecs/tether/agent/fsys"
	"github.com/tether-ecs/tether/agent/mounts"
	"github.com/tether-ecs/tether/internal/volspec"
)

// DefaultRoot is where tether keeps its host state.
const DefaultRoot = "/var/lib/tether"

// Containers is the part of the Docker API hostops uses.
type Containers interface {
	ListContainers(ctx context.Context, o dockerapi.ListOptions) ([]dockerapi.Container, error)
}

// DefaultLockWait bounds how long the mount and unmount commands wait for
// a volume's locks when their caller does not say (the commands' --lock-wait
// defaults fit inside the SSM documents' timeouts instead). It runs out as
// ErrLockTimeout: retryable.
const DefaultLockWait = 60 * time.Second

// Config is what a Host needs.
type Config struct {
	Root   string          // DefaultRoot unless moved
	Finder blockdev.Finder // blockdev.Host() on a real host
	Runner fsys.Runner     // fsys.ExecRunner{} on a real host
	// Inspector reads devices for the blank proof and the ext state;
	// default fsys.Disk{}.
	Inspector fsys.Inspector
	Docker    Containers
	// Plugin is asked who holds a volume before the unmount command
	// unmounts it; nil (or not answering) means dockerd alone decides.
	Plugin PluginHolders
	Logger *slog.Logger
	// LockWait bounds MountVolume's and UnmountVolume's wait for the
	// volume's lock; default DefaultLockWait.
	LockWait time.Duration
}

// Host carries out tether's work on this machine. Its methods are safe for
// concurrent use; two operations on one volume serialise on its lock.
type Host struct {
	root      string
	finder    blockdev.Finder
	runner    fsys.Runner
	inspector fsys.Inspector
	docker    Containers
	plugin    PluginHolders
	log       *slog.Logger
	lockWait  time.Duration
}

var _ driver.Host = (*Host)(nil)

// New prepares the host layout under cfg.Root (directories 0700) and
// returns a Host.
func New(cfg Config) (*Host, error) {
	if cfg.Root == "" {
		cfg.Root = DefaultRoot
	}
	if cfg.Runner == nil || cfg.Docker == nil || cfg.Logger == nil {
		return nil, errors.New("hostops: Config needs Runner, Docker and Logger")
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, err
	}
	for _, dir := range []string{root, filepath.Join(root, "volumes"), filepath.Join(root, "bindings"), filepath.Join(root, "locks"), filepath.Join(root, "volume-locks")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("hostops: %w", err)
		}
	}
	// The kernel's mount table shows resolved paths.
	if root, err = filepath.EvalSymlinks(root); err != nil {
		return nil, fmt.Errorf("hostops: %w", err)
	}
	if cfg.LockWait <= 0 {
		cfg.LockWait = DefaultLockWait
	}
	if cfg.Inspector == nil {
		cfg.Inspector = fsys.Disk{}
	}
	return &Host{root: root, finder: cfg.Finder, runner: cfg.Runner, inspector: cfg.Inspector, docker: cfg.Docker, plugin: cfg.Plugin, log: cfg.Logger, lockWait: cfg.LockWait}, nil
}

// Root is the resolved root directory.
func (h *Host) Root() string { return h.root }

// Mountpoint is where NAME is mounted.
func (h *Host) Mountpoint(name string) string { return filepath.Join(h.root, "volumes", name) }

func (h *Host) bindingPath(name string) string { return filepath.Join(h.root, "bindings", name) }
func (h *Host) lockPath(name string) string    { return filepath.Join(h.root, "locks", name) }
func (h *Host) volumeLockPath(volumeID string) string {
	return filepath.Join(h.root, "volume-locks", volumeID)
}

// ErrBadInput marks an invalid name or id reaching the Host.
var ErrBadInput = errors.New("bad input")

// ErrLockTimeout marks a command that gave up waiting for a volume's lock
// within its bound (another mount, unmount or plugin Mount held it):
// retryable.
var ErrLockTimeout = errors.New("volume lock still held")

func checkName(name string) error {
	if err := volspec.ValidateName(name); err != nil {
		return fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	return nil
}

// lockVolume takes NAME's lock, then the volume id's (always in that
// order), for a command: the wait is bounded by the Host's LockWait and runs
// out as ErrLockTimeout.
func (h *Host) lockVolume(ctx context.Context, name, volumeID string) (func(), error) {
	ctx, cancel := context.WithTimeout(ctx, h.lockWait)
	defer cancel()
	unlockName, err := h.Lock(ctx, name)
	if err != nil {
		return nil, h.lockError(err)
	}
	unlockID, err := h.lockFile(ctx, h.volumeLockPath(volumeID), volumeID)
	if err != nil {
		unlockName()
		return nil, h.lockError(err)
	}
	return func() { unlockID(); unlockName() }, nil
}

func (h *Host) lockError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (waited --lock-wait %s): %w", ErrLockTimeout, h.lockWait, err)
	}
	return err
}

// Lock takes the per-volume lock <root>/locks/NAME (flock) until unlock is
// called, waiting at most until ctx ends. Locks are per open file, so two
// Locks of one name conflict inside one process too.
func (h *Host) Lock(ctx context.Context, name string) (func(), error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	return h.lockFile(ctx, h.lockPath(name), name)
}

// lockVolumeID takes the lock of one EBS volume id (held after NAME's):
// two names for one volume never mount or unmount it at once.
func (h *Host) lockVolumeID(ctx context.Context, volumeID string) (func(), error) {
	if err := volspec.ValidateVolumeID(volumeID); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	return h.lockFile(ctx, h.volumeLockPath(volumeID), volumeID)
}

func (h *Host) lockFile(ctx context.Context, path, what string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", what, err)
	}
	start := time.Now()
	logged := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", what, err)
		}
		if !logged {
			h.log.Info("waiting for a lock (another tether-agent works on the volume)", "lock", f.Name())
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: waited %s for %s: %w", what, time.Since(start).Round(time.Millisecond), f.Name(), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// IsMounted reports whether a filesystem is mounted at <root>/volumes/NAME
// and from which device.
func (h *Host) IsMounted(name string) (string, bool, error) {
	if err := checkName(name); err != nil {
		return "", false, err
	}
	e, ok, err := mounts.At(h.Mountpoint(name))
	if err != nil || !ok {
		return "", false, err
	}
	return e.Source, true, nil
}

// ErrWrongDevice marks a mount point on which something other than the
// bound volume's device is mounted.
var ErrWrongDevice = fmt.Errorf("%w: another device is mounted at the volume's mount point", ErrConflict)

// MountedVolume reports whether NAME's bound volume is what is mounted at
// <root>/volumes/NAME: the mount's device number must be the bound
// volume's device's, not merely "something mounted" (driver.Host).
func (h *Host) MountedVolume(name string) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	e, mounted, err := mounts.At(h.Mountpoint(name))
	if err != nil || !mounted {
		return false, err
	}
	b, ok, err := h.readBinding(name)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, fmt.Errorf("%w: %s is mounted from %s (%s) but no volume is bound to %s", ErrWrongDevice, h.Mountpoint(name), e.Source, e.Dev, name)
	}
	dev, err := h.finder.Find(h.log.With("volume", name, "volumeId", b.VolumeID), b.VolumeID, "")
	if err != nil {
		return false, fmt.Errorf("%w: %s is mounted from %s (%s), and the device of the bound volume %s is not here: %w", ErrWrongDevice, h.Mountpoint(name), e.Source, e.Dev, b.VolumeID, err)
	}
	num, err := mounts.DeviceNumber(dev.Path)
	if err != nil {
		return false, err
	}
	if num != e.Dev {
		return false, fmt.Errorf("%w: %s is mounted from %s (%s), not from %s's device %s (%s)", ErrWrongDevice, h.Mountpoint(name), e.Source, e.Dev, b.VolumeID, dev.Path, num)
	}
	return true, nil
}

// binding is what <root>/bindings/NAME records: the volume last mounted
// under NAME and what the mount command said of it. It is written (under
// the volume's locks) before each mount, and by the unmount command.
type binding struct {
	VolumeID string `json:"volumeId"`
	// Generation counts the mounts of NAME on this host (each mount that
	// was not already in place adds one).
	Generation int64 `json:"generation"`
	// Released: the unmount command unmounted it (the kernel agreed); the
	// plugin does not mount it again by itself until a mount command.
	Released bool `json:"released,omitempty"`
	// Attachment is the last mount or unmount command's --attachment.
	Attachment string `json:"attachment,omitempty"`
	// DevSuid: mounted without nosuid,nodev (the volume's driverOpt).
	DevSuid bool `json:"devSuid,omitempty"`
}

// Binding is the EBS volume id last mounted under NAME (driver.Host).
func (h *Host) Binding(name string) (string, bool, error) {
	b, ok, err := h.readBinding(name)
	return b.VolumeID, ok, err
}

// readBinding reads <root>/bindings/NAME: JSON, or a bare volume id as
// agents before mount generations wrote it.
func (h *Host) readBinding(name string) (binding, bool, error) {
	if err := checkName(name); err != nil {
		return binding{}, false, err
	}
	raw, err := os.ReadFile(h.bindingPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return binding{}, false, nil
	}
	if err != nil {
		return binding{}, false, fmt.Errorf("binding of %s: %w", name, err)
	}
	var b binding
	text := strings.TrimSpace(string(raw))
	if strings.HasPrefix(text, "{") {
		if err := json.Unmarshal([]byte(text), &b); err != nil {
			return binding{}, false, fmt.Errorf("binding of %s (%s): %w", name, h.bindingPath(name), err)
		}
	} else {
		b.VolumeID = text
	}
	if err := volspec.ValidateVolumeID(b.VolumeID); err != nil {
		return binding{}, false, fmt.Errorf("binding of %s (%s): %w", name, h.bindingPath(name), err)
	}
	return b, true, nil
}

// writeBinding records b under NAME atomically and durably (a crash leaves
// the old binding or the new one).
func (h *Host) writeBinding(name string, b binding) error {
	path := h.bindingPath(name)
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+name+".tmp") // never a valid volume name
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write binding of %s: %w", name, err)
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write binding of %s: %w", name, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
