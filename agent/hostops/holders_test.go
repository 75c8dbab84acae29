package hostops

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-ecs/tether/agent/dockerapi"
	"github.com/tether-ecs/tether/agent/plugin"
	"github.com/tether-ecs/tether/test/testenv"
)

// fakePlugin answers Holders from fixed fields.
type fakePlugin struct {
	resp plugin.HoldersResponse
	err  error
}

func (f fakePlugin) Holders(context.Context, string) (plugin.HoldersResponse, error) {
	return f.resp, f.err
}

func TestHoldingCountsContainersThatMayStart(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	since := start.UTC().Format(time.RFC3339Nano)
	before, after := start.Unix()-60, start.Unix()+60
	vol := func(state string, created int64, name string) dockerapi.Container {
		return dockerapi.Container{ID: name + "0123456789abcdef", Names: []string{"/" + name}, State: state, Created: created,
			Mounts: []dockerapi.Mount{{Type: "volume", Name: "data"}}}
	}
	down := fakePlugin{err: plugin.ErrNotServing}
	none := fakePlugin{resp: plugin.HoldersResponse{Since: since}}
	tests := []struct {
		name       string
		plugin     PluginHolders
		containers []dockerapi.Container
		busy       bool
		users      []string
	}{
		{"plugin holds a mount ID of a created container", fakePlugin{resp: plugin.HoldersResponse{Holders: []string{"f00dfeed0123456789"}, Since: since}},
			[]dockerapi.Container{vol("created", after, "t3"), vol("exited", after, "old")}, true, []string{"t3"}},
		{"created after the plugin started, no holders", none, []dockerapi.Container{vol("created", after, "later")}, false, nil},
		{"created before the plugin started", none, []dockerapi.Container{vol("created", before, "t3")}, true, []string{"t3"}},
		{"plugin says no start time", fakePlugin{}, []dockerapi.Container{vol("created", after, "t3")}, true, []string{"t3"}},
		{"running always counts", none, []dockerapi.Container{vol("running", after, "db"), vol("paused", after, "p")}, true, []string{"db", "p"}},
		{"restarting while the plugin answers", none, []dockerapi.Container{vol("restarting", after, "r")}, false, nil},
		{"adopted use", fakePlugin{resp: plugin.HoldersResponse{Adopted: 1, Since: since}}, nil, true, nil},
		{"mount in progress", fakePlugin{resp: plugin.HoldersResponse{Pending: 1, Since: since}},
			[]dockerapi.Container{vol("created", after, "s")}, true, []string{"s"}},
		{"plugin down: every container that can start", down,
			[]dockerapi.Container{vol("created", after, "c"), vol("restarting", after, "r"), vol("running", after, "u"), vol("exited", after, "e"), vol("dead", after, "d")},
			true, []string{"c", "r", "u"}},
		{"no plugin configured", nil, []dockerapi.Container{vol("created", after, "c")}, true, []string{"c"}},
		{"plugin down, nothing can start", down, []dockerapi.Container{vol("exited", after, "e")}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHost(t, &fakeDocker{containers: tt.containers})
			h.plugin = tt.plugin
			hd, err := h.holding(context.Background(), quiet(), "data")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, u := range hd.users {
				names = append(names, u.Name)
			}
			if hd.busy() != tt.busy || !slices.Equal(names, tt.users) {
				t.Errorf("busy %v, users %v; want %v, %v", hd.busy(), names, tt.busy, tt.users)
			}
		})
	}
}

func TestHoldingFindsTaskScopedVolumesByTheirTask(t *testing.T) {
	docker := &fakeDocker{containers: []dockerapi.Container{{ID: "c1", Names: []string{"/t3"}, State: "created", Labels: ecsLabels(),
		Mounts: []dockerapi.Mount{{Type: "volume", Name: "ecs-my-app-7-scratch-e4b8d2a1c0f3"}}}}}
	h := newTestHost(t, docker)
	hd, err := h.holding(context.Background(), quiet(), "task-0123456789abcdef0123456789abcdef-scratch")
	if err != nil || len(hd.users) != 1 || hd.users[0].Name != "t3" {
		t.Errorf("holding = %+v, %v; want the created container of the task", hd, err)
	}
}

