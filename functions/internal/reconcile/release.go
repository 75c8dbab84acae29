package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
)

// release frees an attachment no live task on its instance needs: unmount
// through SSM, then DetachVolume (no force). Force only when the instance is
// gone or its agent stays unreachable past the deadline.
func (p *pass) release(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment) (Result, error) {
	inst := a.InstanceID
	log := p.log.With("volumeId", v.ID, "instance", inst)
	ci, known, err := p.containerInstanceOf(ctx, w, inst)
	if err != nil {
		return Result{}, err
	}
	if known {
		users, err := p.usersOn(ctx, w, ci)
		if err != nil {
			return Result{}, err
		}
		if len(users) > 0 {
			if r, ok := p.drainOnlyHeld(log.With("task", users[0].ARN, "lastStatus", users[0].LastStatus), users[0]); ok {
				return r, nil
			}
		}
		if len(users) > 0 {
			log.Info("a task on the instance still uses the volume; waiting for it to stop", "task", users[0].ARN, "lastStatus", users[0].LastStatus)
			return p.retry(p.r.t.HolderWait, hint{}, "held by %s on %s", users[0].ARN, inst), nil
		}
	}
	switch a.State {
	case cloud.AttachAttaching:
		if p.now.Sub(a.AttachTime) >= p.r.t.StuckAttach {
			log.Warn("attachment nobody needs is stuck attaching; force-detaching", "device", a.Device)
			return p.forceDetach(ctx, w, v, a, "stuck attaching")
		}
		return p.retry(p.r.t.AttachWait, hint{}, "attach of %s to %s in progress; will release after", v.ID, inst), nil
	case cloud.AttachDetaching, cloud.AttachBusy:
		return p.detaching(ctx, w, v, a, ci, known)
	}
	return p.unmountAndDetach(ctx, w, v, a, ci, known)
}

// detaching: a detach from a.InstanceID is in progress and no live task
// there uses the volume. EC2 finishes it once the guest lets go of the
// device; if the filesystem was mounted again after the unmount (a mount
// that raced it, sent by a pass that decided earlier), it never does. EC2
// shows that as "busy" by its API reference, but as "detaching" in
// practice (the local world too): so a detach that lasts DetachStuck is
// treated like a busy one, and the volume is unmounted again. An unmount
// of what is not mounted does nothing, and one of what a container uses
// is refused by tether-agent, so this is safe whatever the cause.
func (p *pass) detaching(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, ci cloud.ContainerInstance, known bool) (Result, error) {
	inst := a.InstanceID
	log := p.log.With("volumeId", v.ID, "instance", inst)
	since := p.detachingSince(v.ID, inst)
	if p.now.Sub(since) >= p.r.t.ForceDetachAfter {
		gone, why, err := p.instanceGone(ctx, inst)
		if err != nil {
			return Result{}, err
		}
		if gone {
			log.Warn("detach stuck and the instance is gone; force-detaching", "why", why)
			return p.forceDetach(ctx, w, v, a, why)
		}
		log.Warn("detach still in progress", "state", a.State, "since", since)
	}
	if a.State == cloud.AttachBusy || p.now.Sub(since) >= p.r.t.DetachStuck {
		spacing := p.r.t.DetachStuck
		if a.State == cloud.AttachBusy {
			spacing = p.r.t.BusyWait
		}
		res, err := p.unmountBusyDetach(ctx, v, a, ci, known, spacing)
		return p.keepDetaching(res, v.ID, inst, since), err
	}
	h := hint{Step: stepDetach, Volume: v.ID, Instance: inst, At: ms(since)}
	if p.hint.Step == stepDetach && p.hint.Volume == v.ID && p.hint.Instance == inst {
		h = p.hint
		h.At = ms(since)
	}
	return p.retry(min(p.r.t.DetachWait, max(since.Add(p.r.t.DetachStuck).Sub(p.now), time.Second)), h,
		"detaching %s from %s", v.ID, inst), nil
}

