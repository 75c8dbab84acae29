package driver

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tether-ecs/tether/agent/plugin"
)

func (f *fixture) holders(t *testing.T, name string) plugin.HoldersResponse {
	t.Helper()
	r, err := f.d.Holders(context.Background(), plugin.HoldersRequest{Name: name})
	if err != nil {
		t.Fatalf("Holders %s: %v", name, err)
	}
	return r
}

func TestHoldersAreAnsweredMountsUntilUnmounted(t *testing.T) {
	f := newFixture(t)
	f.host.set(func(h *fakeHost) { h.mounted["data"] = true })
	if r := f.holders(t, "data"); len(r.Holders) != 0 || r.Adopted != 0 || r.Pending != 0 {
		t.Fatalf("holders before any Mount = %+v", r)
	}
	f.mount(t, "data", "id-b")
	f.mount(t, "data", "id-a")
	f.mount(t, "data", "id-a") // docker cp of a running container
	if r := f.holders(t, "data"); !slices.Equal(r.Holders, []string{"id-a", "id-b"}) || r.Adopted != 0 {
		t.Fatalf("holders = %+v; want both IDs", r)
	}
	if _, err := time.Parse(time.RFC3339Nano, f.holders(t, "data").Since); err != nil {
		t.Errorf("Since: %v", err)
	}
	f.unmount(t, "data", "id-a")
	f.unmount(t, "data", "id-b")
	if r := f.holders(t, "data"); !slices.Equal(r.Holders, []string{"id-a"}) {
		t.Fatalf("holders after one of two Unmounts of id-a = %+v", r)
	}
	f.unmount(t, "data", "id-a")
	if r := f.holders(t, "data"); len(r.Holders) != 0 {
		t.Fatalf("holders after the last Unmount = %+v", r)
	}
}

func TestHoldersOfAnUntouchedVolumeAreCountedNotKept(t *testing.T) {
	f := newFixture(t)
	f.host.set(func(h *fakeHost) {
		h.mounted["data"] = true
		h.containers["data"] = []ContainerUse{{ContainerID: "k1", Mounts: 1}, {ContainerID: "k2", Mounts: 2}}
	})
	f.restart(t)
	if r := f.holders(t, "data"); len(r.Holders) != 0 || r.Adopted != 3 {
		t.Fatalf("holders after a restart = %+v; want 3 adopted", r)
	}
	// Asked again with other containers: counted again, not remembered.
	f.host.set(func(h *fakeHost) { h.containers["data"] = []ContainerUse{{ContainerID: "k1", Mounts: 1}} })
	if r := f.holders(t, "data"); r.Adopted != 1 {
		t.Fatalf("holders asked again = %+v; want 1 adopted", r)
	}
	// The first Mount or Unmount rebuilds and keeps the state.
	f.unmount(t, "data", "from-before")
	if r := f.holders(t, "data"); r.Adopted != 0 {
		t.Fatalf("holders after the adopted use's Unmount = %+v", r)
	}
	if f.host.isMounted("data") {
		t.Error("still mounted after the last adopted use left")
	}
}

func TestHoldersCountMountsInProgress(t *testing.T) {
	f := newFixture(t)
	f.host.set(func(h *fakeHost) { h.bindings["data"] = "vol-0123456789abcdef0" })
	seen := make(chan plugin.HoldersResponse, 1)
	f.host.set(func(h *fakeHost) {
		h.onBinding = func(n int) {
			if n == 1 {
				r, err := f.d.Holders(context.Background(), plugin.HoldersRequest{Name: "data"})
				if err != nil {
					t.Error(err)
				}
				seen <- r
				h.set(func(h *fakeHost) { h.attached["vol-0123456789abcdef0"] = true })
			}
		}
	})
	f.mount(t, "data", "c1")
	if r := <-seen; r.Pending != 1 || len(r.Holders) != 0 {
		t.Errorf("holders while the Mount waits = %+v; want 1 pending, no holder yet", r)
	}
	if r := f.holders(t, "data"); r.Pending != 0 || !slices.Equal(r.Holders, []string{"c1"}) {
		t.Errorf("holders once mounted = %+v", r)
	}
}

func TestHoldersRejectsBadNames(t *testing.T) {
	f := newFixture(t)
	if _, err := f.d.Holders(context.Background(), plugin.HoldersRequest{Name: "../etc"}); err == nil {
		t.Error("Holders(../etc): no error")
	}
}

func TestHoldersWhileMountsAndUnmountsRun(t *testing.T) {
	f := newFixture(t)
	f.host.set(func(h *fakeHost) { h.mounted["data"] = true })
	f.mount(t, "data", "keeper") // keeps the volume mounted throughout
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			r := f.holders(t, "data")
			if !slices.Contains(r.Holders, "keeper") {
				t.Errorf("holders %+v lost the keeper", r)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if _, err := f.d.Mount(context.Background(), plugin.MountRequest{Name: "data", ID: id}); err != nil {
					t.Error(err)
					return
				}
				if _, err := f.d.Unmount(context.Background(), plugin.UnmountRequest{Name: "data", ID: id}); err != nil {
					t.Error(err)
					return
				}
			}
		}(fmt.Sprintf("c%d", i))
	}
	wg.Wait()
	<-done
	if r := f.holders(t, "data"); !slices.Equal(r.Holders, []string{"keeper"}) || r.Pending != 0 {
		t.Errorf("holders after the churn = %+v; want the keeper alone", r)
	}
}
