package hosts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/emf"
	"github.com/tether-ecs/tether/functions/internal/eventsrc"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// The termination hold. Auto Scaling holds a terminating instance for
// tether's hook (Terminating:Wait) until tether completes the action or
// the hook's heartbeat timeout passes (the template's hook then applies
// CONTINUE, its DefaultResult). One pass of a hold:
//
//  1. EC2 says the instance is no longer running (a Spot Instance EC2
//     interrupted, an instance stopped or terminated meanwhile): nothing
//     can be unmounted there any more; CONTINUE now, the volumes are the
//     dead-host rule's.
//  2. The first pass drains its container instance in ECS: its service
//     tasks stop and are placed elsewhere, and their STOPPED events move
//     the volumes (unmount, detach, attach, mount) as in any drain.
//  3. EC2 says none of the cluster's volumes is attached to it any more:
//     CONTINUE. This is the hold's purpose: the instance terminates only
//     after its volumes are off.
//  4. Past the deadline: CONTINUE anyway, counted (HoldsTimedOut) and
//     alarmed; the volumes stay and move once EC2 says terminated.
//  5. Its ECS agent is disconnected and EC2 has reported its status check
//     impaired past the hung threshold: it cannot unmount; CONTINUE, and
//     the termination is the fence.
//  6. Otherwise heartbeat the hook and send the next pass to the hosts
//     queue, HoldPoll later.
//
// Every step is safe to repeat: a duplicate or late event starts a second
// chain, which ends at its first heartbeat or completion, when Auto
// Scaling answers that the action is no longer active.

func (c *Core) hold(ctx context.Context, h reconcile.TerminationHold) error {
	log := c.log.With("instance", h.InstanceID, "group", h.Group, "hook", h.Hook, "holdPass", h.Passes)
	if c.cfg.HookName == "" || h.Hook != c.cfg.HookName {
		return notTethers("lifecycle action of hook %q, not this deployment's (%q)", h.Hook, c.cfg.HookName)
	}
	action := cloud.LifecycleAction{Group: h.Group, Hook: h.Hook, InstanceID: h.InstanceID, Token: h.Token}
	now := c.now()
	waited := now.Sub(h.Started)

	in, err := c.cloud.Instance(ctx, h.InstanceID)
	switch {
	case errors.Is(err, cloud.ErrNotFound):
		return c.complete(ctx, log, action, h, "EC2 no longer knows the instance", false)
	case err != nil:
		return c.holdAgain(ctx, log, h, err)
	case in.State != "running" && in.State != "pending":
		return c.complete(ctx, log, action, h, "the instance is already "+in.State+": its volumes move on EC2's word", false)
	}

	if h.Passes == 0 {
		if err := c.drain(ctx, log, h.InstanceID, "termination lifecycle action"); err != nil {
			return c.holdAgain(ctx, log, h, err)
		}
	}

	vols, err := c.cloud.InstanceVolumes(ctx, c.cfg.Cluster, h.InstanceID)
	if err != nil {
		return c.holdAgain(ctx, log, h, err)
	}
	vols = attachedTo(vols, h.InstanceID)
	if len(vols) == 0 {
		return c.complete(ctx, log, action, h, "none of the cluster's volumes is attached to it", false)
	}
	log = log.With("volumeIds", volumeIDs(vols))
	if waited >= c.cfg.HoldDeadline {
		return c.complete(ctx, log, action, h, fmt.Sprintf("deadline: volumes still attached after %s", waited.Round(time.Second)), true)
	}
	if hung, why, err := c.hung(ctx, h.InstanceID); err != nil {
		return c.holdAgain(ctx, log, h, err)
	} else if hung {
		return c.complete(ctx, log, action, h, "the host is hung ("+why+"): it cannot unmount; the termination is the fence", false)
	}

	if err := c.act.RecordHeartbeat(ctx, action); errors.Is(err, cloud.ErrNotFound) {
		log.Info("lifecycle action no longer active (completed by another pass, or timed out): hold ends", "error", err)
		return nil
	} else if err != nil {
		return c.holdAgain(ctx, log, h, err)
	}
	next := min(c.cfg.HoldPoll, max(c.cfg.HoldDeadline-waited, time.Second))
	log.Info("holding the instance's termination: the cluster's volumes are still attached", "waited", waited.Round(time.Millisecond).String(),
		"deadline", c.cfg.HoldDeadline.String(), "next", next.String())
	h.Passes++
	return c.sendHold(ctx, h, next)
}

