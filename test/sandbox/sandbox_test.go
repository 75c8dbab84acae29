package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tether-ecs/tether/test/sandbox"
	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

func requirePrereqs(t *testing.T, cmds ...string) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, append([]string{"nsenter", "losetup", "sleep", "mount"}, cmds...)...)
}

// probePlugin is a legacy volume plugin that records the names dockerd
// asked it to create; one per machine, all on the same path inside.
type probePlugin struct {
	mu      sync.Mutex
	created []string
}

func (p *probePlugin) serve(t *testing.T, sock string) {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/vnd.docker.plugins.v1+json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("/Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"Implements": []string{"VolumeDriver"}})
	})
	mux.HandleFunc("/VolumeDriver.Capabilities", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"Capabilities": map[string]string{"Scope": "local"}})
	})
	mux.HandleFunc("/VolumeDriver.Create", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Name string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		p.mu.Lock()
		p.created = append(p.created, req.Name)
		p.mu.Unlock()
		reply(w, map[string]string{})
	})
	mux.HandleFunc("/VolumeDriver.Get", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Name string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		p.mu.Lock()
		known := contains(p.created, req.Name)
		p.mu.Unlock()
		if !known {
			reply(w, map[string]string{"Err": "no such volume"})
			return
		}
		reply(w, map[string]any{"Volume": map[string]string{"Name": req.Name}})
	})
	mux.HandleFunc("/VolumeDriver.List", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"Volumes": []any{}})
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
}

func (p *probePlugin) names() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.created...)
}

// docker runs the docker CLI against the machine's dockerd.
func docker(t *testing.T, m *sandbox.Machine, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+m.DockerHost())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("docker %v on %s: %w: %s", args, m.ID(), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

func TestMachinesSeeOnlyTheirOwnPluginSocket(t *testing.T) {
	requirePrereqs(t, "dockerd", "docker")
	a := sandbox.NewT(t, sandbox.Options{ID: "i-a", Dir: t.TempDir()})
	b := sandbox.NewT(t, sandbox.Options{ID: "i-b", Dir: t.TempDir()})
	var pa, pb probePlugin
	pa.serve(t, a.Path("/run/docker/plugins/probe.sock"))
	pb.serve(t, b.Path("/run/docker/plugins/probe.sock"))
	if _, err := os.Stat("/run/docker/plugins/probe.sock"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("probe.sock visible on the box: stat err = %v", err)
	}
	a.StartDockerdT(t, sandbox.DockerdOptions{})
	b.StartDockerdT(t, sandbox.DockerdOptions{})

	if _, err := docker(t, a, "volume", "create", "--driver", "probe", "vol-in-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := docker(t, b, "volume", "create", "--driver", "probe", "vol-in-b"); err != nil {
		t.Fatal(err)
	}
	if got := pa.names(); len(got) != 1 || got[0] != "vol-in-a" {
		t.Errorf("plugin of i-a created %v, want [vol-in-a]", got)
	}
	if got := pb.names(); len(got) != 1 || got[0] != "vol-in-b" {
		t.Errorf("plugin of i-b created %v, want [vol-in-b]", got)
	}
}

// sparseFile makes a backing file of size bytes.
func sparseFile(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "backing.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

// boundLoops lists the loop devices whose backing file is path.
func boundLoops(t *testing.T, path string) []string {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var devs []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.TrimSpace(string(b)) == path {
			devs = append(devs, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(f))))
		}
	}
	return devs
}

func run(t *testing.T, m *sandbox.Machine, name string, args ...string) {
	t.Helper()
	if out, err := m.Command(context.Background(), name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v in %s: %v: %s", name, args, m.ID(), err, out)
	}
}

func TestLoopIsPrivateAndBusyWhileMounted(t *testing.T) {
	requirePrereqs(t, "mkfs.ext4", "umount")
	ctx := context.Background()
	a := sandbox.NewT(t, sandbox.Options{ID: "i-a", Dir: t.TempDir()})
	b := sandbox.NewT(t, sandbox.Options{ID: "i-b", Dir: t.TempDir()})
	backing := sparseFile(t, 64<<20)
	const vol = "vol-0123456789abcdef0"
	dev := a.AttachLoopT(t, backing, vol)
	link := sandbox.ByIDLink(vol)
	if link != "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0" {
		t.Fatalf("ByIDLink(%q) = %q", vol, link)
	}
	if got, err := os.Readlink(a.Path(link)); err != nil || got != dev {
		t.Fatalf("in i-a, %s -> %q (%v), want %s", link, got, err, dev)
	}
	if _, err := os.Lstat(b.Path(link)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("in i-b, %s: err = %v, want not exist", link, err)
	}
	if _, err := os.Lstat(link); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("on the box, %s: err = %v, want not exist", link, err)
	}
	if got := boundLoops(t, backing); len(got) != 1 || got[0] != dev {
		t.Fatalf("loops over %s = %v, want [%s]", backing, got, dev)
	}

	run(t, a, "mkfs.ext4", "-q", link)
	run(t, a, "mkdir", "-p", "/var/lib/tether/volumes/data")
	run(t, a, "mount", link, "/var/lib/tether/volumes/data")
	t.Cleanup(func() { _ = a.Command(ctx, "umount", "/var/lib/tether/volumes/data").Run() })
	if got, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(got, []byte("/var/lib/tether/volumes/data")) {
		t.Fatal("mount made in i-a is visible on the box")
	}

	err := a.DetachLoop(ctx, vol, false)
	if !errors.Is(err, worldapi.ErrDeviceBusy) {
		t.Fatalf("DetachLoop while mounted: err = %v, want ErrDeviceBusy", err)
	}
	if _, err := os.Readlink(a.Path(link)); err != nil {
		t.Fatalf("refused detach removed the link: %v", err)
	}
	run(t, a, "umount", "/var/lib/tether/volumes/data")
	if err := a.DetachLoop(ctx, vol, false); err != nil {
		t.Fatalf("DetachLoop after umount: %v", err)
	}
	if _, err := os.Lstat(a.Path(link)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("link after detach: err = %v, want not exist", err)
	}
	if got := boundLoops(t, backing); len(got) != 0 {
		t.Errorf("loops over %s after detach = %v, want none", backing, got)
	}
	if err := a.DetachLoop(ctx, vol, false); !errors.Is(err, sandbox.ErrNotAttached) {
		t.Errorf("second DetachLoop: err = %v, want ErrNotAttached", err)
	}
}

