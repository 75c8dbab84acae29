package eventbus

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Queue errors, checked with errors.Is; the SQS API maps them to its codes.
var (
	ErrReceiptHandleInvalid = errors.New("the receipt handle is not valid")
	ErrMessageNotInflight   = errors.New("the message is not in flight")
)

// QueueOptions are a standard queue's attributes.
type QueueOptions struct {
	VisibilityTimeout time.Duration // default 30s
	DelaySeconds      time.Duration // default delay of every message
	ReceiveWaitTime   time.Duration // default long-poll wait
	// DeadLetter and MaxReceiveCount are the redrive policy: a message
	// received MaxReceiveCount times without being deleted moves there.
	DeadLetter      *Queue
	MaxReceiveCount int
}

// MessageAttribute is an SQS message attribute.
type MessageAttribute struct {
	DataType    string // String, Number, Binary (optionally with a .suffix)
	StringValue string
	BinaryValue []byte
}

// Message is one received message.
type Message struct {
	MessageID     string
	ReceiptHandle string
	Body          string
	MD5OfBody     string
	Attributes    map[string]string // SentTimestamp, ApproximateReceiveCount, ...
	MessageAttrs  map[string]MessageAttribute
	MD5OfAttrs    string
}

type message struct {
	id           string
	body         string
	attrs        map[string]MessageAttribute
	trace        string // the AWSTraceHeader system attribute
	sentAt       time.Time
	visibleAt    time.Time
	firstRecv    time.Time
	receiveCount int
	receipt      string // current receipt handle ("" while visible)
	seq          int64
	// held: received by an event source mapping whose invocation still
	// runs; hidden whatever visibleAt says until released, then visible
	// after resume (see Mapping).
	held   bool
	resume time.Duration
}

// QueueStats counts a queue's messages.
type QueueStats struct {
	Visible, InFlight, Delayed int // ApproximateNumberOfMessages{,NotVisible,Delayed}
	Sent, Received, Deleted    int
	MovedToDLQ                 int
}

// Queue is an SQS standard queue.
type Queue struct {
	bus  *Bus
	name string
	opts QueueOptions

	mu       sync.Mutex
	msgs     map[string]*message // by message id
	byHandle map[string]*message // current receipt handle -> message
	seq      int64
	stats    QueueStats
	created  time.Time
	changed  chan struct{}
}

// Name, URL and ARN of the queue.
func (q *Queue) Name() string { return q.name }
func (q *Queue) URL() string  { return q.bus.queueURL(q.name) }
func (q *Queue) ARN() string {
	return fmt.Sprintf("arn:aws:sqs:%s:%s:%s", q.bus.opts.Region, q.bus.opts.Account, q.name)
}

// Options returns the queue's attributes.
func (q *Queue) Options() QueueOptions { return q.opts }

func (q *Queue) changedLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// SendOptions are per-message settings.
type SendOptions struct {
	Delay      *time.Duration // overrides the queue's DelaySeconds
	Attributes map[string]MessageAttribute
	// TraceHeader is the message's X-Ray trace header (the AWSTraceHeader
	// system attribute), which carries its chain's lineage.
	TraceHeader string
}

// Send enqueues a message and returns its id.
func (q *Queue) Send(body string, opts SendOptions) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	delay := q.opts.DelaySeconds
	if opts.Delay != nil {
		delay = *opts.Delay
	}
	q.seq++
	m := &message{id: q.bus.newUUID(), body: body, attrs: opts.Attributes, trace: opts.TraceHeader, sentAt: now, visibleAt: now.Add(q.bus.scaled(delay)), seq: q.seq}
	q.msgs[m.id] = m
	q.stats.Sent++
	q.changedLocked()
	return m.id
}