// holdAgain: a pass could not decide (AWS failed after the SDK's retries,
// or throttled): the next pass comes soon, so the hook is heartbeated in
// time; the chain is bounded by the deadline and, past it, by the hook's
// own timeout (its DefaultResult is CONTINUE).
func (c *Core) holdAgain(ctx context.Context, log *slog.Logger, h reconcile.TerminationHold, cause error) error {
	if c.now().Sub(h.Started) >= c.cfg.HoldDeadline+c.cfg.HoldDeadline/2 {
		log.Error("hold gives up: AWS keeps failing past the deadline; the hook's own timeout continues the termination", "error", cause)
		return nil
	}
	log.Warn("hold pass failed; trying again", "error", cause)
	h.Passes++
	return c.sendHold(ctx, h, c.cfg.HoldPoll)
}

func (c *Core) sendHold(ctx context.Context, h reconcile.TerminationHold, after time.Duration) error {
	body, err := eventsrc.EncodeHold(h)
	if err != nil {
		return err
	}
	return c.later(ctx, body, after)
}

// complete ends the hold with CONTINUE. An action Auto Scaling no longer
// has (completed by another pass, timed out) is not counted again.
func (c *Core) complete(ctx context.Context, log *slog.Logger, a cloud.LifecycleAction, h reconcile.TerminationHold, why string, timedOut bool) error {
	err := c.act.CompleteLifecycleAction(ctx, a, cloud.LifecycleContinue)
	if errors.Is(err, cloud.ErrNotFound) {
		log.Info("lifecycle action no longer active: nothing to complete", "why", why, "error", err)
		return nil
	}
	if err != nil {
		return c.holdAgain(ctx, log, h, err)
	}
	took := c.now().Sub(h.Started)
	props := map[string]any{"instance": h.InstanceID, "group": h.Group, "why": why}
	ms := []emf.Metric{{Name: MetricHoldDuration, Value: float64(took.Milliseconds()), Unit: emf.Milliseconds}}
	if timedOut {
		ms = append(ms, emf.Metric{Name: MetricHoldsTimedOut, Value: 1, Unit: emf.Count})
		log.Error("termination hold timed out: CONTINUE with tether volumes still attached; they move once EC2 says the instance is terminated", "why", why, "held", took.String())
	} else {
		log.Info("termination hold done: CONTINUE", "why", why, "held", took.String())
	}
	c.emit(props, ms...)
	return nil
}

// drain sets the instance's container instance DRAINING if it is this
// cluster's and ACTIVE (a repeated drain changes nothing).
func (c *Core) drain(ctx context.Context, log *slog.Logger, instance, why string) error {
	ci, ok, err := c.containerInstance(ctx, instance)
	if err != nil || !ok {
		if !ok && err == nil {
			log.Info("not a container instance of the cluster: nothing to drain")
		}
		return err
	}
	if ci.Status != "ACTIVE" {
		log.Info("container instance already "+ci.Status, "containerInstance", ci.ARN)
		return nil
	}
	if err := c.act.DrainContainerInstance(ctx, c.cfg.Cluster, ci.ARN); err != nil && !errors.Is(err, cloud.ErrNotFound) {
		return err
	}
	log.Warn("container instance set to DRAINING", "containerInstance", ci.ARN, "why", why)
	return nil
}

// hung: the instance's ECS agent is disconnected and EC2 has reported its
// status check impaired for at least the threshold. why says so.
func (c *Core) hung(ctx context.Context, instance string) (bool, string, error) {
	ci, ok, err := c.containerInstance(ctx, instance)
	if err != nil || !ok || ci.AgentConnected {
		return false, "", err
	}
	h, err := c.act.InstanceHealth(ctx, instance)
	if errors.Is(err, cloud.ErrNotFound) {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	impaired := h.ImpairedFor(c.now())
	if !(h.Impaired || h.SystemImpaired) || impaired < c.cfg.HungThreshold {
		return false, "", nil
	}
	return true, fmt.Sprintf("ECS agent disconnected, EC2 status check impaired %s", impaired.Round(time.Second)), nil
}
