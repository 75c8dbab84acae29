package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/hosts"
	"github.com/tether-ecs/tether/test/world/world"
)

// Online grow: a service updated to a task definition revision whose
// tether volume asks for a larger size; tether modifies the EBS volume
// once the new task runs with it and, once EBS has the change in force,
// the agent grows the mounted filesystem.

// GrowConfig describes the grow run.
type GrowConfig struct {
	// Grows: services, each grown once. EBS allows one modification of a
	// volume every 6 hours (the world refuses a second, as EC2 does), so
	// each grow is another service's volume.
	Grows int
	// Bound is the longest one grow is waited for.
	Bound time.Duration
}

// growFrom and growTo are the sizes (GiB) of a grow: the first revision's
// and the new one's.
const growFrom, growTo = 1, 2

// Grow is one service's grow: when ECS reported the new revision's task
// RUNNING, when tether called ModifyVolume (after that), and when the
// container first saw its filesystem larger than the old volume.
type Grow struct {
	Service  string
	VolumeID string
	Running  time.Time
	Modified time.Time // zero: not seen
	Grown    time.Time // zero: not seen
	FSBytes  int64     // the filesystem's size once grown
	Failure  string
}

// OK: the filesystem was seen grown and the data written before was read
// back.
func (g Grow) OK() bool { return g.Failure == "" && !g.Grown.IsZero() }

// GrowResult is the grow run.
type GrowResult struct {
	Grows         []Grow
	ModifyVolumes int // every ModifyVolume call the world answered
	Safety        Safety
}

// RunGrow creates c.Grows services on one real host, each with its own
// shared tether volume (xfs, growFrom GiB), then, one service at a time:
// writes a mark, registers a revision asking for growTo GiB, updates the
// service to it (minimumHealthyPercent 0, maximumPercent 100: the old task
// stops, the new one starts on the same host with the volume still
// attached), waits for ECS to report the new task RUNNING, then polls the
// container's statfs of its volume until it is larger than the old
// volume, and reads the mark back.
//
// xfs: the agent grows ext4 online with resize2fs, which needs
// CAP_SYS_RESOURCE, missing from the bounding set of some machines that
// run the bench (the agent then reports growError); xfs_growfs needs no
// such capability, so the figure is tether's, not the machine's.
func RunGrow(ctx context.Context, e Env, c GrowConfig) (res GrowResult, err error) {
	bw, err := e.startWorld(ctx, "grow", world.Options{Hosts: world.RealHosts, Instances: 1})
	if err != nil {
		return res, err
	}
	defer bw.close()
	defer func() {
		res.ModifyVolumes = bw.W.Counts().Calls["ec2:ModifyVolume"]
		res.Safety = bw.safety()
	}()
	svcs := make([]*Service, c.Grows)
	for i := range svcs {
		s := &Service{Name: fmt.Sprintf("grow-%03d", i), VolumeName: fmt.Sprintf("grow-vol-%03d", i)}
		svcs[i] = s
		arn, err := bw.registerGrowRevision(ctx, s, growFrom)
		if err != nil {
			return res, err
		}
		if err := bw.Fleet.createService(ctx, s, arn); err != nil {
			return res, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	err = bw.Fleet.waitRunning(wctx, svcs)
	cancel()
	if err != nil {
		return res, err
	}
	if err := bw.Fleet.lookUpVolumes(ctx, svcs); err != nil {
		return res, err
	}
	for i, s := range svcs {
		g, err := bw.grow(ctx, s, c.Bound)
		res.Grows = append(res.Grows, g)
		if err != nil {
			return res, err
		}
		if !g.OK() {
			// The next grows would wait as long for the same reason.
			return res, fmt.Errorf("bench: grow of %s (%s): %s", s.Name, s.VolumeID, g.Failure)
		}
		e.Log.Info("grow", "n", i+1, "service", s.Name, "volumeId", s.VolumeID, "runningToGrown", g.Grown.Sub(g.Running).Round(time.Millisecond))
	}
	return res, nil
}

// grow updates s to a revision asking for growTo GiB and times it.
func (bw *benchWorld) grow(ctx context.Context, s *Service, bound time.Duration) (Grow, error) {
	g := Grow{Service: s.Name, VolumeID: s.VolumeID}
	token := newToken()
	if err := bw.Fleet.WriteMark(ctx, s, token); err != nil {
		return g, err
	}
	if !bw.quiesce(ctx, time.Minute) {
		bw.env.Log.Warn("tether's queues still busy a minute before the grow", "service", s.Name)
	}
	arn, err := bw.registerGrowRevision(ctx, s, growTo)
	if err != nil {
		return g, err
	}
	old := s.Task
	if _, err := bw.Fleet.ECS.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(bw.W.Options().Cluster),
		Service: aws.String(s.Name), TaskDefinition: aws.String(arn)}); err != nil {
		return g, fmt.Errorf("bench: update service %s: %w", s.Name, err)
	}
	gctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	var task ecssim.TaskInfo
	err = bw.W.ECS().WaitFor(gctx, bw.W.Options().Cluster, "the new revision's task RUNNING", func(sn ecssim.Snapshot) bool {
		for _, t := range sn.ServiceTasks(s.Name) {
			if t.Arn != old && t.TaskDefinitionArn == arn && t.LastStatus == "RUNNING" && t.DesiredStatus == "RUNNING" {
				task = t
				return true
			}
		}
		return false
	})
	if err != nil {
		g.Failure = "the new revision's task not RUNNING within " + bound.String()
		return g, nil
	}
	g.Running = time.Now()
	s.Task, s.Instance = task.Arn, task.EC2InstanceID
	h, ok := bw.W.RealHost(task.EC2InstanceID)
	if !ok {
		return g, fmt.Errorf("bench: %s is not a real host", task.EC2InstanceID)
	}
	var last int64
	for {
		n, err := containerFSBytes(gctx, h, task.Arn)
		if err == nil {
			last = n
		}
		if err == nil && n > growFrom<<30 {
			g.Grown, g.FSBytes = time.Now(), n
			break
		}
		if gctx.Err() != nil {
			g.Failure = fmt.Sprintf("the filesystem not grown in the container within %s of the update (last seen %d bytes; %d ModifyVolume calls so far)",
				bound, last, bw.W.Counts().Calls["ec2:ModifyVolume"])
			return g, nil
		}
		if err := sleep(gctx, 100*time.Millisecond); err != nil {
			continue // the loop reports it
		}
	}
	for _, call := range bw.W.Router().Journal() {
		if call.Service == "ec2" && call.Action == "ModifyVolume" && call.ErrorCode == "" && call.Time.After(g.Running.Add(-time.Second)) && g.Modified.IsZero() {
			g.Modified = call.Time
		}
	}
	read, err := h.RunShellScript(ctx, inContainer(task.Arn, "cat /data/bench-mark"), 30*time.Second)
	if err != nil || read.ExitCode != 0 || strings.TrimSpace(read.Stdout) != token {
		g.Failure = fmt.Sprintf("data: the mark read in the container after the grow: %q, exit %d, %v; want %q", read.Stdout, read.ExitCode, err, token)
	}
	if v, err := bw.Fleet.EC2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{s.VolumeID}}); err != nil || len(v.Volumes) != 1 || aws.ToInt32(v.Volumes[0].Size) != growTo {
		g.Failure = fmt.Sprintf("EC2 does not say %s has %d GiB (%v)", s.VolumeID, growTo, err)
	}
	return g, nil
}

