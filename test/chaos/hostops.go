package chaos

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/tether-ecs/tether/test/world/world"
)

// Hosts that go away (issue 13), the opt-in kinds: the world gets an Auto
// Scaling group of Spot Instances, one member per AZ, that carries
// tether's termination hook (AutoScalingGroupNames), and tether is
// deployed with HungHostAction stop. Its members leave three ways:
//   - scale-in: TerminateInstanceInAutoScalingGroup with
//     ShouldDecrementDesiredCapacity (a scale-in of the member the schedule
//     picked): Auto Scaling holds it in Terminating:Wait, tether drains it
//     and completes the lifecycle action once none of its volumes is on
//     it; EC2 then terminates it. The invariant: when EC2 terminated it,
//     the only volume it released was the instance's own root volume
//     (hold-let-go);
//   - spot-interrupt: EC2's Spot interruption warning (two minutes, in the
//     world's time), then EC2 terminates the member; Auto Scaling
//     replaces it;
//   - hang-member: the member hangs (EC2 says running, its agents are
//     silent, its status check impaired two seconds later); tether's hung
//     watch stops it (the opt-in), its volumes move on EC2's word; Auto
//     Scaling replaces it (a member that leaves running, or whose status
//     stays impaired).
//
// launch-member, a few operations later, sets the group's desired capacity
// back to its size (Auto Scaling launches what a scale-in took); members
// Auto Scaling launched on its own join the schedule's model when they are
// seen. Their timing is Auto Scaling's, so a run with these kinds replays
// its draws but not always the same targets.

// chaosGroup is the run's Auto Scaling group.
const chaosGroup = "chaos-asg"

// chaosTagKey scopes tether to the cluster's instances (InstanceTagKey,
// which HungHostAction stop needs); every instance carries it.
const chaosTagKey = "tether-chaos-cluster"

// rootVolumes is how many volumes of its own every world instance has:
// its root volume (ec2sim launches each with one, DeleteOnTermination).
const rootVolumes = 1

// hostsWorld adds the group and tether's parameters for the opt-in kinds.
func hostsWorld(o *world.Options, cfg Config) {
	cluster := o.Cluster
	if cluster == "" {
		cluster = "default" // world.Options' default
	}
	tags := map[string]string{chaosTagKey: cluster}
	o.InstanceTags = tags
	o.AutoScalingGroups = []world.AutoScalingGroupOptions{{Name: chaosGroup, Desired: cfg.AZs, Max: cfg.AZs + 2, Spot: true, Tags: tags}}
	o.Parameters = map[string]string{
		"AutoScalingGroupNames": chaosGroup, "HungHostAction": "stop", "HungHostThresholdSeconds": "0", "InstanceTagKey": chaosTagKey,
	}
}

// isMember: the instance is one of the group's (false without a group).
func (s *schedule) isMember(id string) bool {
	if !s.cfg.hostsGoAway() || s.w.AutoScaling() == nil {
		return false
	}
	_, err := s.w.AutoScaling().Instance(id)
	return err == nil
}

// adopt adds to the model the instances Auto Scaling launched on its own
// (a replacement) once they run and ECS has them.
func (s *schedule) adopt() {
	if !s.cfg.hostsGoAway() {
		return
	}
	for _, in := range s.w.Instances() {
		if s.instanceModel(in.ID) != nil || in.ContainerInstanceArn == "" {
			continue
		}
		if st, err := s.w.EC2().InstanceState(in.ID); err != nil || st != "running" {
			continue
		}
		s.inst = append(s.inst, &instModel{id: in.ID, az: in.AZ, arn: in.ContainerInstanceArn, state: instActive, member: s.isMember(in.ID)})
		s.note(OpLaunchMember, in.ID, "new member seen", "az", in.AZ)
	}
}

