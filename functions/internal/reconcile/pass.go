package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/internal/volspec"
)

// pass is one Reconcile of one key.
type pass struct {
	r     *Reconciler
	key   Key
	inv   *invocation
	hint  hint
	now   time.Time
	log   *slog.Logger
	stats *cloud.Stats
	// op: an operator's release, from a Release of this invocation or the
	// chain's hint (zero: none).
	op operatorAsk
	// leans: the pass ended counting on another chain's retry or on an
	// event still to come, so it supersedes no retry (see superseded).
	leans bool
	// rep: the assignment of a replica key's name, read once per pass (replicas.go).
	rep *replicaView
	// due: the step this pass decided and AWS's rate limit refused; a
	// throttled pass hands it back as its hint (see stepUnmountDue).
	due *hint
}

// Reconcile looks at one key and takes the next safe step. Result.Done: the
// key has converged (or can only be woken by a new event). RetryAfter: look
// again later (Hint carries what this pass knew). An error means the pass
// could not decide (AWS failed after the SDK's retries): the caller must
// redeliver the key; throttling is not an error but a RetryAfter.
func (r *Reconciler) Reconcile(ctx context.Context, key Key) (Result, error) {
	inv := invocationFrom(ctx)
	if inv == nil {
		ctx = r.Invocation(ctx)
		inv = invocationFrom(ctx)
	}
	p := &pass{r: r, key: key, inv: inv, now: r.now(), stats: cloud.NewStats()}
	ctx = cloud.WithStats(ctx, p.stats)
	inv.mu.Lock()
	h, ok := inv.hints[key]
	events := append([]string(nil), inv.events[key]...)
	inv.mu.Unlock()
	if !ok {
		h = r.mem.takeHint(key)
	}
	p.hint = h
	p.log = r.log.With("cluster", key.Cluster, "volume", key.Volume, "events", events)
	if h.Step != "" {
		p.log = p.log.With("after", h.Step) // the step whose chain this pass goes on with
	}
	if op := parseOperator(h.Operator, h.Force); p.now.Sub(op.at) < r.t.OperatorWindow {
		p.op = op
	}
	if rel, ok := p.operatorRelease(); ok {
		p.op = operatorAsk{instance: cmp.Or(rel.Instance, "*"), at: p.now, force: rel.Force}
	}

	res, err := p.run(ctx)
	switch {
	case errors.Is(err, cloud.ErrThrottled):
		p.log.Warn("AWS throttled this pass; handing the key back", "error", err)
		h, wait := p.hint, r.t.ThrottleWait
		if p.due != nil {
			// The retry takes the step this pass decided, which costs a
			// look at the volume. A mount comes back soonest: it ends a
			// handoff, and SSM's one SendCommand bucket serves unmounts
			// (which start handoffs) and mounts alike, so the mounts that
			// retry more often get more of it.
			h = *p.due
			if h.Step == stepMountDue {
				// Each refusal doubles the wait, up to ThrottleWait: while the
				// bucket stays empty, the waiting mounts' retries would only
				// read AWS again (the refill goes to one of them either way).
				if p.hint.Step == stepMountDue {
					h.Refused = p.hint.Refused + 1
				}
				wait = min(r.t.ThrottleWait/4<<min(h.Refused, 2), r.t.ThrottleWait)
			}
		}
		res, err = Result{RetryAfter: spread(key, p.now, wait), Reason: "throttled by AWS", Hint: h.String()}, nil
	case errors.Is(err, errStale):
		p.log.Warn("pass too old to act on what it read; handing the key back to look again", "error", err)
		res, err = Result{RetryAfter: time.Second, Reason: err.Error(), Hint: p.hint.String()}, nil
	}
	if res.RetryAfter > r.t.MaxRetryAfter {
		res.RetryAfter = r.t.MaxRetryAfter
	}
	if err == nil && !res.Done() {
		h := parseHint(res.Hint)
		if p.op.instance != "" {
			h.Operator, h.Force = p.op.encode(), p.op.force // the operator's release goes on with the chain
		}
		r.mem.handedBack(key, p.now, h)
		h.Pass = ms(r.now()) // after every step it took: see superseded
		res.Hint = h.String()
	}
	if err == nil && !p.leans {
		r.mem.passEnded(key, p.now)
		r.mem.lookedInFull(key, p.now)
	}
	r.reconciled(inv, key, err == nil)
	p.finish(res, err)
	return res, err
}

