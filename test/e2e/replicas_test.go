package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/world"
)

// Per-replica volumes (driverOpt replicas=true), end to end on real hosts:
// a service of two replicas (distinctInstance) of a shared volume "db"
// gets two EBS volumes, db-0 and db-1, one per task; each container reads
// its ordinal from /data/.tether-replica and writes a mark of its own. An
// instance is drained: its task's replacement, on the third instance,
// comes back with the same replica (same EBS volume, same ordinal, the
// mark written before), while the other replica keeps its own. The
// service is then scaled in to one task and out to two again: the volume
// of the removed replica was kept, and the new task gets it with its data.
// Last, a deploy replaces both tasks: each replica's data comes back.
// At every check no two tasks are named by one volume (tether:replica-task),
// each running replica's volume is attached where it runs, and no third
// volume is ever made.
func TestReplicasKeepTheirVolumesAcrossADrainScaleInAndDeploy(t *testing.T) {
	requireWorld(t)
	agent, bootstraps := artifacts(t)
	w := world.StartT(t, world.Options{Instances: 3, AZs: 1, Hosts: world.RealHosts, AgentBinary: agent,
		Bootstraps: bootstraps, Functions: world.EmulatedFunctions, Dir: t.TempDir()})
	ctx := ctxFor(t)
	c := ecs.NewFromConfig(w.AWSConfig())
	td, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String("replicated"),
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityEc2},
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: aws.String("app"), Image: aws.String("busybox"), Cpu: 64, Memory: aws.Int32(64), Essential: aws.Bool(true),
			Command:     []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"},
			MountPoints: []ecstypes.MountPoint{{SourceVolume: aws.String("db"), ContainerPath: aws.String("/data")}},
		}},
		Volumes: []ecstypes.Volume{{Name: aws.String("db"), DockerVolumeConfiguration: &ecstypes.DockerVolumeConfiguration{
			Scope: ecstypes.ScopeShared, Autoprovision: aws.Bool(true), Driver: aws.String("tether"),
			DriverOpts: map[string]string{"size": "1", "replicas": "true"},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	const svc = "db"
	if _, err := c.CreateService(ctx, &ecs.CreateServiceInput{
		Cluster: aws.String(cluster), ServiceName: aws.String(svc), TaskDefinition: td.TaskDefinition.TaskDefinitionArn,
		DesiredCount: aws.Int32(2), LaunchType: ecstypes.LaunchTypeEc2,
		PlacementConstraints:    []ecstypes.PlacementConstraint{{Type: ecstypes.PlacementConstraintTypeDistinctInstance}},
		DeploymentConfiguration: &ecstypes.DeploymentConfiguration{MinimumHealthyPercent: aws.Int32(0), MaximumPercent: aws.Int32(100)},
	}); err != nil {
		t.Fatal(err)
	}

	tasks := runningReplicas(t, ctx, w, svc, 2, "both replicas RUNNING")
	marks := map[int]string{} // ordinal -> the mark its first task wrote
	ordinalOf := map[string]int{}
	for _, tk := range tasks {
		n := replicaOrdinal(t, ctx, w, tk)
		if _, dup := marks[n]; dup {
			t.Fatalf("two tasks read ordinal %d", n)
		}
		// (No quotes or spaces: inTaskOf hands the command to sh -c in single quotes.)
		marks[n] = fmt.Sprintf("replica-%d-of-task-%s-%d", n, tk.ID, time.Now().UnixNano())
		ordinalOf[tk.Arn] = n
		inTaskOf(t, ctx, w, tk, "echo "+marks[n]+" > /data/mark && sync")
	}
	if !slices.Equal(sortedKeys(marks), []int{0, 1}) {
		t.Fatalf("ordinals %v, want 0 and 1", sortedKeys(marks))
	}
	vols := replicaVolumes(t, ctx, w, 2, tasks)

	// Drain the instance of replica 0's task.
	var drained ecssim.TaskInfo
	for _, tk := range tasks {
		if ordinalOf[tk.Arn] == 0 {
			drained = tk
		}
	}
	if _, err := c.UpdateContainerInstancesState(ctx, &ecs.UpdateContainerInstancesStateInput{
		Cluster: aws.String(cluster), ContainerInstances: []string{drained.ContainerInstanceArn}, Status: ecstypes.ContainerInstanceStatusDraining,
	}); err != nil {
		t.Fatal(err)
	}
	after := runningReplicas(t, ctx, w, svc, 2, "the drained replica's replacement RUNNING", drained.Arn)
	for _, tk := range after {
		n := replicaOrdinal(t, ctx, w, tk)
		if tk.Arn != drained.Arn && tk.EC2InstanceID == drained.EC2InstanceID {
			t.Fatalf("task %s runs on the draining instance %s", tk.ID, tk.EC2InstanceID)
		}
		if old, ok := ordinalOf[tk.Arn]; ok && old != n {
			t.Fatalf("task %s was replica %d and reads %d after the drain", tk.ID, old, n)
		}
		if got := inTaskOf(t, ctx, w, tk, "cat /data/mark"); got != marks[n] {
			t.Fatalf("replica %d (task %s on %s) reads %q, want %q", n, tk.ID, tk.EC2InstanceID, got, marks[n])
		}
		ordinalOf[tk.Arn] = n
	}
	same := replicaVolumes(t, ctx, w, 2, after)
	for n, id := range vols {
		if same[n] != id {
			t.Fatalf("replica %d is volume %s after the drain, was %s", n, same[n], id)
		}
	}

	// Scale in to one replica and out again: the removed replica's volume
	// is kept, unheld, and the new task gets it back with its data.
	if _, err := c.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(cluster), Service: aws.String(svc), DesiredCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	one := runningReplicas(t, ctx, w, svc, 1, "one replica after the scale-in")
	eventually(t, ctx, "the scaled-in replica's task STOPPED", func() (bool, string) {
		sn := w.ECS().Snapshot(cluster)
		for _, tk := range sn.ServiceTasks(svc) {
			if tk.LastStatus != "STOPPED" && tk.Arn != one[0].Arn {
				return false, tk.ID + " " + tk.LastStatus
			}
		}
		return true, ""
	})
	kept := replicaVolumes(t, ctx, w, 2, one)
	if _, err := c.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(cluster), Service: aws.String(svc), DesiredCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	again := runningReplicas(t, ctx, w, svc, 2, "two replicas after scaling out again")
	for _, tk := range again {
		n := replicaOrdinal(t, ctx, w, tk)
		if got := inTaskOf(t, ctx, w, tk, "cat /data/mark"); got != marks[n] {
			t.Fatalf("after the scale-out, replica %d (task %s) reads %q, want %q", n, tk.ID, got, marks[n])
		}
	}
	final := replicaVolumes(t, ctx, w, 2, again)
	for n, id := range kept {
		if final[n] != id {
			t.Fatalf("replica %d is volume %s after the scale-out, was %s", n, final[n], id)
		}
	}

	// A deploy (minimumHealthyPercent 0): both tasks are replaced; each new
	// task waits for a stopping task's replica and gets it with its data.
	if _, err := c.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(cluster), Service: aws.String(svc), ForceNewDeployment: true}); err != nil {
		t.Fatal(err)
	}
	deployed := runningReplicas(t, ctx, w, svc, 2, "two replicas after the deploy", again[0].Arn, again[1].Arn)
	seen := map[int]bool{}
	for _, tk := range deployed {
		n := replicaOrdinal(t, ctx, w, tk)
		if seen[n] {
			t.Fatalf("two tasks read ordinal %d after the deploy", n)
		}
		seen[n] = true
		if got := inTaskOf(t, ctx, w, tk, "cat /data/mark"); got != marks[n] {
			t.Fatalf("after the deploy, replica %d (task %s) reads %q, want %q", n, tk.ID, got, marks[n])
		}
	}
	for n, id := range replicaVolumes(t, ctx, w, 2, deployed) {
		if kept[n] != id {
			t.Fatalf("replica %d is volume %s after the deploy, was %s", n, id, kept[n])
		}
	}

	// The tether command names a task's replica.
	ow := &opsWorld{World: w, bin: tetherBinary(t), cluster: cluster}
	for _, tk := range deployed {
		n := replicaOrdinal(t, ctx, w, tk)
		got := decode[struct {
			Volumes []struct {
				Volume   string `json:"volume"`
				VolumeID string `json:"volumeId"`
			} `json:"volumes"`
		}](t, ow.want(t, 0, "explain", tk.Arn, "--json"))
		if len(got.Volumes) != 1 || got.Volumes[0].Volume != fmt.Sprintf("db-%d", n) || got.Volumes[0].VolumeID != kept[n] {
			t.Fatalf("tether explain %s: %+v, want db-%d (%s)", tk.ID, got.Volumes, n, kept[n])
		}
	}
	noLiveForce(t, w)
}

