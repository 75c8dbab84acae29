package fakehost

import (
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// The fake agent follows the real agent's contract of issue 11: what it
// prints is decoded with internal/agentproto here, as the reconciler does.

func parse(t *testing.T, res worldapi.CommandResult) agentproto.Output {
	t.Helper()
	if strings.Count(res.Stdout, "\n") != 1 {
		t.Fatalf("stdout %q: want exactly one JSON line", res.Stdout)
	}
	out, ok := agentproto.ParseOutput(res.Stdout)
	if !ok {
		t.Fatalf("stdout %q: no JSON line", res.Stdout)
	}
	if out.Error != nil && out.Error.ExitCode != res.ExitCode {
		t.Fatalf("failure says exit %d, the command exited %d", out.Error.ExitCode, res.ExitCode)
	}
	return out
}

func attached(t *testing.T, h *Host, volumeID string) {
	t.Helper()
	if err := h.AttachDevice(ctx(t), worldapi.Attachment{VolumeID: volumeID}); err != nil {
		t.Fatal(err)
	}
}

func TestFormatOnlyWithTheGrantOnABlankDisk(t *testing.T) {
	disks := NewDisks()
	h := testHost(t, Options{Disks: disks})
	const torn, raw = "vol-0123456789abcdef1", "vol-0123456789abcdef2"
	for _, v := range []string{vol, torn, raw} {
		attached(t, h, v)
	}
	res := run(t, h, "tether-agent mount --volume-id "+vol+" --name a --json")
	if out := parse(t, res); res.ExitCode != agentproto.ExitNotFormatted || !strings.Contains(out.Error.Found, "zeros") {
		t.Fatalf("blank without the grant: exit %d %+v", res.ExitCode, out.Error)
	}
	// A formatted volume that lost its superblock, and raw data: never
	// formatted, grant or not.
	run(t, h, "tether-agent mount --volume-id "+torn+" --name b --format-if-blank")
	run(t, h, "tether-agent unmount --volume-id "+torn+" --name b")
	disks.TearSuperblock(torn)
	disks.SetRawData(raw)
	for _, c := range []struct{ vol, name string }{{torn, "b"}, {raw, "c"}} {
		for _, grant := range []string{"", " --format-if-blank"} {
			res := run(t, h, "tether-agent mount --volume-id "+c.vol+" --name "+c.name+grant+" --json")
			if out := parse(t, res); res.ExitCode != agentproto.ExitNotFormatted || !strings.Contains(out.Error.Found, "non-zero data") {
				t.Errorf("%s%s: exit %d %+v; want not formatted, data found", c.vol, grant, res.ExitCode, out.Error)
			}
		}
	}
	if res := run(t, h, "tether-agent mount --volume-id "+vol+" --name a --format-if-blank --json"); res.ExitCode != 0 {
		t.Fatalf("blank with the grant: exit %d %s", res.ExitCode, res.Stdout)
	}
	mkfs := disks.Mkfs()
	if len(mkfs) != 2 || mkfs[0].VolumeID != torn || mkfs[1].VolumeID != vol {
		t.Fatalf("mkfs = %+v; want torn's first format and vol's", mkfs)
	}
	for _, m := range mkfs {
		if !m.Granted {
			t.Errorf("mkfs without a grant: %+v", m)
		}
	}
}

// Kernel holders (another namespace, a stacked device) make unmount busy
// naming them, forced or not, and DetachDevice busy; the containers of a
// forced unmount keep the filesystem until they stop.
func TestUnmountIsSafeOnlyWhenTheKernelLetsGo(t *testing.T) {
	h := testHost(t, Options{})
	attached(t, h, vol)
	run(t, h, "tether-agent mount --volume-id "+vol+" --name rexray-vol --format-if-blank")
	h.HoldDevice(vol, agentproto.Holder{Kind: "namespace", Name: "/mnt/copy", PID: 4242, Command: "backup"})
	for _, force := range []string{"", " --force"} {
		res := run(t, h, "tether-agent unmount --volume-id "+vol+" --name rexray-vol --json"+force)
		if out := parse(t, res); res.ExitCode != agentproto.ExitBusy || len(out.Error.Holders) != 1 || out.Error.Holders[0].PID != 4242 {
			t.Fatalf("unmount%s with a kernel holder: exit %d %+v", force, res.ExitCode, out.Error)
		}
	}
	if err := h.DetachDevice(ctx(t), vol, false); err == nil {
		t.Fatal("DetachDevice while the kernel holds the device succeeded")
	}
	h.ReleaseDevice(vol)
	res := run(t, h, "tether-agent unmount --volume-id "+vol+" --name rexray-vol --json")
	if u, ok := parse(t, res).Unmount(); !ok || !u.Released || u.Generation != 1 {
		t.Fatalf("unmount after the holder went: %s", res.Stdout)
	}

	// A running container: --force goes past it, its namespace keeps the
	// filesystem, busy until the task stops.
	run(t, h, "tether-agent mount --volume-id "+vol+" --name rexray-vol")
	rec := newRecorder()
	spec := seedSpec("0123456789abcdef0123456789abcdef", "shared")
	if err := h.StartTask(ctx(t), spec, rec.report); err != nil {
		t.Fatal(err)
	}
	rec.next(t, "PENDING")
	rec.next(t, "RUNNING")
	res = run(t, h, "tether-agent unmount --volume-id "+vol+" --name rexray-vol --force --json")
	if out := parse(t, res); res.ExitCode != agentproto.ExitBusy || out.Error.Holders[0].ContainerID == "" {
		t.Fatalf("forced unmount under a running container: exit %d %+v", res.ExitCode, out.Error)
	}
	if err := h.DetachDevice(ctx(t), vol, false); err == nil {
		t.Fatal("DetachDevice while a container's namespace holds the device succeeded")
	}
	if err := h.StopTask(ctx(t), spec.TaskArn); err != nil {
		t.Fatal(err)
	}
	rec.next(t, "STOPPED")
	if res := run(t, h, "tether-agent unmount --volume-id "+vol+" --name rexray-vol --json"); res.ExitCode != 0 {
		t.Fatalf("unmount after the container went: exit %d %s", res.ExitCode, res.Stdout)
	}
	if err := h.DetachDevice(ctx(t), vol, false); err != nil {
		t.Fatal(err)
	}
}

// A slow flush runs past the command's timeout; the volume stays mounted
// (and the device busy) until the flush ends.
func TestSlowFlushRunsPastEveryTimer(t *testing.T) {
	h := testHost(t, Options{})
	attached(t, h, vol)
	run(t, h, "tether-agent mount --volume-id "+vol+" --name rexray-vol --format-if-blank")
	h.SlowFlush(vol)
	res, err := h.RunShellScript(ctx(t), "tether-agent unmount --volume-id "+vol+" --name rexray-vol --json", time.Millisecond)
	if err != nil || res.ExitCode != agentproto.ExitFailed {
		t.Fatalf("unmount cut short: %+v, %v", res, err)
	}
	if st := h.State(); st.Mounts["rexray-vol"] != vol {
		t.Fatalf("a flush cut short unmounted: %+v", st.Mounts)
	}
	if err := h.DetachDevice(ctx(t), vol, false); err == nil {
		t.Fatal("detach during the flush succeeded")
	}
	done := make(chan worldapi.CommandResult, 1)
	go func() {
		res, _ := h.RunShellScript(ctx(t), "tether-agent unmount --volume-id "+vol+" --name rexray-vol --json", time.Minute)
		done <- res
	}()
	h.FinishFlush(vol)
	if res := <-done; res.ExitCode != 0 {
		t.Fatalf("unmount after the flush: %+v", res)
	}
}

// A force detach of a mounted volume tears its superblock under
// TearOnForceDetach: the next mount refuses it, grant or not.
func TestTornSuperblockAfterAForceDetach(t *testing.T) {
	disks := NewDisks()
	disks.TearOnForceDetach(true)
	h := testHost(t, Options{Disks: disks})
	attached(t, h, vol)
	run(t, h, "tether-agent mount --volume-id "+vol+" --name rexray-vol --format-if-blank")
	if err := h.DetachDevice(ctx(t), vol, true); err != nil {
		t.Fatal(err)
	}
	if d, _ := disks.Volume(vol); !d.Torn || d.Unclean != 1 {
		t.Fatalf("disk after a force detach = %+v", d)
	}
	h2 := testHost(t, Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", Disks: disks})
	attached(t, h2, vol)
	res := run(t, h2, "tether-agent mount --volume-id "+vol+" --name rexray-vol --format-if-blank --json")
	if res.ExitCode != agentproto.ExitNotFormatted || len(disks.Mkfs()) != 1 {
		t.Fatalf("mount of the torn volume: exit %d, mkfs %+v", res.ExitCode, disks.Mkfs())
	}
}

// The unmount hook runs once the unmount released the volume: a task
// started there (the plugin racing the reconciler's detach) waits for the
// reconciler, it never gets the released volume from the plugin.
func TestPluginDoesNotRaceADetach(t *testing.T) {
	h := testHost(t, Options{PluginWait: time.Hour})
	attached(t, h, vol)
	run(t, h, "tether-agent mount --volume-id "+vol+" --name rexray-vol --format-if-blank")
	rec := newRecorder()
	spec := seedSpec("0123456789abcdef0123456789abcdef", "shared")
	h.OnUnmount(func(string, string) {
		if err := h.StartTask(ctx(t), spec, rec.report); err != nil {
			t.Error(err)
		}
	})
	if res := run(t, h, "tether-agent unmount --volume-id "+vol+" --name rexray-vol"); res.ExitCode != 0 {
		t.Fatal(res.Stderr)
	}
	rec.next(t, "PENDING")
	if err := h.DetachDevice(ctx(t), vol, false); err != nil {
		t.Fatalf("the detach after the unmount: %v (the plugin remounted the released volume?)", err)
	}
	if st := h.State(); st.Tasks[spec.TaskArn] != "PENDING" || st.Mounts["rexray-vol"] != "" {
		t.Fatalf("state = %+v", st)
	}
}

func TestVersionAndHelp(t *testing.T) {
	h := testHost(t, Options{})
	res := run(t, h, "tether-agent version --json")
	if v, ok := parse(t, res).Version(); !ok || v.Protocol != agentproto.Protocol {
		t.Fatalf("version: %s", res.Stdout)
	}
	if res := run(t, h, "tether-agent mount -h"); res.ExitCode != 0 || !strings.Contains(res.Stdout, "Usage") {
		t.Fatalf("mount -h: %+v", res)
	}
}

// The plugin's own unmount after the last container flushes as slowly as
// the command's under SlowFlush: the filesystem stays mounted (the device
// busy), a new container does not get it, tether's mount waits for the
// flush (the volume's lock), and it is unmounted when the flush ends.
func TestPluginUnmountFlushesSlowly(t *testing.T) {
	h := testHost(t, Options{PluginWait: time.Hour})
	attached(t, h, vol)
	run(t, h, "tether-agent mount --volume-id "+vol+" --name rexray-vol --format-if-blank")
	rec := newRecorder()
	first := seedSpec("0123456789abcdef0123456789abcdef", "shared")
	if err := h.StartTask(ctx(t), first, rec.report); err != nil {
		t.Fatal(err)
	}
	rec.next(t, "PENDING")
	rec.next(t, "RUNNING")
	h.SlowFlush(vol)
	if err := h.StopTask(ctx(t), first.TaskArn); err != nil {
		t.Fatal(err)
	}
	rec.next(t, "STOPPED")
	if g, _ := h.Holding(vol); len(g.Mounted) != 1 {
		t.Fatalf("after the last container, during the flush: %+v; want still mounted", g)
	}
	if err := h.DetachDevice(ctx(t), vol, false); err == nil {
		t.Fatal("detach during the plugin's flush succeeded")
	}
	next := newRecorder()
	second := seedSpec("fedcba9876543210fedcba9876543210", "shared")
	if err := h.StartTask(ctx(t), second, next.report); err != nil {
		t.Fatal(err)
	}
	next.next(t, "PENDING")
	res, err := h.RunShellScript(ctx(t), "tether-agent mount --volume-id "+vol+" --name rexray-vol --lock-wait 1ms --json", time.Minute)
	if err != nil || res.ExitCode != agentproto.ExitRetryable {
		t.Fatalf("mount during the flush: %+v, %v; want exit %d (the lock)", res, err, agentproto.ExitRetryable)
	}
	if st := h.State(); st.Tasks[second.TaskArn] != "PENDING" {
		t.Fatalf("a container got the volume while it flushed: %+v", st.Tasks)
	}
	h.FinishFlush(vol)
	// Unmounted once the flush ended; not released (the plugin's own
	// unmount), so the plugin mounts it again for the waiting container: a
	// new generation.
	next.next(t, "RUNNING")
	if b := h.State().Bindings["rexray-vol"]; b.Generation != 2 || b.Released {
		t.Fatalf("binding after the flush and the remount: %+v; want generation 2", b)
	}
}

// Holding says what a detach must not go past; a torn superblock is
// repaired by its operator, data and all.
func TestHoldingAndRepair(t *testing.T) {
	disks := NewDisks()
	h := testHost(t, Options{Disks: disks})
	if g, up := h.Holding(vol); !up || g.Attached || len(g.Bindings) != 0 {
		t.Fatalf("before the attach: %+v %v", g, up)
	}
	attached(t, h, vol)
	run(t, h, "tether-agent mount --volume-id "+vol+" --name rexray-vol --format-if-blank")
	h.HoldDevice(vol, agentproto.Holder{Kind: "namespace", Name: "/mnt/copy", PID: 7})
	g, _ := h.Holding(vol)
	if !g.Attached || len(g.Mounted) != 1 || len(g.Holders) != 1 || g.Bindings["rexray-vol"].Released || g.Bindings["rexray-vol"].Generation != 1 {
		t.Fatalf("mounted and held: %+v", g)
	}
	h.ReleaseDevice(vol)
	run(t, h, "tether-agent unmount --volume-id "+vol+" --name rexray-vol")
	if g, _ := h.Holding(vol); len(g.Mounted) != 0 || !g.Bindings["rexray-vol"].Released {
		t.Fatalf("unmounted: %+v", g)
	}
	disks.write(vol, "arn:task/one")
	disks.TearSuperblock(vol)
	if res := run(t, h, "tether-agent mount --volume-id "+vol+" --name rexray-vol --format-if-blank"); res.ExitCode != agentproto.ExitNotFormatted {
		t.Fatalf("mount of the torn volume: exit %d", res.ExitCode)
	}
	if !disks.RepairSuperblock(vol) || disks.RepairSuperblock(vol) {
		t.Fatal("RepairSuperblock: want true once, then false (not torn)")
	}
	if res := run(t, h, "tether-agent mount --volume-id "+vol+" --name rexray-vol --json"); res.ExitCode != 0 || !strings.Contains(res.Stdout, `"checked":true`) {
		t.Fatalf("mount after the repair: exit %d %s; want checked", res.ExitCode, res.Stdout)
	}
	if d, _ := disks.Volume(vol); d.Formats != 1 || len(d.Writes) != 1 || d.Torn {
		t.Fatalf("after the repair: %+v", d)
	}
	h.Kill()
	if _, up := h.Holding(vol); up {
		t.Fatal("a dead host holds something")
	}
}