func (p *pass) run(ctx context.Context) (Result, error) {
	if p.key.Cluster != p.r.cluster {
		p.log.Warn("key of a cluster this deployment does not serve: dropped")
		return done("not this deployment's cluster"), nil
	}
	if err := volspec.ValidateName(p.key.Volume); err != nil {
		p.log.Error("invalid key: dropped", "error", err)
		return done("invalid key"), nil
	}
	if res, ok := p.deferDrain(); ok {
		return res, nil
	}
	if res, ok := p.awaitCommand(); ok {
		return res, nil
	}
	if res, ok, err := p.drainLookDone(ctx); ok || err != nil {
		return res, err
	}
	if res, ok, err := p.continueStep(ctx); ok || err != nil {
		return res, err
	}
	if res, ok, err := p.movedOn(ctx); ok || err != nil {
		return res, err
	}
	if res, ok, err := p.detachInFlight(ctx); ok || err != nil {
		return res, err
	}
	if res, ok, err := p.unmountInFlight(ctx); ok || err != nil {
		return res, err
	}
	if res, ok, err := p.attachedForEventTask(ctx); ok || err != nil {
		return res, err
	}
	w, err := p.desired(ctx)
	if err != nil {
		return Result{}, err
	}
	if res, ok, err := p.fastPath(ctx, w); ok || err != nil {
		return res, err
	}
	if res, ok, err := p.continueFromEvent(ctx, w); ok || err != nil {
		return res, err
	}
	vols, err := p.r.cloud.VolumesByKey(ctx, p.key.Cluster, p.key.Volume)
	if err != nil {
		return Result{}, err
	}
	return p.converge(ctx, w, vols)
}

func done(reason string) Result { return Result{Reason: reason} }

// spread returns a wait between d/2 and 3d/2, different per key and pass:
// keys throttled together do not all come back together.
func spread(k Key, at time.Time, d time.Duration) time.Duration {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%s/%d", k.Cluster, k.Volume, at.UnixNano())
	return d/2 + time.Duration(h.Sum64()%uint64(d+1))
}

// errStale: a pass took so long (throttled calls, a slow invocation) that
// the state it decided on may have changed since; it takes no step.
var errStale = errors.New("decision too old")

// fresh guards every step that changes something (AWS writes, SSM
// commands, stopping tasks): a pass must not act on a decision older than
// Timing.StaleDecision. Two passes of one key may always run at once (in
// two functions); what keeps them from undoing each other is that each
// acts only on what it has just read, and that every step is safe to
// repeat or to follow by the other's.
func (p *pass) fresh(step string) error {
	if age := p.r.now().Sub(p.now); age > p.r.t.StaleDecision {
		return fmt.Errorf("%w: %s decided %s ago", errStale, step, age.Round(time.Millisecond))
	}
	return nil
}

func (p *pass) retry(d time.Duration, h hint, reason string, args ...any) Result {
	return Result{RetryAfter: d, Hint: h.String(), Reason: fmt.Sprintf(reason, args...)}
}

// fastPath decides from ECS alone when it can, without asking EC2:
// a task only reaches RUNNING once tether's plugin mounted its volume, so a
// started live task on instance A proves the volume is attached (and
// mounted) on A, and nothing can move it while that task lives.
func (p *pass) fastPath(ctx context.Context, w want) (Result, bool, error) {
	var holder *cloud.Task
	for i, t := range w.users {
		if !t.StartedAt.IsZero() || t.LastStatus == "RUNNING" {
			holder = &w.users[i]
			break
		}
	}
	if holder == nil {
		h, err := p.rememberedHolder(ctx, w)
		if err != nil || h == nil {
			return Result{}, false, err
		}
		holder = h
	}
	var here, elsewhere []need
	for _, n := range w.needers {
		if n.task.ContainerInstanceARN == holder.ContainerInstanceARN {
			here = append(here, n)
		} else {
			elsewhere = append(elsewhere, n)
		}
	}
	log := p.log.With("task", holder.ARN, "containerInstance", holder.ContainerInstanceARN)
	if len(elsewhere) == 0 {
		if len(here) > 0 {
			if res, ok, err := p.growServed(ctx, w, *holder); ok || err != nil {
				return res, true, err
			}
			p.startedWithVolume(w, *holder)
			log.Debug("served: a started task holds the volume where every task that needs it runs")
			return done("in use by started task " + holder.ARN), true, nil
		}
		if r, ok := p.drainOnlyHeld(log, *holder); ok {
			return r, true, nil
		}
		log.Info("waiting for the stopping task that holds the volume to stop")
		return p.retry(p.r.t.HolderWait, hint{}, "held by stopping task %s", holder.ARN), true, nil
	}
	if res, ok, err := p.fencedHolder(ctx, elsewhere, *holder); ok || err != nil {
		return res, true, err
	}
	if holder.DesiredStatus == "RUNNING" {
		res, err := p.conflict(ctx, elsewhere, *holder)
		return res, true, err
	}
	if r, ok := p.drainOnlyHeld(log, *holder); ok {
		return r, true, nil
	}
	log.Info("handoff waits for the holding task to stop", "waiting", elsewhere[0].task.ARN)
	return p.retry(p.r.t.HolderWait, hint{}, "handoff waits for %s to stop", holder.ARN), true, nil
}