// ReceiveOptions are one ReceiveMessage call's settings.
type ReceiveOptions struct {
	Max        int            // 1-10 (default 1)
	Wait       time.Duration  // long polling; 0 = short poll
	Visibility *time.Duration // overrides the queue's VisibilityTimeout
	// hold: an event source mapping's receive; the messages stay hidden
	// until release.
	hold bool
}

// Receive returns up to Max visible messages, waiting up to Wait for one.
func (q *Queue) Receive(ctx context.Context, o ReceiveOptions) ([]Message, error) {
	if o.Max == 0 {
		o.Max = 1
	}
	wait := time.NewTimer(q.bus.scaled(o.Wait))
	defer wait.Stop()
	for {
		q.mu.Lock()
		out, next := q.takeLocked(o)
		changed := q.changed
		q.mu.Unlock()
		if len(out) > 0 || o.Wait <= 0 {
			return out, nil
		}
		var due <-chan time.Time
		if !next.IsZero() {
			t := time.NewTimer(max(time.Until(next), 0))
			defer t.Stop()
			due = t.C
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wait.C:
			return nil, nil
		case <-changed:
		case <-due:
		}
	}
}

// takeLocked hands out visible messages oldest first and redrives those
// received too often. next is when the next invisible message shows up.
func (q *Queue) takeLocked(o ReceiveOptions) (out []Message, next time.Time) {
	now := time.Now()
	visibility := q.opts.VisibilityTimeout
	if o.Visibility != nil {
		visibility = *o.Visibility
	}
	ms := make([]*message, 0, len(q.msgs))
	for _, m := range q.msgs {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].seq < ms[j].seq })
	for _, m := range ms {
		if m.held {
			continue // its invocation runs: release makes it visible again
		}
		if m.visibleAt.After(now) {
			if next.IsZero() || m.visibleAt.Before(next) {
				next = m.visibleAt
			}
			continue
		}
		if len(out) == o.Max {
			break
		}
		if dlq := q.opts.DeadLetter; dlq != nil && q.opts.MaxReceiveCount > 0 && m.receiveCount >= q.opts.MaxReceiveCount {
			q.dropLocked(m)
			q.stats.MovedToDLQ++
			dlq.redrive(m)
			continue
		}
		if m.receipt != "" {
			delete(q.byHandle, m.receipt)
		}
		m.receiveCount++
		if m.firstRecv.IsZero() {
			m.firstRecv = now
		}
		m.visibleAt = now.Add(q.bus.scaled(visibility))
		m.held, m.resume = o.hold, visibility
		m.receipt = q.bus.newReceipt(q.name, m.id)
		q.byHandle[m.receipt] = m
		q.stats.Received++
		out = append(out, m.out())
	}
	return out, next
}

func (m *message) out() Message {
	out := Message{
		MessageID: m.id, ReceiptHandle: m.receipt, Body: m.body, MD5OfBody: md5Hex([]byte(m.body)),
		Attributes: map[string]string{
			"ApproximateReceiveCount":          strconv.Itoa(m.receiveCount),
			"SentTimestamp":                    strconv.FormatInt(m.sentAt.UnixMilli(), 10),
			"SenderId":                         "AIDAWORLDSENDER000001",
			"ApproximateFirstReceiveTimestamp": strconv.FormatInt(m.firstRecv.UnixMilli(), 10),
		},
		MessageAttrs: m.attrs, MD5OfAttrs: md5OfAttributes(m.attrs),
	}
	if m.trace != "" {
		out.Attributes["AWSTraceHeader"] = m.trace
	}
	return out
}

// redrive takes a message from a source queue, keeping its id, body and
// sent time, as SQS does.
func (q *Queue) redrive(m *message) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seq++
	moved := &message{id: m.id, body: m.body, attrs: m.attrs, trace: m.trace, sentAt: m.sentAt, visibleAt: time.Now(), seq: q.seq}
	q.msgs[moved.id] = moved
	q.stats.Sent++
	q.changedLocked()
}

