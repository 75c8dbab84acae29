package ec2sim

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/test/world/motoserver"
)

// Contract tests: the same scenarios against this EC2 and against moto
// (server mode), asserting the same shapes, error codes and states. Where
// moto is wrong or silent, the comment says so and ours is checked against
// the EC2 API reference instead.

// target is one EC2 under contract: a client and a way to launch an
// instance in an AZ.
type target struct {
	name   string
	ec2    *ec2.Client
	launch func(t *testing.T, az string) string
	// settle waits until a volume has left a transitional state; moto has
	// none, ours passes through them.
	settle func(t *testing.T, volumeID, state string)
}

// availableVolume creates a 1 GiB volume in azA and waits until it is
// available.
func (tg target) availableVolume(t *testing.T) string {
	t.Helper()
	out, err := tg.ec2.CreateVolume(context.Background(), &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	if err != nil {
		t.Fatalf("%s: %v", tg.name, err)
	}
	vol := aws.ToString(out.VolumeId)
	tg.settle(t, vol, "available")
	return vol
}

func targets(t *testing.T) []target {
	w := newWorld(t)
	n := 0
	ours := target{name: "ec2sim", ec2: w.ec2,
		launch: func(t *testing.T, az string) string {
			n++
			id := fmt.Sprintf("i-0%016x", n)
			w.addInstance(t, id, az)
			return id
		},
		settle: func(t *testing.T, id, state string) {
			eventually(t, id+" "+state, func() (bool, string) {
				s, _, err := w.srv.VolumeState(id)
				if err != nil {
					return state == "gone", err.Error()
				}
				return s == state, s
			})
		},
	}
	motoClient := newClient(motoserver.Start(t))
	moto := target{name: "moto", ec2: motoClient,
		launch: func(t *testing.T, az string) string {
			out, err := motoClient.RunInstances(context.Background(), &ec2.RunInstancesInput{ImageId: aws.String("ami-12345678"),
				InstanceType: types.InstanceTypeT2Micro, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
				Placement: &types.Placement{AvailabilityZone: aws.String(az)}})
			if err != nil {
				t.Fatalf("moto RunInstances: %v", err)
			}
			return aws.ToString(out.Instances[0].InstanceId)
		},
		settle: func(*testing.T, string, string) {},
	}
	return []target{ours, moto}
}

// both runs a scenario against each target and compares what they
// observed, line by line.
func both(t *testing.T, tgts []target, scenario func(t *testing.T, tg target) []string) {
	t.Helper()
	var obs [][]string
	for _, tg := range tgts {
		obs = append(obs, scenario(t, tg))
	}
	a, b := strings.Join(obs[0], "\n"), strings.Join(obs[1], "\n")
	if a != b {
		t.Errorf("ec2sim and moto differ:\n--- ec2sim\n%s\n--- moto\n%s", a, b)
	}
}

func errCode(err error) string {
	if err == nil {
		return "ok"
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return "not an API error: " + err.Error()
	}
	return ae.ErrorCode()
}

func TestContractWithMoto(t *testing.T) {
	tgts := targets(t)
	ctx := context.Background()

	t.Run("create and describe", func(t *testing.T) {
		both(t, tgts, func(t *testing.T, tg target) []string {
			out, err := tg.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1),
				VolumeType: types.VolumeTypeGp2, TagSpecifications: tagSpec("Name", "contract-1", "tether:cluster", "c1")})
			if err != nil {
				t.Fatalf("%s: %v", tg.name, err)
			}
			id := aws.ToString(out.VolumeId)
			// moto answers "available" at once; EC2 (and ours) "creating".
			tg.settle(t, id, "available")
			d, err := tg.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
			if err != nil {
				t.Fatalf("%s: %v", tg.name, err)
			}
			v := d.Volumes[0]
			var tags []string
			for _, tag := range v.Tags {
				tags = append(tags, aws.ToString(tag.Key)+"="+aws.ToString(tag.Value))
			}
			sort.Strings(tags)
			return []string{
				fmt.Sprintf("id shape %v", strings.HasPrefix(id, "vol-") && len(id) == 21),
				fmt.Sprintf("create: size %d az %s type %s encrypted %v tags %d", aws.ToInt32(out.Size), aws.ToString(out.AvailabilityZone), out.VolumeType, aws.ToBool(out.Encrypted), len(out.Tags)),
				fmt.Sprintf("describe: %s size %d az %s type %s encrypted %v attachments %d tags %v created %v",
					v.State, aws.ToInt32(v.Size), aws.ToString(v.AvailabilityZone), v.VolumeType, aws.ToBool(v.Encrypted), len(v.Attachments), tags, v.CreateTime != nil),
			}
		})
	})

	t.Run("filters", func(t *testing.T) {
		both(t, tgts, func(t *testing.T, tg target) []string {
			ids := map[string]string{}
			for _, c := range []struct{ name, az string }{{"f-a", azA}, {"f-b", azB}} {
				out, err := tg.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(c.az), Size: aws.Int32(2),
					VolumeType: types.VolumeTypeGp3, TagSpecifications: tagSpec("Name", c.name, "contract", "filters")})
				if err != nil {
					t.Fatal(err)
				}
				ids[aws.ToString(out.VolumeId)] = c.name
				tg.settle(t, aws.ToString(out.VolumeId), "available")
			}
			var obs []string
			for _, f := range [][]types.Filter{
				{{Name: aws.String("tag:Name"), Values: []string{"f-a"}}},
				{{Name: aws.String("tag:Name"), Values: []string{"f-a", "f-b"}}},
				{{Name: aws.String("tag-key"), Values: []string{"contract"}}},
				{{Name: aws.String("tag:contract"), Values: []string{"filters"}}, {Name: aws.String("availability-zone"), Values: []string{azB}}},
				{{Name: aws.String("tag:contract"), Values: []string{"filters"}}, {Name: aws.String("volume-type"), Values: []string{"gp3"}}},
				{{Name: aws.String("tag:contract"), Values: []string{"filters"}}, {Name: aws.String("status"), Values: []string{"in-use"}}},
			} {
				d, err := tg.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: f})
				if err != nil {
					t.Fatalf("%s: %v", tg.name, err)
				}
				var names []string
				for _, v := range d.Volumes {
					if n, ok := ids[aws.ToString(v.VolumeId)]; ok {
						names = append(names, n)
					}
				}
				sort.Strings(names)
				obs = append(obs, fmt.Sprintf("%s=%v -> %v", aws.ToString(f[len(f)-1].Name), f[len(f)-1].Values, names))
			}
			for id, n := range ids {
				if n == "f-a" {
					d, _ := tg.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String("volume-id"), Values: []string{id}}}})
					obs = append(obs, fmt.Sprintf("volume-id -> %d", len(d.Volumes)))
				}
			}
			return obs
		})
	})

	t.Run("attach detach delete", func(t *testing.T) {
		both(t, tgts, func(t *testing.T, tg target) []string {
			inst := tg.launch(t, azA)
			vol := tg.availableVolume(t)
			var obs []string
			att, err := tg.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(inst), Device: aws.String("/dev/xvdf")})
			obs = append(obs, "attach "+errCode(err))
			if err == nil {
				obs = append(obs, fmt.Sprintf("attach answer: %s %s same-instance %v", att.State, aws.ToString(att.Device), aws.ToString(att.InstanceId) == inst))
			}
			eventually(t, "attached", func() (bool, string) {
				d, err := tg.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
				if err != nil || len(d.Volumes[0].Attachments) == 0 {
					return false, errCode(err)
				}
				return d.Volumes[0].Attachments[0].State == types.VolumeAttachmentStateAttached, string(d.Volumes[0].Attachments[0].State)
			})
			d, _ := tg.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String("attachment.instance-id"), Values: []string{inst}}}})
			obs = append(obs, fmt.Sprintf("by attachment.instance-id: %d %s", len(d.Volumes), d.Volumes[0].State))
			di, _ := tg.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{inst}})
			found := false
			for _, m := range di.Reservations[0].Instances[0].BlockDeviceMappings {
				if aws.ToString(m.Ebs.VolumeId) == vol {
					found = aws.ToString(m.DeviceName) == "/dev/xvdf" && m.Ebs.Status == types.AttachmentStatusAttached
				}
			}
			obs = append(obs, fmt.Sprintf("block device mapping: %v", found))
			_, err = tg.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)})
			obs = append(obs, "delete attached: "+errCode(err))
			_, err = tg.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String("vol-00000000000000000"), InstanceId: aws.String(inst), Device: aws.String("/dev/xvdg")})
			obs = append(obs, "attach missing volume: "+errCode(err))
			_, err = tg.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String("i-00000000000000000"), Device: aws.String("/dev/xvdg")})
			obs = append(obs, "attach missing instance: "+errCode(err))
			// moto crashes (HTTP 500) on a DetachVolume without InstanceId,
			// so the contract detaches with it.
			det, err := tg.ec2.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(inst), Device: aws.String("/dev/xvdf")})
			obs = append(obs, "detach "+errCode(err))
			if err == nil {
				obs = append(obs, fmt.Sprintf("detach answer: %s %s", det.State, aws.ToString(det.Device)))
			}
			tg.settle(t, vol, "available")
			// (Detaching it again differs: EC2 answers IncorrectState, moto
			// InvalidAttachment.NotFound; pinned in TestWhereMotoIsSilent.)
			_, err = tg.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)})
			obs = append(obs, "delete: "+errCode(err))
			tg.settle(t, vol, "gone")
			_, err = tg.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
			obs = append(obs, "describe deleted: "+errCode(err))
			_, err = tg.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)})
			obs = append(obs, "delete deleted: "+errCode(err))
			_, err = tg.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-00000000000000000"}})
			obs = append(obs, "describe missing instance: "+errCode(err))
			return obs
		})
	})

	t.Run("tags", func(t *testing.T) {
		both(t, tgts, func(t *testing.T, tg target) []string {
			vol := tg.availableVolume(t)
			var obs []string
			_, err := tg.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{vol}, Tags: []types.Tag{
				{Key: aws.String("a"), Value: aws.String("1")}, {Key: aws.String("b"), Value: aws.String("2")}, {Key: aws.String("c"), Value: aws.String("3")}}})
			obs = append(obs, "create tags: "+errCode(err))
			_, err = tg.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{vol}, Tags: []types.Tag{
				{Key: aws.String("a")}, {Key: aws.String("b"), Value: aws.String("other")}}})
			obs = append(obs, "delete tags: "+errCode(err))
			d, _ := tg.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
			var keys []string
			for _, tag := range d.Volumes[0].Tags {
				keys = append(keys, aws.ToString(tag.Key))
			}
			sort.Strings(keys)
			obs = append(obs, fmt.Sprintf("left: %v", keys))
			_, err = tg.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{"vol-00000000000000000"}, Tags: []types.Tag{{Key: aws.String("a"), Value: aws.String("b")}}})
			obs = append(obs, "tag missing volume: "+errCode(err))
			return obs
		})
	})

	t.Run("snapshots", func(t *testing.T) {
		both(t, tgts, func(t *testing.T, tg target) []string {
			vol := tg.availableVolume(t)
			snap, err := tg.ec2.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: vol2ptr(vol), Description: aws.String("contract")})
			if err != nil {
				t.Fatal(err)
			}
			id := aws.ToString(snap.SnapshotId)
			// moto completes snapshots at once; EC2 (and ours) start pending.
			waiter := ec2.NewSnapshotCompletedWaiter(tg.ec2, func(o *ec2.SnapshotCompletedWaiterOptions) {
				o.MinDelay, o.MaxDelay = time.Millisecond, 5*time.Millisecond
			})
			if err := waiter.Wait(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}}, 10*time.Second); err != nil {
				t.Fatalf("%s: %v", tg.name, err)
			}
			d, err := tg.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}})
			if err != nil {
				t.Fatal(err)
			}
			s := d.Snapshots[0]
			obs := []string{fmt.Sprintf("snapshot: %v %s size %d volume-match %v desc %s progress %s", strings.HasPrefix(id, "snap-"), s.State,
				aws.ToInt32(s.VolumeSize), aws.ToString(s.VolumeId) == vol, aws.ToString(s.Description), aws.ToString(s.Progress))}
			restored, err := tg.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), SnapshotId: aws.String(id)})
			obs = append(obs, "restore: "+errCode(err))
			if err == nil {
				obs = append(obs, fmt.Sprintf("restored: size %d snapshot-match %v", aws.ToInt32(restored.Size), aws.ToString(restored.SnapshotId) == id))
			}
			_, err = tg.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
			obs = append(obs, "delete: "+errCode(err))
			_, err = tg.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}})
			obs = append(obs, "describe deleted: "+errCode(err))
			return obs
		})
	})

	t.Run("modify", func(t *testing.T) {
		both(t, tgts, func(t *testing.T, tg target) []string {
			vol := tg.availableVolume(t)
			m, err := tg.ec2.ModifyVolume(ctx, &ec2.ModifyVolumeInput{VolumeId: aws.String(vol), Size: aws.Int32(2)})
			if err != nil {
				t.Fatal(err)
			}
			// moto completes at once; EC2 passes through modifying and optimizing.
			eventually(t, "size 2", func() (bool, string) {
				d, err := tg.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
				return err == nil && aws.ToInt32(d.Volumes[0].Size) == 2, errCode(err)
			})
			return []string{fmt.Sprintf("modification: original %d target %d", aws.ToInt32(m.VolumeModification.OriginalSize), aws.ToInt32(m.VolumeModification.TargetSize))}
		})
	})
}

