package main_test

// Integration tests: the real tether-agent binary (built static in
// TestMain) runs inside sandbox machines (private mount namespaces with
// tmpfs over /var/lib/tether, /dev/disk/by-id and /run) on real loop
// devices with EC2-like by-id links, real mkfs/blkid/fsck, real mounts.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/sandbox"
	"github.com/tether-ecs/tether/test/testenv"
)

var agentBin string // the built binary

func TestMain(m *testing.M) {
	// The machines' loop devices stand for EBS volumes, as in the local
	// world: every agent these tests and benchmarks run inherits it.
	os.Setenv("TETHER_LOOP_DEVICES", "1")
	dir, err := os.MkdirTemp("", "tether-agent-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = filepath.Join(dir, "tether-agent")
	build := exec.Command("go", "build", "-trimpath", "-o", agentBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build tether-agent: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const mib = 1 << 20

func requireHostTools(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nsenter", "losetup", "blkid", "mkfs.ext4", "mkfs.xfs", "e2fsck", "resize2fs", "xfs_growfs", "sgdisk")
}

// newMachine is a sandbox machine standing for one EC2 instance.
func newMachine(t *testing.T, id string) *sandbox.Machine {
	t.Helper()
	return sandbox.NewT(t, sandbox.Options{ID: id, Dir: t.TempDir()})
}

// volumeFile is an EBS volume's bytes: a sparse file named after its id,
// as the local world names them (the agent confirms a loop device's
// identity from its backing file's name).
func volumeFile(t *testing.T, volumeID string, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), volumeID+".img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	return path
}

// result is one run of the agent.
type result struct {
	stdout, stderr string
	code           int
}

// agent runs tether-agent inside m.
func agent(t *testing.T, m *sandbox.Machine, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := m.Command(ctx, agentBin, args...)
	cmd.Env = append(os.Environ(), "TETHER_LOOP_DEVICES=1") // the local world's loop devices stand for EBS volumes
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run tether-agent %q: %v", args, err)
	}
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: code}
	t.Logf("tether-agent %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, r.stdout, r.stderr)
	return r
}

type mountResult = agentproto.MountResult

// mount runs the mount command and decodes its JSON, failing on a non-zero exit.
func mount(t *testing.T, m *sandbox.Machine, volumeID, name string, extra ...string) mountResult {
	t.Helper()
	r := agent(t, m, append([]string{"mount", "--volume-id", volumeID, "--name", name, "--wait", "10s", "--json"}, extra...)...)
	if r.code != 0 {
		t.Fatalf("mount %s as %s: exit %d: %s", volumeID, name, r.code, r.stderr)
	}
	var res mountResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("mount output %q: %v", r.stdout, err)
	}
	if strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("mount --json printed %q; want one line", r.stdout)
	}
	// The grant is echoed (the reconciler's mount end relies on it), then
	// left out of the comparisons.
	if granted := slices.Contains(extra, "--format-if-blank"); res.Granted == nil || *res.Granted != granted {
		t.Errorf("mount output %q: granted %v, want %v", r.stdout, res.Granted, granted)
	}
	res.Granted = nil
	if res.Protocol != agentproto.Protocol || res.AgentVersion == "" {
		t.Errorf("mount --json printed %q; want the agent's version and protocol %d in it", r.stdout, agentproto.Protocol)
	}
	res.Agent = agentproto.Agent{} // checked here; the tests compare the rest
	return res
}

func unmount(t *testing.T, m *sandbox.Machine, volumeID, name string, extra ...string) result {
	t.Helper()
	r := agent(t, m, append([]string{"unmount", "--volume-id", volumeID, "--name", name, "--json"}, extra...)...)
	if out, ok := agentproto.ParseOutput(r.stdout); ok && r.code == 0 {
		if u, ok := out.Unmount(); !ok || u.Protocol != agentproto.Protocol || u.AgentVersion == "" {
			t.Errorf("unmount --json printed %q; want the agent's version and protocol %d in it", r.stdout, agentproto.Protocol)
		}
	}
	return r
}

// mountedAt reads the machine's mount table for mountpoint.
func mountedAt(t *testing.T, m *sandbox.Machine, mountpoint string) (fstype string, ok bool) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", m.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 8 && f[4] == mountpoint {
			for i, v := range f {
				if v == "-" && i+1 < len(f) {
					fstype = f[i+1]
				}
			}
			ok = true
		}
	}
	return fstype, ok
}

