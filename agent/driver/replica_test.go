package driver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tether-ecs/tether/agent/plugin"
	"github.com/tether-ecs/tether/internal/volspec"
)

// A replicated Docker volume "db" waits for the reconciler's mount of the
// task's replica (db-1 here), is answered with that replica's mount point
// and its ordinal file, and its last Unmount unmounts db-1.
func TestReplicatedNameMapsToTheReplicaMountedHere(t *testing.T) {
	f := newFixture(t)
	f.create(t, "db", map[string]string{"replicas": "true", "size": "1"})
	for _, n := range []string{"db-0", "db-1", "dbx-2"} {
		if err := os.MkdirAll(filepath.Join(f.root, "volumes", n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// db-0 was here before (bound, not mounted): never taken from its binding.
	f.host.set(func(h *fakeHost) {
		h.bindings["db-0"] = "vol-0000000000000000a"
		h.attached["vol-0000000000000000a"] = true
	})
	done := make(chan string, 1)
	go func() { done <- f.mount(t, "db", "c1") }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for f.host.count("IsMounted") < 4 { // Mount has looked, and waits
		if ctx.Err() != nil {
			t.Fatal("Mount never looked at the mount table")
		}
		time.Sleep(time.Millisecond)
	}
	f.host.set(func(h *fakeHost) { h.bindings["db-1"] = "vol-0000000000000000b"; h.mounted["db-1"] = true })
	if mp := <-done; mp != filepath.Join(f.root, "volumes", "db-1") {
		t.Fatalf("Mount = %q, want db-1's mount point", mp)
	}
	f.wantMounted(t, "db-0", false)
	b, err := os.ReadFile(filepath.Join(f.root, "volumes", "db-1", volspec.ReplicaFile))
	if err != nil || string(b) != "1\n" {
		t.Fatalf("%s = %q, %v; want \"1\\n\"", volspec.ReplicaFile, b, err)
	}
	f.unmount(t, "db", "c1")
	f.wantMounted(t, "db-1", false)
}

// Two replicas of one name on one instance, or containers of two tasks on
// the Docker volume: the Mount is refused, never answered with a guess.
func TestReplicatedNameRefusesTwoReplicasOnOneInstance(t *testing.T) {
	f := newFixture(t)
	f.create(t, "db", map[string]string{"replicas": "true"})
	for _, n := range []string{"db-0", "db-1"} {
		if err := os.MkdirAll(filepath.Join(f.root, "volumes", n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.host.set(func(h *fakeHost) { h.mounted["db-0"], h.mounted["db-1"] = true, true })
	if _, err := f.d.Mount(context.Background(), plugin.MountRequest{Name: "db", ID: "c1"}); !errors.Is(err, errReplicaAmbiguous) {
		t.Fatalf("Mount with db-0 and db-1 mounted: %v, want a refusal", err)
	}
	f.host.set(func(h *fakeHost) {
		h.mounted["db-1"] = false
		h.taskARNs["db"] = []string{"arn:aws:ecs:r:1:task/c/a", "arn:aws:ecs:r:1:task/c/b"}
	})
	if _, err := f.d.Mount(context.Background(), plugin.MountRequest{Name: "db", ID: "c2"}); !errors.Is(err, errReplicaAmbiguous) {
		t.Fatalf("Mount used by two tasks' containers: %v, want a refusal", err)
	}
	f.host.set(func(h *fakeHost) { h.taskARNs["db"] = []string{"arn:aws:ecs:r:1:task/c/a"} })
	if mp := f.mount(t, "db", "c3"); mp != filepath.Join(f.root, "volumes", "db-0") {
		t.Fatalf("Mount = %q, want db-0's", mp)
	}
}