func TestDockerdStartFailureShowsLog(t *testing.T) {
	requirePrereqs(t, "dockerd")
	m := sandbox.NewT(t, sandbox.Options{ID: "i-broken", Dir: t.TempDir()})
	err := m.StartDockerd(context.Background(), sandbox.DockerdOptions{Args: []string{"--no-such-flag"}})
	if err == nil {
		t.Fatal("dockerd started with a bogus flag")
	}
	for _, want := range []string{"i-broken", "dockerd log", "no-such-flag"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if pid := m.DockerdPid(); pid != 0 {
		t.Errorf("DockerdPid after failed start = %d, want 0", pid)
	}
}

// leftovers says what of a machine is still there after teardown.
type leftovers struct {
	pids    []int
	backing string
	dir     string
}

func (l leftovers) check(t *testing.T) {
	t.Helper()
	for _, pid := range l.pids {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !bytes.Contains(b, []byte(") Z ")) {
			t.Errorf("process %d still alive: %s", pid, b)
		}
	}
	if got := boundLoops(t, l.backing); len(got) != 0 {
		t.Errorf("loop devices over %s still bound: %v", l.backing, got)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(mi, []byte(l.dir)) {
		t.Errorf("mounts under %s on the box:\n%s", l.dir, mi)
	}
	if _, err := os.Stat(l.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("machine dir %s still there: %v", l.dir, err)
	}
}

func TestTeardownLeavesNothingBehind(t *testing.T) {
	requirePrereqs(t, "dockerd", "docker", "busybox", "mkfs.ext4")
	for _, abrupt := range []bool{false, true} {
		t.Run(fmt.Sprintf("abrupt=%v", abrupt), func(t *testing.T) {
			ctx := context.Background()
			m, err := sandbox.New(ctx, sandbox.Options{ID: "i-teardown", Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = m.Close() })
			m.StartDockerdT(t, sandbox.DockerdOptions{})
			m.ImportBusyboxT(t)
			backing := sparseFile(t, 64<<20)
			m.AttachLoopT(t, backing, "vol-00000000000000001")
			link := sandbox.ByIDLink("vol-00000000000000001")
			run(t, m, "mkfs.ext4", "-q", link)
			run(t, m, "mkdir", "-p", "/var/lib/tether/volumes/data")
			run(t, m, "mount", link, "/var/lib/tether/volumes/data")
			id, err := docker(t, m, "run", "-d", "--network", "none",
				"-v", "/var/lib/tether/volumes/data:/data", "busybox", "sleep", "1000")
			if err != nil {
				t.Fatal(err)
			}
			pidText, err := docker(t, m, "inspect", "-f", "{{.State.Pid}}", id)
			if err != nil {
				t.Fatal(err)
			}
			containerPid, err := strconv.Atoi(pidText)
			if err != nil || containerPid == 0 {
				t.Fatalf("container pid %q: %v", pidText, err)
			}
			pids, err := m.Processes()
			if err != nil {
				t.Fatal(err)
			}
			if !contains(pids, containerPid) || !contains(pids, m.DockerdPid()) || !contains(pids, m.Pid()) {
				t.Fatalf("Processes() = %v lacks container %d, dockerd %d or holder %d",
					pids, containerPid, m.DockerdPid(), m.Pid())
			}
			l := leftovers{pids: pids, backing: backing, dir: m.Dir()}
			if abrupt {
				err = m.Kill()
			} else {
				err = m.Close()
			}
			if err != nil {
				t.Fatalf("teardown: %v", err)
			}
			l.check(t)
			if err := m.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if _, err := m.AttachLoop(ctx, backing, "vol-00000000000000002", ""); !errors.Is(err, sandbox.ErrClosed) {
				t.Errorf("AttachLoop after teardown: err = %v, want ErrClosed", err)
			}
		})
	}
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
