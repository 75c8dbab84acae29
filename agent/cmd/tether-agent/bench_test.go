package main_test

// Agent benchmarks (make bench-agent):
//
//	go test -run '^$' -bench . -benchtime 3x ./agent/cmd/tether-agent/
//
// BenchmarkFirstUseFormat: `tether-agent mount` of a blank 1 TiB sparse
// device (find, probe, mkfs, check, mount): the time a task's first start
// waits for its volume on the host. Goal: at most 1 s.
//
// BenchmarkThroughput: dd through a tether-mounted filesystem and through
// the same filesystem mounted directly. tether mounts the device itself (no
// FUSE, no overlay), so the ratio should be 1 within noise.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tether-ecs/tether/test/sandbox"
	"github.com/tether-ecs/tether/test/testenv"
)

func BenchmarkFirstUseFormat(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireCommands(b, "nsenter", "losetup", "blkid", "mkfs.ext4", "mkfs.xfs")
	for _, fstype := range []string{"ext4", "xfs"} {
		b.Run(fstype+"/1TiB", func(b *testing.B) {
			m := sandbox.NewT(b, sandbox.Options{ID: "i-0bench00000000000", Dir: b.TempDir(), Logger: discard})
			var total time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				vol := fmt.Sprintf("vol-0be0c%012x", i)
				backing := filepath.Join(b.TempDir(), vol+".img")
				if err := os.WriteFile(backing, nil, 0o600); err != nil {
					b.Fatal(err)
				}
				if err := os.Truncate(backing, 1<<40); err != nil {
					b.Fatal(err)
				}
				if _, err := m.AttachLoop(context.Background(), backing, vol, ""); err != nil {
					b.Fatal(err)
				}
				cmd := m.Command(context.Background(), agentBin, "mount", "--volume-id", vol, "--name", "bench",
					"--fstype", fstype, "--format-if-blank", "--json")
				b.StartTimer()
				start := time.Now()
				out, err := cmd.CombinedOutput()
				elapsed := time.Since(start)
				b.StopTimer()
				if err != nil {
					b.Fatalf("mount: %v\n%s", err, out)
				}
				total += elapsed
				if out, err := m.Command(context.Background(), agentBin, "unmount", "--volume-id", vol, "--name", "bench").CombinedOutput(); err != nil {
					b.Fatalf("unmount: %v\n%s", err, out)
				}
				if err := m.DetachLoop(context.Background(), vol, false); err != nil {
					b.Fatal(err)
				}
				if err := os.Remove(backing); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/first-mount")
		})
	}
}

func BenchmarkThroughput(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireCommands(b, "nsenter", "losetup", "blkid", "mkfs.ext4", "dd")
	const vol = "vol-0be0c0000000000ff"
	const fileMiB = 256
	m := sandbox.NewT(b, sandbox.Options{ID: "i-0bench00000000001", Dir: b.TempDir(), Logger: discard})
	backing := filepath.Join(b.TempDir(), vol+".img")
	if err := os.WriteFile(backing, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(backing, 2<<30); err != nil {
		b.Fatal(err)
	}
	dev, err := m.AttachLoop(context.Background(), backing, vol, "")
	if err != nil {
		b.Fatal(err)
	}
	agentRun := func(args ...string) {
		if out, err := m.Command(context.Background(), agentBin, args...).CombinedOutput(); err != nil {
			b.Fatalf("tether-agent %v: %v\n%s", args, err, out)
		}
	}
	// dd writes then reads a file with direct I/O (no page cache), in m.
	dd := func(dir string) (write, read float64) {
		file := filepath.Join(dir, "dd.bin")
		w := timeIt(b, m.Command(context.Background(), "dd", "if=/dev/zero", "of="+file, "bs=1M",
			fmt.Sprint("count=", fileMiB), "oflag=direct", "conv=fsync"))
		r := timeIt(b, m.Command(context.Background(), "dd", "if="+file, "of=/dev/null", "bs=1M", "iflag=direct"))
		if err := m.Command(context.Background(), "rm", "-f", file).Run(); err != nil {
			b.Fatal(err)
		}
		return fileMiB / w.Seconds(), fileMiB / r.Seconds()
	}
	// tether formats the volume once; both sides then use that filesystem.
	agentRun("mount", "--volume-id", vol, "--name", "bench", "--format-if-blank", "--json")
	agentRun("unmount", "--volume-id", vol, "--name", "bench")

	var tw, tr, dw, dr float64
	for i := 0; i < b.N; i++ {
		agentRun("mount", "--volume-id", vol, "--name", "bench")
		w, r := dd("/var/lib/tether/volumes/bench")
		tw, tr = tw+w, tr+r
		agentRun("unmount", "--volume-id", vol, "--name", "bench")

		direct := "/run/direct" // the machine's private /run
		if err := os.MkdirAll(m.Path(direct), 0o700); err != nil {
			b.Fatal(err)
		}
		if out, err := m.Command(context.Background(), "mount", "-t", "ext4", dev, direct).CombinedOutput(); err != nil {
			b.Fatalf("direct mount: %v %s", err, out)
		}
		w, r = dd(direct)
		dw, dr = dw+w, dr+r
		if err := m.Command(context.Background(), "umount", direct).Run(); err != nil {
			b.Fatal(err)
		}
	}
	n := float64(b.N)
	b.ReportMetric(tw/n, "tether-write-MiB/s")
	b.ReportMetric(dw/n, "direct-write-MiB/s")
	b.ReportMetric(tr/n, "tether-read-MiB/s")
	b.ReportMetric(dr/n, "direct-read-MiB/s")
	b.ReportMetric(tw/dw, "write-ratio")
	b.ReportMetric(tr/dr, "read-ratio")
}

// discard keeps the sandbox's logs out of benchmark output.
var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// timeIt runs cmd and returns how long it took.
func timeIt(b *testing.B, cmd *exec.Cmd) time.Duration {
	b.Helper()
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	return time.Since(start)
}
