package fsys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tether-ecs/tether/test/testenv"
)

// These tests run the real tools against real images: sparse files that
// hold what a device attached to an instance could hold.

const (
	mib       = 1 << 20
	smallSize = 64 * mib
	xfsSize   = 320 * mib // mkfs.xfs wants at least 300 MB
)

// sparseImage makes a sparse file of size bytes in a fresh temp dir.
func sparseImage(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return path
}

// run runs a tool for the test's setup and fails the test if it fails.
func run(t *testing.T, stdin string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
}

func fileHash(t *testing.T, path string) [sha256.Size]byte {
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
	return [sha256.Size]byte(h.Sum(nil))
}

// blkidValue reads one tag of a file with the real blkid.
func blkidValue(t *testing.T, path, tag string) string {
	t.Helper()
	out, _ := exec.Command("blkid", "-p", "-o", "value", "-s", tag, path).Output()
	return string(bytes.TrimSpace(out))
}

// loopDevice attaches path to a loop device for the test's lifetime.
func loopDevice(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("losetup", "--find", "--show", path).Output()
	if err != nil {
		t.Fatalf("losetup %s: %v", path, err)
	}
	dev := string(bytes.TrimSpace(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	return dev
}

func TestPrepareRealImages(t *testing.T) {
	testenv.RequireCommands(t, "blkid", "mkfs.ext4", "mkfs.xfs", "e2fsck", "sfdisk", "sgdisk", "mkswap")
	tests := []struct {
		name      string
		size      int64
		make      func(t *testing.T, path string)
		requested string
		wantFS    string // filesystem on the image afterwards
		formatted bool
		refused   string // what the refusal must name
	}{
		{name: "blank gets ext4", size: smallSize, requested: "ext4", wantFS: "ext4", formatted: true},
		{name: "blank gets xfs", size: xfsSize, requested: "xfs", wantFS: "xfs", formatted: true},
		{
			name: "ext4 stays", size: smallSize, requested: "ext4", wantFS: "ext4",
			make: func(t *testing.T, p string) { run(t, "", "mkfs.ext4", "-q", "-F", p) },
		},
		{
			name: "xfs stays xfs when ext4 is requested", size: xfsSize, requested: "ext4", wantFS: "xfs",
			make: func(t *testing.T, p string) { run(t, "", "mkfs.xfs", "-q", p) },
		},
		{
			name: "ext4 stays ext4 when xfs is requested", size: xfsSize, requested: "xfs", wantFS: "ext4",
			make: func(t *testing.T, p string) { run(t, "", "mkfs.ext4", "-q", "-F", p) },
		},
		{
			name: "MBR partition table refused", size: smallSize, requested: "ext4", refused: "dos",
			make: func(t *testing.T, p string) { run(t, "label: dos\n,10MiB,L\n", "sfdisk", "-q", p) },
		},
		{
			name: "GPT partition table refused", size: smallSize, requested: "ext4", refused: "gpt",
			make: func(t *testing.T, p string) { run(t, "", "sgdisk", "-n", "1:0:+10M", p) },
		},
		{
			name: "swap refused", size: smallSize, requested: "ext4", refused: "swap",
			make: func(t *testing.T, p string) { run(t, "", "mkswap", p) },
		},
		{
			name: "LUKS header refused", size: smallSize, requested: "ext4", refused: "crypto_LUKS",
			make: func(t *testing.T, p string) {
				// A LUKS1 header's magic and version at offset 0.
				f, err := os.OpenFile(p, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if _, err := f.WriteAt([]byte("LUKS\xba\xbe\x00\x01"), 0); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := sparseImage(t, tc.size)
			if tc.make != nil {
				tc.make(t, img)
			}
			uuidBefore := blkidValue(t, img, "UUID")
			before := fileHash(t, img)

			got, err := Prepare(context.Background(), ExecRunner{}, Disk{}, quiet(), img, PrepareOptions{FSType: tc.requested, FormatIfBlank: true})

			if tc.refused != "" {
				if !errors.Is(err, ErrRefused) {
					t.Fatalf("Prepare = %+v, %v; want a refusal", got, err)
				}
				if !strings.Contains(err.Error(), tc.refused) {
					t.Errorf("refusal %q does not name %q", err, tc.refused)
				}
				if fileHash(t, img) != before {
					t.Errorf("a refused image changed")
				}
				return
			}
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if got.FSType != tc.wantFS || got.Formatted != tc.formatted {
				t.Errorf("Prepare = %+v, want fstype %s formatted %v", got, tc.wantFS, tc.formatted)
			}
			if fs := blkidValue(t, img, "TYPE"); fs != tc.wantFS {
				t.Errorf("image holds %q, want %q", fs, tc.wantFS)
			}
			if !tc.formatted {
				if uuid := blkidValue(t, img, "UUID"); uuid != uuidBefore {
					t.Errorf("filesystem UUID changed from %s to %s: reformatted", uuidBefore, uuid)
				}
				if tc.wantFS == "xfs" && fileHash(t, img) != before {
					t.Errorf("an existing xfs changed (nothing may write to it before mount)")
				}
			}
		})
	}
}

// TestPrepareRefusesLVM needs a block device: pvcreate works on loop devices only.
func TestPrepareRefusesLVM(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "blkid", "losetup", "pvcreate", "pvremove")
	img := sparseImage(t, smallSize)
	loop := loopDevice(t, img)
	run(t, "", "pvcreate", "-q", "-y", loop)
	t.Cleanup(func() { _ = exec.Command("pvremove", "-q", "-y", "-ff", loop).Run() })
	before := fileHash(t, img)

	_, err := Prepare(context.Background(), ExecRunner{}, Disk{}, quiet(), loop, PrepareOptions{FSType: "ext4", FormatIfBlank: true})

	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "LVM2_member") {
		t.Fatalf("err = %v, want a refusal naming LVM2_member", err)
	}
	if fileHash(t, img) != before {
		t.Errorf("the LVM physical volume changed")
	}
}

func TestBlankTerabyteFormatsWithoutWritingItAll(t *testing.T) {
	testenv.RequireCommands(t, "blkid", "mkfs.ext4")
	img := sparseImage(t, 1<<40)
	got, err := Prepare(context.Background(), ExecRunner{}, Disk{}, quiet(), img, PrepareOptions{FSType: "ext4", FormatIfBlank: true})
	if err != nil || !got.Formatted {
		t.Fatalf("Prepare = %+v, %v", got, err)
	}
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	// Lazy init writes metadata only: far less than 1% of the device.
	if allocated := allocatedBytes(fi); allocated > 1<<40/100 {
		t.Errorf("mkfs wrote %d bytes of a 1 TiB device; want a lazy format", allocated)
	}
	size, err := ExtSize(img)
	if err != nil {
		t.Fatal(err)
	}
	if size.Bytes() != 1<<40 {
		t.Errorf("ext4 size %d, want the whole 1 TiB device", size.Bytes())
	}
}

// writeAt writes b into the file or device at off.
func writeAt(t *testing.T, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// Regression (issue "Fence by facts", finding 1): blkid exits 2 both for a
// blank device and for an ext4 whose primary superblock was lost (its
// backups intact) or raw data without a signature, and the agent formatted
// them. Neither may ever be formatted, with or without the grant; the torn
// ext4 stays recoverable with e2fsck -b.
func TestNeverFormatsATornSuperblockOrRawData(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "losetup", "blkid", "mkfs.ext4", "e2fsck")
	const size = 256 * mib
	cases := []struct {
		name string
		make func(t *testing.T, loop string)
		// after checks the device after Prepare refused it.
		after func(t *testing.T, loop string)
	}{
		{
			name: "ext4 without its primary superblock",
			make: func(t *testing.T, loop string) {
				run(t, "", "mkfs.ext4", "-q", "-b", "4096", loop)
				mp := t.TempDir()
				if err := unix.Mount(loop, mp, "ext4", 0, ""); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(mp+"/orders", []byte("42 rows"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := unix.Unmount(mp, 0); err != nil {
					t.Fatal(err)
				}
				writeAt(t, loop, make([]byte, 1024), 1024) // the primary superblock, torn
			},
			after: func(t *testing.T, loop string) {
				// The backups are intact: the operator's recovery works.
				cmd := exec.Command("e2fsck", "-y", "-b", "32768", "-B", "4096", loop)
				out, err := cmd.CombinedOutput()
				if code := cmd.ProcessState.ExitCode(); code > 1 && code != 3 {
					t.Fatalf("e2fsck -b 32768: %v (exit %d)\n%s", err, code, out)
				}
				mp := t.TempDir()
				if err := unix.Mount(loop, mp, "ext4", unix.MS_RDONLY, ""); err != nil {
					t.Fatalf("mount after recovery: %v", err)
				}
				defer unix.Unmount(mp, 0)
				if b, err := os.ReadFile(mp + "/orders"); err != nil || string(b) != "42 rows" {
					t.Fatalf("data after recovery = %q, %v", b, err)
				}
			},
		},
		{
			name: "raw data at the start, no signature",
			make: func(t *testing.T, loop string) {
				writeAt(t, loop, bytes.Repeat([]byte("raw database page "), 4096), 0)
			},
		},
		{
			name: "raw data only in the middle",
			make: func(t *testing.T, loop string) {
				writeAt(t, loop, bytes.Repeat([]byte{0xa5}, 64*mib), 96*mib)
			},
		},
	}
	for _, tc := range cases {
		for _, grant := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/grant=%v", tc.name, grant), func(t *testing.T) {
				img := sparseImage(t, size)
				loop := loopDevice(t, img)
				tc.make(t, loop)
				if fs := blkidValue(t, loop, "TYPE"); fs != "" {
					t.Fatalf("setup: blkid sees %q; the case needs a device with no signature", fs)
				}
				before := fileHash(t, img)
				got, err := Prepare(context.Background(), ExecRunner{}, Disk{}, quiet(), loop, PrepareOptions{FSType: "ext4", FormatIfBlank: grant})
				var nf *NotFormattedError
				if !errors.As(err, &nf) || !nf.Damaged {
					t.Fatalf("Prepare = %+v, %v; want a *NotFormattedError for a damaged device", got, err)
				}
				if !strings.Contains(err.Error(), "non-zero data") {
					t.Errorf("message %q does not say data was found", err)
				}
				if fileHash(t, img) != before {
					t.Fatalf("the device changed: it was written to")
				}
				if tc.after != nil {
					tc.after(t, loop)
				}
			})
		}
	}
}

