package eventbus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// Invoker runs a Lambda function on one payload. lambda.NewHandler's
// result satisfies it (in-process); lambdarun.Function does it over the
// runtime interface emulator. A function error is returned as an error.
type Invoker interface {
	Invoke(ctx context.Context, payload []byte) ([]byte, error)
}

// InProcess wraps an in-process handler so it sees what Lambda gives a
// function: a lambdacontext with a request id and the function ARN. The
// handler is one execution environment: invocations take turns, as
// lambda.NewHandler's result (which reuses its output buffer) requires.
// Bus.Function gives each invocation its own environment instead.
func (b *Bus) InProcess(functionName string, h Invoker) Invoker {
	return &inProcess{bus: b, name: functionName, h: h}
}

type inProcess struct {
	bus     *Bus
	name    string
	mu      sync.Mutex
	h       Invoker
	factory func() Invoker // a fresh environment per invocation, when set
}

func (p *inProcess) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	lc := &lambdacontext.LambdaContext{
		AwsRequestID:       p.bus.newUUID(),
		InvokedFunctionArn: fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", p.bus.opts.Region, p.bus.opts.Account, p.name),
	}
	ctx = lambdacontext.NewContext(ctx, lc)
	// The invocation's trace header where aws-lambda-go's runtime loop puts
	// it (lambda/invoke_loop.go: context.WithValue(ctx, "x-amzn-trace-id",
	// ...)), so in-process code finds it as under Lambda. The process-wide
	// _X_AMZN_TRACE_ID that the runtime also sets cannot serve concurrent
	// in-process invocations.
	ctx = context.WithValue(ctx, lambdaTraceIDKey, TraceHeader(ctx)) //nolint:staticcheck // aws-lambda-go's key
	if p.factory != nil {
		return p.factory().Invoke(ctx, payload)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out, err := p.h.Invoke(ctx, payload)
	return bytes.Clone(out), err
}

// lambdaTraceIDKey is aws-lambda-go's context key for the trace header (a
// plain string: its runtime loop uses it so).
const lambdaTraceIDKey = "x-amzn-trace-id"

// ErrThrottled is Lambda's TooManyRequestsException: the function's
// reserved concurrency is in use.
var ErrThrottled = errors.New("TooManyRequestsException: Rate Exceeded (reserved concurrency in use)")

// Reserved limits an invoker to n concurrent invocations, as a function's
// reserved concurrency does: one more is throttled at once (ErrThrottled),
// not queued.
func Reserved(inv Invoker, n int) Invoker {
	return &reserved{inv: inv, slots: make(chan struct{}, n)}
}

type reserved struct {
	inv   Invoker
	slots chan struct{}
}

func (r *reserved) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	select {
	case r.slots <- struct{}{}:
		defer func() { <-r.slots }()
		return r.inv.Invoke(ctx, payload)
	default:
		return nil, ErrThrottled
	}
}

// MappingOptions are an SQS event source mapping's settings.
type MappingOptions struct {
	BatchSize         int           // 1-10000, default 10
	MaxBatchingWindow time.Duration // gather up to this long for a fuller batch
	// ReportBatchItemFailures: the function answers events.SQSEventResponse
	// and only the listed messages return to the queue.
	ReportBatchItemFailures bool
	// MaxConcurrency bounds concurrent invocations (reserved concurrency);
	// default 1.
	MaxConcurrency  int
	FunctionTimeout time.Duration // per invocation, default 30s
	// PollWait is the pollers' long-poll wait (default 20s, unscaled as it
	// only bounds idle polls).
	PollWait time.Duration
	// Function names the function (logs, its lineage hash); default the
	// queue's name.
	Function string
	// RecursiveLoop is the function's recursive loop detection; default
	// Terminate, as in Lambda.
	RecursiveLoop RecursiveLoop
}

// MappingStats counts a mapping's work.
type MappingStats struct {
	Invocations      int // function invocations
	FunctionErrors   int // invocations that failed: the whole batch returns
	Throttled        int // invocations refused for concurrency: the batch returns too
	InvalidResponses int // partial responses Lambda rejects: the whole batch returns
	Messages         int // messages handed to the function
	Deleted          int // messages deleted after success
	ItemFailures     int // messages reported in batchItemFailures
	// RecursiveInvocationsDropped counts deliveries Lambda stopped: a
	// message whose chain had already invoked functions RecursionLimit
	// times (Lambda's CloudWatch metric of that name).
	RecursiveInvocationsDropped int
}

