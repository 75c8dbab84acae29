// Package blockdev finds the block device of an EBS volume attached to this
// instance, and confirms its identity before anyone touches it.
//
// Lookup order (the AWS guidance for Nitro instances, as ebs-csi does it):
//  1. /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<hex>, the link
//     udev makes from the NVMe serial. A link can be stale (udev lags a
//     detach and re-attach), so it is resolved and the device it points to
//     must prove to be the volume: an NVMe device's serial
//     (/sys/class/block/<dev>/device/serial) must equal the volume id
//     without its dash; a loop device (the local world and the tests attach
//     volumes as loop devices) must have a backing file whose name contains
//     the volume id. Anything else behind the link is not trusted.
//  2. Every NVMe namespace whose serial is the volume id.
//  3. The Xen device name from the attachment (--device /dev/xvdf), or its
//     twin (/dev/sdf for /dev/xvdf and the other way round). When the name
//     is a link to an NVMe or loop device, that device must prove its
//     identity as in 1; a real Xen device has no serial to check: it is
//     reported unconfirmed (Device.Confirmed false), and its user must
//     confirm it otherwise (by size) and never format it.
//
// Loop devices stand for EBS volumes only in tether's local world: they are
// accepted only when the environment says so (TETHER_LOOP_DEVICES=1, which
// the world's hosts and the tests set). On EC2 a loop device is never an
// EBS volume.
package blockdev

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/tether-ecs/tether/internal/volspec"
)

// ErrNotFound means the volume's device is not (or not yet) on this host.
var ErrNotFound = errors.New("device not found")

// ByIDPrefix is the name udev gives an EBS volume's NVMe link in /dev/disk/by-id.
const ByIDPrefix = "nvme-Amazon_Elastic_Block_Store_"

// Finder looks for devices under DevDir and SysDir (/dev and /sys on a
// host; test trees in unit tests).
type Finder struct {
	DevDir string
	SysDir string
	// AllowLoop accepts loop devices whose backing file names the volume
	// (the local world's volumes); false on EC2.
	AllowLoop bool
}

// LoopDevicesEnv is the environment variable that lets the agent take a
// loop device for an EBS volume: "1" only in tether's local world.
const LoopDevicesEnv = "TETHER_LOOP_DEVICES"

// Host is the Finder of the machine it runs on.
func Host() Finder {
	return Finder{DevDir: "/dev", SysDir: "/sys", AllowLoop: os.Getenv(LoopDevicesEnv) == "1"}
}

// Device is a volume's block device and how it was found.
type Device struct {
	Path string // e.g. /dev/nvme1n1, /dev/loop3, /dev/xvdf
	How  string // "by-id", "nvme-serial" or "device-name"
	// Confirmed: the device proved to be the volume (NVMe serial, loop
	// backing file). A Xen device found by its name alone is not.
	Confirmed bool
}

// serialOf is the NVMe serial EBS gives a volume: its id without the dash.
func serialOf(volumeID string) string { return strings.ReplaceAll(volumeID, "-", "") }

// ByIDLink is where udev links the volume's NVMe device.
func (f Finder) ByIDLink(volumeID string) string {
	return filepath.Join(f.DevDir, "disk", "by-id", ByIDPrefix+serialOf(volumeID))
}

// Find looks for volumeID's device once. hint is the Xen device name given
// at attach time, or "". The error is ErrNotFound (wrapped, with what was
// tried) when no device proves to be the volume.
func (f Finder) Find(log *slog.Logger, volumeID, hint string) (Device, error) {
	var tried []string

	link := f.ByIDLink(volumeID)
	if target, err := filepath.EvalSymlinks(link); err != nil {
		tried = append(tried, link)
	} else if err := f.confirm(target, volumeID); err != nil {
		log.Warn("ignoring a stale by-id link", "link", link, "target", target, "reason", err.Error())
		tried = append(tried, fmt.Sprintf("%s (stale: %v)", link, err))
	} else {
		return Device{Path: target, How: "by-id", Confirmed: true}, nil
	}

	if dev, ok := f.scanNVMe(volumeID); ok {
		return Device{Path: dev, How: "nvme-serial", Confirmed: true}, nil
	}
	tried = append(tried, "NVMe serial "+serialOf(volumeID))

	if hint != "" {
		for _, name := range withTwin(hint) {
			path := filepath.Join(f.DevDir, strings.TrimPrefix(name, "/dev/"))
			target, err := filepath.EvalSymlinks(path)
			if err != nil {
				tried = append(tried, name)
				continue
			}
			kind := kindOf(filepath.Base(target))
			if kind != "" {
				if err := f.confirm(target, volumeID); err != nil {
					tried = append(tried, fmt.Sprintf("%s (%v)", name, err))
					continue
				}
			}
			return Device{Path: target, How: "device-name", Confirmed: kind != ""}, nil
		}
	}
	return Device{}, fmt.Errorf("%w: volume %s: looked for %s", ErrNotFound, volumeID, strings.Join(tried, ", "))
}

// Wait polls Find until the device appears, ctx ends or timeout passes.
func (f Finder) Wait(ctx context.Context, log *slog.Logger, volumeID, hint string, timeout time.Duration) (Device, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	const poll = 200 * time.Millisecond
	const report = 10 * time.Second
	var lastReport time.Time
	for {
		dev, err := f.Find(log, volumeID, hint)
		if err == nil {
			if waited := time.Since(start); waited > poll {
				log.Info("device appeared", "device", dev.Path, "how", dev.How, "waited", waited.String())
			}
			return dev, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return Device{}, err
		}
		if lastReport.IsZero() || time.Since(lastReport) >= report {
			log.Info("waiting for the volume's device", "link", f.ByIDLink(volumeID), "serial", serialOf(volumeID),
				"deviceName", hint, "waited", time.Since(start).Round(time.Millisecond).String(), "timeout", timeout.String())
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return Device{}, fmt.Errorf("%w (waited %s)", err, time.Since(start).Round(time.Millisecond))
		case <-time.After(poll):
		}
	}
}

