package main

import (
	"io"
	"slices"
	"testing"
)

func TestParseFlags(t *testing.T) {
	t.Setenv("BENCH_OUT", "/tmp/bench.json")
	o, err := parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.out != "/tmp/bench.json" || o.concurrent != 200 || o.instances != 20 || o.hosts != "auto" || o.handoffs < 3 || o.eventHandoffs < 3 || o.scalingHandoffs < 1 || o.hostHandoffs < 1 || o.grows < 1 {
		t.Errorf("defaults %+v", o)
	}
	// The ECS scaling keys name 10 and 500 unrelated tasks.
	if !slices.Equal(o.unrelated, []int{10, 500}) {
		t.Errorf("unrelated %v, want [10 500]", o.unrelated)
	}
	if !slices.Equal(o.azMoves, []int{1, 2, 4}) {
		t.Errorf("azmove sizes %v, want [1 2 4]", o.azMoves)
	}
	o, err = parse([]string{"-skip", "agent, functions,scaling,hosts,grow,azmove", "-hosts", "fake", "-unrelated", "5, 50", "-host-handoffs", "2"}, io.Discard)
	if err != nil || !o.skip["agent"] || !o.skip["functions"] || !o.skip["scaling"] || !o.skip["hosts"] || !o.skip["grow"] || !o.skip["azmove"] || o.skip["single"] || !slices.Equal(o.unrelated, []int{5, 50}) || o.hostHandoffs != 2 {
		t.Errorf("parsed as skip %v, unrelated %v (%v)", o.skip, o.unrelated, err)
	}
	for _, bad := range [][]string{{"-skip", "everything"}, {"-hosts", "cloud"}, {"-instances", "3"}, {"-handoffs", "0"},
		{"-event-handoffs", "0"}, {"-host-handoffs", "0"}, {"-grows", "0"}, {"-unrelated", "500,10"}, {"-unrelated", "ten"},
		{"-azmove-sizes", "0"}, {"-azmove-sizes", "one"}} {
		if _, err := parse(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
