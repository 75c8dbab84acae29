package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tether-ecs/tether/agent/driver"
	"github.com/tether-ecs/tether/agent/hostops"
	"github.com/tether-ecs/tether/agent/plugin"
)

// DefaultSocket is where dockerd (and the ECS agent) look for the legacy
// plugin named "tether".
const DefaultSocket = "/run/docker/plugins/tether.sock"

func runServe(ctx context.Context, log *slog.Logger, args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	socket := fs.String("socket", DefaultSocket, "unix socket to serve the plugin on")
	root := fs.String("root", hostops.DefaultRoot, "tether's host state directory")
	mountWait := fs.Duration("mount-wait", driver.DefaultMountWait, "how long a plugin Mount waits for the volume to be attached and mounted (at most "+maxMountWait.String()+")")
	if err := parse(fs, args); err != nil {
		return fail(log, "bad input", err)
	}
	if *mountWait <= 0 || *mountWait > maxMountWait {
		return fail(log, "bad input", badInput{fmt.Errorf("--mount-wait %s: want more than 0 and at most %s (dockerd gives a plugin Mount 2 minutes)", *mountWait, maxMountWait)})
	}
	if !filepath.IsAbs(*socket) {
		return fail(log, "bad input", badInput{fmt.Errorf("--socket %q: want an absolute path", *socket)})
	}
	host, err := newHost(*root, log, nil)
	if err != nil {
		return fail(log, "serve failed", err)
	}
	host.SealUnmountedMountpoints()
	drv, err := driver.New(driver.Config{Root: host.Root(), Host: host, Logger: log, MountWait: *mountWait})
	if err != nil {
		return fail(log, "serve failed", err)
	}
	l, err := listen(*socket)
	if err != nil {
		return fail(log, "serve failed", err)
	}
	log.Info("tether-agent serving", "socket", *socket, "root", host.Root())
	// The socket listens (connections queue until Serve accepts them): tell
	// systemd, so ecs.service starts only now.
	if err := sdNotify("READY=1"); err != nil {
		log.Warn("could not notify systemd", "error", err.Error())
	}
	err = plugin.Serve(ctx, l, drv, plugin.WithLogger(log))
	_ = sdNotify("STOPPING=1")
	if err != nil {
		return fail(log, "serve failed", err)
	}
	log.Info("tether-agent stopped", "socket", *socket)
	return exitOK
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