// detachingSince: when the detach from inst began, as far as this chain of
// passes (its hint) or this process knows; else now.
func (p *pass) detachingSince(volumeID, inst string) time.Time {
	h := p.hint
	if h.Volume == volumeID && h.Instance == inst {
		if h.Detaching != 0 {
			return fromMS(h.Detaching)
		}
		if h.Step == stepDetach && h.At != 0 {
			return fromMS(h.At)
		}
	}
	if a, ok := p.r.attachmentOf(volumeID); ok && a.State == cloud.AttachDetached && a.InstanceID == inst && !a.AttachTime.IsZero() {
		return a.AttachTime // this process asked for the detach then
	}
	return p.now
}

// keepDetaching carries when the detach began in res's hint, so the chain
// keeps counting through the unmounts it sends meanwhile.
func (p *pass) keepDetaching(res Result, volumeID, inst string, since time.Time) Result {
	if res.Done() {
		return res
	}
	h := parseHint(res.Hint)
	if h.Volume == "" {
		h.Volume, h.Instance = volumeID, inst
	}
	if h.Volume == volumeID && h.Instance == inst {
		h.Detaching = ms(since)
	}
	res.Hint = h.String()
	return res
}

// instanceGone: EC2 says the instance is stopped or terminated (or no
// longer knows it).
func (p *pass) instanceGone(ctx context.Context, inst string) (bool, string, error) {
	in, err := p.r.cloud.Instance(ctx, inst)
	if errors.Is(err, cloud.ErrNotFound) {
		return true, "instance unknown to EC2", nil
	}
	if err != nil {
		return false, "", err
	}
	if in.Gone() {
		return true, "instance " + in.State, nil
	}
	return false, "", nil
}

