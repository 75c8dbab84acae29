package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// release frees an attachment no live task on its instance needs: unmount
// through SSM, then DetachVolume (no force). Force only on EC2's word that
// the instance is stopped or terminated, or when an operator asks.
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
			log.Info("a task on the instance still uses the volume; waiting for it to stop", "task", users[0].ARN, "lastStatus", users[0].LastStatus)
			return p.retry(p.r.t.HolderWait, hint{Step: stepHeld, Volume: v.ID, Instance: inst, At: ms(p.now)}, "held by %s on %s", users[0].ARN, inst), nil
		}
	}
	if a.State == cloud.AttachDetaching || a.State == cloud.AttachBusy {
		return p.detaching(ctx, w, v, a, ci, known)
	}
	if ecsGone := !known || ci.Gone(); ecsGone || p.hint.Unreach != 0 {
		// ECS forgot the instance, or SSM did not reach it: EC2's word on
		// the instance decides (the unmount's own answer otherwise).
		if res, ok, err := p.haltedHost(ctx, w, v, a); ok || err != nil {
			return res, err
		}
	}
	// An attachment still attaching is released like any other: its mount
	// was sent with it, and the unmount answers for whatever it did.
	return p.unmountAndDetach(ctx, w, v, a, ci, known)
}

// haltedHost acts on EC2's word that the host is stopped or terminated
// (force: nothing there can hold the volume) or on its way there (wait:
// its containers may still flush after SIGTERM). ok false: it runs.
func (p *pass) haltedHost(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment) (Result, bool, error) {
	in, halted, err := p.hostState(ctx, a.InstanceID)
	switch {
	case err != nil:
		return Result{}, true, err
	case halted:
		p.log.Warn("the holding instance is stopped or terminated; force-detaching", "volumeId", v.ID, "instance", a.InstanceID, "state", in.State)
		res, err := p.forceDetach(ctx, w, v, a, "instance "+in.State, false)
		return res, true, err
	case in.Halting():
		p.log.Info("the holding instance is on its way down: waiting for EC2 to say it stopped (its containers may still flush)", "volumeId", v.ID, "instance", a.InstanceID, "state", in.State)
		res, err := p.waitOrStop(ctx, elsewhere(w.needers, a.InstanceID), reasonLiveHost,
			fmt.Sprintf("volume %s waits for instance %s to finish %s (tether never force-detaches before EC2 says stopped)", p.key.Volume, a.InstanceID, in.State), p.r.t.CommandWait*2, p.hint)
		return res, true, err
	}
	return Result{}, false, nil
}

// hostState: EC2's word on the instance. halted: stopped, terminated, or no
// longer known to EC2 (a terminated instance's record goes after a while).
func (p *pass) hostState(ctx context.Context, inst string) (cloud.Instance, bool, error) {
	in, err := p.r.cloud.Instance(ctx, inst)
	if errors.Is(err, cloud.ErrNotFound) {
		return cloud.Instance{ID: inst, State: "terminated (unknown to EC2)"}, true, nil
	}
	if err != nil {
		return cloud.Instance{}, false, err
	}
	return in, in.Halted(), nil
}

// operatorRelease: the Release an operator asked for in this invocation.
func (p *pass) operatorRelease() (Release, bool) {
	p.inv.mu.Lock()
	defer p.inv.mu.Unlock()
	rel, ok := p.inv.releases[p.key]
	return rel, ok
}

// forcing: an operator asked to force the release from inst (in this
// invocation, or earlier in this chain of passes).
func (p *pass) forcing(inst string) bool { return p.op.force && p.op.covers(inst) }

// releasing: an operator asked (with force or not) to release the volume
// from inst, in this invocation or earlier in this chain of passes.
func (p *pass) releasing(inst string) bool { return p.op.covers(inst) }

// operatorWhy: the operator's reason as this process knows it.
func (p *pass) operatorWhy() string {
	if rel, ok := p.operatorRelease(); ok && rel.Force {
		return fmt.Sprintf("operator %s: %s", rel.Operator, rel.Reason)
	}
	return "operator's release (asked earlier in this chain)"
}

// holdup says why a live host has not let go of the volume.
type holdup struct {
	what  string    // in words: logs and the reason a waiting task is stopped with
	since time.Time // when the wait began
	// running: its unmount still runs (an operator's force waits
	// Timing.OperatorGrace for it).
	running bool
	// containers: the unmount's answer names containers holding the
	// volume: an operator's force is refused while they do.
	containers []agentproto.Holder
}

// containerHolders: the holders that are containers, or processes and
// mount namespaces of one.
func containerHolders(hs []agentproto.Holder) []agentproto.Holder {
	var out []agentproto.Holder
	for _, h := range hs {
		if h.Kind == "container" || h.ContainerID != "" {
			out = append(out, h)
		}
	}
	return out
}

// liveWait: the host is alive and has not let go. tether waits (never a
// force on a timer), counts the wait once past the threshold, stops the
// waiting tasks past their deadline with a reason that says what they
// waited for, or forces if an operator asked and nothing says a container
// there still holds the volume.
func (p *pass) liveWait(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, hu holdup, retry time.Duration, h hint) (Result, error) {
	if p.forcing(a.InstanceID) {
		log := p.log.With("volumeId", v.ID, "instance", a.InstanceID, "waitingFor", hu.what)
		switch left := p.r.t.OperatorGrace - p.now.Sub(hu.since); {
		case len(hu.containers) > 0:
			log.Warn("operator's force refused: the host answers, and a container there holds the volume; the release goes on without force", "holders", hu.containers)
		case hu.running && left > 0:
			// Back when the grace ends, whether or not a task waits.
			log.Info("operator's force: the unmount runs; giving it its grace first", "grace", left.String())
			return p.retry(min(retry, left), h, "operator's force on %s waits %s for the running unmount", a.InstanceID, left.Round(time.Second)), nil
		default:
			log.Warn("operator asked to force the release", "why", p.operatorWhy())
			return p.forceDetach(ctx, w, v, a, p.operatorWhy(), true)
		}
	}
	p.waitedPast(hu.what, hu.since, map[string]any{"volumeId": v.ID, "instance": a.InstanceID, "waitingFor": hu.what})
	if p.releasing(a.InstanceID) && len(elsewhere(w.needers, a.InstanceID)) == 0 {
		// Nothing waits, but an operator asked: the chain goes on (until
		// the volume left, or Timing.OperatorWindow).
		return p.retry(retry, h, "operator's release from %s waits: %s", a.InstanceID, hu.what), nil
	}
	reason := fmt.Sprintf("volume %s waits for running instance %s, which tether never force-detaches: %s (an operator can release it with force)", p.key.Volume, a.InstanceID, hu.what)
	return p.waitOrStop(ctx, elsewhere(w.needers, a.InstanceID), reasonLiveHost, reason, retry, h)
}