// withTwin returns a Xen device name and its sd/xvd twin.
func withTwin(name string) []string {
	switch {
	case strings.HasPrefix(name, "/dev/xvd"):
		return []string{name, "/dev/sd" + strings.TrimPrefix(name, "/dev/xvd")}
	case strings.HasPrefix(name, "/dev/sd"):
		return []string{name, "/dev/xvd" + strings.TrimPrefix(name, "/dev/sd")}
	}
	return []string{name}
}

var (
	nvmeNamespace = regexp.MustCompile(`^nvme[0-9]+n[0-9]+$`)
	loopName      = regexp.MustCompile(`^loop[0-9]+$`)
)

// kindOf tells the device kinds whose identity can be confirmed.
func kindOf(name string) string {
	switch {
	case nvmeNamespace.MatchString(name):
		return "nvme"
	case loopName.MatchString(name):
		return "loop"
	}
	return ""
}

// errIdentity marks a device that is not (provably) the volume.
var errIdentity = errors.New("device is not the volume")

// confirm checks that the device at path is volumeID's.
func (f Finder) confirm(path, volumeID string) error {
	got, err := f.VolumeIDOf(path)
	if err != nil {
		return err
	}
	if got != volumeID {
		return fmt.Errorf("%w: %s belongs to %s", errIdentity, path, got)
	}
	return nil
}

// VolumeIDOf returns the EBS volume id a device proves to be: from an NVMe
// serial or a loop device's backing file name.
func (f Finder) VolumeIDOf(path string) (string, error) {
	name := filepath.Base(path)
	switch kindOf(name) {
	case "nvme":
		serial, err := os.ReadFile(filepath.Join(f.SysDir, "class", "block", name, "device", "serial"))
		if err != nil {
			return "", fmt.Errorf("%w: serial of %s: %w", errIdentity, path, err)
		}
		s := strings.TrimSpace(string(serial))
		if !nvmeSerial.MatchString(s) {
			return "", fmt.Errorf("%w: %s has serial %q, not an EBS volume's", errIdentity, path, s)
		}
		return "vol-" + strings.TrimPrefix(s, "vol"), nil
	case "loop":
		if !f.AllowLoop {
			return "", fmt.Errorf("%w: %s is a loop device; loop devices stand for EBS volumes only in tether's local world (%s=1)", errIdentity, path, LoopDevicesEnv)
		}
		backing, err := os.ReadFile(filepath.Join(f.SysDir, "class", "block", name, "loop", "backing_file"))
		if err != nil {
			return "", fmt.Errorf("%w: backing file of %s: %w", errIdentity, path, err)
		}
		ids := volumeIDInName.FindAllStringSubmatch(string(backing), -1)
		if len(ids) != 1 {
			return "", fmt.Errorf("%w: backing file %q of %s names no single volume id", errIdentity, strings.TrimSpace(string(backing)), path)
		}
		return ids[0][1], nil
	}
	return "", fmt.Errorf("%w: cannot confirm the identity of %s", errIdentity, path)
}

var (
	nvmeSerial = regexp.MustCompile(`^vol[0-9a-f]{8,17}$`)
	// A volume id standing alone in a backing file path.
	volumeIDInName = regexp.MustCompile(`(?:^|[^a-z0-9-])(vol-[0-9a-f]{8,17})(?:[^0-9a-f]|$)`)
)

// scanNVMe finds the NVMe namespace whose serial is the volume's.
func (f Finder) scanNVMe(volumeID string) (string, bool) {
	entries, err := os.ReadDir(filepath.Join(f.SysDir, "class", "block"))
	if err != nil {
		return "", false
	}
	for _, e := range entries {
		if !nvmeNamespace.MatchString(e.Name()) {
			continue
		}
		dev := filepath.Join(f.DevDir, e.Name())
		if f.confirm(dev, volumeID) == nil {
			return dev, true
		}
	}
	return "", false
}

// ValidateDeviceName accepts the Xen device names EC2 attaches volumes
// under (/dev/sdf, /dev/xvdf, /dev/xvdba); the rule is volspec's, shared
// with the reconciler and the SSM document's allowedPattern.
func ValidateDeviceName(name string) error { return volspec.ValidateDeviceName(name) }

// Attached is an EBS volume's device this host has.
type Attached struct {
	VolumeID string
	Path     string
}

// List finds every EBS volume attached to this host that proves its
// identity: by-id links whose device is the volume, and NVMe namespaces
// with an EBS serial (loop devices with a by-id link in the local world).
func (f Finder) List() []Attached {
	seen := map[string]bool{}
	var out []Attached
	links, _ := filepath.Glob(filepath.Join(f.DevDir, "disk", "by-id", ByIDPrefix+"vol*"))
	for _, link := range links {
		target, err := filepath.EvalSymlinks(link)
		if err != nil {
			continue
		}
		id, err := f.VolumeIDOf(target)
		if err != nil || seen[target] {
			continue
		}
		seen[target] = true
		out = append(out, Attached{VolumeID: id, Path: target})
	}
	entries, _ := os.ReadDir(filepath.Join(f.SysDir, "class", "block"))
	for _, e := range entries {
		dev := filepath.Join(f.DevDir, e.Name())
		if !nvmeNamespace.MatchString(e.Name()) || seen[dev] {
			continue
		}
		if id, err := f.VolumeIDOf(dev); err == nil {
			seen[dev] = true
			out = append(out, Attached{VolumeID: id, Path: dev})
		}
	}
	return out
}
