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
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tether-ecs/tether/agent/blockdev"
	"github.com/tether-ecs/tether/agent/dockerapi"
	"github.com/tether-ecs/tether/agent/fsys"
	"github.com/tether-ecs/tether/agent/hostops"
	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/internal/volspec"
)

// Defaults of the commands' waits. The SSM documents give mount 180 s and
// unmount 120 s (template.yaml): the device wait and the lock wait of a
// mount (60 s + 60 s) leave a minute for mkfs or fsck; the lock wait of an
// unmount (60 s) leaves a minute for its flush.
const (
	defaultDeviceWait = 60 * time.Second
	defaultLockWait   = 60 * time.Second
)

// errHelp is -h: print the command's help and exit 0.
var errHelp = flag.ErrHelp

// badInput is a usage or validation error: exit 2, nothing changed.
type badInput struct{ err error }

func (b badInput) Error() string { return b.err.Error() }
func (b badInput) Unwrap() error { return b.err }
func (b badInput) Is(target error) bool {
	return target == hostops.ErrBadInput
}

// command is one command's flags and how it reports.
type command struct {
	name, synopsis string
	flags          *flag.FlagSet
	asJSON         bool
	stdout         io.Writer
	log            *slog.Logger
	// volumeID names the volume of a batched unmount's per-volume
	// failure lines (agentproto.Failure.VolumeID); "" elsewhere.
	volumeID string
}

func newCommand(name, synopsis string, stdout io.Writer, log *slog.Logger) *command {
	c := &command{name: name, synopsis: synopsis, flags: flag.NewFlagSet(name, flag.ContinueOnError), stdout: stdout, log: log}
	c.flags.SetOutput(io.Discard)
	c.flags.BoolVar(&c.asJSON, "json", false, "print the result (or the failure) as one JSON line")
	return c
}

// parse parses the flags; positional arguments are bad input; -h is errHelp.
func (c *command) parse(args []string) error {
	if err := c.flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return badInput{err}
	}
	if c.flags.NArg() > 0 {
		return badInput{fmt.Errorf("unexpected argument %q", c.flags.Arg(0))}
	}
	return nil
}

// help prints the command's synopsis and flags on stdout.
func (c *command) help() int {
	fmt.Fprintf(c.stdout, "Usage: tether-agent %s [flags]\n\n%s\n\nFlags:\n", c.name, c.synopsis)
	c.flags.SetOutput(c.stdout)
	c.flags.PrintDefaults()
	return agentproto.ExitOK
}

// fail logs err, prints the failure line with --json, and returns its exit
// code.
func (c *command) fail(what string, err error) int {
	if errors.Is(err, errHelp) {
		return c.help()
	}
	f := hostops.FailureOf(err)
	f.Agent = agentproto.ThisAgent(version) // a failure may be the protocol's: say which agent answered
	f.VolumeID = c.volumeID
	c.log.Error(what, "error", err.Error(), "exitCode", f.ExitCode, "class", string(f.Class))
	if c.asJSON {
		_ = printJSON(c.stdout, struct {
			Error agentproto.Failure `json:"error"`
		}{f})
	}
	return f.ExitCode
}

// done prints the result: one JSON line, or text.
func (c *command) done(v any, text string) int {
	var err error
	if c.asJSON {
		err = printJSON(c.stdout, v)
	} else {
		_, err = fmt.Fprintln(c.stdout, text)
	}
	if err != nil {
		c.log.Error("printing the result", "error", err.Error())
		return agentproto.ExitFailed
	}
	return agentproto.ExitOK
}

// newHost is the host for a command; plugin is asked who holds a volume
// (the unmount command's), nil for the others.
func newHost(root string, log *slog.Logger, plugin hostops.PluginHolders, lockWait time.Duration) (*hostops.Host, error) {
	docker, err := dockerapi.FromEnv()
	if err != nil {
		return nil, badInput{err}
	}
	return hostops.New(hostops.Config{
		Root:     root,
		Finder:   blockdev.Host(),
		Runner:   fsys.ExecRunner{},
		Docker:   docker,
		Plugin:   plugin,
		Logger:   log,
		LockWait: lockWait,
	})
}

