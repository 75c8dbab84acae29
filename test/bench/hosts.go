package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/tether-ecs/tether/test/world/autoscalingsim"
	"github.com/tether-ecs/tether/test/world/world"
)

// Hosts that go away (issue 13): how long a volume takes to follow its
// task when its host leaves the ways hosts leave, against a drain in the
// same world.

// HostsConfig describes the hosts run.
type HostsConfig struct {
	// Handoffs of each kind: drains and deaths; the scale-ins are one more
	// (the last one empties the group for the deaths that follow).
	Handoffs int
}

// HostsResult is the hosts run: its handoffs by how the host went, the
// container starts measured on the hosts that took them (for the floor),
// and what the world saw.
type HostsResult struct {
	ScaleIn, Drain, Dead RunResult
	ContainerStarts      []time.Duration
	Safety               Safety
}

// hostsGroup is the Auto Scaling group of the hosts run; tether's
// template puts its termination hook on it (AutoScalingGroupNames).
const hostsGroup = "bench-asg"

// hostsRun is the hosts run in progress.
type hostsRun struct {
	e   Env
	bw  *benchWorld
	asg *autoscaling.Client
	s   *Service
	res *HostsResult
}

// RunHosts moves one service's volume on real hosts, one handoff at a
// time, three ways, each to an instance launched for it (its container
// path warmed, nothing in flight):
//   - scale-in: the instance holding the task is the only member of an
//     Auto Scaling group with tether's termination hook; the group's
//     desired capacity goes 1 -> 0 and tether's hold drains it (EventBridge
//     lifecycle action -> the hosts function -> ECS drain) while Auto
//     Scaling waits; the replacement runs on an instance outside the group;
//   - drain: the group goes back to 1; the instance outside the group is
//     drained (as an operator does) and the task moves to the new member;
//   - dead host: the instance holding the task dies without any drain
//     (world.KillInstance: the host is gone, EC2 terminates it, shutting-down
//     for the profile's time, then releases its volumes; ECS stops the task
//     once it knows), and the replacement runs elsewhere with its data.
//
// Every handoff is timed from the act (SetDesiredCapacity, the drain, the
// death) to ECS reporting the replacement RUNNING, and its data (a mark
// written before) is read back on the new host.
func RunHosts(ctx context.Context, e Env, c HostsConfig) (res HostsResult, err error) {
	res.ScaleIn = RunResult{Name: "scale-in", Hosts: world.RealHosts, Calls: NewCalls()}
	res.Drain = RunResult{Name: "hosts-drain", Hosts: world.RealHosts, Calls: NewCalls()}
	res.Dead = RunResult{Name: "dead-host", Hosts: world.RealHosts, Calls: NewCalls()}
	bw, err := e.startWorld(ctx, "hosts", world.Options{
		Hosts:             world.RealHosts,
		AutoScalingGroups: []world.AutoScalingGroupOptions{{Name: hostsGroup, Desired: 1}},
		Parameters:        map[string]string{"AutoScalingGroupNames": hostsGroup},
	})
	if err != nil {
		return res, err
	}
	defer bw.close()
	defer func() {
		for _, r := range []*RunResult{&res.ScaleIn, &res.Drain, &res.Dead} {
			bw.finish(r)
		}
		res.Safety = bw.safety()
	}()
	if hooks := bw.W.Deployment().Hooks; len(hooks) != 1 {
		return res, fmt.Errorf("bench: tether's termination hooks %v, want one on %s", hooks, hostsGroup)
	}
	cfg := bw.W.AWSConfig()
	cfg.HTTPClient = bw.Fleet.Meter.Client()
	hr := &hostsRun{e: e, bw: bw, asg: autoscaling.NewFromConfig(cfg), res: &res}
	svcs, err := bw.Fleet.CreateServices(ctx, "hosts", 1, 1, 3*time.Minute)
	if err != nil {
		return res, err
	}
	hr.s = svcs[0]
	if members, err := bw.W.AutoScaling().InService(hostsGroup); err != nil || !slices.Equal(members, []string{hr.s.Instance}) {
		return res, fmt.Errorf("bench: the service runs on %s, the group's members are %v (%v)", hr.s.Instance, members, err)
	}
	e.Log.Info("service running on the group's member", "service", hr.s.Name, "volumeId", hr.s.VolumeID, "instance", hr.s.Instance)

	for i := range c.Handoffs + 1 {
		// Scale-in: the group's only member holds the task.
		member := hr.s.Instance
		to, err := hr.warmInstance(ctx)
		if err != nil {
			return res, err
		}
		h, err := hr.handoff(ctx, &res.ScaleIn, i, 6*time.Minute, func(ctx context.Context) error {
			_, err := hr.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
				AutoScalingGroupName: aws.String(hostsGroup), DesiredCapacity: aws.Int32(0)})
			return err
		})
		if err := failed(h, err); err != nil {
			return res, err
		}
		if h.NewInstance != to {
			e.Log.Warn("the replacement ran elsewhere than the instance launched for it", "run", "scale-in", "want", to, "got", h.NewInstance)
		}
		// The hold ends once the volume is off; Auto Scaling then lets
		// EC2 terminate the member (outside the time).
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		err = bw.W.WaitLifecycleState(wctx, member, autoscalingsim.StateTerminated)
		cancel()
		if err != nil {
			return res, err
		}
		if i == c.Handoffs {
			break // the group stays empty for the deaths
		}

		// Drain: a new member; the instance outside the group is drained.
		if _, err := hr.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
			AutoScalingGroupName: aws.String(hostsGroup), DesiredCapacity: aws.Int32(1)}); err != nil {
			return res, fmt.Errorf("bench: scale out: %w", err)
		}
		if _, err := hr.newMember(ctx); err != nil {
			return res, err
		}
		from := hr.s.Instance
		h, err = hr.handoff(ctx, &res.Drain, i, 4*time.Minute, func(ctx context.Context) error {
			return bw.Fleet.SetState(ctx, "DRAINING", from)
		})
		if err := failed(h, err); err != nil {
			return res, err
		}
	}

	for i := range c.Handoffs {
		// Dead host: no drain, no hook; the host is simply gone.
		holder := hr.s.Instance
		if _, err := hr.warmInstance(ctx); err != nil {
			return res, err
		}
		h, err := hr.handoff(ctx, &res.Dead, i, 8*time.Minute, func(ctx context.Context) error {
			return bw.W.KillInstance(ctx, holder)
		})
		if err := failed(h, err); err != nil {
			return res, err
		}
	}
	return res, nil
}

