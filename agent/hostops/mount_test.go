package hostops

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tether-ecs/tether/agent/blockdev"
	"github.com/tether-ecs/tether/agent/driver"
	"github.com/tether-ecs/tether/agent/fsys"
	"github.com/tether-ecs/tether/agent/mounts"
	"github.com/tether-ecs/tether/test/testenv"
)

// attached is a loop device standing for an attached EBS volume, with its
// by-id link in a private /dev tree (the real /sys confirms its identity).
type attached struct {
	finder  blockdev.Finder
	dev     string
	link    string
	backing string // the file the loop device reads (the world's volume bytes)
}

func attach(t *testing.T, volumeID string, size int64) attached {
	t.Helper()
	dir := t.TempDir()
	backing := filepath.Join(dir, volumeID+".img")
	if err := os.WriteFile(backing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", backing).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := string(bytes.TrimSpace(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	f := blockdev.Finder{DevDir: filepath.Join(dir, "dev"), SysDir: "/sys", AllowLoop: true}
	link := f.ByIDLink(volumeID)
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dev, link); err != nil {
		t.Fatal(err)
	}
	return attached{finder: f, dev: dev, link: link, backing: backing}
}

// TestMountAttachedNeverFormats drives the driver's path: a bound volume is
// remounted when its device is here, ErrNotAttached when it is not, and a
// blank device is never formatted.
func TestMountAttachedNeverFormats(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "losetup", "blkid", "mkfs.ext4", "e2fsck", "wipefs")
	const vol = "vol-0123456789abcdef1"
	a := attach(t, vol, 64<<20)
	h, err := New(Config{Root: t.TempDir(), Finder: a.finder, Runner: fsys.ExecRunner{}, Docker: &fakeDocker{}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, ok, _ := mounts.At(h.Mountpoint("data")); ok {
			_ = mounts.Detach(h.Mountpoint("data"))
		}
		if err := unsealMountpoint(h.Mountpoint("data")); err != nil {
			t.Errorf("unseal for cleanup: %v", err)
		}
	})
	ctx := context.Background()

	if err := h.MountAttached(ctx, "data"); !errors.Is(err, driver.ErrNotAttached) {
		t.Fatalf("MountAttached without a binding = %v; want ErrNotAttached", err)
	}
	res, err := h.MountVolume(ctx, MountRequest{VolumeID: vol, Name: "data", Wait: time.Second, FormatIfBlank: true})
	if err != nil || !res.Formatted {
		t.Fatalf("MountVolume = %+v, %v", res, err)
	}
	if dev, ok, err := h.IsMounted("data"); !ok || err != nil || dev != a.dev {
		t.Fatalf("IsMounted = %q, %v, %v; want %s", dev, ok, err, a.dev)
	}
	if err := os.WriteFile(h.Mountpoint("data")+"/f", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.Unmount(ctx, "data"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := h.IsMounted("data"); ok {
		t.Fatal("mounted after Unmount")
	}
	wantSealed(t, h.Mountpoint("data"))
	if err := h.Unmount(ctx, "data"); err != nil {
		t.Fatalf("second Unmount = %v; want nothing to do", err)
	}

	if err := h.MountAttached(ctx, "data"); err != nil {
		t.Fatalf("MountAttached with the device here: %v", err)
	}
	if b, err := os.ReadFile(h.Mountpoint("data") + "/f"); err != nil || string(b) != "x" {
		t.Fatalf("data after MountAttached = %q, %v", b, err)
	}
	if err := h.MountAttached(ctx, "data"); err != nil {
		t.Fatalf("MountAttached when mounted = %v; want nil", err)
	}
	if err := h.Unmount(ctx, "data"); err != nil {
		t.Fatal(err)
	}

	// Detached: the link is gone.
	if err := os.Remove(a.link); err != nil {
		t.Fatal(err)
	}
	err = h.MountAttached(ctx, "data")
	if !errors.Is(err, driver.ErrNotAttached) {
		t.Fatalf("MountAttached without the device = %v; want ErrNotAttached", err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte("nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef1")) {
		t.Errorf("error %q does not say which device it looked for", err)
	}

	// Attached again, but blank (wiped): never formatted on this path.
	if err := os.Symlink(a.dev, a.link); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("wipefs", "-a", a.dev).CombinedOutput(); err != nil {
		t.Fatalf("wipefs: %v %s", err, out)
	}
	if err := h.MountAttached(ctx, "data"); !errors.Is(err, fsys.ErrNotFormatted) {
		t.Fatalf("MountAttached on a blank device = %v; want ErrNotFormatted", err)
	}
	if fs, _ := exec.Command("blkid", "-p", "-o", "value", "-s", "TYPE", a.dev).Output(); len(bytes.TrimSpace(fs)) != 0 {
		t.Errorf("the blank device got %s", fs)
	}
}
