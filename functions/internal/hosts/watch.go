package hosts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/emf"
	"github.com/tether-ecs/tether/functions/internal/eventsrc"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// The hung-host watch. ECS keeps the tasks of an instance whose agent is
// disconnected RUNNING and never replaces them, and the host cannot
// unmount: its volumes are stuck there until something turns the hang into
// a fact. ECS agents disconnect and reconnect as a matter of course, so
// tether looks again, WatchPoll apart, until:
//
//   - the agent is back, ECS forgot the instance, EC2 says it is no longer
//     running (the dead-host rule takes it from EC2's events), or none of
//     the cluster's volumes is attached to it: nothing to fence;
//   - EC2 has reported its status check impaired for HungThreshold: it is
//     hung. With HungAction stop, tether stops it (StopInstances, force:
//     the guest could not flush anyway) and the volumes move once EC2 says
//     stopped. Otherwise it stays fenced: counted (HungHostsFenced),
//     alarmed, and the waiting tasks say so; a person decides;
//   - WatchLimit passes while EC2 reports it healthy: fenced likewise.
func (c *Core) watch(ctx context.Context, w reconcile.HostWatch) error {
	if w.Cluster != c.cfg.Cluster {
		return notTethers("watch of cluster %q, this deployment serves %q", w.Cluster, c.cfg.Cluster)
	}
	log := c.log.With("instance", w.InstanceID, "watchingSince", w.Since.UTC().Format(time.RFC3339))
	now := c.now()

	in, err := c.cloud.Instance(ctx, w.InstanceID)
	switch {
	case errors.Is(err, cloud.ErrNotFound):
		log.Info("watch ends: EC2 no longer knows the instance")
		return nil
	case err != nil:
		return err
	case in.State != "running":
		log.Info("watch ends: the instance is "+in.State+"; its volumes move on EC2's word", "state", in.State)
		return nil
	}
	ci, ok, err := c.containerInstance(ctx, w.InstanceID)
	switch {
	case err != nil:
		return err
	case !ok:
		log.Info("watch ends: ECS no longer has the instance in the cluster")
		return nil
	case ci.AgentConnected:
		log.Info("watch ends: the ECS agent is connected again", "containerInstance", ci.ARN)
		return nil
	}
	vols, err := c.cloud.InstanceVolumes(ctx, c.cfg.Cluster, w.InstanceID)
	if err != nil {
		return err
	}
	vols = attachedTo(vols, w.InstanceID)
	if len(vols) == 0 {
		log.Info("watch ends: none of the cluster's volumes is attached to the disconnected instance")
		return nil
	}
	log = log.With("containerInstance", ci.ARN, "volumeIds", volumeIDs(vols))
	h, err := c.act.InstanceHealth(ctx, w.InstanceID)
	if err != nil && !errors.Is(err, cloud.ErrNotFound) {
		return err
	}
	impaired := h.ImpairedFor(now)
	isImpaired := h.Impaired || h.SystemImpaired
	props := map[string]any{"instance": w.InstanceID, "volumeIds": volumeIDs(vols), "statusCheck": h.Summary}

	if isImpaired && impaired >= c.cfg.HungThreshold {
		why := fmt.Sprintf("ECS agent disconnected, EC2 status check impaired %s (threshold %s)", impaired.Round(time.Second), c.cfg.HungThreshold)
		props["why"] = why
		if c.cfg.HungAction == HungStop {
			err := c.act.StopInstance(ctx, w.InstanceID)
			if err != nil && !errors.Is(err, cloud.ErrIncorrectState) {
				return err
			}
			log.Warn("hung host: stopping it (force) so that EC2 says stopped and its volumes can move", "why", why, "error", err)
			if c.firstTime(w.InstanceID, "stopped") {
				c.emit(props, emf.Metric{Name: MetricHungHostsStopped, Value: 1, Unit: emf.Count})
			}
			return nil
		}
		log.Error("hung host: its volumes stay fenced (HungHostAction none): stop the instance, or release them with tether release --force", "why", why)
		c.fenced(w.InstanceID, props)
		return nil
	}
	if now.Sub(w.Since) >= c.cfg.WatchLimit {
		props["why"] = "ECS agent disconnected; EC2 reports the instance " + h.Summary
		log.Error("disconnected host EC2 reports healthy: its volumes stay fenced; a person decides", "statusCheck", h.Summary, "watched", now.Sub(w.Since).Round(time.Second).String())
		c.fenced(w.InstanceID, props)
		return nil
	}
	next := c.cfg.WatchPoll
	if isImpaired {
		next = min(next, max(c.cfg.HungThreshold-impaired, time.Second))
	}
	log.Info("ECS agent disconnected with tether volumes attached: looking again", "statusCheck", h.Summary,
		"impairedFor", impaired.Round(time.Second).String(), "threshold", c.cfg.HungThreshold.String(), "next", next.String())
	body, err := eventsrc.EncodeWatch(w)
	if err != nil {
		return err
	}
	return c.later(ctx, body, next)
}

func (c *Core) fenced(instance string, props map[string]any) {
	if c.firstTime(instance, "fenced") {
		c.emit(props, emf.Metric{Name: MetricHungHostsFenced, Value: 1, Unit: emf.Count})
	}
}
