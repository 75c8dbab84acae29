package driver_test

// The harness of the integration tests: a sandbox machine (private mount
// namespace with its own dockerd and busybox) running the real tether-agent
// binary as its volume plugin, loop devices with EC2's by-id links as EBS
// volumes, and the real `tether-agent mount` as the reconciler would run it.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tether-ecs/tether/test/sandbox"
	"github.com/tether-ecs/tether/test/testenv"
)

const (
	agentRoot    = "/var/lib/tether"
	pluginSocket = "/run/docker/plugins/tether.sock"
)

var agentBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	// The machines' loop devices stand for EBS volumes, as in the local
	// world: the agents these tests run inherit it.
	os.Setenv("TETHER_LOOP_DEVICES", "1")
	code := m.Run()
	if agentBinary.dir != "" {
		os.RemoveAll(agentBinary.dir)
	}
	os.Exit(code)
}

// buildAgent builds tether-agent once per test binary.
func buildAgent(t testing.TB) string {
	t.Helper()
	agentBinary.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if agentBinary.dir, agentBinary.err = os.MkdirTemp("", "tether-agent-bin-"); agentBinary.err != nil {
			return
		}
		agentBinary.path = filepath.Join(agentBinary.dir, "tether-agent")
		cmd := exec.Command(goBin, "build", "-o", agentBinary.path, "github.com/tether-ecs/tether/agent/cmd/tether-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentBinary.err = fmt.Errorf("go build tether-agent: %w\n%s", err, out)
		}
	})
	if agentBinary.err != nil {
		t.Fatal(agentBinary.err)
	}
	return agentBinary.path
}

func requireIntegration(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "dockerd", "docker", "busybox", "nsenter", "losetup", "mount", "mkfs.ext4", "blkid", "e2fsck")
}

// machine is one sandbox host running tether-agent serve. Its helpers fail
// the test it was made for; with(t) gives the same machine for a subtest.
type machine struct {
	*sandbox.Machine
	t     testing.TB
	bin   string
	agent *agentProcess
}

// agentProcess is the running tether-agent serve.
type agentProcess struct {
	cmd  *exec.Cmd
	log  string // its stderr (JSON lines), on the box
	done chan struct{}
}

func (m *machine) with(t testing.TB) *machine {
	c := *m
	c.t = t
	return &c
}

