package fakehost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/tether-ecs/tether/agent/hostops"
	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/internal/volspec"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Version is what the fake agent's `version` reports.
const Version = "fakehost"

// RunShellScript implements worldapi.Host for the scripts tether's SSM
// documents produce, through the small shell in shell.go.
func (h *Host) RunShellScript(ctx context.Context, script string, timeout time.Duration) (worldapi.CommandResult, error) {
	return h.RunShellScriptEnv(ctx, script, nil, timeout)
}

var _ worldapi.ScriptEnvRunner = (*Host)(nil)

// RunShellScriptEnv is RunShellScript with env for the script's variables
// (worldapi.ScriptEnvRunner).
func (h *Host) RunShellScriptEnv(ctx context.Context, script string, env map[string]string, timeout time.Duration) (worldapi.CommandResult, error) {
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
	sh := &shell{run: func(args []string) int { return h.agent(ctx, args, &stdout, &stderr) }, stderr: &stderr, env: env}
	res.ExitCode = sh.script(script)
	res.Stdout, res.Stderr, res.Ended = stdout.String(), stderr.String(), time.Now()
	return res, nil
}

// agent runs one tether-agent command line and returns its exit code.
func (h *Host) agent(ctx context.Context, args []string, stdout, stderr *bytes.Buffer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: tether-agent serve|mount|unmount|status|version [options]")
		return agentproto.ExitBadInput
	}
	c := &cmd{h: h, stdout: stdout, stderr: stderr}
	switch args[0] {
	case "mount":
		return c.mount(ctx, args[1:])
	case "unmount":
		return c.unmount(ctx, args[1:])
	case "status":
		return c.status(args[1:])
	case "version":
		return c.version(args[1:])
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, "tether-agent (fakehost): mount, unmount, status, version")
		return agentproto.ExitOK
	}
	fmt.Fprintf(stderr, "tether-agent: unknown command %q\n", args[0])
	return agentproto.ExitBadInput
}

// cmd is one fake agent command: its output streams and --json.
type cmd struct {
	h              *Host
	stdout, stderr *bytes.Buffer
	asJSON         bool
	// volumeID names the volume of a batched unmount's per-volume
	// failure lines (agentproto.Failure.VolumeID), as the agent's.
	volumeID string
}

// fail reports a failure as the real agent does: a line on stderr and,
// with --json, agentproto.Failure on stdout.
func (c *cmd) fail(code int, found string, holders []agentproto.Holder, format string, args ...any) int {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(c.stderr, "tether-agent: %s\n", msg)
	if c.asJSON {
		f := agentproto.Failure{VolumeID: c.volumeID, ExitCode: code, Class: agentproto.ClassOf(code), Message: msg, Found: found, Holders: holders, Agent: agentproto.ThisAgent(Version)}
		b, _ := json.Marshal(struct {
			Error agentproto.Failure `json:"error"`
		}{f})
		c.stdout.Write(append(b, '\n'))
	}
	return code
}

func (c *cmd) bad(format string, args ...any) int {
	return c.fail(agentproto.ExitBadInput, "", nil, format, args...)
}

func (c *cmd) done(v any, human string) int {
	if c.asJSON {
		b, _ := json.Marshal(v)
		c.stdout.Write(append(b, '\n'))
		return agentproto.ExitOK
	}
	fmt.Fprintln(c.stdout, human)
	return agentproto.ExitOK
}

// flags makes a command's flag set with --json; -h prints help (exit 0).
func (c *cmd) parse(fs *flag.FlagSet, args []string) (int, bool) {
	fs.SetOutput(c.stderr)
	fs.BoolVar(&c.asJSON, "json", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(c.stdout, "Usage: tether-agent %s [flags]\n", fs.Name())
			return agentproto.ExitOK, false
		}
		return c.bad("%s: bad arguments %q", fs.Name(), args), false
	}
	if fs.NArg() > 0 {
		return c.bad("%s: unexpected argument %q", fs.Name(), fs.Arg(0)), false
	}
	return 0, true
}

