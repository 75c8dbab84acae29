// Package hostops is what tether-agent does to its host: mount a volume's
// device under <root>/volumes/NAME (formatting it only when blank), unmount
// and flush it, report every tether volume, and answer the volume driver's
// questions (agent/driver's Host interface) about mounts, bindings and the
// containers that use a volume.
//
// Host layout (docs/contracts.md): <root>/volumes/NAME mount points,
// <root>/bindings/NAME the volume id last mounted under NAME,
// <root>/locks/NAME the per-volume flock shared by serve, mount and unmount.
package hostops

import (
	"context"
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
// a volume's lock (held for seconds at most: a mkfs, an fsck before a grow,
// one attempt of the plugin).
const DefaultLockWait = 2 * time.Minute

// Config is what a Host needs.
type Config struct {
	Root   string          // DefaultRoot unless moved
	Finder blockdev.Finder // blockdev.Host() on a real host
	Runner fsys.Runner     // fsys.ExecRunner{} on a real host
	Docker Containers
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
	root     string
	finder   blockdev.Finder
	runner   fsys.Runner
	docker   Containers
	plugin   PluginHolders
	log      *slog.Logger
	lockWait time.Duration
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
	for _, dir := range []string{root, filepath.Join(root, "volumes"), filepath.Join(root, "bindings"), filepath.Join(root, "locks")} {
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
	return &Host{root: root, finder: cfg.Finder, runner: cfg.Runner, docker: cfg.Docker, plugin: cfg.Plugin, log: cfg.Logger, lockWait: cfg.LockWait}, nil
}

// Root is the resolved root directory.
func (h *Host) Root() string { return h.root }

// Mountpoint is where NAME is mounted.
func (h *Host) Mountpoint(name string) string { return filepath.Join(h.root, "volumes", name) }

func (h *Host) bindingPath(name string) string { return filepath.Join(h.root, "bindings", name) }
func (h *Host) lockPath(name string) string    { return filepath.Join(h.root, "locks", name) }

// ErrBadInput marks an invalid name or id reaching the Host.
var ErrBadInput = errors.New("bad input")

func checkName(name string) error {
	if err := volspec.ValidateName(name); err != nil {
		return fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	return nil
}

// lockBounded is Lock for the commands: bounded by the Host's LockWait.
func (h *Host) lockBounded(ctx context.Context, name string) (func(), error) {
	ctx, cancel := context.WithTimeout(ctx, h.lockWait)
	defer cancel()
	return h.Lock(ctx, name)
}

// Lock takes the per-volume lock <root>/locks/NAME (flock) until unlock is
// called, waiting at most until ctx ends. Locks are per open file, so two
// Locks of one name conflict inside one process too.
func (h *Host) Lock(ctx context.Context, name string) (func(), error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(h.lockPath(name), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
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
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		if !logged {
			h.log.Info("waiting for the volume's lock (another tether-agent works on it)", "volume", name, "lock", f.Name())
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: waited %s for %s: %w", name, time.Since(start).Round(time.Millisecond), f.Name(), ctx.Err())
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

// Binding is the EBS volume id last mounted under NAME.
func (h *Host) Binding(name string) (string, bool, error) {
	if err := checkName(name); err != nil {
		return "", false, err
	}
	b, err := os.ReadFile(h.bindingPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("binding of %s: %w", name, err)
	}
	id := strings.TrimSpace(string(b))
	if err := volspec.ValidateVolumeID(id); err != nil {
		return "", false, fmt.Errorf("binding of %s (%s): %w", name, h.bindingPath(name), err)
	}
	return id, true, nil
}

// writeBinding records volumeID under NAME atomically.
func (h *Host) writeBinding(name, volumeID string) error {
	path := h.bindingPath(name)
	tmp := filepath.Join(filepath.Dir(path), "."+name+".tmp") // never a valid volume name
	if err := os.WriteFile(tmp, []byte(volumeID+"\n"), 0o600); err != nil {
		return fmt.Errorf("write binding of %s: %w", name, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write binding of %s: %w", name, err)
	}
	return nil
}
