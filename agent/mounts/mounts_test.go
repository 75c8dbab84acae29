package mounts

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tether-ecs/tether/test/testenv"
)

func TestDeviceNumberWantsABlockDevice(t *testing.T) {
	if _, err := DeviceNumber("/dev/null"); !errors.Is(err, ErrNotBlockDevice) {
		t.Errorf("DeviceNumber(/dev/null) = %v; want ErrNotBlockDevice", err)
	}
	if _, err := DeviceNumber(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("DeviceNumber(missing) = %v; want not exist", err)
	}
}

func TestOptions(t *testing.T) {
	if Options("xfs") != "nouuid" || Options("ext4") != "" {
		t.Errorf("Options: xfs %q, ext4 %q", Options("xfs"), Options("ext4"))
	}
}

// TestAtAndUnmountBusy uses a tmpfs: the mount table and the busy path are
// the same for any filesystem.
func TestAtAndUnmountBusy(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if _, ok, err := At(dir); ok || err != nil {
		t.Fatalf("At(unmounted dir) = %v, %v", ok, err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	e, ok, err := At(dir)
	if err != nil || !ok || e.FSType != "tmpfs" || e.Mountpoint != dir {
		t.Fatalf("At(%s) = %+v, %v, %v", dir, e, ok, err)
	}
	under, err := Under(filepath.Dir(dir))
	if err != nil || len(under) != 1 || under[0].Mountpoint != dir {
		t.Errorf("Under(parent) = %+v, %v", under, err)
	}

	f, err := os.Create(filepath.Join(dir, "open"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Unmount(dir); !errors.Is(err, ErrBusy) {
		t.Fatalf("Unmount with an open file = %v; want ErrBusy", err)
	}
	f.Close()
	if err := Unmount(dir); err != nil {
		t.Fatalf("Unmount after closing: %v", err)
	}
	if _, ok, _ := At(dir); ok {
		t.Errorf("still mounted")
	}
}