func (c *cmd) mount(ctx context.Context, args []string) int {
	h := c.h
	fs := flag.NewFlagSet("mount", flag.ContinueOnError)
	volumeID := fs.String("volume-id", "", "")
	name := fs.String("name", "", "")
	fsType := fs.String("fstype", volspec.DefaultFSType, "")
	device := fs.String("device", "", "")
	root := fs.String("root", h.opts.Root, "")
	wait := fs.Duration("wait", 60*time.Second, "")
	lockWait := fs.Duration("lock-wait", 60*time.Second, "")
	grant := fs.Bool("format-if-blank", false, "")
	sizeGiB := fs.Int("size-gib", 0, "")
	attachment := fs.String("attachment", "", "")
	fs.Bool("dev-suid", false, "")
	formatOwner := fs.String("format-owner", "", "")
	if code, ok := c.parse(fs, args); !ok {
		return code
	}
	switch {
	case volspec.ValidateVolumeID(*volumeID) != nil:
		return c.bad("%v", volspec.ValidateVolumeID(*volumeID))
	case volspec.ValidateName(*name) != nil:
		return c.bad("%v", volspec.ValidateName(*name))
	case volspec.ValidateFSType(*fsType) != nil:
		return c.bad("%v", volspec.ValidateFSType(*fsType))
	case *device != "" && volspec.ValidateDeviceName(*device) != nil:
		return c.bad("%v", volspec.ValidateDeviceName(*device))
	case agentproto.ValidateAttachment(*attachment) != nil:
		return c.bad("%v", agentproto.ValidateAttachment(*attachment))
	case formatOwnerErr(*formatOwner) != nil:
		return c.bad("%v", formatOwnerErr(*formatOwner))
	case *wait < 0 || *lockWait <= 0 || *sizeGiB < 0 || !path.IsAbs(*root):
		return c.bad("invalid --wait, --lock-wait, --size-gib or --root")
	}
	res := agentproto.MountResult{VolumeID: *volumeID, Name: *name, Mountpoint: path.Join(*root, "volumes", *name), Attachment: *attachment, Granted: grant,
		Agent: agentproto.ThisAgent(Version)}
	dev, code := c.waitDevice(ctx, *volumeID, *wait)
	if code != agentproto.ExitOK {
		return code
	}
	if code := c.waitFlush(ctx, *name, *volumeID, *lockWait); code != agentproto.ExitOK {
		return code
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		return agentproto.ExitFailed
	}
	if h.flushingLocked(*name, *volumeID) {
		return c.fail(agentproto.ExitRetryable, "", nil, "volume %s: an unmount is still flushing it (the volume's lock is held)", *name)
	}
	b := h.bindings[*name]
	if b != nil && b.volumeID != *volumeID {
		b = nil // another volume's generations are not this one's
	}
	if b != nil && *attachment != "" && b.released && b.attachment == *attachment {
		return c.fail(agentproto.ExitReleased, "", nil, "%s (%s) was released by an unmount for attachment %s (generation %d) and is being detached; it mounts again once attached anew",
			*name, *volumeID, *attachment, b.generation)
	}
	for n, m := range h.mounts {
		switch {
		case n == *name && m.volumeID == *volumeID:
			res.Device, res.FSType, res.AlreadyMounted = m.device, m.fsType, true
			if b != nil {
				res.Generation = b.generation
				b.released, b.attachment = false, *attachment
			}
			// As the agent: a grown volume's filesystem grows online,
			// nothing is remounted.
			h.growLocked(&res, *volumeID)
			return c.done(res, "already mounted")
		case n == *name:
			return c.fail(agentproto.ExitConflict, "", nil, "%s is already mounted at %s from %s, not from %s", n, res.Mountpoint, m.volumeID, *volumeID)
		case m.volumeID == *volumeID:
			return c.fail(agentproto.ExitConflict, "", nil, "%s's device %s is already mounted at %s", *volumeID, dev, path.Join(*root, "volumes", n))
		}
	}
	disk := h.opts.Disks.read(*volumeID)
	switch {
	case disk.signature != "":
		return c.fail(agentproto.ExitRefused, "a "+disk.signature+" signature", nil, "refusing to use %s (%s): it holds a %s signature", dev, *volumeID, disk.signature)
	case disk.fsType == "" && disk.damaged:
		found := "no filesystem signature (blkid -p found nothing) and non-zero data at byte 0"
		return c.fail(agentproto.ExitNotFormatted, found, nil, "not formatting %s: it has %s; data without a signature is a damaged filesystem (a lost primary superblock) or raw data, not a blank device. Nothing was written. Inspect it (ext4: `e2fsck -n -b 32768 %s`); tether never formats a device that holds data, with or without a grant", dev, found, dev)
	case disk.fsType == "" && !*grant:
		found := "no filesystem signature (blkid -p found nothing) and zeros wherever read"
		return c.fail(agentproto.ExitNotFormatted, found, nil, "not formatting %s: it has %s; mount was not given the grant to format (--format-if-blank). Nothing was written", dev, found)
	}
	res.Device, res.FSType = dev, disk.fsType
	if disk.fsType == "" {
		h.opts.Disks.format(*volumeID, *fsType, h.opts.InstanceID, *grant)
		res.FSType, res.Formatted = *fsType, true
	} else if disk.dirty {
		h.opts.Disks.checked(*volumeID)
		res.Checked = true
	}
	next := &binding{volumeID: *volumeID, attachment: *attachment}
	if b != nil {
		next.generation = b.generation
	}
	next.generation++
	h.bindings[*name] = next // written before the mount, as the agent does
	h.mounts[*name] = &mount{volumeID: *volumeID, device: dev, fsType: res.FSType}
	res.Generation = next.generation
	h.growLocked(&res, *volumeID)
	h.changedLocked()
	h.log.Info("volume mounted", "volume", *volumeID, "name", *name, "device", dev, "formatted", res.Formatted, "generation", res.Generation)
	return c.done(res, "mounted")
}

