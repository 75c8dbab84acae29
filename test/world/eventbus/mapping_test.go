package eventbus

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// The tests drive the mapping with lambda.NewHandler, the same adapter a
// function's main hands to lambda.Start.
func TestMappingPartialBatchFailuresAndRedrive(t *testing.T) {
	b := testBus(t, Options{Seed: 1, TimeScale: 0.001}) // a 30 s visibility timeout lasts 30 ms
	dlq := mustQueue(t, b, "TaskDLQ", QueueOptions{})
	q := mustQueue(t, b, "TaskQueue", QueueOptions{DeadLetter: dlq, MaxReceiveCount: 5})
	var mu sync.Mutex
	seen := map[string]int{}
	var badContext atomic.Bool
	handler := lambda.NewHandler(func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		if lc, ok := lambdacontext.FromContext(ctx); !ok || !strings.HasSuffix(lc.InvokedFunctionArn, ":function:taskstate") {
			badContext.Store(true)
		}
		var resp events.SQSEventResponse
		mu.Lock()
		defer mu.Unlock()
		for _, r := range ev.Records {
			seen[r.Body]++
			if r.EventSource != "aws:sqs" || r.EventSourceARN != q.ARN() || r.AWSRegion != "us-west-2" || r.Attributes["ApproximateReceiveCount"] == "" {
				badContext.Store(true)
			}
			if strings.HasPrefix(r.Body, "fail") {
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
			}
		}
		return resp, nil
	})
	m, err := b.StartMapping(q, b.InProcess("taskstate", handler), MappingOptions{BatchSize: 10, ReportBatchItemFailures: true, PollWait: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"ok-1", "fail-1", "ok-2", "ok-3"} {
		q.Send(body, SendOptions{})
	}
	ctx := testCtx(t)
	if err := q.WaitEmpty(ctx); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	if badContext.Load() {
		t.Fatal("the function saw a wrong record or lambda context")
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["ok-1"] != 1 || seen["ok-2"] != 1 || seen["ok-3"] != 1 || seen["fail-1"] != 5 {
		t.Fatalf("deliveries per message: %v (successes once, the failure maxReceiveCount times)", seen)
	}
	if st := dlq.Stats(); st.Visible != 1 {
		t.Fatalf("dead-letter queue: %+v", st)
	}
	if st := m.Stats(); st.ItemFailures != 5 || st.Deleted != 3 || st.FunctionErrors != 0 {
		t.Fatalf("mapping stats: %+v", st)
	}
}

func TestMappingFunctionErrorReturnsTheWholeBatch(t *testing.T) {
	b := testBus(t, Options{Seed: 1, TimeScale: 0.001})
	q := mustQueue(t, b, "TaskQueue", QueueOptions{})
	var calls atomic.Int32
	handler := lambda.NewHandler(func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		if calls.Add(1) == 1 {
			return events.SQSEventResponse{}, errors.New("boom")
		}
		return events.SQSEventResponse{}, nil
	})
	q.Send("a", SendOptions{})
	q.Send("b", SendOptions{})
	m, err := b.StartMapping(q, b.InProcess("taskstate", handler), MappingOptions{BatchSize: 10, ReportBatchItemFailures: true, PollWait: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.WaitEmpty(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	st := m.Stats()
	if st.FunctionErrors != 1 || st.Deleted != 2 || st.Messages < 4 {
		t.Fatalf("mapping stats: %+v (the failed batch must come back whole)", st)
	}
}

func TestMappingRejectsInvalidPartialResponses(t *testing.T) {
	b := testBus(t, Options{Seed: 1, TimeScale: 0.001})
	q := mustQueue(t, b, "TaskQueue", QueueOptions{})
	var calls atomic.Int32
	handler := lambda.NewHandler(func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		if calls.Add(1) == 1 {
			return events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{{ItemIdentifier: "not-in-this-batch"}}}, nil
		}
		return events.SQSEventResponse{}, nil
	})
	q.Send("a", SendOptions{})
	m, err := b.StartMapping(q, b.InProcess("taskstate", handler), MappingOptions{ReportBatchItemFailures: true, PollWait: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.WaitEmpty(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	if st := m.Stats(); st.InvalidResponses != 1 || st.Invocations != 2 || st.Deleted != 1 {
		t.Fatalf("mapping stats: %+v", st)
	}
}

func TestMappingConcurrencyLimit(t *testing.T) {
	b := testBus(t, Options{Seed: 1})
	q := mustQueue(t, b, "TaskQueue", QueueOptions{})
	var running, peak atomic.Int32
	release := make(chan struct{})
	handler := func(ctx context.Context, ev events.SQSEvent) error {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		running.Add(-1)
		return nil
	}
	for range 6 {
		q.Send("x", SendOptions{})
	}
	// Function: an environment per invocation (InProcess would be one).
	m, err := b.StartMapping(q, b.Function("drain", handler), MappingOptions{BatchSize: 1, MaxConcurrency: 2, PollWait: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	for running.Load() < 2 && ctx.Err() == nil {
		time.Sleep(time.Millisecond) // wait for both slots to be busy
	}
	close(release)
	if err := q.WaitEmpty(ctx); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	if peak.Load() != 2 {
		t.Fatalf("peak concurrency %d, want 2", peak.Load())
	}
}

// A batch stays hidden while its invocation runs, however long that takes
// in wall time (a loaded machine; a TimeScale, which shrinks the queue's
// timeouts but not the function's work): on AWS the queue's visibility
// timeout is at least the function's timeout, so a running batch never
// comes back, nor reaches the dead-letter queue for being slow. Conditions,
// not durations: the invocation runs until the test has seen the visibility
// timeout pass and another poller take a later message.
func TestMappingHidesABatchWhileItsInvocationRuns(t *testing.T) {
	b := testBus(t, Options{Seed: 1, TimeScale: 0.001}) // 30 s of visibility is 30 ms
	dlq := mustQueue(t, b, "SlowDLQ", QueueOptions{})
	q := mustQueue(t, b, "SlowQueue", QueueOptions{DeadLetter: dlq, MaxReceiveCount: 2})
	var mu sync.Mutex
	calls := map[string]int{}
	received := make(chan time.Time, 1) // when slow-1 was first received
	probed := make(chan struct{}, 1)
	release := make(chan struct{})
	handler := func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		for _, r := range ev.Records {
			mu.Lock()
			calls[r.Body]++
			mu.Unlock()
			switch r.Body {
			case "slow-1":
				ms, _ := strconv.ParseInt(r.Attributes["ApproximateFirstReceiveTimestamp"], 10, 64)
				select {
				case received <- time.UnixMilli(ms):
				default:
				}
				<-release
			case "probe":
				probed <- struct{}{}
			}
		}
		return events.SQSEventResponse{}, nil
	}
	// Function: an environment per invocation, so the probe's invocation
	// runs beside the held one.
	m, err := b.StartMapping(q, b.Function("slow", handler), MappingOptions{BatchSize: 1, ReportBatchItemFailures: true, PollWait: 5 * time.Millisecond, MaxConcurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	ctx := testCtx(t)
	q.Send("slow-1", SendOptions{})
	var first time.Time
	select {
	case first = <-received:
	case <-ctx.Done():
		t.Fatal("slow-1 was not delivered")
	}
	// The visibility timeout is over (a lower bound: a slow machine only
	// waits longer), so without the hold slow-1 would be visible again...
	time.Sleep(time.Until(first.Add(time.Millisecond + b.scaled(q.Options().VisibilityTimeout))))
	// ...and pollers take the oldest visible message first: the poller
	// that takes the probe would have taken slow-1.
	q.Send("probe", SendOptions{})
	select {
	case <-probed:
	case <-ctx.Done():
		t.Fatal("the probe was not delivered")
	}
	if st := q.Stats(); st.InFlight != 1 || st.Visible != 0 || st.MovedToDLQ != 0 {
		t.Errorf("while slow-1 runs: %+v, want it in flight", st)
	}
	close(release)
	if err := q.WaitEmpty(ctx); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	mu.Lock()
	defer mu.Unlock()
	if calls["slow-1"] != 1 || calls["probe"] != 1 {
		t.Errorf("deliveries %v, want each message once", calls)
	}
	if st := dlq.Stats(); st.Visible != 0 {
		t.Errorf("dead-letter queue holds %d messages, want none", st.Visible)
	}
}

// A message its function fails comes back one visibility timeout after the
// invocation ends, never sooner (on AWS: one visibility timeout after it
// was received, with the invocation inside it).
func TestMappingReturnsAFailedMessageAfterItsVisibilityTimeout(t *testing.T) {
	b := testBus(t, Options{Seed: 1}) // unscaled: an hour of visibility cannot pass during the test
	q := mustQueue(t, b, "TaskQueue", QueueOptions{VisibilityTimeout: time.Hour})
	done := make(chan struct{})
	handler := func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		defer close(done)
		return events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{{ItemIdentifier: ev.Records[0].MessageId}}}, nil
	}
	m, err := b.StartMapping(q, b.Function("f", handler), MappingOptions{ReportBatchItemFailures: true, PollWait: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	q.Send("fails", SendOptions{})
	<-done
	m.Stop() // the invocation's end is handled
	if st := q.Stats(); st.InFlight != 1 || st.Visible != 0 {
		t.Fatalf("after the failed invocation: %+v, want the message hidden for its visibility timeout", st)
	}
	if msgs, _ := q.Receive(testCtx(t), ReceiveOptions{Max: 10}); len(msgs) != 0 {
		t.Fatal("the failed message came back before its visibility timeout")
	}
}

// CreateEventSourceMapping's checks: a queue that hides messages for less
// than the function may run, and an unknown recursive loop setting.
func TestStartMappingRefusesWhatLambdaRefuses(t *testing.T) {
	b := testBus(t, Options{Seed: 1})
	q := mustQueue(t, b, "TaskQueue", QueueOptions{VisibilityTimeout: 30 * time.Second})
	nop := b.Function("f", func(context.Context, events.SQSEvent) error { return nil })
	_, err := b.StartMapping(q, nop, MappingOptions{FunctionTimeout: 60 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "Queue visibility timeout: 30 seconds is less than Function timeout: 60 seconds") {
		t.Fatalf("visibility under the function timeout: %v", err)
	}
	if _, err := b.StartMapping(q, nop, MappingOptions{RecursiveLoop: "Ignore"}); err == nil {
		t.Fatal("RecursiveLoop Ignore accepted")
	}
	m, err := b.StartMapping(q, nop, MappingOptions{FunctionTimeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("visibility equal to the function timeout: %v", err)
	}
	m.Stop()
}

// With a batching window, a lone message on a quiet queue waits for the
// pollers' whole empty long poll, not just the window (the Lambda developer
// guide: "Lambda might wait for up to 20 seconds ... even if you set a batch
// window lower than 20 seconds"). Only a lower bound is checked: a loaded
// machine is only later.
func TestMappingWithAWindowWaitsForTheLongPollOnAQuietQueue(t *testing.T) {
	const poll, window = 1500 * time.Millisecond, time.Second
	b := testBus(t, Options{Seed: 1})
	q := mustQueue(t, b, "TaskQueue", QueueOptions{})
	got := make(chan int, 10)
	handler := lambda.NewHandler(func(_ context.Context, ev events.SQSEvent) error {
		got <- len(ev.Records)
		return nil
	})
	m, err := b.StartMapping(q, b.InProcess("taskstate", handler), MappingOptions{BatchSize: 10, MaxBatchingWindow: window, PollWait: poll})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	ctx := testCtx(t)
	// Let the poller's first long poll begin on the empty queue.
	time.Sleep(50 * time.Millisecond)
	sent := time.Now()
	q.Send("lone", SendOptions{})
	select {
	case n := <-got:
		if took := time.Since(sent); n != 1 || took < poll {
			t.Fatalf("a lone message came in a batch of %d after %s, want alone after the %s long poll at least", n, took, poll)
		}
	case <-ctx.Done():
		t.Fatal("the lone message never came")
	}
}