// deferDrain: a pass that only a live draining instance's event asked for
// reads nothing yet. ECS is stopping the instance's tasks, and each one's
// STOPPED event names the volumes it holds; the drain's own look comes
// back after Timing.DrainDefer for the volumes no task holds (an idle
// attachment), and gives way to any pass of the key that ran meanwhile.
func (p *pass) deferDrain() (Result, bool) {
	if !p.inv.isDrainOnly(p.key) || p.hint != (hint{}) || p.op.instance != "" {
		return Result{}, false
	}
	p.leans = true // it read nothing: it supersedes no retry
	inst := p.inv.drainedInstance(p.key)
	if p.inv.releaseCarries(p.r.mem, p.key, inst) {
		return done("draining instance: the key's volume there is in its release (whose end carries the key on)"), true
	}
	// ECS sends an event each time the instance's task count changes:
	// one queued look per key and instance serves them all.
	if due, ok := p.r.mem.drainLookDue(p.key, inst, p.now); ok {
		return done("draining instance: this process's look at it is queued already, due at " + due.UTC().Format(time.RFC3339)), true
	}
	p.r.mem.drainLookQueued(p.key, inst, p.now.Add(p.r.t.DrainDefer))
	p.log.Debug("draining instance: its tasks' STOPPED events come first; looking later", "after", p.r.t.DrainDefer.String())
	return p.retry(p.r.t.DrainDefer, hint{Drain: true, Instance: inst}, "draining instance: looked at after its tasks' STOPPED events"), true
}

// drainLookDone: the drain's deferred look, alone in its invocation, ends
// on EC2's word that no volume of the key is on the draining instance any
// more: what the look was for (an idle attachment there) is gone, and
// whatever else the key needs, its tasks' events and the sweep ask for.
// Several processes each defer a look per drain event (ECS sends one each
// time the instance's task count changes), so this is most of a drain's
// looks; they read one batched DescribeVolumes and nothing of ECS.
func (p *pass) drainLookDone(ctx context.Context) (Result, bool, error) {
	if !p.hint.Drain || p.hint.Instance == "" || p.op.instance != "" || !p.inv.isRetryOnly(p.key) {
		return Result{}, false, nil
	}
	vols, err := p.r.cloud.VolumesByKey(ctx, p.key.Cluster, p.key.Volume)
	if err != nil {
		return Result{}, false, err
	}
	released := 0
	for _, v := range vols {
		for _, a := range v.Attachments {
			if a.InstanceID != p.hint.Instance {
				continue
			}
			ok, err := p.releaseUnderWay(ctx, v, a)
			if err != nil || !ok {
				return Result{}, false, err
			}
			released++
		}
	}
	p.leans = true // it looked at facts of the volume only: it supersedes no retry
	if released > 0 {
		p.log.Debug("draining instance's look: a release of the key's volume there is under way", "instance", p.hint.Instance)
		return done("release from draining instance " + p.hint.Instance + " under way (another chain's)"), true, nil
	}
	p.log.Debug("draining instance's look: no volume of the key is on it any more", "instance", p.hint.Instance)
	return done("no volume of the key on draining instance " + p.hint.Instance + " any more"), true, nil
}

// releaseUnderWay: the drain's look finds the volume still on the draining
// instance, and another chain is releasing it there: EC2 says the detach
// runs, or an unmount of the volume was sent there since the drain began
// (a STOPPED event's chain; its retries, and the sweep, carry it on). The
// look was for an idle attachment; a full pass would only read ECS to
// learn what that chain knows. The drain began at most Timing.DrainDefer
// before the look was queued (hint.Pass).
func (p *pass) releaseUnderWay(ctx context.Context, v cloud.Volume, a cloud.Attachment) (bool, error) {
	if a.State == cloud.AttachDetaching {
		return true, nil
	}
	since := fromMS(p.hint.Pass).Add(-p.r.t.DrainDefer)
	unmounts, err := p.inv.commandsOn(ctx, p.r.cloud, p.r.unmountDoc, a.InstanceID, since)
	if err != nil {
		return false, err
	}
	for _, c := range unmounts {
		if c, ok := c.ForVolume(v.ID); ok && !c.Requested.Before(since) &&
			(c.Params[agentproto.ParamAttachment] == "" || c.Params[agentproto.ParamAttachment] == token(a)) {
			return true, nil
		}
	}
	return false, nil
}

// awaitCommand: a pass that only ECS task events asked for, while an SSM
// command this process sent for the key runs, reads nothing: the command's
// end wakes the key (its chain's retry, should SSM's event be lost), and
// that pass then looks in full (hint.Full), so nothing a task event told is
// lost. Whatever the task events say (a task placed elsewhere, one
// stopped), no step may come before the command's end anyway: the
// volume's next move depends on it.
func (p *pass) awaitCommand() (Result, bool) {
	if p.hint != (hint{}) || p.op.instance != "" || !p.inv.isTaskOnly(p.key) {
		return Result{}, false
	}
	c, ok := p.r.mem.awaitRunning(p.key, p.now.Add(-p.r.t.CommandEventWait), p.now)
	if !ok {
		return Result{}, false
	}
	p.leans = true
	p.log.Debug("command of this process running for the key; its end looks in full", "command", c.id, "step", c.step)
	return done(fmt.Sprintf("%s %s running (this process's); its end is looked at in full", c.step, c.id)), true
}

