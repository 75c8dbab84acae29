package hostops

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/tether-ecs/tether/agent/fsys"
	"github.com/tether-ecs/tether/agent/mounts"
	"github.com/tether-ecs/tether/test/testenv"
)

// TestMountCommandGrowsAMountedVolume: online grow with real parts. A loop
// device stands for an attached EBS volume (its backing file is what the
// world's EC2 grows on ModifyVolume); its ext4 or xfs filesystem is mounted
// by the mount command, written, and held open (a container using it).
// The backing file then grows as EC2's modification makes it grow, and the
// mount command runs again: the kernel is told the new size, the
// filesystem grows online, the result says so with the new sizes, the data
// and the open file are intact, and the mount is the very same one (same
// mount id, same generation: nothing was unmounted or remounted). Once more,
// and nothing grows.
func TestMountCommandGrowsAMountedVolume(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "losetup", "blkid", "mkfs.ext4", "mkfs.xfs", "e2fsck", "resize2fs", "xfs_growfs", "wipefs")
	const mib = int64(1) << 20
	for i, fstype := range []string{"ext4", "xfs"} {
		t.Run(fstype, func(t *testing.T) {
			vol := []string{"vol-0123456789abcdef4", "vol-0123456789abcdef5"}[i]
			const before, after = 320 * mib, 640 * mib // mkfs.xfs wants at least 300 MB
			a := attach(t, vol, before)
			backing := a.backing
			h, err := New(Config{Root: t.TempDir(), Finder: a.finder, Runner: fsys.ExecRunner{}, Docker: &fakeDocker{}, Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			mp := h.Mountpoint("data")
			t.Cleanup(func() {
				if _, ok, _ := mounts.At(mp); ok {
					if err := mounts.Detach(mp); err != nil {
						t.Errorf("cleanup: %v", err)
					}
				}
				if err := unsealMountpoint(mp); err != nil {
					t.Errorf("unseal for cleanup: %v", err)
				}
			})
			ctx := context.Background()
			req := MountRequest{VolumeID: vol, Name: "data", FSType: fstype, Wait: time.Second, FormatIfBlank: true, Attachment: "i-0aaaaaaaaaaaaaaa1:1700000000000"}
			first, err := h.MountVolume(ctx, req)
			if err != nil || !first.Formatted || first.Grown || first.DeviceBytes != before || first.FilesystemBytes <= 0 || first.FilesystemBytes > before {
				t.Fatalf("first mount: %+v, %v", first, err)
			}
			if err := os.WriteFile(filepath.Join(mp, "kept"), []byte("data before the grow"), 0o600); err != nil {
				t.Fatal(err)
			}
			// A container's open file on the volume.
			held, err := os.OpenFile(filepath.Join(mp, "held"), os.O_CREATE|os.O_RDWR, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			if _, err := held.WriteString("open across the grow"); err != nil {
				t.Fatal(err)
			}
			id := mountID(t, mp)

			// EC2's modification: the backing file grows (ec2sim growSparse).
			if err := os.Truncate(backing, after); err != nil {
				t.Fatal(err)
			}
			grown, err := h.MountVolume(ctx, req)
			if err != nil {
				t.Fatalf("mount again after the grow: %v", err)
			}
			if fstype == "ext4" && !hasCapability(t, unix.CAP_SYS_RESOURCE) {
				// The kernel resizes a mounted ext4 only for
				// CAP_SYS_RESOURCE (the agent's unit grants it): without
				// it the failure is reported, the mount stands untouched.
				if !grown.AlreadyMounted || grown.Grown || grown.GrowError == "" || grown.DeviceBytes != after || grown.FilesystemBytes != first.FilesystemBytes {
					t.Errorf("mount again without CAP_SYS_RESOURCE: %+v", grown)
				}
				if got := mountID(t, mp); got != id {
					t.Errorf("mount id %d after the failed grow, %d before: remounted", got, id)
				}
				if b, err := os.ReadFile(filepath.Join(mp, "kept")); err != nil || string(b) != "data before the grow" {
					t.Errorf("data after the failed grow: %q, %v", b, err)
				}
				t.Log("ext4 grows online only with CAP_SYS_RESOURCE, which this process lacks: checked that the failure is reported and the mount kept")
				return
			}
			if !grown.AlreadyMounted || grown.Formatted || !grown.Grown || grown.GrowError != "" || grown.Generation != first.Generation {
				t.Errorf("mount again after the grow: %+v", grown)
			}
			if grown.DeviceBytes != after || grown.FilesystemBytes <= before || after-grown.FilesystemBytes >= 64*mib {
				t.Errorf("sizes after the grow: device %d, filesystem %d; want device %d and the filesystem near it", grown.DeviceBytes, grown.FilesystemBytes, after)
			}
			var st unix.Statfs_t
			if err := unix.Statfs(mp, &st); err != nil {
				t.Fatal(err)
			}
			if total := int64(st.Blocks) * st.Bsize; total <= before {
				t.Errorf("statfs says %d bytes after growing past %d", total, before)
			}
			if got := mountID(t, mp); got != id {
				t.Errorf("mount id %d after the grow, %d before: remounted", got, id)
			}
			if b, err := os.ReadFile(filepath.Join(mp, "kept")); err != nil || string(b) != "data before the grow" {
				t.Errorf("data after the grow: %q, %v", b, err)
			}
			if _, err := held.WriteString(", and after"); err != nil {
				t.Errorf("the open file after the grow: %v", err)
			}
			if err := held.Sync(); err != nil {
				t.Errorf("sync of the open file after the grow: %v", err)
			}
			// Room the old filesystem did not have.
			big := make([]byte, before)
			if err := os.WriteFile(filepath.Join(mp, "big"), big, 0o600); err != nil {
				t.Errorf("writing %d bytes into the grown filesystem: %v", before, err)
			}

			again, err := h.MountVolume(ctx, req)
			if err != nil || !again.AlreadyMounted || again.Grown || again.FilesystemBytes != grown.FilesystemBytes || again.Generation != first.Generation {
				t.Errorf("mount once more: %+v, %v", again, err)
			}
			if got := mountID(t, mp); got != id {
				t.Errorf("mount id %d after the second mount, %d before", got, id)
			}
		})
	}
}

// mountID is the kernel's id of the mount at mp (a remount of any kind
// gives a new one).
func mountID(t *testing.T, mp string) int {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mp))
	if err != nil || len(ms) != 1 {
		t.Fatalf("mountinfo of %s: %v, %d entries", mp, err, len(ms))
	}
	return ms[0].ID
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

// A device found only by its Xen name (no serial proves it) must have the
// volume's size exactly, unless NAME is already mounted from it: then its
// identity was confirmed at that mount, and after a grow its size is no
// longer the --size-gib the reconciler knew (or not yet the new one).
func TestXenDeviceGrownWhileMountedIsNotRefused(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "losetup", "blkid", "mkfs.xfs", "xfs_growfs")
	const mib = int64(1) << 20
	const vol = "vol-0123456789abcdef6"
	a := attach(t, vol, 320*mib)
	// A device node that is not named like a loop or NVMe device: found by
	// the attachment's device name only, as a Xen device is.
	var st unix.Stat_t
	if err := unix.Stat(a.dev, &st); err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(t.TempDir(), "xvdf")
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(st.Rdev)); err != nil {
		t.Fatalf("mknod %s: %v", node, err)
	}
	if err := os.Remove(a.link); err != nil { // no by-id link: a Xen guest has none
		t.Fatal(err)
	}
	if err := os.Symlink(node, filepath.Join(a.finder.DevDir, "xvdf")); err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Root: t.TempDir(), Finder: a.finder, Runner: fsys.ExecRunner{}, Docker: &fakeDocker{}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	mp := h.Mountpoint("data")
	t.Cleanup(func() {
		if _, ok, _ := mounts.At(mp); ok {
			_ = mounts.Detach(mp)
		}
		_ = unsealMountpoint(mp)
	})
	// An xfs made elsewhere (the grant is never honoured for a Xen device).
	if out, err := exec.Command("mkfs.xfs", "-q", a.dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v %s", err, out)
	}
	ctx := context.Background()
	req := MountRequest{VolumeID: vol, Name: "data", DeviceName: "/dev/xvdf", SizeGiB: 1, Wait: time.Second}
	if _, err := h.MountVolume(ctx, req); !errors.Is(err, ErrNotTheVolume) {
		t.Fatalf("a 320 MiB device for a 1 GiB volume: %v, want ErrNotTheVolume", err)
	}
	if err := os.Truncate(a.backing, 1<<30); err != nil {
		t.Fatal(err)
	}
	if err := a.finder.RefreshSize(a.dev); err != nil {
		t.Fatal(err)
	}
	first, err := h.MountVolume(ctx, req)
	if err != nil || first.Device != node || first.AlreadyMounted {
		t.Fatalf("mount of the 1 GiB device: %+v, %v", first, err)
	}
	// EC2 grows it to 2 GiB; a Xen guest's kernel resizes the device by
	// itself (here: the loop device under the node is told); the
	// reconciler still says 1, or already 2.
	if err := os.Truncate(a.backing, 2<<30); err != nil {
		t.Fatal(err)
	}
	if err := a.finder.RefreshSize(a.dev); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1, 2} {
		req.SizeGiB = size
		got, err := h.MountVolume(ctx, req)
		if err != nil || !got.AlreadyMounted || got.DeviceBytes != 2<<30 || got.FilesystemBytes <= 1<<30 || got.Generation != first.Generation {
			t.Errorf("mount again with --size-gib %d after the grow: %+v, %v", size, got, err)
		}
	}
}
