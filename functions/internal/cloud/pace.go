package cloud

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
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
		// ModifyVolume has no bucket of its own: EC2's "mutating actions"
		// category (EC2 developer guide, "Request throttling").
		"ModifyVolume": {Burst: 50, Rate: 5},
		// CreateSnapshot: EC2's "mutating actions" category, as ModifyVolume.
		"CreateSnapshot": {Burst: 50, Rate: 5},
		"DeleteSnapshot": {Burst: 50, Rate: 5},
		"SendCommand":    {Burst: 50, Rate: 5},
	}
}

// pacer paces tether's writes on the client side, one token bucket per
// action (golang.org/x/time/rate), so a process never asks faster than AWS
// refills: a burst beyond the bucket waits (briefly) here instead of being
// refused there, and a refusal empties the bucket here too, so the process
// backs off instead of spending the account's next tokens on retries. AWS's
// buckets are shared by every process of the account; these are per
// process, an upper bound.
type pacer struct {
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error
	maxWait time.Duration

	mu      sync.Mutex // a take's reserve-or-cancel and a throttle's draining are one step each
	buckets map[string]*rate.Limiter
}

func newPacer(limits map[string]Limit, now func() time.Time, maxWait time.Duration) *pacer {
	if len(limits) == 0 {
		return nil
	}
	p := &pacer{now: now, sleep: sleepCtx, maxWait: maxWait, buckets: map[string]*rate.Limiter{}}
	for action, l := range limits {
		if l.Rate > 0 && l.Burst > 0 {
			p.buckets[action] = rate.NewLimiter(rate.Limit(l.Rate), l.Burst)
		}
	}
	return p
}

// take gets a token for one call of action, waiting for it if that takes
// at most maxWait; a longer wait is ErrThrottled at once, without calling
// AWS (the pass hands its key back to try later). A call that yields
// (Yield) takes a token only while the bucket holds more than half its
// burst, and never waits: the rest is kept for the calls that finish work.
func (p *pacer) take(ctx context.Context, action string) error {
	if p == nil {
		return nil
	}
	b := p.buckets[action]
	if b == nil {
		return nil
	}
	p.mu.Lock()
	now := p.now()
	if Yields(ctx) {
		if left := b.TokensAt(now); left < float64(b.Burst())/2+1 {
			p.mu.Unlock()
			return fmt.Errorf("%w: %s yields to calls that finish work (%.0f of %d tokens left on the client)", ErrThrottled, action, max(left, 0), b.Burst())
		}
	}
	r := b.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	if wait > p.maxWait {
		r.CancelAt(now)
		p.mu.Unlock()
		return fmt.Errorf("%w: %s paced on the client (next token in %s)", ErrThrottled, action, wait.Round(time.Millisecond))
	}
	p.mu.Unlock()
	if wait > 0 {
		if err := p.sleep(ctx, wait); err != nil {
			r.CancelAt(p.now())
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
	b := p.buckets[action]
	if b == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	debt := int(math.Ceil(max(b.TokensAt(now), 0))) + int(math.Ceil(float64(b.Limit())))
	for range debt {
		b.ReserveN(now, 1) // reservations are never cancelled: tokens owed
	}
}

type yieldKey struct{}

// Yield marks ctx's paced calls as ones that start work rather than finish
// it: when a bucket both share runs low, they give way. tether's unmounts
// yield to its mounts: both take SSM's SendCommand tokens, and in a mass
// handoff a mount is the last step of a handoff while an unmount is the
// first (the mount of a volume unmounted earlier is worth more to a
// handoff's end than the unmount of one more volume).
func Yield(ctx context.Context) context.Context { return context.WithValue(ctx, yieldKey{}, true) }

// Yields reports whether ctx was marked by Yield.
func Yields(ctx context.Context) bool { y, _ := ctx.Value(yieldKey{}).(bool); return y }

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
