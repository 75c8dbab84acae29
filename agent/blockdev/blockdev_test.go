package blockdev

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tree is a fake /dev and /sys for one test.
type tree struct {
	t *testing.T
	Finder
}

func newTree(t *testing.T) tree {
	dir := t.TempDir()
	f := Finder{DevDir: filepath.Join(dir, "dev"), SysDir: filepath.Join(dir, "sys"), AllowLoop: true}
	for _, d := range []string{filepath.Join(f.DevDir, "disk", "by-id"), filepath.Join(f.SysDir, "class", "block")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return tree{t: t, Finder: f}
}

func (tr tree) write(path, content string) {
	tr.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tr.t.Fatal(err)
	}
}

// nvme adds /dev/<name> with the controller serial as sysfs pads it.
func (tr tree) nvme(name, serial string) string {
	dev := filepath.Join(tr.DevDir, name)
	tr.write(dev, "")
	tr.write(filepath.Join(tr.SysDir, "class", "block", name, "device", "serial"), serial+"        \n")
	return dev
}

// loop adds /dev/<name> backed by file.
func (tr tree) loop(name, backing string) string {
	dev := filepath.Join(tr.DevDir, name)
	tr.write(dev, "")
	tr.write(filepath.Join(tr.SysDir, "class", "block", name, "loop", "backing_file"), backing+"\n")
	return dev
}

// link makes a by-id style link (relative, as udev does).
func (tr tree) link(path, target string) {
	tr.t.Helper()
	rel, err := filepath.Rel(filepath.Dir(path), target)
	if err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Symlink(rel, path); err != nil {
		tr.t.Fatal(err)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

const (
	vol   = "vol-0123456789abcdef0"
	other = "vol-0fedcba9876543210"
)

func TestFind(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(tr tree) (hint, want string)
		wantHow string
	}{
		{
			name: "by-id link to the NVMe device with the volume's serial",
			setup: func(tr tree) (string, string) {
				dev := tr.nvme("nvme1n1", "vol0123456789abcdef0")
				tr.link(tr.ByIDLink(vol), dev)
				return "", dev
			},
			wantHow: "by-id",
		},
		{
			name: "by-id link to a loop device whose backing file names the volume",
			setup: func(tr tree) (string, string) {
				dev := tr.loop("loop3", "/var/lib/world/volumes/"+vol+".img")
				tr.link(tr.ByIDLink(vol), dev)
				return "", dev
			},
			wantHow: "by-id",
		},
		{
			name: "stale by-id link is passed over for the serial scan",
			setup: func(tr tree) (string, string) {
				stale := tr.nvme("nvme1n1", "vol0fedcba9876543210")
				tr.link(tr.ByIDLink(vol), stale)
				return "", tr.nvme("nvme2n1", "vol0123456789abcdef0")
			},
			wantHow: "nvme-serial",
		},
		{
			name: "no link: NVMe serial scan",
			setup: func(tr tree) (string, string) {
				tr.nvme("nvme0n1", "AWS1234567890ABCDEF") // instance store: not EBS
				return "", tr.nvme("nvme3n1", "vol0123456789abcdef0")
			},
			wantHow: "nvme-serial",
		},
		{
			name: "Xen device name",
			setup: func(tr tree) (string, string) {
				dev := filepath.Join(tr.DevDir, "xvdf")
				tr.write(dev, "")
				return "/dev/xvdf", dev
			},
			wantHow: "device-name",
		},
		{
			name: "the sd twin of the Xen name",
			setup: func(tr tree) (string, string) {
				dev := filepath.Join(tr.DevDir, "sdf")
				tr.write(dev, "")
				return "/dev/xvdf", dev
			},
			wantHow: "device-name",
		},
		{
			name: "device name linking to the right NVMe device",
			setup: func(tr tree) (string, string) {
				tr.nvme("nvme1n1", "vol0123456789abcdef0")
				// no by-id link, and the serial scan finds it first
				return "/dev/xvdf", filepath.Join(tr.DevDir, "nvme1n1")
			},
			wantHow: "nvme-serial",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			hint, want := tc.setup(tr)
			got, err := tr.Find(quiet(), vol, hint)
			if err != nil {
				t.Fatalf("Find: %v", err)
			}
			if got.Path != want || got.How != tc.wantHow {
				t.Errorf("Find = %+v, want %s by %s", got, want, tc.wantHow)
			}
			// Only a Xen device found by its name is unconfirmed.
			if xen := !strings.Contains(got.Path, "nvme") && !strings.Contains(got.Path, "loop"); got.Confirmed == xen {
				t.Errorf("Find = %+v: Confirmed %v for %s", got, got.Confirmed, got.Path)
			}
		})
	}
}

