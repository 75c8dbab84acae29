package hosts_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/sandbox"
	"github.com/tether-ecs/tether/test/world/hosts"
	"github.com/tether-ecs/tether/test/world/hosts/engine"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

const pluginCapability = "ecs.capability.docker-plugin.tether"

func tetherVolume(name string) []worldapi.VolumeSpec {
	return []worldapi.VolumeSpec{{Name: name, Docker: &worldapi.DockerVolumeConfiguration{
		Scope: "shared", Autoprovision: true, Driver: "tether", DriverOpts: map[string]string{"size": "1"},
	}}}
}

func hasPlugin(t *testing.T, in *hosts.Instance) bool {
	t.Helper()
	attrs, err := in.Attributes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, ok := attrs[pluginCapability]
	return ok
}

// taskContainers lists the Docker containers of a task on an instance.
func taskContainers(t *testing.T, in *hosts.Instance, arn string) []engine.ContainerSummary {
	t.Helper()
	docker := engine.New(in.Machine().Path(sandbox.DockerSocket))
	defer docker.Close()
	all, err := docker.ContainerList(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	var out []engine.ContainerSummary
	for _, c := range all {
		if c.Labels[hosts.LabelTaskARN] == arn {
			out = append(out, c)
		}
	}
	return out
}

func TestPluginCapabilityFollowsTheAgent(t *testing.T) {
	requirePrereqs(t)
	agent := tetherAgent(t)
	in := launch(t, "i-0000000000000000d", agent)
	if !hasPlugin(t, in) {
		t.Fatalf("%s not advertised while tether-agent serves", pluginCapability)
	}
	if err := in.StopAgent(); err != nil {
		t.Fatal(err)
	}
	if hasPlugin(t, in) {
		t.Errorf("%s advertised while tether-agent is stopped", pluginCapability)
	}
	if err := in.RestartAgent(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !hasPlugin(t, in) {
		t.Errorf("%s not advertised after RestartAgent", pluginCapability)
	}
}

// The agent is /usr/local/bin/tether-agent inside each instance, where
// the SSM documents call it, and nowhere on the box.
func TestAgentIsInstalledWhereTheDocumentsCallIt(t *testing.T) {
	requirePrereqs(t)
	in := launch(t, "i-00000000000000011", tetherAgent(t))
	out := sh(t, in, hosts.AgentPath+" version --json")
	if o, ok := agentproto.ParseOutput(out); !ok {
		t.Fatalf("version --json printed %q", out)
	} else if v, ok := o.Version(); !ok || v.Protocol != agentproto.Protocol {
		t.Fatalf("version = %+v", v)
	}
	if _, err := os.Stat(hosts.AgentPath); err == nil {
		t.Errorf("%s exists on the box too: the install leaked out of the instance", hosts.AgentPath)
	}
}

func TestTetherVolumeFollowsTheTask(t *testing.T) {
	requirePrereqs(t)
	testenvCommands(t, "mkfs.ext4", "blkid")
	ctx := context.Background()
	agent := tetherAgent(t)
	a := launch(t, "i-0000000000000000e", agent)
	b := launch(t, "i-0000000000000000f", agent)
	const vol = "vol-0123456789abcdef0"
	backing := sparseFile(t, vol, 256<<20)
	// As the SSM documents call it: by its absolute path, with the grant.
	mount := hosts.AgentPath + " mount --volume-id " + vol + " --name data --format-if-blank --json"
	unmount := hosts.AgentPath + " unmount --volume-id " + vol + " --name data --json"

	// On A: the container waits for the volume, then writes to it.
	arn1 := taskArn + "a"
	r1 := newReports()
	spec := busyboxTask(arn1, []string{"echo from-a > /data/proof && exec sleep 1000"},
		tetherVolume("data"), []worldapi.MountPoint{{SourceVolume: "data", ContainerPath: "/data"}})
	if err := a.StartTask(ctx, spec, r1.add); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the task's container to be created on "+a.InstanceID(), time.Minute, func() (bool, string) {
		cs := taskContainers(t, a, arn1)
		return len(cs) == 1, "containers: " + strings.Join(r1.statuses(), ",")
	})
	if slices.Contains(r1.statuses(), hosts.StatusRunning) {
		t.Fatalf("task RUNNING before its volume was mounted: %v", r1.statuses())
	}
	if cs := taskContainers(t, a, arn1); cs[0].State != "created" {
		t.Fatalf("container state %q before the volume was mounted, want created", cs[0].State)
	}
	if err := a.AttachDevice(ctx, worldapi.Attachment{VolumeID: vol, BackingFile: backing, DeviceName: "/dev/xvdf"}); err != nil {
		t.Fatal(err)
	}
	sh(t, a, mount)
	r1.waitStatus(t, hosts.StatusRunning, 2*time.Minute)
	eventually(t, "the container's file on the mounted volume", time.Minute, func() (bool, string) {
		res, err := a.RunShellScript(ctx, "cat /var/lib/tether/volumes/data/proof", time.Minute)
		return err == nil && res.Stdout == "from-a\n", res.Stdout + res.Stderr
	})
	if src := sh(t, a, "findmnt -n -o SOURCE /var/lib/tether/volumes/data"); !strings.HasPrefix(src, "/dev/loop") {
		t.Fatalf("/var/lib/tether/volumes/data is mounted from %q, want the loop device", src)
	}
	if err := a.DetachDevice(ctx, vol, false); !errors.Is(err, worldapi.ErrDeviceBusy) {
		t.Fatalf("detach while the task runs: err = %v, want ErrDeviceBusy", err)
	}
	if err := a.StopTask(ctx, arn1); err != nil {
		t.Fatal(err)
	}
	r1.waitStatus(t, hosts.StatusStopped, time.Minute)
	sh(t, a, unmount)
	if err := a.DetachDevice(ctx, vol, false); err != nil {
		t.Fatalf("detach after unmount: %v", err)
	}

	// On B: the same volume, the same data.
	arn2 := taskArn + "b"
	r2 := newReports()
	spec = busyboxTask(arn2, []string{"cat /data/proof > /data/seen-by-b && exec sleep 1000"},
		tetherVolume("data"), []worldapi.MountPoint{{SourceVolume: "data", ContainerPath: "/data"}})
	if err := b.AttachDevice(ctx, worldapi.Attachment{VolumeID: vol, BackingFile: backing, DeviceName: "/dev/xvdf"}); err != nil {
		t.Fatal(err)
	}
	if err := b.StartTask(ctx, spec, r2.add); err != nil {
		t.Fatal(err)
	}
	sh(t, b, mount)
	r2.waitStatus(t, hosts.StatusRunning, 2*time.Minute)
	eventually(t, "B's container to read A's file", time.Minute, func() (bool, string) {
		res, err := b.RunShellScript(ctx, "cat /var/lib/tether/volumes/data/seen-by-b", time.Minute)
		return err == nil && res.Stdout == "from-a\n", res.Stdout + res.Stderr
	})
	if err := b.StopTask(ctx, arn2); err != nil {
		t.Fatal(err)
	}
	r2.waitStatus(t, hosts.StatusStopped, time.Minute)
	sh(t, b, unmount)
	if err := b.DetachDevice(ctx, vol, false); err != nil {
		t.Fatalf("detach from B: %v", err)
	}
}

