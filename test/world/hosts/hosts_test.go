package hosts_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/test/sandbox"
	"github.com/tether-ecs/tether/test/world/hosts"
	"github.com/tether-ecs/tether/test/world/hosts/engine"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

const taskArn = "arn:aws:ecs:us-east-1:123456789012:task/demo/0123456789abcdef0123456789abcdef"

func TestInstanceWithoutAgent(t *testing.T) {
	requirePrereqs(t)
	ctx := context.Background()
	in := launch(t, "i-0000000000000000a", "")

	attrs, err := in.Attributes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"ecs.availability-zone":                               "us-east-1a",
		"ecs.os-type":                                         "linux",
		"ecs.capability.task-eni":                             "",
		"ecs.capability.docker-plugin.local":                  "",
		"com.amazonaws.ecs.capability.logging-driver.awslogs": "",
		"com.amazonaws.ecs.capability.docker-remote-api.1.17": "",
	} {
		if got, ok := attrs[name]; !ok || got != want {
			t.Errorf("attribute %s = %q (present %v), want %q", name, got, ok, want)
		}
	}
	if _, ok := attrs["ecs.capability.docker-plugin.tether"]; ok {
		t.Error("tether plugin capability advertised without tether-agent")
	}

	res, err := in.RunShellScript(ctx, "echo out; echo err >&2; test -d /var/lib/tether && exit 3", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || res.Stdout != "out\n" || res.Stderr != "err\n" || res.Ended.Before(res.Started) {
		t.Errorf("script result = %+v, want exit 3, out, err", res)
	}
	res, err = in.RunShellScript(ctx, "sleep 30", 200*time.Millisecond)
	if !errors.Is(err, hosts.ErrScriptTimeout) || !errors.Is(err, context.DeadlineExceeded) || res.ExitCode != -1 {
		t.Errorf("script past its timeout: result %+v, err %v; want ErrScriptTimeout, exit -1", res, err)
	}

	const vol = "vol-0aaaaaaaaaaaaaaaa"
	if err := in.AttachDevice(ctx, worldapi.Attachment{VolumeID: vol, BackingFile: sparseFile(t, "vol-0bbbbbbbbbbbbbbbb", 32<<20)}); err == nil {
		t.Error("attached a backing file named after another volume")
	}
	backing := sparseFile(t, vol, 32<<20)
	if err := in.AttachDevice(ctx, worldapi.Attachment{VolumeID: vol, BackingFile: backing, DeviceName: "/dev/xvdf"}); err != nil {
		t.Fatal(err)
	}
	if got := sh(t, in, "readlink /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0aaaaaaaaaaaaaaaa"); !strings.HasPrefix(got, "/dev/loop") {
		t.Errorf("by-id link points at %q, want a loop device", got)
	}
	if err := in.DetachDevice(ctx, vol, false); err != nil {
		t.Fatal(err)
	}
	if err := in.DetachDevice(ctx, vol, false); !errors.Is(err, sandbox.ErrNotAttached) {
		t.Errorf("second detach: err = %v, want ErrNotAttached", err)
	}

	if err := in.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Attributes(ctx); !errors.Is(err, worldapi.ErrHostDown) {
		t.Errorf("Attributes after Kill: err = %v, want ErrHostDown", err)
	}
	if err := in.StartTask(ctx, worldapi.TaskSpec{TaskArn: taskArn}, func(worldapi.TaskUpdate) {}); !errors.Is(err, worldapi.ErrHostDown) {
		t.Errorf("StartTask after Kill: err = %v, want ErrHostDown", err)
	}
}

func busyboxTask(arn string, cmd []string, vols []worldapi.VolumeSpec, mounts []worldapi.MountPoint) worldapi.TaskSpec {
	return worldapi.TaskSpec{
		TaskArn:     arn,
		ClusterArn:  "arn:aws:ecs:us-east-1:123456789012:cluster/demo",
		Family:      "demo",
		Revision:    3,
		NetworkMode: "awsvpc",
		StopTimeout: time.Second,
		Volumes:     vols,
		Containers: []worldapi.ContainerSpec{{
			Name:        "app",
			Image:       "busybox",
			EntryPoint:  []string{"sh", "-c"},
			Command:     cmd,
			Environment: map[string]string{"GREETING": "hello"},
			MountPoints: mounts,
			Essential:   true,
		}},
	}
}

