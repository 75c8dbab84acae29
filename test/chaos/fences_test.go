package chaos

import (
	"slices"
	"testing"
	"time"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/world/fakehost"
	"github.com/tether-ecs/tether/test/world/world"
)

// The invariants of issue 11 on synthetic facts: each broken rule is a
// violation of its own kind; what tether may do is none.

func TestForceDetachOnlyOnEC2sWordThatTheHostStopped(t *testing.T) {
	wt := newTestWatcher()
	wt.checkDetachesLocked([]world.DetachAsked{
		{VolumeID: "vol-1", InstanceID: "i-1", Force: true, InstanceState: "stopped"},
		{VolumeID: "vol-2", InstanceID: "i-2", Force: true, InstanceState: "terminated"},
	})
	if len(wt.violations) != 0 {
		t.Fatalf("forced detaches of halted hosts reported: %v", wt.violations)
	}
	wt.checkDetachesLocked([]world.DetachAsked{{VolumeID: "vol-3", InstanceID: "i-3", Force: true, InstanceState: "running",
		Guest: &fakehost.Holding{Attached: true, Mounted: []string{"data"}}}})
	if k := kinds(wt.violations); !slices.Equal(k, []string{"force-live"}) {
		t.Fatalf("force of a running host: %v; want one force-live (the guest's holding is the force's to go past)", wt.violations)
	}
	if wt.detachSeen != 3 || wt.outcomes["force detaches (instance stopped)"] != 1 || wt.outcomes["force detaches (instance running)"] != 1 {
		t.Fatalf("seen %d, outcomes %v", wt.detachSeen, wt.outcomes)
	}
}

func TestDetachOnlyWhatTheKernelLetGoOfAtItsGeneration(t *testing.T) {
	released := map[string]fakehost.BindingState{"data": {VolumeID: "vol-1", Generation: 3, Released: true}}
	for _, c := range []struct {
		name  string
		guest *fakehost.Holding
		want  []string
	}{
		{"released and let go", &fakehost.Holding{Attached: true, Bindings: released}, nil},
		{"guest gone", nil, nil},
		{"still mounted", &fakehost.Holding{Attached: true, Mounted: []string{"data"},
			Bindings: map[string]fakehost.BindingState{"data": {VolumeID: "vol-1", Generation: 4}}}, []string{"detach-held", "unmount-reused"}},
		{"held by another namespace", &fakehost.Holding{Attached: true, Holders: []agentproto.Holder{{Kind: "namespace", PID: 9}}, Bindings: released},
			[]string{"detach-held"}},
		// The plugin unmounted after its last container, but no unmount
		// released generation 4: the plugin may mount it again.
		{"unmounted, generation not released", &fakehost.Holding{Attached: true,
			Bindings: map[string]fakehost.BindingState{"data": {VolumeID: "vol-1", Generation: 4}}}, []string{"unmount-reused"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			wt := newTestWatcher()
			wt.checkDetachesLocked([]world.DetachAsked{{VolumeID: "vol-1", InstanceID: "i-1", InstanceState: "running", Guest: c.guest}})
			if k := kinds(wt.violations); !slices.Equal(k, c.want) {
				t.Fatalf("violations %v, want kinds %v", wt.violations, c.want)
			}
		})
	}
}

func TestMkfsOnlyWithTheGrantOnAVolumeWithoutData(t *testing.T) {
	wt := newTestWatcher()
	t0 := time.Now()
	wt.checkMkfsLocked([]fakehost.Mkfs{{VolumeID: "vol-1", Instance: "i-1", FSType: "ext4", Granted: true, At: t0}})
	wt.checkDiskLocked("vol-1", disk("t1"), []string{"i-1"}) // its first generation, seen after the mkfs
	if len(wt.violations) != 0 {
		t.Fatalf("a granted first format reported: %v", wt.violations)
	}
	wt.checkMkfsLocked([]fakehost.Mkfs{
		{VolumeID: "vol-1", Instance: "i-1", FSType: "ext4", Granted: true, At: t0}, // seen already
		{VolumeID: "vol-2", Instance: "i-1", FSType: "ext4", Granted: false, At: time.Now()},
		{VolumeID: "vol-1", Instance: "i-2", FSType: "ext4", Granted: true, At: time.Now()},
	})
	if k := kinds(wt.violations); !slices.Equal(k, []string{"mkfs-without-grant", "mkfs-over-data"}) {
		t.Fatalf("violations %v", wt.violations)
	}
}

func TestRecursiveLoopDropsAreViolations(t *testing.T) {
	wt := newTestWatcher()
	wt.checkRecursionLocked(0, 9)
	wt.checkRecursionLocked(2, 17)
	wt.checkRecursionLocked(2, 17) // the same drops: reported once
	if k := kinds(wt.violations); !slices.Equal(k, []string{"recursive-loop"}) || wt.outcomes["longest SQS -> Lambda chain"] != 17 {
		t.Fatalf("violations %v, outcomes %v", wt.violations, wt.outcomes)
	}
}

// A volume last seen on an instance whose guest is gone was detached
// uncleanly by that death (a stop's end), not by tether.
func TestUncleanDetachOfAVolumeWhoseHostDied(t *testing.T) {
	wt := newTestWatcher()
	ds := disk("t1")
	wt.checkDiskLocked("vol-1", ds, []string{"i-1"})
	wt.vols["vol-1"].lastOn = []string{"i-1"}
	wt.down["i-1"] = true
	ds.Unclean = 1
	wt.checkDiskLocked("vol-1", ds, nil)
	if len(wt.violations) != 0 {
		t.Fatalf("the death's unclean detach reported: %v", wt.violations)
	}
	wt.vols["vol-1"].lastOn = []string{"i-2"} // on a live host now
	ds.Unclean = 2
	wt.checkDiskLocked("vol-1", ds, nil)
	if k := kinds(wt.violations); !slices.Equal(k, []string{"unclean-detach"}) {
		t.Fatalf("violations %v", wt.violations)
	}
}

// A volume on a dead host counts as served again once a task on another
// instance writes its generation.
func TestDeadHostsVolumesServedAgain(t *testing.T) {
	wt := newTestWatcher()
	wt.checkDiskLocked("vol-1", disk("t1"), []string{"i-1"})
	wt.deaths["vol-1"] = &deathRec{instance: "i-1", kind: "kill", at: time.Now()}
	wt.checkDiskLocked("vol-1", disk("t1", "t2"), []string{"i-2"})
	if d := wt.deaths["vol-1"]; d.servedAt.IsZero() || wt.outcomes["volumes of a dead instance served again elsewhere (kill)"] != 1 {
		t.Fatalf("death %+v, outcomes %v", d, wt.outcomes)
	}
}