func (p *pass) unmountAndDetach(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, ci cloud.ContainerInstance, known bool) (Result, error) {
	inst := a.InstanceID
	log := p.log.With("volumeId", v.ID, "instance", inst)
	ecsGone := !known || ci.Gone()
	if ecsGone {
		gone, why, err := p.instanceGone(ctx, inst)
		if err != nil {
			return Result{}, err
		}
		if gone {
			log.Warn("holding instance is gone; force-detaching", "why", why)
			return p.forceDetach(ctx, w, v, a, why)
		}
	}
	cmd, found, err := p.lastCommand(ctx, p.r.unmountDoc, stepUnmount, v.ID, a)
	if err != nil {
		return Result{}, err
	}
	if !found {
		return p.sendUnmount(ctx, v, a, ci, 0)
	}
	switch cmd.Status {
	case cloud.CommandPending:
		if p.now.Sub(cmd.Requested) > 30*time.Second {
			gone, why, err := p.instanceGone(ctx, inst)
			if err != nil {
				return Result{}, err
			}
			if gone {
				log.Warn("unmount never ran and the instance is gone; force-detaching", "why", why)
				return p.forceDetach(ctx, w, v, a, why)
			}
			if age := p.now.Sub(cmd.Requested); age >= p.r.t.ForceDetachAfter {
				why := fmt.Sprintf("unmount did not finish within %s: the agent does not answer", age.Round(time.Second))
				log.Warn("force-detaching", "why", why, "command", cmd.ID)
				return p.forceDetach(ctx, w, v, a, why)
			}
		}
		if p.hint.Command != cmd.ID {
			if r, ok := p.observed("unmount %s of %s on %s", cmd.ID, v.ID, inst); ok {
				return r, nil
			}
		}
		return p.retry(p.r.t.CommandEventWait, p.cmdHint(stepUnmount, v.ID, inst, ci.ARN, cmd), "unmount of %s on %s running", v.ID, inst), nil
	case cloud.CommandSucceeded:
		if res, wait, err := p.mountRacing(ctx, v, a, ci, cmd); wait || err != nil {
			return res, err
		}
		return p.detach(ctx, w, v, inst, ci.ARN)
	case cloud.CommandUnreachable:
		since := fromMS(p.hint.Unreach)
		if since.IsZero() || since.After(cmd.Requested) {
			since = cmd.Requested
		}
		gone, why, err := p.instanceGone(ctx, inst)
		if err != nil {
			return Result{}, err
		}
		switch {
		case gone:
		case ecsGone:
			why = "ECS deregistered the instance and its agent does not answer"
		case p.now.Sub(since) >= p.r.t.ForceDetachAfter:
			why = fmt.Sprintf("agent unreachable for %s", p.now.Sub(since).Round(time.Second))
		default:
			log.Warn("unmount not delivered; trying again", "since", since, "detail", cmd.Detail)
			p.hint.Unreach = ms(since)
			return p.sendUnmount(ctx, v, a, ci, 0)
		}
		log.Warn("force-detaching: the holding instance does not answer", "why", why)
		return p.forceDetach(ctx, w, v, a, why)
	}
	// Failed: exit 3 means a container still uses the volume.
	if cmd.ExitCode == 3 {
		// Busy counts from the first refusal this chain of passes saw: an
		// old refusal (a task started there since, and stopped) does not.
		busySince := fromMS(p.hint.Busy)
		if p.hint.Step != stepUnmount || busySince.IsZero() {
			busySince = p.now
		}
		if p.now.Sub(busySince) >= p.r.t.BusyDeadline {
			return Result{}, fmt.Errorf("unmount of %q on %q refused as busy for %s although ECS runs no task using it there", v.ID, inst, p.now.Sub(busySince).Round(time.Second))
		}
		if wait := p.r.t.BusyWait - p.now.Sub(cmd.Requested); wait > 0 {
			h := p.cmdHint(stepUnmount, v.ID, inst, ci.ARN, cmd)
			h.Busy = ms(busySince)
			log.Info("unmount busy: a container still uses the volume; asking again later", "since", busySince)
			return p.retry(wait, h, "unmount of %s on %s busy", v.ID, inst), nil
		}
		p.hint.Busy = ms(busySince)
		return p.sendUnmount(ctx, v, a, ci, 0)
	}
	attempts, err := p.failedCommands(ctx, p.r.unmountDoc, v.ID, a)
	if err != nil {
		return Result{}, err
	}
	if attempts >= 3 {
		return Result{}, fmt.Errorf("unmount of %q on %q failed %d times (last: exit %d, %s)", v.ID, inst, attempts, cmd.ExitCode, cmd.Detail)
	}
	log.Warn("unmount failed; trying again", "exitCode", cmd.ExitCode, "detail", cmd.Detail, "attempts", attempts)
	return p.sendUnmount(ctx, v, a, ci, attempts)
}

func (p *pass) sendUnmount(ctx context.Context, v cloud.Volume, a cloud.Attachment, ci cloud.ContainerInstance, attempt int) (Result, error) {
	params := map[string]string{"VolumeId": v.ID, "VolumeName": p.key.Volume, "Force": "false"}
	res, err := p.send(ctx, p.r.unmountDoc, stepUnmount, v, a, ci.ARN, params, attempt)
	if err == nil && p.hint.Busy != 0 {
		h := parseHint(res.Hint)
		h.Busy = p.hint.Busy
		res.Hint = h.String()
	}
	return res, err
}