// chooseHostGoes picks the member of one of issue 13's kinds.
func (s *schedule) chooseHostGoes(ctx context.Context, kind OpKind) (string, func() error) {
	in := s.pickInstance(func(in *instModel) bool { return in.member && in.clean() && s.inAZ(in.az, instActive) >= 2 })
	if in == nil {
		return "", nil
	}
	switch kind {
	case OpScaleIn:
		return in.id, func() error {
			s.watch.hold(in.id)
			err := retrying(ctx, "scale in "+in.id, func(ctx context.Context) error {
				_, err := s.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
					InstanceId: aws.String(in.id), ShouldDecrementDesiredCapacity: aws.Bool(true)})
				return err
			})
			if err != nil {
				return err
			}
			in.state = instDead
			s.later(OpLaunchMember, chaosGroup, 4, 12)
			return nil
		}
	case OpSpotInterrupt:
		return in.id, func() error {
			if _, err := s.w.SpotInterrupt(ctx, in.id, "terminate"); err != nil {
				return err
			}
			in.state = instDead
			s.later(OpLaunchMember, chaosGroup, 4, 12)
			return nil
		}
	case OpHangMember:
		stopOne := s.rng.IntN(2) == 0
		return in.id, func() error {
			if stopOne {
				s.stopTaskOn(ctx, kind, in.id)
			}
			if err := s.w.HangInstance(ctx, in.id, 2*time.Second); err != nil {
				return err
			}
			// The hung guest's mounts die with it when tether's opt-in stop
			// (or Auto Scaling's health check after it) ends the instance:
			// their unclean detaches are that death's. A force detach while
			// EC2 still says running is the fences' violation, not excused here.
			s.watch.died(in.id, "hang", s.watch.volumesOn(in.id))
			in.state = instDead
			s.later(OpLaunchMember, chaosGroup, 4, 12)
			return nil
		}
	}
	return "", nil
}

// launchMember sets the group's desired capacity back to its size.
func (s *schedule) launchMember(ctx context.Context) error {
	g, err := s.w.AutoScaling().Group(chaosGroup)
	if err != nil {
		return err
	}
	if g.Desired >= s.cfg.AZs {
		return nil // Auto Scaling replaced it on its own
	}
	return retrying(ctx, "scale out "+chaosGroup, func(ctx context.Context) error {
		_, err := s.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
			AutoScalingGroupName: aws.String(chaosGroup), DesiredCapacity: aws.Int32(int32(s.cfg.AZs))})
		return err
	})
}

// releases is a slog handler on the world's log that keeps EC2's word on
// each terminated instance: how many volumes it released.
type releases struct {
	mu  sync.Mutex
	got []released
}

type released struct {
	instance string
	volumes  int
}

// releasedMsg is ec2sim's line when a terminated instance's volumes are
// released (lifecycle.go).
const releasedMsg = "terminated instance's volumes released"

// Enabled: ec2sim logs the release at Info.
func (r *releases) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (r *releases) WithAttrs([]slog.Attr) slog.Handler           { return r }
func (r *releases) WithGroup(string) slog.Handler                { return r }
func (r *releases) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != releasedMsg {
		return nil
	}
	var e released
	e.volumes = -1
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "instance":
			e.instance = a.Value.String()
		case "volumes":
			if n, err := strconv.Atoi(a.Value.String()); err == nil {
				e.volumes = n
			}
		}
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, e)
	return nil
}

// since returns the releases from index i on.
func (r *releases) since(i int) []released {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i >= len(r.got) {
		return nil
	}
	return append([]released(nil), r.got[i:]...)
}

// watch hands the releases to the watcher.
func (r *releases) watch(wt *watcher) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	wt.rel = r
}

// hold notes that the instance leaves through tether's termination hook.
func (wt *watcher) hold(id string) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	wt.held[id] = true
}

// checkReleasesLocked: an instance tether held on its way out (scale-in)
// was terminated with nothing of tether's on it: EC2 released only its
// root volume.
func (wt *watcher) checkReleasesLocked(rs []released) {
	for _, r := range rs {
		wt.relSeen++
		if !wt.held[r.instance] {
			continue
		}
		if r.volumes > rootVolumes {
			wt.violateLocked("hold-let-go", "", "%s was terminated after its scale-in with %d volumes attached besides its root volume: tether's hold was to keep it until its volumes were off",
				r.instance, r.volumes-rootVolumes)
			continue
		}
		wt.outcomes["scale-in members terminated with only their own volume"]++
	}
}