func TestTaskRunsAndStopsLikeTheECSAgent(t *testing.T) {
	requirePrereqs(t)
	ctx := context.Background()
	in := launch(t, "i-0000000000000000b", "")
	docker := engine.New(in.Machine().Path(sandbox.DockerSocket))
	defer docker.Close()

	spec := busyboxTask(taskArn, []string{`echo "$GREETING" > /scratch/greeting && exec sleep 1000`},
		[]worldapi.VolumeSpec{{Name: "scratch", Docker: &worldapi.DockerVolumeConfiguration{Scope: "task", Driver: "local"}}},
		[]worldapi.MountPoint{{SourceVolume: "scratch", ContainerPath: "/scratch"}})
	r := newReports()
	if err := in.StartTask(ctx, spec, r.add); err != nil {
		t.Fatal(err)
	}
	u := r.waitStatus(t, hosts.StatusRunning, time.Minute)
	if len(u.Containers) != 1 || u.Containers[0].Status != hosts.StatusRunning || u.Containers[0].RuntimeID == "" {
		t.Fatalf("RUNNING report containers = %+v", u.Containers)
	}
	if got := r.statuses(); got[0] != hosts.StatusPending {
		t.Errorf("first report %v, want PENDING first", got)
	}
	id := u.Containers[0].RuntimeID
	c, err := docker.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{
		hosts.LabelTaskARN: taskArn, hosts.LabelContainerName: "app", hosts.LabelTaskDefFamily: "demo",
		hosts.LabelTaskDefVersion: "3", hosts.LabelCluster: "demo",
	}
	for k, v := range wantLabels {
		if c.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Config.Labels[k], v)
		}
	}
	if !regexp.MustCompile(`^/ecs-demo-3-app-[0-9a-f]{20}$`).MatchString(c.Name) {
		t.Errorf("container name %q, want ecs-demo-3-app-<20 hex>", c.Name)
	}
	if len(c.Mounts) != 1 || !regexp.MustCompile(`^ecs-demo-3-scratch-[0-9a-f]{20}$`).MatchString(c.Mounts[0].Name) {
		t.Fatalf("mounts %+v, want the task-scoped volume ecs-demo-3-scratch-<hex>", c.Mounts)
	}
	volName := c.Mounts[0].Name
	eventually(t, "the container to write its greeting", time.Minute, func() (bool, string) {
		res, err := in.RunShellScript(ctx, "cat "+c.Mounts[0].Source+"/greeting", time.Minute)
		return err == nil && res.Stdout == "hello\n", res.Stdout + res.Stderr
	})

	if err := in.StopTask(ctx, taskArn); err != nil {
		t.Fatal(err)
	}
	u = r.waitStatus(t, hosts.StatusStopped, time.Minute)
	if u.StoppedReason != "" || u.Containers[0].Status != hosts.StatusStopped || u.Containers[0].ExitCode == nil {
		t.Errorf("STOPPED report = %+v, want no reason and an exit code", u)
	}
	eventually(t, "task cleanup (container and task volume removed)", time.Minute, func() (bool, string) {
		_, cerr := docker.ContainerInspect(ctx, id)
		_, verr := docker.VolumeInspect(ctx, volName)
		return errors.Is(cerr, engine.ErrNotFound) && errors.Is(verr, engine.ErrNotFound),
			"container: " + errString(cerr) + "; volume: " + errString(verr)
	})
	if err := in.StopTask(ctx, taskArn); err != nil {
		t.Errorf("StopTask of a stopped task: %v", err)
	}
	if err := in.StopTask(ctx, "arn:aws:ecs:us-east-1:123456789012:task/demo/nope"); !errors.Is(err, hosts.ErrUnknownTask) {
		t.Errorf("StopTask of an unknown task: err = %v, want ErrUnknownTask", err)
	}
}

func errString(err error) string {
	if err == nil {
		return "exists"
	}
	return err.Error()
}

