// Package sandbox makes reusable Linux "machines" on one box for tests and
// for the local AWS world: each Machine is a private mount namespace (mount
// propagation private) held open by a small holder process, with tmpfs over
// the paths that make a host distinct — /run (dockerd's socket, pidfile,
// exec-root, its own containerd and /run/docker/plugins), /etc/docker (plugin
// spec files, daemon key), /var/lib/tether and /dev/disk/by-id. Everything
// else the box has stays visible, so binaries, /dev and /proc are shared.
//
// Only the mount namespace is private: machines share the network, PID and
// IPC namespaces with the box. Containers run with --network none or host
// networking; a port opened by one machine's container is taken for every
// machine, so port conflicts between machines are the caller's problem.
//
// A Machine can run its own dockerd (StartDockerd), import images
// (ImportImage, BusyboxRootfs) and hold block devices (AttachLoop), each a
// loop device over a backing file with the NVMe-style by-id link that udev
// makes on Nitro instances, visible in this machine only. Xen names such as
// /dev/xvdf are not created: /dev is the box's devtmpfs, shared by all
// machines, so a name there would leak into every machine.
//
// Close tears everything down (dockerd and its containers, mounts, loop
// devices, the holder, the machine's directory); Kill does it abruptly, as an
// instance dying. Both are idempotent and leave nothing behind even after a
// failed start.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Paths given a private tmpfs in every machine. They must exist on the box
// (New creates them) because a mount needs a mount point.
var privatePaths = []string{"/run", "/etc/docker", "/var/lib/tether", "/dev/disk/by-id"}

// ErrClosed is returned by Machine methods after Close or Kill.
var ErrClosed = errors.New("sandbox machine is closed")

// Options configures a Machine.
type Options struct {
	// ID names the machine in errors, logs and its directory (e.g. the EC2
	// instance id). Required.
	ID string
	// Dir is the parent of the machine's own directory (dockerd data root,
	// logs). Default: os.TempDir(). The machine's directory is removed by
	// Close.
	Dir string
	// Logger receives JSON-ready structured logs; default slog.Default().
	Logger *slog.Logger
}

// Machine is one private mount namespace on the box.
type Machine struct {
	id     string
	dir    string
	log    *slog.Logger
	holder *exec.Cmd
	pid    int
	nsID   string // readlink of /proc/<holder>/ns/mnt, e.g. "mnt:[4026532301]"
	// nsFile pins the namespace until teardown: while it is open the
	// kernel cannot give nsID to a new namespace, so no process of another
	// machine (or of anything else on the box) can be taken for ours.
	nsFile *os.File

	mu      sync.Mutex
	closed  bool
	dockerd *dockerd
	loops   map[string]*loop // by volume id
}

// New starts a machine: a holder process in a new mount namespace with the
// private tmpfs mounts. On error nothing is left behind.
func New(ctx context.Context, o Options) (*Machine, error) {
	if o.ID == "" {
		return nil, errors.New("sandbox: Options.ID is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	for _, p := range privatePaths {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, fmt.Errorf("sandbox %s: mount point: %w", o.ID, err)
		}
	}
	dir, err := os.MkdirTemp(o.Dir, "sandbox-"+o.ID+"-")
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", o.ID, err)
	}
	m := &Machine{
		id:    o.ID,
		dir:   dir,
		log:   o.Logger.With("instance", o.ID),
		loops: map[string]*loop{},
	}
	if err := m.start(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("sandbox %s: start: %w", o.ID, err), m.Close())
	}
	m.log.Info("sandbox machine started", "holderPid", m.pid, "mntns", m.nsID, "dir", dir)
	return m, nil
}

