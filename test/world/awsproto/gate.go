package awsproto

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Bucket is one token bucket of an AWS request-rate limit: Size tokens at
// most, Refill tokens added per second. Each call takes one token.
type Bucket struct {
	Size   float64
	Refill float64
}

// GateConfig sets up a Gate.
type GateConfig struct {
	// Limits maps a bucket name (usually the action) to its bucket. A call
	// whose bucket has no entry is never throttled.
	Limits map[string]Bucket
	// Throttle makes the service's throttling error (EC2:
	// RequestLimitExceeded, SSM: ThrottlingException).
	Throttle func() *Error
	// Seed drives the random faults of SetErrorRate.
	Seed uint64
	// Now is the clock the buckets refill by (time.Now if nil).
	Now func() time.Time
}

// GateCounts is what a Gate has seen, per action.
type GateCounts struct {
	Calls     map[string]int // every call, admitted or not
	Throttled map[string]int // refused by a bucket or by ThrottleNext
	Injected  map[string]int // answered by FailNext or SetErrorRate
}

type scripted struct {
	left      int
	err       *Error
	throttled bool
}

type errorRate struct {
	p   float64
	err *Error
}

type tokens struct {
	n    float64
	last time.Time
}

// Gate stands before a simulator's handlers: it counts calls, answers the
// faults a test scripted, and applies request-rate limits with token
// buckets. Safe for concurrent use.
type Gate struct {
	mu      sync.Mutex
	cfg     GateConfig
	enabled bool
	limits  map[string]Bucket
	tokens  map[string]*tokens
	script  map[string][]*scripted
	rates   map[string]errorRate
	rng     *rand.Rand
	counts  GateCounts
}

// NewGate returns a gate with throttling enabled.
func NewGate(cfg GateConfig) *Gate {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Throttle == nil {
		cfg.Throttle = Throttled
	}
	g := &Gate{
		cfg: cfg, enabled: true, limits: map[string]Bucket{}, tokens: map[string]*tokens{},
		script: map[string][]*scripted{}, rates: map[string]errorRate{},
		rng:    rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5851f42d4c957f2d)),
		counts: GateCounts{Calls: map[string]int{}, Throttled: map[string]int{}, Injected: map[string]int{}},
	}
	for k, b := range cfg.Limits {
		g.limits[k] = b
	}
	return g
}

// Admit is called once per request, before the handler: action is the API
// action, bucket the name of the token bucket the request draws from
// (actions whose limit depends on the request, like EC2's filtered vs
// unfiltered DescribeVolumes, pick the bucket). A non-nil answer is the
// error to return instead of running the handler.
func (g *Gate) Admit(action, bucket string) *Error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.counts.Calls[action]++
	if q := g.script[action]; len(q) > 0 {
		f := q[0]
		f.left--
		if f.left <= 0 {
			g.script[action] = q[1:]
		}
		if f.throttled {
			g.counts.Throttled[action]++
		} else {
			g.counts.Injected[action]++
		}
		return f.err
	}
	if r, ok := g.rates[action]; ok && g.rng.Float64() < r.p {
		g.counts.Injected[action]++
		return r.err
	}
	if !g.enabled {
		return nil
	}
	b, ok := g.limits[bucket]
	if !ok {
		return nil
	}
	now := g.cfg.Now()
	t := g.tokens[bucket]
	if t == nil {
		t = &tokens{n: b.Size, last: now}
		g.tokens[bucket] = t
	}
	t.n = min(b.Size, t.n+now.Sub(t.last).Seconds()*b.Refill)
	t.last = now
	if t.n < 1 {
		g.counts.Throttled[action]++
		return g.cfg.Throttle()
	}
	t.n--
	return nil
}

// SetThrottling turns the token buckets on or off (scripted faults still
// apply). Turning them on starts every bucket full.
func (g *Gate) SetThrottling(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.enabled = on
	g.tokens = map[string]*tokens{}
}

// SetLimit replaces one bucket's limit (and refills it).
func (g *Gate) SetLimit(bucket string, b Bucket) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.limits[bucket] = b
	delete(g.tokens, bucket)
}

// Limits returns a copy of the buckets in force.
func (g *Gate) Limits() map[string]Bucket {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]Bucket, len(g.limits))
	for k, v := range g.limits {
		out[k] = v
	}
	return out
}

// FailNext answers the next n calls of action with err.
func (g *Gate) FailNext(action string, n int, err *Error) {
	g.push(action, &scripted{left: n, err: err})
}

// ThrottleNext answers the next n calls of action with the throttling
// error, as if its bucket were empty.
func (g *Gate) ThrottleNext(action string, n int) {
	g.push(action, &scripted{left: n, err: g.cfg.Throttle(), throttled: true})
}

func (g *Gate) push(action string, f *scripted) {
	if f.left <= 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.script[action] = append(g.script[action], f)
}

// SetErrorRate answers each call of action with err with probability p
// (drawn from the gate's seeded source); p <= 0 removes it.
func (g *Gate) SetErrorRate(action string, p float64, err *Error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p <= 0 {
		delete(g.rates, action)
		return
	}
	g.rates[action] = errorRate{p: p, err: err}
}

// Counts returns a copy of the counters.
func (g *Gate) Counts() GateCounts {
	g.mu.Lock()
	defer g.mu.Unlock()
	cp := func(m map[string]int) map[string]int {
		out := make(map[string]int, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	return GateCounts{Calls: cp(g.counts.Calls), Throttled: cp(g.counts.Throttled), Injected: cp(g.counts.Injected)}
}

// Controls are the test controls a simulator offers over its Gate. A
// Server embeds them, so a test calls srv.FailNext(...) or srv.Counts()
// directly.
type Controls struct{ gate *Gate }

// ControlsOf returns the controls of g.
func ControlsOf(g *Gate) Controls { return Controls{gate: g} }

// Gate is the gate itself (limits, and what Controls do not forward).
func (c Controls) Gate() *Gate { return c.gate }

// Counts returns calls, throttled calls and injected errors per action.
func (c Controls) Counts() GateCounts { return c.gate.Counts() }

// SetThrottling turns the service's request-rate limits on (the default)
// or off.
func (c Controls) SetThrottling(on bool) { c.gate.SetThrottling(on) }

// FailNext answers the next n calls of action with err (code and message
// as the caller gives them).
func (c Controls) FailNext(action string, n int, err *Error) { c.gate.FailNext(action, n, err) }

// ThrottleNext answers the next n calls of action with the service's
// throttling error (EC2: RequestLimitExceeded, SSM: ThrottlingException).
func (c Controls) ThrottleNext(action string, n int) { c.gate.ThrottleNext(action, n) }

// SetErrorRate answers each call of action with err with probability p,
// drawn from the gate's seeded source (chaos runs); p <= 0 removes it.
func (c Controls) SetErrorRate(action string, p float64, err *Error) {
	c.gate.SetErrorRate(action, p, err)
}
