package fsys

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
)

// Signature is what a full low-level probe found on a device.
type Signature struct {
	Type       string // TYPE: ext4, xfs, LVM2_member, linux_raid_member, crypto_LUKS, swap, ...
	PTType     string // PTTYPE: dos, gpt, ... (a partition table)
	Usage      string // USAGE: filesystem, raid, crypto, other
	Ambivalent bool   // several signatures that contradict each other
}

// Blank reports whether the probe found nothing at all.
func (s Signature) Blank() bool {
	return s == Signature{}
}

// String names what was found, for messages and logs.
func (s Signature) String() string {
	var parts []string
	if s.PTType != "" {
		parts = append(parts, fmt.Sprintf("a %s partition table", s.PTType))
	}
	if s.Type != "" {
		what := s.Type
		if s.Usage != "" {
			what += " (" + s.Usage + ")"
		}
		parts = append(parts, "a "+what+" signature")
	}
	if s.Ambivalent {
		parts = append(parts, "several contradicting signatures")
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, " and ")
}

// blkid's exit codes (blkid(8)).
const (
	blkidNothingFound = 2
	blkidAmbivalent   = 8
)

// Probe runs a full low-level probe (blkid -p: superblocks and partition
// tables, bypassing the cache) of dev.
func Probe(ctx context.Context, r Runner, dev string) (Signature, error) {
	args := []string{"-p", "-o", "export", dev}
	res, err := r.Run(ctx, "blkid", args...)
	if err != nil {
		return Signature{}, err
	}
	switch res.ExitCode {
	case 0:
		sig := parseExport(res.Stdout)
		if sig.Blank() {
			// blkid said it found something but named nothing we read:
			// never treat that as blank.
			return Signature{Type: "unknown"}, nil
		}
		return sig, nil
	case blkidNothingFound:
		// blkid also exits 2 when it cannot open or read the device
		// (libblkid reports no signature for what it could not read), and
		// says why on stderr: only a silent exit 2 means "no signature".
		if msg := strings.TrimSpace(string(res.Stderr)); msg != "" {
			return Signature{}, fmt.Errorf("%w: probe %s: %w", ErrUnreadable, dev, commandError("blkid", args, res))
		}
		return Signature{}, nil
	case blkidAmbivalent:
		sig := parseExport(res.Stdout)
		sig.Ambivalent = true
		return sig, nil
	default:
		return Signature{}, fmt.Errorf("probe %s: %w", dev, commandError("blkid", args, res))
	}
}

// parseExport reads blkid's "-o export" KEY=value lines.
func parseExport(out []byte) Signature {
	var sig Signature
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch key {
		case "TYPE":
			sig.Type = value
		case "PTTYPE":
			sig.PTType = value
		case "USAGE":
			sig.Usage = value
		}
	}
	return sig
}

// Action is what to do with a probed device.
type Action int

const (
	// Format: the device has no signature; make the requested filesystem
	// if the caller holds a grant and the device proves blank.
	Format Action = iota + 1
	// MountExisting: the device holds a filesystem tether mounts as it is.
	MountExisting
)

func (a Action) String() string {
	switch a {
	case Format:
		return "format"
	case MountExisting:
		return "mount-existing"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Decision is the outcome of Decide.
type Decision struct {
	Action Action
	FSType string // the filesystem to make (Format) or the one found (MountExisting)
}

// ErrRefused marks a device whose contents tether must not touch.
var ErrRefused = errors.New("refused")

// RefusedError says what was found on a device tether will not touch.
type RefusedError struct {
	Device string
	Found  Signature
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refusing to use %s: it holds %s; tether formats only blank devices and mounts only ext2, ext3, ext4 or xfs filesystems; an operator must move what is on it away (tether never touches it)", e.Device, e.Found)
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// mountable are the filesystems tether mounts as they are (and can grow).
var mountable = map[string]bool{"ext2": true, "ext3": true, "ext4": true, "xfs": true}

// Decide picks what to do with dev given its signature: no signature means
// Format (which Prepare still has to justify: a grant and a blank proof); a
// supported filesystem is mounted as it is, whatever was requested (never
// reformatted); anything else (partition table, LVM, RAID, LUKS, swap,
// another filesystem, contradicting signatures) is refused with a
// *RefusedError.
func Decide(dev string, sig Signature, requested string) (Decision, error) {
	switch {
	case sig.Blank():
		return Decision{Action: Format, FSType: requested}, nil
	case sig.PTType == "" && !sig.Ambivalent && mountable[sig.Type]:
		return Decision{Action: MountExisting, FSType: sig.Type}, nil
	default:
		return Decision{}, &RefusedError{Device: dev, Found: sig}
	}
}
