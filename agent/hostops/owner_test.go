package hostops

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tether-ecs/tether/agent/fsys"
	"github.com/tether-ecs/tether/agent/mounts"
	"github.com/tether-ecs/tether/internal/volspec"
	"github.com/tether-ecs/tether/test/testenv"
)

// rootOf is the owner and mode of dir.
func rootOf(t *testing.T, dir string) (uid, gid uint32, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, fi.Mode() & (os.ModePerm | os.ModeSetgid | os.ModeSetuid | os.ModeSticky)
}

// TestFormatOwnerOnlyOnTheFirstFormat: --format-owner gives the root of a
// filesystem the mount itself made to the container's user (UID:GID:
// root:GID 2775; UID: UID:0 0755), on ext4 and xfs; a filesystem that was
// there is never changed, grant or not; a bad value is refused before
// anything is written.
func TestFormatOwnerOnlyOnTheFirstFormat(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "losetup", "blkid", "mkfs.ext4", "mkfs.xfs", "e2fsck", "wipefs")
	for _, fstype := range []string{volspec.FSExt4, volspec.FSXFS} {
		t.Run(fstype, func(t *testing.T) {
			const vol, vol2 = "vol-0123456789abcdef4", "vol-0123456789abcdef5"
			a := attach(t, vol, 320<<20) // mkfs.xfs wants 300 MiB
			b := attach(t, vol2, 320<<20)
			root := t.TempDir()
			newHost := func(f attached) *Host {
				h, err := New(Config{Root: root, Finder: f.finder, Runner: fsys.ExecRunner{}, Docker: &fakeDocker{}, Logger: quiet()})
				if err != nil {
					t.Fatal(err)
				}
				return h
			}
			h, h2 := newHost(a), newHost(b)
			for _, name := range []string{"data", "other"} {
				t.Cleanup(func() {
					if _, ok, _ := mounts.At(h.Mountpoint(name)); ok {
						_ = mounts.Detach(h.Mountpoint(name))
					}
					_ = unsealMountpoint(h.Mountpoint(name))
				})
			}
			ctx := context.Background()
			req := MountRequest{VolumeID: vol, Name: "data", FSType: fstype, Wait: time.Second, FormatIfBlank: true}

			// Bad values: bad input, nothing written (no filesystem, no binding).
			for _, bad := range []string{"app", "1000:staff", "-1", "2147483647", "1000:", "01"} {
				r := req
				r.FormatOwner = bad
				if _, err := h.MountVolume(ctx, r); !errors.Is(err, ErrBadInput) {
					t.Fatalf("--format-owner %q: %v; want bad input", bad, err)
				}
			}
			if out, _ := exec.Command("blkid", "-p", "-o", "value", "-s", "TYPE", a.dev).Output(); len(bytes.TrimSpace(out)) != 0 {
				t.Fatalf("a refused mount left %s on the device", out)
			}
			if _, ok, err := h.readBinding("data"); ok || err != nil {
				t.Fatalf("a refused mount wrote a binding (%v, %v)", ok, err)
			}

			// First format with UID:GID.
			req.FormatOwner = "1000:1000"
			res, err := h.MountVolume(ctx, req)
			if err != nil || !res.Formatted {
				t.Fatalf("MountVolume = %+v, %v", res, err)
			}
			mp := h.Mountpoint("data")
			if uid, gid, mode := rootOf(t, mp); uid != 0 || gid != 1000 || mode != 0o775|os.ModeSetgid {
				t.Fatalf("new filesystem's root: %d:%d %s; want 0:1000 drwxrwsr-x", uid, gid, mode)
			}
			if fstype == volspec.FSExt4 {
				if uid, gid, mode := rootOf(t, filepath.Join(mp, "lost+found")); uid != 0 || gid != 0 || mode != 0o700 {
					t.Errorf("lost+found: %d:%d %s; want 0:0 0700, untouched", uid, gid, mode)
				}
			}
			// Mounted again (already mounted, then after an unmount) with
			// another owner and the grant: the filesystem is there, unchanged.
			req.FormatOwner = "2000:2000"
			if res, err := h.MountVolume(ctx, req); err != nil || !res.AlreadyMounted || res.Formatted {
				t.Fatalf("second MountVolume = %+v, %v", res, err)
			}
			if err := h.Unmount(ctx, "data"); err != nil {
				t.Fatal(err)
			}
			if res, err := h.MountVolume(ctx, req); err != nil || res.Formatted || res.AlreadyMounted {
				t.Fatalf("MountVolume after unmount = %+v, %v", res, err)
			}
			if uid, gid, mode := rootOf(t, mp); uid != 0 || gid != 1000 || mode != 0o775|os.ModeSetgid {
				t.Fatalf("existing filesystem's root after a mount with --format-owner 2000:2000: %d:%d %s; want it unchanged (0:1000 drwxrwsr-x)", uid, gid, mode)
			}
			if err := h.Unmount(ctx, "data"); err != nil {
				t.Fatal(err)
			}

			// UID alone: UID:0 0755.
			if res, err := h2.MountVolume(ctx, MountRequest{VolumeID: vol2, Name: "other", FSType: fstype, Wait: time.Second,
				FormatIfBlank: true, FormatOwner: "1000"}); err != nil || !res.Formatted {
				t.Fatalf("MountVolume other = %+v, %v", res, err)
			}
			if uid, gid, mode := rootOf(t, h2.Mountpoint("other")); uid != 1000 || gid != 0 || mode != 0o755 {
				t.Fatalf("new filesystem's root with --format-owner 1000: %d:%d %s; want 1000:0 0755", uid, gid, mode)
			}
			if err := h2.Unmount(ctx, "other"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
