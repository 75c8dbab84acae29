package main_test

// Regression tests of issue 11 ("Fence by facts"), the agent's findings:
// each failed on the agent before the fix. They run the real binary in
// sandbox machines on loop devices with real ext4 and real mount
// namespaces.

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/testenv"
)

// Finding 1: blkid exits 2 for a lost primary superblock and for raw data
// as for a blank device, and mount formatted them. Neither is ever
// formatted, with or without the grant.
func TestMountNeverFormatsATornSuperblockOrRawData(t *testing.T) {
	requireHostTools(t)
	cases := map[string]func(t *testing.T, backing string){
		"torn ext4 superblock": func(t *testing.T, backing string) {
			run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", backing)
			f, err := os.OpenFile(backing, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(make([]byte, 1024), 1024); err != nil {
				t.Fatal(err)
			}
		},
		"raw data without a signature": func(t *testing.T, backing string) {
			f, err := os.OpenFile(backing, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte(strings.Repeat("journal entry 0001 ", 1000)), 8*mib); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, setup := range cases {
		t.Run(name, func(t *testing.T) {
			const vol = "vol-0a0b0c0d0e0f01011"
			backing := volumeFile(t, vol, 256*mib)
			setup(t, backing)
			if fs := blkid(t, backing, "TYPE"); fs != "" {
				t.Fatalf("setup: blkid finds %q", fs)
			}
			before := sha(t, backing)
			m := newMachine(t, "i-0f0f0f0f0f0f0f0f1")
			m.AttachLoopT(t, backing, vol)
			for _, grant := range []bool{false, true} {
				args := []string{"mount", "--volume-id", vol, "--name", "data", "--wait", "10s", "--json"}
				if grant {
					args = append(args, "--format-if-blank")
				}
				r := agent(t, m, args...)
				if r.code != agentproto.ExitNotFormatted {
					t.Fatalf("mount (grant %v): exit %d, want %d (not formatted)", grant, r.code, agentproto.ExitNotFormatted)
				}
				f := failure(t, r)
				if f.Class != agentproto.ClassNotFormatted || !strings.Contains(f.Found, "non-zero data") || !strings.Contains(f.Message, "e2fsck -n -b 32768") {
					t.Errorf("failure (grant %v) = %+v; want what was found and how to proceed", grant, f)
				}
			}
			if sha(t, backing) != before {
				t.Fatal("the device was written to")
			}
			if _, ok := mountedAt(t, m, "/var/lib/tether/volumes/data"); ok {
				t.Fatal("something is mounted")
			}
		})
	}
}

// Formatting is a grant: a blank device without --format-if-blank is
// refused with exit 6 saying what was found and how to proceed, and
// nothing is written; with it, the device is formatted.
func TestBlankDeviceIsFormattedOnlyWithTheGrant(t *testing.T) {
	requireHostTools(t)
	const vol = "vol-0a0b0c0d0e0f01012"
	backing := volumeFile(t, vol, 64*mib)
	m := newMachine(t, "i-0f0f0f0f0f0f0f0f2")
	m.AttachLoopT(t, backing, vol)
	r := agent(t, m, "mount", "--volume-id", vol, "--name", "data", "--wait", "10s", "--json")
	if r.code != agentproto.ExitNotFormatted {
		t.Fatalf("mount of a blank device without the grant: exit %d, want 6", r.code)
	}
	if f := failure(t, r); !strings.Contains(f.Found, "zeros") || !strings.Contains(f.Message, "--format-if-blank") {
		t.Errorf("failure = %+v", f)
	}
	if fs := blkid(t, backing, "TYPE"); fs != "" {
		t.Fatalf("formatted (%s) without the grant", fs)
	}
	res := mount(t, m, vol, "data", "--format-if-blank")
	if !res.Formatted || res.FSType != "ext4" || res.Generation != 1 {
		t.Fatalf("mount with the grant = %+v", res)
	}
	// nosuid,nodev unless the volume asks otherwise.
	if opts := mountOptions(t, m, res.Mountpoint); !strings.Contains(opts, "nosuid") || !strings.Contains(opts, "nodev") {
		t.Errorf("mount options %q; want nosuid,nodev", opts)
	}
}

// mountOptions are the per-mount options of mountpoint in m.
func mountOptions(t *testing.T, m interface{ Pid() int }, mountpoint string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(m.Pid()) + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[4] == mountpoint {
			return f[5]
		}
	}
	return ""
}

// Finding 2: another mount namespace keeps the filesystem mounted with a
// process writing in it; unmount said "unmounted" (exit 0) and the
// reconciler detached. Now: exit 3, naming the holder, with or without
// --force; once it lets go, exit 0 and released.
func TestUnmountIsBusyWhileAnotherNamespaceHoldsTheFilesystem(t *testing.T) {
	requireHostTools(t)
	testenv.RequireCommands(t, "unshare")
	const vol = "vol-0a0b0c0d0e0f01013"
	m := newMachine(t, "i-0f0f0f0f0f0f0f0f3")
	m.AttachLoopT(t, volumeFile(t, vol, 64*mib), vol)
	res := mount(t, m, vol, "data", "--format-if-blank")

	// A process that unshared its mount namespace while the volume was
	// mounted, and keeps writing there.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writer := m.Command(ctx, "unshare", "--mount", "--propagation", "private", "sh", "-c",
		"while :; do echo row >> "+res.Mountpoint+"/log; sleep 0.1; done")
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	writerDone := make(chan struct{})
	go func() { _ = writer.Wait(); close(writerDone) }()
	defer func() { cancel(); <-writerDone }()
	eventually(t, "the writer to write", func() bool {
		b, err := os.ReadFile(m.Path(res.Mountpoint + "/log"))
		return err == nil && len(b) > 0
	})

	for _, force := range []bool{false, true} {
		args := []string{}
		if force {
			args = append(args, "--force")
		}
		r := unmount(t, m, vol, "data", args...)
		if r.code != agentproto.ExitBusy {
			t.Fatalf("unmount (force %v) while another namespace writes to the filesystem: exit %d, want 3", force, r.code)
		}
		f := failure(t, r)
		named := false
		for _, h := range f.Holders {
			if h.Kind == "namespace" && h.PID > 0 && h.Command != "" {
				named = true
			}
		}
		if !named || !strings.Contains(f.Message, "another mount namespace") {
			t.Errorf("unmount (force %v): holders %+v, message %q; want the namespace with its pid and command", force, f.Holders, f.Message)
		}
	}
	// The writer goes: the kernel lets go; now it is safe to detach.
	cancel()
	<-writerDone
	eventually(t, "the writer's namespace to go", func() bool {
		return unmountQuiet(m, vol) == 0
	})
	st := agent(t, m, "status", "--json")
	if !strings.Contains(st.stdout, `"released":true`) || !strings.Contains(st.stdout, `"seal":"sealed"`) {
		t.Errorf("status after the unmount: %s; want released and sealed", st.stdout)
	}
}

// Finding 2 (after --force): a lazy unmount leaves the filesystem alive
// while a process keeps a file open in it; unmount said "unmounted" then,
// and again on the next call. Now both are busy until the process lets go.
func TestLazyUnmountIsNotAnUnmount(t *testing.T) {
	requireHostTools(t)
	const vol = "vol-0a0b0c0d0e0f01014"
	m := newMachine(t, "i-0f0f0f0f0f0f0f0f4")
	m.AttachLoopT(t, volumeFile(t, vol, 64*mib), vol)
	res := mount(t, m, vol, "data", "--format-if-blank")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	holder := m.Command(ctx, "sh", "-c", "exec 3>"+res.Mountpoint+"/open; exec sleep 600")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	holderDone := make(chan struct{})
	go func() { _ = holder.Wait(); close(holderDone) }()
	defer func() { cancel(); <-holderDone }()
	eventually(t, "the file to be open", func() bool {
		_, err := os.Stat(m.Path(res.Mountpoint + "/open"))
		return err == nil
	})

	r := unmount(t, m, vol, "data")
	if r.code != agentproto.ExitBusy || !strings.Contains(r.stderr, "sleep") {
		t.Fatalf("unmount with a file open: exit %d (want 3 naming the process): %s", r.code, r.stderr)
	}
	r = unmount(t, m, vol, "data", "--force")
	if r.code != agentproto.ExitBusy {
		t.Fatalf("unmount --force (lazy) with a file open: exit %d, want 3: the filesystem is alive", r.code)
	}
	if _, ok := mountedAt(t, m, res.Mountpoint); ok {
		t.Fatal("still at the mount point after the lazy unmount")
	}
	if r := unmount(t, m, vol, "data"); r.code != agentproto.ExitBusy {
		t.Fatalf("unmount after a lazy unmount, the file still open: exit %d, want 3", r.code)
	}
	cancel()
	<-holderDone
	eventually(t, "the kernel to let go", func() bool { return unmountQuiet(m, vol) == 0 })
}

// unmountQuiet runs unmount without logging (for bounded polls).
func unmountQuiet(m interface {
	Command(context.Context, string, ...string) *exec.Cmd
}, vol string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := m.Command(ctx, agentBin, "unmount", "--volume-id", vol, "--name", "data", "--json")
	cmd.Env = append(os.Environ(), "TETHER_LOOP_DEVICES=1")
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return -1
	}
	return 0
}

