package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-ecs/tether/agent/plugin"
)

type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the log lines with the given msg.
func (b *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

type fixture struct {
	d    *Driver
	host *fakeHost
	root string
	logs *logBuffer
}

func newFixture(t *testing.T, mutate ...func(*Config)) *fixture {
	t.Helper()
	f := &fixture{host: newFakeHost(), root: t.TempDir(), logs: &logBuffer{}}
	c := Config{
		Root:         f.root,
		Host:         f.host,
		MountWait:    time.Minute, // tests that wait end by what the host does, not by time
		PollInterval: time.Millisecond,
		Logger:       slog.New(slog.NewJSONHandler(f.logs, nil)),
	}
	for _, m := range mutate {
		m(&c)
	}
	d, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	f.d = d
	t.Cleanup(func() {
		if f.host.lockAbused {
			t.Error("the host's lock was taken twice, or a host change ran without it")
		}
	})
	return f
}

// restart is a new driver (a restarted agent) over the same host and root.
func (f *fixture) restart(t *testing.T) {
	t.Helper()
	d, err := New(Config{Root: f.root, Host: f.host, MountWait: time.Minute, PollInterval: time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(f.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.d = d
}

func (f *fixture) create(t *testing.T, name string, opts map[string]string) {
	t.Helper()
	if _, err := f.d.Create(context.Background(), plugin.CreateRequest{Name: name, Opts: opts}); err != nil {
		t.Fatalf("Create %s: %v", name, err)
	}
}

func (f *fixture) mount(t *testing.T, name, id string) string {
	t.Helper()
	r, err := f.d.Mount(context.Background(), plugin.MountRequest{Name: name, ID: id})
	if err != nil {
		t.Fatalf("Mount %s %s: %v", name, id, err)
	}
	return r.Mountpoint
}

func (f *fixture) unmount(t *testing.T, name, id string) {
	t.Helper()
	if _, err := f.d.Unmount(context.Background(), plugin.UnmountRequest{Name: name, ID: id}); err != nil {
		t.Fatalf("Unmount %s %s: %v", name, id, err)
	}
}

func (f *fixture) wantMounted(t *testing.T, name string, want bool) {
	t.Helper()
	if got := f.host.isMounted(name); got != want {
		t.Fatalf("volume %s mounted = %v, want %v (unmounts so far: %v)", name, got, want, f.host.unmounts)
	}
}

func TestCreateRecordsValidatedOptions(t *testing.T) {
	f := newFixture(t)
	f.create(t, "data", map[string]string{"size": "1", "volumetype": "gp3"})
	b, err := os.ReadFile(filepath.Join(f.root, "plugin", "data.json"))
	if err != nil {
		t.Fatalf("record not written: %v", err)
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Name != "data" || rec.DriverOpts["size"] != "1" || rec.DriverOpts["volumetype"] != "gp3" || rec.CreatedAt.IsZero() {
		t.Errorf("record = %+v", rec)
	}
	leftovers, _ := filepath.Glob(filepath.Join(f.root, "plugin", ".*"))
	if len(leftovers) != 0 {
		t.Errorf("temp files left: %v", leftovers)
	}

	// The same options, spelled differently, are the same volume.
	f.create(t, "data", map[string]string{"Size": "1", "volumeType": "gp3"})
	// Other options are not.
	_, err = f.d.Create(context.Background(), plugin.CreateRequest{Name: "data", Opts: map[string]string{"size": "2"}})
	if !errors.Is(err, ErrOptionsDiffer) {
		t.Fatalf("Create with other options: %v, want ErrOptionsDiffer", err)
	}
	for _, want := range []string{`"data"`, "size=1 volumetype=gp3", "size=2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestCreateRejectsBadInputNamingIt(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name string
		opts map[string]string
		want string
	}{
		{"data", map[string]string{"sise": "1"}, `unknown option "sise"`},
		{"data", map[string]string{"size": "big"}, `size="big"`},
		{"data", map[string]string{"volumetype": "gp9"}, `volumetype="gp9"`},
		{"data", map[string]string{"volumetype": "io2", "size": "10"}, "iops is required"},
		{"../etc", nil, "invalid volume name"},
		{"a b", nil, "invalid volume name"},
	}
	for _, c := range cases {
		_, err := f.d.Create(context.Background(), plugin.CreateRequest{Name: c.name, Opts: c.opts})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Create(%q, %v) = %v, want an error containing %q", c.name, c.opts, err, c.want)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(f.root, "plugin")); len(entries) != 0 {
		t.Errorf("rejected creates left records: %v", entries)
	}
}

func TestGetAndList(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.d.Get(ctx, plugin.GetRequest{Name: "nope"}); !errors.Is(err, ErrNoSuchVolume) {
		t.Errorf("Get of an unknown volume: %v, want ErrNoSuchVolume", err)
	}
	f.create(t, "b", nil)
	f.create(t, "a", map[string]string{"size": "5"})
	f.host.set(func(h *fakeHost) { h.mounted["a"] = true; h.bindings["a"] = "vol-0123456789abcdef0" })

	g, err := f.d.Get(ctx, plugin.GetRequest{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if g.Volume.Mountpoint != filepath.Join(f.root, "volumes", "a") || g.Volume.Status["volumeId"] != "vol-0123456789abcdef0" || g.Volume.CreatedAt == "" {
		t.Errorf("Get a = %+v", g.Volume)
	}
	l, err := f.d.List(ctx, plugin.ListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Volumes) != 2 || l.Volumes[0].Name != "a" || l.Volumes[1].Name != "b" || l.Volumes[1].Mountpoint != "" {
		t.Errorf("List = %+v", l.Volumes)
	}
	p, _ := f.d.Path(ctx, plugin.PathRequest{Name: "b"})
	if p.Mountpoint != "" {
		t.Errorf("Path of an unmounted volume = %q, want empty", p.Mountpoint)
	}
}

func TestMountOfMountedVolumeCountsUsersAndUnmountsAfterTheLast(t *testing.T) {
	f := newFixture(t)
	f.host.set(func(h *fakeHost) { h.mounted["data"] = true })
	for _, id := range []string{"c1", "c2", "c3"} {
		if mp := f.mount(t, "data", id); mp != filepath.Join(f.root, "volumes", "data") {
			t.Fatalf("Mount = %q", mp)
		}
	}
	f.unmount(t, "data", "c2")
	f.unmount(t, "data", "c1")
	f.wantMounted(t, "data", true)
	f.unmount(t, "data", "c3")
	f.wantMounted(t, "data", false)
	if n := f.host.count("Unmount"); n != 1 {
		t.Errorf("host Unmount called %d times, want 1", n)
	}
}

func TestRepeatedMountOfOneIDNeedsAsManyUnmounts(t *testing.T) {
	// dockerd mounts again with the same ID for docker cp of a running container.
	f := newFixture(t)
	f.host.set(func(h *fakeHost) { h.mounted["data"] = true })
	f.mount(t, "data", "c1")
	f.mount(t, "data", "c1")
	f.unmount(t, "data", "c1")
	f.wantMounted(t, "data", true)
	f.unmount(t, "data", "c1")
	f.wantMounted(t, "data", false)
}

func TestMountMountsBoundAttachedVolumeItself(t *testing.T) {
	f := newFixture(t)
	f.host.set(func(h *fakeHost) {
		h.bindings["data"] = "vol-0123456789abcdef0"
		h.attached["vol-0123456789abcdef0"] = true
	})
	if mp := f.mount(t, "data", "c1"); mp != filepath.Join(f.root, "volumes", "data") {
		t.Fatalf("Mount = %q", mp)
	}
	f.wantMounted(t, "data", true)
	if n := f.host.count("MountAttached"); n != 1 {
		t.Errorf("MountAttached called %d times, want 1", n)
	}
}

func TestMountWaitsForTheReconciler(t *testing.T) {
	f := newFixture(t)
	// The reconciler binds, attaches and mounts while Mount waits: on the
	// fourth look.
	f.host.set(func(h *fakeHost) {
		h.onBinding = func(n int) {
			if n == 4 {
				f.host.set(func(h *fakeHost) { h.bindings["data"] = "vol-0123456789abcdef0"; h.mounted["data"] = true })
			}
		}
	})
	if mp := f.mount(t, "data", "c1"); mp != filepath.Join(f.root, "volumes", "data") {
		t.Fatalf("Mount = %q", mp)
	}
	waits := f.logs.records(t, "volume not mounted here yet; waiting")
	if len(waits) != 1 || waits[0]["volume"] != "data" || !strings.Contains(fmt.Sprint(waits[0]["waitingFor"]), "no EBS volume bound yet") {
		t.Errorf("wait log = %v", waits)
	}
	if len(f.logs.records(t, "volume mounted after waiting")) != 1 {
		t.Error("no log line for the end of the wait")
	}
	// Counted: the last unmount unmounts.
	f.unmount(t, "data", "c1")
	f.wantMounted(t, "data", false)
}

func TestMountTimeoutSaysWhatItWaitedFor(t *testing.T) {
	short := func(c *Config) { c.MountWait = 20 * time.Millisecond }
	t.Run("nothing bound", func(t *testing.T) {
		f := newFixture(t, short)
		_, err := f.d.Mount(context.Background(), plugin.MountRequest{Name: "data", ID: "c1"})
		var te *MountTimeoutError
		if !errors.As(err, &te) || !errors.Is(err, ErrNotMountedHere) {
			t.Fatalf("Mount = %v, want a MountTimeoutError", err)
		}
		want := `tether: volume "data" is not mounted on this instance after waiting 20ms: no EBS volume bound to it on this instance yet; ` +
			`tether's reconciler attaches and mounts it when ECS places the task here. The container was not started`
		if err.Error() != want {
			t.Errorf("error text:\n got %s\nwant %s", err, want)
		}
		if len(f.logs.records(t, "gave up waiting for the volume")) != 1 {
			t.Error("no log line for giving up")
		}
	})
	t.Run("bound, not attached", func(t *testing.T) {
		f := newFixture(t, short)
		f.host.set(func(h *fakeHost) { h.bindings["data"] = "vol-0123456789abcdef0" })
		_, err := f.d.Mount(context.Background(), plugin.MountRequest{Name: "data", ID: "c1"})
		if !errors.Is(err, ErrNotAttached) || !errors.Is(err, ErrNotMountedHere) {
			t.Fatalf("Mount = %v, want ErrNotMountedHere and ErrNotAttached", err)
		}
		for _, want := range []string{`volume "data"`, "vol-0123456789abcdef0", "nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0", "20ms"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		f.wantMounted(t, "data", false)
	})
}

func TestMountFailsClosed(t *testing.T) {
	t.Run("mount reported success, nothing mounted", func(t *testing.T) {
		f := newFixture(t)
		f.host.set(func(h *fakeHost) {
			h.bindings["data"] = "vol-0123456789abcdef0"
			h.attached["vol-0123456789abcdef0"] = true
			h.mountLies = true
		})
		r, err := f.d.Mount(context.Background(), plugin.MountRequest{Name: "data", ID: "c1"})
		if err == nil || r.Mountpoint != "" || !strings.Contains(err.Error(), "nothing is mounted") {
			t.Fatalf("Mount = %q, %v; want no path and an error", r.Mountpoint, err)
		}
	})
	t.Run("mount failed: no wait, no path", func(t *testing.T) {
		f := newFixture(t)
		refused := errors.New("device has a partition table; tether will not touch it")
		f.host.set(func(h *fakeHost) {
			h.bindings["data"] = "vol-0123456789abcdef0"
			h.attached["vol-0123456789abcdef0"] = true
			h.mountAttachedErr = refused
		})
		r, err := f.d.Mount(context.Background(), plugin.MountRequest{Name: "data", ID: "c1"})
		if !errors.Is(err, refused) || r.Mountpoint != "" {
			t.Fatalf("Mount = %q, %v; want the host's error", r.Mountpoint, err)
		}
		if n := f.host.count("MountAttached"); n != 1 {
			t.Errorf("MountAttached tried %d times, want 1 (no waiting on a hard failure)", n)
		}
	})
	t.Run("caller gives up", func(t *testing.T) {
		f := newFixture(t)
		ctx, cancel := context.WithCancel(context.Background())
		f.host.set(func(h *fakeHost) {
			h.onBinding = func(n int) {
				if n == 3 {
					cancel()
				}
			}
		})
		r, err := f.d.Mount(ctx, plugin.MountRequest{Name: "data", ID: "c1"})
		if !errors.Is(err, context.Canceled) || r.Mountpoint != "" {
			t.Fatalf("Mount = %q, %v; want context.Canceled", r.Mountpoint, err)
		}
	})
}

func TestMountFinishedAfterCallerLeftIsNotCounted(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	f.host.set(func(h *fakeHost) {
		h.bindings["data"] = "vol-0123456789abcdef0"
		h.attached["vol-0123456789abcdef0"] = true
		h.onMountAttached = cancel // dockerd hangs up mid-mount
	})
	_, err := f.d.Mount(ctx, plugin.MountRequest{Name: "data", ID: "c1"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Mount = %v, want context.Canceled", err)
	}
	if f.host.mountCtxErr != nil {
		t.Errorf("the host's mount was cancelled halfway: %v", f.host.mountCtxErr)
	}
	f.wantMounted(t, "data", true) // finished, like a reconciler's mount
	f.unmount(t, "data", "c1")     // dockerd never sends this; if it did, nothing to release
	f.wantMounted(t, "data", true)
}

func TestRestartRebuildsUsersFromMountTableAndDockerd(t *testing.T) {
	f := newFixture(t)
	f.host.set(func(h *fakeHost) { h.mounted["data"] = true })
	f.mount(t, "data", "c1")
	f.mount(t, "data", "c2")
	f.host.set(func(h *fakeHost) {
		h.containers["data"] = []ContainerUse{{ContainerID: "ctr1", Mounts: 1}, {ContainerID: "ctr2", Mounts: 1}}
	})
	f.restart(t)

	// A third container starts after the restart: its ID is known.
	f.mount(t, "data", "c3")
	f.unmount(t, "data", "c1") // from before the restart: adopted
	f.wantMounted(t, "data", true)
	f.unmount(t, "data", "c3")
	f.wantMounted(t, "data", true)
	f.host.set(func(h *fakeHost) { h.containers["data"] = []ContainerUse{{ContainerID: "ctr2", Mounts: 1}} })
	f.unmount(t, "data", "c2") // the last adopted use
	f.wantMounted(t, "data", false)
	var adopted []any
	for _, l := range f.logs.records(t, "volume state rebuilt from the mount table and dockerd") {
		adopted = append(adopted, l["adoptedMounts"])
	}
	// Once per driver: none before the restart, both mounts after it.
	if fmt.Sprint(adopted) != "[0 2]" {
		t.Errorf("adopted mounts at each rebuild = %v, want [0 2]", adopted)
	}
}

func TestUnknownIDWithoutAdoptedUsesChangesNothing(t *testing.T) {
	// The reconciler mounted the volume for a task whose container has not
	// started; a stray Unmount must not pull it away.
	f := newFixture(t)
	f.host.set(func(h *fakeHost) { h.mounted["data"] = true })
	f.unmount(t, "data", "never-seen")
	f.wantMounted(t, "data", true)
	if len(f.logs.records(t, "unmount ignored")) != 1 {
		t.Error("ignored unmount not logged")
	}
}

func TestLastUnmountKeepsVolumeWhileDockerdListsOthers(t *testing.T) {
	f := newFixture(t)
	f.host.set(func(h *fakeHost) { h.mounted["data"] = true; h.containersErr = errors.New("dockerd not answering") })
	f.restart(t)
	f.mount(t, "data", "c1") // rebuild could not ask dockerd: counted short
	f.host.set(func(h *fakeHost) {
		h.containersErr = nil
		h.containers["data"] = []ContainerUse{{ContainerID: "stopping", Mounts: 1}, {ContainerID: "other", Mounts: 1}}
	})
	f.unmount(t, "data", "c1")
	f.wantMounted(t, "data", true)
	f.host.set(func(h *fakeHost) { h.containers["data"] = []ContainerUse{{ContainerID: "other", Mounts: 1}} })
	f.unmount(t, "data", "other-id") // adopted at the check
	f.wantMounted(t, "data", false)
}

func TestLastUnmountKeepsVolumeWhenDockerdCannotConfirm(t *testing.T) {
	f := newFixture(t)
	f.host.set(func(h *fakeHost) { h.mounted["data"] = true })
	f.mount(t, "data", "c1")
	f.host.set(func(h *fakeHost) { h.containersErr = errors.New("dockerd not answering") })
	f.unmount(t, "data", "c1")
	f.wantMounted(t, "data", true)
}

func TestTaskScopedNameMapsToTetherName(t *testing.T) {
	f := newFixture(t)
	const dockerName = "ecs-app-3-scratch-e4c0a1b2c3d4e5f6a7b8"
	f.create(t, dockerName, map[string]string{"size": "1"})
	f.host.set(func(h *fakeHost) {
		h.tasks[dockerName] = "task-0123456789abcdef0123456789abcdef-scratch"
		h.mounted["task-0123456789abcdef0123456789abcdef-scratch"] = true
	})
	mp := f.mount(t, dockerName, "c1")
	if mp != filepath.Join(f.root, "volumes", "task-0123456789abcdef0123456789abcdef-scratch") {
		t.Fatalf("Mount = %q", mp)
	}
	g, err := f.d.Get(context.Background(), plugin.GetRequest{Name: dockerName})
	if err != nil || g.Volume.Mountpoint != mp || g.Volume.Status["tetherVolume"] != "task-0123456789abcdef0123456789abcdef-scratch" {
		t.Errorf("Get = %+v, %v", g.Volume, err)
	}
	f.unmount(t, dockerName, "c1")
	f.wantMounted(t, "task-0123456789abcdef0123456789abcdef-scratch", false)
	if n := f.host.count("TaskVolumeName"); n != 1 {
		t.Errorf("TaskVolumeName asked %d times, want 1 (cached)", n)
	}
	// Shared names never ask dockerd.
	f.host.set(func(h *fakeHost) { h.mounted["shared"] = true })
	f.mount(t, "shared", "c2")
	if n := f.host.count("TaskVolumeName"); n != 1 {
		t.Errorf("TaskVolumeName asked for a shared name")
	}
}

func TestRemoveForgetsRecordOnlyWhenUnused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.create(t, "data", nil)
	f.host.set(func(h *fakeHost) { h.mounted["data"] = true })
	f.mount(t, "data", "c1")
	_, err := f.d.Remove(ctx, plugin.RemoveRequest{Name: "data"})
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "never deletes the EBS volume") {
		t.Fatalf("Remove while in use = %v", err)
	}
	f.unmount(t, "data", "c1")
	f.host.set(func(h *fakeHost) { h.mounted["data"] = true }) // mounted again by the reconciler
	if _, err := f.d.Remove(ctx, plugin.RemoveRequest{Name: "data"}); !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove while mounted = %v, want ErrInUse", err)
	}
	f.host.set(func(h *fakeHost) { h.mounted["data"] = false })
	if _, err := f.d.Remove(ctx, plugin.RemoveRequest{Name: "data"}); err != nil {
		t.Fatalf("Remove = %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.root, "plugin", "data.json")); !os.IsNotExist(err) {
		t.Errorf("record still there: %v", err)
	}
}

func TestConcurrentUsersUnmountOnce(t *testing.T) {
	f := newFixture(t)
	f.host.set(func(h *fakeHost) { h.mounted["data"] = true })
	f.mount(t, "data", "anchor")
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("c%d", i)
			f.mount(t, "data", id)
			f.unmount(t, "data", id)
		}()
	}
	wg.Wait()
	f.wantMounted(t, "data", true)
	f.unmount(t, "data", "anchor")
	f.wantMounted(t, "data", false)
	if n := f.host.count("Unmount"); n != 1 {
		t.Errorf("host Unmount called %d times, want 1", n)
	}
}

func TestRestoreRebuildsMountedRecordedVolumes(t *testing.T) {
	f := newFixture(t)
	f.create(t, "a", nil)
	f.create(t, "b", nil)
	f.host.set(func(h *fakeHost) {
		h.mounted["a"] = true
		h.containers["a"] = []ContainerUse{{ContainerID: "ctr1", Mounts: 2}}
	})
	f.restart(t)
	if n := f.d.Restore(context.Background()); n != 2 {
		t.Errorf("Restore = %d, want 2", n)
	}
	f.unmount(t, "a", "x")
	f.wantMounted(t, "a", true)
	f.unmount(t, "a", "y")
	f.wantMounted(t, "a", false)
}

// A remount that takes longer than the Mount may take (an fsck) is not cut
// short: the Mount answers by its deadline saying so, the mount finishes in
// the background holding the lock, and the next Mount finds it mounted.
func TestSlowRemountAnswersInTimeAndFinishesInTheBackground(t *testing.T) {
	release := make(chan struct{})
	f := newFixture(t, func(c *Config) { c.MountWait = time.Millisecond })
	f.host.set(func(h *fakeHost) {
		h.bindings["data"] = "vol-0123456789abcdef0"
		h.attached["vol-0123456789abcdef0"] = true
		h.onMountAttached = func() { <-release } // the fsck runs until released
	})
	_, err := f.d.Mount(context.Background(), plugin.MountRequest{Name: "data", ID: "c1"})
	if err == nil || !strings.Contains(err.Error(), "takes longer than the plugin may take to answer") {
		t.Fatalf("Mount during a slow remount = %v; want an answer that says it goes on", err)
	}
	if f.host.isMounted("data") {
		t.Fatal("mounted before the slow mount finished")
	}
	close(release)
	f.host.set(func(h *fakeHost) { h.onMountAttached = nil })
	f.d.wait = time.Minute
	if mp := f.mount(t, "data", "c2"); mp != f.d.MountPath("data") {
		t.Fatalf("next Mount = %q", mp)
	}
	if f.host.mountCtxErr != nil {
		t.Errorf("the slow mount was cancelled: %v", f.host.mountCtxErr)
	}
}

// Something else mounted at the mount point is not the volume: the Mount
// fails naming it instead of handing dockerd the wrong filesystem.
func TestMountRefusesAnotherDeviceAtTheMountPoint(t *testing.T) {
	f := newFixture(t)
	f.host.set(func(h *fakeHost) {
		h.bindings["data"] = "vol-0123456789abcdef0"
		h.mounted["data"] = true
		h.wrongDevice["data"] = true
	})
	_, err := f.d.Mount(context.Background(), plugin.MountRequest{Name: "data", ID: "c1"})
	if err == nil || !strings.Contains(err.Error(), "another device is mounted") {
		t.Fatalf("Mount over another device = %v", err)
	}
}
