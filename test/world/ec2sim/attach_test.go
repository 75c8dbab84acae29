package ec2sim

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

const (
	instA = "i-0aaaaaaaaaaaaaaaa"
	instB = "i-0bbbbbbbbbbbbbbbb"
	instC = "i-0cccccccccccccccc" // in azB
)

func attach(t *testing.T, w *world, vol, inst, dev string) error {
	t.Helper()
	_, err := w.ec2.AttachVolume(context.Background(), &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(inst), Device: aws.String(dev)})
	return err
}

func detach(t *testing.T, w *world, vol string, force bool) error {
	t.Helper()
	_, err := w.ec2.DetachVolume(context.Background(), &ec2.DetachVolumeInput{VolumeId: aws.String(vol), Force: aws.Bool(force)})
	return err
}

func TestAttachDetachLifecycle(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	hostA := w.addInstance(t, instA, azA)
	w.addInstance(t, instB, azA)
	w.addInstance(t, instC, azB)
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})

	out, err := w.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(instA), Device: aws.String("/dev/xvdf")})
	if err != nil {
		t.Fatal(err)
	}
	if out.State != types.VolumeAttachmentStateAttaching || aws.ToString(out.Device) != "/dev/xvdf" || aws.ToString(out.InstanceId) != instA {
		t.Errorf("AttachVolume answered %+v", out)
	}
	inUse := ec2.NewVolumeInUseWaiter(w.ec2, func(o *ec2.VolumeInUseWaiterOptions) { o.MinDelay, o.MaxDelay = time.Millisecond, 5*time.Millisecond })
	if err := inUse.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}}, 10*time.Second); err != nil {
		t.Fatalf("VolumeInUse waiter: %v", err)
	}
	w.waitState(t, vol, "in-use", "attached")
	a, ok := hostA.has(vol)
	backing, _ := w.srv.BackingFile(vol)
	if !ok || a.BackingFile != backing || a.DeviceName != "/dev/xvdf" {
		t.Fatalf("host got %+v (attached %v), want backing %s", a, ok, backing)
	}
	if st, err := os.Stat(backing); err != nil || st.Size() != 1<<30 {
		t.Fatalf("backing file: %v %v", st, err)
	}
	d, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{
		{Name: aws.String("attachment.instance-id"), Values: []string{instA}},
		{Name: aws.String("attachment.status"), Values: []string{"attached"}}}})
	// The instance's root volume (/dev/xvda) and ours.
	if err != nil || len(d.Volumes) != 2 || aws.ToString(d.Volumes[1].VolumeId) != vol || len(d.Volumes[1].Attachments) != 1 ||
		d.Volumes[1].Attachments[0].State != types.VolumeAttachmentStateAttached || aws.ToString(d.Volumes[0].Attachments[0].Device) != "/dev/xvda" {
		t.Fatalf("describe by attachment: %+v %v", d, err)
	}
	di, err := w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instA}})
	if err != nil {
		t.Fatal(err)
	}
	bdm := di.Reservations[0].Instances[0].BlockDeviceMappings
	if len(bdm) != 2 || aws.ToString(bdm[0].DeviceName) != "/dev/xvda" || !aws.ToBool(bdm[0].Ebs.DeleteOnTermination) ||
		aws.ToString(bdm[1].DeviceName) != "/dev/xvdf" || aws.ToString(bdm[1].Ebs.VolumeId) != vol || bdm[1].Ebs.Status != types.AttachmentStatusAttached {
		t.Errorf("block device mappings %+v", bdm)
	}

	for name, c := range map[string]struct {
		err  error
		want string
	}{
		"again":       {attach(t, w, vol, instB, "/dev/xvdg"), "VolumeInUse"},
		"no instance": {attach(t, w, vol, "i-0ddddddddddddddd0", "/dev/xvdg"), "InvalidInstanceID.NotFound"},
		"no volume":   {attach(t, w, "vol-0000000000000000f", instA, "/dev/xvdg"), "InvalidVolume.NotFound"},
		"delete attached": {func() error {
			_, err := w.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)})
			return err
		}(), "VolumeInUse"},
		"wrong instance": {func() error {
			_, err := w.ec2.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(instB)})
			return err
		}(), "InvalidAttachment.NotFound"},
	} {
		if got := code(t, c.err); got != c.want {
			t.Errorf("%s: %q (%v), want %s", name, got, c.err, c.want)
		}
	}
	other := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	for name, c := range map[string]struct {
		inst, dev, want string
	}{
		"device in use": {instA, "/dev/xvdf", "InvalidParameterValue"},
		"root device":   {instA, "/dev/xvda", "InvalidParameterValue"},
		"bad device":    {instA, "xvdf", "InvalidParameterValue"},
		"bad device 2":  {instA, "/dev/nvme1n1", "InvalidParameterValue"},
		"other AZ":      {instC, "/dev/xvdf", "InvalidVolume.ZoneMismatch"},
	} {
		if got := code(t, attach(t, w, other, c.inst, c.dev)); got != c.want {
			t.Errorf("%s: %q, want %s", name, got, c.want)
		}
	}

	if err := detach(t, w, vol, false); err != nil {
		t.Fatal(err)
	}
	avail := ec2.NewVolumeAvailableWaiter(w.ec2, func(o *ec2.VolumeAvailableWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Millisecond, 5*time.Millisecond
	})
	if err := avail.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, ok := hostA.has(vol); ok {
		t.Error("host still has the device after detach")
	}
	if got := code(t, detach(t, w, vol, false)); got != "IncorrectState" {
		t.Errorf("detach of an available volume: %q", got)
	}
	// The device name is free again; the volume moves to another instance.
	if err := attach(t, w, other, instA, "/dev/xvdf"); err != nil {
		t.Errorf("reuse of a freed device name: %v", err)
	}
	if err := attach(t, w, vol, instB, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "in-use", "attached")

	// EBS sends no event for a successful attach, nor (by default) for a
	// detach: only the create's.
	if got := strings.Join(eventKinds(w, vol), " "); got != "createVolume/available" {
		t.Errorf("events: %v, want createVolume/available only", got)
	}
}

