package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tether-ecs/tether/functions/internal/eventsrc"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// verdict is what becomes of one message.
type verdict int

const (
	pending verdict = iota
	acked           // every key done or handed back, or no key at all
	dropped         // skipped: foreign, malformed, hostile
	failed          // hand back to SQS (batchItemFailures)
)

// message is one input of an invocation and what became of it.
type message struct {
	id      string // SQS message id, or the event id of a direct invoke
	body    []byte
	log     *slog.Logger
	event   eventsrc.Event
	keys    []reconcile.Key
	verdict verdict
	why     string
}

func (m *message) fail(why string) { m.verdict, m.why = failed, why }
func (m *message) drop(why string) { m.verdict, m.why = dropped, why }
func (m *message) ack(why string)  { m.verdict, m.why = acked, why }
func (m *message) isPending() bool { return m.verdict == pending }
func (m *message) eventID() string { return m.event.ID }

// invocationScoper is implemented by a core that keeps one invocation's
// caches, and the hints of Retry triggers, in the context
// (reconcile.Reconciler.Invocation): run calls it once per invocation.
type invocationScoper interface {
	Invocation(ctx context.Context) context.Context
}

// requestCounter is implemented by a core that counts the AWS requests of
// an invocation (reconcile.Reconciler.Requests): run logs them at its end.
type requestCounter interface {
	Requests(ctx context.Context) map[string]int
}

// drainReleaser is implemented by a core that releases a draining host's
// volumes with one command once an invocation's triggers are named
// (reconcile.Reconciler.ReleaseDrained): run calls it before the passes.
type drainReleaser interface {
	ReleaseDrained(ctx context.Context)
}

// handBackNotifier is implemented by a core that remembers which events it
// has handled (reconcile.Reconciler.HandBackFailed): told that a key could
// not be handed back, it forgets them, so the redelivered message is worked
// again instead of being taken for a duplicate.
type handBackNotifier interface {
	HandBackFailed(ctx context.Context, k reconcile.Key)
}

// keyOutcome is what one Reconcile (and its requeue) gave.
type keyOutcome struct {
	result     reconcile.Result
	err        error
	requeueErr error
	took       time.Duration
}

// summary counts an invocation's outcomes for its last log line.
type summary struct {
	messages, acked, dropped, failed int
	keys, done, requeued, keyErrors  int
}

// deadlines are an invocation's three: work (stop starting calls, cancel
// running ones), hard (answer regardless, so Lambda never times out on
// it) and last (return whatever happens; hand-backs of keys never reached
// run between hard and last).
type deadlines struct {
	work, hard, last context.Context
	cancel           func()
}

func (d *Dispatcher) deadlines(ctx context.Context, start time.Time) deadlines {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = start.Add(d.cfg.Budget)
	}
	work, cancelWork := context.WithDeadline(ctx, deadline.Add(-d.cfg.Margin))
	hard, cancelHard := context.WithDeadline(ctx, deadline.Add(-d.cfg.Margin/2))
	last, cancelLast := context.WithDeadline(ctx, deadline.Add(-d.cfg.Margin/4))
	return deadlines{work: work, hard: hard, last: last, cancel: func() { cancelWork(); cancelHard(); cancelLast() }}
}

// run decodes, expands and reconciles msgs, setting each message's verdict.
func (d *Dispatcher) run(ctx context.Context, msgs []*message) summary {
	start := time.Now()
	if scoper, ok := d.rec.(invocationScoper); ok {
		ctx = scoper.Invocation(ctx)
	}
	dl := d.deadlines(ctx, start)
	defer dl.cancel()

	for _, m := range msgs {
		d.decode(m)
	}
	d.expand(dl.work, dl.hard, msgs)
	if rel, ok := d.rec.(drainReleaser); ok {
		rel.ReleaseDrained(dl.work)
	}
	order, byKey := keysOf(msgs)
	sum := d.reconcileAll(dl, order, byKey)
	sum.messages = len(msgs)
	d.settle(msgs, &sum)
	args := []any{"messages", sum.messages, "acked", sum.acked, "dropped", sum.dropped, "failed", sum.failed,
		"keys", sum.keys, "converged", sum.done, "requeued", sum.requeued, "keyErrors", sum.keyErrors,
		"kinds", kindsOf(msgs), "tookMs", time.Since(start).Milliseconds()}
	if rc, ok := d.rec.(requestCounter); ok {
		// Every request of the invocation, naming its keys included: the
		// passes' lines count only their own.
		args = append(args, "requests", rc.Requests(ctx))
	}
	d.log.Info("invocation done", args...)
	return sum
}

