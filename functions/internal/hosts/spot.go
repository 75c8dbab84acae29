package hosts

import (
	"context"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// interrupted: EC2 stops or terminates a Spot Instance two minutes after
// its warning, and Auto Scaling's termination hook fires only once EC2 has
// interrupted it. So the warning drains the instance in ECS at once: its
// service tasks stop and are placed elsewhere while the host still
// answers, and their volumes move cleanly (the ECS drain's own events do
// the rest, as for any drain). ECS's own Spot draining
// (ECS_ENABLE_SPOT_INSTANCE_DRAINING) does the same from the host; both
// together are harmless.
func (c *Core) interrupted(ctx context.Context, t reconcile.HostInterrupted) error {
	log := c.log.With("instance", t.InstanceID, "spotAction", t.Action)
	log.Warn("Spot interruption warning: EC2 takes the instance back in two minutes")
	return c.drain(ctx, log, t.InstanceID, "EC2 Spot Instance Interruption Warning ("+t.Action+")")
}
