package eventbus

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"
)

func testBus(t *testing.T, opts Options) *Bus {
	t.Helper()
	b := New(opts)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustQueue(t *testing.T, b *Bus, name string, o QueueOptions) *Queue {
	t.Helper()
	q, err := b.CreateQueue(name, o)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func receiveOne(t *testing.T, q *Queue, o ReceiveOptions) Message {
	t.Helper()
	if o.Wait == 0 {
		o.Wait = 20 * time.Second
	}
	msgs, err := q.Receive(testCtx(t), o)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("receive from %s: %d messages, %v", q.Name(), len(msgs), err)
	}
	return msgs[0]
}

func TestVisibilityTimeoutAndReceiveCount(t *testing.T) {
	b := testBus(t, Options{Seed: 1})
	q := mustQueue(t, b, "tasks", QueueOptions{VisibilityTimeout: time.Hour})
	id := q.Send("hello", SendOptions{})
	m1 := receiveOne(t, q, ReceiveOptions{})
	if m1.MessageID != id || m1.Attributes["ApproximateReceiveCount"] != "1" || m1.MD5OfBody != "5d41402abc4b2a76b9719d911017c592" {
		t.Fatalf("first receive: %+v", m1)
	}
	if msgs, _ := q.Receive(testCtx(t), ReceiveOptions{Max: 10}); len(msgs) != 0 {
		t.Fatal("an in-flight message was received again within its visibility timeout")
	}
	if st := q.Stats(); st.InFlight != 1 || st.Visible != 0 {
		t.Fatalf("stats in flight: %+v", st)
	}
	if err := q.ChangeVisibility(m1.ReceiptHandle, 0); err != nil {
		t.Fatal(err)
	}
	m2 := receiveOne(t, q, ReceiveOptions{})
	if m2.MessageID != id || m2.Attributes["ApproximateReceiveCount"] != "2" || m2.ReceiptHandle == m1.ReceiptHandle {
		t.Fatalf("second receive: %+v", m2)
	}
	// The old handle no longer deletes it (SQS accepts it and does nothing).
	if err := q.Delete(m1.ReceiptHandle); err != nil {
		t.Fatalf("stale handle: %v", err)
	}
	if q.Stats().InFlight != 1 {
		t.Fatal("a stale receipt handle deleted the message")
	}
	if err := q.ChangeVisibility(m1.ReceiptHandle, 0); !errors.Is(err, ErrMessageNotInflight) {
		t.Fatalf("ChangeVisibility with a stale handle: %v", err)
	}
	if err := q.Delete("forged"); !errors.Is(err, ErrReceiptHandleInvalid) {
		t.Fatalf("forged handle: %v", err)
	}
	if err := q.Delete(m2.ReceiptHandle); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Visible+st.InFlight+st.Delayed != 0 || st.Deleted != 1 {
		t.Fatalf("after delete: %+v", st)
	}
}

func TestRedriveToDeadLetterQueue(t *testing.T) {
	b := testBus(t, Options{Seed: 1})
	dlq := mustQueue(t, b, "tasks-dlq", QueueOptions{})
	q := mustQueue(t, b, "tasks", QueueOptions{DeadLetter: dlq, MaxReceiveCount: 5})
	id := q.Send("poison", SendOptions{})
	zero := time.Duration(0)
	for i := 1; i <= 5; i++ {
		m := receiveOne(t, q, ReceiveOptions{Visibility: &zero})
		if m.Attributes["ApproximateReceiveCount"] != strconv.Itoa(i) {
			t.Fatalf("receive %d: count %s", i, m.Attributes["ApproximateReceiveCount"])
		}
	}
	if msgs, _ := q.Receive(testCtx(t), ReceiveOptions{Max: 10}); len(msgs) != 0 {
		t.Fatalf("received a 6th time: %+v", msgs)
	}
	if st := q.Stats(); st.MovedToDLQ != 1 || st.Visible+st.InFlight != 0 {
		t.Fatalf("source queue: %+v", st)
	}
	m := receiveOne(t, dlq, ReceiveOptions{})
	if m.MessageID != id || m.Body != "poison" || m.Attributes["ApproximateReceiveCount"] != "1" {
		t.Fatalf("dead letter: %+v", m)
	}
}

func TestDelayAndLongPolling(t *testing.T) {
	// Not before the delay: unscaled, 15 minutes cannot pass during the test.
	b := testBus(t, Options{Seed: 1})
	q := mustQueue(t, b, "retry", QueueOptions{})
	d := 15 * time.Minute
	q.Send("later", SendOptions{Delay: &d})
	if st := q.Stats(); st.Delayed != 1 {
		t.Fatalf("a delayed message: %+v", st)
	}
	if msgs, _ := q.Receive(testCtx(t), ReceiveOptions{}); len(msgs) != 0 {
		t.Fatal("a delayed message was received before its delay")
	}

	// After it: scaled, 30 s of delay is 30 ms; poll until it shows up.
	scaled := testBus(t, Options{Seed: 1, TimeScale: 0.001})
	sq := mustQueue(t, scaled, "retry", QueueOptions{})
	d = 30 * time.Second
	sq.Send("later", SendOptions{Delay: &d})
	var msgs []Message
	for ctx := testCtx(t); len(msgs) == 0 && ctx.Err() == nil; {
		msgs, _ = sq.Receive(ctx, ReceiveOptions{Wait: 20 * time.Second}) // polls again until the delay ends
	}
	if len(msgs) != 1 || msgs[0].Body != "later" {
		t.Fatalf("after the delay: %+v", msgs)
	}

	// Long polling returns as soon as a message arrives.
	q2 := mustQueue(t, b, "idle", QueueOptions{})
	got := make(chan []Message)
	go func() {
		msgs, _ := q2.Receive(context.Background(), ReceiveOptions{Wait: time.Hour * 1000, Max: 10})
		got <- msgs
	}()
	q2.Send("ping", SendOptions{})
	if msgs := <-got; len(msgs) != 1 || msgs[0].Body != "ping" {
		t.Fatalf("long poll: %+v", msgs)
	}
}

func TestMessageAttributeDigest(t *testing.T) {
	// Vectors from moto's independent implementation of SQS's algorithm.
	if got := md5OfAttributes(map[string]MessageAttribute{
		"trigger": {DataType: "String", StringValue: "retry"},
		"attempt": {DataType: "Number", StringValue: "3"},
	}); got != "cdea42e7435db588728db9bb743d1187" {
		t.Fatalf("string/number digest %s", got)
	}
	if got := md5OfAttributes(map[string]MessageAttribute{"blob": {DataType: "Binary", BinaryValue: []byte{0, 1, 2}}}); got != "a44784199c97ff8c40423784a25b2410" {
		t.Fatalf("binary digest %s", got)
	}
}
