package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/volspec"
)

// placeAvailable: the volume is detached. Attach it where it is needed.
func (p *pass) placeAvailable(ctx context.Context, w want, v cloud.Volume) (Result, error) {
	if _, _, taskScoped := parseTaskVolumeName(p.key.Volume); taskScoped && w.taskGone() {
		return p.deleteVolume(ctx, v)
	}
	t, ok := p.target(w, &v)
	if !ok {
		return done("available; nothing needs it"), nil
	}
	if az := t.az(); az != "" && v.AZ != az {
		return p.wrongAZ(ctx, w, v, t)
	}
	return p.attach(ctx, w, v, t)
}

func (p *pass) wrongAZ(ctx context.Context, w want, v cloud.Volume, t need) (Result, error) {
	p.log.Error("volume and task are in different availability zones", "volumeId", v.ID, "volumeAZ", v.AZ,
		"task", t.task.ARN, "instance", t.instance(), "instanceAZ", t.az())
	reason := fmt.Sprintf("volume %s (%s) is in %s but the task was placed on %s in %s; add the placement constraint attribute:ecs.availability-zone == %s",
		p.key.Volume, v.ID, v.AZ, t.instance(), t.az(), v.AZ)
	if err := p.failNeeders(ctx, onInstance(w.needers, t.instance()), reason); err != nil {
		return Result{}, err
	}
	return done("wrong availability zone"), nil
}

func onInstance(ns []need, instance string) []need {
	var out []need
	for _, n := range ns {
		if n.instance() == instance {
			out = append(out, n)
		}
	}
	return out
}

// attach picks a device name and attaches. Names are allocated per
// instance (see pickDevice): a name this process knows to be taken is never
// tried. EC2 refuses a name another attachment uses (another process's, or
// one this process has not seen) or one a force detach left unusable; the
// former is only skipped by this pass, the latter remembered: after three
// refusals the instance's block device mappings say which is which.
func (p *pass) attach(ctx context.Context, w want, v cloud.Volume, t need) (Result, error) {
	inst := t.instance()
	log := p.log.With("volumeId", v.ID, "instance", inst, "task", t.task.ARN)
	if p.hint.Poison != "" && p.hint.Instance == inst {
		p.r.poison(inst, p.hint.Poison)
	}
	if err := p.fresh("attach"); err != nil {
		return Result{}, err
	}
	refusedNow := map[string]bool{} // names EC2 refused in this pass
	avoid := map[string]bool{}      // those, and the instance's mapped names once read
	var mapped map[string]bool      // the instance's block device mappings, once read
	for len(refusedNow) < maxDeviceRefusals {
		dev, ok := p.r.pickDevice(inst, v.ID, avoid)
		if !ok {
			break
		}
		err := p.r.cloud.AttachVolume(ctx, v.ID, inst, dev)
		if err == nil {
			p.r.noteAttachment(v.ID, cloud.Attachment{InstanceID: inst, Device: dev, State: cloud.AttachAttaching, AttachTime: p.now})
		}
		p.r.releaseDevice(inst, dev)
		switch {
		case err == nil:
			since := p.handoffStart(w)
			p.r.startInflight(v.ID, stepAttach, p.now)
			log.Info("attaching", "device", dev)
			return p.retry(p.r.t.AttachWait, hint{Step: stepAttach, Volume: v.ID, Instance: inst, CI: t.ci.ARN, At: ms(p.now), Since: ms(since)},
				"attaching %s to %s as %s", v.ID, inst, dev), nil
		case errors.Is(err, cloud.ErrDeviceName):
			refusedNow[dev], avoid[dev] = true, true
			if mapped == nil && len(refusedNow) < 3 {
				log.Info("device name taken on the instance; trying another", "device", dev)
				continue
			}
			if mapped == nil {
				in, err := p.r.cloud.Instance(ctx, inst)
				if err != nil {
					return Result{}, err
				}
				mapped = map[string]bool{}
				for _, d := range in.Devices {
					mapped[d], avoid[d] = true, true
				}
			}
			for d := range refusedNow {
				if !mapped[d] {
					log.Warn("device name refused although no attachment uses it: not used again on this instance", "device", d)
					p.r.poison(inst, d)
				}
			}
		case errors.Is(err, cloud.ErrZoneMismatch):
			return p.wrongAZ(ctx, w, v, t)
		case errors.Is(err, cloud.ErrIncorrectState), errors.Is(err, cloud.ErrVolumeInUse), errors.Is(err, cloud.ErrNotFound):
			log.Info("volume changed under this pass; looking again", "error", err)
			return p.retry(p.r.t.CommandWait, hint{}, "volume %s changed during attach", v.ID), nil
		default:
			return Result{}, err
		}
	}
	return Result{}, fmt.Errorf("attach %q to %q: EC2 refused every device name tried (%d)", v.ID, inst, len(refusedNow))
}