// kindsOf counts the messages by the kind of event they carry.
func kindsOf(msgs []*message) map[string]int {
	kinds := map[string]int{}
	for _, m := range msgs {
		k := m.event.Kind
		if k == "" {
			k = "undecoded"
		}
		kinds[k]++
	}
	return kinds
}

// keysOf lists every key of the pending messages once, in order, with the
// messages that name it: each key is reconciled once per invocation.
func keysOf(msgs []*message) ([]reconcile.Key, map[reconcile.Key][]*message) {
	var order []reconcile.Key
	byKey := map[reconcile.Key][]*message{}
	for _, m := range msgs {
		if !m.isPending() {
			continue
		}
		for _, k := range m.keys {
			if _, seen := byKey[k]; !seen {
				order = append(order, k)
			}
			if ms := byKey[k]; len(ms) == 0 || ms[len(ms)-1] != m {
				byKey[k] = append(ms, m)
			}
		}
	}
	return order, byKey
}

// reconcileAll reconciles the keys with bounded concurrency. Keys the
// deadline keeps from starting (a sweep of a large cluster, a slow batch)
// are handed back to the retry queue as soon as it is known, rather than
// failing their messages: work already done is not repeated, and no
// message creeps towards the dead-letter queue for want of time.
func (d *Dispatcher) reconcileAll(dl deadlines, order []reconcile.Key, byKey map[reconcile.Key][]*message) summary {
	outcomes := make([]keyOutcome, len(order))
	var handBacks []error
	var sent []bool
	started, finished := runBounded(dl.work, dl.hard, len(order), d.cfg.Concurrency, func(ctx context.Context, i int) {
		outcomes[i] = d.reconcileKey(ctx, order[i])
	}, func(from int) {
		unreached := order[from:]
		handBacks = make([]error, len(unreached))
		_, sent = runBounded(dl.hard, dl.last, len(unreached), d.cfg.Concurrency, func(ctx context.Context, i int) {
			handBacks[i] = d.requeue.Requeue(ctx, unreached[i], "", time.Second)
		}, nil)
	})
	sum := summary{keys: len(order)}
	for i, k := range order {
		ms := byKey[k]
		log := d.keyLogger(k, ms)
		switch {
		case i >= started:
			j := i - started
			d.unreached(log, k, ms, sent[j], handBacks[j], &sum)
		case !finished[i]:
			// Its goroutine may still write outcomes[i]: do not read it.
			log.Warn("key not reconciled before the deadline; its messages go back to the queue")
			sum.keyErrors++
			failAll(ms, fmt.Sprintf("key %s/%s: deadline", k.Cluster, k.Volume))
		default:
			d.outcome(log, k, ms, outcomes[i], &sum)
		}
	}
	return sum
}

// unreached: a key the deadline kept from starting, handed back or not.
func (d *Dispatcher) unreached(log *slog.Logger, k reconcile.Key, ms []*message, sent bool, handBack error, sum *summary) {
	if sent && handBack == nil {
		log.Info("key not reached before the deadline; handed back")
		sum.requeued++
		return
	}
	if !sent {
		handBack = context.DeadlineExceeded
	}
	log.Warn("key not reached before the deadline and not handed back; its messages go back to the queue", "error", handBack)
	sum.keyErrors++
	failAll(ms, fmt.Sprintf("key %s/%s: deadline", k.Cluster, k.Volume))
}

