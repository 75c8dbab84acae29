// Package hosts runs worldapi.Host on real machines: each Instance is a
// sandbox.Machine (a private mount namespace on this box) with its own
// dockerd, the busybox image, tether-agent serving the Docker volume plugin,
// and loop devices standing in for attached EBS volumes. Tasks are run the
// way the ECS agent runs them: Docker volumes first, then containers with
// the ECS labels; a container's start blocks inside dockerd until the
// volume plugin's Mount returns.
//
// Only mounts are private: instances share the box's network, so
// containers run with host networking (awsvpc, bridge and host task
// definitions alike) or none, and two instances cannot both bind a port.
package hosts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/sandbox"
	"github.com/tether-ecs/tether/test/world/hosts/engine"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Image is an image to load into an instance's dockerd.
type Image struct {
	// Ref names a rootfs tar imported as this reference ("mariadb:10").
	// Empty: Tar is a `docker save` archive that names its own images.
	Ref string
	// Tar is the path of the tar on the box.
	Tar string
}

// Config describes one instance.
type Config struct {
	InstanceID       string // i-...; required
	AvailabilityZone string // ecs.availability-zone; required
	InstanceType     string // ecs.instance-type; default t3.medium
	AMIID            string // ecs.ami-id; omitted when empty

	// AgentBinary is tether-agent on the box. Inside the instance it is
	// /usr/local/bin/tether-agent, where the SSM documents call it (and its
	// directory goes first on the instance's PATH). Empty: the instance
	// runs no agent, as a host without tether installed.
	AgentBinary string
	// AgentArgs are extra arguments to `tether-agent serve`.
	AgentArgs []string
	// AgentReadyTimeout bounds the wait for the plugin socket; default 30s.
	AgentReadyTimeout time.Duration

	// Images are loaded after busybox (always imported as busybox:latest).
	Images []Image
	// Dir is the parent of the instance's directory; default os.TempDir().
	Dir string
	// CacheDir holds the busybox rootfs tar; default ~/.cache/tether.
	CacheDir string
	// Dockerd tunes the instance's dockerd.
	Dockerd sandbox.DockerdOptions
	Logger  *slog.Logger
}

// Instance is one running guest. It implements worldapi.Host.
type Instance struct {
	cfg    Config
	log    *slog.Logger
	m      *sandbox.Machine
	docker *engine.Client
	path   string // PATH inside, for the agent and scripts

	// life ends (cancel) when the instance is killed or closed: task
	// runners stop reporting and give up.
	life   context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	down  bool
	agent *agentProc
	tasks map[string]*task
	wg    sync.WaitGroup // task runners
}

var _ worldapi.Host = (*Instance)(nil)

