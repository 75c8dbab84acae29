package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
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

// registerVolumeTask registers family: one busybox container that waits
// for TERM, with the tether volume vol on /data (scope and driverOpts as
// given).
func registerVolumeTask(t *testing.T, ctx context.Context, c *ecs.Client, family, vol string, scope ecstypes.Scope, opts map[string]string) string {
	t.Helper()
	dv := &ecstypes.DockerVolumeConfiguration{Scope: scope, Driver: aws.String("tether"), DriverOpts: opts}
	if scope == ecstypes.ScopeShared {
		dv.Autoprovision = aws.Bool(true)
	}
	td, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String(family),
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityEc2},
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: aws.String("app"), Image: aws.String("busybox"), Cpu: 64, Memory: aws.Int32(64), Essential: aws.Bool(true),
			Command:     []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"},
			MountPoints: []ecstypes.MountPoint{{SourceVolume: aws.String(vol), ContainerPath: aws.String("/data")}},
		}},
		Volumes: []ecstypes.Volume{{Name: aws.String(vol), DockerVolumeConfiguration: dv}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(td.TaskDefinition.TaskDefinitionArn)
}

// volumesTagged are the cluster's volumes whose tag key has value.
func volumesTagged(t *testing.T, ctx context.Context, w *world.World, key, value string) []ec2types.Volume {
	t.Helper()
	out, err := ec2.NewFromConfig(w.AWSConfig()).DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:" + key), Values: []string{value}}, {Name: aws.String("tag:tether:cluster"), Values: []string{cluster}}}})
	if err != nil {
		t.Fatal(err)
	}
	return out.Volumes
}

// snapshotsTagged are the account's snapshots with the tag key (any value
// when value is empty).
func snapshotsTagged(t *testing.T, ctx context.Context, w *world.World, key, value string) []ec2types.Snapshot {
	t.Helper()
	f := ec2types.Filter{Name: aws.String("tag-key"), Values: []string{key}}
	if value != "" {
		f = ec2types.Filter{Name: aws.String("tag:" + key), Values: []string{value}}
	}
	out, err := ec2.NewFromConfig(w.AWSConfig()).DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"}, Filters: []ec2types.Filter{f}})
	if err != nil {
		t.Fatal(err)
	}
	return out.Snapshots
}

func snapTag(s ec2types.Snapshot, key string) string {
	for _, tg := range s.Tags {
		if aws.ToString(tg.Key) == key {
			return aws.ToString(tg.Value)
		}
	}
	return ""
}

