package agentproto

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseOutputTakesTheLastJSONLine(t *testing.T) {
	stdout := "some shell noise\n" +
		`{"volumeId":"vol-0123456789abcdef0","name":"db","generation":3}` + "\n" +
		`{"error":{"exitCode":6,"class":"not-formatted","message":"device reads blank, no grant","found":"nothing"}}` + "\n"
	out, ok := ParseOutput(stdout)
	if !ok || out.Error == nil {
		t.Fatalf("ParseOutput = %+v, %v; want the failure line", out, ok)
	}
	if out.Error.ExitCode != ExitNotFormatted || out.Error.Class != ClassNotFormatted {
		t.Fatalf("failure = %+v", out.Error)
	}
	if _, ok := out.Mount(); ok {
		t.Fatal("a failure decoded as a mount result")
	}
}

func TestParseOutputMountAndUnmount(t *testing.T) {
	out, ok := ParseOutput(`{"volumeId":"vol-0123456789abcdef0","name":"db","device":"/dev/nvme1n1","formatted":true,"generation":1}`)
	m, mok := out.Mount()
	if !ok || !mok || !m.Formatted || m.Generation != 1 {
		t.Fatalf("mount = %+v (%v, %v)", m, ok, mok)
	}
	out, _ = ParseOutput(`{"volumeId":"vol-0123456789abcdef0","name":"db","wasMounted":true,"released":true,"generation":1}`)
	u, uok := out.Unmount()
	if !uok || !u.Released || u.Generation != 1 {
		t.Fatalf("unmount = %+v (%v)", u, uok)
	}
	if _, ok := ParseOutput("no json here\n"); ok {
		t.Fatal("ParseOutput found JSON in plain text")
	}
}

func TestClassesAndPermanence(t *testing.T) {
	for code, want := range map[int]Class{0: ClassOK, 3: ClassBusy, 6: ClassNotFormatted, 9: ClassRetryable, 127: ClassFailed, -1: ClassFailed} {
		if got := ClassOf(code); got != want {
			t.Errorf("ClassOf(%d) = %q, want %q", code, got, want)
		}
	}
	for _, code := range []int{ExitBadInput, ExitRefused, ExitNotFormatted, ExitNeedsRepair, ExitConflict} {
		if !Permanent(code) {
			t.Errorf("exit %d not permanent", code)
		}
	}
	for _, code := range []int{ExitOK, ExitFailed, ExitBusy, ExitNoDevice, ExitRetryable} {
		if Permanent(code) {
			t.Errorf("exit %d permanent", code)
		}
	}
	if err := ValidateAttachment(AttachmentToken("i-0123456789abcdef0", 1733456789123)); err != nil {
		t.Fatal(err)
	}
	if err := ValidateAttachment("i-1;rm -rf /"); err == nil {
		t.Fatal("ValidateAttachment took a shell metacharacter")
	}
}

// Mount results and failures name their agent, so the reconciler learns an
// instance's protocol from the mount it sends anyway; lines of an older
// agent name none.
func TestOutputNamesItsAgent(t *testing.T) {
	for line, want := range map[string]Agent{
		`{"volumeId":"vol-0123456789abcdef0","name":"db","generation":1,"agentVersion":"v0.4.0","protocol":2}`:                                {AgentVersion: "v0.4.0", Protocol: 2},
		`{"error":{"exitCode":2,"class":"bad-input","message":"flag provided but not defined: -grant","agentVersion":"v0.9.0","protocol":3}}`: {AgentVersion: "v0.9.0", Protocol: 3},
		`{"volumeId":"vol-0123456789abcdef0","name":"db","generation":1}`:                                                                     {},
	} {
		out, ok := ParseOutput(line)
		if !ok {
			t.Fatalf("ParseOutput(%s) failed", line)
		}
		if got := out.AgentOf(); got != want || got.Reported() != (want.Protocol != 0) {
			t.Errorf("AgentOf(%s) = %+v, want %+v", line, got, want)
		}
	}
	m := MountResult{VolumeID: "vol-0123456789abcdef0", Name: "db", Agent: ThisAgent("v1.0.0")}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"agentVersion":"v1.0.0","protocol":2`) {
		t.Fatalf("MountResult's JSON %s lacks the agent's fields at its top level", b)
	}
}
