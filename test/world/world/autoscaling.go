package world

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tether-ecs/tether/test/world/autoscalingsim"
	"github.com/tether-ecs/tether/test/world/ec2sim"
)

// Hosts that go away (issue 13): an Auto Scaling group's instances are
// world instances (a host registered with EC2, SSM and ECS) that the
// world's Auto Scaling launches and terminates; ScaleIn takes instances out
// through the group's termination hooks; SpotInterrupt reclaims a Spot
// Instance with EC2's two-minute warning; StopInstance, KillInstance and
// HangInstance (instances.go) are the other ways a host goes.

// AutoScalingGroupOptions describe a group the world creates.
type AutoScalingGroupOptions struct {
	Name              string
	Min, Max, Desired int // Max defaults to Desired (and at least Min)
	// Spot: the group's launch template asks for Spot Instances.
	Spot bool
	// AZs default to every zone of the world.
	AZs []string
	// Cluster its instances join (default the world's cluster).
	Cluster string
	// Hooks exist before the first launch (LifecycleHookSpecificationList),
	// e.g. {Name: "tether", Transition: autoscalingsim.TransitionTerminating,
	// Heartbeat: 300, DefaultResult: "CONTINUE"}.
	Hooks               []autoscalingsim.HookSpec
	TerminationPolicies []string
	// Tags are propagated to the instances at launch (CreateAutoScalingGroup
	// Tags with PropagateAtLaunch, Auto Scaling API reference), e.g. the
	// cluster's InstanceTagKey.
	Tags map[string]string
}

// CreateAutoScalingGroup defines the group's launch template (named
// <group>-template) and the group, and returns once its desired instances
// are InService (bounded by ctx; a launch hook holds them in Pending:Wait
// until someone completes it, so with one, it returns once they are
// launched).
func (w *World) CreateAutoScalingGroup(ctx context.Context, o AutoScalingGroupOptions) error {
	if o.Cluster == "" {
		o.Cluster = w.opts.Cluster
	}
	if o.Max == 0 {
		o.Max = max(o.Desired, o.Min)
	}
	for _, az := range o.AZs {
		if !slices.Contains(w.opts.azs(), az) {
			return fmt.Errorf("world: group %s: AZ %q is not one of %v", o.Name, az, w.opts.azs())
		}
	}
	lt, err := w.asg.AddLaunchTemplate(autoscalingsim.LaunchTemplate{Name: o.Name + "-template", Spot: o.Spot, Cluster: o.Cluster})
	if err != nil {
		return fmt.Errorf("world: group %s: %w", o.Name, err)
	}
	if err := w.asg.CreateGroup(autoscalingsim.GroupSpec{Name: o.Name, Template: lt.Name, Min: o.Min, Max: o.Max, Desired: o.Desired,
		AZs: o.AZs, Hooks: o.Hooks, TerminationPolicies: o.TerminationPolicies, Tags: o.Tags}); err != nil {
		return fmt.Errorf("world: group %s: %w", o.Name, err)
	}
	w.log.Info("auto scaling group created", "group", o.Name, "desired", o.Desired, "spot", o.Spot, "cluster", o.Cluster, "hooks", len(o.Hooks))
	launchHook := false
	for _, h := range o.Hooks {
		launchHook = launchHook || h.Transition == autoscalingsim.TransitionLaunching
	}
	return w.waitGroup(ctx, o.Name, fmt.Sprintf("%d instances launched", o.Desired), func(g autoscalingsim.GroupInfo) bool {
		n := 0
		for _, in := range g.Instances {
			if in.LifecycleState == autoscalingsim.StateInService || (launchHook && in.LifecycleState == autoscalingsim.StatePendingWait) {
				n++
			}
		}
		return n == o.Desired && g.Launching == 0
	})
}

// waitGroup polls the group (bounded by ctx) until ok, logging what it
// waits for.
func (w *World) waitGroup(ctx context.Context, name, what string, ok func(autoscalingsim.GroupInfo) bool) error {
	w.log.Info("waiting for auto scaling group", "group", name, "for", what)
	for {
		g, err := w.asg.Group(name)
		if err != nil {
			return fmt.Errorf("world: %w", err)
		}
		if ok(g) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("world: group %s: waited for %s: %w (now %+v)", name, what, ctx.Err(), g.Instances)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// launchForGroup is the world's Auto Scaling Launcher: a world instance in
// the requested zone, Spot if the template says so, joining the template's
// cluster, tagged as Auto Scaling tags it.
func (w *World) launchForGroup(ctx context.Context, r autoscalingsim.LaunchRequest) (string, error) {
	in, err := w.LaunchInstance(ctx, LaunchOptions{AZ: r.AZ, Cluster: r.Template.Cluster, Spot: r.Template.Spot, Tags: r.Tags})
	if err != nil {
		return "", err
	}
	return in.ID, nil
}

// ScaleIn lowers the group's desired capacity by n (as SetDesiredCapacity
// would) and returns the instances its termination policy picked; they go
// through the group's termination hooks (Terminating:Wait until the
// lifecycle action completes or times out), then EC2 terminates them.
func (w *World) ScaleIn(ctx context.Context, group string, n int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ids, err := w.asg.ScaleIn(group, n)
	if err != nil {
		return nil, fmt.Errorf("world: scale in: %w", err)
	}
	w.log.Info("scale in", "group", group, "by", n, "instances", ids)
	return ids, nil
}

// SpotNotice is EC2's two-minute Spot interruption notice in this world's
// time.
func (w *World) SpotNotice() time.Duration {
	return time.Duration(float64(ec2sim.SpotNotice) * w.opts.timeScale())
}

// ErrNotSpot: SpotInterrupt was asked of an On-Demand instance.
var ErrNotSpot = errors.New("not a Spot Instance")

// SpotInterrupt reclaims a running Spot Instance as EC2 does: the "EC2
// Instance Rebalance Recommendation" and "EC2 Spot Instance Interruption
// Warning" (instance-action terminate or stop) now, and SpotNotice later
// EC2 stops or terminates it (its agents go, ECS and Auto Scaling follow
// as for any stop or termination). It returns when the interruption is
// due, without waiting for it.
func (w *World) SpotInterrupt(ctx context.Context, id, action string) (time.Time, error) {
	in, err := w.Instance(id)
	if err != nil {
		return time.Time{}, err
	}
	if !in.Spot {
		return time.Time{}, fmt.Errorf("world: spot interrupt %s: %w", id, ErrNotSpot)
	}
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	due, err := w.ec2.InterruptSpotInstance(id, action, w.SpotNotice())
	if err != nil {
		return time.Time{}, fmt.Errorf("world: spot interrupt: %w", err)
	}
	w.log.Warn("spot interruption", "instance", id, "action", action, "due", due.Format(time.RFC3339Nano), "notice", w.SpotNotice())
	return due, nil
}

// WaitLifecycleState waits (bounded by ctx) until Auto Scaling reports the
// instance in state (Terminating:Wait, Terminated...).
func (w *World) WaitLifecycleState(ctx context.Context, id, state string) error {
	w.log.Info("waiting for lifecycle state", "instance", id, "state", state)
	for {
		in, err := w.asg.Instance(id)
		if err == nil && in.LifecycleState == state {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("world: %s: waited for lifecycle state %s: %w (now %q, %v)", id, state, ctx.Err(), in.LifecycleState, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