func (m *Machine) start(ctx context.Context) error {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		return err
	}
	// Go's forkExec makes / recursively private after unsharing CLONE_NEWNS,
	// so nothing mounted here propagates to the box or back.
	holder := exec.Command(sleep, "infinity")
	holder.SysProcAttr = &syscall.SysProcAttr{
		Unshareflags: syscall.CLONE_NEWNS,
		Setpgid:      true,
		Pdeathsig:    syscall.SIGKILL,
	}
	if err := holder.Start(); err != nil {
		return fmt.Errorf("holder: %w", err)
	}
	m.holder, m.pid = holder, holder.Process.Pid
	if m.nsFile, err = os.Open(fmt.Sprintf("/proc/%d/ns/mnt", m.pid)); err != nil {
		return fmt.Errorf("holder namespace: %w", err)
	}
	if m.nsID, err = os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", m.pid)); err != nil {
		return fmt.Errorf("holder namespace: %w", err)
	}
	if self, _ := os.Readlink("/proc/self/ns/mnt"); self == m.nsID {
		return fmt.Errorf("holder pid %d shares the box's mount namespace", m.pid)
	}
	for _, p := range privatePaths {
		out, err := m.Command(ctx, "mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", p).CombinedOutput()
		if err != nil {
			return fmt.Errorf("tmpfs on %s: %w: %s", p, err, out)
		}
	}
	for _, p := range []string{"/etc/docker/plugins", "/run/docker/plugins"} {
		if err := os.MkdirAll(m.Path(p), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// ID is the machine's name as given in Options.
func (m *Machine) ID() string { return m.id }

// Dir is the machine's own directory on the box (removed by Close).
func (m *Machine) Dir() string { return m.dir }

// Pid is the holder process; /proc/<Pid>/ns/mnt is the machine's namespace.
func (m *Machine) Pid() int { return m.pid }

// Path is p as seen inside the machine, reachable from the box's namespace
// (through /proc/<holder>/root). Use it for files and unix sockets inside.
func (m *Machine) Path(p string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", m.pid), p)
}

// Command runs a program inside the machine's mount namespace (through
// nsenter, which execs it in place: the Cmd's process is the program).
func (m *Machine) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	a := append([]string{fmt.Sprintf("--mount=/proc/%d/ns/mnt", m.pid), "--", name}, args...)
	return exec.CommandContext(ctx, "nsenter", a...)
}

// Close kills the containers, stops dockerd (SIGINT, then SIGKILL), kills
// whatever else runs in the machine, ends the namespace (and with it every
// mount inside), detaches its loop devices and removes its directory.
// Idempotent.
func (m *Machine) Close() error {
	return m.teardown(false)
}

// Kill ends the machine abruptly, as an instance dying: SIGKILL to every
// process in it (dockerd, containerd, shims, containers, anything started
// with Command), then the kernel's leftovers (loop devices) are released.
// Idempotent; Close after Kill is a no-op.
func (m *Machine) Kill() error {
	return m.teardown(true)
}

func (m *Machine) teardown(abrupt bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if m.dockerd != nil && !abrupt {
		// Containers die first: Close promises a clean teardown, not a
		// graceful one, and a shell as PID 1 ignores SIGTERM for 10s.
		m.killContainers()
		if err := m.dockerd.stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if m.nsFile != nil {
		if err := m.killAll(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if m.dockerd != nil {
		m.dockerd.reap()
	}
	if m.holder != nil {
		_ = m.holder.Process.Kill() // if the namespace was never pinned
		_ = m.holder.Wait()
	}
	if m.nsFile != nil {
		m.nsFile.Close() // the namespace and its mounts go with the last reference
	}
	for id, l := range m.loops {
		// The namespace is gone, so are its mounts: the kernel releases the
		// filesystems and the loop device can go.
		if err := releaseLoop(ctx, l.dev); err != nil {
			errs = append(errs, fmt.Errorf("loop %s for %s: %w", l.dev, id, err))
		}
		delete(m.loops, id)
	}
	if m.dir != "" {
		if err := os.RemoveAll(m.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		m.log.Error("sandbox teardown incomplete", "abrupt", abrupt, "err", err)
		return fmt.Errorf("sandbox %s: teardown: %w", m.id, err)
	}
	m.log.Info("sandbox machine ended", "abrupt", abrupt)
	return nil
}

func (m *Machine) checkOpen() error {
	if m.closed {
		return fmt.Errorf("sandbox %s: %w", m.id, ErrClosed)
	}
	return nil
}

// Processes lists the pids that belong to the machine: every process in its
// mount namespace and every descendant of one (container processes live in
// namespaces of their own, under a containerd shim that lives here).
func (m *Machine) Processes() ([]int, error) {
	pids, _, err := m.processes()
	return pids, err
}

// killContainers SIGKILLs the machine's processes that live outside its
// mount namespace: the containers' (the shims that watch them stay).
func (m *Machine) killContainers() {
	pids, inNS, err := m.processes()
	if err != nil {
		return
	}
	for _, pid := range pids {
		if !inNS[pid] {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// processes is Processes plus which of them are in the namespace itself.
func (m *Machine) processes() ([]int, map[int]bool, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, nil, err
	}
	parent := map[int]int{}
	member := map[int]bool{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, ok := readPPid(pid)
		if !ok {
			continue // exited meanwhile
		}
		parent[pid] = ppid
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && ns == m.nsID {
			member[pid] = true
		}
	}
	var pids []int
	for pid := range parent {
		for p, hops := pid, 0; p > 1 && hops < 4096; p, hops = parent[p], hops+1 {
			if member[p] {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids, member, nil
}

// readPPid parses the parent pid from /proc/<pid>/stat (after the last ')':
// the command name may contain anything).
func readPPid(pid int) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	i := len(b) - 1
	for i >= 0 && b[i] != ')' {
		i--
	}
	var state byte
	var ppid int
	if _, err := fmt.Sscanf(string(b[i+1:]), " %c %d", &state, &ppid); err != nil {
		return 0, false
	}
	return ppid, true
}

// killAll SIGKILLs every process of the machine until none is left (bounded).
func (m *Machine) killAll(ctx context.Context) error {
	const limit = 30 * time.Second
	deadline := time.Now().Add(limit)
	for {
		pids, err := m.Processes()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still alive %s after SIGKILL", pids, limit)
		}
		m.log.Debug("waiting for machine processes to die", "pids", pids)
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for processes %v to die: %w", pids, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
