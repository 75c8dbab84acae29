package cloud_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/world/world"
)

// The grow seam over the real SDK clients against the local world's EC2
// (its wire protocol, states and refusals): a volume never modified has no
// modification; a grow passes modifying -> optimizing -> completed and the
// volume takes its new size; a second change within six hours is the typed
// too-soon error with when it is allowed; a shrink and a change beyond the
// type's limits are permanent refusals carrying AWS's message.
func TestModifyVolumeAgainstTheWorld(t *testing.T) {
	w := world.StartT(t, world.Options{Seed: 31})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := cloud.New(w.AWSConfig(), cloud.Options{})
	az := w.Options().Region + "a"
	newVolume := func(typ string, size int32) string {
		t.Helper()
		v, err := c.CreateVolume(ctx, cloud.CreateVolumeRequest{AZ: az, SizeGiB: size, Type: typ, Tags: map[string]string{cloud.TagCluster: "c"}})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "volume "+v.ID+" available", func() (bool, string) {
			got, err := c.VolumeByID(ctx, v.ID)
			return err == nil && got.State == cloud.VolumeAvailable, got.State
		})
		return v.ID
	}
	vol := newVolume("gp3", 1)

	if _, err := c.VolumeModification(ctx, vol); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("never modified: %v, want ErrNotFound", err)
	}
	if _, err := c.VolumeModification(ctx, "vol-0123456789abcdef0"); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("unknown volume: %v, want ErrNotFound", err)
	}

	before := time.Now()
	m, err := c.ModifyVolume(ctx, vol, cloud.VolumeChange{SizeGiB: 2})
	if err != nil {
		t.Fatal(err)
	}
	if m.VolumeID != vol || m.TargetSizeGiB != 2 || m.OriginalSizeGiB != 1 || m.TargetType != "gp3" || m.StartTime.Before(before.Add(-time.Minute)) {
		t.Errorf("ModifyVolume answered %+v", m)
	}
	waitFor(t, ctx, "modification completed", func() (bool, string) {
		m, err = c.VolumeModification(ctx, vol)
		return err == nil && m.State == cloud.ModCompleted, m.State
	})
	if !m.InForce() || !m.Finished() || m.TargetSizeGiB != 2 || m.EndTime.IsZero() {
		t.Errorf("completed modification: %+v", m)
	}
	if v, err := c.VolumeByID(ctx, vol); err != nil || v.SizeGiB != 2 {
		t.Errorf("after the grow: %+v, %v", v, err)
	}

	_, err = c.ModifyVolume(ctx, vol, cloud.VolumeChange{SizeGiB: 3})
	var soon *cloud.ModifyTooSoonError
	if !errors.Is(err, cloud.ErrModifyTooSoon) || !errors.As(err, &soon) {
		t.Fatalf("second change within six hours: %v, want ErrModifyTooSoon", err)
	}
	if want := m.StartTime.Add(6 * time.Hour); !soon.NotBefore.Equal(want) || soon.InProgress || soon.VolumeID != vol {
		t.Errorf("too soon: %+v, want NotBefore %s", soon, want)
	}
	if errors.Is(err, cloud.ErrInvalidRequest) || errors.Is(err, cloud.ErrRefused) {
		t.Errorf("the cooldown is not a permanent refusal: %v", err)
	}

	other := newVolume("gp3", 4)
	_, err = c.ModifyVolume(ctx, other, cloud.VolumeChange{SizeGiB: 2})
	if !errors.Is(err, cloud.ErrInvalidRequest) || !strings.Contains(err.Error(), "cannot be smaller") {
		t.Errorf("shrink: %v, want ErrInvalidRequest with EC2's message", err)
	}
	// gp3: at most 500 IOPS per GiB (EBS user guide, General Purpose SSD).
	_, err = c.ModifyVolume(ctx, other, cloud.VolumeChange{IOPS: 4*500 + 3000})
	if !errors.Is(err, cloud.ErrInvalidRequest) {
		t.Errorf("IOPS beyond gp3's ratio: %v, want ErrInvalidRequest", err)
	}
	if _, err := c.ModifyVolume(ctx, other, cloud.VolumeChange{}); !errors.Is(err, cloud.ErrInvalidRequest) {
		t.Errorf("no change: %v, want ErrInvalidRequest", err)
	}
	if _, err := c.VolumeModification(ctx, other); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("refused modifications leave none: %v", err)
	}
	if _, err := c.ModifyVolume(ctx, "vol-0123456789abcdef0", cloud.VolumeChange{SizeGiB: 8}); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("unknown volume: %v, want ErrNotFound", err)
	}
	// A type change with the new type's limits: gp3 -> io2 at 3,000 IOPS
	// needs 3 GiB at io2's 1,000 IOPS per GiB; 4 GiB is enough.
	m, err = c.ModifyVolume(ctx, other, cloud.VolumeChange{Type: "io2", IOPS: 4000})
	if err != nil || m.TargetType != "io2" || m.TargetIOPS != 4000 || m.TargetSizeGiB != 4 {
		t.Errorf("gp3 -> io2: %+v, %v", m, err)
	}
}