func elsewhere(ns []need, instance string) []need {
	var out []need
	for _, n := range ns {
		if n.instance() != instance {
			out = append(out, n)
		}
	}
	return out
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
	since := p.detachingSince(v.ID, inst)
	if a.State == cloud.AttachBusy || p.now.Sub(since) >= p.r.t.DetachStuck {
		in, halted, err := p.hostState(ctx, inst)
		if err != nil {
			return Result{}, err
		}
		if halted {
			// Nothing runs there to hold the device: EC2 ends the detach.
			return p.retry(p.r.t.DetachWait, hint{Step: stepDetach, Volume: v.ID, Instance: inst, At: ms(since)}, "detaching %s from %s (%s)", v.ID, inst, in.State), nil
		}
		spacing := p.r.t.DetachStuck
		if a.State == cloud.AttachBusy {
			spacing = p.r.t.BusyWait
		}
		h := p.hint
		if h.Step == stepUnmount && h.Volume == v.ID && h.Instance == inst && h.Command != "" && p.now.Sub(fromMS(h.At)) < spacing {
			return p.retry(spacing-p.now.Sub(fromMS(h.At)), h, "detach of %s from %s waits for the guest", v.ID, inst), nil
		}
		p.log.Warn("detach held up: the filesystem may be mounted again on the instance; unmounting again", "volumeId", v.ID, "instance", inst, "state", a.State)
		res, err := p.sendUnmount(ctx, w, v, a, ci)
		return p.keepDetaching(res, v.ID, inst, since), err
	}
	h := hint{Step: stepDetach, Volume: v.ID, Instance: inst, At: ms(since)}
	if p.hint.Step == stepDetach && p.hint.Volume == v.ID && p.hint.Instance == inst {
		h = p.hint
		h.At = ms(since)
	} else if known && !ci.Gone() && ci.AgentConnected {
		// On a host ECS still serves, only tether detaches: another pass's
		// detach (in this process or another, as Lambda runs several), whose
		// chain polls it and past DetachStuck looks in full. (EC2 detaches a
		// dying host's volumes by itself: those keep a chain here.)
		if r, ok := p.observed("detach of %s from %s", v.ID, inst); ok {
			return r, nil
		}
	}
	return p.retry(min(p.detachPoll(since), max(since.Add(p.r.t.DetachStuck).Sub(p.now), time.Second)), h,
		"detaching %s from %s", v.ID, inst), nil
}

