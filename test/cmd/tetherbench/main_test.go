package main

import (
	"io"
	"testing"
)

func TestParseFlags(t *testing.T) {
	t.Setenv("BENCH_OUT", "/tmp/bench.json")
	o, err := parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.out != "/tmp/bench.json" || o.concurrent != 200 || o.instances != 20 || o.hosts != "auto" || o.handoffs < 3 {
		t.Errorf("defaults %+v", o)
	}
	o, err = parse([]string{"-skip", "agent, functions", "-hosts", "fake"}, io.Discard)
	if err != nil || !o.skip["agent"] || !o.skip["functions"] || o.skip["single"] {
		t.Errorf("skip parsed as %v (%v)", o.skip, err)
	}
	for _, bad := range [][]string{{"-skip", "everything"}, {"-hosts", "cloud"}, {"-instances", "3"}, {"-handoffs", "0"}} {
		if _, err := parse(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
