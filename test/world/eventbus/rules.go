package eventbus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/tether-ecs/tether/test/world/worldapi"
)

var (
	queueNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,80}$`)
	ruleNamePattern  = regexp.MustCompile(`^[.\-_A-Za-z0-9]{1,64}$`)
	ratePattern      = regexp.MustCompile(`^rate\(([1-9][0-9]*) (second|seconds|minute|minutes|hour|hours|day|days)\)$`)
)

// Target receives a rule's events.
type Target interface {
	Deliver(ctx context.Context, e worldapi.Event) error
	String() string
}

// FuncTarget delivers to an in-process function.
type FuncTarget struct {
	Name string
	Fn   func(ctx context.Context, e worldapi.Event) error
}

func (t FuncTarget) Deliver(ctx context.Context, e worldapi.Event) error { return t.Fn(ctx, e) }
func (t FuncTarget) String() string                                      { return "func:" + t.Name }

// QueueTarget sends the event JSON as the message body, as EventBridge does.
type QueueTarget struct{ Queue *Queue }

func (t QueueTarget) Deliver(_ context.Context, e worldapi.Event) error {
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	t.Queue.Send(string(body), SendOptions{})
	return nil
}
func (t QueueTarget) String() string { return "sqs:" + t.Queue.name }

// InvokerTarget invokes a Lambda function asynchronously with the event.
type InvokerTarget struct {
	Name    string
	Invoker Invoker
}

func (t InvokerTarget) Deliver(ctx context.Context, e worldapi.Event) error {
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = t.Invoker.Invoke(WithTraceHeader(ctx, eventTrace(e, t.Name).String()), body)
	return err
}

// eventTrace is the trace of a function invoked by an EventBridge event: a
// new chain (EventBridge is not among the services Lambda's recursive loop
// detection follows), whose first invocation this is. Its ids derive from
// the event's, so a run is reproducible.
func eventTrace(e worldapi.Event, function string) traceHeader {
	sum := sha256.Sum256([]byte(e.ID))
	epoch := time.Now().Unix()
	if t, err := time.Parse(time.RFC3339, e.Time); err == nil {
		epoch = t.Unix()
	}
	return invocationTrace(traceHeader{}, xrayRoot(epoch, hex.EncodeToString(sum[:12])), hex.EncodeToString(sum[12:20]), function)
}
func (t InvokerTarget) String() string { return "lambda:" + t.Name }

// Faults are seeded, per-event misbehaviours of delivery. Each is a
// probability; decisions are drawn in publish order from the bus's seed, so
// a run is reproducible.
type Faults struct {
	Drop      float64 // the event is lost
	Duplicate float64 // delivered twice
	Reorder   float64 // held back and delivered after the rule's next event
	Delay     float64 // delivered DelayMin..DelayMax late
	DelayMin  time.Duration
	DelayMax  time.Duration
	// ReorderHold bounds how long a held event waits for a successor
	// (default 50ms).
	ReorderHold time.Duration
}

// RuleStats counts one rule's events.
type RuleStats struct {
	Matched, Delivered, Dropped, Duplicated, Reordered, Delayed, Failed int
}

type rule struct {
	name     string
	pattern  *Pattern // nil for schedules
	targets  []Target
	faults   *Faults
	stats    RuleStats
	held     *worldapi.Event
	heldTill time.Time
}

type delivery struct {
	rule   *rule
	target Target
	event  worldapi.Event
	at     time.Time
	seq    int64
}

type deliveries struct {
	items []delivery
	seq   int64
}

func (d *deliveries) push(x delivery) {
	d.seq++
	x.seq = d.seq
	d.items = append(d.items, x)
	sort.SliceStable(d.items, func(i, j int) bool {
		if !d.items[i].at.Equal(d.items[j].at) {
			return d.items[i].at.Before(d.items[j].at)
		}
		return d.items[i].seq < d.items[j].seq
	})
}

// PutRule adds a rule: events matching pattern go to every target.
func (b *Bus) PutRule(name, pattern string, targets ...Target) error {
	if !ruleNamePattern.MatchString(name) {
		return fmt.Errorf("eventbus: invalid rule name %q", name)
	}
	p, err := CompilePattern(pattern)
	if err != nil {
		return fmt.Errorf("eventbus: rule %s: %w", name, err)
	}
	return b.addRule(&rule{name: name, pattern: p, targets: targets})
}

func (b *Bus) addRule(r *rule) error {
	if len(r.targets) == 0 || len(r.targets) > 5 {
		return fmt.Errorf("eventbus: rule %s: 1 to 5 targets", r.name)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, other := range b.rules {
		if other.name == r.name {
			return fmt.Errorf("eventbus: rule %s exists", r.name)
		}
	}
	b.rules = append(b.rules, r)
	return nil
}

// SetFaults sets the faults of one rule, or of every rule without its own
// when rule is "".
func (b *Bus) SetFaults(ruleName string, f Faults) error {
	if f.ReorderHold == 0 {
		f.ReorderHold = 50 * time.Millisecond
	}
	if f.DelayMax < f.DelayMin {
		return fmt.Errorf("eventbus: DelayMax %s < DelayMin %s", f.DelayMax, f.DelayMin)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ruleName == "" {
		b.global = f
		return nil
	}
	for _, r := range b.rules {
		if r.name == ruleName {
			r.faults = &f
			return nil
		}
	}
	return fmt.Errorf("eventbus: no rule %s", ruleName)
}

// Stats returns the counters of every rule and schedule, by name.
func (b *Bus) Stats() map[string]RuleStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]RuleStats{}
	for _, r := range b.rules {
		out[r.name] = r.stats
	}
	return out
}

// scheduleLocked applies the faults and queues the deliveries of one
// matched event. Five draws per event, always, keep runs reproducible.
func (b *Bus) scheduleLocked(r *rule, e worldapi.Event) {
	f := b.global
	if r.faults != nil {
		f = *r.faults
	}
	r5 := b.faultRng
	drop, dup, reorder, delay, span := r5.Float64(), r5.Float64(), r5.Float64(), r5.Float64(), r5.Float64()
	if drop < f.Drop {
		r.stats.Dropped++
		return
	}
	now := time.Now()
	at := now
	if delay < f.Delay {
		r.stats.Delayed++
		at = now.Add(f.DelayMin + time.Duration(span*float64(f.DelayMax-f.DelayMin)))
	}
	if reorder < f.Reorder && r.held == nil {
		r.stats.Reordered++
		held := e
		r.held, r.heldTill = &held, now.Add(f.ReorderHold)
		return
	}
	copies := 1
	if dup < f.Duplicate {
		r.stats.Duplicated++
		copies = 2
	}
	for range copies {
		for _, t := range r.targets {
			b.pending.push(delivery{rule: r, target: t, event: e, at: at})
		}
	}
	b.releaseLocked(r, at)
}

// releaseLocked queues a held event behind what was just queued.
func (b *Bus) releaseLocked(r *rule, at time.Time) {
	if r.held == nil {
		return
	}
	for _, t := range r.targets {
		b.pending.push(delivery{rule: r, target: t, event: *r.held, at: at})
	}
	r.held = nil
}

// dispatch hands due deliveries to their targets: queues inline, in order;
// functions each in a goroutine, retried like EventBridge (here 3 tries).
func (b *Bus) dispatch() {
	defer b.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		b.mu.Lock()
		now := time.Now()
		var due []delivery
		for _, r := range b.rules {
			if r.held != nil && !r.heldTill.After(now) {
				b.releaseLocked(r, now)
			}
		}
		for len(b.pending.items) > 0 && !b.pending.items[0].at.After(now) {
			due = append(due, b.pending.items[0])
			b.pending.items = b.pending.items[1:]
		}
		next := time.Time{}
		if len(b.pending.items) > 0 {
			next = b.pending.items[0].at
		}
		for _, r := range b.rules {
			if r.held != nil && (next.IsZero() || r.heldTill.Before(next)) {
				next = r.heldTill
			}
		}
		b.inflight += len(due)
		b.mu.Unlock()
		for _, d := range due {
			if _, inline := d.target.(QueueTarget); inline {
				b.finish(d, d.target.Deliver(b.ctx, d.event))
				continue
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.finish(d, b.deliverWithRetry(d))
			}()
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), 0))
		}
		select {
		case <-b.ctx.Done():
			return
		case <-b.wake:
		case <-timer.C:
		}
	}
}

func (b *Bus) deliverWithRetry(d delivery) error {
	var err error
	for attempt := range 3 {
		if err = d.target.Deliver(b.ctx, d.event); err == nil || b.ctx.Err() != nil {
			return err
		}
		b.log.Warn("target failed", "rule", d.rule.name, "target", d.target.String(), "event", d.event.ID, "attempt", attempt+1, "err", err)
		select {
		case <-b.ctx.Done():
			return b.ctx.Err()
		case <-time.After(b.scaled(time.Second << attempt)):
		}
	}
	return err
}

func (b *Bus) finish(d delivery, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight--
	if err != nil {
		d.rule.stats.Failed++
	} else {
		d.rule.stats.Delivered++
	}
	b.changedLocked()
}

// Settle waits until every event published so far has been delivered (or
// dropped or failed): nothing delayed, held or in a target.
func (b *Bus) Settle(ctx context.Context) error {
	for {
		b.mu.Lock()
		busy := len(b.pending.items) + b.inflight
		for _, r := range b.rules {
			if r.held != nil {
				busy++
			}
		}
		changed := b.changed
		b.mu.Unlock()
		if busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("eventbus: %d deliveries still pending: %w", busy, ctx.Err())
		case <-changed:
		case <-time.After(10 * time.Millisecond): // held events release by time
		}
	}
}

type schedule struct {
	rule  *rule
	every time.Duration
}

// PutSchedule adds a scheduled rule: rate(N minute|minutes|hour|hours|day|days),
// as EventBridge accepts, and — a world extension for fast tests —
// rate(N second|seconds). Each tick delivers a "Scheduled Event" from
// aws.events to the targets. The rate is scaled by TimeScale.
func (b *Bus) PutSchedule(name, expression string, targets ...Target) error {
	m := ratePattern.FindStringSubmatch(expression)
	if m == nil {
		return fmt.Errorf("eventbus: schedule %s: %w: %q (want rate(N unit))", name, ErrUnsupportedPattern, expression)
	}
	n, _ := strconv.Atoi(m[1])
	unit := map[string]time.Duration{"second": time.Second, "minute": time.Minute, "hour": time.Hour, "day": 24 * time.Hour}[trimS(m[2])]
	if (n == 1) != (m[2] == trimS(m[2])) {
		return fmt.Errorf("eventbus: schedule %s: %q: use the singular unit for 1 and the plural otherwise", name, expression)
	}
	r := &rule{name: name, targets: targets}
	if err := b.addRule(r); err != nil {
		return err
	}
	s := &schedule{rule: r, every: b.scaled(time.Duration(n) * unit)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("eventbus: closed")
	}
	b.schedules[name] = s
	b.wg.Add(1) // under mu: Close cannot be waiting yet
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(s.every)
		defer t.Stop()
		for {
			select {
			case <-b.ctx.Done():
				return
			case <-t.C:
				_ = b.FireSchedule(name)
			}
		}
	}()
	return nil
}

func trimS(u string) string {
	if len(u) > 1 && u[len(u)-1] == 's' {
		return u[:len(u)-1]
	}
	return u
}

// FireSchedule emits the schedule's event now (tests need not wait).
func (b *Bus) FireSchedule(name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.schedules[name]
	if !ok {
		return fmt.Errorf("eventbus: no schedule %s", name)
	}
	e := worldapi.Event{
		Version: "0", ID: b.uuidLocked(), DetailType: "Scheduled Event", Source: "aws.events",
		Account: b.opts.Account, Time: time.Now().UTC().Format(time.RFC3339), Region: b.opts.Region,
		Resources: []string{fmt.Sprintf("arn:aws:events:%s:%s:rule/%s", b.opts.Region, b.opts.Account, name)},
		Detail:    json.RawMessage("{}"),
	}
	s.rule.stats.Matched++
	b.scheduleLocked(s.rule, e)
	b.changedLocked()
	return nil
}