// maxDeviceRefusals bounds the names one pass tries.
const maxDeviceRefusals = 8

// serveAttached: the volume is attached (or attaching) where it is needed.
func (p *pass) serveAttached(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, t need) (Result, error) {
	log := p.log.With("volumeId", v.ID, "instance", a.InstanceID)
	switch a.State {
	case cloud.AttachAttaching:
		if p.now.Sub(a.AttachTime) >= p.r.t.StuckAttach {
			log.Warn("attachment stuck in attaching; force-detaching to retry with another device name", "device", a.Device, "since", a.AttachTime)
			return p.forceDetach(ctx, w, v, a, "stuck attaching")
		}
		h := p.hint
		if h.Step != stepAttach || h.Volume != v.ID {
			if r, ok := p.observed("attach of %s to %s", v.ID, a.InstanceID); ok {
				return r, nil
			}
			h = hint{Step: stepAttach, Volume: v.ID, Instance: a.InstanceID, CI: t.ci.ARN, At: ms(a.AttachTime)}
		}
		return p.retry(p.r.t.AttachWait, h, "attaching %s to %s", v.ID, a.InstanceID), nil
	case cloud.AttachBusy, cloud.AttachDetaching:
		// A detach raced a mount here. It cannot be undone: let it finish
		// (no task here has started with the volume, else the fast path;
		// if the mount holds the detach up, it is unmounted again), then
		// the volume is attached again.
		log.Info("a detach is in progress where the volume is needed; will attach again after it", "state", a.State)
		return p.detaching(ctx, w, v, a, t.ci, true)
	}
	return p.mount(ctx, w, v, a, t)
}

// mount makes sure tether-agent mounted the volume on the instance: the
// instance's last mount command for the volume since the attachment must
// have succeeded. The pass never waits for a command: it hands the key
// back with the command id as hint.
func (p *pass) mount(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, t need) (Result, error) {
	inst := a.InstanceID
	here := onInstance(w.needers, inst)
	log := p.log.With("volumeId", v.ID, "instance", inst, "task", t.task.ARN)
	cmd, found, err := p.lastCommand(ctx, p.r.mountDoc, stepMount, v.ID, a)
	if err != nil {
		return Result{}, err
	}
	if !found {
		return p.sendMount(ctx, w, v, a, t, 0)
	}
	switch cmd.Status {
	case cloud.CommandPending:
		if age := p.now.Sub(cmd.Requested); age >= p.r.t.CommandDeadline {
			// tether-agent mount waits at most a minute for the device; a
			// command this old will not help the task (its plugin Mount
			// has given up too).
			reason := fmt.Sprintf("mounting volume %s (%s) on %s did not finish within %s", p.key.Volume, v.ID, inst, age.Round(time.Second))
			log.Error("mount command did not finish", "command", cmd.ID, "age", age.String())
			if err := p.failNeeders(ctx, here, reason); err != nil {
				return Result{}, err
			}
			return done("mount did not finish"), nil
		}
		if p.hint.Command != cmd.ID {
			if r, ok := p.observed("mount %s of %s on %s", cmd.ID, v.ID, inst); ok {
				return r, nil
			}
		}
		return p.retry(p.r.t.CommandEventWait, p.cmdHint(stepMount, v.ID, inst, t.ci.ARN, cmd), "mount of %s on %s running", v.ID, inst), nil
	case cloud.CommandSucceeded:
		p.mounted(w, v, inst, cmd)
		return done(fmt.Sprintf("mounted on %s", inst)), nil
	}
	attempts, err := p.failedCommands(ctx, p.r.mountDoc, v.ID, a)
	if err != nil {
		return Result{}, err
	}
	reason := mountFailure(p.key.Volume, v.ID, inst, cmd)
	permanent := cmd.Status == cloud.CommandFailed && (cmd.ExitCode == 5 || cmd.ExitCode == 2)
	log.Warn("mount failed", "command", cmd.ID, "status", cmd.Status.String(), "exitCode", cmd.ExitCode, "detail", cmd.Detail, "attempts", attempts)
	if permanent || attempts >= p.r.mountAttempts {
		if err := p.failNeeders(ctx, here, reason); err != nil {
			return Result{}, err
		}
		return done("mount failed: " + reason), nil
	}
	return p.sendMount(ctx, w, v, a, t, attempts)
}

