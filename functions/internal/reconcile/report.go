package reconcile

import (
	"context"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/emf"
)

// failNeeders reports an error on the tasks waiting for the volume.
func (p *pass) failNeeders(ctx context.Context, ns []need, reason string) error {
	ts := make([]cloud.Task, len(ns))
	for i, n := range ns {
		ts[i] = n.task
	}
	return p.failTasks(ctx, ts, reason)
}

// failTasks is "an error on the task": ECS has no API to annotate a task,
// so tether stops it with the reason, which ECS shows as the task's
// stoppedReason (and in the service's events). Only tasks that have not
// started are stopped: a running task already has its volume, and a
// waiting one would otherwise fail later with the plugin's less precise
// "waited for the mount" message.
func (p *pass) failTasks(ctx context.Context, ts []cloud.Task, reason string) error {
	reason = cloud.TruncateReason("tether: " + reason)
	if err := p.fresh("stop task"); err != nil {
		return err
	}
	for _, t := range ts {
		log := p.log.With("task", t.ARN, "containerInstance", t.ContainerInstanceARN)
		if t.DesiredStatus != "RUNNING" || t.LastStatus == "RUNNING" || !t.StartedAt.IsZero() {
			log.Error("task not stopped (started or already stopping)", "reason", reason)
			continue
		}
		if err := p.r.cloud.StopTask(ctx, p.key.Cluster, t.ARN, reason); err != nil {
			return err
		}
		log.Error("task stopped with an error", "reason", reason)
		p.r.emit(p.key.Cluster, map[string]any{"volume": p.key.Volume, "task": t.ARN, "reason": reason}, metricFailures(1))
	}
	return nil
}

// handoffStart: when the volume began to move to where it is needed now.
func (p *pass) handoffStart(w want) time.Time {
	if p.hint.Since != 0 {
		return fromMS(p.hint.Since)
	}
	if t, ok := p.r.releasedAt(p.key); ok {
		return t
	}
	if len(w.needers) > 0 {
		return w.needers[0].task.CreatedAt
	}
	return p.now
}

// releaseStart: when the last holder on the instance stopped, if a trigger
// told us; else now.
func (p *pass) releaseStart(w want, ciARN string) time.Time {
	start := time.Time{}
	p.inv.mu.Lock()
	for _, t := range p.inv.tasks {
		if (ciARN == "" || t.ContainerInstanceARN == ciARN) && !t.StoppedAt.IsZero() && t.StoppedAt.After(start) {
			start = t.StoppedAt
		}
	}
	p.inv.mu.Unlock()
	if start.IsZero() {
		start = p.now
	}
	return start
}

// mounted records a successful mount: durations of the mount and of the
// handoff (from the holder's STOPPED, or the task's creation, to now).
func (p *pass) mounted(w want, v cloud.Volume, inst string, c cloud.Command) {
	start := p.handoffStart(w)
	log := p.log.With("volumeId", v.ID, "instance", inst, "command", c.ID)
	props := map[string]any{"volume": p.key.Volume, "volumeId": v.ID, "instance": inst}
	var ms []emf.Metric
	if at, ok := p.r.takeInflight(v.ID, stepMount); ok {
		ms = append(ms, emf.Metric{Name: "MountDuration", Value: msf(p.now.Sub(at)), Unit: emf.Milliseconds})
	}
	if p.r.forgetReleased(p.key) || p.hint.Since != 0 {
		ms = append(ms, emf.Metric{Name: "HandoffDuration", Value: msf(p.now.Sub(start)), Unit: emf.Milliseconds})
		log.Info("handoff done: volume mounted where its task runs", "handoff", p.now.Sub(start).String())
	} else {
		log.Info("volume mounted where its task runs")
	}
	p.r.emit(p.key.Cluster, props, ms...)
}

// noteProgress emits attach/detach durations when a pass first sees them done.
func (p *pass) noteProgress(w want, v cloud.Volume) {
	attachedTo := ""
	for _, a := range v.Attachments {
		if a.State == cloud.AttachAttached {
			attachedTo = a.InstanceID
		}
	}
	if attachedTo != "" {
		if at, ok := p.r.takeInflight(v.ID, stepAttach); ok {
			p.r.emit(p.key.Cluster, map[string]any{"volume": p.key.Volume, "volumeId": v.ID, "instance": attachedTo},
				emf.Metric{Name: "AttachDuration", Value: msf(p.now.Sub(at)), Unit: emf.Milliseconds})
		}
	}
	if len(v.Attachments) == 0 {
		if at, ok := p.r.takeInflight(v.ID, stepDetach); ok {
			p.r.emit(p.key.Cluster, map[string]any{"volume": p.key.Volume, "volumeId": v.ID},
				emf.Metric{Name: "DetachDuration", Value: msf(p.now.Sub(at)), Unit: emf.Milliseconds})
		}
	}
}

