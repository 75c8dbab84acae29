package world_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/hosts"
	"github.com/tether-ecs/tether/test/world/world"
)

// proc is one process, told apart from a later one with the same pid by
// its start time.
type proc struct {
	pid   int
	start string
}

func (p proc) alive() bool {
	s, ok := procStart(p.pid)
	return ok && s == p.start
}

// procStat returns a process's ppid and start time (fields 4 and 22 of
// /proc/<pid>/stat).
func procStat(pid int) (ppid int, start string, ok bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", false
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 20 {
		return 0, "", false
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[19], true
}

func procStart(pid int) (string, bool) {
	_, s, ok := procStat(pid)
	return s, ok
}

func allPids() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

func cmdline(pid int) string {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(raw), "\x00", " ")
}

// children are this test process's direct children (holders, nsenter'd
// daemons, emulators).
func children() map[proc]string {
	out := map[proc]string{}
	for _, pid := range allPids() {
		if ppid, start, ok := procStat(pid); ok && ppid == os.Getpid() {
			out[proc{pid, start}] = cmdline(pid)
		}
	}
	return out
}

// box is what the box as a whole holds: loop devices, mounts and dockerd
// processes (other work on the machine shows here too, so these counts are
// logged; the checks use what can be traced to the world).
type box struct {
	loops    map[string]string // loop device -> backing file
	mounts   []string          // mountinfo lines
	dockerds map[int]string    // pid -> cmdline
}

func boxNow() box {
	b := box{loops: map[string]string{}, dockerds: map[int]string{}}
	devs, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range devs {
		if raw, err := os.ReadFile(f); err == nil {
			b.loops["/dev/"+filepath.Base(filepath.Dir(filepath.Dir(f)))] = strings.TrimSpace(string(raw))
		}
	}
	if raw, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		b.mounts = strings.Split(strings.TrimSpace(string(raw)), "\n")
	}
	for _, pid := range allPids() {
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) == "dockerd" {
			b.dockerds[pid] = cmdline(pid)
		}
	}
	return b
}

// worldTrace is what a world is known to have held: its directory, its
// hosts' processes and mount namespaces, the test's children.
type worldTrace struct {
	dir        string // a directory that held everything of the world
	processes  []proc
	namespaces map[string]bool // mnt:[...] of the hosts
	children   map[proc]string // the test's children before the world
	// closing is when Close began, in seconds since boot: the kernel reuses
	// a dead namespace's id, so a process in a traced namespace counts as
	// left only if it started before then (not another world's, born after).
	closing float64
}

// markClosing records when Close begins.
func (tr *worldTrace) markClosing(t *testing.T) {
	t.Helper()
	raw, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	var up float64
	if _, err := fmt.Sscan(string(raw), &up); err != nil {
		t.Fatalf("/proc/uptime: %v", err)
	}
	tr.closing = up
}

// startedBefore reports whether pid started before seconds since boot
// (start ticks at USER_HZ, 100 on Linux).
func startedBefore(pid int, seconds float64) bool {
	s, ok := procStart(pid)
	if !ok {
		return false
	}
	var ticks float64
	if _, err := fmt.Sscan(s, &ticks); err != nil {
		return true // cannot tell: count it
	}
	return ticks/100 <= seconds
}

// traceHosts records every process of the world's real hosts.
func (tr *worldTrace) traceHosts(t *testing.T, w *world.World) {
	t.Helper()
	for _, in := range w.Instances() {
		h, ok := in.Host.(*hosts.Instance)
		if !ok {
			continue
		}
		m := h.Machine()
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", m.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		tr.namespaces[ns] = true
		pids, err := m.Processes()
		if err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			if s, ok := procStart(pid); ok {
				tr.processes = append(tr.processes, proc{pid, s})
			}
		}
	}
}

// check fails the test for anything of the world still there.
func (tr *worldTrace) check(t *testing.T, before box) {
	t.Helper()
	after := boxNow()
	t.Logf("box before/after: %d/%d loop devices, %d/%d mounts, %d/%d dockerd (other work on the box counts too)",
		len(before.loops), len(after.loops), len(before.mounts), len(after.mounts), len(before.dockerds), len(after.dockerds))
	entries, err := os.ReadDir(tr.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left in %s: %s", tr.dir, e.Name())
	}
	for dev, file := range after.loops {
		if strings.HasPrefix(file, tr.dir) {
			t.Errorf("loop device left: %s over %s", dev, file)
		}
	}
	for _, m := range after.mounts {
		if strings.Contains(m, tr.dir) {
			t.Errorf("mount left: %s", m)
		}
	}
	for pid, cmd := range after.dockerds {
		if strings.Contains(cmd, tr.dir) {
			t.Errorf("dockerd left: pid %d: %s", pid, cmd)
		}
	}
	for _, p := range tr.processes {
		if p.alive() {
			t.Errorf("host process left: pid %d: %s", p.pid, cmdline(p.pid))
		}
	}
	for _, pid := range allPids() {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && tr.namespaces[ns] && (tr.closing == 0 || startedBefore(pid, tr.closing)) {
			t.Errorf("process left in a host's mount namespace %s: pid %d: %s", ns, pid, cmdline(pid))
		}
	}
	for p, cmd := range children() {
		if _, ok := tr.children[p]; !ok {
			t.Errorf("child process left: pid %d: %s", p.pid, cmd)
		}
	}
}

