package fakehost

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

const vol = "vol-0123456789abcdef0"

func testHost(t *testing.T, opts Options) *Host {
	t.Helper()
	if opts.InstanceID == "" {
		opts.InstanceID = "i-0aaaaaaaaaaaaaaa1"
	}
	h := New(opts)
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func run(t *testing.T, h *Host, script string) worldapi.CommandResult {
	t.Helper()
	res, err := h.RunShellScript(ctx(t), script, time.Minute)
	if err != nil {
		t.Fatalf("RunShellScript(%q): %v", script, err)
	}
	return res
}

func TestMountFormatsOnceAndReportsTheContractJSON(t *testing.T) {
	disks := NewDisks()
	h := testHost(t, Options{Disks: disks})
	if err := h.AttachDevice(ctx(t), worldapi.Attachment{VolumeID: vol, DeviceName: "/dev/xvdf"}); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/bash\nset -euo pipefail\n# mount\n/usr/local/bin/tether-agent mount --volume-id '" + vol + "' --name \"rexray-vol\" --fstype xfs --format-if-blank --attachment i-1:5 --json\n"
	res := run(t, h, script)
	if res.ExitCode != agentproto.ExitOK {
		t.Fatalf("mount: exit %d: %s", res.ExitCode, res.Stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(res.Stdout), &got); err != nil {
		t.Fatalf("mount --json output %q: %v", res.Stdout, err)
	}
	want := map[string]any{"volumeId": vol, "name": "rexray-vol", "device": "/dev/nvme1n1", "fstype": "xfs", "formatted": true, "grown": false,
		"mountpoint": "/var/lib/tether/volumes/rexray-vol", "alreadyMounted": false, "generation": float64(1), "attachment": "i-1:5"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("mount --json %s = %v, want %v", k, got[k], v)
		}
	}
	again := run(t, h, script)
	if !strings.Contains(again.Stdout, `"alreadyMounted":true`) || !strings.Contains(again.Stdout, `"formatted":false`) {
		t.Fatalf("second mount: %s", again.Stdout)
	}
	// On another host the filesystem is found, not made again.
	if res := run(t, h, "tether-agent unmount --volume-id "+vol+" --name rexray-vol --json"); res.ExitCode != 0 || !strings.Contains(res.Stdout, `"wasMounted":true`) {
		t.Fatalf("unmount: %+v", res)
	}
	if err := h.DetachDevice(ctx(t), vol, false); err != nil {
		t.Fatal(err)
	}
	h2 := testHost(t, Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", Disks: disks})
	if err := h2.AttachDevice(ctx(t), worldapi.Attachment{VolumeID: vol}); err != nil {
		t.Fatal(err)
	}
	res2 := run(t, h2, "tether-agent mount --volume-id "+vol+" --name rexray-vol --format-if-blank --json")
	if res2.ExitCode != 0 || !strings.Contains(res2.Stdout, `"formatted":false`) || !strings.Contains(res2.Stdout, `"fstype":"xfs"`) {
		t.Fatalf("mount on the second host: %+v", res2)
	}
	if d, _ := disks.Volume(vol); d.Formats != 1 {
		t.Fatalf("formatted %d times", d.Formats)
	}
	if m := disks.Mkfs(); len(m) != 1 || !m[0].Granted || m[0].VolumeID != vol || m[0].Instance != "i-0aaaaaaaaaaaaaaa1" {
		t.Fatalf("mkfs records = %+v", m)
	}
}

func TestExitCodesAsTheContractSays(t *testing.T) {
	disks := NewDisks()
	h := testHost(t, Options{Disks: disks})
	cases := []struct {
		script string
		code   int
	}{
		{"tether-agent mount --volume-id vol-xyz --name a --json", agentproto.ExitBadInput},
		{"tether-agent mount --volume-id " + vol + " --name ../etc --json", agentproto.ExitBadInput},
		{"tether-agent mount --volume-id " + vol + " --name a --fstype btrfs", agentproto.ExitBadInput},
		{"tether-agent mount --volume-id " + vol + " --name a --bogus", agentproto.ExitBadInput},
		{"tether-agent frobnicate", agentproto.ExitBadInput},
		{"tether-agent mount --volume-id " + vol + " --name a $(reboot)", agentproto.ExitBadInput},
		{"tether-agent status; rm -rf /", 127},
		{"tether-agent status > /etc/passwd", agentproto.ExitBadInput},
		{"if [ -n 'x' ]; then reboot; fi", 127},
		{"if [ 'x' = x ]; then tether-agent status --json; fi", agentproto.ExitOK},
		{"for i in 1; do tether-agent status; done", agentproto.ExitBadInput},
		{"rm -rf /", 127},
		{"tether-agent mount --volume-id " + vol + " --name a --wait 10ms", agentproto.ExitNoDevice},
		{"tether-agent unmount --volume-id " + vol + " --name a --json", agentproto.ExitOK}, // nothing to do
		{"tether-agent status --json", agentproto.ExitOK},
	}
	for _, c := range cases {
		if res := run(t, h, c.script); res.ExitCode != c.code {
			t.Errorf("%q: exit %d, want %d (stderr %q)", c.script, res.ExitCode, c.code, res.Stderr)
		}
	}
	disks.SetSignature(vol, "gpt")
	if err := h.AttachDevice(ctx(t), worldapi.Attachment{VolumeID: vol}); err != nil {
		t.Fatal(err)
	}
	if res := run(t, h, "tether-agent mount --volume-id "+vol+" --name a --format-if-blank"); res.ExitCode != agentproto.ExitRefused {
		t.Fatalf("a device with a partition table: exit %d", res.ExitCode)
	}
	if d, _ := disks.Volume(vol); d.Formats != 0 {
		t.Fatal("a device with a signature was formatted")
	}
}

// recorder collects a task's reports.
type recorder struct {
	mu  sync.Mutex
	all []worldapi.TaskUpdate
	ch  chan worldapi.TaskUpdate
}

func newRecorder() *recorder { return &recorder{ch: make(chan worldapi.TaskUpdate, 16)} }

func (r *recorder) report(u worldapi.TaskUpdate) {
	r.mu.Lock()
	r.all = append(r.all, u)
	r.mu.Unlock()
	r.ch <- u
}

func (r *recorder) next(t *testing.T, status string) worldapi.TaskUpdate {
	t.Helper()
	select {
	case u := <-r.ch:
		if u.Status != status {
			t.Fatalf("report %s (%q), want %s", u.Status, u.StoppedReason, status)
		}
		return u
	case <-ctx(t).Done():
		t.Fatalf("no %s report", status)
	}
	return worldapi.TaskUpdate{}
}

func seedSpec(taskID, scope string) worldapi.TaskSpec {
	return worldapi.TaskSpec{
		TaskArn: "arn:aws:ecs:us-west-2:123456789012:task/c1/" + taskID, Family: "mysql", Revision: 3,
		Containers: []worldapi.ContainerSpec{{Name: "mysql", Image: "mysql", Essential: true, MountPoints: []worldapi.MountPoint{{SourceVolume: "rexray-vol", ContainerPath: "/var/lib/mysql"}}}},
		Volumes:    []worldapi.VolumeSpec{{Name: "rexray-vol", Docker: &worldapi.DockerVolumeConfiguration{Scope: scope, Autoprovision: scope == "shared", Driver: "tether", DriverOpts: map[string]string{"size": "5", "volumetype": "gp2"}}}},
	}
}

func TestTaskStartsOnlyOnceItsVolumeIsMountedAndHoldsIt(t *testing.T) {
	h := testHost(t, Options{})
	rec := newRecorder()
	spec := seedSpec("0123456789abcdef0123456789abcdef", "shared")
	if err := h.StartTask(ctx(t), spec, rec.report); err != nil {
		t.Fatal(err)
	}
	rec.next(t, "PENDING")
	if err := h.AttachDevice(ctx(t), worldapi.Attachment{VolumeID: vol}); err != nil {
		t.Fatal(err)
	}
	if res := run(t, h, "tether-agent mount --volume-id "+vol+" --name rexray-vol --format-if-blank --json"); res.ExitCode != 0 {
		t.Fatal(res.Stderr)
	}
	if u := rec.next(t, "RUNNING"); u.Containers[0].RuntimeID == "" {
		t.Fatal("no runtime id")
	}
	if err := h.DetachDevice(ctx(t), vol, false); !errors.Is(err, worldapi.ErrDeviceBusy) {
		t.Fatalf("detach while mounted: %v", err)
	}
	if res := run(t, h, "tether-agent unmount --volume-id "+vol+" --name rexray-vol"); res.ExitCode != agentproto.ExitBusy {
		t.Fatalf("unmount under a running container: exit %d", res.ExitCode)
	}
	if err := h.StopTask(ctx(t), spec.TaskArn); err != nil {
		t.Fatal(err)
	}
	if u := rec.next(t, "STOPPED"); u.Containers[0].ExitCode == nil || *u.Containers[0].ExitCode != 0 {
		t.Fatalf("stopped: %+v", u)
	}
	// The plugin unmounted after its last user; the device stays attached.
	if st := h.State(); len(st.Mounts) != 0 || st.Devices[vol] == "" {
		t.Fatalf("after stop: %+v", st)
	}
	if err := h.DetachDevice(ctx(t), vol, false); err != nil {
		t.Fatal(err)
	}
	if d, _ := h.Disks().Volume(vol); len(d.Writes) != 1 || d.Writes[0] != spec.TaskArn {
		t.Fatalf("data: %+v", d)
	}
}

func TestPluginWaitEndsWithAnErrorThatSaysWhat(t *testing.T) {
	h := testHost(t, Options{PluginWait: 10 * time.Millisecond})
	rec := newRecorder()
	spec := seedSpec("0123456789abcdef0123456789abcdef", "task")
	spec.Volumes[0].Docker.Autoprovision = false
	if err := h.StartTask(ctx(t), spec, rec.report); err != nil {
		t.Fatal(err)
	}
	rec.next(t, "PENDING")
	u := rec.next(t, "STOPPED")
	for _, want := range []string{"VolumeDriver.Mount", "task-0123456789abcdef0123456789abcdef-rexray-vol", "after 10ms", "ecs-mysql-3-rexray-vol-"} {
		if !strings.Contains(u.StoppedReason, want) {
			t.Errorf("reason %q lacks %q", u.StoppedReason, want)
		}
	}

	// Task scope with autoprovision: the ECS agent refuses the task.
	rec2 := newRecorder()
	bad := seedSpec("fedcba9876543210fedcba9876543210", "task")
	bad.Volumes[0].Docker.Autoprovision = true
	if err := h.StartTask(ctx(t), bad, rec2.report); err != nil {
		t.Fatal(err)
	}
	rec2.next(t, "PENDING")
	if u := rec2.next(t, "STOPPED"); !strings.Contains(u.StoppedReason, "task scoped volume could not be autoprovisioned") {
		t.Fatalf("reason %q", u.StoppedReason)
	}
}

// The plugin remounts a bound volume attached here by itself after its own
// unmount (the last container went), but not after the unmount command
// released it: then it waits for the reconciler's next mount.
func TestPluginRemountsABindingUnlessReleased(t *testing.T) {
	h := testHost(t, Options{})
	if err := h.AttachDevice(ctx(t), worldapi.Attachment{VolumeID: vol}); err != nil {
		t.Fatal(err)
	}
	run(t, h, "tether-agent mount --volume-id "+vol+" --name rexray-vol --format-if-blank")
	first := seedSpec("0123456789abcdef0123456789abcdef", "shared")
	rec := newRecorder()
	if err := h.StartTask(ctx(t), first, rec.report); err != nil {
		t.Fatal(err)
	}
	rec.next(t, "PENDING")
	rec.next(t, "RUNNING")
	if err := h.StopTask(ctx(t), first.TaskArn); err != nil {
		t.Fatal(err)
	}
	rec.next(t, "STOPPED") // the plugin unmounted: not released
	second := seedSpec("1123456789abcdef0123456789abcdef", "shared")
	rec2 := newRecorder()
	if err := h.StartTask(ctx(t), second, rec2.report); err != nil {
		t.Fatal(err)
	}
	rec2.next(t, "PENDING")
	rec2.next(t, "RUNNING") // no reconciler needed: binding known, device attached
	if st := h.State(); st.Bindings["rexray-vol"].Generation != 2 {
		t.Fatalf("bindings = %+v; the plugin's remount is generation 2", st.Bindings)
	}
	if err := h.StopTask(ctx(t), second.TaskArn); err != nil {
		t.Fatal(err)
	}
	rec2.next(t, "STOPPED")

	res := run(t, h, "tether-agent unmount --volume-id "+vol+" --name rexray-vol --attachment i-1:7 --json")
	out, _ := agentproto.ParseOutput(res.Stdout)
	if u, ok := out.Unmount(); res.ExitCode != 0 || !ok || !u.Released || u.Generation != 2 || u.Attachment != "i-1:7" {
		t.Fatalf("unmount: exit %d %s", res.ExitCode, res.Stdout)
	}
	third := seedSpec("2123456789abcdef0123456789abcdef", "shared")
	rec3 := newRecorder()
	if err := h.StartTask(ctx(t), third, rec3.report); err != nil {
		t.Fatal(err)
	}
	rec3.next(t, "PENDING")
	waitState(t, h, "the released volume stays unmounted while the task waits", func(st State) bool {
		return st.Tasks[third.TaskArn] == "PENDING" && st.Mounts["rexray-vol"] == "" && st.Bindings["rexray-vol"].Released
	})
	res = run(t, h, "tether-agent mount --volume-id "+vol+" --name rexray-vol --json")
	if out, _ := agentproto.ParseOutput(res.Stdout); res.ExitCode != 0 {
		t.Fatalf("mount: %+v", out)
	} else if m, _ := out.Mount(); m.Generation != 3 || m.Formatted {
		t.Fatalf("mount after the release = %+v; want generation 3", m)
	}
	rec3.next(t, "RUNNING")
}

// waitState polls the host's state (bounded) until cond holds.
func waitState(t *testing.T, h *Host, what string, cond func(State) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(h.State()) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s; state %+v", what, h.State())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestKillAndAttributes(t *testing.T) {
	h := testHost(t, Options{AZ: "us-west-2a"})
	attrs, err := h.Attributes(ctx(t))
	if err != nil || attrs["ecs.availability-zone"] != "us-west-2a" {
		t.Fatalf("attributes: %v %v", attrs, err)
	}
	if _, ok := attrs["ecs.capability.docker-plugin.tether"]; !ok {
		t.Fatal("plugin capability missing")
	}
	noPlugin := testHost(t, Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", NoPlugin: true})
	a, _ := noPlugin.Attributes(ctx(t))
	if _, ok := a["ecs.capability.docker-plugin.tether"]; ok {
		t.Fatal("a host without the plugin advertises it")
	}
	if err := h.AttachDevice(ctx(t), worldapi.Attachment{VolumeID: vol}); err != nil {
		t.Fatal(err)
	}
	run(t, h, "tether-agent mount --volume-id "+vol+" --name rexray-vol --format-if-blank")
	if err := h.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.RunShellScript(ctx(t), "tether-agent status", time.Second); !errors.Is(err, worldapi.ErrHostDown) {
		t.Fatalf("a dead host ran a script: %v", err)
	}
	if err := h.RestartAgent(ctx(t)); !errors.Is(err, worldapi.ErrHostDown) {
		t.Fatalf("RestartAgent on a dead host: %v", err)
	}
	if d, _ := h.Disks().Volume(vol); d.Unclean != 1 {
		t.Fatalf("a host died with the volume mounted: unclean %d", d.Unclean)
	}
}

// Once killed or closed, every worldapi.Host method answers ErrHostDown.
func TestEveryMethodAnswersHostDownAfterKillOrClose(t *testing.T) {
	for name, end := range map[string]func(*Host) error{"Kill": (*Host).Kill, "Close": (*Host).Close} {
		t.Run(name, func(t *testing.T) {
			h := testHost(t, Options{AZ: "us-west-2a"})
			if err := end(h); err != nil {
				t.Fatal(err)
			}
			c := ctx(t)
			for method, call := range map[string]func() error{
				"Attributes":   func() error { _, err := h.Attributes(c); return err },
				"AttachDevice": func() error { return h.AttachDevice(c, worldapi.Attachment{VolumeID: vol}) },
				"DetachDevice": func() error { return h.DetachDevice(c, vol, true) },
				"RunShellScript": func() error {
					_, err := h.RunShellScript(c, "tether-agent status --json", time.Second)
					return err
				},
				"RestartAgent": func() error { return h.RestartAgent(c) },
				"StartTask": func() error {
					return h.StartTask(c, worldapi.TaskSpec{TaskArn: "arn:aws:ecs:us-west-2:123456789012:task/c/1"}, func(worldapi.TaskUpdate) {})
				},
				"StopTask": func() error { return h.StopTask(c, "arn:aws:ecs:us-west-2:123456789012:task/c/1") },
			} {
				if err := call(); !errors.Is(err, worldapi.ErrHostDown) {
					t.Errorf("%s after %s: err = %v, want ErrHostDown", method, name, err)
				}
			}
		})
	}
}

// A container that starts holds the volumes whose Mount the plugin has
// answered, while it waits for its others: an unmount then is busy (the
// chaos finding: a stale unmount left it to start on an empty directory).
func TestUnmountIsBusyWhileAContainerStartsWithTheMountAnswered(t *testing.T) {
	h := testHost(t, Options{})
	const vol2 = "vol-0123456789abcdef2"
	spec := seedSpec("0123456789abcdef0123456789abcdef", "shared")
	second := spec.Volumes[0]
	second.Name = "second"
	spec.Volumes = append(spec.Volumes, second)
	if err := h.AttachDevice(ctx(t), worldapi.Attachment{VolumeID: vol}); err != nil {
		t.Fatal(err)
	}
	run(t, h, "tether-agent mount --volume-id "+vol+" --name rexray-vol --format-if-blank")
	rec := newRecorder()
	if err := h.StartTask(ctx(t), spec, rec.report); err != nil {
		t.Fatal(err)
	}
	rec.next(t, "PENDING")
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		held := h.inUseLocked("rexray-vol")
		h.mu.Unlock()
		if held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the starting task never held rexray-vol")
		}
		time.Sleep(time.Millisecond)
	}
	res := run(t, h, "tether-agent unmount --volume-id "+vol+" --name rexray-vol --json")
	if res.ExitCode != agentproto.ExitBusy || !strings.Contains(res.Stderr, "starting") {
		t.Fatalf("unmount while the task starts: exit %d %s; want busy", res.ExitCode, res.Stderr)
	}
	if err := h.AttachDevice(ctx(t), worldapi.Attachment{VolumeID: vol2}); err != nil {
		t.Fatal(err)
	}
	run(t, h, "tether-agent mount --volume-id "+vol2+" --name second --format-if-blank")
	rec.next(t, "RUNNING")
	if d, _ := h.Disks().Volume(vol); len(d.Writes) != 1 || d.Writes[0] != spec.TaskArn {
		t.Fatalf("the task did not write on its volume: %+v", d)
	}
}
