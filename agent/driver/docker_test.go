package driver_test

// Integration tests: a real dockerd calls the real tether-agent serve.

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

// run starts a container in the background that holds the volume.
func (m *machine) runHolding(name, volume string, labels ...string) {
	m.t.Helper()
	args := []string{"run", "-d", "--name", name, "--network", "none", "-v", volume + ":/data"}
	for _, l := range labels {
		args = append(args, "--label", l)
	}
	m.mustDocker(append(args, "busybox", "sleep", "600")...)
}

// mountWaitArgs shortens serve's Mount wait when the binary has the flag;
// without it the timeout tests take the default 90 s each.
func mountWaitArgs(t *testing.T) []string {
	out, err := exec.Command(buildAgent(t), "help").CombinedOutput()
	if err == nil && strings.Contains(string(out), "--mount-wait") {
		return []string{"--mount-wait", "3s"}
	}
	t.Log("tether-agent serve has no --mount-wait flag: waiting the default 90s")
	return nil
}

func TestDockerRunKeepsDataAcrossContainers(t *testing.T) {
	m := newMachine(t, "i-data")
	const vol = "vol-0a1b2c3d4e5f60718"
	m.mustDocker("volume", "create", "-d", "tether", "-o", "size=1", "-o", "volumetype=gp3", "appdata")
	m.attach(vol)
	m.tetherMount(vol, "appdata")
	m.wantMounted("appdata", true)

	m.mustDocker("run", "--rm", "--network", "none", "-v", "appdata:/data", "busybox", "sh", "-c", "echo hi > /data/f")
	m.waitReplies("VolumeDriver.Unmount", "appdata", 1)
	m.waitUnmounted("appdata")

	// The next container finds the volume unmounted but attached: the
	// plugin remounts it through the binding, without the reconciler.
	if out := m.mustDocker("run", "--rm", "--network", "none", "-v", "appdata:/data", "busybox", "cat", "/data/f"); out != "hi" {
		t.Fatalf("second container read %q, want %q", out, "hi")
	}
	m.waitReplies("VolumeDriver.Unmount", "appdata", 2)
	m.waitUnmounted("appdata")

	if got := m.mustDocker("volume", "inspect", "--format", "{{.Driver}} {{index .Status \"volumeId\"}}", "appdata"); got != "tether "+vol {
		t.Errorf("docker volume inspect = %q, want driver tether and volume id %s", got, vol)
	}
}

func TestMountTimeoutFailsDockerRunReadably(t *testing.T) {
	m := newMachine(t, "i-timeout", mountWaitArgs(t)...)

	t.Run("nothing bound", func(t *testing.T) {
		m := m.with(t)
		m.mustDocker("volume", "create", "-d", "tether", "nowhere")
		_, stderr, err := m.docker("run", "--name", "c-nowhere", "--network", "none", "-v", "nowhere:/data", "busybox", "sh", "-c", "echo ran")
		if err == nil {
			t.Fatal("docker run succeeded on a volume that is not attached anywhere")
		}
		t.Logf("docker run's stderr: %s", stderr)
		for _, want := range []string{`volume "nowhere" is not mounted on this instance after waiting`,
			"no EBS volume bound to it on this instance yet", "The container was not started"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("docker run's stderr does not say %q:\n%s", want, stderr)
			}
		}
		if status, started := m.containerState("c-nowhere"); status != "created" || !strings.HasPrefix(started, "0001-01-01") {
			t.Errorf("container state %s, started at %s: want created, never started", status, started)
		}
	})

	t.Run("bound, detached", func(t *testing.T) {
		m := m.with(t)
		const vol = "vol-0f1e2d3c4b5a69788"
		m.mustDocker("volume", "create", "-d", "tether", "moved")
		m.attach(vol)
		m.tetherMount(vol, "moved")
		if out, err := m.Command(context.Background(), m.bin, "unmount", "--volume-id", vol, "--name", "moved", "--root", agentRoot).CombinedOutput(); err != nil {
			t.Fatalf("tether-agent unmount: %v\n%s", err, out)
		}
		if err := m.DetachLoop(context.Background(), vol, false); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := m.docker("run", "--name", "c-moved", "--network", "none", "-v", "moved:/data", "busybox", "true")
		if err == nil {
			t.Fatal("docker run succeeded on a volume whose device is gone")
		}
		t.Logf("docker run's stderr: %s", stderr)
		for _, want := range []string{`volume "moved" is not mounted on this instance`, vol, "vol0f1e2d3c4b5a69788", "The container was not started"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("docker run's stderr does not say %q:\n%s", want, stderr)
			}
		}
		if status, _ := m.containerState("c-moved"); status != "created" {
			t.Errorf("container state %s, want created (never started)", status)
		}
		m.wantMounted("moved", false)
	})
}