// warmInstance launches a real instance outside the group and starts one
// container there (a host in service has started containers before).
func (hr *hostsRun) warmInstance(ctx context.Context) (string, error) {
	in, err := hr.bw.W.LaunchInstance(ctx, world.LaunchOptions{})
	if err != nil {
		return "", err
	}
	return in.ID, hr.warm(ctx, in.ID)
}

func (hr *hostsRun) warm(ctx context.Context, id string) error {
	host, ok := hr.bw.W.RealHost(id)
	if !ok {
		return fmt.Errorf("bench: %s is not a real host", id)
	}
	_, err := ContainerStarts(ctx, host, 1)
	return err
}

// newMember waits (bounded) until the group has an InService member and
// warms it.
func (hr *hostsRun) newMember(ctx context.Context) (string, error) {
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		members, err := hr.bw.W.AutoScaling().InService(hostsGroup)
		if err != nil {
			return "", err
		}
		if len(members) == 1 {
			if _, err := hr.bw.W.Instance(members[0]); err == nil {
				return members[0], hr.warm(ctx, members[0])
			}
		}
		if err := sleep(wctx, 100*time.Millisecond); err != nil {
			return "", fmt.Errorf("bench: waited for a new member of %s: %w", hostsGroup, err)
		}
	}
}

// handoff writes a mark, waits for tether to be quiet, moves the service
// off its instance by act (bounded by bound), reads the mark back on the
// new host and times a few container starts there (the floor's).
func (hr *hostsRun) handoff(ctx context.Context, run *RunResult, i int, bound time.Duration, act func(context.Context) error) (Handoff, error) {
	bw, fleet, s := hr.bw, hr.bw.Fleet, hr.s
	token := newToken()
	if err := fleet.WriteMark(ctx, s, token); err != nil {
		return Handoff{}, err
	}
	if !bw.quiesce(ctx, time.Minute) {
		hr.e.Log.Warn("tether's queues still busy a minute before the handoff", "run", run.Name)
	}
	from := s.Instance
	win := bw.openWindow()
	hctx, cancel := context.WithTimeout(ctx, bound)
	hs, err := fleet.Move(hctx, []*Service{s}, []string{from}, act)
	cancel()
	if err != nil {
		return Handoff{}, err
	}
	if err := bw.closeWindow(ctx, win, time.Minute, run); err != nil {
		return Handoff{}, err
	}
	h := &hs[0]
	fleet.Verify(ctx, h, token)
	run.Handoffs = append(run.Handoffs, *h)
	hr.e.Log.Info("handoff", "run", run.Name, "n", i+1, "from", from, "to", h.NewInstance, "took", h.Duration().Round(time.Millisecond), "ok", h.OK(), "failure", h.Failure)
	if h.OK() {
		if host, ok := bw.W.RealHost(h.NewInstance); ok {
			starts, err := ContainerStarts(ctx, host, 3)
			if err != nil {
				return *h, err
			}
			hr.res.ContainerStarts = append(hr.res.ContainerStarts, starts...)
		}
	}
	return *h, nil
}