// Mapping polls one queue and invokes one function.
type Mapping struct {
	bus   *Bus
	queue *Queue
	inv   Invoker
	opts  MappingOptions

	mu     sync.Mutex
	stats  MappingStats
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartMapping starts polling q for inv; it stops with Stop or the bus.
func (b *Bus) StartMapping(q *Queue, inv Invoker, opts MappingOptions) (*Mapping, error) {
	if opts.BatchSize == 0 {
		opts.BatchSize = 10
	}
	if opts.BatchSize < 1 || opts.BatchSize > 10000 {
		return nil, fmt.Errorf("eventbus: BatchSize %d: want 1 to 10000", opts.BatchSize)
	}
	if opts.BatchSize > 10 && opts.MaxBatchingWindow == 0 {
		return nil, errors.New("eventbus: a BatchSize over 10 needs a MaxBatchingWindow, as in Lambda")
	}
	if opts.MaxConcurrency == 0 {
		opts.MaxConcurrency = 1
	}
	if opts.FunctionTimeout == 0 {
		opts.FunctionTimeout = 30 * time.Second
	}
	if opts.PollWait == 0 {
		opts.PollWait = 20 * time.Second
	}
	if opts.Function == "" {
		opts.Function = q.name
	}
	if opts.RecursiveLoop == "" {
		opts.RecursiveLoop = RecursiveLoopTerminate
	}
	if !opts.RecursiveLoop.valid() {
		return nil, fmt.Errorf("eventbus: RecursiveLoop %q: want Allow or Terminate", opts.RecursiveLoop)
	}
	// CreateEventSourceMapping refuses a queue that hides a message for less
	// than the function may run ("InvalidParameterValueException: Queue
	// visibility timeout: 30 seconds is less than Function timeout: 60
	// seconds"), so on AWS a batch is not redelivered while it runs.
	if vis := q.Options().VisibilityTimeout; vis < opts.FunctionTimeout {
		return nil, fmt.Errorf("eventbus: InvalidParameterValueException: Queue visibility timeout: %d seconds is less than Function timeout: %d seconds",
			int(vis/time.Second), int(opts.FunctionTimeout/time.Second))
	}
	ctx, cancel := context.WithCancel(b.ctx)
	m := &Mapping{bus: b, queue: q, inv: inv, opts: opts, cancel: cancel}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		cancel()
		return nil, errors.New("eventbus: closed")
	}
	for range opts.MaxConcurrency {
		m.wg.Add(1)
		b.wg.Add(1) // under mu: Close cannot be waiting yet
		go func() {
			defer b.wg.Done()
			defer m.wg.Done()
			m.poll(ctx)
		}()
	}
	return m, nil
}

// Stop ends polling and waits for invocations in flight.
func (m *Mapping) Stop() {
	m.cancel()
	m.wg.Wait()
}

// Options returns the mapping's settings, defaults applied.
func (m *Mapping) Options() MappingOptions { return m.opts }

// Stats returns the mapping's counters.
func (m *Mapping) Stats() MappingStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

func (m *Mapping) poll(ctx context.Context) {
	for ctx.Err() == nil {
		batch := m.gather(ctx)
		if len(batch) == 0 {
			continue
		}
		m.invoke(ctx, batch)
	}
}

// gather receives one batch: up to BatchSize messages, within the batching
// window once the first has arrived.
//
// With a window, the pollers keep long-polling (PollWait) to fill the batch,
// and the window ends only when a poll returns: on a queue with little
// traffic a batch waits for a whole empty long poll. The Lambda developer
// guide ("Using Lambda with Amazon SQS", batching behaviour): "If you're
// using a batch window and your SQS queue contains very low traffic, Lambda
// might wait for up to 20 seconds before invoking your function. This is
// true even if you set a batch window lower than 20 seconds."
func (m *Mapping) gather(ctx context.Context) []Message {
	var batch []Message
	var deadline time.Time
	for len(batch) < m.opts.BatchSize {
		msgs, err := m.queue.Receive(ctx, ReceiveOptions{Max: min(10, m.opts.BatchSize-len(batch)), Wait: m.opts.PollWait, hold: true})
		if err != nil {
			break
		}
		if len(batch) == 0 && len(msgs) > 0 {
			deadline = time.Now().Add(m.bus.scaled(m.opts.MaxBatchingWindow))
		}
		batch = append(batch, msgs...)
		if m.opts.MaxBatchingWindow == 0 || len(batch) > 0 && !time.Now().Before(deadline) {
			break
		}
	}
	return batch
}