// Launch starts an instance: machine, dockerd, images, tether-agent. On
// error nothing is left running.
func Launch(ctx context.Context, cfg Config) (*Instance, error) {
	if cfg.InstanceID == "" || cfg.AvailabilityZone == "" {
		return nil, errors.New("hosts: Config.InstanceID and Config.AvailabilityZone are required")
	}
	if cfg.InstanceType == "" {
		cfg.InstanceType = "t3.medium"
	}
	if cfg.AgentReadyTimeout == 0 {
		cfg.AgentReadyTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m, err := sandbox.New(ctx, sandbox.Options{ID: cfg.InstanceID, Dir: cfg.Dir, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	life, cancel := context.WithCancel(context.Background())
	in := &Instance{
		cfg:    cfg,
		log:    cfg.Logger.With("instance", cfg.InstanceID),
		m:      m,
		docker: engine.New(m.Path(sandbox.DockerSocket)),
		path:   "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		life:   life,
		cancel: cancel,
		tasks:  map[string]*task{},
	}
	if cfg.AgentBinary != "" {
		abs, err := filepath.Abs(cfg.AgentBinary)
		if err != nil {
			return nil, errors.Join(err, in.Close())
		}
		in.cfg.AgentBinary = abs
		in.path = filepath.Dir(abs) + ":" + in.path
	}
	if err := in.boot(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("hosts: launch %s: %w", cfg.InstanceID, err), in.Close())
	}
	in.log.Info("instance launched", "az", cfg.AvailabilityZone, "agent", in.cfg.AgentBinary != "")
	return in, nil
}

func (in *Instance) boot(ctx context.Context) error {
	if err := in.m.StartDockerd(ctx, in.cfg.Dockerd); err != nil {
		return err
	}
	busybox, err := sandbox.BusyboxRootfs(ctx, in.cfg.CacheDir)
	if err != nil {
		return err
	}
	if err := in.m.ImportImage(ctx, busybox, "busybox"); err != nil {
		return err
	}
	for _, img := range in.cfg.Images {
		if err := in.loadImage(ctx, img); err != nil {
			return err
		}
	}
	if in.cfg.AgentBinary == "" {
		return nil
	}
	if err := in.installAgent(ctx); err != nil {
		return err
	}
	return in.startAgent(ctx)
}

func (in *Instance) loadImage(ctx context.Context, img Image) error {
	if img.Ref != "" {
		return in.m.ImportImage(ctx, img.Tar, img.Ref)
	}
	f, err := os.Open(img.Tar)
	if err != nil {
		return fmt.Errorf("load image: %w", err)
	}
	defer f.Close()
	if err := in.docker.ImageLoad(ctx, f); err != nil {
		return fmt.Errorf("load image %s: %w", img.Tar, err)
	}
	return nil
}

// InstanceID is the EC2 instance id.
func (in *Instance) InstanceID() string { return in.cfg.InstanceID }

// Machine is the sandbox the instance runs in (for tests and the world's
// diagnostics: paths inside, the docker socket, logs).
func (in *Instance) Machine() *sandbox.Machine { return in.m }

// alive returns ErrHostDown once the instance is killed or closed.
func (in *Instance) alive() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.down {
		return fmt.Errorf("instance %s: %w", in.cfg.InstanceID, worldapi.ErrHostDown)
	}
	return nil
}

// hostDown maps the sandbox's "closed" to the world's "host is down".
func (in *Instance) hostDown(err error) error {
	if errors.Is(err, sandbox.ErrClosed) {
		return fmt.Errorf("instance %s: %w: %w", in.cfg.InstanceID, worldapi.ErrHostDown, err)
	}
	return err
}

// ErrBackingFileName is returned by AttachDevice when the backing file's
// name does not carry the volume id: tether-agent proves a loop device's
// identity by it (as an NVMe serial on EC2), so such a device would never
// be mounted.
var ErrBackingFileName = errors.New("backing file name must contain the volume id")

// AttachDevice makes the volume's backing file a loop device in this
// instance with its NVMe by-id link. The file's name must contain the
// volume id (e.g. .../vol-0abc....img).
func (in *Instance) AttachDevice(ctx context.Context, a worldapi.Attachment) error {
	if err := in.alive(); err != nil {
		return err
	}
	if !backingNamesVolume(a.BackingFile, a.VolumeID) {
		return fmt.Errorf("instance %s: attach %s from %q: %w", in.cfg.InstanceID, a.VolumeID, a.BackingFile, ErrBackingFileName)
	}
	_, err := in.m.AttachLoop(ctx, a.BackingFile, a.VolumeID, a.DeviceName)
	return in.hostDown(err)
}

// DetachDevice removes the device; the error wraps worldapi.ErrDeviceBusy
// while it is mounted (unless force) and sandbox.ErrNotAttached when this
// instance does not hold it.
func (in *Instance) DetachDevice(ctx context.Context, volumeID string, force bool) error {
	if err := in.alive(); err != nil {
		return err
	}
	return in.hostDown(in.m.DetachLoop(ctx, volumeID, force))
}

// Kill ends the instance abruptly: every process dies (no task reports
// follow; ECS learns of the loss on its own), its devices go.
func (in *Instance) Kill() error {
	return in.shutdown(true)
}

// Close tears the instance down: containers are killed, not stopped, and
// no reports follow (StopTask first for a graceful end). Idempotent.
func (in *Instance) Close() error {
	return in.shutdown(false)
}

func (in *Instance) shutdown(abrupt bool) error {
	in.mu.Lock()
	if in.down {
		in.mu.Unlock()
		return nil
	}
	in.down = true
	agent := in.agent
	in.mu.Unlock()
	in.cancel()
	var errs []error
	if !abrupt && agent != nil {
		if err := agent.stop(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if abrupt {
		errs = append(errs, in.m.Kill())
	} else {
		errs = append(errs, in.m.Close())
	}
	if agent != nil {
		agent.reap()
	}
	in.wg.Wait()
	in.docker.Close()
	in.log.Info("instance ended", "abrupt", abrupt)
	return errors.Join(errs...)
}

// backingNamesVolume says whether the file's name holds the volume id as a
// whole word (not as part of a longer id).
func backingNamesVolume(path, volumeID string) bool {
	name := filepath.Base(path)
	for i := strings.Index(name, volumeID); i >= 0; {
		end := i + len(volumeID)
		if (i == 0 || !isIDChar(name[i-1])) && (end == len(name) || !isHex(name[end])) {
			return true
		}
		j := strings.Index(name[i+1:], volumeID)
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

func isHex(c byte) bool    { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }
func isIDChar(c byte) bool { return isHex(c) || c >= 'g' && c <= 'z' || c == '-' }

// archName is the ecs.cpu-architecture value for this box.
func archName() string {
	if runtime.GOARCH == "arm64" {
		return "arm64"
	}
	return "x86_64"
}