func waitFor(t *testing.T, ctx context.Context, what string, ok func() (bool, string)) {
	t.Helper()
	last := ""
	for {
		done, state := ok()
		if done {
			return
		}
		last = state
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last %q)", what, ctx.Err(), last)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Online grow end to end through the seam and the world: a volume mounted
// on a (fake) host by the mount document, grown by ModifyVolume; once EC2
// says the modification is in force, the same mount command again reports
// the filesystem grown to the new size, already mounted, same generation.
// What the reconciler will do; the figure is logged.
func TestOnlineGrowThroughTheWorld(t *testing.T) {
	w := world.StartT(t, world.Options{Instances: 1, Seed: 32})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := cloud.New(w.AWSConfig(), cloud.Options{})
	inst := w.Instances()[0]
	v, err := c.CreateVolume(ctx, cloud.CreateVolumeRequest{AZ: inst.AZ, SizeGiB: 1, Type: "gp3", Tags: map[string]string{cloud.TagCluster: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "volume available", func() (bool, string) {
		got, err := c.VolumeByID(ctx, v.ID)
		return err == nil && got.State == cloud.VolumeAvailable, got.State
	})
	if _, err := c.AttachVolume(ctx, v.ID, inst.ID, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "volume attached", func() (bool, string) {
		got, err := c.VolumeByID(ctx, v.ID)
		return err == nil && len(got.Attachments) == 1 && got.Attachments[0].State == cloud.AttachAttached, got.State
	})
	mount := func() agentproto.MountResult {
		t.Helper()
		id, err := c.SendCommand(ctx, "tether-tether-mount", inst.ID, map[string]string{agentproto.ParamVolumeID: v.ID,
			agentproto.ParamVolumeName: "data", agentproto.ParamFormatIfBlank: "true"}, "")
		if err != nil {
			t.Fatal(err)
		}
		var cmd cloud.Command
		waitFor(t, ctx, "mount command "+id, func() (bool, string) {
			cmd, err = c.Command(ctx, id, inst.ID, agentproto.StepMount)
			return err == nil && cmd.Finished(), cmd.Status.String()
		})
		out, ok := agentproto.ParseOutput(cmd.Output)
		r, isMount := out.Mount()
		if cmd.Status != cloud.CommandSucceeded || !ok || !isMount {
			t.Fatalf("mount command: %+v", cmd)
		}
		return r
	}
	first := mount()
	if !first.Formatted || first.Grown || first.DeviceBytes != 1<<30 {
		t.Fatalf("first mount: %+v", first)
	}
	start := time.Now()
	if _, err := c.ModifyVolume(ctx, v.ID, cloud.VolumeChange{SizeGiB: 3}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "modification in force", func() (bool, string) {
		m, err := c.VolumeModification(ctx, v.ID)
		return err == nil && m.InForce(), m.State
	})
	r := mount()
	if !r.AlreadyMounted || !r.Grown || r.DeviceBytes != 3<<30 || r.FilesystemBytes != 3<<30 || r.Generation != first.Generation {
		t.Errorf("mount after the grow: %+v", r)
	}
	t.Logf("grow_online: ModifyVolume to the filesystem grown in %s (instant profile)", time.Since(start))
}
