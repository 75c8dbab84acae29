// Package eventbus is the local world's EventBridge → SQS → Lambda path, as
// tether's functions are wired in template.yaml: a Bus takes events from the
// simulators (worldapi.Publisher), matches them against rules with event
// patterns, and delivers them — at least once, and with seeded faults when
// asked (drop, duplicate, reorder, delay) — to targets: in-process
// functions, SQS queues, Lambda invokers. Queues behave like SQS standard
// queues (visibility timeout, receive count, redrive to a dead-letter queue,
// per-message delay, long polling) and speak SQS's JSON protocol for the
// functions' SDK calls; an event source mapping polls a queue and invokes a
// function with SQS batches, honouring partial batch responses.
package eventbus

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math/rand"
	"strings"
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Options configure a Bus.
type Options struct {
	Region  string // default us-west-2
	Account string // default 123456789012
	Seed    int64  // fault injection and ids
	// TimeScale multiplies every SQS and schedule duration (visibility
	// timeouts, delays, long-poll waits, rates): 0.01 makes a 30 s
	// visibility timeout 300 ms. Default 1. A batch an event source mapping
	// hands a function stays hidden while the invocation runs, whatever the
	// scale (see Mapping.invoke).
	TimeScale float64
	// QueueURLBase prefixes queue URLs (the world's endpoint); default
	// https://sqs.<region>.amazonaws.com.
	QueueURLBase string
	Logger       *slog.Logger
}

// Bus is one account's default event bus, its queues and its mappings.
type Bus struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	rng       *rand.Rand // ids
	faultRng  *rand.Rand // fault decisions only, so they depend on the seed and the publish order alone
	rules     []*rule
	schedules map[string]*schedule
	queues    map[string]*Queue
	global    Faults
	pending   deliveries // waiting for their time
	inflight  int        // deliveries handed to targets, not finished
	changed   chan struct{}
	receipts  int64
	closed    bool
	// recursionDrops counts invocations Lambda's recursive loop detection
	// stopped, over every mapping (see RecursionLimit); longestChain is the
	// most hops a mapping's invocation continued.
	recursionDrops int
	longestChain   int

	sqsGate *awsproto.Gate

	wake   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New starts a Bus; Close stops it.
func New(opts Options) *Bus {
	if opts.Region == "" {
		opts.Region = "us-west-2"
	}
	if opts.Account == "" {
		opts.Account = "123456789012"
	}
	if opts.TimeScale <= 0 {
		opts.TimeScale = 1
	}
	if opts.QueueURLBase == "" {
		opts.QueueURLBase = "https://sqs." + opts.Region + ".amazonaws.com"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Bus{
		opts: opts, log: opts.Logger.With("component", "eventbus"),
		rng: rand.New(rand.NewSource(opts.Seed)), faultRng: rand.New(rand.NewSource(opts.Seed ^ 0x5eed)), schedules: map[string]*schedule{},
		queues: map[string]*Queue{}, changed: make(chan struct{}), wake: make(chan struct{}, 1),
		sqsGate: awsproto.NewGate(awsproto.GateConfig{Seed: uint64(opts.Seed),
			Throttle: func() *awsproto.Error { return awsproto.BadRequest("RequestThrottled", "Request is throttled.") }}),
		ctx: ctx, cancel: cancel,
	}
	b.wg.Add(1)
	go b.dispatch()
	return b
}

// Close stops deliveries, schedules and mappings, and waits for them.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	return nil
}

func (b *Bus) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * b.opts.TimeScale)
}

func (b *Bus) changedLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *Bus) newUUID() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.uuidLocked()
}

func (b *Bus) uuidLocked() string {
	h := b.hexLocked(32)
	return h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}

// invocationTrace is the trace header of an invocation caused by an event
// of chain from (see trace.go): a new root for a new chain.
func (b *Bus) invocationTrace(from traceHeader, function string) traceHeader {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := invocationTrace(from, xrayRoot(time.Now().Unix(), b.hexLocked(24)), b.hexLocked(16), function)
	b.longestChain = max(b.longestChain, t.hops)
	return t
}

func (b *Bus) hexLocked(n int) string {
	const hex = "0123456789abcdef"
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = hex[b.rng.Intn(16)]
	}
	return string(buf)
}

func (b *Bus) recursionStopped() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recursionDrops++
}

// RecursiveInvocationsDropped is Lambda's metric of that name summed over
// the bus's event source mappings: invocations stopped because their chain
// had already invoked functions RecursionLimit times. Zero means no loop
// was cut; a function with RecursiveLoop: Allow never adds to it.
func (b *Bus) RecursiveInvocationsDropped() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.recursionDrops
}

// LongestChain is the most invocations one chain of events reached through
// the bus's event source mappings (1: no function's message caused another
// invocation). Lambda stops a chain's invocation past RecursionLimit unless
// the function allows recursion: this says how close a run came.
func (b *Bus) LongestChain() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.longestChain
}

// Receipt handles carry their queue and message, so an old handle can be
// told from a forged one without remembering every handle issued.
func (b *Bus) newReceipt(queue, messageID string) string {
	b.mu.Lock()
	b.receipts++
	n := b.receipts
	b.mu.Unlock()
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%s\x00%s\x00%d", queue, messageID, n)))
}

func (b *Bus) knownReceipt(queue, handle string) bool {
	raw, err := base64.RawURLEncoding.DecodeString(handle)
	if err != nil {
		return false
	}
	parts := strings.Split(string(raw), "\x00")
	return len(parts) == 3 && parts[0] == queue
}

func (b *Bus) queueURL(name string) string {
	return b.opts.QueueURLBase + "/" + b.opts.Account + "/" + name
}

// CreateQueue makes a standard queue. Names are unique per bus.
func (b *Bus) CreateQueue(name string, opts QueueOptions) (*Queue, error) {
	if !queueNamePattern.MatchString(name) {
		return nil, fmt.Errorf("eventbus: invalid queue name %q", name)
	}
	if opts.VisibilityTimeout == 0 {
		opts.VisibilityTimeout = 30 * time.Second
	}
	if (opts.DeadLetter == nil) != (opts.MaxReceiveCount == 0) {
		return nil, fmt.Errorf("eventbus: queue %s: a redrive policy needs both DeadLetter and MaxReceiveCount", name)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, dup := b.queues[name]; dup {
		return nil, fmt.Errorf("eventbus: queue %s exists", name)
	}
	q := &Queue{bus: b, name: name, opts: opts, msgs: map[string]*message{}, byHandle: map[string]*message{}, created: time.Now(), changed: make(chan struct{})}
	b.queues[name] = q
	return q, nil
}

// Queue returns the queue with that name, or nil.
func (b *Bus) Queue(name string) *Queue {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.queues[name]
}

// Publish implements worldapi.Publisher: it matches the event against every
// rule now and queues the deliveries; it never blocks on a target.
func (b *Bus) Publish(e worldapi.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	for _, r := range b.rules {
		if r.pattern != nil && r.pattern.Match(e) {
			r.stats.Matched++
			b.scheduleLocked(r, e)
		}
	}
	b.changedLocked()
}
