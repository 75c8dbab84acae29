package e2e

// Hosts that go away (issue 13), end to end: the world's Auto Scaling,
// EC2 (Spot interruptions, stops, terminations, hangs with impaired status
// checks) and ECS, template.yaml deployed with its termination hook and
// its functions as real bootstraps under the Lambda runtime interface
// emulator (the hosts function among them). Fake hosts where the data
// path is not the point (a volume's contents are fakehost.Disks: who wrote
// it, whether a host died with it mounted, whether it was ever formatted
// again); real hosts for the terminated host, whose file must come back.
//
// No assertion depends on how fast the machine is: every wait is for a
// condition (bounded by the test's context), and orders are read from the
// world's journal and state, not from clocks.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/autoscalingsim"
	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/fakehost"
	"github.com/tether-ecs/tether/test/world/hosts"
	"github.com/tether-ecs/tether/test/world/lambdarun"
	"github.com/tether-ecs/tether/test/world/world"
)

const (
	cluster   = "default"
	dataVol   = "data"
	groupName = "ecs-asg"
	// clusterTag is the tag the hung-host tests give the cluster's
	// instances (InstanceTagKey): HungHostAction stop needs one.
	clusterTag = "ecs-cluster"
)

// requireFunctions checks what a world with emulated functions needs.
func requireFunctions(t *testing.T) {
	t.Helper()
	testenv.RequireCommands(t, "go", "make")
	if _, err := lambdarun.FindRIE(); err != nil {
		testenv.Missing(t, err.Error())
	}
}

// hostsWorld starts a world of fake hosts with tether's functions as real
// bootstraps; o.Parameters add to the template's.
func hostsWorld(t *testing.T, o world.Options) *world.World {
	t.Helper()
	requireFunctions(t)
	_, o.Bootstraps = artifacts(t)
	o.Functions = world.EmulatedFunctions
	o.Dir = t.TempDir()
	return world.StartT(t, o)
}

