package reconcile

import (
	"testing"
	"time"
)

// The first look at a detach waits for the time a quarter of the
// process's recent detaches took, each known as the middle of the last look
// that found it going on and the first that found it done; before five
// are known, DetachPoll. Later looks come when half, three quarters and
// nine tenths of them had ended, then back off by a quarter of the wait.
func TestFirstDetachLookLearnsFromRecentDetaches(t *testing.T) {
	t0 := time.UnixMilli(1_800_000_000_000)
	r := &Reconciler{mem: newMemory(), t: Timing{}.withDefaults()}
	p := &pass{r: r, now: t0}
	if d := p.detachPoll(t0); d != r.t.DetachPoll {
		t.Fatalf("first look with nothing known after %v, want DetachPoll %v", d, r.t.DetachPoll)
	}
	for i := range 8 {
		vol := "vol-" + string(rune('a'+i))
		asked := t0.Add(time.Duration(i) * time.Minute)
		// Seen going on at 7 s, done at 9 s: about 8 s.
		r.mem.noteStillDetaching(vol, asked.Add(7*time.Second))
		r.mem.detachEnded(vol, asked, asked.Add(9*time.Second))
	}
	if q, ok := r.mem.quickDetach(); !ok || q != 8*time.Second {
		t.Fatalf("a quarter of the detaches took at most %v (%v), want 8s", q, ok)
	}
	if d := p.detachPoll(t0); d != 8*time.Second {
		t.Fatalf("first look after %v, want 8s", d)
	}
	// A first look that finds it done already pulls the estimate down.
	for i := range 32 {
		asked := t0.Add(time.Hour + time.Duration(i)*time.Minute)
		r.mem.detachEnded("vol-x", asked, asked.Add(8*time.Second))
	}
	if q, _ := r.mem.quickDetach(); q != 4*time.Second {
		t.Fatalf("after detaches all done at the first look (8 s): %v, want 4s", q)
	}
	if d := p.detachPoll(t0.Add(-12 * time.Second)); d != 3*time.Second {
		t.Fatalf("a later look after %v, want a quarter of the 12 s waited", d)
	}

	// Detaches spread from 2 to 32 s: the looks follow their quarters.
	for i := range 32 {
		asked := t0.Add(2*time.Hour + time.Duration(i)*time.Minute)
		r.mem.detachEnded("vol-y", asked, asked.Add(time.Duration(4+2*i)*time.Second))
	}
	for _, c := range []struct{ waited, want time.Duration }{
		{0, 10 * time.Second},                               // a quarter: 10 s
		{10 * time.Second, 8 * time.Second},                 // half: 18 s
		{18 * time.Second, 8 * time.Second},                 // three quarters: 26 s
		{26 * time.Second, 4 * time.Second},                 // nine tenths: 30 s
		{29500 * time.Millisecond, 7375 * time.Millisecond}, // less than a second to nine tenths: a quarter of the wait
	} {
		if d := p.detachPoll(t0.Add(-c.waited)); d != c.want {
			t.Errorf("after %v waited: next look in %v, want %v", c.waited, d, c.want)
		}
	}
}