// waitFlush waits, bounded by the lock wait, while an unmount flushes the
// name or the volume (it holds the volume's lock, as the agent's does).
func (c *cmd) waitFlush(ctx context.Context, name, volumeID string, lockWait time.Duration) int {
	h := c.h
	deadline := time.NewTimer(lockWait)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		flushing, changed := h.flushingLocked(name, volumeID), h.changed
		h.mu.Unlock()
		if !flushing {
			return agentproto.ExitOK
		}
		select {
		case <-changed:
		case <-deadline.C:
			return c.fail(agentproto.ExitRetryable, "", nil, "volume %s: waited --lock-wait %s for an unmount that is still flushing it", name, lockWait)
		case <-ctx.Done():
			return c.fail(agentproto.ExitFailed, "", nil, "volume %s: waiting for an unmount that is still flushing it: %v", name, ctx.Err())
		}
	}
}

// flushingLocked: an unmount flushes the name or the volume.
func (h *Host) flushingLocked(name, volumeID string) bool {
	for n, m := range h.mounts {
		if m.flushing && (n == name || m.volumeID == volumeID) {
			return true
		}
	}
	return false
}

// waitDevice waits, bounded, for the volume's device to appear.
func (c *cmd) waitDevice(ctx context.Context, volumeID string, wait time.Duration) (string, int) {
	h := c.h
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		dev, ok := h.devices[volumeID]
		down, changed := h.down, h.changed
		h.mu.Unlock()
		switch {
		case down:
			return "", agentproto.ExitFailed
		case ok:
			return dev, agentproto.ExitOK
		}
		select {
		case <-changed:
		case <-deadline.C:
			return "", c.fail(agentproto.ExitNoDevice, "", nil, "device not found: volume %s: looked for /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_%s (waited %s)", volumeID, strings.ReplaceAll(volumeID, "-", ""), wait)
		case <-ctx.Done():
			return "", c.fail(agentproto.ExitFailed, "", nil, "waiting for the device of %s: %v", volumeID, ctx.Err())
		}
	}
}