// detach: the volume is unmounted on inst and no live task there uses it.
func (p *pass) detach(ctx context.Context, w want, v cloud.Volume, inst, ciARN string) (Result, error) {
	log := p.log.With("volumeId", v.ID, "instance", inst)
	if err := p.fresh("detach"); err != nil {
		return Result{}, err
	}
	err := p.r.cloud.DetachVolume(ctx, v.ID, inst, false)
	if cloud.IsDone(err) {
		// Another pass asked for this detach: its chain (the detach
		// event, or its own fallback retry) goes on from here.
		log.Info("already detached (or detaching): the pass that asked goes on", "error", err)
		return done(fmt.Sprintf("%s already detached (or detaching) from %s", v.ID, inst)), nil
	}
	if err != nil {
		return Result{}, err
	}
	since := p.releaseStart(w, ciARN)
	p.r.noteReleased(p.key, since)
	p.r.noteAttachment(v.ID, cloud.Attachment{InstanceID: inst, State: cloud.AttachDetached, AttachTime: p.now})
	p.r.startInflight(v.ID, stepDetach, p.now)
	log.Info("detaching")
	return p.retry(p.r.t.DetachWait, hint{Step: stepDetach, Volume: v.ID, Instance: inst, CI: ciARN, At: ms(p.now), Since: ms(since)},
		"detaching %s from %s", v.ID, inst), nil
}

// forceDetach: only for instances that are gone or do not answer, and for
// attachments stuck in "attaching". The device name is remembered as
// unusable on that instance (a force-detached Xen name can stay poisoned).
func (p *pass) forceDetach(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, why string) (Result, error) {
	log := p.log.With("volumeId", v.ID, "instance", a.InstanceID)
	if err := p.fresh("force detach"); err != nil {
		return Result{}, err
	}
	// EC2 has no conditional detach, and a force detach under a running
	// task loses its writes: read the attachment once more, past the
	// invocation's cache, and force only if it is still the one judged.
	cur, err := p.r.cloud.VolumeByID(cloud.Uncached(ctx), v.ID)
	if errors.Is(err, cloud.ErrNotFound) {
		return done("volume gone"), nil
	}
	if err != nil {
		return Result{}, err
	}
	same := false
	for _, c := range cur.Attachments {
		same = same || c.InstanceID == a.InstanceID && c.State == a.State && c.AttachTime.Equal(a.AttachTime)
	}
	if !same {
		log.Info("attachment changed since this pass judged it; not forcing", "was", a.State, "now", cur.Attachments)
		return p.retry(p.r.t.CommandWait, hint{}, "attachment of %s to %s changed; looking again", v.ID, a.InstanceID), nil
	}
	// And the tasks: ECS may have placed one there since this pass read
	// them, whose plugin remounted the volume by itself (its device is
	// still attached). A living instance's users are read afresh.
	gone, _, err := p.instanceGone(ctx, a.InstanceID)
	if err != nil {
		return Result{}, err
	}
	if !gone {
		users, err := p.usersNow(ctx, a.InstanceID)
		if err != nil {
			return Result{}, err
		}
		if len(users) > 0 {
			log.Warn("not forcing: a started task on the instance uses the volume now", "task", users[0].ARN, "lastStatus", users[0].LastStatus, "why", why)
			return p.retry(p.r.t.HolderWait, hint{}, "%s on %s used by %s; not forcing", v.ID, a.InstanceID, users[0].ARN), nil
		}
	}
	err = p.r.cloud.DetachVolume(ctx, v.ID, a.InstanceID, true)
	if err != nil && !cloud.IsDone(err) {
		return Result{}, err
	}
	p.r.poison(a.InstanceID, a.Device)
	p.r.noteAttachment(v.ID, cloud.Attachment{InstanceID: a.InstanceID, State: cloud.AttachDetached, AttachTime: p.now})
	since := p.releaseStart(w, "")
	p.r.noteReleased(p.key, since)
	log.Warn("force-detached", "why", why, "device", a.Device)
	p.r.emit(p.key.Cluster, map[string]any{"volume": p.key.Volume, "volumeId": v.ID, "instance": a.InstanceID, "why": why}, metricForceDetaches(1))
	return p.retry(p.r.t.DetachWait, hint{Step: stepDetach, Volume: v.ID, Instance: a.InstanceID, At: ms(p.now), Since: ms(since), Poison: a.Device},
		"force-detaching %s from %s (%s)", v.ID, a.InstanceID, why), nil
}

