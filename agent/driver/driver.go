// Package driver is tether's Docker volume driver: what `tether-agent serve`
// answers to dockerd through agent/plugin.
//
// The driver does not create, attach or delete EBS volumes; the reconciler
// does, and runs `tether-agent mount` on the host the task was placed on.
// The driver records what Create was given, hands dockerd the mount point of
// a tether filesystem once one is mounted (waiting, bounded, for the
// reconciler), and unmounts it when the last container using it is gone.
// It never returns a directory that is not a mounted tether filesystem: a
// container must not start on an empty host directory.
package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tether-ecs/tether/agent/plugin"
	"github.com/tether-ecs/tether/internal/volspec"
)

// Defaults for Config.
const (
	// DefaultMountWait bounds how long Mount waits for the reconciler.
	// dockerd gives VolumeDriver.Create and Mount 2 minutes ("longTimeout")
	// and every other call 1 minute ("shortTimeout"), in moby
	// daemon/volume/drivers/proxy.go (the same in 20.10's
	// volume/drivers/proxy.go); after that it drops the call and the user
	// sees a bare timeout. Failures to reach the socket are retried for up
	// to 30 s (pkg/plugins/client.go, defaultTimeOut, backoff 1, 2, 4, 8,
	// 16 s). The ECS agent allows a container 3 minutes to start. 90 s
	// leaves 30 s of dockerd's 2 minutes for the answer to arrive, so the
	// user gets tether's message, not dockerd's timeout.
	DefaultMountWait = 90 * time.Second
	// DefaultPollInterval is how often a waiting Mount looks again.
	DefaultPollInterval = 250 * time.Millisecond
	// progressEvery spaces the log lines of a long wait.
	progressEvery = 10 * time.Second
)

// Errors callers can tell apart with errors.Is.
var (
	ErrNoSuchVolume   = errors.New("no such volume")
	ErrOptionsDiffer  = errors.New("volume exists with other driverOpts")
	ErrInUse          = errors.New("volume in use")
	ErrNotMountedHere = errors.New("volume not mounted on this instance")
)

// Config sets up a Driver.
type Config struct {
	Root         string        // the agent's root, e.g. /var/lib/tether (required)
	Host         Host          // required
	MountWait    time.Duration // default DefaultMountWait
	PollInterval time.Duration // default DefaultPollInterval
	Logger       *slog.Logger  // default slog.Default()
}

// Driver implements plugin.Driver for tether volumes.
type Driver struct {
	root string
	host Host
	wait time.Duration
	poll time.Duration
	log  *slog.Logger
	// started is when this driver began counting Mounts: those answered
	// before (by a previous process) it knows only through adoption.
	started time.Time

	recordsMu sync.Mutex // serialises Create and Remove of records

	mu      sync.Mutex               // guards the maps below
	locks   map[string]chan struct{} // tether name -> in-process lock
	volumes map[string]*volumeState  // tether name -> state (under its lock)
	aliases map[string]string        // task-scoped docker name -> tether name
	pending map[string]int           // tether name -> Mounts in progress
}

var _ plugin.Driver = (*Driver)(nil)

