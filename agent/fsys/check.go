package fsys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// ErrFilesystemErrors marks a filesystem with damage a safe check does not
// repair; it is not mounted until someone repairs it.
var ErrFilesystemErrors = errors.New("filesystem needs repair")

// ErrCheckFailed marks a check that could not run to its end (e2fsck's
// operational error): nothing is known, so nothing is mounted.
var ErrCheckFailed = errors.New("filesystem check failed")

// e2fsck exit code bits (e2fsck(8)): 1 errors corrected, 2 corrected and
// a reboot is advised, 4 errors left uncorrected, 8 operational error.
const (
	fsckUncorrected = 4
	fsckOperational = 8
)

// Check checks an existing filesystem before a read-write mount, only when
// it was not left cleanly, and reports whether it ran a check:
//   - ext2/3/4: the superblock (read past the page cache) says whether it
//     was cleanly unmounted: valid, no recorded errors, no journal to
//     replay. If not (a force detach, a dead host, errors the kernel
//     recorded), e2fsck -p preens it (replaying the journal); damage -p
//     does not repair (exit 4) stops the mount (ErrFilesystemErrors), and
//     so does a check that could not run (exit 8: ErrCheckFailed).
//   - xfs: nothing before the mount: the kernel replays the log at mount,
//     and xfs_repair refuses a dirty log. A mount that finds corruption is
//     reported with xfs_repair -n (ReportXFS).
func Check(ctx context.Context, r Runner, in Inspector, log *slog.Logger, dev, fstype string) (bool, error) {
	if !strings.HasPrefix(fstype, "ext") {
		return false, nil
	}
	state, err := in.ExtState(dev)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrCheckFailed, err)
	}
	if state.Clean() {
		return false, nil
	}
	log.Info("filesystem was not left cleanly; checking it before mount", "device", dev, "fstype", fstype, "state", state.String())
	args := []string{"-p", dev}
	res, err := r.Run(ctx, "e2fsck", args...)
	if err != nil {
		return true, fmt.Errorf("%w: %w", ErrCheckFailed, err)
	}
	code := res.ExitCode
	switch {
	case code == 0:
		log.Info("filesystem checked: clean", "device", dev)
	case code&fsckUncorrected != 0:
		return true, fmt.Errorf("%w: %w (repair it by hand, e.g. e2fsck -f %s, or restore a snapshot)", ErrFilesystemErrors, commandError("e2fsck", args, res), dev)
	case code >= fsckOperational:
		return true, fmt.Errorf("%w: %w", ErrCheckFailed, commandError("e2fsck", args, res))
	default: // corrected, maybe "reboot needed" (meaningless for a data volume)
		log.Warn("e2fsck corrected filesystem errors", "device", dev, "exitCode", code,
			"output", strings.TrimSpace(string(res.Stdout)))
	}
	return true, nil
}

// ReportXFS runs xfs_repair -n (no modify) on an xfs the kernel would not
// mount, for the operator's message; it never repairs.
func ReportXFS(ctx context.Context, r Runner, dev string) string {
	args := []string{"-n", dev}
	res, err := r.Run(ctx, "xfs_repair", args...)
	if err != nil {
		return err.Error()
	}
	out := strings.TrimSpace(string(res.Stdout) + "\n" + string(res.Stderr))
	if len(out) > 2000 {
		out = out[:2000] + "…"
	}
	return fmt.Sprintf("xfs_repair -n %s: exit %d: %s", dev, res.ExitCode, out)
}