// usersNow lists the started tasks ECS has on the instance that use the
// volume and may still run, read afresh past every cache: the last look
// before a force detach, which EC2 cannot make conditional.
func (p *pass) usersNow(ctx context.Context, inst string) ([]cloud.Task, error) {
	ctx = cloud.Uncached(ctx)
	ci, known, err := p.containerInstanceOf(ctx, want{}, inst)
	if err != nil || !known {
		return nil, err
	}
	var candidates []cloud.Task
	if id, _, taskScoped := parseTaskVolumeName(p.key.Volume); taskScoped {
		candidates, err = p.r.cloud.Tasks(ctx, p.key.Cluster, []string{id})
	} else {
		candidates, err = p.r.cloud.LiveTasks(ctx, p.key.Cluster)
	}
	if err != nil {
		return nil, err
	}
	stopping, err := p.r.cloud.StoppingTasks(ctx, p.key.Cluster, ci.ARN)
	if err != nil && !errors.Is(err, cloud.ErrNotFound) {
		return nil, err
	}
	var out []cloud.Task
	for _, t := range append(candidates, stopping...) {
		// Started ones: a task still PENDING there has run nothing on the
		// volume yet (and one whose attachment is stuck waits for this).
		started := !t.StartedAt.IsZero() || t.LastStatus == "RUNNING"
		if t.ContainerInstanceARN != ci.ARN || !t.Live() || !started {
			continue
		}
		if _, ok, err := p.uses(ctx, t); err != nil {
			return nil, err
		} else if ok {
			out = append(out, t)
		}
	}
	return out, nil
}

// deleteVolume: a task-scoped volume whose task stopped, now detached.
// Only a volume whose tags say it belongs to that task is deleted.
func (p *pass) deleteVolume(ctx context.Context, v cloud.Volume) (Result, error) {
	id, _, _ := parseTaskVolumeName(p.key.Volume)
	log := p.log.With("volumeId", v.ID)
	if v.Tags[cloud.TagScope] != cloud.ScopeTask || taskID(v.Tags[cloud.TagTask]) != id {
		log.Error("refusing to delete: the volume's tags do not say it belongs to this task", "tags", v.Tags)
		return done("not deleted: tags do not match the task"), nil
	}
	if err := p.fresh("delete"); err != nil {
		return Result{}, err
	}
	err := p.r.cloud.DeleteVolume(ctx, v.ID)
	if errors.Is(err, cloud.ErrNotFound) {
		return done("already deleted"), nil
	}
	if errors.Is(err, cloud.ErrIncorrectState) || errors.Is(err, cloud.ErrVolumeInUse) {
		return p.retry(p.r.t.DetachWait, hint{}, "%s not deletable yet", v.ID), nil
	}
	if err != nil {
		return Result{}, err
	}
	log.Info("task-scoped volume deleted: its task stopped")
	return done("deleted " + v.ID), nil
}

