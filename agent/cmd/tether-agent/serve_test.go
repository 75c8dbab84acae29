package main_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/sandbox"
	"github.com/tether-ecs/tether/test/testenv"
)

const pluginSocket = "/run/docker/plugins/tether.sock"

// serving is a `tether-agent serve` running in a machine.
type serving struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan error
}

// startServe starts serve in m and waits (bounded) until the plugin answers.
func startServe(t *testing.T, m *sandbox.Machine, env ...string) *serving {
	t.Helper()
	cmd := m.Command(context.Background(), agentBin, "serve")
	cmd.Env = append(append(os.Environ(), "TETHER_LOOP_DEVICES=1"), env...)
	s := &serving{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = cmd.Process.Kill()
			<-s.done
		}
		t.Logf("serve log:\n%s", s.stderr)
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := activate(m); err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin socket did not answer within 30s; log:\n%s", s.stderr)
		}
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("serve exited early: %v\n%s", err, s.stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// activate makes dockerd's first plugin call.
func activate(m *sandbox.Machine) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", m.Path(pluginSocket))
		},
	}}
	resp, err := client.Post("http://plugin/Plugin.Activate", "application/vnd.docker.plugins.v1.2+json", strings.NewReader("{}"))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("activate: %s: %s", resp.Status, b)
	}
	return string(b), err
}

func TestServeReplacesAStaleSocketAndStopsOnSIGTERM(t *testing.T) {
	requireHostTools(t)
	m := newMachine(t, "i-0fffffffffffffff4")
	// A socket left by a tether-agent that died: a file nobody listens on.
	stale, err := net.Listen("unix", m.Path(pluginSocket))
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	// systemd's notification socket (Type=notify).
	notifyPath := filepath.Join(t.TempDir(), "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()

	s := startServe(t, m, "NOTIFY_SOCKET="+notifyPath)
	if got := readNotify(t, notify); got != "READY=1" {
		t.Errorf("first notification %q, want READY=1", got)
	}
	got, err := activate(m)
	if err != nil || !strings.Contains(got, `"VolumeDriver"`) {
		t.Fatalf("Plugin.Activate = %q, %v", got, err)
	}
	fi, err := os.Stat(m.Path(pluginSocket))
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode %v, %v; want a 0660 socket", fi.Mode(), err)
	}
	if r := agent(t, m, "serve"); r.code != 1 || !strings.Contains(r.stderr, "another process is serving") {
		t.Errorf("second serve: exit %d, %s; want a refusal to steal a live socket", r.code, r.stderr)
	}

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			t.Errorf("serve after SIGTERM: %v; want exit 0", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatalf("serve still running 45s after SIGTERM")
	}
	if _, err := os.Lstat(m.Path(pluginSocket)); !os.IsNotExist(err) {
		t.Errorf("socket left behind after a clean stop: %v", err)
	}
	if got := readNotify(t, notify); got != "STOPPING=1" {
		t.Errorf("notification at stop %q, want STOPPING=1", got)
	}
}

func readNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

// docker runs the docker CLI inside m.
func docker(t *testing.T, m *sandbox.Machine, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := m.Command(ctx, "docker", args...).CombinedOutput()
	t.Logf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	return strings.TrimSpace(string(out)), err
}

// TestUnmountRefusedWhileAContainerUsesTheVolume runs the whole host side:
// dockerd, tether-agent serve as its plugin, the mount command, a
// container on the tether volume, and the unmount command's busy check.
func TestUnmountRefusedWhileAContainerUsesTheVolume(t *testing.T) {
	requireHostTools(t)
	testenv.RequireCommands(t, "dockerd", "docker", "busybox")
	const vol = "vol-0f0f0f0f0f0f0f0f0"
	m := newMachine(t, "i-0fffffffffffffff5")
	m.AttachLoopT(t, volumeFile(t, vol, 128*mib), vol)
	startServe(t, m)
	m.StartDockerdT(t, sandbox.DockerdOptions{})
	m.ImportBusyboxT(t)

	mount(t, m, vol, "data", "--format-if-blank")
	if _, err := docker(t, m, "volume", "create", "-d", "tether", "data"); err != nil {
		t.Fatal(err)
	}
	id, err := docker(t, m, "run", "-d", "--network", "none", "--name", "db", "-v", "data:/data", "busybox",
		"sh", "-c", "echo from-container > /data/proof && exec sleep 1000")
	if err != nil {
		t.Fatal(err)
	}
	// A second container reaches the volume by its mount point (as a
	// task-scoped Docker volume of another name does).
	if _, err := docker(t, m, "run", "-d", "--network", "none", "--name", "bind", "-v",
		"/var/lib/tether/volumes/data:/d", "busybox", "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	eventuallyFile(t, m.Path("/var/lib/tether/volumes/data/proof"), "from-container\n")

	r := unmount(t, m, vol, "data")
	if r.code != 3 || !strings.Contains(r.stderr, "db") || !strings.Contains(r.stderr, "bind") || !strings.Contains(r.stderr, id[:12]) {
		t.Fatalf("unmount while containers run: exit %d (want 3) naming db and bind: %s", r.code, r.stderr)
	}
	if _, ok := mountedAt(t, m, "/var/lib/tether/volumes/data"); !ok {
		t.Fatalf("a refused unmount unmounted")
	}
	st := agent(t, m, "status", "--json")
	if !strings.Contains(st.stdout, `"name":"db"`) || !strings.Contains(st.stdout, `"name":"bind"`) {
		t.Errorf("status does not list the users: %s", st.stdout)
	}

	// --force goes past the containers, but they keep the filesystem
	// mounted in their own mount namespaces: the kernel does not let go,
	// so the unmount is not "safe to detach" (regression: it said so).
	forced := unmount(t, m, vol, "data", "--force")
	if forced.code != agentproto.ExitBusy {
		t.Fatalf("unmount --force under running containers: exit %d, %s; want 3: their mount namespaces still hold the filesystem", forced.code, forced.stdout)
	}
	f := failure(t, forced)
	if len(f.Holders) == 0 || !strings.Contains(f.Message, "another mount namespace") || !strings.Contains(f.Message, id[:12]) {
		t.Errorf("the busy failure does not name the containers' namespaces: %+v", f)
	}
	if _, ok := mountedAt(t, m, "/var/lib/tether/volumes/data"); ok {
		t.Fatalf("still mounted at the mount point after unmount --force")
	}
	if _, err := docker(t, m, "rm", "-f", "bind"); err != nil {
		t.Fatal(err)
	}
	if _, err := docker(t, m, "rm", "-f", "db"); err != nil {
		t.Fatal(err)
	}
	r = unmount(t, m, vol, "data")
	if r.code != 0 || !strings.Contains(r.stdout, `"wasMounted":false`) || !strings.Contains(r.stdout, `"released":true`) {
		t.Fatalf("unmount after the containers stopped: exit %d, %s; want safe to detach, released", r.code, r.stdout)
	}
	// Mounted again, the data the container wrote is there.
	if again := mount(t, m, vol, "data", "--format-if-blank"); again.Formatted || again.AlreadyMounted || again.Generation != 2 {
		t.Errorf("remount = %+v", again)
	}
	eventuallyFile(t, m.Path("/var/lib/tether/volumes/data/proof"), "from-container\n")
}

func eventuallyFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && string(b) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %q, %v after 30s; want %q", path, b, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