// A device that cannot be read is not blank: the proof fails with
// ErrUnreadable (a path that cannot be opened stands for an I/O error).
func TestProveBlankRefusesWhatItCannotRead(t *testing.T) {
	_, err := Disk{}.ProveBlank(filepath.Join(t.TempDir(), "no-such-device"))
	if !errors.Is(err, ErrUnreadable) {
		t.Fatalf("ProveBlank of a missing device = %v; want ErrUnreadable", err)
	}
}

// The proof reads the first and last MiB and spread blocks, with O_DIRECT:
// a blank device is blank, one byte in the last MiB is found.
func TestProveBlankReadsTheEdges(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "losetup")
	img := sparseImage(t, smallSize)
	loop := loopDevice(t, img)
	p, err := Disk{}.ProveBlank(loop)
	if err != nil || !p.Blank || p.NonZeroAt != -1 || p.BytesRead < 2*mib {
		t.Fatalf("ProveBlank of a blank device = %+v, %v", p, err)
	}
	writeAt(t, loop, []byte{1}, smallSize-100)
	p, err = Disk{}.ProveBlank(loop)
	if err != nil || p.Blank || p.NonZeroAt != smallSize-100 {
		t.Fatalf("ProveBlank with a byte near the end = %+v, %v; want non-zero at %d", p, err, smallSize-100)
	}
}