// New returns a driver. It reads nothing yet: who uses a volume is rebuilt
// when it is first touched (or by Restore).
func New(c Config) (*Driver, error) {
	if c.Root == "" || !filepath.IsAbs(c.Root) {
		return nil, fmt.Errorf("driver: root %q must be an absolute path", c.Root)
	}
	if c.Host == nil {
		return nil, errors.New("driver: Host is required")
	}
	if c.MountWait <= 0 {
		c.MountWait = DefaultMountWait
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return &Driver{
		root:    filepath.Clean(c.Root),
		host:    c.Host,
		wait:    c.MountWait,
		poll:    c.PollInterval,
		log:     c.Logger,
		started: time.Now(),
		locks:   map[string]chan struct{}{},
		volumes: map[string]*volumeState{},
		aliases: map[string]string{},
		pending: map[string]int{},
	}, nil
}

// MountPath is where tether mounts the volume NAME: <root>/volumes/NAME.
func (d *Driver) MountPath(name string) string {
	return filepath.Join(d.root, "volumes", name)
}

func validName(name string) error {
	if err := volspec.ValidateName(name); err != nil {
		return fmt.Errorf("tether: %w", err)
	}
	return nil
}

// Create validates the name and driverOpts and records them. The EBS
// volume itself is created by the reconciler when a task needs it, from the
// same options in the task definition. Creating an existing volume with the
// same options (after defaults) succeeds; with other options it fails.
func (d *Driver) Create(_ context.Context, req plugin.CreateRequest) (plugin.CreateResponse, error) {
	if err := validName(req.Name); err != nil {
		return plugin.CreateResponse{}, err
	}
	opts, err := volspec.ParseDriverOpts(req.Opts)
	if err != nil {
		return plugin.CreateResponse{}, fmt.Errorf("tether: volume %q: %w", req.Name, err)
	}
	d.recordsMu.Lock()
	defer d.recordsMu.Unlock()
	old, exists, err := d.readRecord(req.Name)
	if err != nil {
		return plugin.CreateResponse{}, fmt.Errorf("tether: %w", err)
	}
	if exists {
		oldOpts, err := volspec.ParseDriverOpts(old.DriverOpts)
		if err == nil && oldOpts == opts {
			d.log.Info("volume already recorded with the same options", "dockerVolume", req.Name)
			return plugin.CreateResponse{}, nil
		}
		return plugin.CreateResponse{}, fmt.Errorf("tether: volume %q already exists with driverOpts %s, not %s: %w (docker volume rm it first; that keeps the EBS volume)",
			req.Name, formatOpts(old.DriverOpts), formatOpts(req.Opts), ErrOptionsDiffer)
	}
	rec := record{Name: req.Name, DriverOpts: req.Opts, CreatedAt: time.Now().UTC().Truncate(time.Second)}
	if err := d.writeRecord(rec); err != nil {
		return plugin.CreateResponse{}, fmt.Errorf("tether: volume %q: recording it: %w", req.Name, err)
	}
	d.log.Info("volume recorded", "dockerVolume", req.Name, "driverOpts", req.Opts,
		"sizeGiB", opts.SizeGiB, "volumeType", opts.VolumeType)
	return plugin.CreateResponse{}, nil
}

// Remove forgets a volume's record. It never deletes the EBS volume or its
// data (the reconciler owns those), and refuses while the volume is in use
// or mounted on this host.
func (d *Driver) Remove(ctx context.Context, req plugin.RemoveRequest) (plugin.RemoveResponse, error) {
	if err := validName(req.Name); err != nil {
		return plugin.RemoveResponse{}, err
	}
	name, _ := d.cachedTetherName(req.Name)
	if name == "" {
		name = req.Name
	}
	unlock, err := d.lockVolume(ctx, name)
	if err != nil {
		return plugin.RemoveResponse{}, fmt.Errorf("tether: %w", err)
	}
	defer unlock()
	d.mu.Lock()
	st := d.volumes[name]
	d.mu.Unlock()
	if st != nil && st.total() > 0 {
		return plugin.RemoveResponse{}, fmt.Errorf("tether: volume %q: %w by %d container mount(s); docker volume rm only forgets tether's record and never deletes the EBS volume or its data",
			req.Name, ErrInUse, st.total())
	}
	if _, mounted, err := d.host.IsMounted(name); err != nil {
		return plugin.RemoveResponse{}, fmt.Errorf("tether: volume %q: reading the mount table: %w", name, err)
	} else if mounted {
		return plugin.RemoveResponse{}, fmt.Errorf("tether: volume %q: %w: mounted at %s on this instance (tether unmounts it when no task needs it); docker volume rm only forgets tether's record and never deletes the EBS volume or its data",
			req.Name, ErrInUse, d.MountPath(name))
	}
	d.recordsMu.Lock()
	defer d.recordsMu.Unlock()
	if err := d.removeRecord(req.Name); err != nil {
		return plugin.RemoveResponse{}, fmt.Errorf("tether: volume %q: removing its record: %w", req.Name, err)
	}
	d.mu.Lock()
	delete(d.aliases, req.Name)
	d.mu.Unlock()
	d.log.Info("volume record removed; the EBS volume and its data are kept", "dockerVolume", req.Name, "volume", name)
	return plugin.RemoveResponse{}, nil
}

// Path is the mount point while the volume is mounted here, else empty.
func (d *Driver) Path(_ context.Context, req plugin.PathRequest) (plugin.PathResponse, error) {
	if err := validName(req.Name); err != nil {
		return plugin.PathResponse{}, err
	}
	mp, _, err := d.mountpoint(req.Name)
	if err != nil {
		return plugin.PathResponse{}, err
	}
	return plugin.PathResponse{Mountpoint: mp}, nil
}

// Get describes a recorded volume.
func (d *Driver) Get(_ context.Context, req plugin.GetRequest) (plugin.GetResponse, error) {
	if err := validName(req.Name); err != nil {
		return plugin.GetResponse{}, err
	}
	rec, ok, err := d.readRecord(req.Name)
	if err != nil {
		return plugin.GetResponse{}, fmt.Errorf("tether: %w", err)
	}
	if !ok {
		return plugin.GetResponse{}, fmt.Errorf("tether: volume %q: %w", req.Name, ErrNoSuchVolume)
	}
	v, err := d.describe(rec)
	if err != nil {
		return plugin.GetResponse{}, err
	}
	return plugin.GetResponse{Volume: v}, nil
}

// List describes every recorded volume.
func (d *Driver) List(context.Context, plugin.ListRequest) (plugin.ListResponse, error) {
	recs, err := d.listRecords()
	if err != nil {
		return plugin.ListResponse{}, fmt.Errorf("tether: listing volumes: %w", err)
	}
	out := make([]*plugin.Volume, 0, len(recs))
	for _, rec := range recs {
		v, err := d.describe(rec)
		if err != nil {
			return plugin.ListResponse{}, err
		}
		out = append(out, v)
	}
	return plugin.ListResponse{Volumes: out}, nil
}

// Capabilities: a tether volume is the same EBS volume wherever the task runs.
func (d *Driver) Capabilities(context.Context, plugin.CapabilitiesRequest) (plugin.CapabilitiesResponse, error) {
	return plugin.CapabilitiesResponse{Capabilities: plugin.Capability{Scope: plugin.ScopeGlobal}}, nil
}

// mountpoint maps a Docker name (without asking dockerd) and reports where
// it is mounted, if it is.
func (d *Driver) mountpoint(dockerName string) (path, name string, err error) {
	name, ok := d.cachedTetherName(dockerName)
	if !ok {
		name = dockerName
	}
	_, mounted, err := d.host.IsMounted(name)
	if err != nil {
		return "", name, fmt.Errorf("tether: volume %q: reading the mount table: %w", name, err)
	}
	if !mounted {
		return "", name, nil
	}
	return d.MountPath(name), name, nil
}

func (d *Driver) describe(rec record) (*plugin.Volume, error) {
	mp, name, err := d.mountpoint(rec.Name)
	if err != nil {
		return nil, err
	}
	status := map[string]any{"mounted": mp != ""}
	if name != rec.Name {
		status["tetherVolume"] = name
	}
	if id, ok, err := d.host.Binding(name); err != nil {
		return nil, fmt.Errorf("tether: volume %q: reading its binding: %w", name, err)
	} else if ok {
		status["volumeId"] = id
	}
	if len(rec.DriverOpts) > 0 {
		status["driverOpts"] = rec.DriverOpts
	}
	v := &plugin.Volume{Name: rec.Name, Mountpoint: mp, Status: status}
	if !rec.CreatedAt.IsZero() {
		v.CreatedAt = rec.CreatedAt.Format(time.RFC3339)
	}
	return v, nil
}

func formatOpts(opts map[string]string) string {
	if len(opts) == 0 {
		return "{} (defaults)"
	}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + opts[k]
	}
	return "{" + strings.Join(parts, " ") + "}"
}