// registerGrowRevision registers a revision of s's family whose volume
// asks for sizeGiB, xfs (see RunGrow).
func (bw *benchWorld) registerGrowRevision(ctx context.Context, s *Service, sizeGiB int) (string, error) {
	return bw.Fleet.registerTaskDefinition(ctx, s, map[string]string{"size": strconv.Itoa(sizeGiB), "volumetype": "gp3", "fstype": "xfs"})
}

// inContainer is a host script that runs command (no single quotes) in
// the task's container.
func inContainer(taskARN, command string) string {
	return fmt.Sprintf(`id=$(docker ps -q --filter label=%s=%s) && [ -n "$id" ] && exec docker exec "$id" sh -c '%s'`,
		hosts.LabelTaskARN, taskARN, command)
}

// containerFSBytes is the size of the filesystem on /data in the task's
// container, as its statfs gives it (blocks times block size).
func containerFSBytes(ctx context.Context, h *hosts.Instance, taskARN string) (int64, error) {
	r, err := h.RunShellScript(ctx, inContainer(taskARN, `stat -f -c "%b %S" /data`), 30*time.Second)
	if err != nil {
		return 0, err
	}
	if r.ExitCode != 0 {
		return 0, fmt.Errorf("stat -f /data: exit %d: %s", r.ExitCode, r.Stderr)
	}
	f := strings.Fields(r.Stdout)
	if len(f) != 2 {
		return 0, fmt.Errorf("stat -f /data: %q", r.Stdout)
	}
	blocks, err1 := strconv.ParseInt(f[0], 10, 64)
	bsize, err2 := strconv.ParseInt(f[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("stat -f /data: %q: %w", r.Stdout, err)
	}
	return blocks * bsize, nil
}

// GrowGoal: no goal was set; the figure is reported as measured.
const GrowGoal = "(measured)"

// GrowRows adds grow_online_seconds: the median, over the grows that
// finished, of the time from the new revision's task RUNNING to the
// filesystem seen grown in its container.
func GrowRows(r *Report, res GrowResult) {
	var took, toModify []time.Duration
	var failures []string
	for _, g := range res.Grows {
		if !g.OK() {
			failures = append(failures, g.Service+": "+g.Failure)
			continue
		}
		took = append(took, g.Grown.Sub(g.Running))
		if !g.Modified.IsZero() {
			toModify = append(toModify, max(0, g.Modified.Sub(g.Running)))
		}
	}
	failed := ""
	if len(failures) > 0 {
		failed = "; failed: " + strings.Join(failures, "; ")
	}
	if len(took) == 0 {
		r.Add("grow_online_seconds", "n/a", GrowGoal, fmt.Sprintf("no grow finished (%d tried)%s", len(res.Grows), failed))
		return
	}
	med := Median(took)
	r.Results.GrowOnlineSeconds = Ptr(med.Seconds())
	r.Add("grow_online_seconds", fmt.Sprintf("%.1f", med.Seconds()), GrowGoal, fmt.Sprintf(
		"median of %d grows (%s), each one service updated to a revision asking for %d GiB instead of %d (xfs, one real host, realistic profile), timed from ECS reporting the new revision's task RUNNING to its container's statfs of the volume first larger than the old volume (polled every 0.1 s); the mark written before read back in the container, EC2 saying %d GiB; %d ModifyVolume calls in all%s",
		len(took), durations(took), growTo, growFrom, growTo, res.ModifyVolumes, failed))
	if len(toModify) > 0 {
		r.Add("  RUNNING -> ModifyVolume", secs(Median(toModify)), "", fmt.Sprintf("median from the task RUNNING until tether's ModifyVolume (%s): tether noticing the larger size; the rest is EBS putting the change in force (ModifyVolume's realistic median 10 s), the mount sent again and the agent's rescan and xfs_growfs",
			durations(toModify)))
	}
}
