package reconcile

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/agentproto"
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
		for _, n := range w.needers {
			if n.az() == v.AZ {
				t = n // a task in the volume's own AZ comes first: no move
				break
			}
		}
	}
	if az := t.az(); az != "" && v.AZ != az {
		return p.wrongAZ(ctx, w, v, t)
	}
	return p.attach(ctx, w, v, t)
}

func (p *pass) wrongAZ(ctx context.Context, w want, v cloud.Volume, t need) (Result, error) {
	if _, _, taskScoped := parseTaskVolumeName(p.key.Volume); !taskScoped && p.azMove(t) {
		return p.moveAZ(ctx, w, v, t)
	}
	p.log.Error("volume and task are in different availability zones", "volumeId", v.ID, "volumeAZ", v.AZ,
		"task", t.task.ARN, "instance", t.instance(), "instanceAZ", t.az())
	// The advice first: ECS keeps 255 characters of a stopped reason.
	reason := fmt.Sprintf("volume %s (%s) is in %s, the task on %s in %s: set driverOpt azmove=snapshot to move it, or constrain the tasks to attribute:ecs.availability-zone == %s",
		p.key.Volume, v.ID, v.AZ, t.instance(), t.az(), v.AZ)
	if err := p.failNeeders(ctx, onInstance(w.needers, t.instance()), reasonWrongAZ, reason); err != nil {
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

// attach picks a device name and attaches, then sends the mount at once:
// EC2 sends no event for a successful attach, and tether-agent waits for
// the device to appear (the host sees it before EC2's API says attached).
// Names: read the instance's mapped names first (shared by the
// invocation's keys), then devices.pick. EC2 still refuses a name another
// process took meanwhile (that pass tries the next) or one a force detach
// left unusable (remembered: not used again on that instance).
func (p *pass) attach(ctx context.Context, w want, v cloud.Volume, t need) (Result, error) {
	if res, wait, err := p.replicaNeighbour(ctx, t); wait || err != nil {
		return res, err
	}
	inst := t.instance()
	log := p.log.With("volumeId", v.ID, "instance", inst, "task", t.task.ARN)
	if p.hint.Poison != "" && p.hint.Instance == inst {
		p.r.dev.poison(inst, p.hint.Poison)
	}
	if a, bad := p.knownMismatch(inst); bad {
		return p.protocolMismatch(ctx, onInstance(w.needers, inst), v, inst, a)
	}
	if err := p.fresh("attach"); err != nil {
		return Result{}, err
	}
	// A move may be under way whatever this task's driverOpts say: one
	// had begun when this pass read the volume (its mark), the volume came
	// from one, or another task that wants it asks for moves.
	mayMove := p.azMove(t) || v.Tags[cloud.TagMoving] != "" || v.Tags[cloud.TagMovedFrom] != "" ||
		slices.ContainsFunc(w.needers, func(n need) bool { return p.azMove(n) })
	if err := p.abandonMove(ctx, v, "attached to "+inst); err != nil {
		return Result{}, err
	}
	if v.Tags[cloud.TagMoving] != "" { // abandonMove took the mark off
		v.Tags = maps.Clone(v.Tags)
		delete(v.Tags, cloud.TagMoving)
	}
	if err := p.markOldOfMove(ctx, v); err != nil {
		return Result{}, err
	}
	in, err := p.r.cloud.Instance(ctx, inst)
	if err != nil {
		return Result{}, err
	}
	avoid := map[string]bool{}
	for _, d := range in.Devices {
		avoid[d] = true
	}
	attachedOn := func() []string { return p.r.mem.attachedOn(inst, v.ID) }
	if mayMove {
		// The key's volumes may move to another AZ: a move that went on
		// since this pass read the volume (another pass made the new one
		// and marked this one moved) must not be attached past. Read
		// again right before the attach.
		if err := p.moveUnchanged(ctx, v); err != nil {
			return Result{}, err
		}
	} else if changed, err := p.takenSinceRead(ctx, v); err != nil || changed {
		if err != nil {
			return Result{}, err
		}
		log.Info("volume no longer available since this pass read it; looking again", "readAgo", p.r.now().Sub(v.ReadAt).Round(time.Millisecond))
		return p.retry(p.r.t.CommandWait, hint{}, "volume %s changed since this pass read it", v.ID), nil
	}
	refused := 0
	for refused < maxDeviceRefusals {
		dev, ok := p.r.dev.pick(inst, v.ID, strconv.FormatInt(p.now.UnixNano(), 10), avoid, attachedOn)
		if !ok {
			break
		}
		a, err := p.r.cloud.AttachVolume(ctx, v.ID, inst, dev)
		if err == nil {
			p.r.mem.noteAttachment(p.key, v.ID, a)
		}
		p.r.dev.release(inst, dev)
		switch {
		case err == nil:
			since := p.handoffStart(w)
			p.r.mem.startInflight(v.ID, stepAttach, p.now)
			log.Info("attaching; mount sent at once", "device", dev, "attachment", token(a))
			p.hint = hint{Since: ms(since)}
			return p.sendMount(ctx, w, v, a, t, 0)
		case errors.Is(err, cloud.ErrDeviceName):
			refused++
			avoid[dev] = true
			log.Info("device name refused on the instance; trying another", "device", dev, "error", err)
			if refused >= 2 {
				// Two refusals of names the mapping said were free: read
				// the mapping again; a name still unmapped is poisoned.
				fresh, err := p.r.cloud.Instance(cloud.Uncached(ctx), inst)
				if err != nil {
					return Result{}, err
				}
				mapped := map[string]bool{}
				for _, d := range fresh.Devices {
					mapped[d], avoid[d] = true, true
				}
				if !mapped[dev] {
					log.Warn("device name refused although no attachment uses it: not used again on this instance", "device", dev)
					p.r.dev.poison(inst, dev)
				}
			}
		case errors.Is(err, cloud.ErrZoneMismatch):
			return p.wrongAZ(ctx, w, v, t)
		case errors.Is(err, cloud.ErrIncorrectState), errors.Is(err, cloud.ErrVolumeInUse), errors.Is(err, cloud.ErrNotFound):
			log.Info("volume changed under this pass; looking again", "error", err)
			return p.retry(p.r.t.CommandWait, hint{}, "volume %s changed during attach", v.ID), nil
		case errors.Is(err, cloud.ErrAttachmentLimit), errors.Is(err, cloud.ErrUnsupported), errors.Is(err, cloud.ErrRefused):
			return p.refusal(ctx, onInstance(w.needers, inst), "attach to "+inst, err)
		default:
			return Result{}, err
		}
	}
	return p.refusal(ctx, onInstance(w.needers, inst), "attach to "+inst,
		fmt.Errorf("%w: EC2 refused every device name tried (%d)", cloud.ErrRefused, refused))
}

// takenSinceRead: the pass's copy of the volume is older than
// Timing.AttachReadAge (a slow pass: a sweep of many keys, calls paced or
// throttled) and, read again, the volume is no longer available: another
// pass (a handoff's own chain, in another process) attached it meanwhile.
// EC2 would refuse the attach (VolumeInUse, IncorrectState); not sending it
// spares a write from EC2's mutating bucket. A copy of unknown age (put
// together from memory) is taken as it is, as before: EC2's refusal is
// then the check.
func (p *pass) takenSinceRead(ctx context.Context, v cloud.Volume) (bool, error) {
	if v.ReadAt.IsZero() || p.r.now().Sub(v.ReadAt) <= p.r.t.AttachReadAge {
		return false, nil
	}
	cur, err := p.r.cloud.VolumeByID(cloud.Uncached(ctx), v.ID)
	if errors.Is(err, cloud.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return cur.State != "available" || len(cur.Attachments) > 0, nil
}

// maxDeviceRefusals bounds the names one pass tries.
const maxDeviceRefusals = 6

// serveAttached: the volume is attached (or attaching) where it is needed.
func (p *pass) serveAttached(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, t need) (Result, error) {
	switch a.State {
	case cloud.AttachBusy, cloud.AttachDetaching:
		// A detach raced a mount here. It cannot be undone: let it finish
		// (no task here has started with the volume, else the fast path;
		// if the mount holds the detach up, it is unmounted again), then
		// the volume is attached again.
		p.log.Info("a detach is in progress where the volume is needed; will attach again after it", "volumeId", v.ID, "instance", a.InstanceID, "state", a.State)
		return p.detaching(ctx, w, v, a, t.ci, true)
	}
	return p.mount(ctx, w, v, a, t)
}

// mount makes sure tether-agent mounted the volume for this attachment:
// the newest mount command sent for it must have succeeded, and no unmount
// released it since (generations). The pass never waits for a command: it
// hands the key back with the command id as hint.
func (p *pass) mount(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, t need) (Result, error) {
	if res, wait, err := p.replicaNeighbour(ctx, t); wait || err != nil {
		return res, err
	}
	inst := a.InstanceID
	here := onInstance(w.needers, inst)
	log := p.log.With("volumeId", v.ID, "instance", inst, "task", t.task.ARN, "attachment", token(a))
	cmd, found, err := p.lastCommand(ctx, p.r.mountDoc, stepMount, v.ID, a)
	if err != nil {
		return Result{}, err
	}
	if !found {
		return p.sendMount(ctx, w, v, a, t, 0)
	}
	attempt := max(p.hint.Attempt, 1)
	if p.hint.Command != cmd.ID {
		attempt = 1
	}
	res := parseResult(cmd)
	if cmd.Status == cloud.CommandSucceeded || cmd.Status == cloud.CommandFailed {
		if a, ok := p.agentAnswered(inst, res); !ok {
			return p.protocolMismatch(ctx, here, v, inst, a)
		}
	}
	switch cmd.Status {
	case cloud.CommandPending:
		if age := p.now.Sub(cmd.Requested); age >= p.r.t.CommandDeadline {
			// tether-agent mount waits at most a minute for the device; a
			// command this old will not help the task (its plugin Mount
			// has given up too).
			reason := fmt.Sprintf("mounting volume %s (%s) on %s did not finish within %s", p.key.Volume, v.ID, inst, age.Round(time.Second))
			log.Error("mount command did not finish", "command", cmd.ID, "age", age.String())
			if err := p.failNeeders(ctx, here, reasonMountTimeout, reason); err != nil {
				return Result{}, err
			}
			return done("mount did not finish"), nil
		}
		if p.hint.Command != cmd.ID {
			if r, ok := p.observed("mount %s of %s on %s", cmd.ID, v.ID, inst); ok {
				return r, nil
			}
		}
		h := p.cmdHint(stepMount, v.ID, inst, t.ci.ARN, cmd)
		h.Attempt = attempt
		return p.retry(p.r.t.CommandEventWait, h, "mount of %s on %s running", v.ID, inst), nil
	case cloud.CommandSucceeded:
		m, ok := res.out.Mount()
		if ok && p.hint.Command != cmd.ID {
			// Found by listing, not by this chain: an unmount another pass
			// sent since may have released it.
			if err := p.learnUnmounts(ctx, v, a); err != nil {
				return Result{}, err
			}
		}
		if ok {
			p.r.mem.noteMounted(v.ID+"/"+token(a), m.Generation)
			if g := p.r.mem.generationsOf(v.ID + "/" + token(a)); m.Generation > 0 && g.released >= m.Generation {
				// An unmount released this generation since. A released
				// attachment is only ever detached (the agent refuses to
				// mount it again, agentproto.ExitReleased): mounting it
				// again here could slip in between another pass's release
				// and its detach. Detach it; it is attached anew for the
				// task that waits here.
				log.Info("mount result superseded by a later unmount: detaching the released attachment, to attach it again", "generation", m.Generation, "released", g.released)
				return p.detach(ctx, w, v, a, t.ci.ARN)
			}
			if m.Formatted {
				p.r.emit(p.key.Cluster, map[string]any{"volume": p.key.Volume, "volumeId": v.ID, "instance": inst}, metricCount(MetricFormats))
			}
		}
		if p.mountPredatesReplica(t, cmd) {
			log.Info("replica mounted here for a task before this one: mounting it again for its new holder", "command", cmd.ID)
			return p.sendMount(ctx, w, v, a, t, 0)
		}
		if err := p.recordFormatted(ctx, v); err != nil {
			return Result{}, err
		}
		p.mounted(w, v, inst, cmd)
		return done(fmt.Sprintf("mounted on %s", inst)), nil
	case cloud.CommandUnreachable:
		log.Warn("mount not delivered: the instance's SSM agent does not answer", "command", cmd.ID, "detail", cmd.Detail)
		if p.now.Sub(cmd.Requested) < p.r.t.CommandWait*5 {
			return p.retry(p.r.t.CommandWait*5-p.now.Sub(cmd.Requested), p.hint, "mount of %s on %s undeliverable; sending again soon", v.ID, inst), nil
		}
		res, err := p.sendMount(ctx, w, v, a, t, attempt)
		if err != nil || res.Done() {
			return res, err
		}
		reason := fmt.Sprintf("volume %s (%s) waits for the SSM agent on %s, which does not answer (%s): start it, or place the task elsewhere", p.key.Volume, v.ID, inst, cmd.Detail)
		return p.waitOrStop(ctx, here, reasonSSM, reason, res.RetryAfter, parseHint(res.Hint))
	}
	code := cmd.ExitCode
	msg := res.message(cmd)
	log.Warn("mount failed", "command", cmd.ID, "exitCode", code, "class", agentproto.ClassOf(code), "agent", msg, "attempt", attempt)
	switch {
	case code == agentproto.ExitBadInput && (cmd.Params[agentproto.ParamFormatOwner] != "" || (p.hint.Command == cmd.ID && p.hint.Owner)):
		// FormatOwner passed agentproto's rule here and the document's
		// pattern in SSM, so the agent does not know --format-owner (older
		// than it; Go's flag package exits 2). Mount without it: the volume
		// works, its root stays root's. Any other bad input fails again,
		// below, without it.
		log.Warn("tether-agent refused --format-owner (older than it?): mounting without, the new filesystem's root stays root's; upgrade the agent",
			"command", cmd.ID, "formatOwner", cmd.Params[agentproto.ParamFormatOwner])
		return p.sendMountOwner(ctx, w, v, a, t, attempt, false)
	case code == agentproto.ExitReleased:
		// An unmount released this attachment after this mount was sent:
		// it is detached, and attached again for the task that waits.
		return p.detach(ctx, w, v, a, t.ci.ARN)
	case agentproto.Permanent(code):
		reason := fmt.Sprintf("tether-agent on %s refused to mount volume %s (%s): %s", inst, p.key.Volume, v.ID, msg)
		if err := p.failNeeders(ctx, here, agentReason(code), reason); err != nil {
			return Result{}, err
		}
		return done("mount refused: " + string(agentproto.ClassOf(code))), nil
	case code == agentproto.ExitNoDevice && a.State == cloud.AttachAttaching && p.now.Sub(a.AttachTime) >= p.r.t.StuckAttach:
		return p.stuckAttach(ctx, w, v, a, cmd)
	case code == agentproto.ExitBusy || code == agentproto.ExitRetryable:
		h := p.cmdHint(stepMount, v.ID, inst, t.ci.ARN, cmd)
		h.Attempt = attempt
		if wait := p.r.t.BusyWait - p.now.Sub(cmd.Requested); wait > 0 && code == agentproto.ExitBusy {
			return p.retry(wait, h, "mount of %s on %s busy: %s", v.ID, inst, msg), nil
		}
		p.hint = h
		return p.sendMount(ctx, w, v, a, t, attempt)
	case code == agentproto.ExitNoDevice && attempt < p.r.mountAttempts+2, attempt < p.r.mountAttempts:
		return p.sendMount(ctx, w, v, a, t, attempt)
	}
	reason := fmt.Sprintf("mounting volume %s (%s) on %s failed %d times: %s", p.key.Volume, v.ID, inst, attempt, msg)
	if err := p.failNeeders(ctx, here, agentReason(code), reason); err != nil {
		return Result{}, err
	}
	return done("mount failed: " + reason), nil
}

// learnUnmounts reads the newest unmount of the attachment, if any, so its
// released generation is known before a mount result is trusted.
func (p *pass) learnUnmounts(ctx context.Context, v cloud.Volume, a cloud.Attachment) error {
	list, err := p.commandsFor(ctx, p.r.unmountDoc, v.ID, a)
	if err != nil || len(list) == 0 || list[0].Status != cloud.CommandSucceeded {
		return err
	}
	c, err := p.r.cloud.Command(ctx, list[0].ID, a.InstanceID, agentproto.StepUnmount)
	if errors.Is(err, cloud.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	c, _ = c.ForVolume(v.ID)
	if u, ok := parseResult(c).out.Unmount(); ok && u.Released && (u.Attachment == "" || u.Attachment == token(a)) {
		p.r.mem.noteReleasedGen(v.ID+"/"+token(a), u.Generation)
	}
	return nil
}

// stuckAttach: the attach never ended, and the agent found no device on
// the host: nothing there can hold the volume. The attachment is undone
// with a plain detach (never a force on a live host) and the name is
// remembered as unusable there; the next pass attaches again.
func (p *pass) stuckAttach(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, mount cloud.Command) (Result, error) {
	p.log.Warn("attach stuck and the agent found no device: detaching to attach again under another name",
		"volumeId", v.ID, "instance", a.InstanceID, "device", a.Device, "since", a.AttachTime, "mount", mount.ID)
	p.r.dev.poison(a.InstanceID, a.Device)
	res, err := p.detach(ctx, w, v, a, "")
	if err == nil && !res.Done() {
		h := parseHint(res.Hint)
		h.Poison = a.Device
		res.Hint = h.String()
	}
	return res, err
}

// recordFormatted tags the volume tether:formatted the first time a mount
// succeeds on it: from then on no mount is granted a format.
func (p *pass) recordFormatted(ctx context.Context, v cloud.Volume) error {
	tags := v.Tags
	if known, ok := p.r.cloud.KnownVolume(v.ID); ok && len(known.Tags) > 0 {
		tags = known.Tags
	}
	if tags[cloud.TagFormatted] != "" || tags[cloud.TagCluster] != p.key.Cluster {
		return nil
	}
	err := p.r.cloud.TagVolume(ctx, v.ID, map[string]string{cloud.TagFormatted: p.now.UTC().Format(time.RFC3339)})
	if errors.Is(err, cloud.ErrThrottled) {
		return err
	}
	if err != nil {
		p.log.Warn("could not record that the volume is formatted; will try at the next mount", "volumeId", v.ID, "error", err)
	}
	return nil
}

// grant: a mount may format the volume only if tether created it empty
// (tether:blank) and has never seen it mounted with a filesystem.
func grant(v cloud.Volume) bool {
	return v.Tags[cloud.TagBlank] == "true" && v.Tags[cloud.TagFormatted] == ""
}

func (p *pass) sendMount(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, t need, attempt int) (Result, error) {
	return p.sendMountOwner(ctx, w, v, a, t, attempt, true)
}

// sendMountOwner is sendMount; withOwner false leaves FormatOwner out (the
// agent refused it).
func (p *pass) sendMountOwner(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, t need, attempt int, withOwner bool) (Result, error) {
	opts, err := volspec.ParseDriverOptsWith(t.spec.DriverOpts, p.r.defaults)
	if err != nil {
		if err := p.failNeeders(ctx, onInstance(w.needers, a.InstanceID), reasonInvalidVolume, fmt.Sprintf("volume %s: %v", p.key.Volume, err)); err != nil {
			return Result{}, err
		}
		return done("invalid driverOpts"), nil
	}
	if known, ok := p.r.cloud.KnownVolume(v.ID); ok {
		if v.Tags == nil || known.Tags[cloud.TagFormatted] != "" {
			v.Tags = known.Tags
		}
		if v.SizeGiB == 0 {
			v.SizeGiB = known.SizeGiB
		}
	}
	if ag, bad := p.knownMismatch(a.InstanceID); bad {
		return p.protocolMismatch(ctx, onInstance(w.needers, a.InstanceID), v, a.InstanceID, ag)
	}
	formatIfBlank := grant(v)
	params := map[string]string{
		agentproto.ParamVolumeID: v.ID, agentproto.ParamVolumeName: p.key.Volume, agentproto.ParamFSType: opts.FSType,
		agentproto.ParamDevice: a.Device, agentproto.ParamFormatIfBlank: strconv.FormatBool(formatIfBlank),
		agentproto.ParamAttachment: token(a),
	}
	if v.SizeGiB > 0 {
		params[agentproto.ParamSizeGiB] = strconv.Itoa(int(v.SizeGiB))
	}
	if opts.DevSuid {
		params[agentproto.ParamDevSuid] = "true"
	}
	// The owner only with the grant: a filesystem that exists keeps its
	// owners (owner.go).
	if formatIfBlank && withOwner {
		if owner, why := formatOwner(t.spec); owner != "" {
			params[agentproto.ParamFormatOwner] = owner
		} else if why != "" {
			p.log.Warn("the new filesystem is not given to the container's user", "volumeId", v.ID, "task", t.task.ARN, "reason", why)
		}
	}
	res, err := p.send(ctx, p.r.mountDoc, stepMount, v, a, t.ci.ARN, params, "", attempt)
	if errors.Is(err, cloud.ErrThrottled) && withOwner && !p.hint.counts() && p.op.instance == "" {
		p.due = &hint{Step: stepMountDue, Volume: v.ID, Instance: a.InstanceID, CI: t.ci.ARN, At: ms(a.AttachTime),
			Target: t.task.ARN, TaskDef: t.task.TaskDefinitionARN, Since: p.hint.Since, Attempt: attempt}
	}
	if err == nil && !res.Done() && formatIfBlank && parseHint(res.Hint).Command != "" {
		p.r.emit(p.key.Cluster, map[string]any{"volume": p.key.Volume, "volumeId": v.ID, "instance": a.InstanceID}, metricCount(MetricMkfsGrants))
	}
	if errors.Is(err, cloud.ErrUnreachable) || errors.Is(err, cloud.ErrRefused) {
		return p.refusal(ctx, onInstance(w.needers, a.InstanceID), "mount on "+a.InstanceID, err)
	}
	return res, err
}

// sendDueMount sends the mount SSM's rate limit refused, once EC2 shows
// the volume still attached where it was (the same attachment) and ECS
// the task it was attached for still waiting there. Anything else goes to
// the full pass.
func (p *pass) sendDueMount(ctx context.Context) (Result, bool, error) {
	h := p.hint
	v, ok, err := p.dueVolume(ctx)
	if err != nil || !ok {
		return Result{}, false, err
	}
	for _, a := range v.Attachments {
		if a.InstanceID != h.Instance || a.State != cloud.AttachAttached && a.State != cloud.AttachAttaching || h.At != 0 && ms(a.AttachTime) != h.At {
			continue
		}
		if sent, err := p.sentSince(ctx, p.r.mountDoc, v, a); err != nil {
			return Result{}, false, err
		} else if sent {
			// Another pass sent it: that command's end (its SSM event, its
			// chain's retry, the sweep) carries the key on.
			r, ok := p.observed("mount of %s on %s", v.ID, a.InstanceID)
			return r, ok, nil
		}
		w, ok, err := p.dueTarget(ctx, a)
		if err != nil || !ok || w.needers[0].instance() != a.InstanceID {
			return Result{}, false, err
		}
		p.log.Info("sending the mount SSM's rate limit refused", "volumeId", v.ID, "instance", a.InstanceID, "task", h.Target)
		res, err := p.sendMount(ctx, w, v, a, w.needers[0], h.Attempt)
		return res, true, err
	}
	return Result{}, false, nil
}

// dueTarget is the task a due mount serves, on the attachment's instance,
// with its volume's definition from the task definition the hint names
// (the process keeps definitions): no read of the task. A mount there is
// what the volume's attachment was made for; should the task have stopped
// meanwhile, a later pass releases the volume as from any idle host.
// Without the definition (or for a replica's key), ECS says (targetOnly).
func (p *pass) dueTarget(ctx context.Context, a cloud.Attachment) (want, bool, error) {
	h := p.hint
	if h.TaskDef == "" {
		return p.targetOnly(ctx, h.Target)
	}
	td, err := p.r.cloud.TaskDefinition(ctx, h.TaskDef)
	if errors.Is(err, cloud.ErrNotFound) {
		return want{}, false, nil
	}
	if err != nil {
		return want{}, false, err
	}
	spec, ok := volumeOf(p.key, h.Target, td)
	if !ok {
		return p.targetOnly(ctx, h.Target)
	}
	t := cloud.Task{ARN: h.Target, TaskDefinitionARN: h.TaskDef, ContainerInstanceARN: h.CI, DesiredStatus: "RUNNING"}
	ci := cloud.ContainerInstance{ARN: h.CI, EC2InstanceID: a.InstanceID}
	return want{users: []cloud.Task{t}, ciByARN: map[string]cloud.ContainerInstance{ci.ARN: ci},
		needers: []need{{task: t, spec: spec, ci: ci}}, families: p.r.mem.familiesOf(p.key)}, true, nil
}

// dueVolume reads the volume of a step handed back as due: ok false when
// EC2 no longer knows it, its tags name another key, or a move to another
// AZ concerns it (the full pass weighs those).
func (p *pass) dueVolume(ctx context.Context) (cloud.Volume, bool, error) {
	v, err := p.r.cloud.VolumeByID(ctx, p.hint.Volume)
	if errors.Is(err, cloud.ErrNotFound) {
		return cloud.Volume{}, false, nil
	}
	if err != nil {
		return cloud.Volume{}, false, err
	}
	if !p.tagsNameKey(v) || v.Tags[cloud.TagMovedTo] != "" || v.Tags[cloud.TagMoving] != "" {
		return cloud.Volume{}, false, nil
	}
	return v, true, nil
}

// sentSince: a command of doc for the volume was sent on the attachment
// (by another pass, since this one's was refused): a due step must not
// send it twice.
func (p *pass) sentSince(ctx context.Context, doc string, v cloud.Volume, a cloud.Attachment) (bool, error) {
	cmds, err := p.commandsFor(ctx, doc, v.ID, a)
	return len(cmds) > 0, err
}

// send runs a document on the attachment's instance and hands the key back
// with the command as hint. next: the task the step serves next ("" for
// none); the command's comment carries it to whichever process sees its
// end (hint.Target). SSM's refusals (ErrUnreachable: the instance is not
// registered; ErrRefused) are returned for the caller to weigh.
func (p *pass) send(ctx context.Context, doc, step string, v cloud.Volume, a cloud.Attachment, ciARN string, params map[string]string, next string, attempt int) (Result, error) {
	log := p.log.With("volumeId", v.ID, "instance", a.InstanceID, "document", doc)
	if err := p.fresh(step); err != nil {
		return Result{}, err
	}
	id, err := p.sendCommand(ctx, doc, step, a.InstanceID, params, taskID(next))
	if err != nil {
		return Result{}, err
	}
	p.r.mem.startInflight(v.ID, step, p.now)
	if step == stepMount {
		p.r.mem.noteMountSent(v.ID, a.InstanceID, p.now)
	}
	log.Info("command sent", "step", step, "command", id, "attempt", attempt+1, "attachment", params[agentproto.ParamAttachment])
	h := hint{Step: step, Volume: v.ID, Instance: a.InstanceID, CI: ciARN, Command: id, At: ms(p.now), Since: p.hint.Since,
		Unreach: p.hint.Unreach, Busy: p.hint.Busy, Attempt: attempt + 1, Owner: params[agentproto.ParamFormatOwner] != "", Target: next}
	p.r.mem.noteSent(id, p.key, h)
	return p.retry(p.r.t.CommandEventWait, h, "%s of %s on %s sent (%s)", step, v.ID, a.InstanceID, id), nil
}

// sendCommand sends one command. An unmount goes through SendUnmount, so
// the unmounts that passes of this process send to one instance at the
// same moment become one command (SSM's SendCommand bucket is the one a
// mass handoff meets first); each pass reads its own volume's line
// (cloud.Command.ForVolume). A forced unmount goes alone.
func (p *pass) sendCommand(ctx context.Context, doc, step, instanceID string, params map[string]string, next string) (string, error) {
	if step == stepUnmount && params[agentproto.ParamForce] == "false" {
		return p.r.cloud.SendUnmount(ctx, doc, instanceID, cloud.Unmount{VolumeID: params[agentproto.ParamVolumeID],
			Name: params[agentproto.ParamVolumeName], Attachment: params[agentproto.ParamAttachment], Next: next})
	}
	return p.r.cloud.SendCommand(ctx, doc, instanceID, params, next)
}

// observed: this pass found a step in flight that another pass took (it
// did not inherit that pass's hint). The pass that took it keeps a retry
// of its own, and the step's EC2 or SSM event wakes the key sooner (the
// sweep, should both be lost): a second chain of retries would only read
// AWS again. Only a pass that carries nothing a chain must keep counting
// ends here; the rest hand back as before.
func (p *pass) observed(what string, args ...any) (Result, bool) {
	h := p.hint
	if h.Gen != 0 || h.Burn != 0 || h.Vanished != 0 || h.Unreach != 0 || h.Busy != 0 || h.Detaching != 0 || h.Poison != "" || p.op.instance != "" {
		return Result{}, false
	}
	p.log.Debug("step in flight, taken by another pass; its events and retry go on", "step", fmt.Sprintf(what, args...))
	p.leans = true
	return done(fmt.Sprintf(what, args...) + " in flight (another pass's)"), true
}

func (p *pass) cmdHint(step, volumeID, inst, ciARN string, c cloud.Command) hint {
	at := c.Requested
	if p.hint.Command == c.ID && p.hint.At != 0 {
		at = fromMS(p.hint.At)
	}
	return hint{Step: step, Volume: volumeID, Instance: inst, CI: ciARN, Command: c.ID, At: ms(at), Since: p.hint.Since, Unreach: p.hint.Unreach}
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
	if !known || !p.tagsNameKey(v) {
		return Result{}, false, nil
	}
	t, _ := p.target(w, nil)
	p.observedEvent(v, ev)
	switch {
	case ev.Event == "createVolume" && ev.Result == "failed":
		// EC2 gave up creating the volume (an unusable KMS key is the usual
		// cause): the create path must see it as vanished, hint or not.
		if p.hint.Step != stepCreate || p.hint.Volume != v.ID {
			p.hint = hint{Step: stepCreate, Volume: v.ID, At: ms(v.CreateTime.Add(-p.r.t.CreateSettle))}
		}
		return Result{}, false, nil
	case ev.Event == "detachVolume" && ev.Result == "detached", ev.Event == "createVolume" && ev.Result == "available":
		if a, ok := p.r.mem.attachmentOf(v.ID); ok && a.InstanceID == t.instance() && a.State != cloud.AttachDetached {
			// This process attached the volume there after the detach this
			// event reports: a late or repeated event. The attach's own
			// chain of passes goes on.
			p.log.Debug("EBS event older than this process's attach: nothing to do", "volumeId", v.ID, "event", ev.Event)
			p.leans = true
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