func sha(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// failure decodes the one JSON line a failed command prints with --json.
func failure(t *testing.T, r result) agentproto.Failure {
	t.Helper()
	if strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("stdout %q: want exactly one line", r.stdout)
	}
	out, ok := agentproto.ParseOutput(r.stdout)
	if !ok || out.Error == nil {
		t.Fatalf("stdout %q: want {\"error\":{...}}", r.stdout)
	}
	if out.Error.ExitCode != r.code {
		t.Errorf("failure line says exit %d, the process exited %d", out.Error.ExitCode, r.code)
	}
	if out.Error.Protocol != agentproto.Protocol || out.Error.AgentVersion == "" {
		t.Errorf("failure line %q does not name the agent's version and protocol %d", r.stdout, agentproto.Protocol)
	}
	return *out.Error
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
}

func TestFirstMountFormatsAndTheNextHostSeesTheData(t *testing.T) {
	requireHostTools(t)
	const vol = "vol-0a1b2c3d4e5f60718"
	backing := volumeFile(t, vol, 256*mib)

	a := newMachine(t, "i-0aaaaaaaaaaaaaaaa")
	dev := a.AttachLoopT(t, backing, vol)
	first := mount(t, a, vol, "data", "--format-if-blank", "--attachment", "i-0aaaaaaaaaaaaaaaa:1700000000000")
	want := mountResult{VolumeID: vol, Name: "data", Device: dev, FSType: "ext4", Formatted: true,
		Mountpoint: "/var/lib/tether/volumes/data", Generation: 1, Attachment: "i-0aaaaaaaaaaaaaaaa:1700000000000",
		DeviceBytes: 256 * mib, FilesystemBytes: 256 * mib} // ext4 spans the whole device
	if first != want {
		t.Errorf("first mount = %+v, want %+v", first, want)
	}
	if fs, ok := mountedAt(t, a, first.Mountpoint); !ok || fs != "ext4" {
		t.Fatalf("mount table of %s: mounted %v, fstype %q", a.ID(), ok, fs)
	}
	if err := os.WriteFile(a.Path(first.Mountpoint+"/greeting"), []byte("hello from A"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(a.Path("/var/lib/tether/bindings/data")); err != nil || !strings.Contains(string(b), `"volumeId":"`+vol+`"`) {
		t.Errorf("binding = %q, %v; want %s", b, err, vol)
	}

	again := mount(t, a, vol, "data", "--format-if-blank", "--attachment", "i-0aaaaaaaaaaaaaaaa:1700000000000")
	want.Formatted, want.AlreadyMounted = false, true
	if again != want {
		t.Errorf("second mount = %+v, want %+v", again, want)
	}

	st := agent(t, a, "status", "--json")
	var status struct {
		Volumes []struct {
			Name, VolumeID, Device, Mountpoint, FSType string
			Mounted                                    bool
			SizeBytes                                  int64
			Users                                      []any
		}
	}
	if err := json.Unmarshal([]byte(st.stdout), &status); err != nil || st.code != 0 {
		t.Fatalf("status: exit %d, %v", st.code, err)
	}
	if len(status.Volumes) != 1 || status.Volumes[0].Name != "data" || status.Volumes[0].VolumeID != vol ||
		!status.Volumes[0].Mounted || status.Volumes[0].Device != dev || status.Volumes[0].FSType != "ext4" ||
		status.Volumes[0].SizeBytes < 200*mib || status.Volumes[0].Users == nil {
		t.Errorf("status = %+v", status)
	}

	if r := unmount(t, a, vol, "data"); r.code != 0 || !strings.Contains(r.stdout, `"wasMounted":true`) ||
		!strings.Contains(r.stdout, `"released":true`) || !strings.Contains(r.stdout, `"generation":1`) {
		t.Fatalf("unmount: exit %d %s; want released generation 1", r.code, r.stdout)
	}
	if _, ok := mountedAt(t, a, first.Mountpoint); ok {
		t.Fatalf("still mounted after unmount")
	}
	if r := unmount(t, a, vol, "data"); r.code != 0 || !strings.Contains(r.stdout, `"wasMounted":false`) {
		t.Fatalf("second unmount: exit %d %s; want success, nothing to do", r.code, r.stdout)
	}
	if err := a.DetachLoop(context.Background(), vol, false); err != nil {
		t.Fatalf("detach from A: %v", err)
	}

	// The task moves: the volume is attached to B, a new host.
	b := newMachine(t, "i-0bbbbbbbbbbbbbbbb")
	devB := b.AttachLoopT(t, backing, vol)
	onB := mount(t, b, vol, "data", "--format-if-blank")
	if onB.Formatted || onB.FSType != "ext4" || onB.Device != devB || onB.AlreadyMounted || onB.Generation != 1 {
		t.Errorf("mount on B = %+v; want the existing ext4, not formatted", onB)
	}
	if got, err := os.ReadFile(b.Path(onB.Mountpoint + "/greeting")); err != nil || string(got) != "hello from A" {
		t.Errorf("B reads %q, %v; want A's data", got, err)
	}
	if _, err := os.Stat(a.Path(first.Mountpoint + "/greeting")); err == nil {
		t.Errorf("A still sees the file after unmount")
	}
}

func TestForeignXFSIsMountedAsItIs(t *testing.T) {
	requireHostTools(t)
	const vol = "vol-0c0c0c0c0c0c0c0c0"
	backing := volumeFile(t, vol, 320*mib)
	// Someone made an xfs on this volume elsewhere and left data on it.
	run(t, "mkfs.xfs", "-q", backing)
	uuid := blkid(t, backing, "UUID")
	m := newMachine(t, "i-0cccccccccccccccc")
	dev := m.AttachLoopT(t, backing, vol)
	seed := t.TempDir() // mounted in the box's namespace, briefly

	if err := unix.Mount(dev, seed, "xfs", 0, "nouuid"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seed+"/keep", []byte("foreign data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(seed, 0); err != nil {
		t.Fatal(err)
	}

	got := mount(t, m, vol, "foreign", "--fstype", "ext4")
	if got.FSType != "xfs" || got.Formatted {
		t.Errorf("mount = %+v; want the xfs mounted as it is", got)
	}
	if fs, _ := mountedAt(t, m, got.Mountpoint); fs != "xfs" {
		t.Errorf("mounted as %q, want xfs", fs)
	}
	if b, err := os.ReadFile(m.Path(got.Mountpoint + "/keep")); err != nil || string(b) != "foreign data" {
		t.Errorf("data = %q, %v", b, err)
	}
	if r := unmount(t, m, vol, "foreign"); r.code != 0 {
		t.Fatalf("unmount: %d", r.code)
	}
	if after := blkid(t, dev, "UUID"); after != uuid {
		t.Errorf("filesystem UUID %s -> %s: reformatted", uuid, after)
	}
}

func blkid(t *testing.T, path, tag string) string {
	t.Helper()
	out, _ := exec.Command("blkid", "-p", "-o", "value", "-s", tag, path).Output()
	return strings.TrimSpace(string(out))
}

func TestGrowAfterTheVolumeIsModified(t *testing.T) {
	requireHostTools(t)
	for _, tc := range []struct {
		fstype  string
		mounted bool // grow while mounted, or at the next mount (online, after mounting)
	}{
		{"ext4", false},
		{"ext4", true},
		{"xfs", true},
		{"xfs", false},
	} {
		t.Run(fmt.Sprintf("%s/mounted=%v", tc.fstype, tc.mounted), func(t *testing.T) {
			// The kernel refuses an online ext4 resize without
			// CAP_SYS_RESOURCE (the unit grants it; some sandboxes, this
			// repository's CI among them, drop it). tether grows only
			// online, so there the mount must still succeed, keep the
			// data and say it did not grow, never fall back to an
			// offline resize.
			canGrow := tc.fstype != "ext4" || hasCapability(t, unix.CAP_SYS_RESOURCE)
			const vol = "vol-0d0d0d0d0d0d0d0d0"
			backing := volumeFile(t, vol, 320*mib)
			m := newMachine(t, "i-0dddddddddddddddd")
			dev := m.AttachLoopT(t, backing, vol)
			first := mount(t, m, vol, "grow", "--fstype", tc.fstype, "--format-if-blank")
			if first.Grown || !first.Formatted {
				t.Fatalf("first mount = %+v", first)
			}
			if err := os.WriteFile(m.Path(first.Mountpoint+"/keep"), []byte("kept"), 0o644); err != nil {
				t.Fatal(err)
			}
			before := fsSize(t, m.Path(first.Mountpoint))
			if !tc.mounted {
				if r := unmount(t, m, vol, "grow"); r.code != 0 {
					t.Fatal("unmount failed")
				}
			}
			// ModifyVolume: 320 MiB -> 640 MiB, as the world's EC2 grows
			// the backing file. Nobody tells the loop device: the mount
			// command has the kernel read its size again (an NVMe
			// namespace would have been resized by the kernel itself).
			if err := os.Truncate(backing, 640*mib); err != nil {
				t.Fatal(err)
			}

			got := mount(t, m, vol, "grow")
			if got.Grown != canGrow || got.Formatted || got.AlreadyMounted != tc.mounted || got.Device != dev || got.DeviceBytes != 640*mib ||
				(canGrow && got.GrowError != "") || (!canGrow && got.GrowError == "") {
				t.Errorf("mount after resize = %+v; want grown=%v (online grow possible here: %v)", got, canGrow, canGrow)
			}
			after := fsSize(t, m.Path(got.Mountpoint))
			if canGrow && after < before+250*mib {
				t.Errorf("filesystem %d bytes after growing from %d", after, before)
			}
			if !canGrow && after != before {
				t.Errorf("filesystem %d bytes, was %d: resized although online growth was refused", after, before)
			}
			if b, err := os.ReadFile(m.Path(got.Mountpoint + "/keep")); err != nil || string(b) != "kept" {
				t.Errorf("data after growing = %q, %v", b, err)
			}
			if again := mount(t, m, vol, "grow"); again.Grown || !again.AlreadyMounted {
				// (Without the capability the third mount tries again, and
				// fails again, the same way.)
				t.Errorf("third mount = %+v; want already mounted, not grown", again)
			}
		})
	}
}

func fsSize(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * st.Bsize
}

func TestRefusesAPartitionedDevice(t *testing.T) {
	requireHostTools(t)
	const vol = "vol-0e0e0e0e0e0e0e0e0"
	backing := volumeFile(t, vol, 64*mib)
	run(t, "sgdisk", "-n", "1:0:+16M", backing)
	before := sha(t, backing)
	m := newMachine(t, "i-0eeeeeeeeeeeeeeee")
	m.AttachLoopT(t, backing, vol)

	r := agent(t, m, "mount", "--volume-id", vol, "--name", "parted", "--json", "--format-if-blank")
	if r.code != agentproto.ExitRefused {
		t.Fatalf("exit %d, want 5 (refused)", r.code)
	}
	f := failure(t, r)
	if !strings.Contains(r.stderr, "gpt partition table") || f.Class != agentproto.ClassRefused || !strings.Contains(f.Found, "gpt") {
		t.Errorf("stderr %q and the failure line %+v should name the gpt partition table", r.stderr, f)
	}
	if _, ok := mountedAt(t, m, "/var/lib/tether/volumes/parted"); ok {
		t.Errorf("something is mounted")
	}
	if _, err := os.Stat(m.Path("/var/lib/tether/bindings/parted")); err == nil {
		t.Errorf("a binding was written for a refused device")
	}
	if sha(t, backing) != before {
		t.Errorf("the refused device's bytes changed")
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	requireHostTools(t)
	m := newMachine(t, "i-0fffffffffffffff0")
	const vol = "vol-0123456789abcdef0"
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"mount"},
		{"mount", "--volume-id", "vol-BAD", "--name", "data"},
		{"mount", "--volume-id", vol, "--name", "../../etc"},
		{"mount", "--volume-id", vol, "--name", "data; reboot"},
		{"mount", "--volume-id", vol, "--name", "$(touch /tmp/pwned)"},
		{"mount", "--volume-id", vol, "--name", "data", "--fstype", "btrfs"},
		{"mount", "--volume-id", vol, "--name", "data", "--device", "/dev/sda1"},
		{"mount", "--volume-id", vol, "--name", "data", "--wait", "soon"},
		{"mount", "--volume-id", vol, "--name", "data", "extra"},
		{"unmount", "--volume-id", vol},
		{"unmount", "--volume-id", vol, "--name", "-rf"},
		{"unmount", "--volume-id", vol, "--name", "data", "--socket", "relative.sock"},
		{"status", "--bogus"},
		{"serve", "--socket", "relative.sock"},
		{"serve", "--mount-wait", "0s"},
		{"serve", "--mount-wait", "5m"},
		{"mount", "--volume-id", vol, "--name", "data", "--attachment", "i-1;reboot"},
		{"mount", "--volume-id", vol, "--name", "data", "--size-gib", "-3"},
		{"mount", "--volume-id", vol, "--name", "data", "--lock-wait", "0s"},
		{"mount", "--volume-id", vol, "--name", "data", "--format-if-blank", "--format-owner", "app:staff"},
		{"mount", "--volume-id", vol, "--name", "data", "--format-if-blank", "--format-owner", "2147483647"},
		{"unmount", "--volume-id", vol, "--name", "data", "--attachment", "$(x)"},
		{"version", "extra"},
	} {
		if r := agent(t, m, args...); r.code != 2 {
			t.Errorf("tether-agent %q: exit %d, want 2", args, r.code)
		}
	}
	entries, err := os.ReadDir(m.Path("/var/lib/tether"))
	if err != nil || len(entries) != 0 {
		t.Errorf("/var/lib/tether after bad input: %v, %v; want it untouched", entries, err)
	}
	if r := agent(t, m, "help"); r.code != 0 || !strings.Contains(r.stdout, "unmount") {
		t.Errorf("help: exit %d, %q", r.code, r.stdout)
	}
	for _, cmd := range []string{"serve", "mount", "unmount", "status", "version"} {
		if r := agent(t, m, cmd, "-h"); r.code != 0 || !strings.Contains(r.stdout, "Usage: tether-agent "+cmd) {
			t.Errorf("%s -h: exit %d, %q; want its help and exit 0", cmd, r.code, r.stdout)
		}
	}
	// With --json a failure is one JSON line on stdout.
	r := agent(t, m, "mount", "--volume-id", "vol-BAD", "--name", "data", "--json")
	if f := failure(t, r); f.ExitCode != agentproto.ExitBadInput || f.Class != agentproto.ClassBadInput || !strings.Contains(f.Message, "vol-BAD") {
		t.Errorf("failure line = %+v", f)
	}
}

func TestDeviceNotAttached(t *testing.T) {
	requireHostTools(t)
	m := newMachine(t, "i-0fffffffffffffff1")
	r := agent(t, m, "mount", "--volume-id", "vol-0123456789abcdef0", "--name", "data", "--wait", "1s")
	if r.code != 4 {
		t.Fatalf("exit %d, want 4", r.code)
	}
	if !strings.Contains(r.stderr, "nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0") {
		t.Errorf("stderr does not say which device it waited for: %s", r.stderr)
	}
}

func TestStaleByIDLinkIsNotTrusted(t *testing.T) {
	requireHostTools(t)
	const volA, volB = "vol-0a0a0a0a0a0a0a0a0", "vol-0b0b0b0b0b0b0b0b0"
	backingB := volumeFile(t, volB, 64*mib)
	m := newMachine(t, "i-0fffffffffffffff2")
	devB := m.AttachLoopT(t, backingB, volB)
	// A's link was left pointing at the device that is now B's.
	if err := os.Symlink(devB, m.Path(sandbox.ByIDLink(volA))); err != nil {
		t.Fatal(err)
	}
	r := agent(t, m, "mount", "--volume-id", volA, "--name", "a", "--wait", "1s")
	if r.code != 4 || !strings.Contains(r.stderr, "stale") {
		t.Fatalf("exit %d (want 4, device not found), stderr should mention the stale link: %s", r.code, r.stderr)
	}
	if fs := blkid(t, backingB, "TYPE"); fs != "" {
		t.Errorf("B's device was formatted (%s) through A's stale link", fs)
	}
}

func TestConflictingMounts(t *testing.T) {
	requireHostTools(t)
	const volA, volB = "vol-0a0a0a0a0a0a0a0a1", "vol-0b0b0b0b0b0b0b0b1"
	m := newMachine(t, "i-0fffffffffffffff3")
	m.AttachLoopT(t, volumeFile(t, volA, 64*mib), volA)
	m.AttachLoopT(t, volumeFile(t, volB, 64*mib), volB)
	mount(t, m, volA, "data", "--format-if-blank")

	if r := agent(t, m, "mount", "--volume-id", volB, "--name", "data", "--wait", "2s", "--format-if-blank"); r.code != agentproto.ExitConflict || !strings.Contains(r.stderr, "already mounted") {
		t.Errorf("mount of another volume under a taken name: exit %d, %s", r.code, r.stderr)
	}
	if r := agent(t, m, "mount", "--volume-id", volA, "--name", "elsewhere", "--wait", "2s"); r.code != agentproto.ExitConflict || !strings.Contains(r.stderr, "already mounted at") {
		t.Errorf("mount of a mounted device under a second name: exit %d, %s", r.code, r.stderr)
	}
	if r := unmount(t, m, volB, "data"); r.code != agentproto.ExitConflict {
		t.Errorf("unmount naming the wrong volume id: exit %d, want 8", r.code)
	}
	// Without the binding, the device itself says which volume it is.
	if err := os.Remove(m.Path("/var/lib/tether/bindings/data")); err != nil {
		t.Fatal(err)
	}
	if r := unmount(t, m, volB, "data"); r.code != agentproto.ExitConflict || !strings.Contains(r.stderr, volA) {
		t.Errorf("unmount naming the wrong volume id, no binding: exit %d, want 8 naming %s: %s", r.code, volA, r.stderr)
	}
	if _, ok := mountedAt(t, m, "/var/lib/tether/volumes/data"); !ok {
		t.Errorf("the first mount is gone")
	}
}

// hasCapability reports whether this process holds capability bit cap.
func hasCapability(t *testing.T, cap uint) bool {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	return data[cap/32].Effective&(1<<(cap%32)) != 0
}
