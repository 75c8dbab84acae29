package fakehost

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// The fake agent grows as the real one: the mount command again on a
// mounted volume whose backing file grew (EC2's modification in force)
// reports the grow and the new sizes once, on the same mount generation.
func TestMountAgainGrowsAGrownVolume(t *testing.T) {
	disks := NewDisks()
	h := testHost(t, Options{Disks: disks})
	backing := filepath.Join(t.TempDir(), vol+".img")
	if err := os.WriteFile(backing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, 1<<30); err != nil {
		t.Fatal(err)
	}
	if err := h.AttachDevice(ctx(t), worldapi.Attachment{VolumeID: vol, BackingFile: backing, DeviceName: "/dev/xvdf"}); err != nil {
		t.Fatal(err)
	}
	mount := func() agentproto.MountResult {
		t.Helper()
		res := run(t, h, "tether-agent mount --volume-id "+vol+" --name data --format-if-blank --json")
		var r agentproto.MountResult
		if res.ExitCode != 0 || json.Unmarshal([]byte(res.Stdout), &r) != nil {
			t.Fatalf("mount: %+v", res)
		}
		return r
	}
	if r := mount(); !r.Formatted || r.Grown || r.DeviceBytes != 1<<30 || r.FilesystemBytes != 1<<30 {
		t.Errorf("first mount: %+v", r)
	}
	if err := os.Truncate(backing, 3<<30); err != nil {
		t.Fatal(err)
	}
	if r := mount(); !r.AlreadyMounted || !r.Grown || r.DeviceBytes != 3<<30 || r.FilesystemBytes != 3<<30 || r.Generation != 1 {
		t.Errorf("mount after the grow: %+v", r)
	}
	if r := mount(); r.Grown || r.FilesystemBytes != 3<<30 {
		t.Errorf("mount once more: %+v", r)
	}
	if d, _ := disks.Volume(vol); d.FSBytes != 3<<30 || d.Formats != 1 {
		t.Errorf("disk after the grow: %+v", d)
	}
}