// observedEvent emits the duration of an attach or detach this process
// started, when its EBS notification arrives.
func (p *pass) observedEvent(v cloud.Volume, ev VolumeChanged) {
	var step, name string
	switch {
	case ev.Event == "attachVolume" && ev.Result == "attached":
		step, name = stepAttach, "AttachDuration"
	case ev.Event == "detachVolume" && ev.Result == "detached":
		step, name = stepDetach, "DetachDuration"
	default:
		return
	}
	if at, ok := p.r.takeInflight(v.ID, step); ok {
		p.r.emit(p.key.Cluster, map[string]any{"volume": p.key.Volume, "volumeId": v.ID},
			emf.Metric{Name: name, Value: msf(p.now.Sub(at)), Unit: emf.Milliseconds})
	}
}

// startedWithVolume: a task that needed the volume has started, so the
// mount it waited for is done: emit the mount and handoff durations, ended
// at the task's start, if this process sent that mount.
func (p *pass) startedWithVolume(w want, t cloud.Task) {
	ids, ok := p.r.knownVolumesOf(p.key)
	if !ok || t.StartedAt.IsZero() {
		return
	}
	ci := w.ciByARN[t.ContainerInstanceARN]
	vid := ids[0]
	if !p.r.mountSentAfter(vid, ci.EC2InstanceID, time.Time{}) {
		return
	}
	at, sent := p.r.takeInflight(vid, stepMount)
	if !sent {
		return
	}
	end := t.StartedAt
	ms := []emf.Metric{{Name: "MountDuration", Value: msf(max(end.Sub(at), 0)), Unit: emf.Milliseconds}}
	start := p.handoffStart(w)
	if p.r.forgetReleased(p.key) || p.hint.Since != 0 {
		ms = append(ms, emf.Metric{Name: "HandoffDuration", Value: msf(max(end.Sub(start), 0)), Unit: emf.Milliseconds})
		p.log.Info("handoff done: the task started with its volume", "task", t.ARN, "instance", ci.EC2InstanceID, "handoff", end.Sub(start).String())
	}
	p.r.emit(p.key.Cluster, map[string]any{"volume": p.key.Volume, "volumeId": vid, "instance": ci.EC2InstanceID, "task": t.ARN}, ms...)
}

// finish logs the pass's outcome and emits its counters.
func (p *pass) finish(res Result, err error) {
	snap := p.stats.Snapshot()
	calls := snap.Total(snap.Calls, "EC2")
	throttles := snap.Total(snap.Throttles, "")
	switch {
	case err != nil:
		p.log.Error("pass failed; the key must be retried", "error", err, "ec2Requests", calls)
	case res.Done():
		p.log.Info("converged", "reason", res.Reason, "ec2Requests", calls)
	default:
		p.log.Info("handing the key back", "reason", res.Reason, "retryAfter", res.RetryAfter.String(), "ec2Requests", calls)
	}
	metrics := []emf.Metric{
		{Name: "Passes", Value: 1, Unit: emf.Count},
		{Name: "EC2Requests", Value: float64(calls), Unit: emf.Count},
		{Name: "Throttles", Value: float64(throttles), Unit: emf.Count},
	}
	if res.RetryAfter > 0 {
		metrics = append(metrics, emf.Metric{Name: "Retries", Value: 1, Unit: emf.Count})
	}
	if err != nil {
		metrics = append(metrics, metricFailures(1))
	}
	p.r.emit(p.key.Cluster, map[string]any{"volume": p.key.Volume, "reason": res.Reason}, metrics...)
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func metricFailures(n float64) emf.Metric {
	return emf.Metric{Name: "Failures", Value: n, Unit: emf.Count}
}
func metricForceDetaches(n float64) emf.Metric {
	return emf.Metric{Name: "ForceDetaches", Value: n, Unit: emf.Count}
}

func (r *Reconciler) emit(cluster string, props map[string]any, ms ...emf.Metric) {
	if r.metrics == nil || len(ms) == 0 {
		return
	}
	if err := r.metrics.Emit(map[string]string{"Cluster": cluster}, props, ms...); err != nil {
		r.log.Warn("could not write metrics", "error", err)
	}
}

// Process memory: optimisations only, lost with the process.

const maxMemory = 4096

func (r *Reconciler) poison(instance, device string) {
	if device == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.poisoned) >= maxMemory {
		r.poisoned = map[string]map[string]bool{}
	}
	if r.poisoned[instance] == nil {
		r.poisoned[instance] = map[string]bool{}
	}
	r.poisoned[instance][device] = true
}