// service registers a task definition with one shared tether volume and
// runs it as a service of one task that lets its old task stop before the
// new one starts (minimumHealthyPercent 0, maximumPercent 100, as tether
// asks of a shared volume).
func service(t *testing.T, ctx context.Context, w *world.World, name string) string {
	t.Helper()
	c := ecs.NewFromConfig(w.AWSConfig())
	td, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String(name),
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityEc2},
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: aws.String("app"), Image: aws.String("busybox"), Cpu: 64, Memory: aws.Int32(64), Essential: aws.Bool(true),
			Command:     []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"},
			MountPoints: []ecstypes.MountPoint{{SourceVolume: aws.String(dataVol), ContainerPath: aws.String("/data")}},
		}},
		Volumes: []ecstypes.Volume{{Name: aws.String(dataVol), DockerVolumeConfiguration: &ecstypes.DockerVolumeConfiguration{
			Scope: ecstypes.ScopeShared, Autoprovision: aws.Bool(true), Driver: aws.String("tether"),
			DriverOpts: map[string]string{"size": "1", "volumetype": "gp3"},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateService(ctx, &ecs.CreateServiceInput{
		Cluster: aws.String(cluster), ServiceName: aws.String(name), TaskDefinition: td.TaskDefinition.TaskDefinitionArn,
		DesiredCount: aws.Int32(1), LaunchType: ecstypes.LaunchTypeEc2,
		DeploymentConfiguration: &ecstypes.DeploymentConfiguration{MinimumHealthyPercent: aws.Int32(0), MaximumPercent: aws.Int32(100)},
	}); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(td.TaskDefinition.TaskDefinitionArn)
}

// runningTask waits until the service has a RUNNING task other than those
// in not, and returns it.
func runningTask(t *testing.T, ctx context.Context, w *world.World, name, what string, not ...string) ecssim.TaskInfo {
	t.Helper()
	var got ecssim.TaskInfo
	err := w.ECS().WaitFor(ctx, cluster, what, func(sn ecssim.Snapshot) bool {
		for _, tk := range sn.ServiceTasks(name) {
			if tk.LastStatus == "RUNNING" && tk.DesiredStatus == "RUNNING" && !slices.Contains(not, tk.Arn) {
				got = tk
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// dataVolume is the EBS volume tether made for the data volume.
func dataVolume(t *testing.T, ctx context.Context, w *world.World) ec2types.Volume {
	t.Helper()
	out, err := ec2.NewFromConfig(w.AWSConfig()).DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:tether:volume"), Values: []string{dataVol}}, {Name: aws.String("tag:tether:cluster"), Values: []string{cluster}}}})
	if err != nil || len(out.Volumes) != 1 {
		t.Fatalf("the data volume: %v (%d volumes)", err, len(out.Volumes))
	}
	return out.Volumes[0]
}

func attachedTo(v ec2types.Volume) string {
	for _, a := range v.Attachments {
		if a.State == ec2types.VolumeAttachmentStateAttached {
			return aws.ToString(a.InstanceId)
		}
	}
	return ""
}

// ownVolumes counts the volumes attached to an instance that are not
// tether's (its root volume).
func ownVolumes(t *testing.T, ctx context.Context, w *world.World, instance string) int {
	t.Helper()
	out, err := ec2.NewFromConfig(w.AWSConfig()).DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{
		{Name: aws.String("attachment.instance-id"), Values: []string{instance}}}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range out.Volumes {
		tether := false
		for _, tag := range v.Tags {
			tether = tether || aws.ToString(tag.Key) == "tether:cluster"
		}
		if !tether {
			n++
		}
	}
	return n
}

// disk is what the data volume holds (fake hosts).
func disk(t *testing.T, w *world.World, volumeID string) fakehost.DiskState {
	t.Helper()
	d, ok := w.Disks().Volume(volumeID)
	if !ok {
		t.Fatalf("no fake host ever saw %s", volumeID)
	}
	return d
}

// metricTotal sums an EMF metric over every function's output.
func metricTotal(w *world.World, name string) float64 {
	sum := 0.0
	outs := w.FunctionOutput()
	for _, id := range slices.Sorted(maps.Keys(outs)) {
		for line := range strings.SplitSeq(outs[id], "\n") {
			if !strings.Contains(line, `"`+name+`"`) {
				continue
			}
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil {
				if v, ok := m[name].(float64); ok {
					sum += v
				}
			}
		}
	}
	return sum
}

// waitMetric waits (bounded by ctx) until a metric has been emitted.
func waitMetric(t *testing.T, ctx context.Context, w *world.World, name string) {
	t.Helper()
	for metricTotal(w, name) == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("waited for the %s metric: %v", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// mountOutputs are the agent's answers to tether's mount commands on an
// instance (SSM's output of the document's mount step), once SSM shows at
// least one (an invocation becomes visible a while after it was sent, as
// in SSM).
func mountOutputs(t *testing.T, ctx context.Context, w *world.World, instance string) []string {
	t.Helper()
	c := ssm.NewFromConfig(w.AWSConfig())
	for {
		var out []string
		p := ssm.NewListCommandInvocationsPaginator(c, &ssm.ListCommandInvocationsInput{InstanceId: aws.String(instance), Details: true})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, inv := range page.CommandInvocations {
				if !strings.HasSuffix(aws.ToString(inv.DocumentName), "-mount") {
					continue
				}
				for _, pl := range inv.CommandPlugins {
					if aws.ToString(pl.Name) == "mount" && aws.ToString(pl.Output) != "" {
						out = append(out, aws.ToString(pl.Output))
					}
				}
			}
		}
		if len(out) > 0 {
			return out
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waited for SSM to show a mount on %s: %v", instance, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// releases is a slog handler that keeps what the world's EC2 says when a
// terminated instance's volumes are released: how many it had attached.
type releases struct {
	mu  sync.Mutex
	got map[string]int64 // instance -> volumes EC2 released
}

func (r *releases) Enabled(context.Context, slog.Level) bool { return true }
func (r *releases) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *releases) WithGroup(string) slog.Handler            { return r }
func (r *releases) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "terminated instance's volumes released" {
		return nil
	}
	var inst string
	var n int64 = -1
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "instance":
			inst = a.Value.String()
		case "volumes":
			n = a.Value.Int64()
		}
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string]int64{}
	}
	r.got[inst] = n
	return nil
}

// wait returns how many volumes EC2 released when it terminated instance.
func (r *releases) wait(t *testing.T, ctx context.Context, instance string) int64 {
	t.Helper()
	for {
		r.mu.Lock()
		n, ok := r.got[instance]
		r.mu.Unlock()
		if ok {
			return n
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waited for EC2 to release %s's volumes: %v", instance, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// noLiveForce: tether never force-detached from a host EC2 did not say
// was stopped or terminated.
func noLiveForce(t *testing.T, w *world.World) {
	t.Helper()
	if n := metricTotal(w, "ForcedDetachesLive"); n != 0 {
		t.Errorf("ForcedDetachesLive %v: tether forced a live host", n)
	}
}

// Scale-in through tether's termination hook: Auto Scaling holds the
// instance; tether drains it in ECS, the service's task moves to the other
// instance with its volume, and only then does tether complete the
// lifecycle action, so the instance terminates with nothing of tether's on
// it. Nothing is lost: the volume was never formatted again, never
// detached or lost while mounted, and both tasks wrote to it.
func TestScaleInHoldsTheInstanceUntilItsVolumesAreOff(t *testing.T) {
	released := &releases{}
	w := hostsWorld(t, world.Options{
		AutoScalingGroups: []world.AutoScalingGroupOptions{{Name: groupName, Desired: 1}},
		Parameters:        map[string]string{"AutoScalingGroupNames": groupName},
		Logger:            slog.New(released),
	})
	ctx := ctxFor(t)
	if hooks := w.Deployment().Hooks; !slices.Equal(hooks, []string{groupName + "/tether-tether"}) {
		t.Fatalf("hooks deployed %v", hooks)
	}
	service(t, ctx, w, "db")
	first := runningTask(t, ctx, w, "db", "the first task RUNNING")
	g, err := w.AutoScaling().Group(groupName)
	if err != nil || len(g.Instances) != 1 || g.Instances[0].ID != first.EC2InstanceID {
		t.Fatalf("the first task runs on %s; the group: %+v %v", first.EC2InstanceID, g.Instances, err)
	}
	victim := first.EC2InstanceID
	other, err := w.LaunchInstance(ctx, world.LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vol := dataVolume(t, ctx, w)
	own := ownVolumes(t, ctx, w, victim)

	picked, err := w.ScaleIn(ctx, groupName, 1)
	if err != nil || !slices.Equal(picked, []string{victim}) {
		t.Fatalf("scale in picked %v, %v", picked, err)
	}
	second := runningTask(t, ctx, w, "db", "the replacement RUNNING", first.Arn)
	if err := w.WaitLifecycleState(ctx, victim, autoscalingsim.StateTerminated); err != nil {
		t.Fatal(err)
	}
	if second.EC2InstanceID != other.ID {
		t.Fatalf("the replacement runs on %s, want %s", second.EC2InstanceID, other.ID)
	}
	if got := dataVolume(t, ctx, w); aws.ToString(got.VolumeId) != aws.ToString(vol.VolumeId) || attachedTo(got) != other.ID {
		t.Fatalf("volume %s attached to %q, want %s on %s", aws.ToString(got.VolumeId), attachedTo(got), aws.ToString(vol.VolumeId), other.ID)
	}
	// EC2's own word: when it terminated the victim, the only volumes it
	// had to release were the instance's own (its root volume), none of
	// tether's (the hold let it go only once they were off).
	if n := released.wait(t, ctx, victim); n != int64(own) {
		t.Errorf("EC2 released %d volumes of %s when it terminated it; want its own %d: tether's were to be off first", n, victim, own)
	}
	// The hold's pass logs and emits after Auto Scaling has its CONTINUE,
	// so the instance can be terminated before the pass's output is.
	waitMetric(t, ctx, w, "HoldDuration")
	if out := w.FunctionOutput()["HostsFunction"]; !strings.Contains(out, "none of the cluster's volumes is attached to it") {
		t.Errorf("the hold did not end on its volumes being off:\n%s", out)
	}
	if st, _ := w.EC2().InstanceState(victim); st != "terminated" {
		t.Errorf("victim %s is %s", victim, st)
	}
	d := disk(t, w, aws.ToString(vol.VolumeId))
	if d.Formats != 1 || d.Unclean != 0 || d.Torn || !slices.Equal(d.Writes, []string{first.Arn, second.Arn}) {
		t.Errorf("the volume holds %+v; want one format, no unclean detach, both tasks' writes", d)
	}
	if n := metricTotal(w, "HoldsTimedOut"); n != 0 {
		t.Errorf("HoldsTimedOut %v", n)
	}
	noLiveForce(t, w)
	if n := metricTotal(w, "ForcedDetachesGone"); n != 0 {
		t.Errorf("ForcedDetachesGone %v: the volume left the held instance cleanly, nothing to force", n)
	}
}

// A Spot warning moves the volume while the host still runs: tether
// drains the instance in ECS at once, and the task and its volume move to
// the other instance cleanly, before EC2 takes the instance back. The
// interruption is given a notice far longer than EC2's two minutes, so
// that the test does not depend on how fast this machine is (what tether
// does on the warning does not depend on the notice's length); the
// instance is then terminated as EC2 would, and nothing changes.
func TestSpotWarningMovesTheVolumeBeforeTheInstanceGoes(t *testing.T) {
	w := hostsWorld(t, world.Options{})
	ctx := ctxFor(t)
	spot, err := w.LaunchInstance(ctx, world.LaunchOptions{Spot: true})
	if err != nil {
		t.Fatal(err)
	}
	service(t, ctx, w, "db")
	first := runningTask(t, ctx, w, "db", "the first task RUNNING on the Spot Instance")
	other, err := w.LaunchInstance(ctx, world.LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vol := aws.ToString(dataVolume(t, ctx, w).VolumeId)
	if _, err := w.EC2().InterruptSpotInstance(spot.ID, "terminate", time.Hour); err != nil {
		t.Fatal(err)
	}
	second := runningTask(t, ctx, w, "db", "the replacement RUNNING", first.Arn)
	if second.EC2InstanceID != other.ID {
		t.Fatalf("the replacement runs on %s, want %s", second.EC2InstanceID, other.ID)
	}
	if st, _ := w.EC2().InstanceState(spot.ID); st != "running" {
		t.Fatalf("the Spot Instance is %s: the volume was to move before it went", st)
	}
	if got := dataVolume(t, ctx, w); attachedTo(got) != other.ID {
		t.Fatalf("volume attached to %q, want %s", attachedTo(got), other.ID)
	}
	sn := w.ECS().Snapshot(cluster)
	for _, ci := range sn.Instances {
		if ci.EC2InstanceID == spot.ID && ci.Status != "DRAINING" {
			t.Errorf("the Spot Instance's container instance is %s, want DRAINING (tether drains on the warning)", ci.Status)
		}
	}
	d := disk(t, w, vol)
	if d.Formats != 1 || d.Unclean != 0 || !slices.Equal(d.Writes, []string{first.Arn, second.Arn}) {
		t.Errorf("the volume holds %+v", d)
	}

	if _, err := ec2.NewFromConfig(w.AWSConfig()).TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{spot.ID}}); err != nil {
		t.Fatal(err)
	}
	if err := w.ECS().WaitFor(ctx, cluster, "ECS told the Spot Instance is gone", func(sn ecssim.Snapshot) bool {
		for _, ci := range sn.Instances {
			if ci.EC2InstanceID == spot.ID {
				return ci.Status == "INACTIVE"
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Bus().Settle(ctx); err != nil {
		t.Fatal(err)
	}
	if got := dataVolume(t, ctx, w); attachedTo(got) != other.ID || disk(t, w, vol).Unclean != 0 {
		t.Errorf("after the interruption: volume on %q, disk %+v", attachedTo(got), disk(t, w, vol))
	}
	noLiveForce(t, w)
	if n := metricTotal(w, "ForcedDetachesGone"); n != 0 {
		t.Errorf("ForcedDetachesGone %v", n)
	}
}

// A terminated host's volume follows its task (real hosts: the file the
// first task wrote and synced is read back by the replacement on the
// other instance, from the same EBS volume). No drain, no warning: the
// host dies; ECS stops its task, the service places a replacement, and
// tether moves the volume on EC2's word that the instance is gone.
func TestTerminatedHostVolumeFollowsItsTask(t *testing.T) {
	requireWorld(t)
	agent, bootstraps := artifacts(t)
	w := world.StartT(t, world.Options{Instances: 2, AZs: 1, Hosts: world.RealHosts, AgentBinary: agent,
		Bootstraps: bootstraps, Functions: world.EmulatedFunctions, Dir: t.TempDir()})
	ctx := ctxFor(t)
	service(t, ctx, w, "db")
	first := runningTask(t, ctx, w, "db", "the first task RUNNING")
	vol := aws.ToString(dataVolume(t, ctx, w).VolumeId)
	// (No quotes or spaces: inTaskOf hands the command to sh -c in single quotes.)
	mark := fmt.Sprintf("written-before-the-host-died-%d", time.Now().UnixNano())
	inTaskOf(t, ctx, w, first, "echo "+mark+" > /data/mark && sync && cat /data/mark")

	if err := w.KillInstance(ctx, first.EC2InstanceID); err != nil {
		t.Fatal(err)
	}
	second := runningTask(t, ctx, w, "db", "the replacement RUNNING", first.Arn)
	if second.EC2InstanceID == first.EC2InstanceID {
		t.Fatalf("the replacement runs on the dead instance %s", first.EC2InstanceID)
	}
	got := dataVolume(t, ctx, w)
	if aws.ToString(got.VolumeId) != vol || attachedTo(got) != second.EC2InstanceID {
		t.Fatalf("volume %s on %q, want %s on %s", aws.ToString(got.VolumeId), attachedTo(got), vol, second.EC2InstanceID)
	}
	if read := inTaskOf(t, ctx, w, second, "cat /data/mark"); read != mark {
		t.Fatalf("the replacement reads %q, want %q", read, mark)
	}
	for _, out := range mountOutputs(t, ctx, w, second.EC2InstanceID) {
		if strings.Contains(out, `"formatted":true`) {
			t.Errorf("the volume was formatted on %s: %s", second.EC2InstanceID, out)
		}
	}
	noLiveForce(t, w)
}

// inTaskOf runs a shell command in a task's container on its real host.
func inTaskOf(t *testing.T, ctx context.Context, w *world.World, task ecssim.TaskInfo, command string) string {
	t.Helper()
	h, ok := w.RealHost(task.EC2InstanceID)
	if !ok {
		t.Fatalf("%s is not a real host", task.EC2InstanceID)
	}
	script := fmt.Sprintf(`id=$(docker ps -q --filter label=%s=%s) && [ -n "$id" ] && exec docker exec "$id" sh -c '%s'`,
		hosts.LabelTaskARN, task.Arn, command)
	r, err := h.RunShellScript(ctx, script, time.Minute)
	if err != nil || r.ExitCode != 0 {
		ps, _ := h.RunShellScript(ctx, "docker ps -a --no-trunc; mount | grep tether", time.Minute)
		t.Fatalf("in task %s on %s: %s: exit %d, %v\n%s%s\n%s", task.ID, task.EC2InstanceID, command, r.ExitCode, err, r.Stdout, r.Stderr, ps.Stdout)
	}
	return strings.TrimSpace(r.Stdout)
}

// hungWorld: two instances carrying the cluster's tag (InstanceTagKey),
// the first running the service's task; the first then hangs (EC2 still
// says running, its agents are silent, its status check fails at once).
func hungWorld(t *testing.T, action string) (w *world.World, ctx context.Context, first ecssim.TaskInfo, other string) {
	t.Helper()
	w = hostsWorld(t, world.Options{Parameters: map[string]string{
		"HungHostAction": action, "HungHostThresholdSeconds": "0", "InstanceTagKey": clusterTag,
	}})
	ctx = ctxFor(t)
	tags := map[string]string{clusterTag: cluster}
	a, err := w.LaunchInstance(ctx, world.LaunchOptions{Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	service(t, ctx, w, "db")
	first = runningTask(t, ctx, w, "db", "the first task RUNNING")
	if first.EC2InstanceID != a.ID {
		t.Fatalf("the first task runs on %s, want %s", first.EC2InstanceID, a.ID)
	}
	b, err := w.LaunchInstance(ctx, world.LaunchOptions{Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.HangInstance(ctx, a.ID, 0); err != nil {
		t.Fatal(err)
	}
	return w, ctx, first, b.ID
}

// A hung host with HungHostAction stop: tether stops it (force), which is
// the fact the force rule needs; ECS stops its task, the service places a
// replacement, and the volume follows it, force-detached from the stopped
// host and checked before it is mounted (the host died with it mounted).
func TestHungHostIsStoppedAndItsVolumeFollows(t *testing.T) {
	w, ctx, first, other := hungWorld(t, "stop")
	vol := aws.ToString(dataVolume(t, ctx, w).VolumeId)
	second := runningTask(t, ctx, w, "db", "the replacement RUNNING", first.Arn)
	if second.EC2InstanceID != other {
		t.Fatalf("the replacement runs on %s, want %s", second.EC2InstanceID, other)
	}
	if st, _ := w.EC2().InstanceState(first.EC2InstanceID); st != "stopped" {
		t.Errorf("the hung instance is %s, want stopped by tether", st)
	}
	// Metrics are emitted after the calls they count: wait for them.
	waitMetric(t, ctx, w, "HungHostsStopped")
	waitMetric(t, ctx, w, "ForcedDetachesGone")
	if n := metricTotal(w, "HungHostsStopped"); n != 1 {
		t.Errorf("HungHostsStopped %v, want 1", n)
	}
	if n := metricTotal(w, "ForcedDetachesGone"); n < 1 {
		t.Errorf("ForcedDetachesGone %v: the stopped host's volume was to be force-detached on EC2's word", n)
	}
	noLiveForce(t, w)
	if got := dataVolume(t, ctx, w); aws.ToString(got.VolumeId) != vol || attachedTo(got) != other {
		t.Fatalf("volume on %q, want %s", attachedTo(got), other)
	}
	d := disk(t, w, vol)
	if d.Formats != 1 || d.Unclean != 1 || d.Torn || !slices.Equal(d.Writes, []string{first.Arn, second.Arn}) {
		t.Errorf("the volume holds %+v; want one format, the one unclean stop, both tasks' writes", d)
	}
	outs := mountOutputs(t, ctx, w, other)
	if len(outs) != 1 || !strings.Contains(outs[0], `"checked":true`) || strings.Contains(outs[0], `"formatted":true`) {
		t.Errorf("the mount on %s: %v; want it to check, not format, the filesystem the stopped host left", other, outs)
	}
}

// A hung host without the opt-in stays fenced: tether does not stop it and
// never forces it; the watch counts it (HungHostsFenced, alarmed), and a
// task that waits for its volume elsewhere is stopped with a reason that
// says what holds the volume and how out. The operator's way out here is
// to stop the instance (the other, tether release --force once ECS has let
// go of the task, is the reconciler's tests'); then the volume follows.
func TestHungHostIsFencedUntilAnOperatorActs(t *testing.T) {
	w, ctx, first, other := hungWorld(t, "none")
	vol := aws.ToString(dataVolume(t, ctx, w).VolumeId)
	waitMetric(t, ctx, w, "HungHostsFenced")

	// A one-off task of the same family wants the volume on the other
	// instance (ECS places nothing on a disconnected one).
	c := ecs.NewFromConfig(w.AWSConfig())
	run, err := c.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String(cluster), TaskDefinition: aws.String(first.TaskDefinitionArn),
		LaunchType: ecstypes.LaunchTypeEc2})
	if err != nil || len(run.Tasks) != 1 {
		t.Fatalf("run task: %v %+v", err, run)
	}
	waiting := aws.ToString(run.Tasks[0].TaskArn)
	var reason string
	if err := w.ECS().WaitFor(ctx, cluster, "tether to stop the waiting task", func(sn ecssim.Snapshot) bool {
		tk, ok := sn.Task(waiting)
		reason = tk.StoppedReason
		return ok && tk.DesiredStatus == "STOPPED"
	}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tether: volume " + dataVol + " is held by instance " + first.EC2InstanceID, "ECS agent is disconnected",
		"status check impaired", "tether never forces a live host", "tether release --force"} {
		if !strings.Contains(reason, want) {
			t.Errorf("the waiting task's reason %q lacks %q", reason, want)
		}
	}
	if got := dataVolume(t, ctx, w); attachedTo(got) != first.EC2InstanceID {
		t.Fatalf("the fenced volume is on %q, want still on %s", attachedTo(got), first.EC2InstanceID)
	}
	if st, _ := w.EC2().InstanceState(first.EC2InstanceID); st != "running" || metricTotal(w, "HungHostsStopped") != 0 {
		t.Fatalf("tether stopped the host (EC2 %s) without the opt-in", st)
	}
	if n := metricTotal(w, "ForcedDetachesGone") + metricTotal(w, "ForcedDetachesLive"); n != 0 {
		t.Fatalf("%v force detaches of a fenced volume", n)
	}

	// The operator stops the instance; EC2's word moves the volume.
	if _, err := ec2.NewFromConfig(w.AWSConfig()).StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{first.EC2InstanceID}, Force: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	second := runningTask(t, ctx, w, "db", "the service's replacement RUNNING", first.Arn)
	if second.EC2InstanceID != other {
		t.Fatalf("the replacement runs on %s, want %s", second.EC2InstanceID, other)
	}
	if got := dataVolume(t, ctx, w); aws.ToString(got.VolumeId) != vol || attachedTo(got) != other {
		t.Fatalf("volume on %q, want %s", attachedTo(got), other)
	}
	d := disk(t, w, vol)
	if d.Formats != 1 || d.Torn || !slices.Equal(d.Writes, []string{first.Arn, second.Arn}) {
		t.Errorf("the volume holds %+v", d)
	}
	noLiveForce(t, w)
}
