package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/tether-ecs/tether/agent/blockdev"
	"github.com/tether-ecs/tether/agent/dockerapi"
	"github.com/tether-ecs/tether/agent/fsys"
	"github.com/tether-ecs/tether/agent/hostops"
	"github.com/tether-ecs/tether/internal/volspec"
)

// badInput is a usage or validation error: exit 2, nothing changed.
type badInput struct{ err error }

func (b badInput) Error() string { return b.err.Error() }
func (b badInput) Unwrap() error { return b.err }

// parse parses a command's flags; positional arguments are bad input.
func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return badInput{err}
	}
	if fs.NArg() > 0 {
		return badInput{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// exitCode maps an error to the contract's exit codes.
func exitCode(err error) int {
	var bad badInput
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &bad), errors.Is(err, hostops.ErrBadInput):
		return exitBadInput
	case errors.Is(err, hostops.ErrBusy):
		return exitBusy
	case errors.Is(err, blockdev.ErrNotFound):
		return exitNoDevice
	case errors.Is(err, fsys.ErrRefused):
		return exitRefused
	}
	return exitFailed
}

// fail logs err and returns its exit code.
func fail(log *slog.Logger, what string, err error) int {
	log.Error(what, "error", err.Error(), "exitCode", exitCode(err))
	return exitCode(err)
}

// newHost is the host for a command; plugin is asked who holds a volume
// (the unmount command's), nil for the others.
func newHost(root string, log *slog.Logger, plugin hostops.PluginHolders) (*hostops.Host, error) {
	docker, err := dockerapi.FromEnv()
	if err != nil {
		return nil, badInput{err}
	}
	return hostops.New(hostops.Config{
		Root:   root,
		Finder: blockdev.Host(),
		Runner: fsys.ExecRunner{},
		Docker: docker,
		Plugin: plugin,
		Logger: log,
	})
}

func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func runMount(ctx context.Context, log *slog.Logger, args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet("mount", flag.ContinueOnError)
	var req hostops.MountRequest
	fs.StringVar(&req.VolumeID, "volume-id", "", "EBS volume id (vol-...)")
	fs.StringVar(&req.Name, "name", "", "tether volume name")
	fs.StringVar(&req.FSType, "fstype", volspec.DefaultFSType, "filesystem for a blank device: ext4 or xfs")
	fs.StringVar(&req.DeviceName, "device", "", "device name given to AttachVolume (/dev/xvdf)")
	fs.DurationVar(&req.Wait, "wait", 60*time.Second, "how long to wait for the device")
	root := fs.String("root", hostops.DefaultRoot, "tether's host state directory")
	asJSON := fs.Bool("json", false, "print the result as one JSON line")
	if err := parse(fs, args); err != nil {
		return fail(log, "bad input", err)
	}
	log = log.With("volumeId", req.VolumeID, "volume", req.Name)
	if err := hostops.ValidateMountRequest(req); err != nil {
		return fail(log, "bad input", err)
	}
	host, err := newHost(*root, log, nil)
	if err != nil {
		return fail(log, "mount failed", err)
	}
	res, err := host.MountVolume(ctx, req)
	if err != nil {
		return fail(log, "mount failed", err)
	}
	if *asJSON {
		err = printJSON(stdout, res)
	} else {
		_, err = fmt.Fprintf(stdout, "%s (%s) mounted at %s from %s, %s (formatted %v, grown %v, already mounted %v)\n",
			res.Name, res.VolumeID, res.Mountpoint, res.Device, res.FSType, res.Formatted, res.Grown, res.AlreadyMounted)
	}
	if err != nil {
		return fail(log, "printing the result", err)
	}
	return exitOK
}

func runUnmount(ctx context.Context, log *slog.Logger, args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet("unmount", flag.ContinueOnError)
	var req hostops.UnmountRequest
	fs.StringVar(&req.VolumeID, "volume-id", "", "EBS volume id (vol-...)")
	fs.StringVar(&req.Name, "name", "", "tether volume name")
	fs.BoolVar(&req.Force, "force", false, "unmount even while containers use the volume")
	root := fs.String("root", hostops.DefaultRoot, "tether's host state directory")
	socket := fs.String("socket", DefaultSocket, "the plugin's socket, asked which containers hold the volume")
	asJSON := fs.Bool("json", false, "print the result as one JSON line")
	if err := parse(fs, args); err != nil {
		return fail(log, "bad input", err)
	}
	log = log.With("volumeId", req.VolumeID, "volume", req.Name)
	if err := errors.Join(volspec.ValidateVolumeID(req.VolumeID), volspec.ValidateName(req.Name)); err != nil {
		return fail(log, "bad input", badInput{err})
	}
	if !filepath.IsAbs(*socket) {
		return fail(log, "bad input", badInput{fmt.Errorf("--socket %q: want an absolute path", *socket)})
	}
	host, err := newHost(*root, log, hostops.PluginSocket(*socket))
	if err != nil {
		return fail(log, "unmount failed", err)
	}
	res, err := host.UnmountVolume(ctx, req)
	if err != nil {
		return fail(log, "unmount failed", err)
	}
	if *asJSON {
		err = printJSON(stdout, res)
	} else if res.WasMounted {
		_, err = fmt.Fprintf(stdout, "%s (%s) unmounted from %s\n", res.Name, res.VolumeID, res.Mountpoint)
	} else {
		_, err = fmt.Fprintf(stdout, "%s (%s) was not mounted\n", res.Name, res.VolumeID)
	}
	if err != nil {
		return fail(log, "printing the result", err)
	}
	return exitOK
}

func runStatus(ctx context.Context, log *slog.Logger, args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	root := fs.String("root", hostops.DefaultRoot, "tether's host state directory")
	asJSON := fs.Bool("json", false, "print the result as one JSON line")
	if err := parse(fs, args); err != nil {
		return fail(log, "bad input", err)
	}
	host, err := newHost(*root, log, nil)
	if err != nil {
		return fail(log, "status failed", err)
	}
	vols, err := host.Status(ctx)
	if err != nil {
		return fail(log, "status failed", err)
	}
	if *asJSON {
		err = printJSON(stdout, struct {
			Volumes []hostops.VolumeStatus `json:"volumes"`
		}{vols})
	} else {
		err = printStatusTable(stdout, vols)
	}
	if err != nil {
		return fail(log, "printing the result", err)
	}
	return exitOK
}

func printStatusTable(w io.Writer, vols []hostops.VolumeStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVOLUME\tDEVICE\tFSTYPE\tSIZE\tUSERS\tMOUNTPOINT")
	for _, v := range vols {
		device, size := "-", "-"
		if v.Mounted {
			device, size = v.Device, fmt.Sprintf("%.1fG", float64(v.SizeBytes)/(1<<30))
		}
		users := fmt.Sprint(len(v.Users))
		if v.UsersError != "" {
			users = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, orDash(v.VolumeID), device, orDash(v.FSType), size, users, v.Mountpoint)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
