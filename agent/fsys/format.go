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
// Neither gets -F/-f: Format is only called with a grant, after Probe found
// nothing and the device proved blank, and mkfs.xfs then still refuses a
// device that gained a signature meanwhile. (mke2fs does not ask when
// stdin is not a terminal, so for ext4 the proof under the volume's lock is
// the guard.) Lazy init is safe on a proven-blank device: what it leaves
// unwritten reads as the zeros it would have written.
func mkfsArgs(fstype, dev string) (string, []string, error) {
	switch fstype {
	case "ext4":
		return "mkfs.ext4", []string{"-q", "-m0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", dev}, nil
	case "xfs":
		return "mkfs.xfs", []string{"-q", "-K", dev}, nil
	}
	return "", nil, fmt.Errorf("%w: %q", ErrUnsupportedFS, fstype)
}

// MakeFilesystem makes fstype on dev. Prepare calls it only with a grant
// on a device proved blank.
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

// ErrNotFormatted marks a device without a filesystem that tether did
// not format: no grant, not proved blank, or not provably the volume.
var ErrNotFormatted = errors.New("device has no filesystem and was not formatted")

// NotFormattedError says what was found on a device with no filesystem
// signature, why tether did not format it, and what an operator can do.
type NotFormattedError struct {
	Device string
	// Found is what the device holds, in words ("no signature; zeros
	// wherever read (...)", "no signature; non-zero data at byte 4096").
	Found string
	// Why is the reason nothing was written.
	Why string
	// Damaged: the device holds data without a signature (a filesystem
	// that lost its primary superblock, raw data); never formatted.
	Damaged bool
}

func (e *NotFormattedError) Error() string {
	msg := fmt.Sprintf("not formatting %s: it has %s; %s. Nothing was written. ", e.Device, e.Found, e.Why)
	if e.Damaged {
		return msg + "If it should hold a filesystem, inspect it without writing (ext4: `e2fsck -n -b 32768 " + e.Device +
			"` reads a backup superblock; xfs: `xfs_repair -n " + e.Device + "`), repair it or restore a snapshot; " +
			"tether never formats a device that holds data, with or without a grant"
	}
	return msg + "If this volume is new and empty, mount it with --format-if-blank (the reconciler grants it only " +
		"for a volume it created empty and never saw formatted); if it should hold data, its filesystem is lost or " +
		"damaged: do not format it, inspect it (ext4: `e2fsck -n -b 32768 " + e.Device + "`) or restore a snapshot"
}

// Is makes errors.Is(err, ErrNotFormatted) true.
func (e *NotFormattedError) Is(target error) bool { return target == ErrNotFormatted }

// PrepareOptions say what Prepare may do to a device.
type PrepareOptions struct {
	// FSType is made on a device that has no signature, only with
	// FormatIfBlank and only once the device proves blank.
	FSType string
	// FormatIfBlank is the reconciler's grant (mount --format-if-blank).
	FormatIfBlank bool
	// NeverFormat, when set, says why the device may not be formatted even
	// with the grant (its identity is not provable: a Xen device name).
	NeverFormat string
}

// Prepared is the outcome of Prepare.
type Prepared struct {
	FSType    string    // the filesystem now on the device
	Formatted bool      // Prepare made it
	Checked   bool      // fsck ran (the filesystem was not left cleanly)
	Found     Signature // what the probe found before
}

// Prepare makes dev ready to mount. A device with a supported filesystem
// is checked if it was not left cleanly (Check) and mounted as it is,
// whatever was requested. A device without any signature gets o.FSType
// only with the grant, and only once it proves blank (readable, zeros
// wherever read); otherwise it is a *NotFormattedError and nothing is
// written. Anything else is refused with a *RefusedError.
func Prepare(ctx context.Context, r Runner, in Inspector, log *slog.Logger, dev string, o PrepareOptions) (Prepared, error) {
	sig, err := Probe(ctx, r, dev)
	if err != nil {
		if errors.Is(err, ErrUnreadable) {
			return Prepared{}, &NotFormattedError{Device: dev, Found: "no readable signature (" + err.Error() + ")",
				Why: "a device blkid cannot read is never taken for blank"}
		}
		return Prepared{}, err
	}
	dec, err := Decide(dev, sig, o.FSType)
	if err != nil {
		return Prepared{Found: sig}, err
	}
	if dec.Action == MountExisting {
		if o.FSType != "" && dec.FSType != o.FSType {
			log.Info("device already holds another filesystem than requested; mounting it as it is",
				"device", dev, "found", dec.FSType, "requested", o.FSType)
		}
		checked, err := Check(ctx, r, in, log, dev, dec.FSType)
		if err != nil {
			return Prepared{Found: sig}, err
		}
		return Prepared{FSType: dec.FSType, Checked: checked, Found: sig}, nil
	}

	// No signature. Read it, grant or not: the answer says what is there.
	proof, err := in.ProveBlank(dev)
	if err != nil {
		return Prepared{Found: sig}, &NotFormattedError{Device: dev, Found: "no signature, and it could not be read (" + err.Error() + ")",
			Why: "an unreadable device is never taken for blank"}
	}
	found := "no filesystem signature (blkid -p found nothing) and " + proof.String()
	switch {
	case !proof.Blank:
		return Prepared{Found: sig}, &NotFormattedError{Device: dev, Found: found, Damaged: true,
			Why: "data without a signature is a damaged filesystem (a lost primary superblock) or raw data, not a blank device"}
	case o.NeverFormat != "":
		return Prepared{Found: sig}, &NotFormattedError{Device: dev, Found: found, Why: o.NeverFormat}
	case !o.FormatIfBlank:
		return Prepared{Found: sig}, &NotFormattedError{Device: dev, Found: found,
			Why: "mount was not given the grant to format (--format-if-blank)"}
	}
	log.Info("device proved blank and formatting is granted; making a filesystem", "device", dev, "fstype", dec.FSType,
		"bytesRead", proof.BytesRead, "regions", proof.Samples)
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
}
