package ec2sim

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

func TestThrottlingSurfacesAfterSDKRetries(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	// A bucket of two that never refills: the third call and the SDK's two
	// retries of it are refused.
	w.srv.Gate().SetLimit("DescribeVolumes:unfiltered", awsproto.Bucket{Size: 2, Refill: 0})
	for range 2 {
		if _, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{})
	if got := code(t, err); got != "RequestLimitExceeded" {
		t.Fatalf("over the limit: %q (%v)", got, err)
	}
	c := w.srv.Counts()
	if c.Calls["DescribeVolumes"] != 5 || c.Throttled["DescribeVolumes"] != 3 {
		t.Errorf("counts %+v, want 5 calls (2 + 3 attempts), 3 throttled", c)
	}
	// The filtered bucket is separate (EC2 meters filtered calls apart).
	if _, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{MaxResults: aws.Int32(5)}); err != nil {
		t.Errorf("paginated call drew from the unfiltered bucket: %v", err)
	}
	w.srv.SetThrottling(false)
	if _, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{}); err != nil {
		t.Errorf("throttling off: %v", err)
	}
	// Two scripted throttles: the SDK's retries absorb them.
	w.srv.ThrottleNext("CreateVolume", 2)
	if _, err := w.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)}); err != nil {
		t.Errorf("two throttles then success: %v", err)
	}
	if got := w.srv.Counts().Throttled["CreateVolume"]; got != 2 {
		t.Errorf("throttled CreateVolume %d, want 2", got)
	}
	w.srv.FailNext("DescribeInstances", 1, awsproto.BadRequest("UnauthorizedOperation", "You are not authorized"))
	if _, err := w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); code(t, err) != "UnauthorizedOperation" {
		t.Errorf("scripted error: %v", err)
	}
	if _, err := w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); err != nil {
		t.Errorf("after the scripted error: %v", err)
	}
	if l := DefaultLimits(); l["CreateVolume"].Size != 100 || l["CreateVolume"].Refill != 5 || l["AttachVolume"].Size != 50 ||
		l["CreateTags"].Refill != 10 || l["DescribeVolumes"].Refill != 20 || l["DescribeVolumes:unfiltered"].Size != 50 {
		t.Errorf("default limits %+v", l)
	}
}

func TestAsyncCreateFailureThenTokenMismatch(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.srv.FailNextCreates(1, "Insufficient capacity.")
	in := &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1), ClientToken: aws.String("tok-fail")}
	out, err := w.ec2.CreateVolume(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.VolumeId)
	eventually(t, id+" vanishes", func() (bool, string) {
		_, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
		return code(t, err) == "InvalidVolume.NotFound", "describe: " + code(t, err)
	})
	if _, err := w.ec2.CreateVolume(ctx, in); code(t, err) != "IdempotentParameterMismatch" {
		t.Errorf("reused token of a failed create: %v", err)
	}
	if !hasEvent(w, id, "createVolume", "failed", "Insufficient capacity.") {
		t.Errorf("no createVolume/failed event for %s", id)
	}
	// The next create is fine again.
	w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
}

func TestUnusableKMSKeyVolumeVanishes(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	arn := w.srv.AddKMSKey("11111111-2222-4333-8444-555555555555", "alias/tether")
	ok := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1), Encrypted: aws.Bool(true), KmsKeyId: aws.String("alias/tether")})
	d, _ := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{ok}})
	if got := aws.ToString(d.Volumes[0].KmsKeyId); got != arn {
		t.Errorf("alias resolved to %s, want %s", got, arn)
	}
	if err := w.srv.DisableKMSKey("alias/tether"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"alias/tether", "arn:aws:kms:us-west-2:123456789012:key/99999999-0000-4000-8000-000000000000"} {
		out, err := w.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1), Encrypted: aws.Bool(true), KmsKeyId: aws.String(key)})
		if err != nil {
			t.Fatalf("create with %s is accepted at first: %v", key, err)
		}
		id := aws.ToString(out.VolumeId)
		eventually(t, id+" vanishes", func() (bool, string) {
			_, _, err := w.srv.VolumeState(id)
			return err != nil, "still there"
		})
		if !hasEvent(w, id, "createVolume", "failed", "") {
			t.Errorf("no createVolume/failed event for %s", id)
		}
	}
}

func TestStuckAttachmentUntilDetached(t *testing.T) {
	w := newWorld(t)
	host := w.addInstance(t, instA, azA)
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	if err := w.srv.StickAttach(vol); err != nil {
		t.Fatal(err)
	}
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	// Nothing will move it: after the whole (instant) attach time and a
	// round trip through the API it is still attaching, and the host never
	// got the device.
	time.Sleep(20 * time.Millisecond) // lets any (wrongly) scheduled completion run
	if s, a, _ := w.srv.VolumeState(vol); s != "in-use" || a != "attaching" {
		t.Fatalf("stuck attach: %s/%s", s, a)
	}
	if _, ok := host.has(vol); ok {
		t.Fatal("host got the device of a stuck attachment")
	}
	// ebs-csi's remedy: detach it and try again.
	if err := detach(t, w, vol, false); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "available", "")
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "in-use", "attached")
}

func TestDelayedAttachStaysAttaching(t *testing.T) {
	w := newWorld(t)
	w.addInstance(t, instA, azA)
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	if err := w.srv.DelayAttach(vol, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	if s, a, _ := w.srv.VolumeState(vol); s != "in-use" || a != "attaching" {
		t.Fatalf("delayed attach: %s/%s", s, a)
	}
	if err := detach(t, w, vol, true); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "available", "")
	// The delay was for one attachment only.
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "in-use", "attached")
}

func TestStuckDetachNeedsForceAndPoisonsDeviceName(t *testing.T) {
	w := newWorld(t)
	host := w.addInstance(t, instA, azA)
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	other := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "in-use", "attached")
	if err := w.srv.StickDetach(vol); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.PoisonDeviceOnForceDetach(instA, true); err != nil {
		t.Fatal(err)
	}
	if err := detach(t, w, vol, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // several retry periods pass
	if s, a, _ := w.srv.VolumeState(vol); a != "detaching" {
		t.Fatalf("stuck detach: %s/%s", s, a)
	}
	if _, ok := host.has(vol); !ok {
		t.Fatal("a stuck detach released the device")
	}
	if err := detach(t, w, vol, true); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "available", "")
	if _, ok := host.has(vol); ok {
		t.Fatal("forced detach left the device on the host")
	}
	if got := code(t, attach(t, w, other, instA, "/dev/xvdf")); got != "InvalidParameterValue" {
		t.Errorf("attach on the poisoned name: %q, want InvalidParameterValue (already in use)", got)
	}
	if err := attach(t, w, other, instA, "/dev/xvdg"); err != nil {
		t.Errorf("another name works: %v", err)
	}
	if err := w.srv.RebootInstance(instA); err != nil {
		t.Fatal(err)
	}
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Errorf("after reboot the name is usable: %v", err)
	}
}

func TestErrorRateIsSeeded(t *testing.T) {
	run := func() string {
		w := newWorld(t)
		w.srv.SetErrorRate("DescribeVolumes", 0.5, awsproto.Errorf(500, "InternalError", "boom"))
		w.ec2 = newClient(w.url)
		var b strings.Builder
		for range 20 {
			_, err := w.srv.Handle(context.Background(), "DescribeVolumes", nil)
			if err != nil {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	a, b := run(), run()
	if a != b || !strings.Contains(a, "x") || !strings.Contains(a, ".") {
		t.Errorf("seeded error pattern %q vs %q", a, b)
	}
}
