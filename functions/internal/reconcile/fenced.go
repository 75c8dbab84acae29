package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
)

// reasonHostFenced: the volume is held on an instance whose ECS agent is
// gone while EC2 does not say it stopped (a hung host): tether never
// forces it, so the waiting task is stopped with the facts.
const reasonHostFenced = "host-fenced"

// HealthReader is EC2's word on an instance's status checks
// (cloud.Hosts); optional: without it a fenced host's reason lacks them.
type HealthReader interface {
	InstanceHealth(ctx context.Context, id string) (cloud.InstanceHealth, error)
}

// fencedHolder: a started task that holds the volume runs, for ECS, on an
// instance whose ECS agent is disconnected. ECS keeps such tasks RUNNING
// (it cannot stop them) and its service never replaces them, so waiting
// for the holder to stop would wait forever. EC2 decides:
//   - stopped or terminated: ECS stops the tasks of a stopped or
//     terminated instance ("Amazon ECS events"); the volume moves once it
//     has (release.go forces the detach on EC2's word);
//   - stopping or shutting-down: on its way there;
//   - running: a host that may be hung. tether never forces it: the
//     volume stays fenced there, and the waiting tasks are stopped past
//     Timing.WaitDeadline with the facts (the agent, EC2's status checks)
//     and the ways out (stop the instance, or an operator's release).
//
// ok false: the holder's agent is connected (or ECS forgot the instance,
// and stops its tasks itself): the ordinary waits apply.
func (p *pass) fencedHolder(ctx context.Context, waiting []need, holder cloud.Task) (Result, bool, error) {
	if holder.ContainerInstanceARN == "" || !p.waitedLong(waiting) {
		return Result{}, false, nil
	}
	ci, err := p.containerInstance(ctx, holder.ContainerInstanceARN)
	if err != nil {
		return Result{}, false, err
	}
	if ci.AgentConnected || ci.Gone() || ci.EC2InstanceID == "" {
		return Result{}, false, nil
	}
	inst := ci.EC2InstanceID
	in, halted, err := p.hostState(ctx, inst)
	if err != nil {
		return Result{}, false, err
	}
	log := p.log.With("task", holder.ARN, "instance", inst, "containerInstance", ci.ARN, "instanceState", in.State)
	var reason string
	switch {
	case halted || in.Halting():
		log.Info("the holder's instance is leaving; waiting for ECS to stop its task there")
		reason = fmt.Sprintf("volume %s waits for ECS to stop task %s on instance %s, which EC2 says is %s", p.key.Volume, taskID(holder.ARN), inst, in.State)
	default:
		reason = p.fencedReason(ctx, inst, in.State)
		log.Warn("volume fenced on a host whose ECS agent is disconnected; tether never forces a live host", "reason", reason)
	}
	res, err := p.waitOrStop(ctx, waiting, reasonHostFenced, reason, p.r.t.ConflictWait, hint{})
	return res, true, err
}

// waitedLong: a waiting task was created a third of Timing.WaitDeadline
// ago or more. A handoff whose holder stops as asked is done by then (its
// STOPPED event moves the key on), so only a slow one pays for asking ECS
// about the holder's instance, still well before the deadline the reason
// is for.
func (p *pass) waitedLong(waiting []need) bool {
	for _, n := range waiting {
		if p.now.Sub(n.task.CreatedAt) >= p.r.t.WaitDeadline/3 {
			return true
		}
	}
	return false
}

// fencedReason says what holds the volume and what EC2 says of the host.
func (p *pass) fencedReason(ctx context.Context, inst, state string) string {
	status := "EC2: " + state
	if p.r.health != nil {
		h, err := p.r.health.InstanceHealth(ctx, inst)
		switch {
		case errors.Is(err, cloud.ErrNotFound):
		case err != nil:
			p.log.Warn("could not read the instance's status checks", "instance", inst, "error", err)
		case h.Impaired || h.SystemImpaired:
			status += fmt.Sprintf(", status check impaired %s", h.ImpairedFor(p.now).Round(time.Second))
		case h.Summary != "":
			status += ", status checks " + h.Summary
		}
	}
	// Within ECS's 255 characters: what holds the volume, the facts, the
	// ways out (the holding task is in the log).
	return fmt.Sprintf("volume %s is held by instance %s, whose ECS agent is disconnected (%s); tether never forces a live host: stop the instance (the volume then moves) or tether release --force",
		p.key.Volume, inst, status)
}