func TestDetachWaitsWhileGuestBusyThenForce(t *testing.T) {
	w := newWorld(t)
	host := w.addInstance(t, instA, azA)
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "in-use", "attached")

	host.setBusy(true)
	if err := detach(t, w, vol, false); err != nil {
		t.Fatal(err)
	}
	// EC2 keeps trying while the guest holds the device: still detaching
	// after several refused attempts.
	eventually(t, "three refused detach attempts", func() (bool, string) {
		n := host.detachCalls()
		return n >= 3, "attempts " + itoa(int32(n))
	})
	if s, a, _ := w.srv.VolumeState(vol); s != "in-use" || a != "detaching" {
		t.Fatalf("busy detach: %s/%s, want in-use/detaching", s, a)
	}
	host.setBusy(false) // the guest unmounted
	w.waitState(t, vol, "available", "")

	// Again, busy, and this time forced.
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "in-use", "attached")
	host.setBusy(true)
	if err := detach(t, w, vol, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a refused attempt", func() (bool, string) { return host.detachCalls() >= 5, "" })
	if err := detach(t, w, vol, true); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "available", "")
	host.mu.Lock()
	forced := host.forced
	host.mu.Unlock()
	if forced != 1 {
		t.Errorf("forced detaches on the host: %d, want 1", forced)
	}
}

// A guest that cannot make the device leaves the attachment "attaching",
// as EC2's stuck attachments are, with no event (EBS documents none for
// it); a detach frees it.
func TestAttachFailureOnHostStaysAttaching(t *testing.T) {
	w := newWorld(t)
	host := w.addInstance(t, instA, azA)
	host.attachErr = errors.New("losetup: no free loop devices")
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the host was asked", func() (bool, string) {
		host.mu.Lock()
		defer host.mu.Unlock()
		return host.attachCalls > 0, "not yet"
	})
	w.srv.mu.Lock()
	v := w.srv.volumes[vol]
	w.srv.mu.Unlock()
	v.hostMu.Lock() // completeAttach holds it while it asks the host: it has returned
	v.hostMu.Unlock()
	if s, a, _ := w.srv.VolumeState(vol); s != "in-use" || a != "attaching" {
		t.Fatalf("after the guest failed: %s/%s, want in-use/attaching", s, a)
	}
	if got := eventKinds(w, vol); len(got) != 1 {
		t.Errorf("events %v, want the create's only", got)
	}
	if err := detach(t, w, vol, false); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "available", "")
}

func TestTerminateInstanceDetachesAndHonoursDeleteOnTermination(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	host := w.addInstance(t, instA, azA)
	keep := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	drop := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	for dev, v := range map[string]string{"/dev/xvdf": keep, "/dev/xvdg": drop} {
		if err := attach(t, w, v, instA, dev); err != nil {
			t.Fatal(err)
		}
		w.waitState(t, v, "in-use", "attached")
	}
	if err := w.srv.SetDeleteOnTermination(drop, true); err != nil {
		t.Fatal(err)
	}
	host.setBusy(true) // a dying instance cannot refuse
	if err := w.srv.TerminateInstance(ctx, instA); err != nil {
		t.Fatal(err)
	}
	if st, _ := w.srv.InstanceState(instA); st != "terminated" {
		t.Errorf("instance state %s", st)
	}
	w.waitState(t, keep, "available", "")
	eventually(t, drop+" deleted", func() (bool, string) {
		_, _, err := w.srv.VolumeState(drop)
		return err != nil, "still there"
	})
	di, err := w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{{Name: aws.String("instance-state-name"), Values: []string{"terminated"}}}})
	if err != nil || len(di.Reservations) != 1 || di.Reservations[0].Instances[0].State.Name != types.InstanceStateNameTerminated ||
		aws.ToInt32(di.Reservations[0].Instances[0].State.Code) != 48 || len(di.Reservations[0].Instances[0].BlockDeviceMappings) != 0 {
		t.Errorf("terminated instance: %+v %v", di, err)
	}
	if got := code(t, attach(t, w, keep, instA, "/dev/xvdh")); got != "IncorrectInstanceState" {
		t.Errorf("attach to a terminated instance: %q", got)
	}
}
