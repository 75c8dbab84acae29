package hostops

import (
	"errors"

	"github.com/tether-ecs/tether/agent/blockdev"
	"github.com/tether-ecs/tether/agent/fsys"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// ErrConflict marks a request the host's state contradicts: another volume
// mounted under the name, the device mounted elsewhere, a device that is
// not the volume (identity or size).
var ErrConflict = errors.New("conflict")

// ExitCode maps an error of MountVolume, UnmountVolume or Status to the
// agent's exit code (internal/agentproto, one per class).
func ExitCode(err error) int {
	switch {
	case err == nil:
		return agentproto.ExitOK
	case errors.Is(err, ErrBadInput):
		return agentproto.ExitBadInput
	case errors.Is(err, ErrBusy):
		return agentproto.ExitBusy
	case errors.Is(err, blockdev.ErrNotFound):
		return agentproto.ExitNoDevice
	case errors.Is(err, fsys.ErrRefused):
		return agentproto.ExitRefused
	case errors.Is(err, fsys.ErrNotFormatted):
		return agentproto.ExitNotFormatted
	case errors.Is(err, fsys.ErrFilesystemErrors):
		return agentproto.ExitNeedsRepair
	case errors.Is(err, ErrConflict):
		return agentproto.ExitConflict
	case errors.Is(err, ErrLockTimeout):
		return agentproto.ExitRetryable
	case errors.Is(err, ErrAttachmentReleased):
		return agentproto.ExitReleased
	}
	return agentproto.ExitFailed
}

// FailureOf is the {"error":{...}} a command prints for err: its exit code
// and class, the message, what the device holds and who holds the volume
// when the error says.
func FailureOf(err error) agentproto.Failure {
	code := ExitCode(err)
	f := agentproto.Failure{ExitCode: code, Class: agentproto.ClassOf(code), Message: err.Error()}
	var nf *fsys.NotFormattedError
	var refused *fsys.RefusedError
	var busy *BusyError
	switch {
	case errors.As(err, &nf):
		f.Found = nf.Found
	case errors.As(err, &refused):
		f.Found = refused.Found.String()
	}
	if errors.As(err, &busy) {
		f.Holders = busy.Holders()
	}
	return f
}