func (c *cmd) unmount(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("unmount", flag.ContinueOnError)
	volumeID := fs.String("volume-id", "", "")
	name := fs.String("name", "", "")
	force := fs.Bool("force", false, "")
	root := fs.String("root", c.h.opts.Root, "")
	attachment := fs.String("attachment", "", "")
	lockWait := fs.Duration("lock-wait", 60*time.Second, "")
	fs.String("socket", "/run/docker/plugins/tether.sock", "")
	if code, ok := c.parse(fs, args); !ok {
		return code
	}
	vols, err := unmountList(*volumeID, *name, *attachment)
	if err != nil {
		return c.bad("%v", err)
	}
	if *lockWait <= 0 || !path.IsAbs(*root) {
		return c.bad("invalid --lock-wait or --root")
	}
	if len(vols) == 1 {
		return c.unmountOne(ctx, vols[0], *force, *root)
	}
	// A batch, as the agent's: each volume on its own, in list order,
	// each with its own line (a failure's names its volume); the exit
	// code is the first non-zero one.
	code := agentproto.ExitOK
	for _, v := range vols {
		vc := *c
		vc.volumeID = v.volumeID
		if rc := vc.unmountOne(ctx, v, *force, *root); code == agentproto.ExitOK {
			code = rc
		}
	}
	return code
}

// unmountVolume is one volume of an unmount command.
type unmountVolume struct{ volumeID, name, attachment string }

// unmountList is an unmount's volumes, as the agent reads its flags:
// without agentproto.ListSep anywhere the one volume, checked as ever;
// otherwise lists, item i of each describing volume i (an attachment of ""
// is none for any). A count mismatch, more than agentproto.MaxBatch, a
// volume id or name given twice, or an invalid item refuses the batch.
func unmountList(volumeIDs, names, attachments string) ([]unmountVolume, error) {
	valid := func(v unmountVolume) error {
		if err := volspec.ValidateVolumeID(v.volumeID); err != nil {
			return err
		}
		if err := volspec.ValidateName(v.name); err != nil {
			return err
		}
		return agentproto.ValidateAttachment(v.attachment)
	}
	if !strings.Contains(volumeIDs+names+attachments, agentproto.ListSep) {
		v := unmountVolume{volumeIDs, names, attachments}
		return []unmountVolume{v}, valid(v)
	}
	ids, ns, as := agentproto.SplitList(volumeIDs), agentproto.SplitList(names), agentproto.SplitList(attachments)
	switch {
	case len(ids) > agentproto.MaxBatch:
		return nil, fmt.Errorf("--volume-id: %d volumes, at most %d in one unmount", len(ids), agentproto.MaxBatch)
	case len(ns) != len(ids):
		return nil, fmt.Errorf("--name has %d items, --volume-id %d: want one name per volume", len(ns), len(ids))
	case as != nil && len(as) != len(ids):
		return nil, fmt.Errorf("--attachment has %d items, --volume-id %d: want one per volume (or none)", len(as), len(ids))
	}
	vols := make([]unmountVolume, len(ids))
	seenID, seenName := map[string]bool{}, map[string]bool{}
	for i := range ids {
		v := unmountVolume{volumeID: ids[i], name: ns[i]}
		if as != nil {
			v.attachment = as[i]
		}
		switch err := valid(v); {
		case err != nil:
			return nil, err
		case seenID[v.volumeID]:
			return nil, fmt.Errorf("volume id %q is given twice", v.volumeID)
		case seenName[v.name]:
			return nil, fmt.Errorf("name %q is given twice", v.name)
		}
		seenID[v.volumeID], seenName[v.name] = true, true
		vols[i] = v
	}
	return vols, nil
}

