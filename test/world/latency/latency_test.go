package latency

import (
	"math"
	"testing"
	"time"
)

func TestInstantIsZero(t *testing.T) {
	s := NewSampler(Instant(), 1)
	for _, op := range Ops() {
		if d := s.Sample(op); d != 0 {
			t.Errorf("instant %s = %v, want 0", op, d)
		}
		if m := Instant().Mean(op); m != 0 {
			t.Errorf("instant mean %s = %v, want 0", op, m)
		}
	}
}

func TestRealisticMatchesPublishedFigures(t *testing.T) {
	p := Realistic()
	// The means the benchmarks rely on, within 5% of the observed figures.
	for op, want := range map[Op]time.Duration{
		AttachVolume: 3900 * time.Millisecond, // 3.7-4.1 s observed
		DetachVolume: 8 * time.Second,
	} {
		got := p.Mean(op)
		if math.Abs(float64(got-want))/float64(want) > 0.05 {
			t.Errorf("mean %s = %v, want ~%v", op, got, want)
		}
	}
	// Empirical median and p99 of a seeded sample match the distribution.
	s := NewSampler(p, 42)
	const n = 20000
	var below, belowP99 int
	for range n {
		d := s.Sample(CreateVolume)
		if d <= 1500*time.Millisecond {
			below++
		}
		if d <= 4*time.Second {
			belowP99++
		}
	}
	if f := float64(below) / n; math.Abs(f-0.5) > 0.02 {
		t.Errorf("CreateVolume: %.3f of samples under the median, want 0.5", f)
	}
	if f := float64(belowP99) / n; math.Abs(f-0.99) > 0.005 {
		t.Errorf("CreateVolume: %.3f of samples under p99, want 0.99", f)
	}
}

func TestSamplesAreSeededAndCapped(t *testing.T) {
	a, b := NewSampler(Realistic(), 7), NewSampler(Realistic(), 7)
	for range 1000 {
		x, y := a.Sample(DetachVolume), b.Sample(DetachVolume)
		if x != y {
			t.Fatalf("same seed, different samples: %v vs %v", x, y)
		}
		if x <= 0 || x > 60*time.Second {
			t.Fatalf("sample %v outside (0, 3 x p99]", x)
		}
	}
}

func TestParseAndScale(t *testing.T) {
	p, err := Parse("realistic*0.1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "realistic*0.1" {
		t.Errorf("name %q", p.Name)
	}
	got, want := p.Mean(AttachVolume), Realistic().Mean(AttachVolume)/10
	if d := got - want; d > time.Millisecond || d < -time.Millisecond {
		t.Errorf("scaled attach mean %v, want %v", got, want)
	}
	if _, err := Parse("instant"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", "slow", "realistic*0", "realistic*-1", "realistic*x", "realistic*NaN"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if m := Realistic().Means(); len(m) != len(Ops()) || m[SSMDelivery] <= 0 {
		t.Errorf("Means() = %v", m)
	}
}