// withVolume adds the volume's keys to a command's log lines.
func withVolume(log *slog.Logger, volumeID, name, attachment string) *slog.Logger {
	log = log.With("volumeId", volumeID, "volume", name)
	if attachment != "" {
		log = log.With("attachment", attachment)
	}
	return log
}

func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func checkLockWait(d time.Duration) error {
	if d <= 0 || d > 10*time.Minute {
		return badInput{fmt.Errorf("--lock-wait %s: want more than 0 and at most 10m", d)}
	}
	return nil
}

func runMount(ctx context.Context, log *slog.Logger, args []string, stdout io.Writer) int {
	c := newCommand("mount", "Find the volume's device and mount it under <root>/volumes/NAME. A device without a\nfilesystem is formatted only with --format-if-blank, and only once it proves blank.", stdout, log)
	fs := c.flags
	var req hostops.MountRequest
	fs.StringVar(&req.VolumeID, "volume-id", "", "EBS volume id (vol-...)")
	fs.StringVar(&req.Name, "name", "", "tether volume name")
	fs.StringVar(&req.FSType, "fstype", volspec.DefaultFSType, "filesystem for a blank device: ext4 or xfs")
	fs.StringVar(&req.DeviceName, "device", "", "device name given to AttachVolume (/dev/xvdf)")
	fs.DurationVar(&req.Wait, "wait", defaultDeviceWait, "how long to wait for the device")
	fs.BoolVar(&req.FormatIfBlank, "format-if-blank", false, "the grant to format: make --fstype on a device that proves blank")
	fs.IntVar(&req.SizeGiB, "size-gib", 0, "the volume's size in GiB (confirms a device found by its Xen name)")
	fs.StringVar(&req.Attachment, "attachment", "", "the attachment this command is for (echoed in the result)")
	fs.BoolVar(&req.DevSuid, "dev-suid", false, "mount without nosuid,nodev (the volume's driverOpt devsuid=true)")
	fs.StringVar(&req.FormatOwner, "format-owner", "", "UID[:GID] (numeric): with --format-if-blank, who may write in the root of the filesystem this mount makes\n(UID:GID: root:GID mode 2775; UID: UID:0 mode 0755); a filesystem that was there is never changed")
	lockWait := fs.Duration("lock-wait", defaultLockWait, "how long to wait for the volume's locks (exit 9 when it runs out)")
	root := fs.String("root", hostops.DefaultRoot, "tether's host state directory")
	if err := c.parse(args); err != nil {
		return c.fail("bad input", err)
	}
	c.log = withVolume(c.log, req.VolumeID, req.Name, req.Attachment)
	if err := hostops.ValidateMountRequest(req); err != nil {
		return c.fail("bad input", err)
	}
	if err := checkLockWait(*lockWait); err != nil {
		return c.fail("bad input", err)
	}
	host, err := newHost(*root, c.log, nil, *lockWait)
	if err != nil {
		return c.fail("mount failed", err)
	}
	res, err := host.MountVolume(ctx, req)
	if err != nil {
		return c.fail("mount failed", err)
	}
	res.Agent = agentproto.ThisAgent(version) // the reconciler's protocol check
	return c.done(res, fmt.Sprintf("%s (%s) mounted at %s from %s, %s (formatted %v, checked %v, grown %v, already mounted %v, generation %d, device %d bytes, filesystem %d bytes)",
		res.Name, res.VolumeID, res.Mountpoint, res.Device, res.FSType, res.Formatted, res.Checked, res.Grown, res.AlreadyMounted, res.Generation, res.DeviceBytes, res.FilesystemBytes))
}