// runningReplicas waits until the service has n RUNNING tasks (including
// the new ones, none of them in not), on n distinct instances, and returns
// them.
func runningReplicas(t *testing.T, ctx context.Context, w *world.World, svc string, n int, what string, not ...string) []ecssim.TaskInfo {
	t.Helper()
	var got []ecssim.TaskInfo
	err := w.ECS().WaitFor(ctx, cluster, what, func(sn ecssim.Snapshot) bool {
		got = got[:0]
		live := 0
		for _, tk := range sn.ServiceTasks(svc) {
			if tk.LastStatus != "STOPPED" {
				live++
			}
			if tk.LastStatus == "RUNNING" && tk.DesiredStatus == "RUNNING" && !slices.Contains(not, tk.Arn) {
				got = append(got, tk)
			}
		}
		return len(got) == n && live == n
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// replicaOrdinal reads the ordinal tether's agent writes at the root of a
// replica's filesystem.
func replicaOrdinal(t *testing.T, ctx context.Context, w *world.World, tk ecssim.TaskInfo) int {
	t.Helper()
	s := inTaskOf(t, ctx, w, tk, "cat /data/.tether-replica")
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("task %s: /data/.tether-replica holds %q", tk.ID, s)
	}
	return n
}

// replicaVolumes checks the replica volumes of db: exactly want of them,
// named db-<N>, each held (tag tether:replica-task) by at most one task;
// every running task in tasks holds the volume of its ordinal, attached to
// its instance. It returns ordinal -> volume id.
func replicaVolumes(t *testing.T, ctx context.Context, w *world.World, want int, tasks []ecssim.TaskInfo) map[int]string {
	t.Helper()
	out, err := ec2.NewFromConfig(w.AWSConfig()).DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:tether:replica-of"), Values: []string{"db"}}, {Name: aws.String("tag:tether:cluster"), Values: []string{cluster}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Volumes) != want {
		t.Fatalf("%d replica volumes of db, want %d", len(out.Volumes), want)
	}
	ids := map[int]string{}
	holders := map[string]int{}
	for _, v := range out.Volumes {
		name := tag(v, "tether:volume")
		n, err := strconv.Atoi(tag(v, "tether:replica"))
		if err != nil || name != fmt.Sprintf("db-%d", n) {
			t.Fatalf("volume %s: tether:volume %q, tether:replica %q", aws.ToString(v.VolumeId), name, tag(v, "tether:replica"))
		}
		if _, dup := ids[n]; dup {
			t.Fatalf("two volumes of replica %d", n)
		}
		ids[n] = aws.ToString(v.VolumeId)
		if h := tag(v, "tether:replica-task"); h != "" {
			if m, dup := holders[h]; dup {
				t.Fatalf("task %s is named by replicas %d and %d", h, m, n)
			}
			holders[h] = n
		}
	}
	for _, tk := range tasks {
		n, ok := holders[tk.Arn]
		if !ok {
			t.Fatalf("no replica volume names task %s", tk.ID)
		}
		for _, v := range out.Volumes {
			if aws.ToString(v.VolumeId) == ids[n] && attachedTo(v) != tk.EC2InstanceID {
				t.Fatalf("replica %d (%s) is attached to %q, its task %s runs on %s", n, ids[n], attachedTo(v), tk.ID, tk.EC2InstanceID)
			}
		}
	}
	return ids
}

func sortedKeys(m map[int]string) []int {
	var ks []int
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
