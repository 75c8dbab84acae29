package awsproto

import (
	"testing"
	"time"
)

func TestGateBucketRefillsByClock(t *testing.T) {
	now := time.Unix(1000, 0)
	g := NewGate(GateConfig{Limits: map[string]Bucket{"Op": {Size: 2, Refill: 1}}, Now: func() time.Time { return now }})
	for i := range 2 {
		if err := g.Admit("Op", "Op"); err != nil {
			t.Fatalf("call %d throttled: %v", i, err)
		}
	}
	if err := g.Admit("Op", "Op"); err == nil || err.Code != "RequestLimitExceeded" {
		t.Fatalf("third call: %v, want RequestLimitExceeded", err)
	}
	now = now.Add(time.Second)
	if err := g.Admit("Op", "Op"); err != nil {
		t.Fatalf("after one second's refill: %v", err)
	}
	if err := g.Admit("Other", "Other"); err != nil {
		t.Fatalf("action without a bucket throttled: %v", err)
	}
	g.SetThrottling(false)
	for range 10 {
		if err := g.Admit("Op", "Op"); err != nil {
			t.Fatalf("throttling off: %v", err)
		}
	}
	c := g.Counts()
	if c.Calls["Op"] != 14 || c.Throttled["Op"] != 1 {
		t.Errorf("counts %+v", c)
	}
}

func TestGateScriptedFaults(t *testing.T) {
	g := NewGate(GateConfig{})
	g.FailNext("Op", 2, BadRequest("Boom", "x"))
	g.ThrottleNext("Op", 1)
	want := []string{"Boom", "Boom", "RequestLimitExceeded", ""}
	for i, w := range want {
		err := g.Admit("Op", "Op")
		got := ""
		if err != nil {
			got = err.Code
		}
		if got != w {
			t.Errorf("call %d: %q, want %q", i, got, w)
		}
	}
	c := g.Counts()
	if c.Injected["Op"] != 2 || c.Throttled["Op"] != 1 {
		t.Errorf("counts %+v", c)
	}
	g.SetErrorRate("Op", 1, BadRequest("Always", "x"))
	if err := g.Admit("Op", "Op"); err == nil || err.Code != "Always" {
		t.Errorf("rate 1: %v", err)
	}
	g.SetErrorRate("Op", 0, nil)
	if err := g.Admit("Op", "Op"); err != nil {
		t.Errorf("rate removed: %v", err)
	}
}

// Controls forward to the gate a simulator admits its calls through.
func TestControlsDriveTheGate(t *testing.T) {
	now := time.Unix(1000, 0)
	g := NewGate(GateConfig{Limits: map[string]Bucket{"Op": {Size: 1, Refill: 0}}, Now: func() time.Time { return now }})
	c := ControlsOf(g)
	if c.Gate() != g {
		t.Fatal("Gate() is not the gate")
	}
	c.FailNext("Op", 1, BadRequest("Boom", "injected"))
	c.ThrottleNext("Op", 1)
	c.SetErrorRate("Other", 1, BadRequest("Flaky", "injected"))
	c.SetThrottling(false)
	for i, want := range []string{"Boom", "RequestLimitExceeded", "", ""} {
		got := ""
		if err := g.Admit("Op", "Op"); err != nil {
			got = err.Code
		}
		if got != want {
			t.Errorf("Op call %d: %q, want %q", i, got, want)
		}
	}
	if err := g.Admit("Other", "Other"); err == nil || err.Code != "Flaky" {
		t.Errorf("Other: %v, want Flaky", err)
	}
	if n := c.Counts(); n.Calls["Op"] != 4 || n.Injected["Op"] != 1 || n.Throttled["Op"] != 1 || n.Injected["Other"] != 1 {
		t.Errorf("counts %+v", n)
	}
}
