package fsys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// ErrFormatFailed marks a mkfs that did not succeed.
var ErrFormatFailed = errors.New("format failed")

// ErrUnsupportedFS marks a filesystem type tether does not make.
var ErrUnsupportedFS = errors.New("unsupported filesystem type")

// mkfsArgs returns the mkfs command for fstype. Both are lazy: a blank
// device of any size formats in about a second because nothing but the
// metadata is written.
//   - ext4: inode tables and journal are not zeroed up front
//     (lazy_itable_init, lazy_journal_init: the kernel zeroes inode tables in
//     the background after mount); no discard pass over the whole device
//     (a new EBS volume reads as zeros already); no blocks reserved for root
//     (-m0: a data volume, as Kubernetes formats them).
//   - xfs: mkfs.xfs writes only allocation-group headers and the log; -K
//     skips the discard pass.
//
// Neither gets -F/-f: Format is only called after Probe found nothing, and
// mkfs.xfs then still refuses a device that gained a signature meanwhile.
// (mke2fs does not ask when stdin is not a terminal, so for ext4 the probe
// under the volume's lock is the guard.)
func mkfsArgs(fstype, dev string) (string, []string, error) {
	switch fstype {
	case "ext4":
		return "mkfs.ext4", []string{"-q", "-m0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", dev}, nil
	case "xfs":
		return "mkfs.xfs", []string{"-q", "-K", dev}, nil
	}
	return "", nil, fmt.Errorf("%w: %q", ErrUnsupportedFS, fstype)
}

// MakeFilesystem makes fstype on dev. Call it only for a device that
// Decide said to Format.
func MakeFilesystem(ctx context.Context, r Runner, dev, fstype string) error {
	name, args, err := mkfsArgs(fstype, dev)
	if err != nil {
		return err
	}
	res, err := r.Run(ctx, name, args...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFormatFailed, err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%w: %w", ErrFormatFailed, commandError(name, args, res))
	}
	return nil
}

// Prepared is the outcome of Prepare.
type Prepared struct {
	FSType    string    // the filesystem now on the device
	Formatted bool      // Prepare made it
	Found     Signature // what the probe found before
}

// Prepare makes dev ready to mount: probe, then make the requested
// filesystem on a blank device, or check the filesystem it already has
// (whatever was requested; never reformat). requested "" means never
// format (ErrUnformatted for a blank device). Anything else is refused with a
// *RefusedError and nothing is written.
func Prepare(ctx context.Context, r Runner, log *slog.Logger, dev, requested string) (Prepared, error) {
	sig, err := Probe(ctx, r, dev)
	if err != nil {
		return Prepared{}, err
	}
	dec, err := Decide(dev, sig, requested)
	if err != nil {
		return Prepared{Found: sig}, err
	}
	switch dec.Action {
	case Format:
		log.Info("device is blank; making a filesystem", "device", dev, "fstype", dec.FSType)
		if err := MakeFilesystem(ctx, r, dev, dec.FSType); err != nil {
			return Prepared{Found: sig}, err
		}
		// Confirm what mkfs left, so a mount never guesses.
		made, err := Probe(ctx, r, dev)
		if err != nil {
			return Prepared{Found: sig}, err
		}
		if made.Type != dec.FSType {
			return Prepared{Found: sig}, fmt.Errorf("%w: after mkfs %s holds %s, not %s", ErrFormatFailed, dev, made, dec.FSType)
		}
		return Prepared{FSType: dec.FSType, Formatted: true, Found: sig}, nil
	default:
		if requested != "" && dec.FSType != requested {
			log.Info("device already holds another filesystem than requested; mounting it as it is",
				"device", dev, "found", dec.FSType, "requested", requested)
		}
		if err := Check(ctx, r, log, dev, dec.FSType); err != nil {
			return Prepared{Found: sig}, err
		}
		return Prepared{FSType: dec.FSType, Found: sig}, nil
	}
}
