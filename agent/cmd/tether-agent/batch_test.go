package main_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/tether-ecs/tether/internal/agentproto"
)

// batchLines decodes a batched unmount's stdout: one JSON line per volume.
func batchLines(t *testing.T, r result) []agentproto.Output {
	t.Helper()
	var outs []agentproto.Output
	for _, l := range strings.SplitAfter(r.stdout, "\n") {
		if l == "" {
			continue
		}
		out, ok := agentproto.ParseOutput(l)
		if !ok || !strings.HasSuffix(l, "\n") {
			t.Fatalf("stdout %q: line %q is not one JSON line", r.stdout, l)
		}
		if a := out.AgentOf(); a.Protocol != agentproto.Protocol || a.AgentVersion == "" {
			t.Errorf("line %s does not name the agent's version and protocol %d", l, agentproto.Protocol)
		}
		outs = append(outs, out)
	}
	return outs
}

// logsFor are the agent's log lines (JSON on stderr) about volumeID.
func logsFor(t *testing.T, r result, volumeID string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["volumeId"] == volumeID {
			lines = append(lines, m)
		}
	}
	return lines
}

// An unmount of several volumes (lists joined by agentproto.ListSep)
// unmounts each on its own, in list order: one line each, a failure's
// naming its volume, exit code the first non-zero one; bad input in the
// lists unmounts nothing.
func TestUnmountOfSeveralVolumes(t *testing.T) {
	requireHostTools(t)
	const volA, volB = "vol-0a0b0c0d0e0f0b0a1", "vol-0a0b0c0d0e0f0b0b2"
	m := newMachine(t, "i-0b0b0b0b0b0b0b0b1")
	m.AttachLoopT(t, volumeFile(t, volA, 64*mib), volA)
	m.AttachLoopT(t, volumeFile(t, volB, 64*mib), volB)
	a := mount(t, m, volA, "a", "--format-if-blank")
	b := mount(t, m, volB, "b", "--format-if-blank")
	both := func(want bool) {
		t.Helper()
		for _, mp := range []string{a.Mountpoint, b.Mountpoint} {
			if _, ok := mountedAt(t, m, mp); ok != want {
				t.Fatalf("%s mounted: %v, want %v", mp, ok, want)
			}
		}
	}
	ids := volA + agentproto.ListSep + volB

	// Bad input unmounts nothing: one line naming no volume, exit 2.
	for _, args := range [][]string{
		{"--volume-id", ids, "--name", "a"},
		{"--volume-id", ids, "--name", "a,b", "--attachment", "i-1:1"},
		{"--volume-id", volA + "," + volA, "--name", "a,b"},
		{"--volume-id", ids, "--name", "a,a"},
		{"--volume-id", ids, "--name", "a,../b"},
	} {
		r := agent(t, m, append([]string{"unmount", "--json"}, args...)...)
		if f := failure(t, r); r.code != agentproto.ExitBadInput || f.Class != agentproto.ClassBadInput || f.VolumeID != "" {
			t.Errorf("unmount %q: exit %d, %+v; want one bad-input line naming no volume", args, r.code, f)
		}
	}
	both(true)

	// Both free: both released, two result lines, the kernel agrees.
	r := agent(t, m, "unmount", "--volume-id", ids, "--name", "a,b", "--attachment", "i-0b0b0b0b0b0b0b0b1:1,i-0b0b0b0b0b0b0b0b1:2", "--json")
	outs := batchLines(t, r)
	if r.code != 0 || len(outs) != 2 {
		t.Fatalf("unmount of both: exit %d, %d lines; want 0, two", r.code, len(outs))
	}
	for i, want := range []struct{ vol, name, attachment string }{{volA, "a", "i-0b0b0b0b0b0b0b0b1:1"}, {volB, "b", "i-0b0b0b0b0b0b0b0b1:2"}} {
		if u, ok := outs[i].Unmount(); !ok || u.VolumeID != want.vol || u.Name != want.name || u.Attachment != want.attachment ||
			!u.WasMounted || !u.Released || u.Generation != 1 {
			t.Errorf("line %d = %s; want %s released, generation 1", i+1, outs[i].Raw, want.vol)
		}
		if len(logsFor(t, r, want.vol)) == 0 {
			t.Errorf("no log line names %s: %s", want.vol, r.stderr)
		}
	}
	both(false)

	// A busy volume (a process has a file open in it) does not stop the
	// next one; it is the exit code, and its line names it.
	a = mount(t, m, volA, "a")
	mount(t, m, volB, "b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	holder := m.Command(ctx, "sh", "-c", "exec 3>"+a.Mountpoint+"/open; exec sleep 600")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	holderDone := make(chan struct{})
	go func() { _ = holder.Wait(); close(holderDone) }()
	defer func() { cancel(); <-holderDone }()
	eventually(t, "the file to be open", func() bool {
		_, err := os.Stat(m.Path(a.Mountpoint + "/open"))
		return err == nil
	})
	r = agent(t, m, "unmount", "--volume-id", ids, "--name", "a,b", "--json")
	outs = batchLines(t, r)
	if r.code != agentproto.ExitBusy || len(outs) != 2 {
		t.Fatalf("unmount of a busy and a free volume: exit %d, %d lines; want %d, two", r.code, len(outs), agentproto.ExitBusy)
	}
	if f := outs[0].Error; f == nil || f.VolumeID != volA || f.Class != agentproto.ClassBusy || f.ExitCode != agentproto.ExitBusy || len(f.Holders) == 0 {
		t.Errorf("line 1 = %s; want the busy failure naming %s and its holder", outs[0].Raw, volA)
	}
	if u, ok := outs[1].Unmount(); !ok || u.VolumeID != volB || !u.Released || u.Generation != 2 {
		t.Errorf("line 2 = %s; want %s released, generation 2", outs[1].Raw, volB)
	}
	if out, ok := agentproto.ParseOutputFor(r.stdout, volA); !ok || out.Error == nil {
		t.Errorf("ParseOutputFor(%s) = %s, %v; want its failure", volA, out.Raw, ok)
	}
	failed := false
	for _, l := range logsFor(t, r, volA) {
		failed = failed || (l["msg"] == "unmount failed" && l["volume"] == "a" && l["class"] == string(agentproto.ClassBusy))
	}
	if !failed {
		t.Errorf("no \"unmount failed\" log line names %s: %s", volA, r.stderr)
	}
	if _, ok := mountedAt(t, m, a.Mountpoint); !ok {
		t.Errorf("the busy volume was unmounted")
	}
	if _, ok := mountedAt(t, m, b.Mountpoint); ok {
		t.Errorf("the free volume is still mounted")
	}
}