func (q *Queue) dropLocked(m *message) {
	delete(q.msgs, m.id)
	if m.receipt != "" {
		delete(q.byHandle, m.receipt)
	}
	q.changedLocked()
}

// Delete removes the message last received with this handle. An older
// handle of a message received again since is accepted and changes nothing,
// as in SQS.
func (q *Queue) Delete(handle string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	m, ok := q.byHandle[handle]
	if !ok {
		if q.bus.knownReceipt(q.name, handle) {
			return nil
		}
		return receiptInvalid(handle)
	}
	q.dropLocked(m)
	q.stats.Deleted++
	return nil
}

// receiptInvalid wraps ErrReceiptHandleInvalid with the handle.
func receiptInvalid(handle string) error {
	return fmt.Errorf("%w: %q", ErrReceiptHandleInvalid, handle)
}

// ChangeVisibility sets when the in-flight message becomes visible again.
func (q *Queue) ChangeVisibility(handle string, d time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	m, ok := q.byHandle[handle]
	switch {
	case !ok && q.bus.knownReceipt(q.name, handle):
		return fmt.Errorf("%w: receipt handle %q is no longer current", ErrMessageNotInflight, handle)
	case !ok:
		return receiptInvalid(handle)
	case m.held:
		// Applies from the end of the invocation that holds it. On AWS a
		// timeout shorter than the invocation's rest could let the message
		// come back while it runs; the world does not model that (tether's
		// functions never change a batch's visibility).
		m.resume = d
		return nil
	case !m.visibleAt.After(time.Now()):
		return fmt.Errorf("%w: message %s", ErrMessageNotInflight, m.id)
	}
	m.visibleAt = time.Now().Add(q.bus.scaled(d))
	q.changedLocked()
	return nil
}

// release ends the hold of the message last received with handle (a
// mapping's invocation returned without deleting it): it becomes visible
// after its visibility timeout, counted from now. Lambda lets a batch come
// back only after the queue's visibility timeout, which it keeps at or
// above the function's timeout (StartMapping); counting it from the end of
// the invocation never returns a message sooner than AWS would.
func (q *Queue) release(handle string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	m, ok := q.byHandle[handle]
	if !ok || !m.held {
		return // deleted, or moved on
	}
	m.held = false
	m.visibleAt = time.Now().Add(q.bus.scaled(m.resume))
	q.changedLocked()
}

// Stats returns the queue's counts now.
func (q *Queue) Stats() QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	st := q.stats
	now := time.Now()
	for _, m := range q.msgs {
		switch {
		case m.held:
			st.InFlight++
		case !m.visibleAt.After(now):
			st.Visible++
		case m.receiveCount > 0:
			st.InFlight++
		default:
			st.Delayed++
		}
	}
	return st
}

// WaitEmpty blocks until the queue holds no message at all (none visible,
// in flight or delayed), or ctx ends.
func (q *Queue) WaitEmpty(ctx context.Context) error {
	for {
		q.mu.Lock()
		n, changed := len(q.msgs), q.changed
		q.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("queue %s still holds %d messages: %w", q.name, n, ctx.Err())
		case <-changed:
		}
	}
}

func md5Hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

// md5OfAttributes is SQS's digest of message attributes: for each name in
// order, length-prefixed name, data type, a transport byte (1 string/number,
// 2 binary) and the length-prefixed value.
func md5OfAttributes(attrs map[string]MessageAttribute) string {
	if len(attrs) == 0 {
		return ""
	}
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	h := md5.New()
	put := func(b []byte) {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(b)))
		h.Write(l[:])
		h.Write(b)
	}
	for _, n := range names {
		a := attrs[n]
		put([]byte(n))
		put([]byte(a.DataType))
		if len(a.DataType) >= 6 && a.DataType[:6] == "Binary" {
			h.Write([]byte{2})
			put(a.BinaryValue)
		} else {
			h.Write([]byte{1})
			put([]byte(a.StringValue))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
