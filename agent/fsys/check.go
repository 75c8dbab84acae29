package fsys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// ErrFilesystemErrors marks a filesystem with errors fsck could not fix;
// it is not mounted (read-write) until someone repairs it.
var ErrFilesystemErrors = errors.New("filesystem has uncorrected errors")

// e2fsck exit code bits (e2fsck(8)): 1 errors corrected, 2 corrected and
// a reboot is advised, 4 errors left uncorrected, 8 operational error.
const (
	fsckUncorrected = 4
	fsckOperational = 8
)

// Check runs the pre-mount check for an existing filesystem, with the
// policy Kubernetes' mount-utils applies before a read-write mount:
//   - ext2/3/4: e2fsck -p (preen, the same as fsck -a). Errors it
//     corrected are logged; errors it could not correct stop the mount;
//     operational failures (exit 8 and up without the "uncorrected" bit)
//     are logged and the mount goes ahead: the kernel is the last judge.
//   - xfs: nothing. The kernel replays the log at mount; fsck.xfs is a
//     no-op by design and xfs_repair refuses a filesystem with a dirty log.
func Check(ctx context.Context, r Runner, log *slog.Logger, dev, fstype string) error {
	if !strings.HasPrefix(fstype, "ext") {
		return nil
	}
	args := []string{"-p", dev}
	res, err := r.Run(ctx, "e2fsck", args...)
	if err != nil {
		return fmt.Errorf("check %s: %w", dev, err)
	}
	code := res.ExitCode
	switch {
	case code == 0:
		return nil
	case code&fsckUncorrected != 0:
		return fmt.Errorf("%w: %w", ErrFilesystemErrors, commandError("e2fsck", args, res))
	case code >= fsckOperational:
		log.Warn("e2fsck could not check the filesystem; mounting anyway", "device", dev, "exitCode", code,
			"output", strings.TrimSpace(string(res.Stderr)))
	default: // corrected, maybe "reboot needed" (meaningless for a data volume)
		log.Warn("e2fsck corrected filesystem errors", "device", dev, "exitCode", code,
			"output", strings.TrimSpace(string(res.Stdout)))
	}
	return nil
}