func TestTaskStopReasons(t *testing.T) {
	requirePrereqs(t)
	ctx := context.Background()
	in := launch(t, "i-0000000000000000c", "")

	t.Run("essential container exits", func(t *testing.T) {
		r := newReports()
		if err := in.StartTask(ctx, busyboxTask(taskArn+"1", []string{"exit 7"}, nil, nil), r.add); err != nil {
			t.Fatal(err)
		}
		u := r.waitStatus(t, hosts.StatusStopped, time.Minute)
		if u.StoppedReason != hosts.ReasonEssentialExited {
			t.Errorf("stopped reason %q, want %q", u.StoppedReason, hosts.ReasonEssentialExited)
		}
		if ec := u.Containers[0].ExitCode; ec == nil || *ec != 7 {
			t.Errorf("exit code %v, want 7", ec)
		}
	})
	t.Run("shared volume missing without autoprovision", func(t *testing.T) {
		r := newReports()
		spec := busyboxTask(taskArn+"2", []string{"true"},
			[]worldapi.VolumeSpec{{Name: "absent", Docker: &worldapi.DockerVolumeConfiguration{Scope: "shared", Driver: "local"}}},
			[]worldapi.MountPoint{{SourceVolume: "absent", ContainerPath: "/data"}})
		if err := in.StartTask(ctx, spec, r.add); err != nil {
			t.Fatal(err)
		}
		u := r.waitStatus(t, hosts.StatusStopped, time.Minute)
		if !strings.Contains(u.StoppedReason, "volume 'absent' does not exist and autoprovision is set to false") {
			t.Errorf("stopped reason %q", u.StoppedReason)
		}
		if slices.Contains(r.statuses(), hosts.StatusRunning) {
			t.Errorf("reports %v include RUNNING", r.statuses())
		}
	})
	t.Run("image missing", func(t *testing.T) {
		r := newReports()
		spec := busyboxTask(taskArn+"3", []string{"true"}, nil, nil)
		spec.Containers[0].Image = "no-such-image:1"
		if err := in.StartTask(ctx, spec, r.add); err != nil {
			t.Fatal(err)
		}
		u := r.waitStatus(t, hosts.StatusStopped, time.Minute)
		if !strings.HasPrefix(u.StoppedReason, "CannotPullContainerError: Error response from daemon: ") {
			t.Errorf("stopped reason %q", u.StoppedReason)
		}
	})
	t.Run("task scope with autoprovision is rejected", func(t *testing.T) {
		spec := busyboxTask(taskArn+"4", []string{"true"},
			[]worldapi.VolumeSpec{{Name: "v", Docker: &worldapi.DockerVolumeConfiguration{Scope: "task", Autoprovision: true}}}, nil)
		if err := in.StartTask(ctx, spec, func(worldapi.TaskUpdate) {}); !errors.Is(err, hosts.ErrInvalidTask) {
			t.Errorf("err = %v, want ErrInvalidTask", err)
		}
	})
}

func TestKillEndsEverythingSilently(t *testing.T) {
	requirePrereqs(t)
	ctx := context.Background()
	in := launch(t, "i-00000000000000011", "")
	const vol = "vol-0cccccccccccccccc"
	backing := sparseFile(t, vol, 32<<20)
	if err := in.AttachDevice(ctx, worldapi.Attachment{VolumeID: vol, BackingFile: backing}); err != nil {
		t.Fatal(err)
	}
	r := newReports()
	if err := in.StartTask(ctx, busyboxTask(taskArn+"k", []string{"exec sleep 1000"}, nil, nil), r.add); err != nil {
		t.Fatal(err)
	}
	r.waitStatus(t, hosts.StatusRunning, time.Minute)
	pids, err := in.Machine().Processes()
	if err != nil || len(pids) == 0 {
		t.Fatalf("machine processes %v, %v", pids, err)
	}
	before := len(r.statuses())
	if err := in.Kill(); err != nil {
		t.Fatal(err)
	}
	if got := r.statuses(); len(got) != before {
		t.Errorf("reports after Kill: %v (had %d before)", got, before)
	}
	for _, pid := range pids {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(b), ") Z ") {
			t.Errorf("process %d survived Kill: %s", pid, b)
		}
	}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		if b, _ := os.ReadFile(f); strings.TrimSpace(string(b)) == backing {
			t.Errorf("%s still backs %s after Kill", backing, f)
		}
	}
	if err := in.DetachDevice(ctx, vol, true); !errors.Is(err, worldapi.ErrHostDown) {
		t.Errorf("DetachDevice after Kill: err = %v, want ErrHostDown", err)
	}
}