// eventually polls cond (bounded) and fails the test with what it waited for.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// version --json reports the agent's version and protocol.
func TestVersion(t *testing.T) {
	requireHostTools(t)
	m := newMachine(t, "i-0f0f0f0f0f0f0f0f5")
	r := agent(t, m, "version", "--json")
	out, ok := agentproto.ParseOutput(r.stdout)
	v, vok := out.Version()
	if r.code != 0 || !ok || !vok || v.Protocol != agentproto.Protocol || v.Version == "" {
		t.Fatalf("version --json: exit %d, %q", r.code, r.stdout)
	}
}

// A released attachment is only ever detached: a mount command for the very
// attachment an unmount released (one a reconciler pass decided on before
// the release) is refused with ExitReleased and mounts nothing, so it cannot
// slip in between the release and the detach; the same volume attached anew
// (another token) mounts.
func TestReleasedAttachmentIsNeverMountedAgain(t *testing.T) {
	requireHostTools(t)
	const vol = "vol-0e0e0e0e0e0e0e0e0"
	backing := volumeFile(t, vol, 64*mib)
	m := newMachine(t, "i-0eeeeeeeeeeeeeeee")
	m.AttachLoopT(t, backing, vol)
	first := mount(t, m, vol, "fenced", "--format-if-blank", "--attachment", "i-0eeeeeeeeeeeeeeee:1000")
	if r := unmount(t, m, vol, "fenced", "--attachment", "i-0eeeeeeeeeeeeeeee:1000"); r.code != 0 {
		t.Fatalf("unmount: exit %d", r.code)
	}
	r := agent(t, m, "mount", "--volume-id", vol, "--name", "fenced", "--wait", "10s", "--json", "--attachment", "i-0eeeeeeeeeeeeeeee:1000")
	out, ok := agentproto.ParseOutput(r.stdout)
	if r.code != agentproto.ExitReleased || !ok || out.Error == nil || out.Error.Class != agentproto.ClassReleased {
		t.Fatalf("mount of the released attachment: exit %d %s; want %d (released)", r.code, r.stdout, agentproto.ExitReleased)
	}
	if _, mounted := mountedAt(t, m, first.Mountpoint); mounted {
		t.Fatalf("the released attachment was mounted again")
	}
	again := mount(t, m, vol, "fenced", "--attachment", "i-0eeeeeeeeeeeeeeee:2000")
	if again.Formatted || again.Generation != first.Generation+1 {
		t.Fatalf("mount of the new attachment = %+v; want generation %d, not formatted", again, first.Generation+1)
	}
}