// drainOnlyHeld: a pass that only a live draining instance's event asked
// for, finding a stopping task there still holding the volume, ends: the
// task's STOPPED event names the key again (the sweep, should that event
// be lost), so coming back on its own would only cost AWS calls.
func (p *pass) drainOnlyHeld(log *slog.Logger, holder cloud.Task) (Result, bool) {
	if !p.inv.isDrainOnly(p.key) && !p.hint.Drain {
		return Result{}, false
	}
	log.Info("draining instance: a stopping task there still holds the volume; its STOPPED event will move it on")
	p.leans = true
	return done("held by stopping task " + holder.ARN + " on a draining instance"), true
}

// rememberedHolder looks for a started, stopping task that uses the
// volume on the instance this process last attached it to. Memory only
// says where to look; the conclusion comes from ECS, as in fastPath.
func (p *pass) rememberedHolder(ctx context.Context, w want) (*cloud.Task, error) {
	if id, known := p.r.mem.knownVolumeOf(p.key); known {
		a, ok := p.r.mem.attachmentOf(id)
		if !ok || a.State == cloud.AttachDetached {
			return nil, nil
		}
		ci, known, err := p.containerInstanceOf(ctx, w, a.InstanceID)
		if err != nil || !known {
			return nil, err
		}
		users, err := p.usersOn(ctx, w, ci)
		if err != nil {
			return nil, err
		}
		for i, t := range users {
			if !t.StartedAt.IsZero() || t.LastStatus == "RUNNING" {
				return &users[i], nil
			}
		}
	}
	return nil, nil
}

// conflict: a shared volume is held by a running task on one instance while
// tasks on other instances want it. They wait; past the deadline they fail
// with a message that says why (never the running holder).
func (p *pass) conflict(ctx context.Context, waiting []need, holder cloud.Task) (Result, error) {
	if res, ok, err := p.deploymentDeadlock(ctx, waiting, holder); ok || err != nil {
		return res, err
	}
	var late []cloud.Task
	for _, n := range waiting {
		if p.now.Sub(n.task.CreatedAt) >= p.r.t.ConflictDeadline {
			late = append(late, n.task)
		}
	}
	if len(late) > 0 {
		reason := fmt.Sprintf("shared volume %s is in use by running task %s on another instance; a tether volume serves one instance at a time (place tasks that share it on one instance, or deploy with minimumHealthyPercent 0)", p.key.Volume, taskID(holder.ARN))
		if err := p.failTasks(ctx, late, reasonHeld, reason); err != nil {
			return Result{}, err
		}
		if len(late) == len(waiting) {
			return done("waiting tasks failed: volume held by " + holder.ARN), nil
		}
	}
	p.log.Info("volume held by a running task on another instance; waiting", "task", holder.ARN, "waiting", waiting[0].task.ARN)
	return p.retry(p.r.t.ConflictWait, hint{}, "held by running task %s", holder.ARN), nil
}

// deploymentDeadlock: a waiting task's service deploys with ECS's defaults
// (minimumHealthyPercent 100, maximumPercent 200): the scheduler keeps the
// running holder until the new task is healthy, and the new task cannot
// start without the volume the holder has. Only looked at here, on the
// conflict path (one DescribeServices per service and invocation).
func (p *pass) deploymentDeadlock(ctx context.Context, waiting []need, holder cloud.Task) (Result, bool, error) {
	var stuck []cloud.Task
	var svc cloud.Service
	for _, n := range waiting {
		name := n.task.Service()
		if name == "" {
			continue
		}
		s, err := p.r.cloud.Service(ctx, p.key.Cluster, name)
		if errors.Is(err, cloud.ErrNotFound) {
			continue
		}
		if err != nil {
			return Result{}, false, err
		}
		if s.KeepsOldTaskDuringDeploy() {
			stuck, svc = append(stuck, n.task), s
		}
	}
	if len(stuck) == 0 {
		return Result{}, false, nil
	}
	reason := fmt.Sprintf("service %s: deploy with minimumHealthyPercent 0 and maximumPercent 100; with %d/%d ECS keeps task %s, which holds volume %s, until this one runs, and a tether volume serves one instance at a time",
		svc.Name, svc.MinimumHealthyPercent, svc.MaximumPercent, taskID(holder.ARN), p.key.Volume)
	p.log.Error("deployment settings cannot hand the volume over", "service", svc.Name, "minimumHealthyPercent", svc.MinimumHealthyPercent, "maximumPercent", svc.MaximumPercent)
	if err := p.failTasks(ctx, stuck, reasonDeploy, reason); err != nil {
		return Result{}, false, err
	}
	if len(stuck) == len(waiting) {
		return done("waiting tasks stopped: " + reasonDeploy), true, nil
	}
	return Result{}, false, nil
}

