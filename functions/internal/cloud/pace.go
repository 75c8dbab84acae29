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
//
// AWS's buckets are shared, so a process that is refused slows down: each
// refusal cuts its rate for that action by 30% (down to an eighth of the
// documented one) and its burst to one call; the rate then grows back by a
// fifth of the documented one per second, and the burst returns with it
// (additive increase, multiplicative decrease, as TCP and the SDK's
// adaptive retryer do). Five processes asking a 5-per-second bucket at 5
// per second each get four refusals in five; slowed, they share it.
type pacer struct {
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error
	maxWait time.Duration

	mu      sync.Mutex // a take's reserve-or-cancel and a throttle's draining are one step each
	buckets map[string]*bucket
}

// bucket is one action's limiter and the documented bucket it slows from.
type bucket struct {
	*rate.Limiter
	documented Limit
	slowedAt   time.Time // the rate's last change below the documented one; zero at full rate
}

const (
	slowdown         = 0.7 // a refusal multiplies the action's rate by this
	slowestShare     = 8   // down to documented/8 at the least
	recoverPerSecond = 0.2 // and it grows back by this share of the documented rate per second
)

// recover grows a slowed bucket's rate back (callers hold p.mu). Once it
// reaches the documented rate, the documented burst returns, and tokens
// refill from that moment.
func (b *bucket) recover(now time.Time) {
	if b.slowedAt.IsZero() || !now.After(b.slowedAt) {
		return
	}
	step := b.documented.Rate * recoverPerSecond
	if r := float64(b.Limit()) + step*now.Sub(b.slowedAt).Seconds(); r < b.documented.Rate {
		b.SetLimitAt(now, rate.Limit(r))
		b.slowedAt = now
		return
	}
	full := b.slowedAt.Add(time.Duration((b.documented.Rate - float64(b.Limit())) / step * float64(time.Second)))
	b.SetLimitAt(full, rate.Limit(b.documented.Rate))
	b.SetBurstAt(full, b.documented.Burst)
	b.slowedAt = time.Time{}
}

func newPacer(limits map[string]Limit, now func() time.Time, maxWait time.Duration) *pacer {
	if len(limits) == 0 {
		return nil
	}
	p := &pacer{now: now, sleep: sleepCtx, maxWait: maxWait, buckets: map[string]*bucket{}}
	for action, l := range limits {
		if l.Rate > 0 && l.Burst > 0 {
			p.buckets[action] = &bucket{Limiter: rate.NewLimiter(rate.Limit(l.Rate), l.Burst), documented: l}
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
	b.recover(now)
	if Yields(ctx) {
		if left := b.TokensAt(now); left < float64(b.documented.Burst)/2+1 {
			p.mu.Unlock()
			return fmt.Errorf("%w: %s yields to calls that finish work (%.0f of %d tokens left on the client)", ErrThrottled, action, max(left, 0), b.documented.Burst)
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
// there is empty: empty this one too, one second (of the halved rate) into
// debt, and slow down (see pacer).
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
	b.recover(now)
	left := b.TokensAt(now)
	slowed := max(float64(b.Limit())*slowdown, b.documented.Rate/slowestShare)
	b.SetLimitAt(now, rate.Limit(slowed))
	b.SetBurstAt(now, 1)
	b.slowedAt = now
	debt := int(math.Ceil(max(left, 0))) + int(math.Ceil(slowed))
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
