package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/tether-ecs/tether/internal/volspec"
	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/world"
)

// AZ moves by snapshot (driverOpt azmove=snapshot): a shared volume whose
// next task is placed in another availability zone is snapshotted, a
// volume is made from the snapshot there, attached and mounted.

// AZMoveConfig describes the azmove run.
type AZMoveConfig struct {
	// SizesGiB: one service per size, each moved once, one at a time.
	SizesGiB []int
	// Bound is the longest one move is waited for.
	Bound time.Duration
}

// AZMove is one service's move: its volume's size, when the drain that
// placed its task in the other AZ was issued, when ECS reported the
// replacement RUNNING there and when the mark written before was read
// back on the new host (zero: not).
type AZMove struct {
	Service     string
	SizeGiB     int
	FromAZ      string
	ToAZ        string
	OldVolumeID string
	NewVolumeID string
	Drained     time.Time
	Running     time.Time
	Read        time.Time
	Failure     string
}

// OK: the replacement ran in the other AZ on a new volume and read the
// mark back.
func (m AZMove) OK() bool { return m.Failure == "" && !m.Read.IsZero() }

// Took is drain -> mark read back on the replacement's host.
func (m AZMove) Took() time.Duration { return m.Read.Sub(m.Drained) }

// AZMoveResult is the azmove run.
type AZMoveResult struct {
	Moves     []AZMove
	Snapshots int // CreateSnapshot calls the world answered
	Safety    Safety
}

// RunAZMove: a world of two real instances, one in each of two AZs. For
// each size, one at a time: the instance in the other AZ is set DRAINING,
// a service of one task (deploy 0/100) with a shared tether volume of that
// size and azmove=snapshot is created and runs on the one ACTIVE
// instance; a mark is written in its volume; once tether is quiet, the
// other instance is set ACTIVE and the task's instance DRAINING: ECS
// places the replacement in the other AZ and tether moves the volume
// there by snapshot. The move is timed from the drain to the mark read
// back on the new host. The service is then scaled to 0.
func RunAZMove(ctx context.Context, e Env, c AZMoveConfig) (res AZMoveResult, err error) {
	bw, err := e.startWorld(ctx, "azmove", world.Options{Hosts: world.RealHosts, Instances: 2, AZs: 2})
	if err != nil {
		return res, err
	}
	defer bw.close()
	defer func() {
		res.Snapshots = bw.W.Counts().Calls["ec2:CreateSnapshot"]
		res.Safety = bw.safety()
	}()
	ins := bw.W.Instances()
	if len(ins) != 2 || ins[0].AZ == ins[1].AZ {
		return res, fmt.Errorf("bench: want two instances in two AZs, have %+v", ins)
	}
	holder, other := ins[0], ins[1]
	for i, size := range c.SizesGiB {
		m, err := bw.azMove(ctx, i, size, holder, other, c.Bound)
		res.Moves = append(res.Moves, m)
		if err != nil {
			return res, err
		}
		if !m.OK() {
			return res, fmt.Errorf("bench: AZ move of %s (%d GiB): %s", m.Service, size, m.Failure)
		}
		e.Log.Info("azmove", "n", i+1, "service", m.Service, "sizeGiB", size, "from", m.FromAZ, "to", m.ToAZ,
			"newVolumeId", m.NewVolumeID, "took", m.Took().Round(time.Millisecond))
		holder, other = other, holder
	}
	return res, nil
}