// target picks the instance to serve: the one the volume is attached to if
// a task there needs it, else the oldest needing task's.
func (p *pass) target(w want, v *cloud.Volume) (need, bool) {
	if len(w.needers) == 0 {
		return need{}, false
	}
	if v != nil {
		for _, a := range v.Attachments {
			for _, n := range w.needers {
				if n.instance() == a.InstanceID {
					return n, true
				}
			}
		}
	}
	return w.needers[0], true
}

// converge compares desired and actual state and takes one step.
func (p *pass) converge(ctx context.Context, w want, vols []cloud.Volume) (Result, error) {
	var live []cloud.Volume
	var dying *cloud.Volume
	for i, v := range vols {
		switch v.State {
		case cloud.VolumeDeleted:
		case cloud.VolumeDeleting:
			dying = &vols[i]
		default:
			live = append(live, v)
		}
	}
	live, err := p.settleMoves(ctx, live)
	if err != nil {
		return Result{}, err
	}
	if len(live) == 0 {
		if _, _, taskScoped := parseTaskVolumeName(p.key.Volume); taskScoped && w.taskGone() {
			return done("task stopped; no volume left"), nil
		}
		if len(w.needers) == 0 {
			return done("nothing needs the volume"), nil
		}
		return p.create(ctx, w, dying)
	}
	v := p.primary(live)
	log := p.log.With("volumeId", v.ID)
	switch v.State {
	case cloud.VolumeCreating:
		return p.waitCreating(ctx, w, v)
	case cloud.VolumeError:
		log.Error("EC2 reports the volume in state error")
		if err := p.failNeeders(ctx, w.needers, reasonVolumeError, fmt.Sprintf("EBS volume %s of %s is in state error", v.ID, p.key.Volume)); err != nil {
			return Result{}, err
		}
		return done("volume in state error"), nil
	}
	p.r.mem.createdFine(p.key)
	p.noteProgress(w, v)
	for _, a := range v.Attachments {
		p.r.mem.noteAttachment(p.key, v.ID, a)
	}
	if v.MultiAttach {
		log.Error("the key's volume has Multi-Attach enabled: tether leaves it alone")
		if err := p.failNeeders(ctx, w.needers, reasonMultiAttach, fmt.Sprintf("volume %s (%s) has EBS Multi-Attach enabled; tether serves single-attach volumes only", p.key.Volume, v.ID)); err != nil {
			return Result{}, err
		}
		return done("multi-attach volume refused"), nil
	}
	if len(v.Attachments) == 0 {
		return p.placeAvailable(ctx, w, v)
	}
	t, hasTarget := p.target(w, &v)
	atts := append([]cloud.Attachment(nil), v.Attachments...)
	if len(atts) > 1 {
		log.Error("volume attached to several instances", "attachments", len(atts))
	}
	// Release attachments nobody there needs before serving the target.
	sort.SliceStable(atts, func(i, j int) bool { return !hasTarget || atts[j].InstanceID == t.instance() })
	a := atts[0]
	if hasTarget && a.InstanceID == t.instance() {
		return p.serveAttached(ctx, w, v, a, t)
	}
	return p.release(ctx, w, v, a)
}

// primary chooses among several volumes with the key's tags (which only a
// bug or a person makes): the attached one, else the oldest. The others are
// left alone and reported.
func (p *pass) primary(vols []cloud.Volume) cloud.Volume {
	sort.SliceStable(vols, func(i, j int) bool {
		ai, aj := len(vols[i].Attachments) > 0, len(vols[j].Attachments) > 0
		if ai != aj {
			return ai
		}
		if !vols[i].CreateTime.Equal(vols[j].CreateTime) {
			return vols[i].CreateTime.Before(vols[j].CreateTime)
		}
		return vols[i].ID < vols[j].ID
	})
	if len(vols) > 1 {
		p.log.Error("several EBS volumes carry this key's tags; using one, leaving the others alone", "volumeId", vols[0].ID, "others", ids(vols[1:]))
	}
	return vols[0]
}

func ids(vols []cloud.Volume) []string {
	out := make([]string, len(vols))
	for i, v := range vols {
		out[i] = v.ID
	}
	return out
}