func TestFindNotFound(t *testing.T) {
	tests := []struct {
		name  string
		id    string // default vol
		setup func(tr tree) (hint string)
	}{
		{name: "nothing attached", setup: func(tree) string { return "" }},
		{
			name: "only a stale link to another volume's NVMe device",
			setup: func(tr tree) string {
				tr.link(tr.ByIDLink(vol), tr.nvme("nvme1n1", "vol0fedcba9876543210"))
				return ""
			},
		},
		{
			name: "only a stale link to another volume's loop device",
			setup: func(tr tree) string {
				tr.link(tr.ByIDLink(vol), tr.loop("loop1", "/w/"+other+".img"))
				return ""
			},
		},
		{
			name: "a loop whose backing file merely starts with the id",
			id:   "vol-01234567",
			setup: func(tr tree) string {
				tr.link(tr.ByIDLink("vol-01234567"), tr.loop("loop1", "/w/vol-0123456789.img"))
				return ""
			},
		},
		{
			name: "link to a device of unknown kind",
			setup: func(tr tree) string {
				dev := filepath.Join(tr.DevDir, "dm-0")
				tr.write(dev, "")
				tr.link(tr.ByIDLink(vol), dev)
				return ""
			},
		},
		{
			name: "Xen name that is another volume's NVMe device",
			setup: func(tr tree) string {
				tr.link(filepath.Join(tr.DevDir, "xvdf"), tr.nvme("nvme1n1", "vol0fedcba9876543210"))
				return "/dev/xvdf"
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			hint := tc.setup(tr)
			id := vol
			if tc.id != "" {
				id = tc.id
			}
			got, err := tr.Find(quiet(), id, hint)
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("Find = %+v, %v; want ErrNotFound", got, err)
			}
		})
	}
}

func TestWaitSeesADeviceThatAppears(t *testing.T) {
	tr := newTree(t)
	go func() {
		time.Sleep(300 * time.Millisecond)
		tr.link(tr.ByIDLink(vol), tr.nvme("nvme1n1", "vol0123456789abcdef0"))
	}()
	got, err := tr.Wait(context.Background(), quiet(), vol, "", time.Minute)
	if err != nil || got.Path != filepath.Join(tr.DevDir, "nvme1n1") {
		t.Fatalf("Wait = %+v, %v", got, err)
	}
}

func TestWaitGivesUp(t *testing.T) {
	tr := newTree(t)
	_, err := tr.Wait(context.Background(), quiet(), vol, "/dev/xvdf", 300*time.Millisecond)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	for _, want := range []string{tr.ByIDLink(vol), "vol0123456789abcdef0", "/dev/xvdf", "waited"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say it looked for %q", err, want)
		}
	}
}

func TestVolumeIDOf(t *testing.T) {
	tr := newTree(t)
	if id, err := tr.VolumeIDOf(tr.nvme("nvme4n1", "vol0123456789abcdef0")); err != nil || id != vol {
		t.Errorf("VolumeIDOf(nvme) = %q, %v", id, err)
	}
	if id, err := tr.VolumeIDOf(tr.loop("loop7", "/x/"+vol+"/disk.img (deleted)")); err != nil || id != vol {
		t.Errorf("VolumeIDOf(loop) = %q, %v", id, err)
	}
}

func TestValidateDeviceName(t *testing.T) {
	for _, ok := range []string{"/dev/xvdf", "/dev/sdf", "/dev/xvdba"} {
		if err := ValidateDeviceName(ok); err != nil {
			t.Errorf("ValidateDeviceName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "xvdf", "/dev/xvdf1", "/dev/nvme1n1", "/dev/../etc/passwd", "/dev/xvdf;rm", "/dev/XVDF"} {
		if err := ValidateDeviceName(bad); err == nil {
			t.Errorf("ValidateDeviceName(%q) accepted", bad)
		}
	}
}

// Outside the local world a loop device is never an EBS volume, whatever
// its backing file is called.
func TestLoopDevicesOnlyInTheLocalWorld(t *testing.T) {
	tr := newTree(t)
	tr.AllowLoop = false
	dev := tr.loop("loop3", "/var/lib/world/volumes/"+vol+".img")
	tr.link(tr.ByIDLink(vol), dev)
	_, err := tr.Find(quiet(), vol, "")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), LoopDevicesEnv) {
		t.Fatalf("Find of a loop device without %s=1 = %v; want not found, naming the variable", LoopDevicesEnv, err)
	}
	t.Setenv(LoopDevicesEnv, "1")
	if !Host().AllowLoop {
		t.Fatalf("Host() with %s=1 does not allow loop devices", LoopDevicesEnv)
	}
	t.Setenv(LoopDevicesEnv, "")
	if Host().AllowLoop {
		t.Fatalf("Host() without %s allows loop devices", LoopDevicesEnv)
	}
}
