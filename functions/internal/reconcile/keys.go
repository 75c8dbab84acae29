package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/internal/volspec"
)

// Keys returns the keys a trigger names. It reads only what naming needs
// (a task definition, a volume's tags, the volumes of an instance). An error
// means the trigger could not be resolved now and must be retried; a
// trigger that concerns nothing of tether's gives no keys and no error.
func (r *Reconciler) Keys(ctx context.Context, t Trigger) ([]Key, error) {
	inv := invocationFrom(ctx)
	var keys []Key
	var err error
	switch t := t.(type) {
	case TaskChanged:
		keys, err = r.taskKeys(ctx, inv, t)
	case InstanceChanged:
		keys, err = r.instanceKeys(ctx, inv, t)
	case VolumeChanged:
		keys, err = r.volumeKeys(ctx, t)
	case CommandChanged:
		keys, err = r.commandKeys(ctx, inv, t)
	case SweepRequested:
		keys, err = r.sweepKeys(ctx, t)
	case HostChanged:
		keys, err = r.hostKeys(ctx, t)
	case Release:
		if t.Key.Cluster != r.cluster || volspec.ValidateName(t.Key.Volume) != nil {
			r.log.Warn("release of a key this deployment does not serve: dropped", "cluster", t.Key.Cluster, "volume", t.Key.Volume)
			return nil, nil
		}
		r.log.Warn("operator asks for a release", "cluster", t.Key.Cluster, "volume", t.Key.Volume, "instance", t.Instance, "force", t.Force, "reason", t.Reason, "operator", t.Operator)
		if inv != nil {
			inv.mu.Lock()
			inv.releases[t.Key] = t
			inv.mu.Unlock()
		}
		keys = []Key{t.Key}
	case Retry:
		if t.Key.Cluster != r.cluster || volspec.ValidateName(t.Key.Volume) != nil {
			r.log.Warn("retry for a key this deployment does not serve: dropped", "cluster", t.Key.Cluster, "volume", t.Key.Volume)
			return nil, nil
		}
		h := parseHint(t.Hint)
		if r.superseded(t.Key, h) {
			r.log.Debug("retry superseded by a later pass of the same key: dropped", "cluster", t.Key.Cluster, "volume", t.Key.Volume)
			return nil, nil
		}
		if t.Hint != "" {
			r.keepHint(inv, t.Key, h)
		}
		keys = []Key{t.Key}
	default:
		return nil, fmt.Errorf("reconcile: unknown trigger %T", t)
	}
	if err != nil {
		return nil, err
	}
	ic, isInstance := t.(InstanceChanged)
	drainOnly := isInstance && ic.Status == "DRAINING" && ic.AgentConnected
	o := byOther
	switch t.(type) {
	case TaskChanged:
		o = byTask
	case Retry:
		o = byRetry
	default:
		if drainOnly {
			o = byDrain
		}
	}
	for _, k := range keys {
		inv.note(ctx, k)
		inv.noteOrigin(k, o)
	}
	return keys, nil
}

