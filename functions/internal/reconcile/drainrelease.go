package reconcile

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/internal/volspec"
)

// A drain releases a host's volumes with one unmount command.
//
// Each volume's handoff needs an unmount before its detach, and SSM's
// SendCommand bucket is the tightest one a mass handoff meets (one unmount
// and one mount per volume). A draining instance's event names all its
// volumes in one invocation, so that invocation asks tether-agent there to
// unmount them all at once, as soon as no task on the instance is meant to
// run any more (ECS lists none with desired status RUNNING: a drain stops
// service tasks; a standalone task keeps the release off). The agent
// unmounts only what no container uses and the kernel lets go of, and
// answers per volume; a volume still in use is released later by its
// task's STOPPED event, as without this. Each volume's detach rests on its
// own line of the answer (cloud.Command.ForVolume), as ever.

// drainedInstance is a live draining instance an invocation's events
// named: its container instance, its volumes as EC2 listed them, and the
// newest of those events.
type drainedInstance struct {
	ci    string
	vols  []cloud.Volume
	event InstanceChanged
}

func (inv *invocation) noteDrainedInstance(t InstanceChanged, instance string, vols []cloud.Volume) {
	if inv == nil || t.ContainerInstanceArn == "" {
		return
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if old, ok := inv.drained[instance]; ok && old.event.Version > t.Version {
		t = old.event
	}
	inv.drained[instance] = drainedInstance{ci: t.ContainerInstanceArn, vols: vols, event: t}
}

// A drain sends an event each time a task stops on the instance (its free
// resources change), and each event's invocation reads the instance's
// volumes. Once this process's release carries every tether volume on it,
// a later event of the same drain tells it nothing new: the volumes' own
// chains (the release's end, their tasks' STOPPED events) carry them on.
// "The same drain" rests on ECS's facts: a later version, with more free
// CPU or memory and less of neither (a draining instance takes no task;
// one that was made ACTIVE and took tasks frees less), within DrainDefer of
// the release. An event that does not prove it is read as before.

// wholeRelease is what a process knows of a draining instance whose
// volumes its release carries: when, and the newest event of that drain.
type wholeRelease struct {
	at    time.Time
	event InstanceChanged
}

// sameDrain reports whether t is a later event of the drain whose whole
// release w noted, at now.
func (w wholeRelease) sameDrain(t InstanceChanged, now time.Time, within time.Duration) bool {
	e := w.event
	return now.Sub(w.at) < within && t.Version > e.Version &&
		t.RemainingCPU >= e.RemainingCPU && t.RemainingMemory >= e.RemainingMemory &&
		(t.RemainingCPU > e.RemainingCPU || t.RemainingMemory > e.RemainingMemory)
}

// releasedWhole notes that this process's release carries every tether
// volume attached to the draining instance d names.
func (r *Reconciler) releasedWhole(instance string, d drainedInstance) {
	for _, v := range d.vols {
		if v.Tags[cloud.TagCluster] != r.cluster {
			continue
		}
		for _, a := range v.Attachments {
			if a.InstanceID == instance && (a.State != cloud.AttachAttached || !r.mem.releaseCarries(token(a))) {
				return
			}
		}
	}
	r.mem.noteWholeRelease(instance, wholeRelease{at: r.now(), event: d.event})
}

// releaseCarries reports whether an unmount this process sent or found on
// the live draining instance inst carries every volume of k attached there
// (and there is one): the drain's deferred look at k would only find that
// release under way, whose end carries the key on.
func (inv *invocation) releaseCarries(m *memory, k Key, inst string) bool {
	if inv == nil || inst == "" {
		return false
	}
	inv.mu.Lock()
	d, ok := inv.drained[inst]
	inv.mu.Unlock()
	if !ok {
		return false
	}
	carried := false
	for _, v := range d.vols {
		if v.Tags[cloud.TagCluster] != k.Cluster || v.Tags[cloud.TagVolume] != k.Volume {
			continue
		}
		for _, a := range v.Attachments {
			if a.InstanceID != inst {
				continue
			}
			if !m.releaseCarries(token(a)) {
				return false
			}
			carried = true
		}
	}
	return carried
}

// ReleaseDrained sends, for each live draining instance this invocation's
// events named, one unmount of its volumes (see above). The dispatcher
// calls it once the triggers are named, before the passes. It never fails
// the invocation: what it does not release, the volumes' own passes do.
func (r *Reconciler) ReleaseDrained(ctx context.Context) {
	inv := invocationFrom(ctx)
	if inv == nil {
		return
	}
	inv.mu.Lock()
	instances := make([]string, 0, len(inv.drained))
	for id := range inv.drained {
		instances = append(instances, id)
	}
	inv.mu.Unlock()
	slices.Sort(instances)
	for _, id := range instances {
		inv.mu.Lock()
		d := inv.drained[id]
		inv.mu.Unlock()
		r.releaseDrained(ctx, id, d)
		r.releasedWhole(id, d)
	}
}

func (r *Reconciler) releaseDrained(ctx context.Context, instance string, d drainedInstance) {
	log := r.log.With("instance", instance, "containerInstance", d.ci)
	var us []cloud.Unmount
	keys := map[string]Key{}
	var since time.Time // the earliest attachment: no unmount of these is older
	for _, v := range d.vols {
		name := v.Tags[cloud.TagVolume]
		if v.Tags[cloud.TagCluster] != r.cluster || v.Tags[cloud.TagMovedTo] != "" || volspec.ValidateName(name) != nil {
			continue
		}
		for _, a := range v.Attachments {
			if a.InstanceID != instance || a.State != cloud.AttachAttached || a.AttachTime.IsZero() || !r.mem.startRelease(token(a)) {
				continue
			}
			us = append(us, cloud.Unmount{VolumeID: v.ID, Name: name, Attachment: token(a)})
			keys[v.ID] = Key{Cluster: r.cluster, Volume: name}
			if since.IsZero() || a.AttachTime.Before(since) {
				since = a.AttachTime
			}
		}
	}
	if len(us) == 0 {
		return
	}
	forget := func(us []cloud.Unmount) {
		for _, u := range us {
			r.mem.forgetRelease(u.Attachment)
		}
	}
	live, err := r.cloud.ListTaskARNs(ctx, r.cluster, cloud.TaskQuery{ContainerInstance: d.ci, Desired: "RUNNING"})
	if err != nil || len(live) > 0 {
		// Tasks are still meant to run there (or ECS did not say): their
		// volumes' own passes release them; a later drain event, when the
		// instance's task count changed, may release the rest at once.
		log.Debug("draining instance: tasks still meant to run there; no release at once", "tasks", len(live), "error", err)
		forget(us)
		return
	}
	us = r.notReleasedYet(ctx, log, instance, since, us)
	for chunk := range slices.Chunk(us, agentproto.MaxBatch) {
		ids := make([]string, len(chunk))
		for i, u := range chunk {
			ids[i] = u.VolumeID
		}
		id, err := r.cloud.SendUnmounts(ctx, r.unmountDoc, instance, chunk)
		if err != nil {
			log.Warn("draining instance: its volumes' release was not sent; their tasks' STOPPED events release them", "volumeIds", ids, "error", err)
			forget(chunk)
			continue
		}
		now := r.now()
		for _, u := range chunk {
			r.mem.releaseSent(u.Attachment)
			r.mem.startInflight(u.VolumeID, stepUnmount, now)
			r.mem.noteSent(id, keys[u.VolumeID], hint{Step: stepUnmount, Volume: u.VolumeID, Instance: instance, CI: d.ci, Command: id, At: ms(now), Released: true})
		}
		log.Info("draining instance: its volumes released with one unmount command", "command", id, "volumeIds", ids)
	}
}

// notReleasedYet keeps the unmounts no unmount command on the instance
// carries already (its Attachment names the same attachment) unless that
// command failed. A drain sends one event per task that stops there, and
// Lambda spreads them over its processes: each would release the host's
// volumes again, and each such command's end costs a pass per volume. One
// ListCommands answers it; processes that ask at the same moment may still
// both send (a second unmount of an unmounted volume changes nothing). If
// SSM does not answer, the release goes as it would without the check.
func (r *Reconciler) notReleasedYet(ctx context.Context, log *slog.Logger, instance string, since time.Time, us []cloud.Unmount) []cloud.Unmount {
	cmds, err := r.cloud.Commands(ctx, r.unmountDoc, instance, since.Add(-time.Second))
	if err != nil {
		log.Debug("draining instance: its unmounts not listed; releasing without that check", "error", err)
		return us
	}
	sent := map[string]string{} // attachment token -> the command that unmounts it
	for _, c := range cmds {
		if c.Status == cloud.CommandFailed {
			continue
		}
		for _, tok := range agentproto.SplitList(c.Params[agentproto.ParamAttachment]) {
			sent[tok] = c.ID
		}
	}
	var out []cloud.Unmount
	var already []string
	for _, u := range us {
		if id, ok := sent[u.Attachment]; ok {
			r.mem.releaseSent(u.Attachment)
			already = append(already, u.VolumeID+" ("+id+")")
			continue
		}
		out = append(out, u)
	}
	if len(already) > 0 {
		log.Info("draining instance: volumes an unmount already carries are not released again", "volumeIds", already)
	}
	return out
}
