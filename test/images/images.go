// Package images provides the container images the seed walkthrough runs in
// the local world. Docker Hub is out of reach here, so the image the seed
// names, mysql, is MariaDB from Debian built by mariadb/build.sh into a
// `docker load` archive that names itself mysql:latest, cached between runs.
package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// MySQLRef is the reference the seed's task definition runs.
const MySQLRef = "mysql:latest"

// Archive is a built (or cached) image archive.
type Archive struct {
	Path  string        // the `docker load` archive
	Built bool          // false: it came from the cache
	Took  time.Duration // how long finding or building it took
}

// MySQL returns the mysql image archive, building it with
// test/images/mariadb/build.sh (debootstrap, about a minute and ~300 MB) on
// first use. root is the repository; cacheDir "" means ~/.cache/tether.
// progress gets build.sh's progress lines and, every tick, a line saying
// that the build is still going (nil: discarded).
func MySQL(ctx context.Context, root, cacheDir string, progress io.Writer, tick time.Duration) (Archive, error) {
	if progress == nil {
		progress = io.Discard
	}
	start := time.Now()
	args := []string{filepath.Join(root, "test/images/mariadb/build.sh")}
	if cacheDir != "" {
		args = append(args, cacheDir)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", args...)
	// Cancelled, the whole build (bash and debootstrap) gets SIGTERM, so
	// build.sh's trap removes its half-built tree (~600 MB).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	cmd.Stdout = &stdout
	cmd.Stderr = io.MultiWriter(&stderr, progress)
	done := make(chan struct{})
	if tick > 0 {
		go func() {
			t := time.NewTicker(tick)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					fmt.Fprintf(progress, "… building the mysql image (%s)\n", time.Since(start).Round(time.Second))
				}
			}
		}()
	}
	err := cmd.Run()
	close(done)
	if err != nil {
		return Archive{}, fmt.Errorf("test/images/mariadb/build.sh: %w\n%s", err, tail(stderr.String(), 2000))
	}
	path := strings.TrimSpace(stdout.String())
	if path == "" {
		return Archive{}, fmt.Errorf("test/images/mariadb/build.sh printed no archive path")
	}
	// build.sh prints progress on stderr only when it builds.
	return Archive{Path: path, Built: stderr.Len() > 0, Took: time.Since(start)}, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