// unmountOne is the unmount of one volume: one line, or one failure line.
func (c *cmd) unmountOne(ctx context.Context, v unmountVolume, force bool, root string) int {
	h := c.h
	res := agentproto.UnmountResult{VolumeID: v.volumeID, Name: v.name, Mountpoint: path.Join(root, "volumes", v.name), Attachment: v.attachment,
		Agent: agentproto.ThisAgent(Version)}
	h.mu.Lock()
	m, mounted := h.mounts[v.name]
	if mounted {
		switch users := h.usersLocked(v.name); {
		case m.volumeID != v.volumeID:
			h.mu.Unlock()
			return c.fail(agentproto.ExitConflict, "", nil, "%s holds %s, not %s", res.Mountpoint, m.volumeID, v.volumeID)
		case len(users) > 0 && !force:
			h.mu.Unlock()
			return c.fail(agentproto.ExitBusy, "", containerHolders(users), "volume %s is held (containers starting or running): containers %s", v.name, userNames(users))
		case len(users) > 0:
			// --force goes past them; their mount namespaces keep the
			// filesystem (the mount point's own mount goes lazily).
			h.forcedUnmount++
			res.Users = containerHolders(users)
			if h.lazy[v.volumeID] == nil {
				h.lazy[v.volumeID] = map[string]bool{}
			}
			for _, t := range h.tasks {
				if t.holdsLocked(v.name) {
					h.lazy[v.volumeID][t.spec.TaskArn] = true
				}
			}
			delete(h.mounts, v.name)
			h.changedLocked()
		}
		res.WasMounted, res.Device = true, m.device
		if gate, slow := h.slowFlush[v.volumeID]; slow && h.mounts[v.name] != nil {
			h.flushLocked(v.name, m, gate)
			h.mu.Unlock()
			select { // the flush runs past every timer; still mounted meanwhile
			case <-gate:
			case <-ctx.Done():
				return c.fail(agentproto.ExitFailed, "", nil, "unmount of %s: flushing %s was cut short: %v (the flush goes on; still mounted)", v.name, m.device, ctx.Err())
			}
			h.mu.Lock()
			if cur := h.mounts[v.name]; cur != nil && cur != m {
				h.mu.Unlock()
				return c.fail(agentproto.ExitFailed, "", nil, "unmount of %s: the mount changed during the flush", v.name)
			}
		}
		delete(h.mounts, v.name)
		h.changedLocked()
	} else if dev, ok := h.devices[v.volumeID]; ok {
		res.Device = dev
	}
	if holders := h.holdersLocked(v.volumeID); len(holders) > 0 {
		h.mu.Unlock()
		what := "is still held on this host: the kernel does not let go of it, so it is not safe to detach"
		if force {
			what += " (--force went past the containers; a lazy unmount is not an unmount)"
		}
		return c.fail(agentproto.ExitBusy, "", holders, "volume %s %s: %s", v.name, what, holderNames(holders))
	}
	res.Released = true
	if b := h.bindings[v.name]; b != nil && b.volumeID == v.volumeID {
		b.released, b.attachment = true, v.attachment
		res.Generation = b.generation
	} else if v.attachment != "" {
		// Never mounted under name here (as tether-agent): the release is
		// recorded all the same, so a mount command for this attachment
		// sent before it is refused.
		nb := &binding{volumeID: v.volumeID, released: true, attachment: v.attachment}
		if b != nil {
			nb.generation = b.generation
		}
		h.bindings[v.name] = nb
		res.Generation = nb.generation
	}
	hook := h.unmountHook
	h.log.Info("volume unmounted", "volume", v.volumeID, "name", v.name, "force", force, "generation", res.Generation)
	h.mu.Unlock()
	if hook != nil {
		hook(v.volumeID, v.name)
	}
	return c.done(res, "unmounted")
}