// invoke runs the function on one batch. The batch's messages were
// received held (gather): they stay hidden until the invocation returns,
// however long the world takes. On AWS that is guaranteed by the queue's
// visibility timeout being at least the function's timeout (StartMapping
// refuses less) and by Lambda ending an invocation at its timeout; in the
// world an invocation's wall time depends on the machine's load and on
// TimeScale (which shrinks the queue's timeouts but not the function's
// work), so a timer would redeliver batches AWS would not. Failed messages
// come back one visibility timeout after the invocation ends (release).
// One case where AWS can redeliver a running batch is not modelled: a
// MaximumBatchingWindow eating the margin between the visibility timeout
// and the function's timeout (AWS recommends six times the function timeout
// plus the window; tether's template has no window).
func (m *Mapping) invoke(ctx context.Context, batch []Message) {
	defer func() {
		for _, msg := range batch {
			m.queue.release(msg.ReceiptHandle) // no-op for the deleted
		}
	}()
	run, from := m.stopRecursion(batch)
	if len(run) == 0 {
		return
	}
	ev := events.SQSEvent{Records: make([]events.SQSMessage, 0, len(run))}
	inBatch := map[string]string{} // message id -> receipt handle
	for _, msg := range run {
		ev.Records = append(ev.Records, m.record(msg))
		inBatch[msg.MessageID] = msg.ReceiptHandle
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		return
	}
	callCtx, cancel := context.WithTimeout(WithTraceHeader(ctx, m.bus.invocationTrace(from, m.opts.Function).String()), m.opts.FunctionTimeout)
	out, err := m.inv.Invoke(callCtx, payload)
	cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats.Invocations++
	m.stats.Messages += len(run)
	if errors.Is(err, ErrThrottled) {
		m.stats.Throttled++
		m.bus.log.Warn("function throttled: the batch returns after its visibility timeout", "queue", m.queue.name, "messages", len(run))
		return
	}
	if err != nil {
		m.stats.FunctionErrors++
		m.bus.log.Warn("function failed: the batch returns after its visibility timeout", "queue", m.queue.name, "messages", len(run), "err", err)
		return
	}
	failed := map[string]bool{}
	if m.opts.ReportBatchItemFailures {
		var ok bool
		if failed, ok = parseBatchResponse(out, inBatch); !ok {
			m.stats.InvalidResponses++
			m.bus.log.Warn("invalid batchItemFailures: the whole batch returns", "queue", m.queue.name, "response", string(out))
			return
		}
	}
	m.stats.ItemFailures += len(failed)
	for id, handle := range inBatch {
		if failed[id] {
			continue
		}
		if m.queue.Delete(handle) == nil {
			m.stats.Deleted++
		}
	}
}

// stopRecursion takes out of a batch the messages whose chain has invoked
// functions RecursionLimit times already, unless the function allows
// recursion: Lambda stops their invocation, so they return after the
// visibility timeout with one more receive, until the queue's redrive
// policy moves them to its dead-letter queue. from is the chain the
// invocation continues: Lambda does not document how it traces a batch of
// several chains; the world takes the longest (the stricter choice).
func (m *Mapping) stopRecursion(batch []Message) (run []Message, from traceHeader) {
	for _, msg := range batch {
		h, _ := parseTraceHeader(msg.Attributes["AWSTraceHeader"])
		if h.hops >= RecursionLimit && m.opts.RecursiveLoop == RecursiveLoopTerminate {
			m.mu.Lock()
			m.stats.RecursiveInvocationsDropped++
			m.mu.Unlock()
			m.bus.recursionStopped()
			m.bus.log.Warn("recursive loop detected: Lambda stopped the invocation (RecursiveInvocationsDropped)",
				"function", m.opts.Function, "queue", m.queue.name, "messageId", msg.MessageID, "hops", h.hops,
				"receiveCount", msg.Attributes["ApproximateReceiveCount"])
			continue
		}
		if h.hops > from.hops || from.root == "" {
			from = h
		}
		run = append(run, msg)
	}
	return run, from
}

// parseBatchResponse reads events.SQSEventResponse. Lambda treats an
// unparsable response, an empty identifier or one not in the batch as a
// failure of the whole batch.
func parseBatchResponse(out []byte, inBatch map[string]string) (map[string]bool, bool) {
	failed := map[string]bool{}
	if len(out) == 0 || string(out) == "null" {
		return failed, true
	}
	var resp events.SQSEventResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, false
	}
	for _, f := range resp.BatchItemFailures {
		if _, ok := inBatch[f.ItemIdentifier]; !ok {
			return nil, false
		}
		failed[f.ItemIdentifier] = true
	}
	return failed, true
}

func (m *Mapping) record(msg Message) events.SQSMessage {
	r := events.SQSMessage{
		MessageId: msg.MessageID, ReceiptHandle: msg.ReceiptHandle, Body: msg.Body, Md5OfBody: msg.MD5OfBody,
		Attributes: msg.Attributes, MessageAttributes: map[string]events.SQSMessageAttribute{},
		EventSourceARN: m.queue.ARN(), EventSource: "aws:sqs", AWSRegion: m.bus.opts.Region,
	}
	if msg.MD5OfAttrs != "" {
		r.Md5OfMessageAttributes = msg.MD5OfAttrs
	}
	for name, a := range msg.MessageAttrs {
		ma := events.SQSMessageAttribute{DataType: a.DataType, StringListValues: []string{}, BinaryListValues: [][]byte{}}
		if a.BinaryValue != nil {
			ma.BinaryValue = a.BinaryValue
		} else {
			v := a.StringValue
			ma.StringValue = &v
		}
		r.MessageAttributes[name] = ma
	}
	return r
}