func (r *Reconciler) taskKeys(ctx context.Context, inv *invocation, t TaskChanged) ([]Key, error) {
	log := r.log.With("cluster", t.Cluster, "task", t.TaskArn)
	if t.Cluster != r.cluster {
		log.Debug("task of another cluster: ignored")
		return nil, nil
	}
	// A strictly older version of a task's state than one already seen
	// names the same keys: skip the work (never a correctness decision).
	// The same version again, after a pass of each of its keys succeeded,
	// is a duplicate delivery. (Not after a failed pass: that redelivery
	// is the retry.)
	switch stale, dup := r.mem.seeVersion(t.TaskArn, t.Version); {
	case stale:
		log.Debug("stale task event: skipped", "version", t.Version)
		return nil, nil
	case dup:
		log.Debug("duplicate task event: skipped", "version", t.Version)
		return nil, nil
	}
	if t.DesiredStatus == "RUNNING" && t.LastStatus == "RUNNING" {
		// Started: tether's plugin let its containers start, so its
		// volumes are mounted where it runs. Nothing to do.
		log.Debug("task running: its volumes are in place")
		return nil, nil
	}
	if t.DesiredStatus == "STOPPED" && t.LastStatus != "STOPPED" {
		// Stopping: its containers may still use the volumes, so nothing
		// can be released yet; its STOPPED event (or the sweep, should
		// that be lost) starts the release. A pass now would only read
		// EC2 to learn that.
		log.Debug("task stopping: its STOPPED event will release its volumes", "lastStatus", t.LastStatus)
		return nil, nil
	}

	tdARN := t.TaskDefinitionArn
	if tdARN == "" {
		ts, err := r.cloud.Tasks(ctx, t.Cluster, []string{t.TaskArn})
		if err != nil {
			return nil, err
		}
		if len(ts) == 0 {
			log.Info("task unknown to ECS and event names no task definition: ignored")
			return nil, nil
		}
		tdARN = ts[0].TaskDefinitionARN
	}
	td, err := r.cloud.TaskDefinition(ctx, tdARN)
	if errors.Is(err, cloud.ErrNotFound) {
		log.Warn("task definition not found: ignored", "taskDefinition", tdARN, "error", err)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	keys, refused := keysOf(t.Cluster, t.TaskArn, td)
	rkeys, rrefused, err := r.replicaKeys(ctx, t.Cluster, cloud.Task{ARN: t.TaskArn, TaskDefinitionARN: tdARN}, td, nil)
	if err != nil {
		return nil, err
	}
	keys, refused = append(keys, rkeys...), append(refused, rrefused...)
	if len(refused) > 0 && t.DesiredStatus == "RUNNING" && t.LastStatus != "RUNNING" && t.LastStatus != "STOPPED" {
		reason := cloud.TruncateReason("tether: " + refused[0])
		log.Error("task names a volume tether refuses; stopping the task", "reason", reason)
		if err := r.cloud.StopTask(ctx, t.Cluster, t.TaskArn, reason); err != nil {
			return nil, err
		}
		r.stoppedMetric(t.Cluster, reasonInvalidVolume, map[string]any{"task": t.TaskArn, "reason": reason})
	}
	for _, k := range keys {
		r.mem.noteFamilies(k, cloud.FamilyOf(tdARN))
	}
	if len(keys) > 0 && inv != nil {
		inv.mu.Lock()
		if !t.CreatedAt.IsZero() {
			inv.seen(cloud.Task{ARN: t.TaskArn, TaskDefinitionARN: tdARN, ContainerInstanceARN: t.ContainerInstanceArn, AZ: t.AZ,
				LastStatus: t.LastStatus, DesiredStatus: t.DesiredStatus, CreatedAt: t.CreatedAt, StartedAt: t.StartedAt,
				StoppedAt: t.StoppedAt, Version: t.Version, Group: t.Group})
		} else {
			inv.named[t.TaskArn] = true
		}
		n := inv.versions[t.TaskArn]
		if n == nil || t.Version > n.version {
			n = &taskNote{version: t.Version, keys: map[Key]bool{}, pending: map[Key]bool{}}
			inv.versions[t.TaskArn] = n
		}
		for _, k := range keys {
			n.keys[k], n.pending[k] = true, true
		}
		inv.mu.Unlock()
	}
	return keys, nil
}

func (r *Reconciler) instanceKeys(ctx context.Context, inv *invocation, t InstanceChanged) ([]Key, error) {
	if t.Cluster != r.cluster {
		return nil, nil
	}
	// A live instance's events say nothing about its volumes. A draining
	// one's do: every volume on it that no live task needs is released
	// (its tasks' STOPPED events release theirs too; the passes coincide
	// on one key). An instance whose agent or self is gone may never send
	// its tasks' STOPPED events, so its volumes are looked at as well.
	if (t.Status == "ACTIVE" || t.Status == "REGISTERING") && t.AgentConnected {
		return nil, nil
	}
	id := t.EC2InstanceID
	if t.Status == "DRAINING" && t.AgentConnected && id != "" && r.mem.laterInWholeRelease(id, t, r.now(), r.t.DrainDefer) {
		r.log.Debug("draining instance: this process's release carries its volumes; a later event of the drain adds nothing",
			"instance", id, "containerInstance", t.ContainerInstanceArn, "version", t.Version)
		return nil, nil
	}
	if id == "" {
		ci, err := r.cloud.ContainerInstance(ctx, t.Cluster, t.ContainerInstanceArn)
		if errors.Is(err, cloud.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		id = ci.EC2InstanceID
	}
	vols, err := r.cloud.InstanceVolumes(ctx, t.Cluster, id)
	if err != nil {
		return nil, err
	}
	keys := r.keysFromVolumes(t.Cluster, vols)
	if t.Status == "DRAINING" && t.AgentConnected {
		for _, k := range keys {
			inv.noteDrained(k, id)
		}
		inv.noteDrainedInstance(t, id, vols)
	}
	return keys, nil
}

func (r *Reconciler) volumeKeys(ctx context.Context, t VolumeChanged) ([]Key, error) {
	if volspec.ValidateVolumeID(t.VolumeID) != nil {
		r.log.Warn("volume event with an invalid volume id: ignored", "volumeId", t.VolumeID)
		return nil, nil
	}
	if v, ok := r.cloud.KnownVolume(t.VolumeID); ok {
		keys := r.keysFromVolumes(r.cluster, []cloud.Volume{v})
		r.noteVolumeEvent(invocationFrom(ctx), keys, t)
		return keys, nil
	}
	v, err := r.cloud.VolumeByID(ctx, t.VolumeID)
	if errors.Is(err, cloud.ErrNotFound) {
		// Deleted (or never created): a pass that waits for it has its own retry.
		r.log.Debug("volume event for a volume EC2 no longer knows", "volumeId", t.VolumeID, "event", t.Event, "result", t.Result, "cause", t.Cause)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if t.Result == "failed" {
		r.log.Warn("EBS reports a failed volume operation", "volumeId", t.VolumeID, "event", t.Event, "cause", t.Cause)
	}
	keys := r.keysFromVolumes(r.cluster, []cloud.Volume{v})
	r.noteVolumeEvent(invocationFrom(ctx), keys, t)
	return keys, nil
}

// finishedStatus: the statuses with which an SSM command invocation ends.
var finishedStatus = map[string]bool{"Success": true, "Failed": true, "TimedOut": true, "Cancelled": true}

// commandKeys names the key one of tether's SSM commands works for, when
// the command has finished (the news that moves the key on: an unmount's
// end allows the detach, a mount's end completes the handoff). This
// process remembers the commands it sent, with the hint of the pass that
// sent it, so the woken pass goes on from there; otherwise one
// GetCommandInvocation (which the woken pass would make anyway: the session
// keeps it) gives the command's comment, which names the volume.
func (r *Reconciler) commandKeys(ctx context.Context, inv *invocation, t CommandChanged) ([]Key, error) {
	log := r.log.With("command", t.CommandID, "instance", t.InstanceID, "document", t.Document, "status", t.Status)
	step := ""
	switch t.Document {
	case r.mountDoc:
		step = stepMount
	case r.unmountDoc:
		step = stepUnmount
	default:
		log.Debug("SSM event of a document that is not tether's mount or unmount: ignored")
		return nil, nil
	}
	if !finishedStatus[t.Status] {
		log.Debug("SSM command still running: nothing to do yet")
		return nil, nil
	}
	if sent := r.mem.sentCommandOf(t.CommandID); len(sent) > 0 {
		var keys []Key
		for _, s := range sent {
			h := s.hint
			if r.mem.commandEnded(s.key, t.CommandID) {
				// A pass ended unread while it ran: its news may matter
				// (a task stopped, another placed), so the full pass looks.
				h.Full = true
			}
			r.keepHint(inv, s.key, h)
			keys = append(keys, s.key)
		}
		return keys, nil
	}
	c, err := r.cloud.Command(ctx, t.CommandID, t.InstanceID, pluginOf(step))
	if errors.Is(err, cloud.ErrNotFound) {
		log.Debug("SSM event of a command SSM does not know: ignored")
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if step == stepUnmount && cloud.IsBatchComment(c.Comment) && c.Document == t.Document {
		return r.batchKeys(ctx, inv, t, log)
	}
	vid, name, complete, next := cloud.ParseCommandComment(c.Comment)
	if volspec.ValidateVolumeID(vid) != nil || c.Document != t.Document {
		log.Warn("SSM command without a tether comment: ignored", "comment", c.Comment, "answeredDocument", c.Document)
		return nil, nil
	}
	if !complete {
		// The name was cut to fit SSM's 100 characters: the volume's tags say it.
		v, ok := r.cloud.KnownVolume(vid)
		if !ok {
			if v, err = r.cloud.VolumeByID(ctx, vid); errors.Is(err, cloud.ErrNotFound) {
				return nil, nil
			} else if err != nil {
				return nil, err
			}
		}
		if v.Tags[cloud.TagCluster] != r.cluster {
			return nil, nil
		}
		name = v.Tags[cloud.TagVolume]
	}
	if err := volspec.ValidateName(name); err != nil {
		log.Warn("SSM command without a valid tether volume: ignored", "error", err)
		return nil, nil
	}
	k := Key{Cluster: r.cluster, Volume: name}
	h := hint{Step: step, Volume: vid, Instance: t.InstanceID, Command: t.CommandID, At: ms(c.Requested)}
	if step == stepUnmount && validTaskID(next) {
		h.Target = next // the task the sender released the volume for
	}
	// Another process sent it: an unmount that names no task leaves the
	// woken pass to ask ECS who wants the volume on the instance, by its
	// container instance (the process keeps it: an instance's
	// registration never changes).
	if step == stepUnmount && h.Target == "" {
		if ci, err := r.cloud.ContainerInstanceOf(ctx, r.cluster, t.InstanceID); err == nil {
			h.CI = ci.ARN
		}
	}
	r.keepHint(inv, k, h)
	return []Key{k}, nil
}

// batchKeys names the keys of an unmount of several volumes another
// process sent: its parameters name them (one ListCommands), and the tasks
// they are released for.
func (r *Reconciler) batchKeys(ctx context.Context, inv *invocation, t CommandChanged, log *slog.Logger) ([]Key, error) {
	c, err := r.cloud.CommandByID(ctx, t.CommandID, t.InstanceID)
	if errors.Is(err, cloud.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ids := agentproto.SplitList(c.Params[agentproto.ParamVolumeID])
	released := cloud.IsReleaseComment(c.Comment)
	var keys []Key
	ci := ""
	for _, id := range ids {
		v, _ := c.ForVolume(id)
		name, next := v.Params[agentproto.ParamVolumeName], v.Params[agentproto.ParamReleasedFor]
		if volspec.ValidateVolumeID(id) != nil || volspec.ValidateName(name) != nil {
			log.Warn("unmount of several volumes names one that is not tether's: skipped", "volumeId", id, "name", name)
			continue
		}
		k := Key{Cluster: r.cluster, Volume: name}
		h := hint{Step: stepUnmount, Volume: id, Instance: t.InstanceID, Command: t.CommandID, At: ms(c.Requested), Released: released}
		if validTaskID(next) {
			h.Target = next
		} else if !released {
			if ci == "" {
				if cur, err := r.cloud.ContainerInstanceOf(ctx, r.cluster, t.InstanceID); err == nil {
					ci = cur.ARN
				}
			}
			h.CI = ci
		}
		r.keepHint(inv, k, h)
		keys = append(keys, k)
	}
	return keys, nil
}

// noteVolumeEvent lets the keys' passes act on a completed attach, detach
// or create without reading EC2 first (see continueFromEvent).
func (r *Reconciler) noteVolumeEvent(inv *invocation, keys []Key, t VolumeChanged) {
	if inv == nil {
		return
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for _, k := range keys {
		inv.volumeEvents[k] = t
	}
}

func (r *Reconciler) sweepKeys(ctx context.Context, t SweepRequested) ([]Key, error) {
	if t.Cluster != r.cluster {
		return nil, nil
	}
	vols, err := r.cloud.ClusterVolumes(ctx, t.Cluster)
	if err != nil {
		return nil, err
	}
	seen := map[Key]bool{}
	for _, k := range r.keysFromVolumes(t.Cluster, vols) {
		seen[k] = true
	}
	r.retireMoved(ctx, t.Cluster, vols) // retire.go
	tasks, err := r.sweepTasks(ctx, t.Cluster, vols)
	if err != nil {
		return nil, err
	}
	facts := newSweepFacts(t.Cluster, vols)
	views := map[string]*replicaView{}
	for _, task := range tasks {
		td, err := r.cloud.TaskDefinition(ctx, task.TaskDefinitionARN)
		if errors.Is(err, cloud.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		keys, _ := keysOf(t.Cluster, task.ARN, td)
		rkeys, _, err := r.replicaKeys(ctx, t.Cluster, task, td, views)
		if err != nil {
			return nil, err
		}
		keys = append(keys, rkeys...)
		for _, k := range keys {
			seen[k] = true
			r.mem.noteFamilies(k, task.Family())
			facts.task(k, task)
		}
	}
	keys := make([]Key, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Volume < keys[j].Volume })
	return r.sweepMoving(keys, facts), nil
}

// sweepTasks are the live tasks a sweep weighs: every one of the cluster
// (a listing that grows with it) at most every Timing.WholeSweep per
// process, and whenever that is cheaper than listing the families the
// cluster's volumes name; otherwise those families' tasks only. Between
// whole listings, a lost event of a task whose family has no tether volume
// yet waits for the next one (the plugin's Mount fails it meanwhile, and
// ECS starts it again, with new events); every key with a volume is swept
// each time.
func (r *Reconciler) sweepTasks(ctx context.Context, cluster string, vols []cloud.Volume) ([]cloud.Task, error) {
	fams, named := r.sweepFamilies(cluster, vols)
	if n, due := r.mem.wholeSweepDue(r.now(), r.t.WholeSweep); !due && named && len(fams) < 2*max(1, (n+99)/100) {
		var out []cloud.Task
		for _, f := range fams {
			ts, err := r.cloud.TasksOf(ctx, cluster, cloud.TaskQuery{Family: f})
			if err != nil {
				return nil, err
			}
			out = append(out, ts...)
		}
		return out, nil
	}
	tasks, err := r.cloud.LiveTasks(ctx, cluster)
	if err != nil {
		return nil, err
	}
	r.mem.sweptWhole(r.now(), len(tasks))
	return tasks, nil
}

// sweepFamilies: the task definition families the cluster's volumes name
// (their tether:families tag, and what this process saw use them); named
// is false when a volume names none, or there is none.
func (r *Reconciler) sweepFamilies(cluster string, vols []cloud.Volume) (fams []string, named bool) {
	counted := 0
	named = true
	for _, v := range vols {
		if v.Tags[cloud.TagCluster] != cluster || v.Tags[cloud.TagMovedTo] != "" {
			continue
		}
		counted++
		of := splitFamilies(v.Tags[cloud.TagFamilies])
		of = append(of, r.mem.familiesOf(Key{Cluster: cluster, Volume: v.Tags[cloud.TagVolume]})...)
		if len(of) == 0 {
			named = false
		}
		for _, f := range of {
			if !slices.Contains(fams, f) {
				fams = append(fams, f)
			}
		}
	}
	slices.Sort(fams)
	return fams, named && counted > 0
}

// keysFromVolumes names the keys of tether volumes of cluster; volumes
// with tags tether did not write (invalid names) are logged and skipped.
func (r *Reconciler) keysFromVolumes(cluster string, vols []cloud.Volume) []Key {
	var keys []Key
	seen := map[Key]bool{}
	for _, v := range vols {
		if v.Tags[cloud.TagCluster] != cluster {
			continue
		}
		if v.Tags[cloud.TagMovedTo] != "" {
			continue // moved to another AZ: no longer the key's (azmove.go)
		}
		name := v.Tags[cloud.TagVolume]
		if err := volspec.ValidateName(name); err != nil {
			r.log.Warn("volume with an invalid tether:volume tag: ignored", "volumeId", v.ID, "error", err)
			continue
		}
		k := Key{Cluster: cluster, Volume: name}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys
}

// keepHint stores a Retry's hint for the key's pass: in the invocation, or
// (when the caller did not start one) in the process until the pass takes it.
func (r *Reconciler) keepHint(inv *invocation, k Key, h hint) {
	if inv == nil {
		r.mem.keepHint(k, h)
		return
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if old, ok := inv.hints[k]; !ok || h.At >= old.At {
		inv.hints[k] = h
	}
}

// superseded: a pass of the same key began after the pass that scheduled
// this retry had ended (so it read AWS after every step that pass took) and
// ended without error: its own retry, or its conclusion, stands for this
// one; two chains of retries for one key (from duplicate events) collapse
// into one. A chain that counts something (client token generations, busy
// or detaching since, an operator's ask) gives way only to a later chain
// that carries the same count: a conclusion alone would drop the count.
func (r *Reconciler) superseded(k Key, h hint) bool {
	if h.Pass == 0 {
		return false
	}
	if !h.counts() {
		last, ok := r.mem.lastPass(k)
		// In whole milliseconds, as the hint carries it.
		return ok && ms(last) > h.Pass
	}
	last, ok := r.mem.lastHandBack(k)
	return ok && ms(last.at) > h.Pass && last.hint.carries(h)
}

// taskNote: a task event's version and the keys still to reconcile for it
// in this invocation.
type taskNote struct {
	version int64
	keys    map[Key]bool // every key the event named
	pending map[Key]bool // those not reconciled yet
	failed  bool
}

// reconciled marks k done for the task events that named it; an event
// whose keys all succeeded is processed, and its duplicates are skipped.
func (r *Reconciler) reconciled(inv *invocation, k Key, ok bool) {
	inv.mu.Lock()
	var done []struct {
		task    string
		version int64
	}
	for task, n := range inv.versions {
		if !n.pending[k] {
			continue
		}
		delete(n.pending, k)
		n.failed = n.failed || !ok
		if len(n.pending) == 0 && !n.failed {
			done = append(done, struct {
				task    string
				version int64
			}{task, n.version})
		}
	}
	inv.mu.Unlock()
	for _, d := range done {
		r.mem.processedUpTo(d.task, d.version)
	}
}

// HandBackFailed tells the reconciler that a key it handed back (RetryAfter)
// could not be requeued: the function layer will have the messages that
// named the key delivered again instead. The reconciler then forgets that a
// chain of retries exists for the key, so that redelivery is not skipped
// as a duplicate or superseded. (Without this call such a key waits for the
// next sweep.)
func (r *Reconciler) HandBackFailed(ctx context.Context, k Key) {
	inv := invocationFrom(ctx)
	var tasks []string
	if inv != nil {
		inv.mu.Lock()
		for task, n := range inv.versions {
			if n.keys[k] {
				tasks = append(tasks, task)
			}
		}
		inv.mu.Unlock()
	}
	r.mem.handBackFailed(k, tasks)
	r.log.Warn("key could not be handed back; its messages will be delivered again", "cluster", k.Cluster, "volume", k.Volume)
}