// continueStep finishes a step a previous pass started, from its hint,
// without reading EC2: an unmount that succeeded is followed by the detach,
// a mount that succeeded ends the handoff. Anything unexpected falls back
// to a full pass.
func (p *pass) continueStep(ctx context.Context, w want) (Result, bool, error) {
	h := p.hint
	// The fallback retry after an attach or detach, when this process has
	// since moved on (the EBS event came first): the newer chain goes on.
	switch {
	case h.Step == stepAttach && h.Volume != "" && p.r.mountSentAfter(h.Volume, h.Instance, fromMS(h.At)):
		return done("superseded: mount already sent on " + h.Instance), true, nil
	case h.Step == stepDetach && h.Volume != "":
		if a, ok := p.r.attachmentOf(h.Volume); ok && a.State != cloud.AttachDetached && a.AttachTime.After(fromMS(h.At)) {
			return done("superseded: attached to " + a.InstanceID + " since"), true, nil
		}
	case h.Step == stepUnmount && h.Volume != "":
		// A repeated SSM event of an unmount whose detach this process
		// already asked for: the detach's own chain goes on.
		if a, ok := p.r.attachmentOf(h.Volume); ok && a.InstanceID == h.Instance && a.State == cloud.AttachDetached && a.AttachTime.After(fromMS(h.At)) {
			return done("superseded: detach from " + h.Instance + " already asked"), true, nil
		}
	}
	if h.Command == "" || h.Volume == "" || h.Instance == "" {
		return Result{}, false, nil
	}
	switch h.Step {
	case stepUnmount:
		if len(onInstance(w.needers, h.Instance)) > 0 {
			return Result{}, false, nil
		}
		if h.CI == "" {
			// A hint made from the command alone (SSM's event reached
			// another process): ECS says which container instance it is.
			ci, known, err := p.containerInstanceOf(ctx, w, h.Instance)
			if err != nil || !known {
				return Result{}, false, err
			}
			h.CI = ci.ARN
			p.hint.CI = ci.ARN
		}
		users, err := p.usersOn(ctx, w, cloud.ContainerInstance{ARN: h.CI, EC2InstanceID: h.Instance})
		if err != nil || len(users) > 0 {
			return Result{}, false, err
		}
		c, err := p.r.cloud.Command(ctx, h.Command, h.Instance)
		if errors.Is(err, cloud.ErrNotFound) {
			return Result{}, false, nil
		}
		if err != nil {
			return Result{}, false, err
		}
		switch c.Status {
		case cloud.CommandPending:
			if p.now.Sub(fromMS(h.At)) > 30*time.Second {
				return Result{}, false, nil // let the full pass check the instance
			}
			return p.retry(p.r.t.CommandEventWait, h, "unmount of %s on %s running", h.Volume, h.Instance), true, nil
		case cloud.CommandSucceeded:
			if !c.Ended.IsZero() && p.now.Sub(c.Ended) > p.r.t.CommandEventWait/2 {
				// Long since over: this is the fallback retry, and SSM's
				// event has most likely moved the key on already. The full
				// pass reads where the volume is instead of detaching blind.
				return Result{}, false, nil
			}
			a := cloud.Attachment{InstanceID: h.Instance}
			c.Requested = fromMS(h.At)
			if res, wait, err := p.mountRacing(ctx, cloud.Volume{ID: h.Volume}, a, cloud.ContainerInstance{ARN: h.CI}, c); wait || err != nil {
				return res, wait, err
			}
			res, err := p.detach(ctx, w, cloud.Volume{ID: h.Volume}, h.Instance, h.CI)
			return res, true, err
		}
	case stepMount:
		here := onInstance(w.needers, h.Instance)
		waited := false
		for _, n := range here {
			if !n.task.CreatedAt.After(fromMS(h.At)) {
				waited = true // the command was sent for a task still waiting
			}
		}
		if !waited {
			return Result{}, false, nil
		}
		c, err := p.r.cloud.Command(ctx, h.Command, h.Instance)
		if errors.Is(err, cloud.ErrNotFound) && p.now.Sub(fromMS(h.At)) < 30*time.Second {
			return p.retry(p.r.t.CommandEventWait, h, "mount of %s on %s sent", h.Volume, h.Instance), true, nil
		}
		if err != nil && !errors.Is(err, cloud.ErrNotFound) {
			return Result{}, false, err
		}
		if err == nil {
			switch c.Status {
			case cloud.CommandPending:
				return p.retry(p.r.t.CommandEventWait, h, "mount of %s on %s running", h.Volume, h.Instance), true, nil
			case cloud.CommandSucceeded:
				p.mounted(w, cloud.Volume{ID: h.Volume}, h.Instance, c)
				return done("mounted on " + h.Instance), true, nil
			}
		}
	}
	return Result{}, false, nil
}