// outcome: what one finished Reconcile (and its requeue) means for the
// messages that named the key.
func (d *Dispatcher) outcome(log *slog.Logger, k reconcile.Key, ms []*message, o keyOutcome, sum *summary) {
	switch {
	case o.err != nil:
		if s, ok := eventsrc.AsSkip(o.err); ok {
			logSkip(log, s, "reconcile refused the key")
			return
		}
		log.Warn("reconcile failed; its messages go back to the queue", "error", o.err, "tookMs", o.took.Milliseconds())
		sum.keyErrors++
		failAll(ms, fmt.Sprintf("key %s/%s: %v", k.Cluster, k.Volume, o.err))
	case o.result.Done():
		log.Info("key converged", "reason", o.result.Reason, "tookMs", o.took.Milliseconds())
		sum.done++
	case o.requeueErr != nil:
		log.Warn("key not converged and could not be handed back; its messages go back to the queue",
			"reason", o.result.Reason, "retryAfter", o.result.RetryAfter.String(), "error", o.requeueErr)
		sum.keyErrors++
		failAll(ms, fmt.Sprintf("key %s/%s: requeue: %v", k.Cluster, k.Volume, o.requeueErr))
	default:
		log.Info("key handed back", "reason", o.result.Reason, "retryAfter", o.result.RetryAfter.String(),
			"hint", o.result.Hint, "tookMs", o.took.Milliseconds())
		sum.requeued++
	}
}

// settle acknowledges the messages nothing failed and counts the verdicts.
func (d *Dispatcher) settle(msgs []*message, sum *summary) {
	for _, m := range msgs {
		if m.isPending() {
			m.ack(fmt.Sprintf("%d key(s) reconciled or handed back", len(m.keys)))
		}
		switch m.verdict {
		case acked:
			sum.acked++
		case dropped:
			sum.dropped++
		case failed:
			sum.failed++
			m.log.Warn("message goes back to the queue", "why", m.why)
		}
	}
}

// decode turns a message body into an event, or drops it.
func (d *Dispatcher) decode(m *message) {
	ev, err := d.decoder.Decode(m.body)
	if err != nil {
		if s, ok := eventsrc.AsSkip(err); ok {
			logSkip(m.log, s, "message dropped")
			m.drop(s.Reason)
			return
		}
		m.log.Error("message not decoded", "error", err) // Decode returns only skips; kept for safety
		m.fail(err.Error())
		return
	}
	m.event = ev
	args := []any{slog.String("kind", ev.Kind)}
	if ev.ID != "" {
		args = append(args, slog.String("eventId", ev.ID))
	}
	for _, a := range ev.Attrs {
		args = append(args, a)
	}
	m.log = m.log.With(args...)
	m.log.Debug("message decoded")
}

// expand asks the reconciler which keys each decoded message touches.
func (d *Dispatcher) expand(work, hard context.Context, msgs []*message) {
	var live []*message
	for _, m := range msgs {
		if m.isPending() {
			live = append(live, m)
		}
	}
	type keysResult struct {
		keys []reconcile.Key
		err  error
	}
	results := make([]keysResult, len(live))
	_, finished := runBounded(work, hard, len(live), d.cfg.Concurrency, func(ctx context.Context, i int) {
		m := live[i]
		id := m.event.ID
		if id == "" {
			id = m.id // tether's retry messages have no event id
		}
		keys, err := d.rec.Keys(reconcile.WithEventID(ctx, id), m.event.Trigger)
		results[i] = keysResult{keys, err}
	}, nil)
	for i, m := range live {
		if !finished[i] {
			m.fail("deadline before its keys were known")
			continue
		}
		r := results[i]
		switch {
		case r.err != nil:
			if s, ok := eventsrc.AsSkip(r.err); ok {
				logSkip(m.log, s, "message dropped by the reconciler")
				m.drop(s.Reason)
				continue
			}
			m.log.Warn("keys not known", "error", r.err)
			m.fail(r.err.Error())
		case len(r.keys) == 0:
			m.log.Debug("no tether volume concerned")
			m.ack("no tether volume concerned")
		default:
			m.keys = dedupe(r.keys)
			m.log.Debug("keys", "count", len(m.keys))
		}
	}
}