func newTrace(t *testing.T) (*worldTrace, box) {
	return &worldTrace{dir: t.TempDir(), namespaces: map[string]bool{}, children: children()}, boxNow()
}

// A world torn down while a task runs with its tether volume attached and
// mounted (loop device, ext4, dockerd, containers, emulators) leaves
// nothing behind.
func TestCloseLeavesNothingBehind(t *testing.T) {
	requireRealHosts(t)
	tr, before := newTrace(t)
	o := withFunctions(t, world.Options{Instances: 2, Hosts: world.RealHosts, AgentBinary: agentBinary(t), Dir: tr.dir}, world.EmulatedFunctions)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	w, err := world.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = w.Close()
		}
	}()
	runTetherTask(t, ctx, w, "scratch")
	held := 0
	for _, file := range boxNow().loops {
		if strings.HasPrefix(file, tr.dir) {
			held++
		}
	}
	if held != 1 {
		t.Fatalf("%d loop devices over the world's volumes while the task runs, want 1", held)
	}
	tr.traceHosts(t, w)
	if len(tr.processes) == 0 || len(tr.namespaces) != 2 {
		t.Fatalf("traced %d processes in %d namespaces; want the hosts' dockerd and friends", len(tr.processes), len(tr.namespaces))
	}
	closed = true
	tr.markClosing(t)
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	tr.check(t, before)
}

// runTetherTask registers a busybox task with a shared tether volume and
// waits until it runs (so a volume is attached and mounted).
func runTetherTask(t *testing.T, ctx context.Context, w *world.World, volume string) ecssim.TaskInfo {
	t.Helper()
	cluster := w.Options().Cluster
	def := fmt.Sprintf(`{"family":"scratch","containerDefinitions":[{"name":"app","image":"busybox","memory":64,"essential":true,
		"entryPoint":["sh","-c"],"command":["echo hi > /data/hi; trap 'exit 0' TERM; while true; do sleep 1; done"],
		"mountPoints":[{"sourceVolume":%q,"containerPath":"/data"}]}],
		"volumes":[{"name":%q,"dockerVolumeConfiguration":{"scope":"shared","autoprovision":true,"driver":"tether","driverOpts":{"size":"1"}}}]}`, volume, volume)
	if _, err := w.ECS().Handle(ctx, "RegisterTaskDefinition", []byte(def)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ECS().Handle(ctx, "RunTask", []byte(fmt.Sprintf(`{"cluster":%q,"taskDefinition":"scratch"}`, cluster))); err != nil {
		t.Fatal(err)
	}
	var task ecssim.TaskInfo
	if err := w.ECS().WaitFor(ctx, cluster, "the scratch task RUNNING", func(sn ecssim.Snapshot) bool {
		for _, ti := range sn.Tasks {
			if ti.LastStatus == "RUNNING" {
				task = ti
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	return task
}

// A Start that fails after its hosts are up (the template cannot be
// deployed) or while they boot (an image that does not exist) leaves
// nothing behind either.
func TestFailedStartLeavesNothingBehind(t *testing.T) {
	requireRealHosts(t)
	agent := agentBinary(t)
	cases := map[string]func(t *testing.T, o *world.Options){
		"template refused after the hosts are up": func(t *testing.T, o *world.Options) {
			raw, err := os.ReadFile("../../../template.yaml")
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "template.yaml")
			bad := strings.Replace(string(raw), "Resources:\n", "Resources:\n  Bucket:\n    Type: AWS::S3::Bucket\n", 1)
			if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
				t.Fatal(err)
			}
			o.Template = p
		},
		"an image that does not exist": func(t *testing.T, o *world.Options) {
			o.Images = []hosts.Image{{Ref: "missing:1", Tar: filepath.Join(t.TempDir(), "missing.tar")}}
		},
	}
	for name, spoil := range cases {
		t.Run(name, func(t *testing.T) {
			tr, before := newTrace(t)
			o := world.Options{Instances: 2, Hosts: world.RealHosts, AgentBinary: agent, Dir: tr.dir}
			spoil(t, &o)
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			w, err := world.Start(ctx, o)
			if err == nil {
				_ = w.Close()
				t.Fatal("Start succeeded")
			}
			t.Logf("Start failed as it should: %v", err)
			tr.check(t, before)
		})
	}
}

// Close is idempotent and a closed world's instances are down.
func TestCloseTwice(t *testing.T) {
	w, err := world.Start(context.Background(), world.Options{Instances: 1})
	if err != nil {
		t.Fatal(err)
	}
	endpoint := w.Endpoint()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if resp, err := http.Get(endpoint); err == nil {
		resp.Body.Close()
		t.Fatalf("a closed world's endpoint still answers: %s", resp.Status)
	}
	if _, err := w.LaunchInstance(context.Background(), world.LaunchOptions{}); err == nil {
		t.Fatal("launched an instance into a closed world")
	}
	if _, err := w.Instance("i-nope"); !errors.Is(err, world.ErrNoInstance) {
		t.Fatalf("Instance(i-nope): %v", err)
	}
}
