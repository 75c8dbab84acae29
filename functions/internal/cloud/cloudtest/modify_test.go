package cloudtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// The fake's Elastic Volumes through the seam: modifying until the driver
// completes "modify" (then optimizing, the new size in force, EBS's one
// modifyVolume event), "optimize" to completed; the cooldown counted on the
// fake's clock; a shrink refused with EC2's message; and the guest's mount
// of the grown volume reports the grow once.
func TestFakeModifyVolume(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	w := cloudtest.New(start)
	c := cloud.NewWithClients(w.EC2(), w.ECS(), w.SSM("tether-c-mount", "tether-c-unmount"), cloud.Options{BatchWindow: -1, RetryMode: "standard", Backoff: cloud.NoBackoff()})
	ctx := context.Background()
	w.AddInstance("i-0aaaaaaaaaaaaaaa1", "us-east-1a")
	vol := w.AddVolume("us-east-1a", map[string]string{cloud.TagCluster: "c"})

	if _, err := c.VolumeModification(ctx, vol); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("never modified: %v", err)
	}
	if _, err := c.ModifyVolume(ctx, vol, cloud.VolumeChange{SizeGiB: 4}); !errors.Is(err, cloud.ErrInvalidRequest) || !strings.Contains(err.Error(), "smaller") {
		t.Errorf("shrink: %v", err)
	}
	m, err := c.ModifyVolume(ctx, vol, cloud.VolumeChange{SizeGiB: 16})
	if err != nil || m.State != cloud.ModModifying || m.TargetSizeGiB != 16 || m.InForce() {
		t.Fatalf("grow: %+v, %v", m, err)
	}
	if _, err := c.ModifyVolume(ctx, vol, cloud.VolumeChange{SizeGiB: 20}); !errors.Is(err, cloud.ErrModifyTooSoon) {
		t.Errorf("while modifying: %v", err)
	}
	w.Complete(cloudtest.Op{Kind: "modify", ID: vol})
	if m, err = c.VolumeModification(ctx, vol); err != nil || m.State != cloud.ModOptimizing || !m.InForce() {
		t.Errorf("after modify: %+v, %v", m, err)
	}
	if v, err := c.VolumeByID(ctx, vol); err != nil || v.SizeGiB != 16 {
		t.Errorf("volume after modify: %+v, %v", v, err)
	}
	var sawEvent bool
	for _, e := range w.TakeEvents() {
		sawEvent = sawEvent || e.Action == "modifyVolume" && e.Result == "optimizing" && e.Volume == vol
	}
	if !sawEvent {
		t.Error("no modifyVolume optimizing event")
	}
	w.Complete(cloudtest.Op{Kind: "optimize", ID: vol})
	if m, err = c.VolumeModification(ctx, vol); err != nil || m.State != cloud.ModCompleted || m.EndTime.IsZero() {
		t.Errorf("after optimize: %+v, %v", m, err)
	}
	var soon *cloud.ModifyTooSoonError
	if _, err := c.ModifyVolume(ctx, vol, cloud.VolumeChange{SizeGiB: 20}); !errors.As(err, &soon) || !soon.NotBefore.Equal(start.Add(6*time.Hour)) || soon.InProgress {
		t.Errorf("within six hours: %v (%+v)", err, soon)
	}
	w.Advance(6 * time.Hour)
	if _, err := c.ModifyVolume(ctx, vol, cloud.VolumeChange{SizeGiB: 20}); err != nil {
		t.Errorf("after six hours: %v", err)
	}
}

// The fake guest grows a mounted volume's filesystem when the mount command
// runs again after the grow, once.
func TestFakeMountReportsTheGrow(t *testing.T) {
	w := cloudtest.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	c := cloud.NewWithClients(w.EC2(), w.ECS(), w.SSM("tether-c-mount", "tether-c-unmount"), cloud.Options{BatchWindow: -1, RetryMode: "standard", Backoff: cloud.NoBackoff()})
	ctx := context.Background()
	const inst = "i-0aaaaaaaaaaaaaaa1"
	w.AddInstance(inst, "us-east-1a")
	vol := w.AddVolume("us-east-1a", map[string]string{cloud.TagCluster: "c"})
	if _, err := c.AttachVolume(ctx, vol, inst, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	w.Complete(cloudtest.Op{Kind: "attach", ID: vol})
	mount := func() agentproto.MountResult {
		t.Helper()
		id, err := c.SendCommand(ctx, "tether-c-mount", inst, map[string]string{agentproto.ParamVolumeID: vol, agentproto.ParamVolumeName: "data"}, "")
		if err != nil {
			t.Fatal(err)
		}
		w.Complete(cloudtest.Op{Kind: "command", ID: id})
		var r agentproto.MountResult
		for _, cmd := range w.Commands() {
			if cmd.ID == id {
				if err := json.Unmarshal([]byte(cmd.Output), &r); err != nil {
					t.Fatalf("%q: %v", cmd.Output, err)
				}
			}
		}
		return r
	}
	if r := mount(); r.Grown || r.AlreadyMounted || r.FilesystemBytes != 8<<30 {
		t.Errorf("first mount: %+v", r)
	}
	if _, err := c.ModifyVolume(ctx, vol, cloud.VolumeChange{SizeGiB: 12}); err != nil {
		t.Fatal(err)
	}
	w.Complete(cloudtest.Op{Kind: "modify", ID: vol})
	if r := mount(); !r.Grown || !r.AlreadyMounted || r.FilesystemBytes != 12<<30 || r.DeviceBytes != 12<<30 || r.Generation != 1 {
		t.Errorf("mount after the grow: %+v", r)
	}
	if r := mount(); r.Grown || r.FilesystemBytes != 12<<30 {
		t.Errorf("mount again: %+v", r)
	}
}
