package reconcile

import (
	"testing"
	"time"
)

// Two chains of retries of one key collapse into one: a retry gives way to
// a pass that began after the pass that scheduled it ended. One that keeps
// a count (detaching since, an operator's ask) gives way only to a chain
// that carries the same count from no later, never to a conclusion alone:
// that would move a deadline out or drop the ask.
func TestSupersededByFactsOfOrder(t *testing.T) {
	t0 := time.UnixMilli(1_800_000_000_000)
	k := Key{Cluster: "c", Volume: "v"}
	detaching := hint{Step: stepDetach, Volume: "vol-1", Instance: "i-a", Detaching: ms(t0), Pass: ms(t0.Add(time.Second))}
	plain := hint{Step: stepMount, Volume: "vol-1", Instance: "i-b", Command: "c-1", Pass: ms(t0.Add(time.Second))}

	r := &Reconciler{mem: newMemory()}
	if r.superseded(k, plain) || r.superseded(k, detaching) {
		t.Fatal("superseded with no other pass known")
	}
	// A pass that began before the chain's pass ended read AWS before that
	// pass's steps: it supersedes nothing.
	r.mem.passEnded(k, t0.Add(500*time.Millisecond))
	if r.superseded(k, plain) {
		t.Fatal("superseded by a pass that began before the chain's pass ended")
	}
	r.mem.passEnded(k, t0.Add(2*time.Second))
	if !r.superseded(k, plain) {
		t.Fatal("a plain retry not superseded by a later pass")
	}
	if r.superseded(k, detaching) {
		t.Fatal("a counting chain superseded by a conclusion alone")
	}
	// A later chain that counts from later would move the deadline out.
	later := detaching
	later.Detaching = ms(t0.Add(3 * time.Second))
	r.mem.handedBack(k, t0.Add(3*time.Second), later)
	if r.superseded(k, detaching) {
		t.Fatal("superseded by a chain that counts from later")
	}
	// Another instance's detach is another count.
	other := detaching
	other.Instance = "i-c"
	r.mem.handedBack(k, t0.Add(4*time.Second), other)
	if r.superseded(k, detaching) {
		t.Fatal("superseded by a chain about another instance")
	}
	same := detaching
	same.Step, same.Command = stepUnmount, "c-2"
	r.mem.handedBack(k, t0.Add(5*time.Second), same)
	if !r.superseded(k, detaching) {
		t.Fatal("a duplicate detaching chain not superseded by one carrying its count")
	}
	asked := detaching
	asked.Operator = "i-a@1"
	if r.superseded(k, asked) {
		t.Fatal("an operator's ask dropped for a chain that does not carry it")
	}
}
