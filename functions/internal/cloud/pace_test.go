package cloud

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

// The pacer lets a burst through, then one call per refill; a call that
// would wait longer than maxWait is refused at once; a throttle from AWS
// empties the bucket (one second into debt); unpaced actions pass.
func TestPacerTokenBucket(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	var slept []time.Duration
	p := newPacer(map[string]Limit{"AttachVolume": {Burst: 2, Rate: 4}}, func() time.Time { return now }, time.Second)
	p.sleep = func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		now = now.Add(d)
		return nil
	}
	ctx := context.Background()
	for range 2 {
		if err := p.take(ctx, "AttachVolume"); err != nil {
			t.Fatal(err)
		}
	}
	if len(slept) != 0 {
		t.Fatalf("the burst waited: %v", slept)
	}
	if err := p.take(ctx, "AttachVolume"); err != nil || len(slept) != 1 || slept[0] != 250*time.Millisecond {
		t.Fatalf("third call: %v, slept %v (want one refill, 250ms)", err, slept)
	}
	p.throttled("AttachVolume") // rate 2.8 per second, 3 tokens owed: 1.4 s to the next one
	if err := p.take(ctx, "AttachVolume"); !errors.Is(err, ErrThrottled) || len(slept) != 1 {
		t.Fatalf("after a throttle: %v, slept %v (want refused without waiting)", err, slept)
	}
	now = now.Add(500 * time.Millisecond)
	// Tokens owed at a rate cut (and growing back): longer than the
	// documented refill's 750ms, within maxWait.
	if err := p.take(ctx, "AttachVolume"); err != nil || len(slept) != 2 || slept[1] <= 750*time.Millisecond || slept[1] > time.Second {
		t.Fatalf("half a second later: %v, slept %v (want a wait past 750ms, the slowed refill)", err, slept)
	}
	if err := p.take(ctx, "DescribeVolumes"); err != nil || len(slept) != 2 {
		t.Fatalf("an unpaced action: %v, slept %v", err, slept)
	}
	var none *pacer
	if err := none.take(ctx, "AttachVolume"); err != nil {
		t.Fatalf("no pacer: %v", err)
	}
	none.throttled("AttachVolume")
}

// A yielding call takes a token only while more than half the burst is
// left, and never waits; the calls that do not yield take the rest. After
// a throttle, the yielding ones wait for the bucket to refill past half.
func TestPacerYieldingCallsLeaveHalfTheBurst(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	p := newPacer(map[string]Limit{"SendCommand": {Burst: 10, Rate: 5}}, func() time.Time { return now }, time.Second)
	p.sleep = func(_ context.Context, d time.Duration) error { now = now.Add(d); return nil }
	ctx, yielding := context.Background(), Yield(context.Background())
	sent := 0
	for p.take(yielding, "SendCommand") == nil {
		sent++
		if sent > 10 {
			t.Fatal("yielding calls emptied the bucket")
		}
	}
	if sent != 5 {
		t.Fatalf("yielding calls took %d of 10 tokens, want 5 (they leave half)", sent)
	}
	for i := range 5 {
		if err := p.take(ctx, "SendCommand"); err != nil {
			t.Fatalf("call %d that does not yield: %v (half the burst was left for it)", i, err)
		}
	}
	p.throttled("SendCommand")
	now = now.Add(time.Second + 200*time.Millisecond) // out of debt, one token
	if err := p.take(yielding, "SendCommand"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("yielding call right after a throttle: %v, want ErrThrottled", err)
	}
	if err := p.take(ctx, "SendCommand"); err != nil {
		t.Fatalf("call that does not yield right after the debt: %v", err)
	}
	now = now.Add(100 * time.Millisecond) // the rate is still growing back, the burst one call
	if err := p.take(yielding, "SendCommand"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("yielding call while the bucket is slowed: %v, want ErrThrottled", err)
	}
	now = now.Add(10 * time.Second) // back at the documented rate, and refilled
	if err := p.take(yielding, "SendCommand"); err != nil {
		t.Fatalf("yielding call once the bucket refilled: %v", err)
	}
}

// Each refusal from AWS cuts the action's rate on the client by 30%, down
// to an eighth of the documented one, and its burst to one call; the rate
// grows back by a fifth of the documented one per second, and the burst
// returns with the documented rate.
func TestPacerSlowsDownWhenAWSRefusesAndRecovers(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	p := newPacer(map[string]Limit{"DetachVolume": {Burst: 10, Rate: 4}}, func() time.Time { return now }, time.Minute)
	p.sleep = func(_ context.Context, d time.Duration) error { now = now.Add(d); return nil }
	b := p.buckets["DetachVolume"]
	for i, want := range []float64{2.8, 1.96, 1.372, 0.9604, 0.67228, 0.5, 0.5} {
		p.throttled("DetachVolume")
		if got := float64(b.Limit()); math.Abs(got-want) > 1e-9 || b.Burst() != 1 {
			t.Fatalf("after refusal %d: rate %v burst %d, want %v and 1", i+1, got, b.Burst(), want)
		}
	}
	now = now.Add(2 * time.Second)
	if err := p.take(context.Background(), "DetachVolume"); err != nil {
		t.Fatal(err)
	}
	if got := float64(b.Limit()); got < 2.1 || got > 2.2 || b.Burst() != 1 {
		t.Fatalf("2 s later: rate %v burst %d, want about 2.1 (0.5 + 0.8 a second) and 1", got, b.Burst())
	}
	now = now.Add(10 * time.Second)
	calls := 0
	for ; calls < 20; calls++ {
		before := now
		if err := p.take(context.Background(), "DetachVolume"); err != nil {
			t.Fatal(err)
		}
		if now.After(before) {
			break // waited: the burst is spent
		}
	}
	if float64(b.Limit()) != 4 || b.Burst() != 10 || calls != 10 {
		t.Fatalf("10 s later: rate %v burst %d, %d calls at once; want 4, 10 and 10 (the documented bucket, refilled)", b.Limit(), b.Burst(), calls)
	}
}
