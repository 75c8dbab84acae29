package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tether-ecs/tether/agent/driver"
	"github.com/tether-ecs/tether/agent/fsys"
	"github.com/tether-ecs/tether/agent/hostops"
	"github.com/tether-ecs/tether/agent/plugin"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// DefaultSocket is where dockerd (and the ECS agent) look for the legacy
// plugin named "tether".
const DefaultSocket = "/run/docker/plugins/tether.sock"

func runServe(ctx context.Context, log *slog.Logger, args []string, stdout io.Writer) int {
	c := newCommand("serve", "Answer dockerd as the \"tether\" volume plugin on a unix socket (run by systemd).", stdout, log)
	fs := c.flags
	socket := fs.String("socket", DefaultSocket, "unix socket to serve the plugin on")
	root := fs.String("root", hostops.DefaultRoot, "tether's host state directory")
	mountWait := fs.Duration("mount-wait", driver.DefaultMountWait, "how long a plugin Mount may take in all, waiting for the volume included (at most "+maxMountWait.String()+")")
	grace := fs.Duration("shutdown-grace", plugin.DefaultShutdownGrace, "on SIGTERM, how long calls in flight (waiting Mounts) may go on before they are answered with an error")
	if err := c.parse(args); err != nil {
		return c.fail("bad input", err)
	}
	if *mountWait <= 0 || *mountWait > maxMountWait {
		return c.fail("bad input", badInput{fmt.Errorf("--mount-wait %s: want more than 0 and at most %s (dockerd gives a plugin Mount 2 minutes)", *mountWait, maxMountWait)})
	}
	if *grace < 0 || *grace > maxShutdownGrace {
		return c.fail("bad input", badInput{fmt.Errorf("--shutdown-grace %s: want 0 to %s (the unit's TimeoutStopSec must cover it)", *grace, maxShutdownGrace)})
	}
	if !filepath.IsAbs(*socket) {
		return c.fail("bad input", badInput{fmt.Errorf("--socket %q: want an absolute path", *socket)})
	}
	if err := checkTools(); err != nil {
		return c.fail("serve cannot start", err)
	}
	host, err := newHost(*root, log, nil, defaultLockWait)
	if err != nil {
		return c.fail("serve failed", err)
	}
	host.SealUnmountedMountpoints()
	drv, err := driver.New(driver.Config{Root: host.Root(), Host: host, Logger: log, MountWait: *mountWait})
	if err != nil {
		return c.fail("serve failed", err)
	}
	l, err := listen(*socket)
	if err != nil {
		return c.fail("serve failed", err)
	}
	log.Info("tether-agent serving", "socket", *socket, "root", host.Root(), "version", version, "protocol", agentproto.Protocol)
	// The socket listens (connections queue until Serve accepts them): tell
	// systemd, so ecs.service starts only now.
	if err := sdNotify("READY=1"); err != nil {
		log.Warn("could not notify systemd", "error", err.Error())
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go watchdog(watchCtx, log, *socket)
	err = plugin.Serve(ctx, l, drv, plugin.WithLogger(log), plugin.WithShutdownGrace(*grace))
	_ = sdNotify("STOPPING=1")
	if err != nil {
		return c.fail("serve failed", err)
	}
	log.Info("tether-agent stopped", "socket", *socket)
	return agentproto.ExitOK
}

// maxShutdownGrace keeps the stop within the unit's TimeoutStopSec (45 s),
// with room for the answers to be written.
const maxShutdownGrace = 35 * time.Second

// requiredTools are the programs the agent runs; serve refuses to start
// without them (a host that cannot mount must not advertise the plugin).
var requiredTools = []string{"blkid", "mkfs.ext4", "mkfs.xfs", "e2fsck", "resize2fs", "xfs_growfs", "xfs_repair"}

func checkTools() error {
	var missing []string
	for _, t := range requiredTools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s not on PATH (install e2fsprogs, xfsprogs and util-linux)", fsys.ErrToolMissing, strings.Join(missing, ", "))
	}
	return nil
}

// watchdog pings systemd's watchdog (WATCHDOG_USEC, WatchdogSec= in the
// unit) at half its interval, each time only after the plugin answered a
// Plugin.Activate on its own socket: a wedged server is restarted.
func watchdog(ctx context.Context, log *slog.Logger, socket string) {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return
	}
	every := time.Duration(usec) * time.Microsecond / 2
	log.Info("systemd watchdog on", "every", every.String())
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		askCtx, cancel := context.WithTimeout(ctx, every)
		err := selfActivate(askCtx, socket)
		cancel()
		if err == nil {
			_ = sdNotify("WATCHDOG=1")
		} else if ctx.Err() == nil {
			log.Error("the plugin did not answer on its own socket; not telling the watchdog", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// selfActivate makes dockerd's first call on the plugin's socket.
func selfActivate(ctx context.Context, socket string) error {
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://plugin/Plugin.Activate", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("Plugin.Activate: %s", resp.Status)
	}
	return nil
}

// maxMountWait keeps a plugin Mount's wait under dockerd's 2-minute timeout
// for VolumeDriver.Mount, with room for the answer (see driver.DefaultMountWait).
const maxMountWait = 110 * time.Second

// ErrSocketInUse means another process answers on the plugin socket.
var ErrSocketInUse = errors.New("plugin socket in use")

// listen opens the plugin's unix socket with mode 0660, replacing a stale
// socket left by a process that died, never one that still answers.
func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		conn, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			conn.Close()
			return nil, fmt.Errorf("%w: %s: another process is serving on it", ErrSocketInUse, path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("probe %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	// Create it without group/other bits from the start, then open it to the group.
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// sdNotify sends a state to systemd's notification socket (sd_notify(3)),
// when there is one (Type=notify).
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] == '@' { // abstract namespace
		addr = "\x00" + addr[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}
