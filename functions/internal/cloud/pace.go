package cloud

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Limit is one action's token bucket: Burst calls at once, refilled at Rate
// per second.
type Limit struct {
	Burst int
	Rate  float64
}

// DocumentedLimits are EC2's documented request token buckets (per account
// and Region) for the mutating actions tether calls, and the same shape
// assumed for SSM SendCommand, whose bucket AWS does not publish.
func DocumentedLimits() map[string]Limit {
	return map[string]Limit{
		"CreateVolume": {Burst: 100, Rate: 5},
		"DeleteVolume": {Burst: 100, Rate: 5},
		"AttachVolume": {Burst: 50, Rate: 5},
		"DetachVolume": {Burst: 50, Rate: 5},
		"CreateTags":   {Burst: 100, Rate: 10},
		"SendCommand":  {Burst: 50, Rate: 5},
	}
}

// pacer paces tether's writes on the client side, one token bucket per
// action, so a process never asks faster than AWS refills: a burst beyond
// the bucket waits (briefly) here instead of being refused there, and a
// refusal empties the bucket here too, so the process backs off instead of
// spending the account's next tokens on retries. AWS's buckets are shared
// by every process of the account; these are per process, an upper bound.
type pacer struct {
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error
	maxWait time.Duration

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	limit  Limit
	tokens float64
	last   time.Time
}

func newPacer(limits map[string]Limit, now func() time.Time, maxWait time.Duration) *pacer {
	if len(limits) == 0 {
		return nil
	}
	p := &pacer{now: now, sleep: sleepCtx, maxWait: maxWait, buckets: map[string]*bucket{}}
	for action, l := range limits {
		if l.Rate > 0 && l.Burst > 0 {
			p.buckets[action] = &bucket{limit: l, tokens: float64(l.Burst), last: now()}
		}
	}
	return p
}

func (b *bucket) refill(now time.Time) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(float64(b.limit.Burst), b.tokens+dt*b.limit.Rate)
	}
	b.last = now
}

// take gets a token for one call of action, waiting for it if that takes
// at most maxWait; a longer wait is ErrThrottled at once, without calling
// AWS (the pass hands its key back to try later).
func (p *pacer) take(ctx context.Context, action string) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	b := p.buckets[action]
	if b == nil {
		p.mu.Unlock()
		return nil
	}
	b.refill(p.now())
	wait := time.Duration(0)
	if b.tokens < 1 {
		wait = time.Duration((1 - b.tokens) / b.limit.Rate * float64(time.Second))
	}
	if wait > p.maxWait {
		p.mu.Unlock()
		return fmt.Errorf("%w: %s paced on the client (next token in %s)", ErrThrottled, action, wait.Round(time.Millisecond))
	}
	b.tokens-- // reserved now; the wait below only lets the refill catch up
	p.mu.Unlock()
	if wait > 0 {
		if err := p.sleep(ctx, wait); err != nil {
			p.mu.Lock()
			b.tokens++
			p.mu.Unlock()
			return err
		}
	}
	return nil
}

// throttled: AWS refused a call of action for its rate, so its bucket
// there is empty: empty this one too, one second into debt.
func (p *pacer) throttled(action string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.buckets[action]; b != nil {
		b.refill(p.now())
		b.tokens = min(b.tokens, 0) - b.limit.Rate
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