// movedOnSince: a retry of a chain whose last step (an unmount, a detach
// or a mount of hint.Volume) EC2 has since overtaken: the volume was
// attached again after that step, or (an unmount's) it is no longer
// attached where it was unmounted, so another pass moved the key on and
// its own chain carries it. The retry ends on that one fact, read with
// the volume it reads anyway, before any ECS read. In another process the
// memory-based supersession (Reconciler.superseded) cannot see the newer
// chain; EC2 can. A chain that counts something, one a task event was
// left to (Full), an operator's ask, or a pass that an event also asked
// for, goes on as before.
func (p *pass) movedOnSince(v cloud.Volume) (Result, bool) {
	h := p.hint
	switch {
	case !overtakable(h.Step):
		return Result{}, false
	case h.At == 0 || v.ID != h.Volume || h.counts() || h.Full || p.op.instance != "" || !p.inv.isRetryOnly(p.key):
		// (Full: a task event was left for this chain's look.)
		return Result{}, false
	}
	if (h.Step == stepUnmount || h.Step == stepHeld) && !attachedTo(v, h.Instance) {
		// The unmount (or the wait for a task there to stop) was for
		// the release from Instance, which another pass has since asked
		// for (its chain polls the detach) or seen done.
		p.leans = true
		p.log.Debug("retry of a release another pass has taken on", "step", h.Step, "volumeId", v.ID, "instance", h.Instance)
		return done(fmt.Sprintf("superseded: %s no longer attached to %s, after this chain's %s", v.ID, h.Instance, h.Step)), true
	}
	if a, ok := attachedAfter(v, fromMS(h.At)); ok {
		p.leans = true // one fact: it supersedes no retry itself
		p.log.Debug("retry of a step EC2 has since overtaken: the volume was attached again after it",
			"step", h.Step, "volumeId", v.ID, "instance", a.InstanceID, "attachedAt", a.AttachTime)
		return done(fmt.Sprintf("superseded: %s attached to %s after this chain's %s", v.ID, a.InstanceID, h.Step)), true
	}
	return Result{}, false
}

// overtakable: the steps whose retries movedOnSince may end.
func overtakable(step string) bool {
	return step == stepUnmount || step == stepDetach || step == stepMount || step == stepHeld
}

// attachedAfter: an attachment of v (attaching or attached) that EC2 made
// after t.
func attachedAfter(v cloud.Volume, t time.Time) (cloud.Attachment, bool) {
	for _, a := range v.Attachments {
		if (a.State == cloud.AttachAttaching || a.State == cloud.AttachAttached) && a.AttachTime.After(t) {
			return a, true
		}
	}
	return cloud.Attachment{}, false
}

// settledVolume: the key's one volume, with no AZ move under way or
// behind it; ok false for anything else (the full pass weighs it).
func (p *pass) settledVolume(ctx context.Context) (cloud.Volume, bool, error) {
	vols, err := p.r.cloud.VolumesByKey(ctx, p.key.Cluster, p.key.Volume)
	if err != nil || len(vols) != 1 || vols[0].Tags[cloud.TagMoving] != "" || vols[0].Tags[cloud.TagMovedTo] != "" {
		return cloud.Volume{}, false, err
	}
	return vols[0], true, nil
}

// movedOn is movedOnSince for a retry that its step could not finish
// alone: the volume's read (which the full pass makes anyway) decides. A
// retry that names no step (a wait: for a task to stop, a conflict to
// end) gives way once the key's one volume was attached after the pass
// that scheduled it ended: the handoff it waited for has happened, and
// the pass that attached the volume carries the key on.
func (p *pass) movedOn(ctx context.Context) (Result, bool, error) {
	h := p.hint
	if h.Step == "" && h.Pass != 0 && !h.Drain && !h.counts() && !h.Full && p.op.instance == "" && p.inv.isRetryOnly(p.key) {
		return p.attachedSincePass(ctx)
	}
	if h.Volume == "" || !overtakable(h.Step) || !p.inv.isRetryOnly(p.key) {
		return Result{}, false, nil
	}
	v, err := p.r.cloud.VolumeByID(ctx, h.Volume)
	if errors.Is(err, cloud.ErrNotFound) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	res, ok := p.movedOnSince(v)
	return res, ok, nil
}

// detachInFlight: a pass that only task events asked for, finding the
// key's one volume detaching from a host ECS still serves, ends there as
// the full pass would (release, detaching), without its reads of the
// key's tasks. On such a host only tether detaches, and the pass that
// asked has a chain that goes on from the detach's end: to its target,
// or to the full look, which weighs these events' tasks then. A busy
// detach, a host ECS no longer serves, a move under way and anything else
// go to the full pass.
func (p *pass) detachInFlight(ctx context.Context) (Result, bool, error) {
	v, ok, err := p.eventOnlyVolume(ctx, cloud.AttachDetaching)
	if err != nil || !ok {
		return Result{}, false, err
	}
	if _, ok, err := p.servedHost(ctx, v); err != nil || !ok {
		return Result{}, false, err
	}
	r, ok := p.observed("detach of %s from %s", v.ID, v.Attachments[0].InstanceID)
	return r, ok, nil
}

