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

	"github.com/tether-ecs/tether/test/demo"
	"github.com/tether-ecs/tether/test/world/world"
)

// README's "Migrating from REX-Ray", end to end on real hosts: a volume
// written the REX-Ray way (EBS volume tagged Name=rexray-vol, ext4 made on
// the host, the data under the filesystem's data/ directory, which
// REX-Ray's rootPath gives the container), then detached. The seed's task
// definition with only the driver changed to tether: its service's task is
// stopped with a reason that names `tether adopt`, and no second volume is
// made. After `tether adopt`, the service's next task runs with that very
// volume and reads the data REX-Ray's container wrote.
func TestMigrationFromREXRay(t *testing.T) {
	requireWorld(t)
	w := startWorld(t, world.Options{})
	w.CloudFormation().AddStack(w.Options().StackName, w.Deployment().Outputs)
	ow := &opsWorld{World: w, bin: tetherBinary(t), cluster: w.Options().Cluster,
		ecs: ecs.NewFromConfig(w.AWSConfig()), ec2: ec2.NewFromConfig(w.AWSConfig())}
	ctx := ctxFor(t)
	host := w.Instances()[0]
	mark := fmt.Sprintf("Fluffy Poodle %d", time.Now().UnixNano())
	rexray := writeTheREXRayWay(t, ctx, ow, host.ID, host.AZ, mark)

	wt, err := demo.New(demo.WorldTarget(w), t.TempDir(), &logWriter{t: t})
	if err != nil {
		t.Fatal(err)
	}
	if err := wt.Outputs(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.TaskDefinition(ctx, busybox); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Service(ctx); err != nil {
		t.Fatal(err)
	}
	var reason string
	eventually(t, ctx, "the service's task to be stopped with a reason naming tether adopt", func() (bool, string) {
		reason = stoppedReason(t, ctx, ow, "tether adopt")
		return reason != "", "no such task yet"
	})
	if want := "tether adopt " + rexray + " --name " + demo.VolumeName + " --cluster " + ow.cluster; !strings.Contains(reason, want) {
		t.Fatalf("stopped reason %q does not say %q", reason, want)
	}
	if n := volumesNamed(t, ctx, ow, demo.VolumeName); n != 1 {
		t.Fatalf("%d volumes named %s; tether must make no second one", n, demo.VolumeName)
	}

	r := ow.want(t, exitOK, "adopt", rexray, "--name", demo.VolumeName, "--cluster", ow.cluster)
	if !strings.Contains(r.stdout, "adopted: "+rexray) {
		t.Fatalf("adopt said:\n%s", r.stdout)
	}
	task, _, err := wt.FirstTask(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := wt.Volume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.ID != rexray || v.InstanceID != task.InstanceID {
		t.Fatalf("the task runs on %s with %s attached to %s; want the adopted %s", task.InstanceID, v.ID, v.InstanceID, rexray)
	}
	requireVolumeMount(t, ctx, w, task)
	if got := inTask(t, ctx, w, task, "cat /var/lib/mysql/data/pets"); got != mark {
		t.Fatalf("the task reads %q from data/pets on its volume, want %q (written the REX-Ray way)", got, mark)
	}
	vs := decode[volumesOut](t, ow.want(t, exitOK, "volumes", "--json"))
	if len(vs.Volumes) != 1 || vs.Volumes[0].VolumeID != rexray || vs.Volumes[0].Adopted == "" || vs.Volumes[0].TaskStatus != "RUNNING" {
		t.Fatalf("volumes after the migration: %+v", vs.Volumes)
	}
	if err := wt.CleanUp(ctx); err != nil {
		t.Fatal(err)
	}
}

// writeTheREXRayWay makes what REX-Ray leaves behind: an EBS volume tagged
// Name=rexray-vol (no tether tags), formatted ext4 on the host it was
// attached to, the container's files under data/ (REX-Ray's rootPath,
// mode 0700), unmounted and detached. It returns the volume id.
func writeTheREXRayWay(t *testing.T, ctx context.Context, w *opsWorld, instance, az, mark string) string {
	t.Helper()
	out, err := w.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(az), Size: aws.Int32(5), VolumeType: ec2types.VolumeTypeGp2,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeVolume,
			Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(demo.VolumeName)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.VolumeId)
	state := func(want ec2types.VolumeState) func() (bool, string) {
		return func() (bool, string) {
			v := describe(t, ctx, w, id)
			return v.State == want, string(v.State)
		}
	}
	eventually(t, ctx, id+" available", state(ec2types.VolumeStateAvailable))
	if _, err := w.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(instance), Device: aws.String("/dev/xvdf")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, id+" attached to "+instance, func() (bool, string) {
		v := describe(t, ctx, w, id)
		return len(v.Attachments) == 1 && v.Attachments[0].State == ec2types.VolumeAttachmentStateAttached, string(v.State)
	})
	h, ok := w.RealHost(instance)
	if !ok {
		t.Fatalf("%s is not a real host", instance)
	}
	dev := "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_" + strings.Replace(id, "-", "", 1)
	script := fmt.Sprintf(`set -eu
dev=%s
mkfs.ext4 -q "$dev"
d=$(mktemp -d)
mount "$dev" "$d"
mkdir -m 0700 "$d/data"
echo '%s' > "$d/data/pets"
sync
umount "$d"
rmdir "$d"`, dev, mark)
	res, err := h.RunShellScript(ctx, script, time.Minute)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("writing %s the REX-Ray way on %s: exit %d, %v\n%s%s", id, instance, res.ExitCode, err, res.Stdout, res.Stderr)
	}
	if _, err := w.ec2.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(instance)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, id+" detached", state(ec2types.VolumeStateAvailable))
	return id
}

// stoppedReason: the stopped reason of a task of the cluster that
// contains substr, or "".
func stoppedReason(t *testing.T, ctx context.Context, w *opsWorld, substr string) string {
	t.Helper()
	list, err := w.ecs.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String(w.cluster), DesiredStatus: "STOPPED"})
	if err != nil || len(list.TaskArns) == 0 {
		return ""
	}
	out, err := w.ecs.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(w.cluster), Tasks: list.TaskArns})
	if err != nil {
		return ""
	}
	for _, task := range out.Tasks {
		if r := aws.ToString(task.StoppedReason); strings.Contains(r, substr) {
			return r
		}
	}
	return ""
}

func volumesNamed(t *testing.T, ctx context.Context, w *opsWorld, name string) int {
	t.Helper()
	out, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{{Name: aws.String("tag:Name"), Values: []string{name}}}})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Volumes)
}