// newMachine starts a machine with dockerd, busybox and tether-agent serve.
func newMachine(t testing.TB, id string, serveArgs ...string) *machine {
	t.Helper()
	requireIntegration(t)
	bin := buildAgent(t)
	m := &machine{Machine: sandbox.NewT(t, sandbox.Options{ID: id, Dir: t.TempDir()}), t: t, bin: bin,
		agent: &agentProcess{log: filepath.Join(t.TempDir(), "serve.log")}}
	m.StartDockerdT(t, sandbox.DockerdOptions{})
	m.ImportBusyboxT(t)
	m.startServe(serveArgs...)
	t.Cleanup(func() {
		m.stopServe()
		if t.Failed() {
			b, _ := os.ReadFile(m.agent.log)
			t.Logf("--- tether-agent serve log on %s ---\n%s", id, tail(b, 24<<10))
			d, _ := os.ReadFile(m.DockerdLog())
			t.Logf("--- dockerd log on %s ---\n%s", id, tail(d, 12<<10))
		}
	})
	return m
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// startServe runs tether-agent serve inside the machine and waits until it
// answers Plugin.Activate on its socket.
func (m *machine) startServe(args ...string) {
	m.t.Helper()
	f, err := os.OpenFile(m.agent.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		m.t.Fatal(err)
	}
	defer f.Close()
	cmd := m.Command(context.Background(), m.bin, append([]string{"serve", "--root", agentRoot, "--socket", pluginSocket}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("machine %s: start tether-agent serve: %v", m.ID(), err)
	}
	m.agent.cmd, m.agent.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(m.agent.done)
	sock := m.Path(pluginSocket)
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}, Timeout: time.Second}
	waitFor(m.t, "tether-agent serve to answer on "+pluginSocket+" in "+m.ID(), 30*time.Second, func() (bool, string) {
		select {
		case <-m.agent.done:
			b, _ := os.ReadFile(m.agent.log)
			m.t.Fatalf("machine %s: tether-agent serve exited:\n%s", m.ID(), b)
		default:
		}
		resp, err := client.Post("http://plugin/Plugin.Activate", "application/json", nil)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// stopServe stops tether-agent serve with SIGTERM, as systemd does.
func (m *machine) stopServe() {
	a := m.agent
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(45 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
		m.t.Errorf("machine %s: tether-agent serve ignored SIGTERM for 45s; killed", m.ID())
	}
	a.cmd = nil
}

// restartServe is an agent restart (systemctl restart tether-agent).
func (m *machine) restartServe() {
	m.t.Helper()
	m.stopServe()
	m.startServe()
}

// docker runs the docker CLI against the machine's dockerd.
func (m *machine) docker(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command("docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+m.DockerHost())
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return strings.TrimSpace(o.String()), strings.TrimSpace(e.String()), err
}

// mustDocker is docker that fails the test on error.
func (m *machine) mustDocker(args ...string) string {
	m.t.Helper()
	out, errOut, err := m.docker(args...)
	if err != nil {
		m.t.Fatalf("machine %s: docker %s: %v: %s", m.ID(), strings.Join(args, " "), err, errOut)
	}
	return out
}

// tetherMount is the reconciler's SSM command: tether-agent mount.
func (m *machine) tetherMount(volumeID, name string) {
	m.t.Helper()
	out, err := m.Command(context.Background(), m.bin, "mount", "--volume-id", volumeID, "--name", name,
		"--root", agentRoot, "--wait", "10s", "--json", "--format-if-blank").CombinedOutput()
	if err != nil {
		m.t.Fatalf("machine %s: tether-agent mount %s %s: %v\n%s", m.ID(), volumeID, name, err, out)
	}
}

// attach makes an "EBS volume" of 256 MiB attached to the machine and
// returns its backing file (to attach it again after a detach).
func (m *machine) attach(volumeID string) string {
	m.t.Helper()
	f, err := os.CreateTemp(m.Dir(), volumeID+"-*.img")
	if err != nil {
		m.t.Fatal(err)
	}
	if err := f.Truncate(256 << 20); err != nil {
		m.t.Fatal(err)
	}
	f.Close()
	m.AttachLoopT(m.t, f.Name(), volumeID)
	return f.Name()
}

// mountCount is how many filesystems are mounted at the volume's mount
// point inside the machine (the kernel's view).
func (m *machine) mountCount(name string) int {
	m.t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", m.Pid()))
	if err != nil {
		m.t.Fatal(err)
	}
	defer f.Close()
	want := filepath.Join(agentRoot, "volumes", name)
	n := 0
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) > 4 && fields[4] == want {
			n++
		}
	}
	return n
}

func (m *machine) wantMounted(name string, want bool) {
	m.t.Helper()
	switch n := m.mountCount(name); {
	case want && n != 1:
		m.t.Fatalf("machine %s: volume %s has %d mounts, want exactly 1", m.ID(), name, n)
	case !want && n != 0:
		m.t.Fatalf("machine %s: volume %s still mounted (%d)", m.ID(), name, n)
	}
}

// waitUnmounted waits (bounded) for the plugin to unmount the volume after
// its last container stopped: dockerd unmounts asynchronously to the CLI.
func (m *machine) waitUnmounted(name string) {
	m.t.Helper()
	waitFor(m.t, "volume "+name+" to be unmounted in "+m.ID(), 30*time.Second, func() (bool, string) {
		n := m.mountCount(name)
		return n == 0, fmt.Sprintf("%d mounts", n)
	})
}

// pluginReplies counts the plugin's successful answers to method for the
// given Docker volume name, from the serve log.
func (m *machine) pluginReplies(method, volume string) int {
	m.t.Helper()
	return m.pluginLog("plugin reply", method, volume, false)
}

type pluginCall struct {
	method, volume string
	took           time.Duration
}

// pluginDurations lists the plugin's successful answers in order, with the
// time each took, from the serve log.
func (m *machine) pluginDurations() []pluginCall {
	m.t.Helper()
	b, err := os.ReadFile(m.agent.log)
	if err != nil {
		m.t.Fatal(err)
	}
	var out []pluginCall
	for _, line := range bytes.Split(b, []byte("\n")) {
		var l struct {
			Msg, Method, Volume string
			DurationMs          float64
		}
		if json.Unmarshal(line, &l) == nil && l.Msg == "plugin reply" {
			out = append(out, pluginCall{l.Method, l.Volume, time.Duration(l.DurationMs * float64(time.Millisecond))})
		}
	}
	return out
}

// waitReplies waits until the plugin has answered method for volume n times
// in all, so that a test asserts state after dockerd's call, not before.
func (m *machine) waitReplies(method, volume string, n int) {
	m.t.Helper()
	waitFor(m.t, fmt.Sprintf("%d %s replies for %s in %s", n, method, volume, m.ID()), 30*time.Second, func() (bool, string) {
		got := m.pluginReplies(method, volume)
		return got >= n, fmt.Sprintf("%d replies", got)
	})
}

// waitFor polls cond (bounded) and fails the test with what it waited for
// and the last state seen.
func waitFor(t testing.TB, what string, limit time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; last: %s", limit, what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// containerState is docker inspect's State.Status and StartedAt.
func (m *machine) containerState(name string) (status, startedAt string) {
	m.t.Helper()
	out := m.mustDocker("inspect", "--format", "{{.State.Status}} {{.State.StartedAt}}", name)
	status, startedAt, _ = strings.Cut(out, " ")
	return status, startedAt
}