func mountFailure(name, volumeID, inst string, c cloud.Command) string {
	switch {
	case c.Status == cloud.CommandUnreachable:
		return fmt.Sprintf("could not mount volume %s (%s): instance %s did not answer SSM (%s)", name, volumeID, inst, c.Detail)
	case c.ExitCode == 5:
		return fmt.Sprintf("refused to mount volume %s (%s) on %s: the device has a partition table or signature tether must not touch", name, volumeID, inst)
	case c.ExitCode == 4:
		return fmt.Sprintf("volume %s (%s) did not appear as a device on %s", name, volumeID, inst)
	case c.ExitCode == 2:
		return fmt.Sprintf("tether-agent on %s refused the mount of %s (%s) as bad input", inst, name, volumeID)
	}
	return fmt.Sprintf("mounting volume %s (%s) on %s failed (exit %d, %s)", name, volumeID, inst, c.ExitCode, c.Detail)
}

func (p *pass) sendMount(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, t need, attempt int) (Result, error) {
	opts, err := volspec.ParseDriverOpts(t.spec.DriverOpts)
	if err != nil {
		if err := p.failNeeders(ctx, onInstance(w.needers, a.InstanceID), fmt.Sprintf("volume %s: %v", p.key.Volume, err)); err != nil {
			return Result{}, err
		}
		return done("invalid driverOpts"), nil
	}
	params := map[string]string{"VolumeId": v.ID, "VolumeName": p.key.Volume, "FsType": opts.FSType, "Device": a.Device}
	return p.send(ctx, p.r.mountDoc, stepMount, v, a, t.ci.ARN, params, attempt)
}

// send runs a document on the attachment's instance and hands the key back
// with the command as hint.
func (p *pass) send(ctx context.Context, doc, step string, v cloud.Volume, a cloud.Attachment, ciARN string, params map[string]string, attempt int) (Result, error) {
	log := p.log.With("volumeId", v.ID, "instance", a.InstanceID, "document", doc)
	if err := p.fresh(step); err != nil {
		return Result{}, err
	}
	id, err := p.r.cloud.SendCommand(ctx, doc, a.InstanceID, params)
	if errors.Is(err, cloud.ErrUnreachable) {
		h := p.hint
		if h.Unreach == 0 || h.Instance != a.InstanceID {
			h = hint{Step: step, Volume: v.ID, Instance: a.InstanceID, CI: ciARN, Unreach: ms(p.now)}
		}
		log.Warn("SSM cannot reach the instance", "error", err, "since", fromMS(h.Unreach))
		return p.retry(p.r.t.CommandWait*5, h, "%s on %s: instance not reachable through SSM", step, a.InstanceID), nil
	}
	if err != nil {
		return Result{}, err
	}
	p.r.startInflight(v.ID, step, p.now)
	if step == stepMount {
		p.r.noteMountSent(v.ID, a.InstanceID, p.now)
	}
	log.Info("command sent", "step", step, "command", id, "attempt", attempt+1)
	h := hint{Step: step, Volume: v.ID, Instance: a.InstanceID, CI: ciARN, Command: id, At: ms(p.now), Since: p.hint.Since, Unreach: p.hint.Unreach}
	p.r.noteSent(id, p.key, h)
	return p.retry(p.r.t.CommandEventWait, h, "%s of %s on %s sent (%s)", step, v.ID, a.InstanceID, id), nil
}

// observed: this pass found a step in flight that another pass took (it
// did not inherit that pass's hint). The pass that took it keeps a retry
// of its own, and the step's EC2 or SSM event wakes the key sooner (the
// sweep, should both be lost): a second chain of retries would only read
// AWS again. Only a pass that carries nothing a chain must keep counting
// ends here; the rest hand back as before.
func (p *pass) observed(what string, args ...any) (Result, bool) {
	h := p.hint
	if h.Gen != 0 || h.Burn != 0 || h.Vanished != 0 || h.Unreach != 0 || h.Busy != 0 || h.Detaching != 0 || h.Poison != "" {
		return Result{}, false
	}
	p.log.Debug("step in flight, taken by another pass; its events and retry go on", "step", fmt.Sprintf(what, args...))
	return done(fmt.Sprintf(what, args...) + " in flight (another pass's)"), true
}

func (p *pass) cmdHint(step, volumeID, inst, ciARN string, c cloud.Command) hint {
	at := c.Requested
	if p.hint.Command == c.ID && p.hint.At != 0 {
		at = fromMS(p.hint.At)
	}
	return hint{Step: step, Volume: volumeID, Instance: inst, CI: ciARN, Command: c.ID, At: ms(at), Since: p.hint.Since, Unreach: p.hint.Unreach}
}

