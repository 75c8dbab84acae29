package fakehost

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/tether-ecs/tether/internal/volspec"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Exit codes of tether-agent (docs/contracts.md).
const (
	ExitOK       = 0
	ExitFailed   = 1
	ExitBadInput = 2
	ExitBusy     = 3
	ExitNoDevice = 4
	ExitRefused  = 5
)

// RunShellScript implements worldapi.Host for the scripts tether's SSM
// documents produce, through the small shell in shell.go.
func (h *Host) RunShellScript(ctx context.Context, script string, timeout time.Duration) (worldapi.CommandResult, error) {
	h.mu.Lock()
	if err := h.aliveLocked(); err != nil {
		h.mu.Unlock()
		return worldapi.CommandResult{}, err
	}
	h.scripts = append(h.scripts, script)
	h.mu.Unlock()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	res := worldapi.CommandResult{Started: time.Now()}
	var stdout, stderr bytes.Buffer
	sh := &shell{run: func(args []string) int { return h.agent(ctx, args, &stdout, &stderr) }, stderr: &stderr}
	res.ExitCode = sh.script(script)
	res.Stdout, res.Stderr, res.Ended = stdout.String(), stderr.String(), time.Now()
	return res, nil
}

// agent runs one tether-agent command line and returns its exit code.
func (h *Host) agent(ctx context.Context, args []string, stdout, stderr *bytes.Buffer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: tether-agent serve|mount|unmount|status [options]")
		return ExitBadInput
	}
	switch args[0] {
	case "mount":
		return h.mountCmd(ctx, args[1:], stdout, stderr)
	case "unmount":
		return h.unmountCmd(args[1:], stdout, stderr)
	case "status":
		return h.statusCmd(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "tether-agent: unknown command %q\n", args[0])
	return ExitBadInput
}

type mountResult struct {
	VolumeID       string `json:"volumeId"`
	Name           string `json:"name"`
	Device         string `json:"device"`
	FSType         string `json:"fstype"`
	Formatted      bool   `json:"formatted"`
	Grown          bool   `json:"grown"`
	Mountpoint     string `json:"mountpoint"`
	AlreadyMounted bool   `json:"alreadyMounted"`
}

func badInput(stderr *bytes.Buffer, format string, args ...any) int {
	fmt.Fprintf(stderr, "tether-agent: "+format+"\n", args...)
	return ExitBadInput
}

func (h *Host) mountCmd(ctx context.Context, args []string, stdout, stderr *bytes.Buffer) int {
	fs := flag.NewFlagSet("mount", flag.ContinueOnError)
	fs.SetOutput(stderr)
	volumeID := fs.String("volume-id", "", "")
	name := fs.String("name", "", "")
	fsType := fs.String("fstype", volspec.DefaultFSType, "")
	device := fs.String("device", "", "")
	root := fs.String("root", h.opts.Root, "")
	wait := fs.Duration("wait", 60*time.Second, "")
	asJSON := fs.Bool("json", false, "")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return badInput(stderr, "mount: bad arguments %q", args)
	}
	if err := volspec.ValidateVolumeID(*volumeID); err != nil {
		return badInput(stderr, "%v", err)
	}
	if err := volspec.ValidateName(*name); err != nil {
		return badInput(stderr, "%v", err)
	}
	if err := volspec.ValidateFSType(*fsType); err != nil {
		return badInput(stderr, "%v", err)
	}
	if *device != "" && (!strings.HasPrefix(*device, "/dev/") || strings.Contains(*device, "..")) {
		return badInput(stderr, "invalid device %q: want a path under /dev", *device)
	}
	if *wait <= 0 || !path.IsAbs(*root) {
		return badInput(stderr, "invalid --wait or --root")
	}
	res := mountResult{VolumeID: *volumeID, Name: *name, Mountpoint: path.Join(*root, "volumes", *name)}
	dev, code := h.waitDevice(ctx, *volumeID, *wait, stderr)
	if code != ExitOK {
		return code
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		return ExitFailed
	}
	for n, m := range h.mounts {
		switch {
		case n == *name && m.volumeID == *volumeID:
			res.Device, res.FSType, res.AlreadyMounted = m.device, m.fsType, true
			return printResult(stdout, *asJSON, res, "already mounted")
		case n == *name:
			fmt.Fprintf(stderr, "tether-agent: %s is mounted from %s, not %s\n", res.Mountpoint, m.volumeID, *volumeID)
			return ExitFailed
		case m.volumeID == *volumeID:
			fmt.Fprintf(stderr, "tether-agent: %s is already mounted as %s\n", *volumeID, n)
			return ExitFailed
		}
	}
	existing, signature := h.opts.Disks.probe(*volumeID)
	if signature != "" {
		fmt.Fprintf(stderr, "tether-agent: refusing %s (%s): it has a %s signature\n", dev, *volumeID, signature)
		return ExitRefused
	}
	res.Device, res.FSType = dev, existing
	if existing == "" {
		h.opts.Disks.format(*volumeID, *fsType)
		res.FSType, res.Formatted = *fsType, true
	}
	h.mounts[*name] = &mount{volumeID: *volumeID, device: dev, fsType: res.FSType}
	h.bindings[*name] = *volumeID
	h.changedLocked()
	h.log.Info("volume mounted", "volume", *volumeID, "name", *name, "device", dev, "formatted", res.Formatted)
	return printResult(stdout, *asJSON, res, "mounted")
}