// failed is err, or the handoff's failure: the run cannot go on from a
// volume whose whereabouts it does not know.
func failed(h Handoff, err error) error {
	if err != nil || h.OK() {
		return err
	}
	return fmt.Errorf("bench: %s handoff off %s failed: %s", h.Service, h.OldInstance, h.Failure)
}

// Goals of issue 13.
const (
	// DeadHostGoal: a host that dies without a drain; the EBS CSI
	// driver's answer is its 6-minute force-detach timer.
	DeadHostGoal = "≤ 30 s (ebs-csi: 360 s)"
	// ScaleInGoal: tether's hold turns a scale-in into a drain.
	ScaleInGoal = "≈ 1 (a drain)"
)

// HostsRows adds dead_host_handoff_over_floor_s and scale_in_handoff_ratio
// and the hosts run's phases.
func HostsRows(r *Report, res HostsResult, floor Floor) {
	dead := res.Dead
	var gone, fromDeath, stopped []time.Duration
	for i, tl := range dead.Timelines {
		if i >= len(dead.Handoffs) || !dead.Handoffs[i].OK() {
			continue
		}
		if run, ok := tl.Offset(MarkRunning); ok {
			fromDeath = append(fromDeath, run)
			if !tl.HostGone.IsZero() {
				gone = append(gone, tl.At[MarkRunning].Sub(tl.HostGone))
			}
		}
		if d, ok := tl.Offset(MarkOldStopped); ok {
			stopped = append(stopped, d)
		}
	}
	if _, ok := dead.Median(); !ok || len(gone) == 0 {
		r.Add("dead_host_handoff_over_floor_s", "n/a", DeadHostGoal, fmt.Sprintf("%d of %d dead-host handoffs finished with their data, %d with EC2's terminated seen%s", len(dead.Durations()), len(dead.Handoffs), len(gone), reasons(dead)))
	} else {
		// From EC2's terminated: the first moment anything may move the
		// volume without the host (a shutting-down instance may still be
		// flushing it), so the first moment tether's speed counts.
		over := (Median(gone) - floor.Total()).Seconds()
		r.Results.DeadHostHandoffOverFloorS = Ptr(over)
		r.Add("dead_host_handoff_over_floor_s", fmt.Sprintf("%.1f", over), DeadHostGoal, fmt.Sprintf("median over the floor %s of %d handoffs (%s%s) each timed from EC2 reporting the dead instance terminated (no drain, no hook: world.KillInstance) to the replacement RUNNING with the mark written before read back on the new host",
			secs(floor.Total()), len(gone), durations(gone), failedNote(dead)))
		if len(fromDeath) > 0 {
			r.Add("  from the host's death", fmt.Sprintf("%.1f", (Median(fromDeath)-floor.Total()).Seconds()), "", fmt.Sprintf("the same handoffs timed from the death (TerminateInstances), over the floor (%s): adds EC2's shutting-down -> terminated (ec2sim.RealisticInstanceDists, median 30 s, p99 2 min: the EC2 user guide's \"a few minutes\"), which no tool can shorten safely",
				durations(fromDeath)))
		}
		if len(stopped) > 0 {
			r.Add("  old task STOPPED", secs(Median(stopped)), "", fmt.Sprintf("median from the death until ECS reports the old task STOPPED (%s), which it does once EC2 says terminated", durations(stopped)))
		}
	}
	sc, dr := res.ScaleIn, res.Drain
	scMed, ok1 := sc.Median()
	drMed, ok2 := dr.Median()
	if !ok1 || !ok2 {
		r.Add("scale_in_handoff_ratio", "n/a", ScaleInGoal, fmt.Sprintf("scale-in: %d of %d finished%s; drain: %d of %d finished%s",
			len(sc.Durations()), len(sc.Handoffs), reasons(sc), len(dr.Durations()), len(dr.Handoffs), reasons(dr)))
	} else {
		ratio := float64(scMed) / float64(drMed)
		r.Results.ScaleInHandoffRatio = Ptr(ratio)
		r.Add("scale_in_handoff_ratio", Ratio(ratio), ScaleInGoal, fmt.Sprintf("median %s of %d scale-ins through tether's termination hook (SetDesiredCapacity 1 -> 0 of a group whose only member holds the task; %s%s) / median %s of %d drains in the same world (%s%s)",
			secs(scMed), len(sc.Handoffs), durations(sc.Durations()), failedNote(sc), secs(drMed), len(dr.Handoffs), durations(dr.Durations()), failedNote(dr)))
		if a, b := drawnRatio(sc, floor), drawnRatio(dr, floor); a > 0 && b > 0 {
			r.Add("  vs this run's draws", Ratio(a/b), "", "the same ratio with each handoff first divided by the detach and attach the world drew for it (+ the floor's SSM command and container start): the realistic profile's detach tail (p99 20 s) weighs on a few handoffs")
		}
		var drained []time.Duration
		for _, tl := range sc.Timelines {
			if d, ok := tl.Offset(MarkStopRequested); ok {
				drained = append(drained, d)
			}
		}
		if len(drained) > 0 {
			r.Add("  where the time goes", secs(Median(drained)), "", fmt.Sprintf("median from SetDesiredCapacity until ECS asks the old task to stop (%s): Auto Scaling's lifecycle action, its EventBridge event, the hosts function's drain; the rest is a drain's", durations(drained)))
		}
	}
	for _, run := range []RunResult{sc, dr, dead} {
		if len(run.Handoffs) == 0 {
			continue
		}
		var each strings.Builder
		for i, tl := range run.Timelines {
			fmt.Fprintf(&each, "  #%d %s%s: %s\n", i+1, secs(run.Handoffs[i].Duration()), failureNote(run.Handoffs[i]), tl.Line())
		}
		r.Phases = append(r.Phases, fmt.Sprintf("phases of the %s handoffs (real hosts; \"drain\" is the act: SetDesiredCapacity, the drain, or the death):\n%s  each handoff, seconds from the act:\n%s  the functions' warnings and errors meanwhile:\n%s",
			run.Name, Summarize(run.Timelines).Format("  "), each.String(), FormatFindings(run.Findings, 8, "  ")))
	}
}

// reasons lists why a run's handoffs failed ("" when none did).
func reasons(run RunResult) string {
	var out []string
	for _, h := range run.Handoffs {
		if !h.OK() {
			out = append(out, h.Failure)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "; failed: " + strings.Join(out, "; ")
}

// drawnRatio is the median of a run's handoffs each over its drawn floor
// (0 when none has one).
func drawnRatio(run RunResult, floor Floor) float64 {
	var rs []float64
	for i, tl := range run.Timelines {
		if f, ok := drawnFloor(tl, floor); ok && run.Handoffs[i].OK() {
			rs = append(rs, float64(run.Handoffs[i].Duration())/float64(f))
		}
	}
	if len(rs) == 0 {
		return 0
	}
	slices.Sort(rs)
	if n := len(rs); n%2 == 0 {
		return (rs[n/2-1] + rs[n/2]) / 2
	}
	return rs[len(rs)/2]
}