// lastCommand finds the newest command of doc for the volume on the
// attachment's instance since the attachment began: from the hint when it
// names one, else from SSM's list. Failed ones are asked for details.
func (p *pass) lastCommand(ctx context.Context, doc, step, volumeID string, a cloud.Attachment) (cloud.Command, bool, error) {
	h := p.hint
	if h.Step == step && h.Volume == volumeID && h.Instance == a.InstanceID && h.Command != "" && !fromMS(h.At).Before(a.AttachTime.Truncate(time.Second)) {
		c, err := p.r.cloud.Command(ctx, h.Command, a.InstanceID)
		switch {
		case err == nil:
			c.Requested = fromMS(h.At)
			return c, true, nil
		case errors.Is(err, cloud.ErrNotFound) && p.now.Sub(fromMS(h.At)) < 30*time.Second:
			return cloud.Command{ID: h.Command, Status: cloud.CommandPending, Requested: fromMS(h.At)}, true, nil
		case !errors.Is(err, cloud.ErrNotFound):
			return cloud.Command{}, false, err
		}
	}
	list, err := p.commandsFor(ctx, doc, volumeID, a)
	if err != nil || len(list) == 0 {
		return cloud.Command{}, false, err
	}
	c := list[0]
	if c.Status == cloud.CommandFailed {
		d, err := p.r.cloud.Command(ctx, c.ID, a.InstanceID)
		if err != nil && !errors.Is(err, cloud.ErrNotFound) {
			return cloud.Command{}, false, err
		}
		if err == nil {
			d.Requested, d.Params = c.Requested, c.Params
			c = d
		}
	}
	return c, true, nil
}

// commandsFor lists doc's commands for the volume on the instance since
// the attachment began, newest first.
func (p *pass) commandsFor(ctx context.Context, doc, volumeID string, a cloud.Attachment) ([]cloud.Command, error) {
	all, err := p.r.cloud.Commands(ctx, doc, a.InstanceID, a.AttachTime.Add(-time.Second))
	if err != nil {
		return nil, err
	}
	var out []cloud.Command
	for _, c := range all {
		if c.Params["VolumeId"] == volumeID {
			out = append(out, c)
		}
	}
	return out, nil
}

// failedCommands counts the finished, unsuccessful commands of doc for the
// volume since the attachment began.
func (p *pass) failedCommands(ctx context.Context, doc, volumeID string, a cloud.Attachment) (int, error) {
	list, err := p.commandsFor(ctx, doc, volumeID, a)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range list {
		if c.Status == cloud.CommandFailed || c.Status == cloud.CommandUnreachable {
			n++
		}
	}
	return n, nil
}

// continueFromEvent acts on an EBS notification of this invocation without
// reading EC2 first, when the volume's identity is known: after
// "detached" or "available" it attaches the volume where it is needed, after
// "attached" it mounts it there. Both are safe on a stale event: EC2
// refuses to attach a volume that is not available (the pass then looks
// again), and tether-agent mounts only a device attached to its instance.
func (p *pass) continueFromEvent(ctx context.Context, w want) (Result, bool, error) {
	p.inv.mu.Lock()
	ev, ok := p.inv.volumeEvents[p.key]
	p.inv.mu.Unlock()
	if !ok || len(w.needers) == 0 {
		return Result{}, false, nil
	}
	v, known := p.r.cloud.KnownVolume(ev.VolumeID)
	if !known || v.Tags[cloud.TagCluster] != p.key.Cluster || v.Tags[cloud.TagVolume] != p.key.Volume {
		return Result{}, false, nil
	}
	t, _ := p.target(w, nil)
	p.observedEvent(v, ev)
	switch {
	case ev.Event == "attachVolume" && ev.Result == "attached":
		a, ok := p.r.attachmentOf(v.ID)
		if !ok || a.InstanceID != t.instance() {
			return Result{}, false, nil
		}
		a.State = cloud.AttachAttached
		res, err := p.mount(ctx, w, v, a, t)
		return res, true, err
	case ev.Event == "createVolume" && ev.Result == "failed":
		// EC2 gave up creating the volume (an unusable KMS key is the usual
		// cause): the create path must see it as vanished, hint or not.
		if p.hint.Step != stepCreate || p.hint.Volume != v.ID {
			p.hint = hint{Step: stepCreate, Volume: v.ID, At: ms(v.CreateTime.Add(-p.r.t.CreateSettle))}
		}
		return Result{}, false, nil
	case ev.Event == "detachVolume" && ev.Result == "detached", ev.Event == "createVolume" && ev.Result == "available":
		if a, ok := p.r.attachmentOf(v.ID); ok && a.InstanceID == t.instance() && a.State != cloud.AttachDetached {
			// This process attached the volume there after the detach this
			// event reports: a late or repeated event. The attach's own
			// chain of passes goes on.
			p.log.Debug("EBS event older than this process's attach: nothing to do", "volumeId", v.ID, "event", ev.Event)
			return done("event older than the attach to " + a.InstanceID), true, nil
		}
		if t.az() != "" && t.az() != v.AZ {
			return Result{}, false, nil // the full pass reports the wrong AZ
		}
		res, err := p.attach(ctx, w, v, t)
		return res, true, err
	}
	return Result{}, false, nil
}