func containerHolders(users []hostops.User) []agentproto.Holder {
	out := make([]agentproto.Holder, 0, len(users))
	for _, u := range users {
		out = append(out, agentproto.Holder{Kind: "container", ID: u.ID, Name: u.Name, State: u.State})
	}
	return out
}

func userNames(users []hostops.User) string {
	names := make([]string, 0, len(users))
	for _, u := range users {
		names = append(names, fmt.Sprintf("%s (%s, %s)", u.Name, u.ID[:12], u.State))
	}
	return strings.Join(names, ", ")
}

func holderNames(hs []agentproto.Holder) string {
	names := make([]string, 0, len(hs))
	for _, k := range hs {
		names = append(names, fmt.Sprintf("%s %s (pid %d %s, container %s)", k.Kind, k.Name, k.PID, k.Command, k.ContainerID))
	}
	return strings.Join(names, "; ")
}

func (c *cmd) status(args []string) int {
	h := c.h
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	root := fs.String("root", h.opts.Root, "")
	if code, ok := c.parse(fs, args); !ok {
		return code
	}
	if !path.IsAbs(*root) {
		return c.bad("status: invalid --root")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	st := hostops.HostStatus{Volumes: []hostops.VolumeStatus{}, Unbound: []hostops.UnboundDevice{}}
	bound := map[string]bool{}
	for _, n := range h.knownNamesLocked() {
		v := hostops.VolumeStatus{Name: n, Mountpoint: path.Join(*root, "volumes", n), Users: h.usersLocked(n), Seal: "sealed"}
		if b := h.bindings[n]; b != nil {
			v.VolumeID, v.Generation, v.Released, v.Attachment = b.volumeID, b.generation, b.released, b.attachment
		}
		if m := h.mounts[n]; m != nil {
			v.VolumeID, v.Mounted, v.Device, v.FSType, v.Seal = m.volumeID, true, m.device, m.fsType, "mounted"
		}
		if v.VolumeID != "" {
			bound[v.VolumeID] = true
			v.Holders = h.holdersLocked(v.VolumeID)
		}
		if v.Users == nil {
			v.Users = []hostops.User{}
		}
		st.Volumes = append(st.Volumes, v)
	}
	for vol, dev := range h.devices {
		if !bound[vol] {
			st.Unbound = append(st.Unbound, hostops.UnboundDevice{VolumeID: vol, Device: dev})
		}
	}
	return c.done(st, fmt.Sprintf("%d volumes", len(st.Volumes)))
}

func (c *cmd) version(args []string) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if code, ok := c.parse(fs, args); !ok {
		return code
	}
	return c.done(agentproto.VersionResult{Version: Version, Protocol: agentproto.Protocol}, "tether-agent "+Version)
}

// formatOwnerErr: --format-owner is checked by the agent's own rule. The
// fake disks hold no files, so a valid owner has nothing to change here;
// the real agent's ownership is tested in agent/hostops and end to end.
func formatOwnerErr(s string) error {
	_, err := agentproto.ParseFormatOwner(s)
	return err
}

// growLocked is the agent's online grow after a mount: the device's size is
// the world's backing file's (the kernel sees an EBS volume's new size once
// EC2 put it in force), and the filesystem grows to it.
func (h *Host) growLocked(res *agentproto.MountResult, volumeID string) {
	var devBytes int64
	if st, err := os.Stat(h.backing[volumeID]); err == nil {
		devBytes = st.Size()
	}
	res.DeviceBytes = devBytes
	res.Grown, res.FilesystemBytes = h.opts.Disks.grow(volumeID, devBytes)
	if res.Grown {
		h.log.Info("filesystem grown online", "volume", volumeID, "filesystemBytes", res.FilesystemBytes)
	}
}
