package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/volspec"
)

// stepGrow: a ModifyVolume tether asked for; the chain waits until EBS puts
// it in force, then sends the mount again so the agent grows the mounted
// filesystem.
const stepGrow = "grow"

// change is what the needers' driverOpts ask of the volume beyond what it
// has: only options a task definition names count (a default never
// resizes a volume), and a smaller size is refused (EBS volumes cannot
// shrink).
type change struct {
	want   cloud.VolumeChange
	shrink string // why a smaller size is not applied ("" none)
}

func (c change) any() bool { return c.want != (cloud.VolumeChange{}) }

// wantedChange compares the driverOpts of the tasks on the holder's
// instance with the volume (a new task definition revision with a larger
// size, another type, IOPS or throughput).
func (p *pass) wantedChange(w want, holder cloud.Task, v cloud.Volume) change {
	var c change
	for _, n := range w.needers {
		if n.task.ContainerInstanceARN != holder.ContainerInstanceARN {
			continue
		}
		opts, err := volspec.ParseDriverOptsWith(n.spec.DriverOpts, p.r.defaults)
		if err != nil {
			continue // the mount path reports invalid driverOpts
		}
		named := func(k string) bool { _, ok := n.spec.DriverOpts[k]; return ok }
		switch {
		case !named(volspec.OptSize):
		case opts.SizeGiB > v.SizeGiB && opts.SizeGiB > c.want.SizeGiB:
			c.want.SizeGiB = opts.SizeGiB
		case opts.SizeGiB < v.SizeGiB:
			c.shrink = fmt.Sprintf("task definition %s asks for %d GiB but volume %s has %d GiB: EBS volumes cannot shrink, so it keeps its size",
				n.task.Family(), opts.SizeGiB, v.ID, v.SizeGiB)
		}
		if named(volspec.OptVolumeType) && !strings.EqualFold(opts.VolumeType, v.Type) {
			c.want.Type = opts.VolumeType
		}
		if named(volspec.OptIOPS) && opts.IOPS != v.IOPS {
			c.want.IOPS = opts.IOPS
		}
		if named(volspec.OptThroughput) && opts.Throughput != v.Throughput {
			c.want.Throughput = opts.Throughput
		}
	}
	return c
}

// mayNeedChange: a cheap look (this process's knowledge of the volume)
// whether the holder's driverOpts could ask for a change, so the fast path
// reads EC2 only then.
func (p *pass) mayNeedChange(w want, holder cloud.Task) bool {
	id, ok := p.r.mem.knownVolumeOf(p.key)
	if !ok {
		// Another process mounted it (the sweep is one): the volume is read
		// (a sweep's passes find it in the sweep's own cluster listing).
		return true
	}
	v, ok := p.r.cloud.KnownVolume(id)
	if !ok {
		return true
	}
	c := p.wantedChange(w, holder, v)
	return c.any() || c.shrink != "" || p.hint.Step == stepGrow
}