// pickDevice allocates a device name on instance for volumeID: the first
// of the volume's candidates that is not refused (this pass), poisoned,
// used by an attachment this process knows of, or being attached by
// another pass of this process now. The name stays reserved until
// releaseDevice.
func (r *Reconciler) pickDevice(instance, volumeID string, refused map[string]bool) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	taken := map[string]bool{}
	for d := range refused {
		taken[d] = true
	}
	for d := range r.poisoned[instance] {
		taken[d] = true
	}
	for d := range r.attaching[instance] {
		taken[d] = true
	}
	for vid, a := range r.attached {
		if vid != volumeID && a.InstanceID == instance && a.State != cloud.AttachDetached && a.Device != "" {
			taken[a.Device] = true
		}
	}
	cands := deviceOrder(volumeID, taken)
	if len(cands) == 0 {
		return "", false
	}
	if r.attaching[instance] == nil {
		r.attaching[instance] = map[string]string{}
	}
	r.attaching[instance][cands[0]] = volumeID
	return cands[0], true
}

// releaseDevice ends the reservation pickDevice made (an attachment made
// with the name is known from noteAttachment by then).
func (r *Reconciler) releaseDevice(instance, device string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.attaching[instance], device)
	if len(r.attaching[instance]) == 0 {
		delete(r.attaching, instance)
	}
}

func (r *Reconciler) noteReleased(k Key, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.released) >= maxMemory {
		r.released = map[Key]time.Time{}
	}
	if _, ok := r.released[k]; !ok {
		r.released[k] = at
	}
}

func (r *Reconciler) releasedAt(k Key) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.released[k]
	return t, ok
}

func (r *Reconciler) forgetReleased(k Key) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.released[k]
	delete(r.released, k)
	return ok
}

func (r *Reconciler) startInflight(volumeID, step string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.inflight) >= maxMemory {
		r.inflight = map[string]time.Time{}
	}
	k := step + "/" + volumeID
	if _, ok := r.inflight[k]; !ok {
		r.inflight[k] = at
	}
}

func (r *Reconciler) takeInflight(volumeID, step string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := step + "/" + volumeID
	t, ok := r.inflight[k]
	delete(r.inflight, k)
	return t, ok
}

func (r *Reconciler) noteAttachment(volumeID string, a cloud.Attachment) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.cloud.KnownVolume(volumeID); ok {
		k := Key{Cluster: v.Tags[cloud.TagCluster], Volume: v.Tags[cloud.TagVolume]}
		if len(r.volumesOf) >= maxMemory {
			r.volumesOf = map[Key]string{}
		}
		r.volumesOf[k] = volumeID
	}
	if len(r.attached) >= maxMemory {
		r.attached = map[string]cloud.Attachment{}
	}
	if old, ok := r.attached[volumeID]; !ok || !a.AttachTime.Before(old.AttachTime) {
		r.attached[volumeID] = a
	}
}

func (r *Reconciler) attachmentOf(volumeID string) (cloud.Attachment, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.attached[volumeID]
	return a, ok
}

// vanish counts volumes of a key EC2 deleted right after creating them:
// the most of the hint's count and this process's, plus this one.
func (r *Reconciler) vanish(k Key, fromHint int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.vanishes) >= maxMemory {
		r.vanishes = map[Key]int{}
	}
	n := max(fromHint, r.vanishes[k]) + 1
	r.vanishes[k] = n
	return n
}

// createdFine forgets vanished volumes of a key once one lives.
func (r *Reconciler) createdFine(k Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.vanishes, k)
}

// knownVolumesOf: the volume this process last attached or detached for k.
func (r *Reconciler) knownVolumesOf(k Key) ([]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.volumesOf[k]
	if !ok {
		return nil, false
	}
	return []string{id}, true
}

func (r *Reconciler) noteMountSent(volumeID, instance string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.mountSent) >= maxMemory {
		r.mountSent = map[string]cloud.Attachment{}
	}
	r.mountSent[volumeID] = cloud.Attachment{InstanceID: instance, AttachTime: at}
}

func (r *Reconciler) mountSentAfter(volumeID, instance string, t time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.mountSent[volumeID]
	return ok && m.InstanceID == instance && !m.AttachTime.Before(t)
}

// sentCommand is what the pass that sent an SSM command knew: its key, and
// the hint it handed the key back with, for the pass SSM's event wakes.
type sentCommand struct {
	key  Key
	hint hint
}

func (r *Reconciler) noteSent(commandID string, k Key, h hint) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sent) >= maxMemory {
		r.sent = map[string]sentCommand{}
	}
	r.sent[commandID] = sentCommand{key: k, hint: h}
}

func (r *Reconciler) sentCommandOf(commandID string) (sentCommand, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sent[commandID]
	return s, ok
}