// detachPoll: when to look at a detach that began at since again: first
// after Timing.DetachPoll, then after a quarter of the time waited so far
// (at least a second, at most DetachWait): a detach that ends is seen at
// most a quarter late (EC2 sends no event for it), for a look or two more
// than with half. Concurrent passes of one process look in one
// DescribeVolumes (cloud's batcher).
//
// Once five of this process's detaches are known, the looks come when a
// quarter, half, three quarters and nine tenths of them had ended (each at
// least a second after the last): the looks in between would mostly find
// the detach still going on. Past those, a quarter of the wait again.
func (p *pass) detachPoll(since time.Time) time.Duration {
	waited := p.now.Sub(since)
	if looks, ok := p.r.mem.detachLooks(); ok {
		for _, at := range looks {
			if at-waited >= time.Second {
				return min(at-waited, p.r.t.DetachWait)
			}
		}
		if waited < looks[0] {
			return time.Second
		}
	}
	if waited < p.r.t.DetachPoll/2 {
		return p.r.t.DetachPoll
	}
	return min(max(waited/4, time.Second), p.r.t.DetachWait)
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
	if a, ok := p.r.mem.attachmentOf(volumeID); ok && a.State == cloud.AttachDetached && a.InstanceID == inst && !a.AttachTime.IsZero() {
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

func (p *pass) unmountAndDetach(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, ci cloud.ContainerInstance, known bool) (Result, error) {
	inst := a.InstanceID
	log := p.log.With("volumeId", v.ID, "instance", inst, "attachment", token(a))
	ecsGone := !known || ci.Gone()
	cmd, found, err := p.lastCommand(ctx, p.r.unmountDoc, stepUnmount, v.ID, a)
	if err != nil {
		return Result{}, err
	}
	if !found {
		return p.sendUnmount(ctx, w, v, a, ci)
	}
	if p.releasing(inst) && cmd.Finished() && cmd.Status != cloud.CommandSucceeded && cmd.Requested.Before(p.op.at) {
		// The host refused before the operator asked (who may have fixed
		// what held it): ask it again now.
		log.Info("operator's release: the last unmount's answer predates it; unmounting again", "command", cmd.ID)
		return p.sendUnmount(ctx, w, v, a, ci)
	}
	res := parseResult(cmd)
	if cmd.Status == cloud.CommandSucceeded || cmd.Status == cloud.CommandFailed {
		if ag, ok := p.agentAnswered(inst, res); !ok {
			what := fmt.Sprintf("its tether-agent %s speaks protocol %d and these functions protocol %d, so its unmount's answer is not acted on (install the matching tether-agent release there)",
				cmp.Or(ag.AgentVersion, "(unnamed)"), ag.Protocol, agentproto.Protocol)
			log.Error("unmount answered by an agent of another protocol: not detaching on its word", "agentVersion", ag.AgentVersion, "protocol", ag.Protocol)
			return p.liveWait(ctx, w, v, a, holdup{what: what, since: cmd.Requested}, p.r.t.HolderWait, p.hint)
		}
	}
	switch cmd.Status {
	case cloud.CommandPending:
		if p.hint.Command != cmd.ID && p.now.Sub(cmd.Requested) < p.r.t.CommandEventWait {
			if r, ok := p.observed("unmount %s of %s on %s", cmd.ID, v.ID, inst); ok {
				return r, nil
			}
		}
		what := fmt.Sprintf("its unmount has run for %s (a flush may take long)", p.now.Sub(cmd.Requested).Round(time.Second))
		return p.liveWait(ctx, w, v, a, holdup{what: what, since: cmd.Requested, running: true}, p.r.t.CommandEventWait, p.cmdHint(stepUnmount, v.ID, inst, ci.ARN, cmd))
	case cloud.CommandSucceeded:
		u, parsed := res.out.Unmount()
		if parsed {
			if u.Attachment != "" && u.Attachment != token(a) {
				log.Info("unmount result of another attachment: unmounting again", "resultAttachment", u.Attachment)
				return p.sendUnmount(ctx, w, v, a, ci)
			}
			p.r.mem.noteReleasedGen(v.ID+"/"+token(a), u.Generation)
		}
		if again, wait, err := p.mountRacing(ctx, w, v, a, ci, cmd, u, parsed); again || err != nil {
			return wait, err
		}
		if p.op.instance == "" {
			// Throttled, the retry takes up this unmount's end (its line, a
			// look at the volume, the detach), not the whole pass: ECS was
			// read for it already, and the task it goes to is named.
			due := p.cmdHint(stepUnmount, v.ID, inst, ci.ARN, cmd)
			if t, ok := p.target(w, nil); ok && t.instance() != inst {
				due.Target = t.task.ARN
			}
			p.due = &due
		}
		return p.detach(ctx, w, v, a, ci.ARN)
	case cloud.CommandUnreachable:
		since := fromMS(p.hint.Unreach)
		if since.IsZero() || since.After(cmd.Requested) {
			since = cmd.Requested
		}
		p.hint.Unreach = ms(since)
		if res, ok, err := p.haltedHost(ctx, w, v, a); ok || err != nil {
			return res, err
		}
		if known && ci.Status == "" { // not read yet: does ECS still know it?
			cur, err := p.containerInstance(ctx, ci.ARN)
			if err != nil {
				return Result{}, err
			}
			ecsGone = cur.Gone()
		}
		what := "its SSM agent does not answer (" + cmd.Detail + ")"
		if ecsGone {
			what = "ECS no longer knows it and " + what
		}
		log.Warn("unmount not delivered", "since", since, "detail", cmd.Detail, "ecsGone", ecsGone)
		r, err := p.liveWait(ctx, w, v, a, holdup{what: what, since: since}, p.r.t.CommandWait*5, p.hint)
		if err != nil || r.Done() || p.now.Sub(cmd.Requested) < p.r.t.CommandWait*5 {
			return r, err
		}
		if p.forcing(inst) {
			return r, nil // forced (or refused for a reason a resent unmount does not change)
		}
		sent, err := p.sendUnmount(ctx, w, v, a, ci)
		if err != nil || sent.Done() {
			return sent, err
		}
		return r, nil
	}
	code := cmd.ExitCode
	msg := res.message(cmd)
	if code == agentproto.ExitBusy && cloud.IsReleaseComment(cmd.Comment) {
		// A drain's release found the volume in use (its task was still
		// stopping): this pass is here to unmount it, its user gone since.
		log.Info("the drain's release found the volume in use; unmounting it now", "command", cmd.ID)
		return p.sendUnmount(ctx, w, v, a, ci)
	}
	if code == agentproto.ExitBusy {
		// Busy counts from the first refusal this chain of passes saw: an
		// old refusal (a task started there since, and stopped) does not.
		busySince := fromMS(p.hint.Busy)
		if p.hint.Step != stepUnmount || busySince.IsZero() {
			busySince = p.now
		}
		p.hint.Busy = ms(busySince)
		log.Info("unmount busy: something on the host still holds the volume; asking again later", "since", busySince, "agent", msg)
		hu := holdup{what: "the agent says " + msg, since: busySince}
		if res.parsed && res.out.Error != nil {
			hu.containers = containerHolders(res.out.Error.Holders)
		}
		if wait := p.r.t.BusyWait - p.now.Sub(cmd.Requested); wait > 0 {
			h := p.cmdHint(stepUnmount, v.ID, inst, ci.ARN, cmd)
			h.Busy = ms(busySince)
			return p.liveWait(ctx, w, v, a, hu, wait, h)
		}
		if p.forcing(inst) && len(hu.containers) == 0 {
			return p.liveWait(ctx, w, v, a, hu, p.r.t.BusyWait, p.hint) // forced: no unmount to send first
		}
		sent, err := p.sendUnmount(ctx, w, v, a, ci)
		if err != nil || sent.Done() {
			return sent, err
		}
		return p.liveWait(ctx, w, v, a, hu, sent.RetryAfter, parseHint(sent.Hint))
	}
	attempt := max(p.hint.Attempt, 1)
	log.Warn("unmount failed", "exitCode", code, "class", agentproto.ClassOf(code), "agent", msg, "attempt", attempt)
	if p.forcing(inst) {
		// The operator asked to force what the host will not release.
		return p.liveWait(ctx, w, v, a, holdup{what: "its unmount failed: " + msg, since: cmd.Requested}, p.r.t.HolderWait, hint{})
	}
	if agentproto.Permanent(code) {
		// Only a person can fix what the agent found: the tasks waiting
		// elsewhere are told now, with its words; the volume stays.
		reason := fmt.Sprintf("volume %s cannot leave %s: tether-agent there refused to unmount it: %s", p.key.Volume, inst, msg)
		var ts []cloud.Task
		for _, n := range elsewhere(w.needers, inst) {
			ts = append(ts, n.task)
		}
		if err := p.failTasks(ctx, ts, agentReason(code), reason); err != nil {
			return Result{}, err
		}
		return done("unmount refused: " + string(agentproto.ClassOf(code))), nil
	}
	if attempt >= 3 {
		return p.liveWait(ctx, w, v, a, holdup{what: "its unmount failed: " + msg, since: cmd.Requested}, p.r.t.HolderWait, hint{})
	}
	p.hint.Attempt = attempt
	return p.sendUnmount(ctx, w, v, a, ci)
}

func (p *pass) sendUnmount(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, ci cloud.ContainerInstance) (Result, error) {
	params := map[string]string{agentproto.ParamVolumeID: v.ID, agentproto.ParamVolumeName: p.key.Volume, agentproto.ParamForce: "false"}
	if !a.AttachTime.IsZero() {
		params[agentproto.ParamAttachment] = token(a)
	}
	// The task the volume is released for, when one waits elsewhere: the
	// unmount's end then asks for the detach without reading ECS.
	next := p.hint.Target
	if t, ok := p.target(w, nil); ok && t.instance() != a.InstanceID {
		next = t.task.ARN
	}
	sendCtx := ctx
	if p.op.instance == "" && p.hint.Step != stepUnmountDue {
		// A first try gives way to mounts when SendCommand's bucket runs
		// low; its retry (unmount-due) no longer does, so none waits twice.
		sendCtx = cloud.Yield(ctx)
	}
	res, err := p.send(sendCtx, p.r.unmountDoc, stepUnmount, v, a, ci.ARN, params, next, p.hint.Attempt)
	if errors.Is(err, cloud.ErrThrottled) && !p.hint.counts() && p.op.instance == "" {
		p.due = &hint{Step: stepUnmountDue, Volume: v.ID, Instance: a.InstanceID, CI: ci.ARN, At: ms(a.AttachTime),
			Target: next, Since: p.hint.Since, Attempt: p.hint.Attempt}
	}
	if errors.Is(err, cloud.ErrUnreachable) || errors.Is(err, cloud.ErrRefused) {
		since := fromMS(p.hint.Unreach)
		if since.IsZero() {
			since = p.now
		}
		h := hint{Step: stepUnmount, Volume: v.ID, Instance: a.InstanceID, CI: ci.ARN, Unreach: ms(since), Since: p.hint.Since}
		p.hint = h
		if res, ok, err := p.haltedHost(ctx, w, v, a); ok || err != nil {
			return res, err
		}
		what := "SSM refuses to run its unmount (" + ssmWhy(err) + ")"
		return p.liveWait(ctx, w, v, a, holdup{what: what, since: since}, p.r.t.CommandWait*5, h)
	}
	return res, err
}

// detach: the volume is unmounted on a's instance and no live task there
// uses it. EC2's DetachVolume names the instance, not the attachment, so
// the cloud layer reads it again right before the request and names its
// device: if it is not the attachment this pass judged (detached and
// attached anew since, perhaps mounted for a new task), nothing is asked
// and the pass looks again.
func (p *pass) detach(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, ciARN string) (Result, error) {
	inst := a.InstanceID
	log := p.log.With("volumeId", v.ID, "instance", inst, "attachment", token(a))
	if err := p.fresh("detach"); err != nil {
		return Result{}, err
	}
	if err := p.abandonMove(ctx, v, "detached from "+inst); err != nil {
		return Result{}, err
	}
	err := p.r.cloud.DetachVolume(ctx, v.ID, a, false)
	if errors.Is(err, cloud.ErrAttachmentChanged) {
		log.Info("attachment changed since this pass judged it; not detaching", "error", err)
		return p.retry(p.r.t.CommandWait, hint{}, "attachment of %s to %s changed; looking again", v.ID, inst), nil
	}
	if cloud.IsDone(err) {
		// Another pass asked for this detach: its chain goes on from here.
		log.Info("already detached (or detaching): the pass that asked goes on", "error", err)
		p.leans = true
		return done(fmt.Sprintf("%s already detached (or detaching) from %s", v.ID, inst)), nil
	}
	if err != nil {
		return Result{}, err
	}
	since := p.releaseStart(w, ciARN)
	p.r.mem.noteReleased(p.key, since)
	p.r.mem.noteAttachment(p.key, v.ID, cloud.Attachment{InstanceID: inst, State: cloud.AttachDetached, AttachTime: p.now})
	p.r.mem.startInflight(v.ID, stepDetach, p.now)
	log.Info("detaching")
	h := hint{Step: stepDetach, Volume: v.ID, Instance: inst, CI: ciARN, At: ms(p.now), Since: ms(since)}
	if t, ok := p.target(w, nil); ok && t.instance() != inst {
		h.Target = t.task.ARN
	}
	return p.retry(p.r.t.DetachPoll, h, "detaching %s from %s", v.ID, inst), nil
}

// forceDetach: only when EC2 says the instance is stopped or terminated,
// or when an operator asked (operator true). Read again right before,
// past every cache: the attachment must be the one judged, EC2 must still
// say halted (unless an operator asked), and no started task may use the
// volume there. The device name is remembered as unusable on that
// instance (a force-detached Xen name can stay poisoned).
func (p *pass) forceDetach(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, why string, operator bool) (Result, error) {
	log := p.log.With("volumeId", v.ID, "instance", a.InstanceID)
	if err := p.fresh("force detach"); err != nil {
		return Result{}, err
	}
	fresh := cloud.Uncached(ctx)
	cur, err := p.r.cloud.VolumeByID(fresh, v.ID)
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
	in, halted, err := p.hostState(fresh, a.InstanceID)
	if err != nil {
		return Result{}, err
	}
	if !halted && !operator {
		log.Warn("not forcing: EC2 no longer says the instance is stopped or terminated", "state", in.State, "why", why)
		return p.retry(p.r.t.CommandWait, hint{}, "instance %s is %s; not forcing", a.InstanceID, in.State), nil
	}
	if !halted {
		users, err := p.usersNow(ctx, w, a.InstanceID)
		if err != nil {
			return Result{}, err
		}
		if len(users) > 0 {
			log.Warn("not forcing: a started task on the instance uses the volume now", "task", users[0].ARN, "lastStatus", users[0].LastStatus, "why", why)
			return p.retry(p.r.t.HolderWait, hint{}, "%s on %s used by %s; not forcing", v.ID, a.InstanceID, users[0].ARN), nil
		}
	}
	if err := p.abandonMove(ctx, cur, "force-detached from "+a.InstanceID); err != nil {
		return Result{}, err
	}
	err = p.r.cloud.DetachVolume(ctx, v.ID, a, true)
	if errors.Is(err, cloud.ErrAttachmentChanged) {
		log.Info("attachment changed right before the force detach; not forcing", "error", err)
		return p.retry(p.r.t.CommandWait, hint{}, "attachment of %s to %s changed; looking again", v.ID, a.InstanceID), nil
	}
	if err != nil && !cloud.IsDone(err) {
		return Result{}, err
	}
	p.r.dev.poison(a.InstanceID, a.Device)
	p.r.mem.noteAttachment(p.key, v.ID, cloud.Attachment{InstanceID: a.InstanceID, State: cloud.AttachDetached, AttachTime: p.now})
	since := p.releaseStart(w, "")
	p.r.mem.noteReleased(p.key, since)
	metric := MetricForcedDetachesGone
	if !halted {
		metric = MetricForcedDetachesLive
	}
	log.Warn("force-detached", "why", why, "device", a.Device, "instanceState", in.State, "operator", operator)
	p.r.emit(p.key.Cluster, map[string]any{"volume": p.key.Volume, "volumeId": v.ID, "instance": a.InstanceID, "why": why, "instanceState": in.State},
		metricCount(metric), metricCount(MetricForceDetaches))
	return p.retry(p.r.t.DetachPoll, hint{Step: stepDetach, Volume: v.ID, Instance: a.InstanceID, At: ms(p.now), Since: ms(since), Poison: a.Device},
		"force-detaching %s from %s (%s)", v.ID, a.InstanceID, why), nil
}

// usersNow lists the started tasks ECS has on the instance that use the
// volume and may still run, read afresh past every cache: the last look
// before an operator's force detach, which EC2 cannot make conditional.
func (p *pass) usersNow(ctx context.Context, w want, inst string) ([]cloud.Task, error) {
	ctx = cloud.Uncached(ctx)
	ci, known, err := p.containerInstanceOf(ctx, want{}, inst)
	if err != nil || !known {
		return nil, err
	}
	var candidates []cloud.Task
	if id, _, taskScoped := parseTaskVolumeName(p.key.Volume); taskScoped {
		candidates, err = p.r.cloud.Tasks(ctx, p.key.Cluster, []string{id})
		if err != nil {
			return nil, err
		}
	} else {
		fams := w.families
		if len(fams) == 0 {
			fams = p.r.mem.familiesOf(p.key)
		}
		for _, f := range fams {
			for _, desired := range []string{"RUNNING", "STOPPED"} {
				ts, err := p.r.cloud.TasksOf(ctx, p.key.Cluster, cloud.TaskQuery{Family: f, ContainerInstance: ci.ARN, Desired: desired})
				if err != nil && !errors.Is(err, cloud.ErrNotFound) {
					return nil, err
				}
				candidates = append(candidates, ts...)
			}
		}
	}
	var out []cloud.Task
	for _, t := range candidates {
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
	if v.Tags[cloud.TagSnapshotFirst] == "true" {
		if res, wait, err := p.snapshotBeforeDelete(ctx, v); wait || err != nil {
			return res, err
		}
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

// snapshotBeforeDelete: a task-scoped volume tagged for it is deleted
// only once a snapshot of it (tagged tether:final-of) is complete; one
// that fails keeps the volume (never deleted unsaved) and says so.
func (p *pass) snapshotBeforeDelete(ctx context.Context, v cloud.Volume) (Result, bool, error) {
	log := p.log.With("volumeId", v.ID)
	snaps, err := p.r.cloud.SnapshotsTagged(ctx, cloud.TagFinalOf, v.ID)
	if err != nil {
		return Result{}, true, err
	}
	for _, s := range snaps {
		switch s.State {
		case cloud.SnapshotCompleted:
			log.Info("the task-scoped volume's snapshot is complete; deleting the volume", "snapshot", s.ID)
			return Result{}, false, nil
		case cloud.SnapshotPending:
			return p.retry(p.r.t.MovePoll, hint{}, "snapshot %s of %s before its delete %s", s.ID, v.ID, s.Progress), true, nil
		}
	}
	if len(snaps) > 0 {
		log.Error("the snapshot before the delete failed: the volume is kept", "snapshot", snaps[len(snaps)-1].ID, "error", snaps[len(snaps)-1].StateError)
		return done("snapshot before delete failed; volume kept"), true, nil
	}
	if err := p.fresh("snapshot"); err != nil {
		return Result{}, true, err
	}
	tags := map[string]string{cloud.TagName: p.key.Volume, cloud.TagCluster: p.key.Cluster, cloud.TagFinalOf: v.ID,
		cloud.TagTask: v.Tags[cloud.TagTask]}
	s, err := p.r.cloud.CreateSnapshot(ctx, v.ID, "tether: "+p.key.Volume+" before its delete (its task stopped)", tags)
	if err != nil {
		return Result{}, true, err
	}
	log.Info("task stopped: snapshotting its volume before the delete", "snapshot", s.ID)
	return p.retry(p.r.t.MovePoll, hint{}, "snapshot %s of %s before its delete", s.ID, v.ID), true, nil
}

// continueStep finishes a step a previous pass started, from its hint,
// before reading ECS: a detach in progress is looked at in EC2 alone, an
// unmount whose result releases the attachment is followed by the detach,
// a mount that succeeded ends the handoff. Anything unexpected falls back
// to a full pass.
func (p *pass) continueStep(ctx context.Context) (Result, bool, error) {
	h := p.hint
	// The fallback retry after a step this process has since moved past
	// (an event came first): the newer chain goes on.
	switch {
	case h.Step == stepDetach && h.Volume != "":
		if a, ok := p.r.mem.attachmentOf(h.Volume); ok && a.State != cloud.AttachDetached && a.AttachTime.After(fromMS(h.At)) {
			p.leans = true
			return done("superseded: attached to " + a.InstanceID + " since"), true, nil
		}
		return p.pollDetach(ctx)
	case h.Step == stepUnmountDue:
		return p.sendDueUnmount(ctx)
	case h.Step == stepMountDue:
		return p.sendDueMount(ctx)
	case h.Step == stepUnmount && p.releasing(h.Instance):
		// An operator's release: the full pass weighs the unmount.
		return Result{}, false, nil
	case h.Step == stepUnmount && h.Volume != "":
		// A repeated SSM event of an unmount whose detach this process
		// already asked for: the detach's own chain goes on.
		if a, ok := p.r.mem.attachmentOf(h.Volume); ok && a.InstanceID == h.Instance && a.State == cloud.AttachDetached && a.AttachTime.After(fromMS(h.At)) {
			p.leans = true
			return done("superseded: detach from " + h.Instance + " already asked"), true, nil
		}
	}
	if h.Command == "" || h.Volume == "" || h.Instance == "" {
		return Result{}, false, nil
	}
	c, err := p.r.cloud.Command(ctx, h.Command, h.Instance, pluginOf(h.Step))
	if errors.Is(err, cloud.ErrNotFound) {
		if p.now.Sub(fromMS(h.At)) < 30*time.Second {
			return p.retry(p.r.t.CommandEventWait, h, "%s of %s on %s sent", h.Step, h.Volume, h.Instance), true, nil
		}
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	c, _ = c.ForVolume(h.Volume) // an unmount of several volumes: this one's line
	if c.Status != cloud.CommandPending && p.r.mem.commandEnded(p.key, h.Command) {
		h.Full = true
	}
	switch {
	case c.Status == cloud.CommandPending && p.now.Sub(fromMS(h.At)) < p.r.t.CommandEventWait*3:
		return p.retry(p.r.t.CommandEventWait, h, "%s of %s on %s running", h.Step, h.Volume, h.Instance), true, nil
	case c.Status != cloud.CommandSucceeded:
		return Result{}, false, nil // the full pass weighs failures
	case h.Full && h.Step == stepMount:
		return Result{}, false, nil // a pass skipped while it ran: its news may matter
	}
	out, _ := agentproto.ParseOutput(c.Output)
	switch h.Step {
	case stepUnmount:
		u, ok := out.Unmount()
		if !ok || !u.Released || u.Attachment == "" || u.Reported() && u.Protocol != agentproto.Protocol {
			return Result{}, false, nil
		}
		cur, err := p.r.cloud.VolumeByID(ctx, h.Volume)
		if errors.Is(err, cloud.ErrNotFound) {
			return done("volume gone"), true, nil
		}
		if err != nil {
			return Result{}, false, err
		}
		if res, ok := p.movedOnSince(cur); ok {
			return res, true, nil
		}
		// The families whose tasks use it, as the volume's tag keeps them
		// (a process that did not send the unmount knows none).
		p.r.mem.noteFamilies(p.key, splitFamilies(cur.Tags[cloud.TagFamilies])...)
		var att *cloud.Attachment
		for i, a := range cur.Attachments {
			if a.InstanceID == h.Instance && token(a) == u.Attachment && a.State == cloud.AttachAttached {
				att = &cur.Attachments[i]
			}
		}
		if att == nil {
			if h.Released && len(cur.Attachments) == 0 && cur.State == cloud.VolumeAvailable && !p.inv.namedBy(p.key, byTask) {
				// A drain's release, detached since: on a live draining
				// host only tether detaches, after the release, and the
				// pass that asked has a chain that attaches the volume
				// where it is wanted (its target, or a full look). A late
				// release event that attached too would race that chain
				// (EC2 refuses one of the two with VolumeInUse).
				if r, ok := p.observed("release of %s from %s", h.Volume, h.Instance); ok {
					return r, true, nil
				}
			}
			if p.inv.namedBy(p.key, byTask) || len(cur.Attachments) == 0 {
				// A task event's news, or a detached volume (it may be
				// that no chain attaches it): the full pass looks.
				return Result{}, false, nil
			}
			// The volume has left the attachment this unmount released
			// (its detach runs, or it is attached elsewhere): the chain
			// that took it on goes on. An SSM event often comes late, or twice.
			p.leans = true
			return done(fmt.Sprintf("superseded: %s no longer attached to %s as when unmounted", h.Volume, h.Instance)), true, nil
		}
		elsewhere := h.Target
		if elsewhere == "" && !h.Released {
			// The unmount named no task it releases the volume for: ECS
			// says whether one wants it here (the full pass serves it) or
			// elsewhere. Named, the detach goes on without that read: a
			// task placed here since waits for the attach back, as any
			// task that wants a volume attached elsewhere does. A drain's
			// release was sent once no task was meant to run there.
			here, other, err := p.neededOn(ctx, h.CI)
			if err != nil || here {
				return Result{}, false, err // a task wants it there now: the full pass serves it
			}
			elsewhere = other
		}
		a := *att
		p.r.mem.noteReleasedGen(h.Volume+"/"+u.Attachment, u.Generation)
		if g := p.r.mem.generationsOf(h.Volume + "/" + u.Attachment); g.mounted > u.Generation {
			return Result{}, false, nil // mounted again since: the full pass unmounts again
		}
		c.Requested = fromMS(h.At)
		if again, wait, err := p.mountRacing(ctx, want{}, cur, a, cloud.ContainerInstance{ARN: h.CI}, c, u, true); again || err != nil {
			return wait, true, err
		}
		res, err := p.detach(ctx, want{}, cur, a, h.CI)
		if err == nil && !res.Done() && elsewhere != "" {
			dh := parseHint(res.Hint)
			dh.Target = elsewhere
			res.Hint = dh.String()
		}
		return res, true, err
	case stepMount:
		m, ok := out.Mount()
		if !ok || m.Attachment == "" || m.Reported() && m.Protocol != agentproto.Protocol {
			return Result{}, false, nil // the full pass weighs it (the handshake among others)
		}
		p.r.mem.noteMounted(h.Volume+"/"+m.Attachment, m.Generation)
		if g := p.r.mem.generationsOf(h.Volume + "/" + m.Attachment); g.released >= m.Generation {
			return Result{}, false, nil
		}
		if !m.Formatted && m.Granted != nil && !*m.Granted {
			// Sent without the grant (the volume was tagged formatted, or
			// tether did not make it empty): nothing to record, and the
			// agent's answer says the volume's device was there, by its
			// id and this attachment, and is mounted. No read of EC2.
			p.mounted(want{}, cloud.Volume{ID: h.Volume}, h.Instance, c)
			return done("mounted on " + h.Instance), true, nil
		}
		v, known := p.r.cloud.KnownVolume(h.Volume)
		if !known {
			// Another process sent it: one read of the volume (batched
			// with the invocation's) says whether it is still attached
			// where it was mounted, instead of the full pass.
			cur, err := p.r.cloud.VolumeByID(ctx, h.Volume)
			if errors.Is(err, cloud.ErrNotFound) {
				return Result{}, false, nil
			}
			if err != nil {
				return Result{}, false, err
			}
			if !attachedTo(cur, h.Instance) || !p.tagsNameKey(cur) || cur.Tags[cloud.TagMovedTo] != "" {
				return Result{}, false, nil
			}
			v = cur
		} else if !m.Formatted && grant(v) {
			// This process's copy predates the filesystem, which an earlier
			// mount made (its end tagged the volume, maybe in another
			// process): one read, not a second tag.
			if cur, err := p.r.cloud.VolumeByID(ctx, h.Volume); err == nil {
				v = cur
			}
		}
		if err := p.recordFormatted(ctx, v); err != nil {
			return Result{}, false, err
		}
		p.mounted(want{}, v, h.Instance, c)
		return done("mounted on " + h.Instance), true, nil
	}
	return Result{}, false, nil
}

// sendDueUnmount sends the unmount a pass decided and SSM's rate limit
// refused, once EC2 shows the volume still attached where it was, by the
// same attachment. Anything else (detached, attached anew, another key's
// tags) goes to the full pass. What decided the release stays true: the
// task that held the volume there stopped, and tether-agent refuses the
// unmount while a container uses the volume.
func (p *pass) sendDueUnmount(ctx context.Context) (Result, bool, error) {
	h := p.hint
	v, ok, err := p.dueVolume(ctx)
	if err != nil || !ok {
		return Result{}, false, err
	}
	for _, a := range v.Attachments {
		if a.InstanceID == h.Instance && ms(a.AttachTime) == h.At && (a.State == cloud.AttachDetaching || a.State == cloud.AttachBusy) {
			// Another pass unmounted it and asked for the detach: its
			// chain attaches the volume next.
			r, ok := p.observed("detach of %s from %s", v.ID, a.InstanceID)
			return r, ok, nil
		}
		if a.InstanceID == h.Instance && a.State == cloud.AttachAttached && ms(a.AttachTime) == h.At {
			if sent, err := p.sentSince(ctx, p.r.unmountDoc, v, a); err != nil {
				return Result{}, false, err
			} else if sent {
				// Another pass sent it: that command's end carries the key on.
				r, ok := p.observed("unmount of %s on %s", v.ID, a.InstanceID)
				return r, ok, nil
			}
			p.log.Info("sending the unmount SSM's rate limit refused", "volumeId", v.ID, "instance", a.InstanceID)
			res, err := p.sendUnmount(ctx, want{}, v, a, cloud.ContainerInstance{ARN: h.CI})
			return res, true, err
		}
	}
	if v.State == cloud.VolumeAvailable && len(v.Attachments) == 0 {
		// Released meanwhile by another pass, whose detach's chain
		// attaches it next.
		r, ok := p.observed("release of %s from %s", v.ID, h.Instance)
		return r, ok, nil
	}
	return Result{}, false, nil
}

// neededOn: a task that wants the key's volume runs, or is placed, on the
// container instance (one listing of the key's families, shared by the
// invocation); elsewhere names one that wants it on another instance.
// Without a known family or instance it says yes: the full pass reads what
// it needs.
func (p *pass) neededOn(ctx context.Context, ciARN string) (here bool, elsewhere string, err error) {
	fams := p.r.mem.familiesOf(p.key)
	if ciARN == "" || len(fams) == 0 {
		return true, "", nil
	}
	if _, _, taskScoped := parseTaskVolumeName(p.key.Volume); taskScoped {
		return false, "", nil // its one task stopped, or it would not be released
	}
	for _, f := range fams {
		arns, err := p.r.cloud.ListTaskARNs(ctx, p.key.Cluster, cloud.TaskQuery{Family: f})
		if err != nil {
			return false, "", err
		}
		ts, err := p.r.cloud.TaskHomes(ctx, p.key.Cluster, arns) // desired RUNNING, by the listing
		if err != nil {
			return false, "", err
		}
		// A task of a family the volume's tag names counts without its
		// definition's read: "here" only sends the pass on to the full
		// look, and "elsewhere" is a target its attach checks first
		// (targetOnly), so a revision that dropped the volume costs a
		// look, never a step.
		for _, t := range ts {
			switch {
			case t.ContainerInstanceARN == ciARN:
				return true, "", nil
			case elsewhere == "" && t.ContainerInstanceARN != "":
				elsewhere = t.ARN
			}
		}
	}
	return false, elsewhere, nil
}

// pollDetach looks at a detach this chain asked for, in EC2 alone: still
// going, the key comes back after detachPoll; done (or changed), the full
// pass takes the next step.
func (p *pass) pollDetach(ctx context.Context) (Result, bool, error) {
	h := p.hint
	if v, ok := p.detachedByEvent(h.Volume); ok {
		// EC2's detachVolume event of this invocation says it ended: no
		// look at DescribeVolumes (which may still lag behind the event).
		if h.Target == "" {
			return Result{}, false, nil // the full pass (continueFromEvent) serves whoever needs it
		}
		return p.attachForTarget(ctx, v)
	}
	v, err := p.r.cloud.VolumeByID(ctx, h.Volume)
	if err != nil {
		if errors.Is(err, cloud.ErrNotFound) {
			return Result{}, false, nil
		}
		return Result{}, false, err
	}
	if res, ok := p.movedOnSince(v); ok {
		return res, true, nil
	}
	for _, a := range v.Attachments {
		if a.InstanceID == h.Instance && a.State == cloud.AttachDetaching {
			p.r.mem.noteStillDetaching(h.Volume, p.now)
			since := fromMS(h.At)
			if p.now.Sub(since) >= p.r.t.DetachStuck {
				return Result{}, false, nil // the full pass decides whether the guest holds it up
			}
			return p.retry(p.detachPoll(since), h, "detaching %s from %s", h.Volume, h.Instance), true, nil
		}
	}
	if len(v.Attachments) > 0 || h.Target == "" || v.State != cloud.VolumeAvailable {
		return Result{}, false, nil
	}
	return p.attachForTarget(ctx, v)
}

// attachForTarget: the volume is detached; attach it where the task it was
// released for runs, if that task still wants it (one DescribeTasks);
// anything else, the full pass.
func (p *pass) attachForTarget(ctx context.Context, v cloud.Volume) (Result, bool, error) {
	w, ok, err := p.targetOnly(ctx, p.hint.Target)
	if err != nil || !ok {
		return Result{}, false, err
	}
	p.r.mem.createdFine(p.key)
	p.noteProgress(w, v)
	res, err := p.placeAvailable(ctx, w, v)
	return res, true, err
}

// detachedByEvent: an EBS detachVolume event of this invocation says the
// key's volume id was detached; the volume as this process knows it
// (identity, tags), available with no attachment. A stale event is
// harmless: EC2 refuses to attach a volume that is not available, and the
// pass then looks again.
func (p *pass) detachedByEvent(volumeID string) (cloud.Volume, bool) {
	p.inv.mu.Lock()
	ev, ok := p.inv.volumeEvents[p.key]
	p.inv.mu.Unlock()
	if !ok || ev.VolumeID != volumeID || ev.Event != "detachVolume" || ev.Result != "detached" {
		return cloud.Volume{}, false
	}
	v, known := p.r.cloud.KnownVolume(volumeID)
	if !known || !p.tagsNameKey(v) {
		return cloud.Volume{}, false
	}
	p.observedEvent(v, ev)
	v.State, v.Attachments = cloud.VolumeAvailable, nil
	return v, true
}

// targetOnly: the desired state as one named task shows it, when that task
// still wants the key's volume on an instance ECS knows.
func (p *pass) targetOnly(ctx context.Context, arn string) (want, bool, error) {
	ts, err := p.r.cloud.Tasks(ctx, p.key.Cluster, []string{arn})
	if err != nil || len(ts) != 1 {
		return want{}, false, err
	}
	t := ts[0]
	if t.DesiredStatus != "RUNNING" || t.LastStatus == "STOPPED" || t.ContainerInstanceARN == "" {
		return want{}, false, nil
	}
	spec, uses, err := p.uses(ctx, t)
	if err != nil || !uses {
		return want{}, false, err
	}
	ci, err := p.r.cloud.ContainerInstanceHome(ctx, p.key.Cluster, t.ContainerInstanceARN)
	if err != nil || ci.EC2InstanceID == "" {
		return want{}, false, nil
	}
	w := want{users: []cloud.Task{t}, ciByARN: map[string]cloud.ContainerInstance{ci.ARN: ci},
		needers: []need{{task: t, spec: spec, ci: ci}}, families: p.r.mem.familiesOf(p.key)}
	return w, true, nil
}

// mountRacing: an unmount succeeded, but a mount for the attachment may
// still run, or have run after it (SSM does not order commands), and
// mounted the filesystem again. The agent's generations say which: a mount
// result of a later generation than the unmount released means unmount
// again; a mount still running means wait. Execution times (the instance's
// clock) are used only for results without a generation (an older agent).
func (p *pass) mountRacing(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, ci cloud.ContainerInstance, unmount cloud.Command, u agentproto.UnmountResult, parsed bool) (bool, Result, error) {
	if parsed {
		if g := p.r.mem.generationsOf(v.ID + "/" + token(a)); g.mounted > u.Generation {
			p.log.Info("mounted again after the unmount (generation); unmounting again", "volumeId", v.ID, "instance", a.InstanceID, "released", u.Generation, "mounted", g.mounted)
			res, err := p.sendUnmount(ctx, w, v, a, ci)
			return true, res, err
		}
	}
	mounts, err := p.commandsFor(ctx, p.r.mountDoc, v.ID, a)
	if err != nil {
		return false, Result{}, err
	}
	for _, m := range mounts {
		if m.Status == cloud.CommandPending {
			p.log.Info("a mount command still runs where the volume is being released; waiting for it", "volumeId", v.ID, "instance", a.InstanceID, "command", m.ID)
			return true, p.retry(p.r.t.CommandEventWait, hint{}, "mount %s on %s still running", m.ID, a.InstanceID), nil
		}
		if m.Status != cloud.CommandSucceeded || unmount.Requested.Sub(m.Requested) > mountRaceWindow {
			continue
		}
		d, err := p.r.cloud.Command(ctx, m.ID, a.InstanceID, agentproto.StepMount)
		if errors.Is(err, cloud.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, Result{}, err
		}
		later := false
		if mr, ok := parseResult(d).out.Mount(); ok && parsed && mr.Generation > 0 {
			p.r.mem.noteMounted(v.ID+"/"+token(a), mr.Generation)
			later = mr.Generation > u.Generation
		} else {
			later = m.Requested.After(unmount.Requested) || d.Ended.IsZero() || !d.Ended.Before(unmount.Requested)
		}
		if later {
			p.log.Info("a mount ran after the unmount; unmounting again", "volumeId", v.ID, "instance", a.InstanceID, "command", m.ID)
			res, err := p.sendUnmount(ctx, w, v, a, ci)
			return true, res, err
		}
	}
	return false, Result{}, nil
}

// mountRaceWindow: a mount command requested this long before an unmount
// cannot have run after it (the 60 s delivery timeout tether gives SSM
// commands plus the mount document's 180 s execution timeout, rounded up).
const mountRaceWindow = 5 * time.Minute

// ssmWhy says in a few words why SSM refused a command.
func ssmWhy(err error) string {
	if errors.Is(err, cloud.ErrUnreachable) {
		return "InvalidInstanceId: its SSM agent is not running or not registered"
	}
	return err.Error()
}

// attachedTo: EC2 shows v attached (not attaching, not leaving) to inst.
func attachedTo(v cloud.Volume, inst string) bool {
	for _, a := range v.Attachments {
		if a.InstanceID == inst && a.State == cloud.AttachAttached {
			return true
		}
	}
	return false
}

// tagsNameKey: v's tags say it is the volume of this pass's key.
func (p *pass) tagsNameKey(v cloud.Volume) bool {
	return v.Tags[cloud.TagCluster] == p.key.Cluster && v.Tags[cloud.TagVolume] == p.key.Volume
}