// growServed: a started task holds the volume where every task that needs
// it runs. If their driverOpts ask for more (size, type, IOPS,
// throughput), the volume is modified (once EBS allows: one modification
// per volume every 6 hours) and, once the modification is in force, the
// mount is sent again: tether-agent grows the mounted filesystem online.
// ok false: nothing to change, the fast path's conclusion stands.
func (p *pass) growServed(ctx context.Context, w want, holder cloud.Task) (Result, bool, error) {
	if !p.mayNeedChange(w, holder) {
		return Result{}, false, nil
	}
	vols, err := p.r.cloud.VolumesByKey(ctx, p.key.Cluster, p.key.Volume)
	if err != nil {
		return Result{}, false, err
	}
	var v cloud.Volume
	var a cloud.Attachment
	for _, cand := range vols {
		for _, at := range cand.Attachments {
			if at.State == cloud.AttachAttached && w.ciByARN[holder.ContainerInstanceARN].EC2InstanceID == at.InstanceID {
				v, a = cand, at
			}
		}
	}
	if v.ID == "" {
		return Result{}, false, nil
	}
	p.r.mem.noteAttachment(p.key, v.ID, a) // the process's next passes look without reading
	log := p.log.With("volumeId", v.ID, "instance", a.InstanceID, "task", holder.ARN)
	c := p.wantedChange(w, holder, v)
	if c.shrink != "" && p.r.mem.firstWait("shrink/"+v.ID+"/"+c.shrink) {
		log.Warn("size not changed: " + c.shrink)
	}
	if p.hint.Step == stepGrow && p.hint.Volume == v.ID {
		return p.growInForce(ctx, w, v, a, holder, log)
	}
	if !c.any() {
		return Result{}, false, nil
	}
	m, err := p.r.cloud.VolumeModification(ctx, v.ID)
	switch {
	case errors.Is(err, cloud.ErrNotFound):
	case err != nil:
		return Result{}, false, err
	case !m.Finished():
		log.Info("a modification of the volume is in progress; its end comes first", "state", m.State)
		return p.retry(p.r.t.GrowPoll, hint{Step: stepGrow, Volume: v.ID, Instance: a.InstanceID, At: ms(p.now)}, "modification of %s in progress", v.ID), true, nil
	case p.now.Before(m.NextAllowed()):
		if p.r.mem.firstWait("modify-cooldown/" + v.ID + "/" + m.StartTime.String()) {
			log.Warn("volume change waits for EBS's limit of one modification every 6 hours", "allowedAfter", m.NextAllowed(), "want", fmt.Sprintf("%+v", c.want))
		}
		return Result{}, false, nil
	}
	if err := p.fresh("modify"); err != nil {
		return Result{}, false, err
	}
	_, err = p.r.cloud.ModifyVolume(ctx, v.ID, c.want)
	var soon *cloud.ModifyTooSoonError
	switch {
	case errors.As(err, &soon):
		log.Warn("EBS refused the change for now", "error", err)
		return Result{}, false, nil
	case errors.Is(err, cloud.ErrInvalidRequest):
		if p.r.mem.firstWait("modify-refused/" + v.ID + "/" + err.Error()) {
			log.Error("EBS refused the volume change the task definition asks for; the volume keeps its configuration", "error", err)
		}
		return Result{}, false, nil
	case err != nil:
		return Result{}, false, err
	}
	log.Info("volume modified for the task definition's driverOpts; the filesystem grows once EBS puts it in force", "want", fmt.Sprintf("%+v", c.want))
	p.r.emit(p.key.Cluster, map[string]any{"volume": p.key.Volume, "volumeId": v.ID}, metricCount(MetricVolumeModifications))
	return p.retry(p.r.t.GrowPoll, hint{Step: stepGrow, Volume: v.ID, Instance: a.InstanceID, At: ms(p.now)}, "modifying %s", v.ID), true, nil
}

// growInForce: the chain of a modification tether asked for. Once EBS has
// it in force (optimizing or completed), the mount goes again to the
// instance where the volume is mounted: the agent rescans the device and
// grows the filesystem (docs/contracts.md).
func (p *pass) growInForce(ctx context.Context, w want, v cloud.Volume, a cloud.Attachment, holder cloud.Task, log interface {
	Info(string, ...any)
	Error(string, ...any)
}) (Result, bool, error) {
	m, err := p.r.cloud.VolumeModification(ctx, v.ID)
	if err != nil && !errors.Is(err, cloud.ErrNotFound) {
		return Result{}, false, err
	}
	switch {
	case errors.Is(err, cloud.ErrNotFound):
		return Result{}, false, nil
	case m.State == cloud.ModFailed:
		log.Error("EBS could not modify the volume; it keeps its configuration", "status", m.StatusMessage)
		return done("modification of " + v.ID + " failed"), true, nil
	case !m.InForce():
		waited := p.now.Sub(fromMS(p.hint.At))
		return p.retry(min(max(p.r.t.GrowPoll, waited/4), p.r.t.DetachWait), p.hint, "modification of %s %s", v.ID, m.State), true, nil
	}
	var t need
	for _, n := range w.needers {
		if n.task.ARN == holder.ARN {
			t = n
		}
	}
	if t.task.ARN == "" {
		return Result{}, false, nil
	}
	log.Info("modification in force; sending the mount again so the filesystem grows", "state", m.State, "targetGiB", m.TargetSizeGiB)
	res, err := p.sendMount(ctx, w, v, a, t, 0)
	return res, true, err
}
