package hosts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// PluginSocket is where tether-agent serve listens inside an instance.
const PluginSocket = "/run/docker/plugins/tether.sock"

// agentProc is one run of `tether-agent serve`, as systemd would run it.
type agentProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // valid once exited is closed
}

// AgentLog is the path on the box of tether-agent's log (stderr, JSON).
func (in *Instance) AgentLog() string { return filepath.Join(in.m.Dir(), "tether-agent.log") }

func (in *Instance) startAgent(ctx context.Context) error {
	logFile, err := os.OpenFile(in.AgentLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	args := append([]string{"serve"}, in.cfg.AgentArgs...)
	cmd := in.m.Command(context.Background(), AgentPath, args...)
	cmd.Env = in.env()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start tether-agent: %w", err)
	}
	a := &agentProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		a.err = cmd.Wait()
		close(a.exited)
	}()
	in.mu.Lock()
	in.agent = a
	in.mu.Unlock()
	in.log.Info("tether-agent starting", "pid", cmd.Process.Pid, "log", in.AgentLog())

	ctx, cancel := context.WithTimeout(ctx, in.cfg.AgentReadyTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err := activate(ctx, in.m.Path(PluginSocket))
		if err == nil {
			in.log.Info("tether-agent serving", "pid", cmd.Process.Pid, "socket", PluginSocket)
			return nil
		}
		if attempt%20 == 0 {
			in.log.Info("waiting for tether-agent to answer Plugin.Activate", "socket", PluginSocket, "last", err.Error())
		}
		select {
		case <-a.exited:
			return fmt.Errorf("tether-agent exited: %v\n--- %s ---\n%s", a.err, in.AgentLog(), tail(in.AgentLog()))
		case <-ctx.Done():
			return fmt.Errorf("tether-agent did not answer on %s within %s (last: %v)\n--- %s ---\n%s",
				PluginSocket, in.cfg.AgentReadyTimeout, err, in.AgentLog(), tail(in.AgentLog()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, then SIGKILL after timeout.
func (a *agentProc) stop(timeout time.Duration) error {
	select {
	case <-a.exited:
		return nil
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
		return nil
	case <-time.After(timeout):
	}
	_ = a.cmd.Process.Kill()
	<-a.exited
	return fmt.Errorf("tether-agent pid %d ignored SIGTERM for %s; killed", a.cmd.Process.Pid, timeout)
}

func (a *agentProc) reap() { <-a.exited }

// RestartAgent restarts `tether-agent serve` as systemd would: SIGTERM,
// SIGKILL after 10s, start again, wait for the plugin socket. It starts the
// agent if it is not running (exited or stopped).
func (in *Instance) RestartAgent(ctx context.Context) error {
	if err := in.alive(); err != nil {
		return err
	}
	if in.cfg.AgentBinary == "" {
		return fmt.Errorf("instance %s: no tether-agent configured", in.cfg.InstanceID)
	}
	in.mu.Lock()
	old := in.agent
	in.agent = nil
	in.mu.Unlock()
	if old != nil {
		if err := old.stop(10 * time.Second); err != nil {
			in.log.Warn("tether-agent stop", "err", err)
		}
	}
	if err := in.startAgent(ctx); err != nil {
		return fmt.Errorf("instance %s: restart tether-agent: %w", in.cfg.InstanceID, err)
	}
	return nil
}

// StopAgent stops tether-agent serve (SIGTERM, SIGKILL after 10s) and
// leaves it stopped, as `systemctl stop` would; RestartAgent brings it back.
func (in *Instance) StopAgent() error {
	in.mu.Lock()
	a := in.agent
	in.agent = nil
	in.mu.Unlock()
	if a == nil {
		return nil
	}
	return a.stop(10 * time.Second)
}

// AgentPath is where tether-agent is installed inside an instance, as on a
// real host (README's install line); the SSM documents call it there.
const AgentPath = "/usr/local/bin/tether-agent"

// installAgent makes the agent binary /usr/local/bin/tether-agent inside
// the instance only: a read-only overlay of the box's /usr/local/bin with a
// layer holding the agent on top, mounted in the instance's namespace (the
// box's own /usr/local/bin, and the other instances', stay as they are).
func (in *Instance) installAgent(ctx context.Context) error {
	layer := filepath.Join(in.m.Dir(), "usr-local-bin")
	if err := os.MkdirAll(layer, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(in.cfg.AgentBinary, filepath.Join(layer, filepath.Base(AgentPath))); err != nil {
		return fmt.Errorf("install tether-agent: %w", err)
	}
	dir := filepath.Dir(AgentPath)
	out, err := in.m.Command(ctx, "mount", "-t", "overlay", "overlay", "-o", "lowerdir="+layer+":"+dir, dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("install tether-agent as %s: mount overlay: %w: %s", AgentPath, err, bytes.TrimSpace(out))
	}
	in.log.Info("tether-agent installed", "path", AgentPath, "binary", in.cfg.AgentBinary)
	return nil
}

// env is the environment of programs the instance runs for us. The
// instance's loop devices stand for EBS volumes: the agent accepts them
// only with TETHER_LOOP_DEVICES=1, which only the local world sets.
func (in *Instance) env() []string {
	return []string{"PATH=" + in.path, "HOME=/root", "LANG=C.UTF-8", "TETHER_LOOP_DEVICES=1"}
}

// activate asks the plugin on socket (a path reachable from the box) to
// activate, as dockerd and the ECS agent do, and checks that it implements
// VolumeDriver.
func activate(ctx context.Context, socket string) error {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://plugin/Plugin.Activate", bytes.NewReader(nil))
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/vnd.docker.plugins.v1.2+json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("Plugin.Activate: %s", resp.Status)
	}
	var out struct {
		Implements []string
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return fmt.Errorf("Plugin.Activate: %w", err)
	}
	if !slices.Contains(out.Implements, "VolumeDriver") {
		return fmt.Errorf("Plugin.Activate: implements %v, not VolumeDriver", out.Implements)
	}
	return nil
}

// tail is the end of a log file for error messages.
func tail(path string) string {
	const max = 8 << 10
	b, err := os.ReadFile(path)
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(bytes.TrimRight(b, "\n"))
}