func runUnmount(ctx context.Context, log *slog.Logger, args []string, stdout io.Writer) int {
	c := newCommand("unmount", "Flush and unmount NAME. Succeeds only when the kernel holds the device nowhere on this host;\nrefused while containers hold it unless --force (which still needs the kernel's agreement).\nSeveral volumes: --volume-id, --name and --attachment are lists joined by \",\" (item i of each\nis volume i); each is unmounted in turn and prints its own line; the exit code is the first\nnon-zero one of theirs.", stdout, log)
	fs := c.flags
	var req hostops.UnmountRequest
	fs.StringVar(&req.VolumeID, "volume-id", "", "EBS volume id (vol-...), or up to 24 joined by \",\"")
	fs.StringVar(&req.Name, "name", "", "tether volume name, or one per --volume-id joined by \",\"")
	fs.BoolVar(&req.Force, "force", false, "go past containers that hold the volume (only when their tasks are gone); applies to every volume")
	fs.StringVar(&req.Attachment, "attachment", "", "the attachment this command is for (echoed in the result); with several volumes, one per --volume-id joined by \",\" (items may be empty)")
	lockWait := fs.Duration("lock-wait", defaultLockWait, "how long to wait for the volume's locks (exit 9 when it runs out)")
	root := fs.String("root", hostops.DefaultRoot, "tether's host state directory")
	socket := fs.String("socket", DefaultSocket, "the plugin's socket, asked which containers hold the volume")
	if err := c.parse(args); err != nil {
		return c.fail("bad input", err)
	}
	c.log = withVolume(c.log, req.VolumeID, req.Name, req.Attachment)
	reqs, err := unmountRequests(req)
	if err != nil {
		return c.fail("bad input", err)
	}
	if !filepath.IsAbs(*socket) {
		return c.fail("bad input", badInput{fmt.Errorf("--socket %q: want an absolute path", *socket)})
	}
	if err := checkLockWait(*lockWait); err != nil {
		return c.fail("bad input", err)
	}
	if len(reqs) == 1 {
		return unmountOne(ctx, c, reqs[0], *root, *socket, *lockWait)
	}
	// A batch: each volume on its own, in list order, each with its own
	// line (a failure's names its volume) and log keys; a busy or failed
	// volume does not stop the others.
	code := agentproto.ExitOK
	for _, r := range reqs {
		vc := *c
		vc.log, vc.volumeID = withVolume(log, r.VolumeID, r.Name, r.Attachment), r.VolumeID
		if rc := unmountOne(ctx, &vc, r, *root, *socket, *lockWait); code == agentproto.ExitOK {
			code = rc
		}
	}
	return code
}

// unmountRequests is one request per volume of an unmount's flags. Without
// ListSep anywhere it is the one volume, checked as ever; otherwise
// --volume-id, --name and --attachment are lists, item i of each
// describing volume i (--attachment "" is no attachment for any). Any
// count mismatch, more than agentproto.MaxBatch volumes, a volume id or a
// name given twice, or an invalid item is bad input for the whole batch.
func unmountRequests(req hostops.UnmountRequest) ([]hostops.UnmountRequest, error) {
	if !strings.Contains(req.VolumeID+req.Name+req.Attachment, agentproto.ListSep) {
		if err := errors.Join(volspec.ValidateVolumeID(req.VolumeID), volspec.ValidateName(req.Name), agentproto.ValidateAttachment(req.Attachment)); err != nil {
			return nil, badInput{err}
		}
		return []hostops.UnmountRequest{req}, nil
	}
	ids, names, attachments := agentproto.SplitList(req.VolumeID), agentproto.SplitList(req.Name), agentproto.SplitList(req.Attachment)
	switch {
	case len(ids) > agentproto.MaxBatch:
		return nil, badInput{fmt.Errorf("--volume-id: %d volumes, at most %d in one unmount", len(ids), agentproto.MaxBatch)}
	case len(names) != len(ids):
		return nil, badInput{fmt.Errorf("--name has %d items, --volume-id %d: want one name per volume", len(names), len(ids))}
	case attachments != nil && len(attachments) != len(ids):
		return nil, badInput{fmt.Errorf("--attachment has %d items, --volume-id %d: want one per volume (or none)", len(attachments), len(ids))}
	}
	if attachments == nil {
		attachments = make([]string, len(ids))
	}
	reqs := make([]hostops.UnmountRequest, len(ids))
	seenID, seenName := map[string]bool{}, map[string]bool{}
	var errs []error
	for i, id := range ids {
		reqs[i] = hostops.UnmountRequest{VolumeID: id, Name: names[i], Force: req.Force, Attachment: attachments[i]}
		errs = append(errs, volspec.ValidateVolumeID(id), volspec.ValidateName(names[i]), agentproto.ValidateAttachment(attachments[i]))
		if seenID[id] {
			errs = append(errs, fmt.Errorf("volume id %q is given twice", id))
		}
		if seenName[names[i]] {
			errs = append(errs, fmt.Errorf("name %q is given twice", names[i]))
		}
		seenID[id], seenName[names[i]] = true, true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badInput{err}
	}
	return reqs, nil
}