// Moves by snapshot, end to end on real hosts in two AZs: two services
// (deploy 0/100) run on the one instance in us-west-2a, each with its own
// shared tether volume and a mark written in it; "moved" asks for
// azmove=snapshot, "stuck" does not. An instance is launched in
// us-west-2b and the first is drained, so both replacements are placed in
// the other AZ. The moved one runs there and reads its mark: EC2 shows
// the key's volume in us-west-2b made from a snapshot, tagged
// tether:moved-from the old one, which is kept (available, tether:volume
// emptied, tether:moved-to the new one, tether:moved-name the key), and
// exactly one snapshot tagged tether:move-of (of the old volume, to
// us-west-2b). The stuck one's replacement is stopped by tether with a
// reason that names azmove=snapshot; its volume stays in us-west-2a and no
// snapshot of it is made.
func TestAZMoveBySnapshotFollowsTheTaskToAnotherAZ(t *testing.T) {
	requireWorld(t)
	agent, bootstraps := artifacts(t)
	w := world.StartT(t, world.Options{AZs: 2, Hosts: world.RealHosts, AgentBinary: agent,
		Bootstraps: bootstraps, Functions: world.EmulatedFunctions, Dir: t.TempDir()})
	ctx := ctxFor(t)
	c := ecs.NewFromConfig(w.AWSConfig())
	azA, azB := w.Options().Region+"a", w.Options().Region+"b"
	a, err := w.LaunchInstance(ctx, world.LaunchOptions{AZ: azA})
	if err != nil {
		t.Fatal(err)
	}
	const moved, stuck = "moved", "stuck"
	for _, s := range []struct {
		name string
		opts map[string]string
	}{
		{moved, map[string]string{"size": "1", volspec.OptAZMove: volspec.AZMoveSnapshot}},
		{stuck, map[string]string{"size": "1"}},
	} {
		td := registerVolumeTask(t, ctx, c, s.name, s.name+"-data", ecstypes.ScopeShared, s.opts)
		if _, err := c.CreateService(ctx, &ecs.CreateServiceInput{
			Cluster: aws.String(cluster), ServiceName: aws.String(s.name), TaskDefinition: aws.String(td),
			DesiredCount: aws.Int32(1), LaunchType: ecstypes.LaunchTypeEc2,
			DeploymentConfiguration: &ecstypes.DeploymentConfiguration{MinimumHealthyPercent: aws.Int32(0), MaximumPercent: aws.Int32(100)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	first := map[string]ecssim.TaskInfo{}
	marks := map[string]string{}
	old := map[string]ec2types.Volume{}
	for _, s := range []string{moved, stuck} {
		tk := runningTask(t, ctx, w, s, "the first "+s+" task RUNNING")
		if tk.EC2InstanceID != a.ID {
			t.Fatalf("%s runs on %s, want %s (the only instance)", s, tk.EC2InstanceID, a.ID)
		}
		first[s] = tk
		// (No quotes or spaces: inTaskOf hands the command to sh -c in single quotes.)
		marks[s] = fmt.Sprintf("%s-written-in-%s-%d", s, azA, time.Now().UnixNano())
		inTaskOf(t, ctx, w, tk, "echo "+marks[s]+" > /data/mark && sync")
		vs := volumesTagged(t, ctx, w, "tether:volume", s+"-data")
		if len(vs) != 1 || aws.ToString(vs[0].AvailabilityZone) != azA {
			t.Fatalf("%s's volumes %+v, want one in %s", s, vs, azA)
		}
		old[s] = vs[0]
	}

	b, err := w.LaunchInstance(ctx, world.LaunchOptions{AZ: azB})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.DrainInstance(ctx, a.ID); err != nil {
		t.Fatal(err)
	}

	// The moved service: its replacement in us-west-2b reads the mark.
	second := runningTask(t, ctx, w, moved, "the moved service's replacement RUNNING in "+azB, first[moved].Arn)
	if second.EC2InstanceID != b.ID {
		t.Fatalf("the replacement runs on %s, want %s in %s", second.EC2InstanceID, b.ID, azB)
	}
	if got := inTaskOf(t, ctx, w, second, "cat /data/mark"); got != marks[moved] {
		t.Fatalf("the replacement in %s reads %q, want %q", azB, got, marks[moved])
	}
	for _, out := range mountOutputs(t, ctx, w, b.ID) {
		if strings.Contains(out, `"formatted":true`) {
			t.Errorf("a volume was formatted on %s (the moved one's filesystem came with its snapshot): %s", b.ID, out)
		}
	}
	oldID := aws.ToString(old[moved].VolumeId)
	now := volumesTagged(t, ctx, w, "tether:volume", moved+"-data")
	if len(now) != 1 {
		t.Fatalf("%d volumes are the key %s-data after the move, want 1", len(now), moved)
	}
	nv := now[0]
	newID := aws.ToString(nv.VolumeId)
	if newID == oldID || aws.ToString(nv.AvailabilityZone) != azB || tag(nv, "tether:moved-from") != oldID || attachedTo(nv) != b.ID {
		t.Fatalf("the key's volume after the move: %s in %s, tether:moved-from %q, attached to %q; want a new one in %s from %s, on %s",
			newID, aws.ToString(nv.AvailabilityZone), tag(nv, "tether:moved-from"), attachedTo(nv), azB, oldID, b.ID)
	}
	kept := volumesTagged(t, ctx, w, "tether:moved-to", newID)
	if len(kept) != 1 || aws.ToString(kept[0].VolumeId) != oldID || aws.ToString(kept[0].AvailabilityZone) != azA ||
		tag(kept[0], "tether:volume") != "" || tag(kept[0], "tether:moved-name") != moved+"-data" || kept[0].State != ec2types.VolumeStateAvailable {
		t.Fatalf("the old volume after the move: %+v; want %s kept in %s, available, tether:volume empty, tether:moved-name %s-data", kept, oldID, azA, moved)
	}
	snaps := snapshotsTagged(t, ctx, w, "tether:move-of", "")
	if len(snaps) != 1 || snapTag(snaps[0], "tether:move-of") != oldID || snapTag(snaps[0], "tether:move-to") != azB ||
		snaps[0].State != ec2types.SnapshotStateCompleted || aws.ToString(nv.SnapshotId) != aws.ToString(snaps[0].SnapshotId) {
		t.Fatalf("snapshots tagged tether:move-of: %+v; want exactly one, of %s to %s, completed, the new volume's (%s)", snaps, oldID, azB, aws.ToString(nv.SnapshotId))
	}
	t.Logf("moved: %s (%s) -> %s (%s) by %s", oldID, azA, newID, azB, aws.ToString(snaps[0].SnapshotId))

	// The stuck service: tether stops its replacement in us-west-2b and
	// says how to move the volume.
	var reason string
	if err := w.ECS().WaitFor(ctx, cluster, "tether to stop the stuck service's replacement", func(sn ecssim.Snapshot) bool {
		for _, tk := range sn.ServiceTasks(stuck) {
			if tk.Arn != first[stuck].Arn && tk.DesiredStatus == "STOPPED" && strings.Contains(tk.StoppedReason, "tether") {
				reason = tk.StoppedReason
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"azmove=snapshot", azA, azB} {
		if !strings.Contains(reason, want) {
			t.Errorf("the stuck replacement's reason %q lacks %q", reason, want)
		}
	}
	sv := volumesTagged(t, ctx, w, "tether:volume", stuck+"-data")
	if len(sv) != 1 || aws.ToString(sv[0].VolumeId) != aws.ToString(old[stuck].VolumeId) || aws.ToString(sv[0].AvailabilityZone) != azA || attachedTo(sv[0]) != "" {
		t.Fatalf("the stuck volume after its task was stopped: %+v; want %s, still in %s, unattached", sv, aws.ToString(old[stuck].VolumeId), azA)
	}
	if s := snapshotsTagged(t, ctx, w, "tether:move-of", aws.ToString(old[stuck].VolumeId)); len(s) != 0 {
		t.Fatalf("snapshots of the stuck volume without azmove: %+v", s)
	}
	if s := snapshotsTagged(t, ctx, w, "tether:move-of", ""); len(s) != 1 {
		t.Fatalf("%d snapshots tagged tether:move-of at the end, want still 1", len(s))
	}
	noLiveForce(t, w)
	// Nothing waits when the world closes: ECS would keep placing the stuck
	// service's replacements, each waiting in the plugin's Mount on the
	// us-west-2b host (which holds its shutdown for such waits).
	if _, err := c.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(cluster), Service: aws.String(stuck), DesiredCount: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	if err := w.ECS().WaitFor(ctx, cluster, "the stuck service's tasks to stop", func(sn ecssim.Snapshot) bool {
		for _, tk := range sn.ServiceTasks(stuck) {
			if tk.LastStatus != "STOPPED" {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
}

// snapshot-before-delete, end to end on a real host: a task-scoped volume
// with the option; the task writes a mark and is stopped. Tether
// snapshots the volume (tether:final-of), and deletes the volume only once
// the snapshot is complete. A task whose task-scoped volume is made from
// that snapshot (driverOpt snapshotid) reads the mark back.
func TestSnapshotBeforeDeleteKeepsATaskScopedVolumesData(t *testing.T) {
	requireWorld(t)
	agent, bootstraps := artifacts(t)
	w := world.StartT(t, world.Options{Instances: 1, Hosts: world.RealHosts, AgentBinary: agent,
		Bootstraps: bootstraps, Functions: world.EmulatedFunctions, Dir: t.TempDir()})
	ctx := ctxFor(t)
	c := ecs.NewFromConfig(w.AWSConfig())
	td := registerVolumeTask(t, ctx, c, "scratch", "scratch", ecstypes.ScopeTask,
		map[string]string{"size": "1", volspec.OptSnapshotBeforeDelete: "true"})
	tk := runStandalone(t, ctx, w, c, td, "the task with the task-scoped volume RUNNING")
	mark := fmt.Sprintf("written-before-the-task-stopped-%d", time.Now().UnixNano())
	inTaskOf(t, ctx, w, tk, "echo "+mark+" > /data/mark && sync")
	vs := volumesTagged(t, ctx, w, "tether:task", tk.Arn)
	if len(vs) != 1 {
		t.Fatalf("%d volumes tagged with task %s, want its one task-scoped volume", len(vs), tk.ID)
	}
	volID := aws.ToString(vs[0].VolumeId)
	if _, err := c.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(cluster), Task: aws.String(tk.Arn), Reason: aws.String("e2e: done")}); err != nil {
		t.Fatal(err)
	}

	var snap ec2types.Snapshot
	eventually(t, ctx, "a completed snapshot tagged tether:final-of "+volID+", then the volume deleted", func() (bool, string) {
		snaps := snapshotsTagged(t, ctx, w, "tether:final-of", volID)
		out, err := ec2.NewFromConfig(w.AWSConfig()).DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{
			{Name: aws.String("volume-id"), Values: []string{volID}}}})
		if err != nil {
			return false, err.Error()
		}
		gone := len(out.Volumes) == 0 || out.Volumes[0].State == ec2types.VolumeStateDeleted || out.Volumes[0].State == ec2types.VolumeStateDeleting
		if gone && (len(snaps) != 1 || snaps[0].State != ec2types.SnapshotStateCompleted) {
			t.Fatalf("volume %s deleted while its snapshots are %+v", volID, snaps)
		}
		if len(snaps) == 1 {
			snap = snaps[0]
		}
		return gone, fmt.Sprintf("%d snapshots, volume %+v", len(snaps), out.Volumes)
	})
	if n := len(snapshotsTagged(t, ctx, w, "tether:final-of", volID)); n != 1 {
		t.Fatalf("%d snapshots tagged tether:final-of %s, want 1", n, volID)
	}
	// The journal: the volume was deleted only after the snapshot completed.
	if at := aws.ToTime(snap.CompletionTime); !at.IsZero() {
		for _, call := range w.Router().Journal() {
			if call.Service == "ec2" && call.Action == "DeleteVolume" && call.ErrorCode == "" && call.Time.Before(at) {
				t.Fatalf("a DeleteVolume at %s, before the snapshot completed at %s", call.Time, at)
			}
		}
	}

	// Bonus: a new task-scoped volume from the snapshot holds the mark.
	td2 := registerVolumeTask(t, ctx, c, "restored", "restored", ecstypes.ScopeTask,
		map[string]string{"size": "1", volspec.OptSnapshotID: aws.ToString(snap.SnapshotId)})
	tk2 := runStandalone(t, ctx, w, c, td2, "the task with a volume from the snapshot RUNNING")
	if got := inTaskOf(t, ctx, w, tk2, "cat /data/mark"); got != mark {
		t.Fatalf("the volume made from %s reads %q, want %q", aws.ToString(snap.SnapshotId), got, mark)
	}
	noLiveForce(t, w)
}

// runStandalone runs one task of td (RunTask) and waits until it runs.
func runStandalone(t *testing.T, ctx context.Context, w *world.World, c *ecs.Client, td, what string) ecssim.TaskInfo {
	t.Helper()
	run, err := c.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String(cluster), TaskDefinition: aws.String(td), LaunchType: ecstypes.LaunchTypeEc2})
	if err != nil || len(run.Tasks) != 1 {
		t.Fatalf("run task: %v %+v", err, run)
	}
	arn := aws.ToString(run.Tasks[0].TaskArn)
	var got ecssim.TaskInfo
	if err := w.ECS().WaitFor(ctx, cluster, what, func(sn ecssim.Snapshot) bool {
		tk, ok := sn.Task(arn)
		got = tk
		return ok && tk.LastStatus == "RUNNING"
	}); err != nil {
		t.Fatal(err)
	}
	return got
}