func vol2ptr(s string) *string { return &s }

// statusLine is the part of an instance status moto and EC2 both fill.
func statusLine(st types.InstanceStatus) string {
	detail := func(s *types.InstanceStatusSummary) string {
		if s == nil {
			return "nil"
		}
		out := string(s.Status)
		for _, d := range s.Details {
			out += " " + string(d.Name) + "=" + string(d.Status)
		}
		return out
	}
	return fmt.Sprintf("%s instance[%s] system[%s]", st.InstanceState.Name, detail(st.InstanceStatus), detail(st.SystemStatus))
}

// TestInstanceLifecycleWithMoto: StopInstances, DescribeInstanceStatus and
// TerminateInstances as moto and this EC2 both answer them. Where they
// differ, AWS's documentation wins and the difference is pinned in
// TestWhereMotoIsSilent.
func TestInstanceLifecycleWithMoto(t *testing.T) {
	tgts := targets(t)
	ctx := context.Background()
	both(t, tgts, func(t *testing.T, tg target) []string {
		inst := tg.launch(t, azA)
		vol := tg.availableVolume(t)
		if _, err := tg.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(inst), Device: aws.String("/dev/xvdf")}); err != nil {
			t.Fatalf("%s: %v", tg.name, err)
		}
		var obs []string
		eventually(t, "running", func() (bool, string) {
			d, err := tg.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{inst}})
			if err != nil {
				return false, err.Error()
			}
			st := d.Reservations[0].Instances[0].State.Name
			return st == types.InstanceStateNameRunning, string(st)
		})
		st, err := tg.ec2.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{InstanceIds: []string{inst}})
		if err != nil {
			t.Fatalf("%s: %v", tg.name, err)
		}
		obs = append(obs, "running status: "+statusLine(st.InstanceStatuses[0]))
		stop, err := tg.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{inst}})
		obs = append(obs, "stop "+errCode(err))
		if err == nil {
			c := stop.StoppingInstances[0]
			obs = append(obs, fmt.Sprintf("stop answer: %s %d <- %s %d", c.CurrentState.Name, aws.ToInt32(c.CurrentState.Code),
				c.PreviousState.Name, aws.ToInt32(c.PreviousState.Code)))
		}
		waiter := ec2.NewInstanceStoppedWaiter(tg.ec2, func(o *ec2.InstanceStoppedWaiterOptions) {
			o.MinDelay, o.MaxDelay = time.Millisecond, 5*time.Millisecond
		})
		if err := waiter.Wait(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{inst}}, 10*time.Second); err != nil {
			t.Fatalf("%s: %v", tg.name, err)
		}
		d, _ := tg.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
		obs = append(obs, fmt.Sprintf("volume of the stopped instance: %s %d attachments", d.Volumes[0].State, len(d.Volumes[0].Attachments)))
		st, _ = tg.ec2.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{InstanceIds: []string{inst}})
		obs = append(obs, fmt.Sprintf("stopped, default status list: %d", len(st.InstanceStatuses)))
		st, _ = tg.ec2.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{InstanceIds: []string{inst}, IncludeAllInstances: aws.Bool(true)})
		obs = append(obs, "stopped status: "+statusLine(st.InstanceStatuses[0]))
		other := tg.availableVolume(t)
		_, err = tg.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(other), InstanceId: aws.String(inst), Device: aws.String("/dev/xvdg")})
		obs = append(obs, "attach to the stopped instance: "+errCode(err))
		term, err := tg.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{inst}})
		obs = append(obs, "terminate "+errCode(err))
		if err == nil {
			c := term.TerminatingInstances[0]
			obs = append(obs, fmt.Sprintf("terminate answer: %s <- %s", c.CurrentState.Name, c.PreviousState.Name))
		}
		return obs
	})
}