// reconcileKey runs one Reconcile and, when the key is not done, hands it
// back with its delay. A panic in the core is one failed key, not a lost batch.
func (d *Dispatcher) reconcileKey(ctx context.Context, k reconcile.Key) (o keyOutcome) {
	start := time.Now()
	defer func() {
		o.took = time.Since(start)
		if p := recover(); p != nil {
			d.log.Error("reconcile panicked", "cluster", k.Cluster, "volume", k.Volume, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			o.err = fmt.Errorf("reconcile %s/%s panicked: %v", k.Cluster, k.Volume, p)
		}
	}()
	o.result, o.err = d.rec.Reconcile(ctx, k)
	if o.err == nil && !o.result.Done() {
		o.requeueErr = d.requeue.Requeue(ctx, k, o.result.Hint, o.result.RetryAfter)
		if n, ok := d.rec.(handBackNotifier); ok && o.requeueErr != nil {
			n.HandBackFailed(ctx, k)
		}
	}
	return o
}

// keyLogger names the key and the events that asked for it; with a single
// event, its ids (task, instance, volume) too.
func (d *Dispatcher) keyLogger(k reconcile.Key, ms []*message) *slog.Logger {
	if len(ms) == 1 {
		if ms[0].event.Kind == eventsrc.KindRetry {
			return ms[0].log // it names the key already
		}
		return ms[0].log.With("cluster", k.Cluster, "volume", k.Volume)
	}
	ids := make([]string, 0, len(ms))
	msgIDs := make([]string, 0, len(ms))
	for _, m := range ms {
		if m.event.ID != "" {
			ids = append(ids, m.event.ID)
		}
		msgIDs = append(msgIDs, m.id)
	}
	return d.log.With("cluster", k.Cluster, "volume", k.Volume, "eventIds", ids, "messageIds", msgIDs)
}

func failAll(ms []*message, why string) {
	for _, m := range ms {
		if m.verdict != failed {
			m.fail(why)
		}
	}
}

func logSkip(log *slog.Logger, s *eventsrc.SkipError, msg string) {
	if s.Quiet {
		log.Debug(msg, "reason", s.Reason)
		return
	}
	if s.Err != nil {
		log.Warn(msg+" (poison)", "reason", s.Reason, "error", s.Err)
		return
	}
	log.Warn(msg+" (poison)", "reason", s.Reason)
}

func dedupe(keys []reconcile.Key) []reconcile.Key {
	seen := make(map[reconcile.Key]bool, len(keys))
	out := keys[:0:0]
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// runBounded calls job(ctx, i) for i in [0, n) in order, at most limit at
// once, starting none once work has ended. It returns when every started job
// has returned, or when hard ends (a job that ignores its context must not
// make the invocation time out). Jobs 0 to started-1 were started;
// finished[i] reports whether job i returned. A panicking job counts as
// unfinished. If work ends before every job started, leftover (if not nil)
// is called with the first job not started, while the started ones run on.
func runBounded(work, hard context.Context, n, limit int, job func(ctx context.Context, i int), leftover func(from int)) (started int, finished []bool) {
	var (
		mu    sync.Mutex
		done  = make([]bool, n)
		wg    sync.WaitGroup
		slots = make(chan struct{}, limit)
	)
	for ; started < n; started++ {
		if !acquire(work, slots) {
			break
		}
		i := started
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			defer func() { _ = recover() }()
			job(work, i)
			mu.Lock()
			done[i] = true
			mu.Unlock()
		}()
	}
	if started < n && leftover != nil {
		leftover(started)
	}
	all := make(chan struct{})
	go func() {
		wg.Wait()
		close(all)
	}()
	select {
	case <-all:
	case <-hard.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	finished = make([]bool, n)
	copy(finished, done)
	return started, finished
}

func acquire(ctx context.Context, slots chan struct{}) bool {
	if ctx.Err() != nil {
		return false
	}
	select {
	case slots <- struct{}{}:
		if ctx.Err() != nil {
			<-slots
			return false
		}
		return true
	case <-ctx.Done():
		return false
	}
}
