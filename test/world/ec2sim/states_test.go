package ec2sim

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/latency"
)

// TestStateErrors: VolumeInUse, IncorrectState, IncorrectInstanceState,
// InvalidVolume.ZoneMismatch and the NotFound codes where EC2 answers them,
// with EC2's messages where public reports show them.
func TestStateErrors(t *testing.T) {
	w := newWorld(t, slow(latency.CreateVolume))
	ctx := context.Background()
	w.addInstance(t, instA, azA)
	w.addInstance(t, instB, azA)
	w.addInstance(t, instC, azB)
	creating, err := w.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	creatingID := aws.ToString(creating.VolumeId)
	// An available volume: the slow profile makes creates take an hour, so
	// end this one's now.
	quick, err := w.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	vol := aws.ToString(quick.VolumeId)
	w.srv.finishCreate(vol, "", "")
	if err := w.srv.StickAttach(vol); err != nil {
		t.Fatal(err)
	}
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "in-use", "attaching")

	for _, c := range []struct {
		name, wantCode, wantMsg string
		err                     error
	}{
		{"attach an attaching volume", "VolumeInUse", vol + " is already attached to an instance", attach(t, w, vol, instB, "/dev/xvdg")},
		{"attach a creating volume", "IncorrectState", creatingID + " is not 'available'.", attach(t, w, creatingID, instA, "/dev/xvdg")},
		{"attach a missing volume", "InvalidVolume.NotFound", "The volume 'vol-0000000000000000f' does not exist.", attach(t, w, "vol-0000000000000000f", instA, "/dev/xvdg")},
		{"attach to a missing instance", "InvalidInstanceID.NotFound", "", attach(t, w, vol, "i-0000000000000000f", "/dev/xvdg")},
		{"delete an attaching volume", "VolumeInUse", "", func() error {
			_, err := w.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)})
			return err
		}()},
		{"delete a creating volume", "IncorrectState", "", func() error {
			_, err := w.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(creatingID)})
			return err
		}()},
		{"detach a creating volume", "IncorrectState", "Volume '" + creatingID + "' is in the 'creating' state.", detach(t, w, creatingID, false)},
		{"detach from the wrong instance", "InvalidAttachment.NotFound", "", func() error {
			_, err := w.ec2.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(vol), InstanceId: aws.String(instB)})
			return err
		}()},
	} {
		code, msg := apiErr(t, c.err)
		if code != c.wantCode || (c.wantMsg != "" && msg != c.wantMsg) {
			t.Errorf("%s: %q %q, want %q %q", c.name, code, msg, c.wantCode, c.wantMsg)
		}
	}
	// The zone is checked on an available volume too.
	if err := detach(t, w, vol, false); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "available", "")
	if code, _ := apiErr(t, attach(t, w, vol, instC, "/dev/xvdf")); code != "InvalidVolume.ZoneMismatch" {
		t.Errorf("attach across zones: %q", code)
	}
	if code, msg := apiErr(t, detach(t, w, vol, false)); code != "IncorrectState" || msg != "Volume '"+vol+"' is in the 'available' state." {
		t.Errorf("detach an available volume: %q %q", code, msg)
	}
}

// TestAttachableInstanceStates: EBS attaches to running and stopped
// instances; a pending one answers IncorrectState (as EC2 does while an
// instance boots), the others IncorrectInstanceState.
func TestAttachableInstanceStates(t *testing.T) {
	for state, want := range map[string]string{"running": "", "stopped": "", "pending": "IncorrectState",
		"stopping": "IncorrectInstanceState", "shutting-down": "IncorrectInstanceState", "terminated": "IncorrectInstanceState"} {
		code := ""
		if err := attachableInstance(&instance{id: instA, state: state}); err != nil {
			code = err.(*awsproto.Error).Code
		}
		if code != want {
			t.Errorf("%s: %q, want %q", state, code, want)
		}
	}
}