func TestTaskWhoseVolumeNeverMountsStopsWithThePluginError(t *testing.T) {
	requirePrereqs(t)
	agent := tetherAgent(t)
	in := launchWith(t, "i-00000000000000010", agent, "--mount-wait", "3s")
	r := newReports()
	spec := busyboxTask(taskArn+"c", []string{"exec sleep 1000"},
		tetherVolume("never"), []worldapi.MountPoint{{SourceVolume: "never", ContainerPath: "/data"}})
	if err := in.StartTask(context.Background(), spec, r.add); err != nil {
		t.Fatal(err)
	}
	u := r.waitStatus(t, hosts.StatusStopped, time.Minute)
	if !strings.HasPrefix(u.StoppedReason, "CannotStartContainerError: Error response from daemon: ") ||
		!strings.Contains(u.StoppedReason, "VolumeDriver.Mount: ") || !strings.Contains(u.StoppedReason, "never") {
		t.Errorf("stopped reason %q, want dockerd's CannotStartContainerError carrying the plugin's Mount error", u.StoppedReason)
	}
	if slices.Contains(r.statuses(), hosts.StatusRunning) {
		t.Errorf("reports %v include RUNNING", r.statuses())
	}
	if u.Containers[0].Reason != u.StoppedReason {
		t.Errorf("container reason %q, want the task's", u.Containers[0].Reason)
	}
}