func TestRefcountsSurviveAgentRestart(t *testing.T) {
	m := newMachine(t, "i-restart")
	const vol = "vol-0123456789abcdef0"
	m.mustDocker("volume", "create", "-d", "tether", "kept")
	m.attach(vol)
	m.tetherMount(vol, "kept")

	t.Run("one container", func(t *testing.T) {
		m := m.with(t)
		m.runHolding("solo", "kept")
		m.waitReplies("VolumeDriver.Mount", "kept", 1)
		m.restartServe()
		m.wantMounted("kept", true)
		m.mustDocker("kill", "solo")
		m.waitReplies("VolumeDriver.Unmount", "kept", 1)
		m.waitUnmounted("kept")
	})

	t.Run("two containers", func(t *testing.T) {
		m := m.with(t)
		m.runHolding("first", "kept") // remounted through the binding
		m.runHolding("second", "kept")
		m.waitReplies("VolumeDriver.Mount", "kept", 3)
		m.restartServe()
		m.mustDocker("kill", "first")
		m.waitReplies("VolumeDriver.Unmount", "kept", 2)
		m.wantMounted("kept", true)
		if out := m.mustDocker("exec", "second", "sh", "-c", "echo still > /data/g && cat /data/g"); out != "still" {
			t.Fatalf("second container cannot use the volume after the first stopped: %q", out)
		}
		m.mustDocker("kill", "second")
		m.waitReplies("VolumeDriver.Unmount", "kept", 3)
		m.waitUnmounted("kept")
	})
}

func TestContainersOfTasksShareOneMount(t *testing.T) {
	m := newMachine(t, "i-share")

	t.Run("shared volume, two tasks", func(t *testing.T) {
		m := m.with(t)
		const vol = "vol-0aaaaaaaaaaaaaaa1"
		m.mustDocker("volume", "create", "-d", "tether", "-o", "size=1", "shared")
		m.attach(vol)
		m.tetherMount(vol, "shared")
		taskA := "com.amazonaws.ecs.task-arn=arn:aws:ecs:us-east-1:123456789012:task/demo/0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		taskB := "com.amazonaws.ecs.task-arn=arn:aws:ecs:us-east-1:123456789012:task/demo/0bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		m.runHolding("a1", "shared", taskA)
		m.runHolding("a2", "shared", taskA)
		m.runHolding("b1", "shared", taskB)
		m.waitReplies("VolumeDriver.Mount", "shared", 3)
		m.wantMounted("shared", true)
		for i, c := range []string{"a2", "b1"} {
			m.mustDocker("kill", c)
			m.waitReplies("VolumeDriver.Unmount", "shared", i+1)
			m.wantMounted("shared", true)
		}
		m.mustDocker("kill", "a1")
		m.waitReplies("VolumeDriver.Unmount", "shared", 3)
		m.waitUnmounted("shared")
	})

	t.Run("task-scoped volume, one task", func(t *testing.T) {
		m := m.with(t)
		const (
			vol        = "vol-0ccccccccccccccc1"
			taskID     = "0123456789abcdef0123456789abcdef"
			dockerName = "ecs-app-3-scratch-f0e1d2c3b4a5968778"
			tetherName = "task-" + taskID + "-scratch"
		)
		labels := []string{
			"com.amazonaws.ecs.task-arn=arn:aws:ecs:us-east-1:123456789012:task/demo/" + taskID,
			"com.amazonaws.ecs.task-definition-family=app",
			"com.amazonaws.ecs.task-definition-version=3",
		}
		// The ECS agent creates the task's Docker volume; the reconciler
		// mounts it under the task's tether name.
		m.mustDocker("volume", "create", "-d", "tether", "-o", "size=1", dockerName)
		m.attach(vol)
		m.tetherMount(vol, tetherName)
		m.runHolding("web", dockerName, labels...)
		m.runHolding("sidecar", dockerName, labels...)
		m.waitReplies("VolumeDriver.Mount", dockerName, 2)
		m.wantMounted(tetherName, true)
		m.mustDocker("exec", "web", "sh", "-c", "echo shared > /data/x")
		if out := m.mustDocker("exec", "sidecar", "cat", "/data/x"); out != "shared" {
			t.Fatalf("sidecar read %q from the task's volume, want %q", out, "shared")
		}
		m.mustDocker("kill", "web")
		m.waitReplies("VolumeDriver.Unmount", dockerName, 1)
		m.wantMounted(tetherName, true)
		m.mustDocker("kill", "sidecar")
		m.waitReplies("VolumeDriver.Unmount", dockerName, 2)
		m.waitUnmounted(tetherName)
	})
}

func TestInvalidDriverOptsFailVolumeCreate(t *testing.T) {
	m := newMachine(t, "i-opts")
	cases := []struct {
		opt  string
		want []string
	}{
		{"sise=1", []string{`unknown option "sise"`}},
		{"size=huge", []string{"size", `"huge"`}},
		{"volumetype=gp9", []string{"volumetype", "gp9"}},
	}
	for _, c := range cases {
		_, stderr, err := m.docker("volume", "create", "-d", "tether", "-o", c.opt, "badopts")
		if err == nil {
			t.Errorf("docker volume create -o %s succeeded", c.opt)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("docker volume create -o %s: stderr does not name %s:\n%s", c.opt, w, stderr)
			}
		}
	}
	if out := m.mustDocker("volume", "ls", "-q"); strings.Contains(out, "badopts") {
		t.Errorf("a rejected volume exists: %s", out)
	}
}