// waitDevice waits, bounded, for the volume's device to appear.
func (h *Host) waitDevice(ctx context.Context, volumeID string, wait time.Duration, stderr *bytes.Buffer) (string, int) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		dev, ok := h.devices[volumeID]
		down, changed := h.down, h.changed
		h.mu.Unlock()
		switch {
		case down:
			return "", ExitFailed
		case ok:
			return dev, ExitOK
		}
		select {
		case <-changed:
		case <-deadline.C:
			fmt.Fprintf(stderr, "tether-agent: device for %s not found after %s (looked for /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_%s)\n", volumeID, wait, strings.ReplaceAll(volumeID, "-", ""))
			return "", ExitNoDevice
		case <-ctx.Done():
			fmt.Fprintf(stderr, "tether-agent: waiting for the device of %s: %v\n", volumeID, ctx.Err())
			return "", ExitFailed
		}
	}
}

func printResult(stdout *bytes.Buffer, asJSON bool, v any, human string) int {
	if asJSON {
		b, _ := json.Marshal(v)
		stdout.Write(append(b, '\n'))
		return ExitOK
	}
	fmt.Fprintln(stdout, human)
	return ExitOK
}

// unmountResult and statusVolume mirror agent/hostops' JSON.
type unmountResult struct {
	VolumeID   string `json:"volumeId"`
	Name       string `json:"name"`
	Mountpoint string `json:"mountpoint"`
	Device     string `json:"device,omitempty"`
	WasMounted bool   `json:"wasMounted"`
	Detached   bool   `json:"detached,omitempty"`
	Users      []user `json:"users,omitempty"`
}

type user struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func (h *Host) unmountCmd(args []string, stdout, stderr *bytes.Buffer) int {
	fs := flag.NewFlagSet("unmount", flag.ContinueOnError)
	fs.SetOutput(stderr)
	volumeID := fs.String("volume-id", "", "")
	name := fs.String("name", "", "")
	force := fs.Bool("force", false, "")
	root := fs.String("root", h.opts.Root, "")
	asJSON := fs.Bool("json", false, "")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return badInput(stderr, "unmount: bad arguments %q", args)
	}
	if err := volspec.ValidateVolumeID(*volumeID); err != nil {
		return badInput(stderr, "%v", err)
	}
	if err := volspec.ValidateName(*name); err != nil {
		return badInput(stderr, "%v", err)
	}
	if !path.IsAbs(*root) {
		return badInput(stderr, "invalid --root")
	}
	res := unmountResult{VolumeID: *volumeID, Name: *name, Mountpoint: path.Join(*root, "volumes", *name)}
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := h.mounts[*name]
	switch {
	case !ok:
		return printResult(stdout, *asJSON, res, "not mounted")
	case m.volumeID != *volumeID:
		fmt.Fprintf(stderr, "tether-agent: %s is mounted from %s, not %s\n", res.Mountpoint, m.volumeID, *volumeID)
		return ExitFailed
	case h.inUseLocked(*name) && !*force:
		fmt.Fprintf(stderr, "tether-agent: %s is in use by a container (running, or starting with its Mount answered)\n", res.Mountpoint)
		return ExitBusy
	}
	res.Device, res.WasMounted = m.device, true
	if res.Users = h.usersLocked(*name); len(res.Users) > 0 {
		h.forcedUnmount++
		res.Detached = true
	}
	delete(h.mounts, *name)
	h.changedLocked()
	h.log.Info("volume unmounted", "volume", *volumeID, "name", *name, "force", *force)
	return printResult(stdout, *asJSON, res, "unmounted")
}

type statusVolume struct {
	Name       string `json:"name"`
	VolumeID   string `json:"volumeId,omitempty"`
	Mounted    bool   `json:"mounted"`
	Device     string `json:"device,omitempty"`
	Mountpoint string `json:"mountpoint"`
	FSType     string `json:"fstype,omitempty"`
	Users      []user `json:"users"`
}

func (h *Host) statusCmd(args []string, stdout, stderr *bytes.Buffer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", h.opts.Root, "")
	asJSON := fs.Bool("json", false, "")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || !path.IsAbs(*root) {
		return badInput(stderr, "status: bad arguments %q", args)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	vols := []statusVolume{}
	for _, n := range h.knownNamesLocked() {
		v := statusVolume{Name: n, VolumeID: h.bindings[n], Mountpoint: path.Join(*root, "volumes", n), Users: h.usersLocked(n)}
		if m := h.mounts[n]; m != nil {
			v.VolumeID, v.Mounted, v.Device, v.FSType = m.volumeID, true, m.device, m.fsType
		}
		if v.Users == nil {
			v.Users = []user{}
		}
		vols = append(vols, v)
	}
	return printResult(stdout, *asJSON, map[string]any{"volumes": vols}, fmt.Sprintf("%d volumes", len(vols)))
}
