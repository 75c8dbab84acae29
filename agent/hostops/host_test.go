package hostops

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tether-ecs/tether/agent/blockdev"
	"github.com/tether-ecs/tether/agent/dockerapi"
	"github.com/tether-ecs/tether/agent/driver"
	"github.com/tether-ecs/tether/agent/fsys"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// fakeDocker answers ListContainers from a fixed list, applying the options
// as dockerd does, and records what it was asked.
type fakeDocker struct {
	containers []dockerapi.Container
	err        error
	asked      []dockerapi.ListOptions
}

func (f *fakeDocker) ListContainers(_ context.Context, o dockerapi.ListOptions) ([]dockerapi.Container, error) {
	f.asked = append(f.asked, o)
	if f.err != nil {
		return nil, f.err
	}
	var out []dockerapi.Container
	for _, c := range f.containers {
		if !o.All && c.State != "running" && c.State != "paused" {
			continue
		}
		if o.Volume != "" && !slices.ContainsFunc(c.Mounts, func(m dockerapi.Mount) bool { return m.Name == o.Volume }) {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

func quiet() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

func newTestHost(t *testing.T, docker Containers) *Host {
	t.Helper()
	h, err := New(Config{Root: t.TempDir(), Finder: blockdev.Host(), Runner: fsys.ExecRunner{}, Docker: docker, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

const taskARN = "arn:aws:ecs:us-east-1:123456789012:task/prod/0123456789abcdef0123456789abcdef"

func ecsLabels() map[string]string {
	return map[string]string{
		labelTaskARN:     taskARN,
		labelTaskFamily:  "my-app",
		labelTaskVersion: "7",
	}
}

func TestTaskVolumeName(t *testing.T) {
	tests := []struct {
		name       string
		dockerName string
		labels     map[string]string
		want       string
		wantOK     bool
		wantErr    bool
	}{
		{name: "task-scoped", dockerName: "ecs-my-app-7-scratch-e4b8d2a1c0f3e5d6c7b8", labels: ecsLabels(),
			want: "task-0123456789abcdef0123456789abcdef-scratch", wantOK: true},
		{name: "volume name with dashes", dockerName: "ecs-my-app-7-my-data-vol-9f8e7d", labels: ecsLabels(),
			want: "task-0123456789abcdef0123456789abcdef-my-data-vol", wantOK: true},
		{name: "shared volume used by a task keeps its name", dockerName: "rexray-vol", labels: ecsLabels()},
		{name: "other revision", dockerName: "ecs-my-app-8-scratch-e4b8", labels: ecsLabels()},
		{name: "no hex suffix", dockerName: "ecs-my-app-7-scratch", labels: ecsLabels()},
		{name: "only a hex part", dockerName: "ecs-my-app-7-abcdef", labels: ecsLabels()},
		{name: "not an ECS container", dockerName: "ecs-my-app-7-scratch-e4b8"},
		{name: "bad task ARN label", dockerName: "ecs-my-app-7-scratch-e4b8",
			labels: map[string]string{labelTaskARN: "nonsense/$(reboot)", labelTaskFamily: "my-app", labelTaskVersion: "7"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := taskVolumeName(tc.dockerName, tc.labels)
			if (err != nil) != tc.wantErr || ok != tc.wantOK || got != tc.want {
				t.Errorf("taskVolumeName(%q) = %q, %v, %v; want %q, %v, error %v", tc.dockerName, got, ok, err, tc.want, tc.wantOK, tc.wantErr)
			}
		})
	}
}

func TestTaskVolumeNameAsksForContainersInAnyState(t *testing.T) {
	docker := &fakeDocker{containers: []dockerapi.Container{{
		ID: "c1", State: "created", Labels: ecsLabels(),
		Mounts: []dockerapi.Mount{{Type: "volume", Name: "ecs-my-app-7-scratch-e4b8", Driver: "tether"}},
	}}}
	h := newTestHost(t, docker)
	got, ok, err := h.TaskVolumeName(context.Background(), "ecs-my-app-7-scratch-e4b8")
	if err != nil || !ok || got != "task-0123456789abcdef0123456789abcdef-scratch" {
		t.Fatalf("TaskVolumeName = %q, %v, %v", got, ok, err)
	}
	if len(docker.asked) != 1 || !docker.asked[0].All || docker.asked[0].Volume != "ecs-my-app-7-scratch-e4b8" {
		t.Errorf("asked dockerd %+v; want all containers filtered by the volume", docker.asked)
	}
	if _, ok, err := h.TaskVolumeName(context.Background(), "unused"); ok || err != nil {
		t.Errorf("TaskVolumeName(unused) = %v, %v; want not a task volume", ok, err)
	}
}

func TestContainersUsing(t *testing.T) {
	docker := &fakeDocker{containers: []dockerapi.Container{
		{ID: "twice", State: "running", Mounts: []dockerapi.Mount{
			{Type: "volume", Name: "data"}, {Type: "volume", Name: "data"}, {Type: "bind", Source: "/x"}}},
		{ID: "paused", State: "paused", Mounts: []dockerapi.Mount{{Type: "volume", Name: "data"}}},
		{ID: "exited", State: "exited", Mounts: []dockerapi.Mount{{Type: "volume", Name: "data"}}},
		{ID: "other", State: "running", Mounts: []dockerapi.Mount{{Type: "volume", Name: "other"}}},
	}}
	h := newTestHost(t, docker)
	got, err := h.ContainersUsing(context.Background(), "data")
	if err != nil {
		t.Fatal(err)
	}
	want := []driver.ContainerUse{{ContainerID: "twice", Mounts: 2}, {ContainerID: "paused", Mounts: 1}}
	if !slices.Equal(got, want) {
		t.Errorf("ContainersUsing = %+v, want %+v", got, want)
	}
}

func TestUsersFindsTaskScopedMountsBySource(t *testing.T) {
	docker := &fakeDocker{}
	h := newTestHost(t, docker)
	mp := h.Mountpoint("task-0123-scratch")
	docker.containers = []dockerapi.Container{
		{ID: "byname", Names: []string{"/a"}, State: "running", Mounts: []dockerapi.Mount{{Type: "volume", Name: "task-0123-scratch"}}},
		{ID: "bysource", Names: []string{"/b"}, State: "running", Mounts: []dockerapi.Mount{{Type: "volume", Name: "ecs-f-1-scratch-ab", Source: mp}}},
		{ID: "subdir", Names: []string{"/c"}, State: "running", Mounts: []dockerapi.Mount{{Type: "bind", Source: mp + "/sub"}}},
		{ID: "prefix-only", Names: []string{"/d"}, State: "running", Mounts: []dockerapi.Mount{{Type: "bind", Source: mp + "-2"}}},
		{ID: "stopped", Names: []string{"/e"}, State: "exited", Mounts: []dockerapi.Mount{{Type: "volume", Name: "task-0123-scratch"}}},
	}
	users, err := h.users(context.Background(), quiet(), "task-0123-scratch")
	if err != nil {
		t.Fatal(err)
	}
	want := []User{{ID: "byname", Name: "a"}, {ID: "bysource", Name: "b"}, {ID: "subdir", Name: "c"}}
	if !slices.Equal(users, want) {
		t.Errorf("users = %+v, want %+v", users, want)
	}
}

func TestUsersWithoutDockerd(t *testing.T) {
	h := newTestHost(t, &fakeDocker{err: dockerapi.ErrNoDaemon})
	if users, err := h.users(context.Background(), quiet(), "data"); err != nil || users != nil {
		t.Errorf("users without dockerd = %v, %v; want none", users, err)
	}
	h = newTestHost(t, &fakeDocker{err: errors.New("permission denied")})
	if _, err := h.users(context.Background(), quiet(), "data"); err == nil {
		t.Errorf("users with a failing dockerd: no error")
	}
}

func TestLockExcludesAndGivesUp(t *testing.T) {
	h := newTestHost(t, &fakeDocker{})
	unlock, err := h.Lock(context.Background(), "data")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := h.Lock(ctx, "data"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Lock while held = %v; want a deadline error", err)
	}
	other, err := h.Lock(context.Background(), "other")
	if err != nil {
		t.Fatalf("Lock of another volume: %v", err)
	}
	other()
	unlock()
	again, err := h.Lock(context.Background(), "data")
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	again()
	if _, err := h.Lock(context.Background(), "../etc"); !errors.Is(err, ErrBadInput) {
		t.Errorf("Lock(../etc) = %v; want ErrBadInput", err)
	}
}

func TestCommandsBoundTheirLockWait(t *testing.T) {
	h, err := New(Config{Root: t.TempDir(), Finder: blockdev.Host(), Runner: fsys.ExecRunner{}, Docker: &fakeDocker{},
		Logger: quiet(), LockWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := h.Lock(context.Background(), "data")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	_, err = h.UnmountVolume(context.Background(), UnmountRequest{VolumeID: "vol-0123456789abcdef0", Name: "data"})
	if !errors.Is(err, ErrLockTimeout) || ExitCode(err) != agentproto.ExitRetryable {
		t.Errorf("UnmountVolume while the lock is held = %v (exit %d); want a bounded wait, retryable", err, ExitCode(err))
	}
	// The volume id's lock too: another name for the same volume waits.
	unlockID, err := h.lockVolumeID(context.Background(), "vol-0123456789abcdef1")
	if err != nil {
		t.Fatal(err)
	}
	defer unlockID()
	_, err = h.UnmountVolume(context.Background(), UnmountRequest{VolumeID: "vol-0123456789abcdef1", Name: "other-name"})
	if !errors.Is(err, ErrLockTimeout) {
		t.Errorf("UnmountVolume while its volume id's lock is held = %v; want a bounded wait", err)
	}
}

func TestBinding(t *testing.T) {
	h := newTestHost(t, &fakeDocker{})
	if _, ok, err := h.Binding("data"); ok || err != nil {
		t.Fatalf("Binding before any mount = %v, %v", ok, err)
	}
	if err := h.writeBinding("data", binding{VolumeID: "vol-0123456789abcdef0", Generation: 3, Released: true}); err != nil {
		t.Fatal(err)
	}
	if id, ok, err := h.Binding("data"); !ok || err != nil || id != "vol-0123456789abcdef0" {
		t.Fatalf("Binding = %q, %v, %v", id, ok, err)
	}
	if b, _, _ := h.readBinding("data"); b.Generation != 3 || !b.Released {
		t.Fatalf("binding = %+v; want generation 3, released", b)
	}
	// An older agent's binding: the bare volume id.
	if err := os.WriteFile(filepath.Join(h.Root(), "bindings", "old"), []byte("vol-0123456789abcdef0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, ok, err := h.readBinding("old"); !ok || err != nil || b.VolumeID != "vol-0123456789abcdef0" || b.Generation != 0 || b.Released {
		t.Fatalf("old binding = %+v, %v, %v", b, ok, err)
	}
	if err := os.WriteFile(filepath.Join(h.Root(), "bindings", "evil"), []byte("vol-1; rm -rf /\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.Binding("evil"); err == nil {
		t.Errorf("a corrupt binding was accepted")
	}
}

func TestValidateMountRequest(t *testing.T) {
	good := MountRequest{VolumeID: "vol-0123456789abcdef0", Name: "data", FSType: "ext4", DeviceName: "/dev/xvdf", Wait: time.Second}
	if err := ValidateMountRequest(good); err != nil {
		t.Fatalf("good request: %v", err)
	}
	bad := []func(*MountRequest){
		func(r *MountRequest) { r.VolumeID = "vol-XYZ" },
		func(r *MountRequest) { r.Name = "a/../b" },
		func(r *MountRequest) { r.Name = "$(reboot)" },
		func(r *MountRequest) { r.FSType = "btrfs" },
		func(r *MountRequest) { r.DeviceName = "/dev/sda; reboot" },
		func(r *MountRequest) { r.Wait = -time.Second },
		func(r *MountRequest) { r.Attachment = "i-1;reboot" },
		func(r *MountRequest) { r.SizeGiB = -1 },
	}
	for i, mutate := range bad {
		r := good
		mutate(&r)
		if err := ValidateMountRequest(r); !errors.Is(err, ErrBadInput) {
			t.Errorf("bad request %d (%+v) = %v; want ErrBadInput", i, r, err)
		}
	}
}

// One bad binding does not break status: that volume carries its error,
// the others are listed with their generation, release and seal state.
func TestStatusListsPerVolumeErrors(t *testing.T) {
	h := newTestHost(t, &fakeDocker{})
	if err := h.writeBinding("good", binding{VolumeID: "vol-0123456789abcdef0", Generation: 2, Released: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.Root(), "bindings", "bad"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := h.Status(context.Background())
	if err != nil {
		t.Fatalf("Status = %v; one bad binding must not break it", err)
	}
	if len(st.Volumes) != 2 || st.Volumes[0].Name != "bad" || st.Volumes[0].Error == "" {
		t.Fatalf("volumes = %+v; want bad with its error", st.Volumes)
	}
	good := st.Volumes[1]
	if good.VolumeID != "vol-0123456789abcdef0" || good.Generation != 2 || !good.Released || good.Seal != "absent" || good.Error != "" {
		t.Fatalf("good = %+v", good)
	}
	if st.Unbound == nil {
		t.Error("unbound is nil; want a list (empty)")
	}
}