// TestWhereMotoIsSilent pins, against the EC2 API reference, the behaviour
// moto 5 does not implement (it accepts or crashes): these run on ours only.
func TestWhereMotoIsSilent(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.addInstance(t, instA, azA)
	w.addInstance(t, instC, azB)
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	for name, c := range map[string]struct {
		err  error
		want string
	}{
		// moto accepts any zone name.
		"unknown AZ": {func() error {
			_, err := w.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-west-2z"), Size: aws.Int32(1)})
			return err
		}(), "InvalidParameterValue"},
		// moto attaches across zones.
		"zone mismatch": {attach(t, w, vol, instC, "/dev/xvdf"), "InvalidVolume.ZoneMismatch"},
		// moto answers HTTP 500 for a filter it does not know.
		"unknown filter": {func() error {
			_, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String("bogus"), Values: []string{"x"}}}})
			return err
		}(), "InvalidParameterValue"},
		// moto ignores MaxResults bounds and never pages DescribeVolumes.
		"MaxResults 2": {func() error {
			_, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{MaxResults: aws.Int32(2)})
			return err
		}(), "InvalidParameterValue"},
	} {
		if got := code(t, c.err); got != c.want {
			t.Errorf("%s: %q, want %s", name, got, c.want)
		}
	}
	// moto attaches an in-use volume a second time (and then crashes on
	// detach); EC2 answers VolumeInUse.
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	w.addInstance(t, instB, azA)
	if got := code(t, attach(t, w, vol, instB, "/dev/xvdg")); got != "VolumeInUse" {
		t.Errorf("second attach: %q", got)
	}
	// moto 5.2 differs from EC2 on these (AWS's documentation and real
	// answers quoted in rules.go, attach.go and lifecycle.go win):
	// it creates a 16,385 GiB gp2 volume (EC2: InvalidParameterValue);
	// answers InvalidParameterDependency for a gp2 volume with Iops (EC2:
	// InvalidParameterCombination, "The parameter iops is not supported
	// for gp2 volumes."); attaches as /dev/xvdza and twice under one name
	// (EC2: InvalidParameterValue); attaches to and "stops" a terminated
	// instance; leaves a terminated instance's volume in-use; takes any
	// MaxResults; answers InvalidAttachment.NotFound for a detach of an
	// available volume from a named instance (EC2: IncorrectState, "Volume
	// 'vol-…' is in the 'available' state.", real answers in
	// aws-ebs-csi-driver#1801 and hashicorp/terraform#9023).
	vol2 := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	for name, c := range map[string]struct {
		err  error
		want string
	}{
		"gp2 16385": {func() error {
			_, err := w.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(16385), VolumeType: types.VolumeTypeGp2})
			return err
		}(), "InvalidParameterValue"},
		"gp2 iops": {func() error {
			_, err := w.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(10), VolumeType: types.VolumeTypeGp2, Iops: aws.Int32(300)})
			return err
		}(), "InvalidParameterCombination"},
		"xvdza":      {attach(t, w, vol2, instB, "/dev/xvdza"), "InvalidParameterValue"},
		"name twice": {attach(t, w, vol2, instA, "/dev/xvdf"), "InvalidParameterValue"},
		"detach available": {func() error {
			_, err := w.ec2.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(vol2), InstanceId: aws.String(instA)})
			return err
		}(), "IncorrectState"},
	} {
		if got := code(t, c.err); got != c.want {
			t.Errorf("%s: %q, want %s", name, got, c.want)
		}
	}
	// moto ignores ClientToken: two creates, two volumes. EC2 returns the
	// first volume again.
	in := &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1), ClientToken: aws.String("same")}
	a, err1 := w.ec2.CreateVolume(ctx, in)
	b, err2 := w.ec2.CreateVolume(ctx, in)
	if err1 != nil || err2 != nil || aws.ToString(a.VolumeId) != aws.ToString(b.VolumeId) {
		t.Errorf("ClientToken idempotency: %v %v %v %v", a, b, err1, err2)
	}
}
