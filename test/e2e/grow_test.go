package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/hosts"
	"github.com/tether-ecs/tether/test/world/world"
)

// growVol is the grow test's shared tether volume.
const growVol = "growdata"

// registerGrowRevision registers a revision of family whose shared tether
// volume asks for sizeGiB. The filesystem is xfs: resize2fs grows a
// mounted ext4 only with CAP_SYS_RESOURCE, which the machines these tests
// run on may lack in their bounding set (the agent then answers growError
// and the filesystem keeps its size); xfs_growfs needs no such capability,
// so the test sees tether's grow, not the machine's limits.
func registerGrowRevision(t *testing.T, ctx context.Context, c *ecs.Client, family string, sizeGiB int) string {
	t.Helper()
	td, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String(family),
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityEc2},
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: aws.String("app"), Image: aws.String("busybox"), Cpu: 64, Memory: aws.Int32(64), Essential: aws.Bool(true),
			Command:     []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"},
			MountPoints: []ecstypes.MountPoint{{SourceVolume: aws.String(growVol), ContainerPath: aws.String("/data")}},
		}},
		Volumes: []ecstypes.Volume{{Name: aws.String(growVol), DockerVolumeConfiguration: &ecstypes.DockerVolumeConfiguration{
			Scope: ecstypes.ScopeShared, Autoprovision: aws.Bool(true), Driver: aws.String("tether"),
			DriverOpts: map[string]string{"size": strconv.Itoa(sizeGiB), "volumetype": "gp3", "fstype": "xfs"},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(td.TaskDefinition.TaskDefinitionArn)
}

// growVolume is the EBS volume tether made for growVol, as EC2 describes it.
func growVolume(t *testing.T, ctx context.Context, w *world.World) ec2types.Volume {
	t.Helper()
	out, err := ec2.NewFromConfig(w.AWSConfig()).DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:tether:volume"), Values: []string{growVol}}, {Name: aws.String("tag:tether:cluster"), Values: []string{cluster}}}})
	if err != nil || len(out.Volumes) != 1 {
		t.Fatalf("the %s volume: %v (%d volumes)", growVol, err, len(out.Volumes))
	}
	return out.Volumes[0]
}

// fsBytes is the size of the filesystem mounted on /data in the task's
// container, as statfs gives it (total blocks times block size).
func fsBytes(t *testing.T, ctx context.Context, w *world.World, task ecssim.TaskInfo) int64 {
	t.Helper()
	n, err := statfsBytes(ctx, w, task)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// statfsBytes is fsBytes for a poll: an error is returned, not fatal.
func statfsBytes(ctx context.Context, w *world.World, task ecssim.TaskInfo) (int64, error) {
	h, ok := w.RealHost(task.EC2InstanceID)
	if !ok {
		return 0, fmt.Errorf("%s is not a real host", task.EC2InstanceID)
	}
	script := fmt.Sprintf(`id=$(docker ps -q --filter label=%s=%s) && [ -n "$id" ] && exec docker exec "$id" stat -f -c "%%b %%S" /data`,
		hosts.LabelTaskARN, task.Arn)
	r, err := h.RunShellScript(ctx, script, time.Minute)
	if err != nil || r.ExitCode != 0 {
		return 0, fmt.Errorf("stat -f /data in task %s: exit %d, %v: %s", task.ID, r.ExitCode, err, r.Stderr)
	}
	f := strings.Fields(r.Stdout)
	if len(f) != 2 {
		return 0, fmt.Errorf("stat -f /data in task %s: %q", task.ID, r.Stdout)
	}
	blocks, err1 := strconv.ParseInt(f[0], 10, 64)
	bsize, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat -f /data in task %s: %q", task.ID, r.Stdout)
	}
	return blocks * bsize, nil
}

// fsType is the type of the filesystem mounted on /data in the container.
func fsType(t *testing.T, ctx context.Context, w *world.World, task ecssim.TaskInfo) string {
	t.Helper()
	for line := range strings.SplitSeq(inTaskOf(t, ctx, w, task, "cat /proc/self/mounts"), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[1] == "/data" {
			return f[2]
		}
	}
	t.Fatalf("task %s: /data is not a mount", task.ID)
	return ""
}

// A service's task definition gets a new revision whose tether volume asks
// for more (2 -> 4 GiB); the service is updated to it (minimumHealthyPercent
// 0, maximumPercent 100). Once the new task runs with the volume, tether
// modifies the volume (one ModifyVolume), and once EBS has the change in
// force, the filesystem mounted in the running container grows to the new
// size, the file written before intact. Then a revision asking for less
// (3 GiB) changes nothing (EBS volumes cannot shrink) and its task runs.
// Real hosts: a real loop device grows and xfs_growfs grows the mounted
// filesystem.
func TestLargerSizeGrowsTheMountedFilesystem(t *testing.T) {
	requireWorld(t)
	testenv.RequireCommands(t, "mkfs.xfs", "xfs_growfs")
	agent, bootstraps := artifacts(t)
	w := world.StartT(t, world.Options{Instances: 1, AZs: 1, Hosts: world.RealHosts, AgentBinary: agent,
		Bootstraps: bootstraps, Functions: world.EmulatedFunctions, Dir: t.TempDir()})
	ctx := ctxFor(t)
	c := ecs.NewFromConfig(w.AWSConfig())
	const family = "grow"
	const gib = int64(1) << 30

	rev1 := registerGrowRevision(t, ctx, c, family, 2)
	if _, err := c.CreateService(ctx, &ecs.CreateServiceInput{
		Cluster: aws.String(cluster), ServiceName: aws.String(family), TaskDefinition: aws.String(rev1),
		DesiredCount: aws.Int32(1), LaunchType: ecstypes.LaunchTypeEc2,
		DeploymentConfiguration: &ecstypes.DeploymentConfiguration{MinimumHealthyPercent: aws.Int32(0), MaximumPercent: aws.Int32(100)},
	}); err != nil {
		t.Fatal(err)
	}
	first := runningTask(t, ctx, w, family, "the first task RUNNING")
	vol := growVolume(t, ctx, w)
	if got := aws.ToInt32(vol.Size); got != 2 {
		t.Fatalf("volume %s has %d GiB, want 2", aws.ToString(vol.VolumeId), got)
	}
	if ft := fsType(t, ctx, w, first); ft != "xfs" {
		t.Fatalf("/data is %s, want xfs (driverOpts fstype)", ft)
	}
	if b := fsBytes(t, ctx, w, first); b > 2*gib {
		t.Fatalf("the 2 GiB volume's filesystem has %d bytes", b)
	}
	// (No quotes or spaces: inTaskOf hands the command to sh -c in single quotes.)
	mark := fmt.Sprintf("written-before-the-grow-%d", time.Now().UnixNano())
	inTaskOf(t, ctx, w, first, "echo "+mark+" > /data/mark && sync && cat /data/mark")

	// The larger revision.
	rev2 := registerGrowRevision(t, ctx, c, family, 4)
	update := func(rev string) {
		t.Helper()
		if _, err := c.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(cluster), Service: aws.String(family), TaskDefinition: aws.String(rev)}); err != nil {
			t.Fatal(err)
		}
	}
	update(rev2)
	second := runningTask(t, ctx, w, family, "the 4 GiB revision's task RUNNING", first.Arn)
	if second.TaskDefinitionArn != rev2 {
		t.Fatalf("the new task runs %s, want %s", second.TaskDefinitionArn, rev2)
	}
	// Grown: more than the 2 GiB device could hold, at most the 4 GiB
	// device (xfs's statfs leaves out its internal log).
	var size int64
	eventually(t, ctx, "the filesystem in the running container grown to about 4 GiB", func() (bool, string) {
		n, err := statfsBytes(ctx, w, second)
		if err != nil {
			return false, fmt.Sprintf("%d bytes (%d ModifyVolume calls so far), then %v", size, w.Counts().Calls["ec2:ModifyVolume"], err)
		}
		size = n
		// (No EC2 call here: the poll must not take from the request
		// buckets tether's own calls share.)
		return size > 3*gib, fmt.Sprintf("%d bytes (%d ModifyVolume calls so far)", size, w.Counts().Calls["ec2:ModifyVolume"])
	})
	if size > 4*gib {
		t.Fatalf("the filesystem has %d bytes, more than the 4 GiB volume", size)
	}
	if read := inTaskOf(t, ctx, w, second, "cat /data/mark"); read != mark {
		t.Fatalf("after the grow the container reads %q, want %q", read, mark)
	}
	inTaskOf(t, ctx, w, second, "echo after-the-grow >> /data/mark && sync")
	vol = growVolume(t, ctx, w)
	if got := aws.ToInt32(vol.Size); got != 4 {
		t.Fatalf("EC2 says volume %s has %d GiB, want 4", aws.ToString(vol.VolumeId), got)
	}
	if n := w.Counts().Calls["ec2:ModifyVolume"]; n != 1 {
		t.Fatalf("%d ModifyVolume calls, want 1", n)
	}
	t.Logf("grown: %s 2 -> 4 GiB, the filesystem %d bytes in the running task %s", aws.ToString(vol.VolumeId), size, second.ID)

	// The smaller revision: nothing changes, the task runs.
	rev3 := registerGrowRevision(t, ctx, c, family, 3)
	update(rev3)
	third := runningTask(t, ctx, w, family, "the 3 GiB revision's task RUNNING", first.Arn, second.Arn)
	if third.TaskDefinitionArn != rev3 {
		t.Fatalf("the new task runs %s, want %s", third.TaskDefinitionArn, rev3)
	}
	if read := inTaskOf(t, ctx, w, third, "cat /data/mark"); read != mark+"\nafter-the-grow" {
		t.Fatalf("the smaller revision's task reads %q", read)
	}
	if b := fsBytes(t, ctx, w, third); b != size {
		t.Fatalf("under the smaller revision the filesystem has %d bytes, want %d kept", b, size)
	}
	// Tether says why it keeps the size: the volume's key and the
	// cannot-shrink warning in a function's output, once the reconciler
	// looked at the new task.
	eventually(t, ctx, "the reconciler's word that the volume cannot shrink", func() (bool, string) {
		for _, out := range w.FunctionOutput() {
			if strings.Contains(out, "EBS volumes cannot shrink") {
				return true, ""
			}
		}
		return false, "no such warning yet"
	})
	vol = growVolume(t, ctx, w)
	if got := aws.ToInt32(vol.Size); got != 4 || attachedTo(vol) != third.EC2InstanceID {
		t.Fatalf("after the smaller revision EC2 says %s has %d GiB on %q, want 4 GiB on %s", aws.ToString(vol.VolumeId), got, attachedTo(vol), third.EC2InstanceID)
	}
	if n := w.Counts().Calls["ec2:ModifyVolume"]; n != 1 {
		t.Fatalf("%d ModifyVolume calls after the smaller revision, want still 1", n)
	}
	noLiveForce(t, w)
}