// mountRacing: an unmount succeeded, but a mount command for the volume on
// the same instance may still run, or ran after it (SSM does not order
// commands), and mounted the filesystem again. Then detaching would leave
// EC2 waiting ("busy") on a mounted device: wait for the mount, unmount
// again, and only then detach.
func (p *pass) mountRacing(ctx context.Context, v cloud.Volume, a cloud.Attachment, ci cloud.ContainerInstance, unmount cloud.Command) (Result, bool, error) {
	mounts, err := p.commandsFor(ctx, p.r.mountDoc, v.ID, a)
	if err != nil {
		return Result{}, false, err
	}
	for _, m := range mounts {
		switch {
		case m.Status == cloud.CommandPending:
			p.log.Info("a mount command still runs where the volume is being released; waiting for it", "volumeId", v.ID, "instance", a.InstanceID, "command", m.ID)
			return p.retry(p.r.t.CommandEventWait, hint{}, "mount %s on %s still running", m.ID, a.InstanceID), true, nil
		case m.Requested.After(unmount.Requested):
			p.log.Info("a mount was sent after the unmount; unmounting again", "volumeId", v.ID, "instance", a.InstanceID, "command", m.ID)
			res, err := p.sendUnmount(ctx, v, a, ci, 0)
			return res, true, err
		case m.Status != cloud.CommandSucceeded || unmount.Requested.Sub(m.Requested) > mountRaceWindow:
			continue
		}
		// Sent before the unmount, it may still have run after it: SSM
		// does not order commands. Its end says.
		d, err := p.r.cloud.Command(ctx, m.ID, a.InstanceID)
		if errors.Is(err, cloud.ErrNotFound) {
			continue
		}
		if err != nil {
			return Result{}, false, err
		}
		if d.Status == cloud.CommandSucceeded && (d.Ended.IsZero() || !d.Ended.Before(unmount.Requested)) {
			p.log.Info("a mount sent before the unmount ran after it; unmounting again", "volumeId", v.ID, "instance", a.InstanceID, "command", m.ID, "mountEnded", d.Ended)
			res, err := p.sendUnmount(ctx, v, a, ci, 0)
			return res, true, err
		}
	}
	return Result{}, false, nil
}

// mountRaceWindow: a mount command requested this long before an unmount
// cannot have run after it (the 60 s delivery timeout tether gives SSM
// commands plus the mount document's 180 s execution timeout, rounded up).
const mountRaceWindow = 5 * time.Minute

// unmountBusyDetach: the detach waits because the guest still has the
// filesystem mounted; no live task there uses it, so unmount (again), at
// most once per spacing.
func (p *pass) unmountBusyDetach(ctx context.Context, v cloud.Volume, a cloud.Attachment, ci cloud.ContainerInstance, known bool, spacing time.Duration) (Result, error) {
	unmounts, err := p.commandsFor(ctx, p.r.unmountDoc, v.ID, a)
	if err != nil {
		return Result{}, err
	}
	if len(unmounts) > 0 && unmounts[0].Status == cloud.CommandPending {
		return p.retry(p.r.t.CommandEventWait, hint{}, "unmount of busy %s on %s running", v.ID, a.InstanceID), nil
	}
	if len(unmounts) > 0 && p.now.Sub(unmounts[0].Requested) < spacing {
		return p.retry(spacing-p.now.Sub(unmounts[0].Requested), hint{}, "detach of %s from %s waits for the guest", v.ID, a.InstanceID), nil
	}
	if !known || ci.Gone() {
		if gone, why, err := p.instanceGone(ctx, a.InstanceID); err != nil || gone {
			if err != nil {
				return Result{}, err
			}
			return p.forceDetach(ctx, want{}, v, a, why)
		}
	}
	p.log.Warn("detach held up: the filesystem is still mounted on the instance; unmounting again", "volumeId", v.ID, "instance", a.InstanceID, "state", a.State)
	return p.sendUnmount(ctx, v, a, ci, 0)
}