// eventOnlyVolume is where the early ends of a pass that only task events
// asked for begin: the key's one volume (no move under way), in use, with
// one attachment, in state. Anything else (ok false) goes to the full pass.
func (p *pass) eventOnlyVolume(ctx context.Context, state string) (cloud.Volume, bool, error) {
	if p.hint != (hint{}) || p.op.instance != "" || !p.inv.isTaskOnly(p.key) {
		return cloud.Volume{}, false, nil
	}
	v, ok, err := p.settledVolume(ctx)
	if err != nil || !ok || v.State != cloud.VolumeInUse || len(v.Attachments) != 1 || v.Attachments[0].State != state {
		return cloud.Volume{}, false, err
	}
	return v, true, nil
}

// servedHost: the container instance of v's one attachment, when ECS still
// serves it (its agent connected); ok false otherwise.
func (p *pass) servedHost(ctx context.Context, v cloud.Volume) (cloud.ContainerInstance, bool, error) {
	ci, known, err := p.containerInstanceOf(ctx, want{}, v.Attachments[0].InstanceID)
	if err != nil || !known {
		return cloud.ContainerInstance{}, false, err
	}
	if ci.Status == "" { // the process knew the registration only: read its state
		if ci, err = p.containerInstance(ctx, ci.ARN); err != nil {
			return cloud.ContainerInstance{}, false, err
		}
	}
	if ci.Gone() || !ci.AgentConnected {
		return cloud.ContainerInstance{}, false, nil
	}
	return ci, true, nil
}

// unmountInFlight: a pass that only task events asked for (a STOPPED
// event of a task on a draining host, typically), finding the key's one
// volume attached with an unmount of that attachment running there, ends
// as the full pass would (the unmount in flight), without its reads of the
// key's tasks: that unmount's end carries the key on. So does a drain's
// release that has just released the attachment: its end (SSM's event, in
// another process as often as not) detaches the volume without reading
// ECS, while this pass would read the key's tasks to take the same step.
// Another pass's unmount counts on a live draining host only. A task of
// these events meant to run on that instance, and anything else, go to
// the full pass.
//
// When these events' tasks have all stopped, the unmount is looked up
// first (the full pass would look it up to release the volume anyway): a
// drain's release is sent only to a draining instance on which no task was
// meant to run, so the release itself is the fact, and the instance's
// state is not read. Otherwise (a new task's event) the instance's state
// comes first, as a handoff without a drain needs no unmount looked up.
func (p *pass) unmountInFlight(ctx context.Context) (Result, bool, error) {
	v, ok, err := p.eventOnlyVolume(ctx, cloud.AttachAttached)
	if err != nil || !ok {
		return Result{}, false, err
	}
	if p.eventTasksStopped() {
		return p.endOnUnmount(ctx, v, false)
	}
	ci, ok, err := p.servedHost(ctx, v)
	if err != nil || !ok || ci.Status != "DRAINING" || p.eventTaskMeantFor(ci.ARN) {
		return Result{}, false, err
	}
	return p.endOnUnmount(ctx, v, true)
}

// endOnUnmount: unmountInFlight's look at the last unmount of the volume's
// one attachment; onDraining: the instance is known to be a live draining
// one (any unmount running there counts, not only a release).
func (p *pass) endOnUnmount(ctx context.Context, v cloud.Volume, onDraining bool) (Result, bool, error) {
	a := v.Attachments[0]
	cmd, found, err := p.lastCommand(ctx, p.r.unmountDoc, stepUnmount, v.ID, a)
	if err != nil || !found {
		return Result{}, false, err
	}
	running := cmd.Status == cloud.CommandPending && p.now.Sub(cmd.Requested) < p.r.t.CommandEventWait
	release := cloud.IsReleaseComment(cmd.Comment)
	switch {
	case releasedAttachment(cmd, a):
		// The release released this attachment: its end's step (the
		// detach, without reading ECS) is taken by whichever of its passes
		// comes first, this one or the release's own end. Left to that end
		// alone, a mass drain's detaches waited for one invocation that SQS
		// had given several releases' events.
		held := p.hint
		p.hint = hint{Step: stepUnmount, Volume: v.ID, Instance: a.InstanceID, Command: cmd.ID, At: ms(cmd.Requested), Released: true}
		res, ok, err := p.continueStep(ctx)
		if !ok && err == nil {
			p.hint = held // the full pass weighs it, as without the release
		}
		return res, ok, err
	case running && (release || onDraining):
		r, ok := p.observed("unmount %s of %s on %s", cmd.ID, v.ID, a.InstanceID)
		return r, ok, nil
	case running:
		// Another pass's unmount: it counts on a live draining host only.
		ci, ok, err := p.servedHost(ctx, v)
		if err != nil || !ok || ci.Status != "DRAINING" {
			return Result{}, false, err
		}
		r, ok := p.observed("unmount %s of %s on %s", cmd.ID, v.ID, a.InstanceID)
		return r, ok, nil
	}
	return Result{}, false, nil
}

