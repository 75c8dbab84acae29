package fakehost

import (
	"strings"
	"sync"
	"testing"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// An unmount of several volumes (agentproto.ListSep lists) unmounts each on
// its own, as the agent does: one line per volume in list order, a
// failure's naming its volume, the exit code the first non-zero one.

const free = "vol-0123456789abcdef1"

// lines splits a command's stdout into its lines, each decoded as the
// reconciler does.
func lines(t *testing.T, res worldapi.CommandResult) []agentproto.Output {
	t.Helper()
	var outs []agentproto.Output
	for _, l := range strings.SplitAfter(res.Stdout, "\n") {
		if l == "" {
			continue
		}
		out, ok := agentproto.ParseOutput(l)
		if !ok || !strings.HasSuffix(l, "\n") {
			t.Fatalf("stdout %q: line %q is not one JSON line", res.Stdout, l)
		}
		outs = append(outs, out)
	}
	return outs
}

// busyAndFree: vol mounted as rexray-vol under a running task, free
// mounted as "free" and used by nothing.
func busyAndFree(t *testing.T, h *Host) {
	t.Helper()
	attached(t, h, vol)
	attached(t, h, free)
	run(t, h, "tether-agent mount --volume-id "+vol+" --name rexray-vol --format-if-blank")
	run(t, h, "tether-agent mount --volume-id "+free+" --name free --format-if-blank")
	rec := newRecorder()
	if err := h.StartTask(ctx(t), seedSpec("0123456789abcdef0123456789abcdef", "shared"), rec.report); err != nil {
		t.Fatal(err)
	}
	rec.next(t, "PENDING")
	rec.next(t, "RUNNING")
	if st := h.State(); st.Mounts["rexray-vol"] != vol || st.Mounts["free"] != free {
		t.Fatalf("mounts before the batch = %+v", st.Mounts)
	}
}

func TestBatchUnmountReleasesTheFreeVolumeAndNamesTheBusyOne(t *testing.T) {
	h := testHost(t, Options{})
	busyAndFree(t, h)
	var mu sync.Mutex
	var hooked []string
	h.OnUnmount(func(volumeID, name string) {
		mu.Lock()
		hooked = append(hooked, volumeID+" "+name)
		mu.Unlock()
	})
	// The busy volume first: it does not stop the next one.
	res := run(t, h, "tether-agent unmount --volume-id "+vol+","+free+" --name rexray-vol,free --attachment i-1:100,i-1:200 --json")
	if res.ExitCode != agentproto.ExitBusy {
		t.Fatalf("exit %d, want %d (busy, the first non-zero); stdout %s stderr %s", res.ExitCode, agentproto.ExitBusy, res.Stdout, res.Stderr)
	}
	outs := lines(t, res)
	if len(outs) != 2 {
		t.Fatalf("stdout %q: want two lines, one per volume", res.Stdout)
	}
	if f := outs[0].Error; f == nil || f.VolumeID != vol || f.Class != agentproto.ClassBusy || f.ExitCode != agentproto.ExitBusy ||
		len(f.Holders) != 1 || f.Holders[0].Kind != "container" || f.Protocol != agentproto.Protocol {
		t.Errorf("line 1 = %s; want the busy failure naming %s and its container", outs[0].Raw, vol)
	}
	if u, ok := outs[1].Unmount(); !ok || u.VolumeID != free || u.Name != "free" || !u.WasMounted || !u.Released ||
		u.Generation != 1 || u.Attachment != "i-1:200" || u.Protocol != agentproto.Protocol {
		t.Errorf("line 2 = %s; want %s released, generation 1, attachment i-1:200", outs[1].Raw, free)
	}
	// The reconciler finds each volume's line by its id.
	if out, ok := agentproto.ParseOutputFor(res.Stdout, vol); !ok || out.Error == nil || out.Error.Class != agentproto.ClassBusy {
		t.Errorf("ParseOutputFor(%s) = %+v, %v", vol, out, ok)
	}
	if out, ok := agentproto.ParseOutputFor(res.Stdout, free); !ok || out.Error != nil {
		t.Errorf("ParseOutputFor(%s) = %s, %v", free, out.Raw, ok)
	}
	st := h.State()
	if st.Mounts["rexray-vol"] != vol || st.Mounts["free"] != "" {
		t.Fatalf("mounts after the batch = %+v; want rexray-vol still mounted, free unmounted", st.Mounts)
	}
	if b := st.Bindings["free"]; !b.Released {
		t.Errorf("free's binding = %+v; want released", b)
	}
	if b := st.Bindings["rexray-vol"]; b.Released {
		t.Errorf("rexray-vol's binding = %+v; a busy volume is not released", b)
	}
	if err := h.DetachDevice(ctx(t), free, false); err != nil {
		t.Errorf("detach of the released volume: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hooked) != 1 || hooked[0] != free+" free" {
		t.Errorf("OnUnmount ran for %q; want the released volume only", hooked)
	}
}

// The exit code is the first non-zero one in list order.
func TestBatchUnmountExitsWithTheFirstFailure(t *testing.T) {
	const other = "vol-0123456789abcdef3" // not what "free" holds: a conflict
	for _, c := range []struct {
		ids, names string
		code       int
	}{
		{vol + "," + other, "rexray-vol,free", agentproto.ExitBusy},
		{other + "," + vol, "free,rexray-vol", agentproto.ExitConflict},
	} {
		h := testHost(t, Options{})
		busyAndFree(t, h)
		res := run(t, h, "tether-agent unmount --volume-id "+c.ids+" --name "+c.names+" --json")
		outs := lines(t, res)
		if res.ExitCode != c.code || len(outs) != 2 || outs[0].Error == nil || outs[1].Error == nil || outs[0].Error.ExitCode != c.code {
			t.Errorf("%s: exit %d, stdout %s; want exit %d, two failure lines", c.ids, res.ExitCode, res.Stdout, c.code)
		}
		if st := h.State(); st.Mounts["rexray-vol"] != vol || st.Mounts["free"] != free {
			t.Errorf("%s: mounts = %+v; want both still mounted", c.ids, st.Mounts)
		}
	}
}

// Bad input in a batch unmounts nothing: one failure line, exit 2, naming
// no volume, as a single volume's.
func TestBatchUnmountBadInputUnmountsNothing(t *testing.T) {
	h := testHost(t, Options{})
	attached(t, h, vol)
	attached(t, h, free)
	run(t, h, "tether-agent mount --volume-id "+vol+" --name a --format-if-blank")
	run(t, h, "tether-agent mount --volume-id "+free+" --name b --format-if-blank")
	two := vol + "," + free
	many := make([]string, agentproto.MaxBatch+1)
	manyNames := make([]string, len(many))
	for i := range many {
		many[i] = "vol-0123456789abcde" + string(rune('a'+i/16)) + string("0123456789abcdef"[i%16])
		manyNames[i] = "n" + string(rune('a'+i))
	}
	for _, args := range []string{
		"--volume-id " + two + " --name a",                                                       // 2 ids, 1 name
		"--volume-id " + vol + " --name a,b",                                                     // 1 id, 2 names
		"--volume-id " + two + " --name a,b --attachment i-1:1",                                  // 1 attachment for 2
		"--volume-id " + two + " --name a,b --attachment i-1:1,i-1:2,",                           // 3 attachments for 2
		"--volume-id " + vol + "," + vol + " --name a,b",                                         // a volume twice
		"--volume-id " + two + " --name a,a",                                                     // a name twice
		"--volume-id " + two + " --name a,../etc",                                                // an invalid name
		"--volume-id " + vol + ",vol-BAD --name a,b",                                             // an invalid id
		"--volume-id " + vol + ", --name a,b",                                                    // an empty id
		"--volume-id " + two + " --name a,b --attachment i-1:1,i-1/2",                            // an invalid attachment
		"--volume-id " + vol + " --name a --attachment ,",                                        // 2 attachments for 1
		"--volume-id " + agentproto.JoinList(many) + " --name " + agentproto.JoinList(manyNames), // more than MaxBatch
	} {
		res := run(t, h, "tether-agent unmount "+args+" --json")
		if res.ExitCode != agentproto.ExitBadInput {
			t.Errorf("unmount %s: exit %d, want %d", args, res.ExitCode, agentproto.ExitBadInput)
			continue
		}
		if out := parse(t, res); out.Error == nil || out.Error.Class != agentproto.ClassBadInput || out.Error.VolumeID != "" {
			t.Errorf("unmount %s: %s; want one bad-input line naming no volume", args, res.Stdout)
		}
	}
	if st := h.State(); st.Mounts["a"] != vol || st.Mounts["b"] != free || st.Bindings["a"].Released || st.Bindings["b"].Released {
		t.Fatalf("after bad input: %+v; want both mounted, unreleased", st)
	}
	// Valid, the same two go: empty attachments are none.
	res := run(t, h, "tether-agent unmount --volume-id "+two+" --name a,b --attachment , --json")
	outs := lines(t, res)
	if res.ExitCode != 0 || len(outs) != 2 {
		t.Fatalf("unmount of both: exit %d %s", res.ExitCode, res.Stdout)
	}
	for i, v := range []string{vol, free} {
		if u, ok := outs[i].Unmount(); !ok || u.VolumeID != v || !u.Released || u.Attachment != "" {
			t.Errorf("line %d = %s; want %s released, no attachment", i+1, outs[i].Raw, v)
		}
	}
	if st := h.State(); len(st.Mounts) != 0 {
		t.Fatalf("mounts after the batch = %+v", st.Mounts)
	}
}

// One volume is as ever: one line, a failure naming no volume.
func TestSingleUnmountIsUnchanged(t *testing.T) {
	h := testHost(t, Options{})
	busyAndFree(t, h)
	res := run(t, h, "tether-agent unmount --volume-id "+vol+" --name rexray-vol --attachment i-1:100 --json")
	out := parse(t, res)
	if res.ExitCode != agentproto.ExitBusy || out.Error == nil || out.Error.Class != agentproto.ClassBusy || out.Error.VolumeID != "" ||
		strings.Contains(res.Stdout, `"volumeId"`) {
		t.Fatalf("single busy unmount: exit %d %s; want one busy line without volumeId", res.ExitCode, res.Stdout)
	}
	res = run(t, h, "tether-agent unmount --volume-id "+free+" --name free --json")
	if u, ok := parse(t, res).Unmount(); res.ExitCode != 0 || !ok || u.VolumeID != free || !u.Released {
		t.Fatalf("single unmount: exit %d %s", res.ExitCode, res.Stdout)
	}
	// Without --json, the text (one line) as ever.
	res = run(t, h, "tether-agent unmount --volume-id "+free+" --name free")
	if res.ExitCode != 0 || res.Stdout != "unmounted\n" {
		t.Fatalf("single unmount without --json: exit %d %q", res.ExitCode, res.Stdout)
	}
}