// The same for an attachment that was never mounted on the host: a pass
// attached the volume and did not get to send its mount, another pass
// unmounted (nothing was mounted: released all the same), and the first
// pass's mount for that attachment arrives late. It is refused as
// released; the release is recorded even with no binding before it.
func TestReleaseOfANeverMountedAttachmentIsRecorded(t *testing.T) {
	requireHostTools(t)
	const vol = "vol-0e0e0e0e0e0e0e0e1"
	backing := volumeFile(t, vol, 64*mib)
	m := newMachine(t, "i-0eeeeeeeeeeeeeee1")
	m.AttachLoopT(t, backing, vol)
	if r := unmount(t, m, vol, "never", "--attachment", "i-0eeeeeeeeeeeeeee1:1000"); r.code != 0 {
		t.Fatalf("unmount of a volume never mounted here: exit %d", r.code)
	}
	r := agent(t, m, "mount", "--volume-id", vol, "--name", "never", "--wait", "10s", "--json", "--format-if-blank", "--attachment", "i-0eeeeeeeeeeeeeee1:1000")
	out, ok := agentproto.ParseOutput(r.stdout)
	if r.code != agentproto.ExitReleased || !ok || out.Error == nil || out.Error.Class != agentproto.ClassReleased {
		t.Fatalf("mount of the released, never mounted attachment: exit %d %s; want %d (released)", r.code, r.stdout, agentproto.ExitReleased)
	}
	again := mount(t, m, vol, "never", "--format-if-blank", "--attachment", "i-0eeeeeeeeeeeeeee1:2000")
	if !again.Formatted || again.Generation != 1 {
		t.Fatalf("mount of the new attachment = %+v; want the first format, generation 1", again)
	}
}
