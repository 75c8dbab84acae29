package reconcile

import (
	"context"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/emf"
)

// failNeeders reports an error on the tasks waiting for the volume.
func (p *pass) failNeeders(ctx context.Context, ns []need, class, reason string) error {
	ts := make([]cloud.Task, len(ns))
	for i, n := range ns {
		ts[i] = n.task
	}
	return p.failTasks(ctx, ts, class, reason)
}

// failTasks is "an error on the task": ECS has no API to annotate a task,
// so tether stops it with the reason, which ECS shows as the task's
// stoppedReason (and in the service's events). Only tasks that have not
// started are stopped: a running task already has its volume, and a
// waiting one would otherwise fail later with the plugin's less precise
// "waited for the mount" message.
func (p *pass) failTasks(ctx context.Context, ts []cloud.Task, class, reason string) error {
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
		log.Error("task stopped with an error", "reason", reason, "class", class)
		p.r.stoppedMetric(p.key.Cluster, class, map[string]any{"volume": p.key.Volume, "task": t.ARN, "reason": reason})
	}
	return nil
}

// handoffStart: when the volume began to move to where it is needed now.
func (p *pass) handoffStart(w want) time.Time {
	if p.hint.Since != 0 {
		return fromMS(p.hint.Since)
	}
	if t, ok := p.r.mem.releasedAt(p.key); ok {
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
		if (ciARN == "" || t.ContainerInstanceARN == ciARN) && !t.StoppedAt.IsZero() && t.StoppedAt.After(start) && !t.StoppedAt.After(p.now) {
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
	if at, ok := p.r.mem.takeInflight(v.ID, stepMount); ok {
		ms = append(ms, emf.Metric{Name: MetricMountDuration, Value: msf(p.now.Sub(at)), Unit: emf.Milliseconds})
	}
	if p.r.mem.forgetReleased(p.key) || p.hint.Since != 0 {
		ms = append(ms, emf.Metric{Name: MetricHandoffDuration, Value: msf(p.now.Sub(start)), Unit: emf.Milliseconds})
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
		if at, ok := p.r.mem.takeInflight(v.ID, stepAttach); ok {
			p.r.emit(p.key.Cluster, map[string]any{"volume": p.key.Volume, "volumeId": v.ID, "instance": attachedTo},
				emf.Metric{Name: MetricAttachDuration, Value: msf(p.now.Sub(at)), Unit: emf.Milliseconds})
		}
	}
	if len(v.Attachments) == 0 {
		if at, ok := p.r.mem.takeInflight(v.ID, stepDetach); ok {
			p.r.mem.detachEnded(v.ID, at, p.now)
			p.r.emit(p.key.Cluster, map[string]any{"volume": p.key.Volume, "volumeId": v.ID},
				emf.Metric{Name: MetricDetachDuration, Value: msf(p.now.Sub(at)), Unit: emf.Milliseconds})
		}
	}
}

// observedEvent emits the duration of an attach or detach this process
// started, when its EBS notification arrives.
func (p *pass) observedEvent(v cloud.Volume, ev VolumeChanged) {
	var step, name string
	switch {
	case ev.Event == "attachVolume" && ev.Result == "attached":
		step, name = stepAttach, MetricAttachDuration
	case ev.Event == "detachVolume" && ev.Result == "detached":
		step, name = stepDetach, MetricDetachDuration
	default:
		return
	}
	if at, ok := p.r.mem.takeInflight(v.ID, step); ok {
		if step == stepDetach {
			p.r.mem.detachEnded(v.ID, at, p.now)
		}
		p.r.emit(p.key.Cluster, map[string]any{"volume": p.key.Volume, "volumeId": v.ID},
			emf.Metric{Name: name, Value: msf(p.now.Sub(at)), Unit: emf.Milliseconds})
	}
}

// startedWithVolume: a task that needed the volume has started, so the
// mount it waited for is done: emit the mount and handoff durations, ended
// at the task's start, if this process sent that mount.
func (p *pass) startedWithVolume(w want, t cloud.Task) {
	vid, ok := p.r.mem.knownVolumeOf(p.key)
	if !ok || t.StartedAt.IsZero() {
		return
	}
	ci := w.ciByARN[t.ContainerInstanceARN]
	if !p.r.mem.mountSentAfter(vid, ci.EC2InstanceID, time.Time{}) {
		return
	}
	at, sent := p.r.mem.takeInflight(vid, stepMount)
	if !sent {
		return
	}
	end := t.StartedAt
	ms := []emf.Metric{{Name: MetricMountDuration, Value: msf(max(end.Sub(at), 0)), Unit: emf.Milliseconds}}
	start := p.handoffStart(w)
	if p.r.mem.forgetReleased(p.key) || p.hint.Since != 0 {
		ms = append(ms, emf.Metric{Name: MetricHandoffDuration, Value: msf(max(end.Sub(start), 0)), Unit: emf.Milliseconds})
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
		p.log.Error("pass failed; the key must be retried", "error", err, "ec2Requests", calls, "requests", snap.Calls)
	case res.Done():
		p.log.Info("converged", "reason", res.Reason, "ec2Requests", calls, "requests", snap.Calls)
	default:
		p.log.Info("handing the key back", "reason", res.Reason, "retryAfter", res.RetryAfter.String(), "ec2Requests", calls, "requests", snap.Calls)
	}
	metrics := []emf.Metric{
		{Name: MetricPasses, Value: 1, Unit: emf.Count},
		{Name: MetricEC2Requests, Value: float64(calls), Unit: emf.Count},
		{Name: MetricThrottles, Value: float64(throttles), Unit: emf.Count},
	}
	if res.RetryAfter > 0 {
		metrics = append(metrics, emf.Metric{Name: MetricRetries, Value: 1, Unit: emf.Count})
	}
	if err != nil {
		metrics = append(metrics, metricFailures(1))
	}
	p.r.emit(p.key.Cluster, map[string]any{"volume": p.key.Volume, "reason": res.Reason}, metrics...)
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func metricFailures(n float64) emf.Metric {
	return emf.Metric{Name: MetricFailures, Value: n, Unit: emf.Count}
}

func metricCount(name string) emf.Metric { return emf.Metric{Name: name, Value: 1, Unit: emf.Count} }

// stoppedMetric counts a task tether stopped, by the class of its reason
// (TasksStopped with the ReasonClass dimension; Failures as before).
func (r *Reconciler) stoppedMetric(cluster, class string, props map[string]any) {
	if r.metrics == nil {
		return
	}
	if err := r.metrics.Emit(map[string]string{"Cluster": cluster, "ReasonClass": class}, props, metricCount(MetricTasksStopped)); err != nil {
		r.log.Warn("could not write metrics", "error", err)
	}
	r.emit(cluster, props, metricFailures(1))
}

func (r *Reconciler) emit(cluster string, props map[string]any, ms ...emf.Metric) {
	if r.metrics == nil || len(ms) == 0 {
		return
	}
	if err := r.metrics.Emit(map[string]string{"Cluster": cluster}, props, ms...); err != nil {
		r.log.Warn("could not write metrics", "error", err)
	}
}
