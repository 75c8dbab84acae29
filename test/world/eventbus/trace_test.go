package eventbus

import "testing"

func TestParseTraceHeader(t *testing.T) {
	for _, c := range []struct {
		in    string
		ok    bool
		hops  int
		again string // String() of the parse
	}{
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=15:a87bd80c:0", true, 15,
			"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=15:a87bd80c:0"},
		{"Root=1-5759e988-bd862e3fe1be46a994272793", true, 0, "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0"},
		// aws-sdk-go-v2's recursion detection percent-encodes what it does not allow
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0;Lineage=3:a87bd80c:0;Self=a%2Fb", true, 3,
			"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0;Lineage=3:a87bd80c:0"},
		// malformed lineages are dropped (OpenTelemetry's validation)
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=a87bd80c:3", true, 0, ""},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=40000:a87bd80c:0", true, 0, ""},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=3:a87bd80z:0", true, 0, ""},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=3:a87bd80c:256", true, 0, ""},
		{"Parent=53995c3f42cd8ad8;Sampled=1", false, 0, ""},
		{"", false, 0, ""},
	} {
		h, ok := parseTraceHeader(c.in)
		if ok != c.ok || h.hops != c.hops || (c.again != "" && h.String() != c.again) {
			t.Errorf("parseTraceHeader(%q) = %+v, %v (%s); want ok %v, %d hops, %q", c.in, h, ok, h.String(), c.ok, c.hops, c.again)
		}
	}
	next := invocationTrace(traceHeader{}, "1-00000001-000000000000000000000001", "0000000000000001", "f")
	if next.hops != 1 || next.String() != "Root=1-00000001-000000000000000000000001;Parent=0000000000000001;Sampled=0;Lineage=1:"+lineageHash("f")+":0" {
		t.Errorf("a new chain's first invocation: %s", next)
	}
	if h, ok := parseTraceHeader(next.String()); !ok || h.hops != 1 {
		t.Errorf("the world cannot read its own header %s: %+v", next, h)
	}
}