// azMove creates the i-th service (sizeGiB) on holder and moves it to
// other's AZ by draining holder.
func (bw *benchWorld) azMove(ctx context.Context, i, sizeGiB int, holder, other world.Instance, bound time.Duration) (AZMove, error) {
	s := &Service{Name: fmt.Sprintf("azmove-%03d", i), VolumeName: fmt.Sprintf("azmove-vol-%03d", i)}
	m := AZMove{Service: s.Name, SizeGiB: sizeGiB, FromAZ: holder.AZ, ToAZ: other.AZ}
	f := bw.Fleet
	if err := f.SetState(ctx, ecstypes.ContainerInstanceStatusDraining, other.ID); err != nil {
		return m, err
	}
	if err := f.SetState(ctx, ecstypes.ContainerInstanceStatusActive, holder.ID); err != nil {
		return m, err
	}
	arn, err := bw.registerAZMoveTask(ctx, s, sizeGiB)
	if err != nil {
		return m, err
	}
	if err := f.createService(ctx, s, arn); err != nil {
		return m, err
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	err = f.waitRunning(wctx, []*Service{s})
	cancel()
	if err != nil {
		return m, err
	}
	if s.Instance != holder.ID {
		return m, fmt.Errorf("bench: %s runs on %s, want %s (the only ACTIVE instance)", s.Name, s.Instance, holder.ID)
	}
	if err := f.lookUpVolumes(ctx, []*Service{s}); err != nil {
		return m, err
	}
	m.OldVolumeID = s.VolumeID
	token := newToken()
	if err := f.WriteMark(ctx, s, token); err != nil {
		return m, err
	}
	if !bw.quiesce(ctx, time.Minute) {
		bw.env.Log.Warn("tether's queues still busy a minute before the AZ move", "service", s.Name)
	}
	if err := f.SetState(ctx, ecstypes.ContainerInstanceStatusActive, other.ID); err != nil {
		return m, err
	}
	hctx, cancel := context.WithTimeout(ctx, bound)
	hs, err := f.Drain(hctx, []*Service{s}, holder.ID)
	cancel()
	if err != nil {
		return m, err
	}
	h := hs[0]
	m.Drained, m.Running = h.Drained, h.Running
	if h.Failure != "" {
		m.Failure = h.Failure
		return m, nil
	}
	if h.NewInstance != other.ID {
		m.Failure = fmt.Sprintf("the replacement ran on %s, want %s in %s", h.NewInstance, other.ID, other.AZ)
		return m, nil
	}
	if err := f.VerifyMark(ctx, h, token); err != nil {
		m.Failure = "data: " + err.Error()
		return m, nil
	}
	m.Read = time.Now()
	out, err := f.EC2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:tether:volume"), Values: []string{s.VolumeName}}}})
	switch {
	case err != nil:
		m.Failure = "describe the moved volume: " + err.Error()
	case len(out.Volumes) != 1 || aws.ToString(out.Volumes[0].AvailabilityZone) != other.AZ:
		m.Failure = fmt.Sprintf("EC2 has %d volumes tagged tether:volume=%s, want one in %s", len(out.Volumes), s.VolumeName, other.AZ)
	default:
		m.NewVolumeID = aws.ToString(out.Volumes[0].VolumeId)
		if m.NewVolumeID == m.OldVolumeID {
			m.Failure = "the key's volume is still " + m.OldVolumeID
		}
	}
	// Out of the way of the next move (outside the time).
	if err := f.wait(ctx, "UpdateService"); err != nil {
		return m, err
	}
	if _, err := f.ECS.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(bw.W.Options().Cluster),
		Service: aws.String(s.Name), DesiredCount: aws.Int32(0)}); err != nil {
		return m, fmt.Errorf("bench: scale %s to 0: %w", s.Name, err)
	}
	wctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = bw.W.ECS().WaitFor(wctx, bw.W.Options().Cluster, s.Name+" scaled to 0", func(sn ecssim.Snapshot) bool {
		for _, t := range sn.ServiceTasks(s.Name) {
			if t.LastStatus != "STOPPED" {
				return false
			}
		}
		return true
	})
	return m, err
}

// registerAZMoveTask registers s's family: its shared tether volume of
// sizeGiB with azmove=snapshot.
func (bw *benchWorld) registerAZMoveTask(ctx context.Context, s *Service, sizeGiB int) (string, error) {
	return bw.Fleet.registerTaskDefinition(ctx, s, map[string]string{"size": strconv.Itoa(sizeGiB), "volumetype": "gp3", volspec.OptAZMove: volspec.AZMoveSnapshot})
}

// AZMoveGoal: no goal was set; the figure is reported as measured.
const AZMoveGoal = "(measured)"

// AZMoveRows adds az_move_seconds_per_gib: the median, over the moves that
// finished, of each move's seconds (drain -> mark read back in the other
// AZ) over its volume's size in GiB; and a sub-row with the raw seconds.
func AZMoveRows(r *Report, res AZMoveResult) {
	var perGiB []float64
	var took []time.Duration
	var each, failures []string
	for _, m := range res.Moves {
		if !m.OK() || m.SizeGiB <= 0 {
			failures = append(failures, fmt.Sprintf("%s (%d GiB): %s", m.Service, m.SizeGiB, m.Failure))
			continue
		}
		perGiB = append(perGiB, m.Took().Seconds()/float64(m.SizeGiB))
		took = append(took, m.Took())
		each = append(each, fmt.Sprintf("%d GiB %s", m.SizeGiB, secs(m.Took())))
	}
	failed := ""
	if len(failures) > 0 {
		failed = "; failed: " + strings.Join(failures, "; ")
	}
	if len(perGiB) == 0 {
		r.Add("az_move_seconds_per_gib", "n/a", AZMoveGoal, fmt.Sprintf("no AZ move finished (%d tried)%s", len(res.Moves), failed))
		return
	}
	med := medianFloat(perGiB)
	r.Results.AZMoveSecondsPerGiB = Ptr(med)
	r.Add("az_move_seconds_per_gib", fmt.Sprintf("%.1f", med), AZMoveGoal, fmt.Sprintf(
		"median over %d moves (%s) of the seconds from the drain that placed the task in the other AZ to the mark written before read back on the replacement's host, over the volume's size in GiB (azmove=snapshot: snapshot, volume from it in the task's AZ, attach, mount; two real hosts in two AZs, realistic profile, whose CreateSnapshot time does not grow with the size); %d CreateSnapshot calls in all%s",
		len(perGiB), strings.Join(each, ", "), res.Snapshots, failed))
	r.Add("  seconds per move", secs(Median(took)), "", fmt.Sprintf("median of the same moves' raw seconds (%s): the realistic profile's snapshot alone has a median of 20 s", durations(took)))
}

// medianFloat is the median of xs (not empty); xs is not changed.
func medianFloat(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}