// unmountOne unmounts one volume and reports it through c: one line, or
// one failure line.
func unmountOne(ctx context.Context, c *command, req hostops.UnmountRequest, root, socket string, lockWait time.Duration) int {
	host, err := newHost(root, c.log, hostops.PluginSocket(socket), lockWait)
	if err != nil {
		return c.fail("unmount failed", err)
	}
	res, err := host.UnmountVolume(ctx, req)
	if err != nil {
		return c.fail("unmount failed", err)
	}
	res.Agent = agentproto.ThisAgent(version) // the reconciler trusts only its own protocol's answer
	text := fmt.Sprintf("%s (%s) unmounted from %s; released (generation %d)", res.Name, res.VolumeID, res.Mountpoint, res.Generation)
	if !res.WasMounted {
		text = fmt.Sprintf("%s (%s) was not mounted; released", res.Name, res.VolumeID)
	}
	return c.done(res, text)
}

func runStatus(ctx context.Context, log *slog.Logger, args []string, stdout io.Writer) int {
	c := newCommand("status", "List every tether volume on this host (binding, generation, release, mount, seal, users,\nholders, errors) and the attached EBS devices no binding names.", stdout, log)
	root := c.flags.String("root", hostops.DefaultRoot, "tether's host state directory")
	if err := c.parse(args); err != nil {
		return c.fail("bad input", err)
	}
	host, err := newHost(*root, c.log, nil, defaultLockWait)
	if err != nil {
		return c.fail("status failed", err)
	}
	st, err := host.Status(ctx)
	if err != nil {
		return c.fail("status failed", err)
	}
	if c.asJSON {
		return c.done(st, "")
	}
	if err := printStatusTable(c.stdout, st); err != nil {
		return c.fail("printing the result", err)
	}
	return agentproto.ExitOK
}

func runVersion(log *slog.Logger, args []string, stdout io.Writer) int {
	c := newCommand("version", "Print the agent's version and the protocol of its commands (internal/agentproto).", stdout, log)
	if err := c.parse(args); err != nil {
		return c.fail("bad input", err)
	}
	v := agentproto.VersionResult{Version: version, Protocol: agentproto.Protocol}
	return c.done(v, fmt.Sprintf("tether-agent %s (protocol %d, %s, %s/%s)", v.Version, v.Protocol, runtime.Version(), runtime.GOOS, runtime.GOARCH))
}

func printStatusTable(w io.Writer, st hostops.HostStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVOLUME\tGEN\tSTATE\tDEVICE\tFSTYPE\tSIZE\tUSERS\tHOLDERS\tMOUNTPOINT")
	for _, v := range st.Volumes {
		device, size := "-", "-"
		if v.Mounted {
			device, size = v.Device, fmt.Sprintf("%.1fG", float64(v.SizeBytes)/(1<<30))
		}
		state := v.Seal
		if v.Released {
			state += ",released"
		}
		if v.Error != "" {
			state = "error: " + v.Error
		}
		users := fmt.Sprint(len(v.Users))
		if v.UsersError != "" {
			users = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", v.Name, orDash(v.VolumeID), v.Generation, state, device, orDash(v.FSType), size, users, len(v.Holders), v.Mountpoint)
	}
	for _, u := range st.Unbound {
		fmt.Fprintf(tw, "-\t%s\t-\tattached, no binding\t%s\t-\t-\t-\t-\t-\n", u.VolumeID, u.Device)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
