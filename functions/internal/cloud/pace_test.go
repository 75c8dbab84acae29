package cloud

import (
	"context"
	"errors"
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
	p.throttled("AttachVolume") // 0 - 4 tokens: 1.25 s to the next one
	if err := p.take(ctx, "AttachVolume"); !errors.Is(err, ErrThrottled) || len(slept) != 1 {
		t.Fatalf("after a throttle: %v, slept %v (want refused without waiting)", err, slept)
	}
	now = now.Add(500 * time.Millisecond)
	if err := p.take(ctx, "AttachVolume"); err != nil || len(slept) != 2 || slept[1] != 750*time.Millisecond {
		t.Fatalf("half a second later: %v, slept %v (want a 750ms wait)", err, slept)
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