// eventTasksStopped: every task of the key that this invocation's events
// name is described, and desired STOPPED (none is meant to run anywhere).
func (p *pass) eventTasksStopped() bool {
	p.inv.mu.Lock()
	defer p.inv.mu.Unlock()
	named := false
	for arn, note := range p.inv.versions {
		if !note.keys[p.key] {
			continue
		}
		t, described := p.inv.tasks[arn]
		if !described || t.DesiredStatus != "STOPPED" {
			return false
		}
		named = true
	}
	return named
}

// releasedAttachment: cmd is a drain's release that succeeded, and its
// line for the volume released attachment a.
func releasedAttachment(cmd cloud.Command, a cloud.Attachment) bool {
	if cmd.Status != cloud.CommandSucceeded || !cloud.IsReleaseComment(cmd.Comment) {
		return false
	}
	out, _ := agentproto.ParseOutput(cmd.Output)
	u, ok := out.Unmount()
	return ok && u.Released && u.Attachment == token(a) && (!u.Reported() || u.Protocol == agentproto.Protocol)
}

// eventTaskMeantFor: a task of the key that this invocation's events name
// is meant to run on the container instance (desired RUNNING there).
func (p *pass) eventTaskMeantFor(ciARN string) bool {
	p.inv.mu.Lock()
	defer p.inv.mu.Unlock()
	for arn, t := range p.inv.tasks {
		if note := p.inv.versions[arn]; note != nil && note.keys[p.key] && t.ContainerInstanceARN == ciARN && t.DesiredStatus == "RUNNING" {
			return true
		}
	}
	for arn, note := range p.inv.versions {
		if _, described := p.inv.tasks[arn]; !described && note.keys[p.key] {
			return true // named without its state: the full pass reads it
		}
	}
	return false
}

// attachedForEventTask: a pass that only task events asked for, whose one
// task of the key waits to start (desired RUNNING, not yet running) on an
// instance, finding the key's one volume attached or attaching there
// since that task was created, ends as the full pass would (the mount in
// flight), without its reads of the key's tasks. The pass that attached
// it sent the mount with the attach; that command's end (its SSM event,
// its chain's retry, the sweep) carries the key on. It reads the volume
// and the task's container instance, which the process keeps.
func (p *pass) attachedForEventTask(ctx context.Context) (Result, bool, error) {
	if p.hint != (hint{}) || p.op.instance != "" || !p.inv.isTaskOnly(p.key) {
		return Result{}, false, nil
	}
	t, ok := p.waitingEventTask()
	if !ok {
		return Result{}, false, nil
	}
	v, ok, err := p.settledVolume(ctx)
	if err != nil || !ok || len(v.Attachments) != 1 {
		return Result{}, false, err
	}
	a := v.Attachments[0]
	if a.State != cloud.AttachAttached && a.State != cloud.AttachAttaching || a.AttachTime.Before(t.CreatedAt) {
		return Result{}, false, nil
	}
	ci, err := p.r.cloud.ContainerInstanceHome(ctx, p.key.Cluster, t.ContainerInstanceARN)
	if errors.Is(err, cloud.ErrNotFound) || err == nil && ci.EC2InstanceID != a.InstanceID {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	r, ok := p.observed("attach of %s to %s for task %s", v.ID, a.InstanceID, taskID(t.ARN))
	return r, ok, nil
}

// waitingEventTask: the one task of the key this invocation's events name,
// when it waits to start on a container instance; ok false when the events
// name no such task, or more than one task of the key.
func (p *pass) waitingEventTask() (cloud.Task, bool) {
	p.inv.mu.Lock()
	defer p.inv.mu.Unlock()
	var found cloud.Task
	n := 0
	for arn, t := range p.inv.tasks {
		if note := p.inv.versions[arn]; note == nil || !note.keys[p.key] {
			continue
		}
		n++
		found = t
	}
	ok := n == 1 && found.DesiredStatus == "RUNNING" && found.LastStatus != "RUNNING" && found.LastStatus != "STOPPED" &&
		found.ContainerInstanceARN != "" && !found.CreatedAt.IsZero()
	return found, ok
}

// attachedSincePass: the key's one volume (no move under way) was attached
// after the pass that scheduled this retry ended.
func (p *pass) attachedSincePass(ctx context.Context) (Result, bool, error) {
	v, ok, err := p.settledVolume(ctx)
	if err != nil || !ok {
		return Result{}, false, err
	}
	if a, ok := attachedAfter(v, fromMS(p.hint.Pass)); ok {
		p.leans = true
		p.log.Debug("retry of a wait the volume's attach has since ended", "volumeId", v.ID, "instance", a.InstanceID, "attachedAt", a.AttachTime)
		return done(fmt.Sprintf("superseded: %s attached to %s after the pass that scheduled this retry", v.ID, a.InstanceID)), true, nil
	}
	return Result{}, false, nil
}