func TestHoldingWhenDockerdFails(t *testing.T) {
	h := newTestHost(t, &fakeDocker{err: errors.New("permission denied")})
	h.plugin = fakePlugin{resp: plugin.HoldersResponse{Holders: []string{"f00dfeed0123456789"}}}
	if hd, err := h.holding(context.Background(), quiet(), "data"); err != nil || !hd.busy() {
		t.Errorf("holders from the plugin, dockerd failing: %+v, %v; want busy", hd, err)
	}
	h.plugin = fakePlugin{}
	if _, err := h.holding(context.Background(), quiet(), "data"); err == nil {
		t.Errorf("no holders from the plugin, dockerd failing: no error")
	}
	h = newTestHost(t, &fakeDocker{err: dockerapi.ErrNoDaemon})
	if hd, err := h.holding(context.Background(), quiet(), "data"); err != nil || hd.busy() {
		t.Errorf("no dockerd: %+v, %v; want nobody", hd, err)
	}
}

func TestBusyErrorNamesHolders(t *testing.T) {
	err := error(&BusyError{Name: "data-19", Users: []User{{ID: "0123456789abcdef", Name: "t3", State: "created"}},
		MountIDs: []string{"f00dfeed0123456789"}, Adopted: 1, Pending: 2})
	for _, want := range []string{"data-19", "t3 (0123456789ab, created)", "f00dfeed0123", "1 use", "2 plugin Mount"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	if !errors.Is(err, ErrBusy) {
		t.Error("not ErrBusy")
	}
}

// wantSealed fails unless the directory is mode 000 and immutable.
func wantSealed(t *testing.T, dir string) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil || flags&fsImmutableFL == 0 || st.Mode&0o7777 != 0 {
		t.Errorf("%s: mode %o, flags %#x, %v; want mode 000 and immutable", dir, st.Mode&0o7777, flags, err)
	}
}

func TestSealMakesTheMountPointUnwritableAndUnsealClears(t *testing.T) {
	testenv.RequireRoot(t)
	mp := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unsealMountpoint(mp) })
	if err := sealMountpoint(quiet(), mp); err != nil {
		t.Fatal(err)
	}
	wantSealed(t, mp)
	// Root (this test) cannot write into it either.
	if err := os.WriteFile(filepath.Join(mp, "f"), nil, 0o600); !errors.Is(err, os.ErrPermission) {
		t.Errorf("writing into a sealed mount point as root: %v; want EPERM", err)
	}
	if err := sealMountpoint(quiet(), mp); err != nil {
		t.Errorf("sealing again: %v", err)
	}
	if err := unsealMountpoint(mp); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(mp); err != nil {
		t.Errorf("removing an unsealed mount point: %v", err)
	}
}

func TestSealRefusesAMountedFilesystem(t *testing.T) {
	testenv.RequireRoot(t)
	mp := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mp, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mp, unix.MNT_DETACH) })
	if err := sealMountpoint(quiet(), mp); !errors.Is(err, errMounted) {
		t.Errorf("sealing a mounted filesystem's root = %v; want errMounted", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(mp, &st); err != nil || st.Mode&0o777 != 0o755 {
		t.Errorf("the mounted filesystem's root changed: mode %o, %v", st.Mode&0o777, err)
	}
}

func TestSealUnmountedMountpointsSealsOnlyUnmountedOnes(t *testing.T) {
	testenv.RequireRoot(t)
	h := newTestHost(t, &fakeDocker{})
	old, mounted := h.Mountpoint("old"), h.Mountpoint("busy")
	for _, dir := range []string{old, mounted} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unsealMountpoint(dir) })
	}
	if err := unix.Mount("tmpfs", mounted, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mounted, unix.MNT_DETACH) })
	h.SealUnmountedMountpoints()
	wantSealed(t, old)
	if err := os.WriteFile(filepath.Join(mounted, "f"), nil, 0o600); err != nil {
		t.Errorf("the mounted filesystem was sealed: %v", err)
	}
}
