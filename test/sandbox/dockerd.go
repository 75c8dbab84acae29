package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DockerSocket is dockerd's socket inside every machine (the default path,
// private because /run is).
const DockerSocket = "/run/docker.sock"

// ErrDockerdNotRunning is returned when a call needs the machine's dockerd.
var ErrDockerdNotRunning = errors.New("dockerd is not running")

// DockerdOptions configures the machine's dockerd.
type DockerdOptions struct {
	// Binary is the dockerd to run; default "dockerd" from PATH.
	Binary string
	// StartTimeout bounds the wait for /_ping to answer; default 60s.
	StartTimeout time.Duration
	// StopTimeout bounds the wait after SIGINT before SIGKILL; default 30s
	// (dockerd itself gives containers 15s to stop).
	StopTimeout time.Duration
	// Args are extra flags, appended last.
	Args []string
}

type dockerd struct {
	cmd         *exec.Cmd
	logPath     string
	stopTimeout time.Duration
	exited      chan struct{} // closed when the process has been reaped
	err         error         // Wait's result, valid once exited is closed
}

// StartDockerd starts dockerd inside the machine with its own data root
// (on disk under the machine's directory), vfs storage, no bridge, no
// iptables or ip forwarding changes on the box, an empty config file and
// the default (private) socket, exec root and pidfile. It returns once
// /_ping answers; on failure the daemon's log is in the error and the
// daemon is stopped.
func (m *Machine) StartDockerd(ctx context.Context, o DockerdOptions) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkOpen(); err != nil {
		return err
	}
	if m.dockerd != nil {
		return fmt.Errorf("sandbox %s: dockerd already started", m.id)
	}
	if o.Binary == "" {
		o.Binary = "dockerd"
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 30 * time.Second
	}
	config := filepath.Join(m.dir, "daemon.json")
	if err := os.WriteFile(config, []byte("{}\n"), 0o644); err != nil {
		return fmt.Errorf("sandbox %s: %w", m.id, err)
	}
	logPath := filepath.Join(m.dir, "dockerd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", m.id, err)
	}
	defer logFile.Close() // the child has its own descriptor
	args := []string{
		"--data-root", filepath.Join(m.dir, "docker"),
		"--exec-root", "/run/docker",
		"--pidfile", "/run/docker.pid",
		"--host", "unix://" + DockerSocket,
		"--config-file", config,
		"--storage-driver", "vfs",
		"--bridge", "none",
		"--iptables=false",
		"--ip6tables=false",
		"--ip-forward=false",
		"--ip-masq=false",
		"--userland-proxy=false",
	}
	args = append(args, o.Args...)
	// Not CommandContext: the daemon outlives this call; stop() ends it.
	cmd := m.Command(context.Background(), o.Binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sandbox %s: start dockerd: %w", m.id, err)
	}
	d := &dockerd{cmd: cmd, logPath: logPath, stopTimeout: o.StopTimeout, exited: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.exited)
	}()
	m.dockerd = d
	m.log.Info("dockerd starting", "pid", cmd.Process.Pid, "log", logPath)
	if err := m.waitPing(ctx, d, o.StartTimeout); err != nil {
		stopErr := d.stop(context.Background())
		m.dockerd = nil
		return errors.Join(fmt.Errorf("sandbox %s: dockerd did not start: %w\n--- dockerd log %s ---\n%s",
			m.id, err, logPath, d.logTail()), stopErr)
	}
	m.log.Info("dockerd ready", "pid", cmd.Process.Pid, "socket", m.Path(DockerSocket))
	return nil
}

// waitPing polls /_ping until it answers 200 OK, the process exits, or the
// timeout passes.
func (m *Machine) waitPing(ctx context.Context, d *dockerd, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := m.dockerHTTPClient()
	var last error
	for attempt := 0; ; attempt++ {
		last = ping(ctx, client)
		if last == nil {
			return nil
		}
		if attempt%20 == 0 {
			m.log.Info("waiting for dockerd to answer /_ping", "socket", m.Path(DockerSocket), "last", last.Error())
		}
		select {
		case <-d.exited:
			return fmt.Errorf("dockerd exited: %v", d.err)
		case <-ctx.Done():
			return fmt.Errorf("no answer on /_ping within %s (last: %v): %w", timeout, last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func ping(ctx context.Context, c *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/_ping: %s", resp.Status)
	}
	return nil
}

// dockerHTTPClient talks HTTP to the machine's dockerd socket.
func (m *Machine) dockerHTTPClient() *http.Client {
	sock := m.Path(DockerSocket)
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}
}

// DockerHost is the DOCKER_HOST value that reaches this machine's dockerd
// from the box: unix:///proc/<holder>/root/run/docker.sock. Inside the
// machine the default (unix:///var/run/docker.sock) is right.
func (m *Machine) DockerHost() string { return "unix://" + m.Path(DockerSocket) }

// DockerdPid is the running dockerd's pid, or 0.
func (m *Machine) DockerdPid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dockerd == nil {
		return 0
	}
	return m.dockerd.cmd.Process.Pid
}

// DockerdLog is the path of dockerd's log file on the box.
func (m *Machine) DockerdLog() string { return filepath.Join(m.dir, "dockerd.log") }

// StopDockerd stops the machine's dockerd: SIGINT (dockerd stops its
// containers), then SIGKILL after the stop timeout.
func (m *Machine) StopDockerd(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dockerd == nil {
		return nil
	}
	err := m.dockerd.stop(ctx)
	m.dockerd = nil
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", m.id, err)
	}
	return nil
}

// stop sends SIGINT, waits up to the stop timeout, then SIGKILLs.
func (d *dockerd) stop(ctx context.Context) error {
	select {
	case <-d.exited:
		return nil
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	timer := time.NewTimer(d.stopTimeout)
	defer timer.Stop()
	select {
	case <-d.exited:
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	_ = d.cmd.Process.Kill()
	<-d.exited
	return fmt.Errorf("dockerd pid %d ignored SIGINT for %s; killed", d.cmd.Process.Pid, d.stopTimeout)
}

// reap waits for the (already killed) process to be reaped.
func (d *dockerd) reap() { <-d.exited }

// logTail is the end of the daemon's log, for error messages.
func (d *dockerd) logTail() string {
	const max = 16 << 10
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return "(log unreadable: " + err.Error() + ")"
	}
	if len(b) > max {
		b = append([]byte("...\n"), b[len(b)-max:]...)
	}
	return strings.TrimRight(string(b), "\n")
}
