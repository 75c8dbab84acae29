package eventbus

import (
	"context"
	"errors"
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

// Under a TimeScale the queue's visibility shrinks but an invocation does
// not get faster: a batch must not come back while its invocation still
// runs (Lambda refuses mappings whose visibility is under the function's
// timeout), and must not reach the dead-letter queue for being slow.
func TestMappingHidesABatchWhileItsInvocationRuns(t *testing.T) {
	b := testBus(t, Options{Seed: 1, TimeScale: 0.001}) // 30 s of visibility is 30 ms
	dlq := mustQueue(t, b, "SlowDLQ", QueueOptions{})
	q := mustQueue(t, b, "SlowQueue", QueueOptions{DeadLetter: dlq, MaxReceiveCount: 2})
	var calls atomic.Int32
	handler := lambda.NewHandler(func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		calls.Add(int32(len(ev.Records)))
		time.Sleep(300 * time.Millisecond) // ten visibility timeouts, in wall time
		return events.SQSEventResponse{}, nil
	})
	m, err := b.StartMapping(q, b.InProcess("slow", handler), MappingOptions{BatchSize: 1, ReportBatchItemFailures: true, PollWait: 5 * time.Millisecond, MaxConcurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	q.Send("slow-1", SendOptions{})
	if err := q.WaitEmpty(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	if n := calls.Load(); n != 1 {
		t.Errorf("the message was delivered %d times, want once", n)
	}
	if st := dlq.Stats(); st.Visible != 0 {
		t.Errorf("dead-letter queue holds %d messages, want none", st.Visible)
	}
}
