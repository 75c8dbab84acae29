package eventbus_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/tether-ecs/tether/functions/boot"
	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/eventbus"
)

// sqsEndpoint serves the bus's SQS API over HTTP as the world does, and
// returns a client configured as tether's functions configure theirs in
// the world (functions/boot: the invocation's trace on every request).
func sqsEndpoint(t *testing.T, o eventbus.Options) (*eventbus.Bus, *sqs.Client) {
	t.Helper()
	router := awsproto.NewRouter()
	hs := httptest.NewServer(eventbus.CarryTraceHeader(router))
	t.Cleanup(hs.Close)
	o.QueueURLBase = hs.URL
	bus := eventbus.New(o)
	t.Cleanup(func() { _ = bus.Close() })
	bus.RegisterSQS(router)
	return bus, sqs.New(sqs.Options{
		BaseEndpoint: aws.String(hs.URL), Region: "us-west-2", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDWORLD", "secret", ""),
		APIOptions:  []func(*middleware.Stack) error{boot.PropagateTrace},
	})
}

// loop is an in-process function that sends each record on to its queue:
// a body "n/limit" goes back as "n+1/limit" while n < limit. It records
// the bodies it ran and the trace each message carried.
type loop struct {
	client *sqs.Client
	queue  string
	mu     sync.Mutex
	ran    []string
	traces []string
}

func (l *loop) handle(ctx context.Context, ev events.SQSEvent) error {
	for _, r := range ev.Records {
		var n, limit int
		if _, err := fmt.Sscanf(r.Body, "%d/%d", &n, &limit); err != nil {
			return err
		}
		l.mu.Lock()
		l.ran = append(l.ran, r.Body)
		l.traces = append(l.traces, r.Attributes["AWSTraceHeader"])
		l.mu.Unlock()
		if n < limit {
			if _, err := l.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(l.queue), MessageBody: aws.String(fmt.Sprintf("%d/%d", n+1, limit))}); err != nil {
				return err
			}
		}
	}
	return nil
}

// SQS → Lambda → the same queue, in process: Lambda runs the chain 16
// times and stops the 17th invocation at every receive of its message
// (RecursiveInvocationsDropped) until the redrive policy moves the message
// to the dead-letter queue; with RecursiveLoop: Allow the chain runs on.
func TestRecursiveLoopInProcess(t *testing.T) {
	for _, c := range []struct {
		name        string
		loop        eventbus.RecursiveLoop
		body        string
		invocations int
		dropped     int
		deadLetter  string
	}{
		{"terminate", eventbus.RecursiveLoopTerminate, "0/100", eventbus.RecursionLimit, 4, "16/100"},
		{"allow", eventbus.RecursiveLoopAllow, "0/30", 31, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			bus, client := sqsEndpoint(t, eventbus.Options{Seed: 7, TimeScale: 0.001})
			dlq, _ := bus.CreateQueue("LoopDLQ", eventbus.QueueOptions{})
			q, err := bus.CreateQueue("LoopQueue", eventbus.QueueOptions{DeadLetter: dlq, MaxReceiveCount: 4})
			if err != nil {
				t.Fatal(err)
			}
			fn := &loop{client: client, queue: q.URL()}
			m, err := bus.StartMapping(q, bus.Function("loop", fn.handle), eventbus.MappingOptions{
				BatchSize: 1, PollWait: 10 * time.Millisecond, Function: "loop", RecursiveLoop: c.loop,
			})
			if err != nil {
				t.Fatal(err)
			}
			q.Send(c.body, eventbus.SendOptions{})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := q.WaitEmpty(ctx); err != nil { // each message is sent before its cause is deleted: empty = the chain ended
				t.Fatal(err)
			}
			m.Stop()
			st := m.Stats()
			if st.Invocations != c.invocations || len(fn.ran) != c.invocations || st.RecursiveInvocationsDropped != c.dropped ||
				bus.RecursiveInvocationsDropped() != c.dropped || bus.LongestChain() != c.invocations {
				t.Fatalf("ran %d (mapping %+v, bus drops %d, longest chain %d); want %d invocations in one chain, %d dropped",
					len(fn.ran), st, bus.RecursiveInvocationsDropped(), bus.LongestChain(), c.invocations, c.dropped)
			}
			// Each message carries the lineage of the invocation that sent it.
			for i, trace := range fn.traces[1:] {
				if want := fmt.Sprintf(";Lineage=%d:", i+1); !strings.Contains(trace, want) {
					t.Fatalf("message %d's trace %q: want %s", i+1, trace, want)
				}
			}
			dead, err := dlq.Receive(ctx, eventbus.ReceiveOptions{Max: 10})
			switch {
			case err != nil:
				t.Fatal(err)
			case c.deadLetter == "" && len(dead) != 0:
				t.Fatalf("dead-letter queue: %+v, want nothing", dead)
			case c.deadLetter != "" && (len(dead) != 1 || dead[0].Body != c.deadLetter || !strings.Contains(dead[0].Attributes["AWSTraceHeader"], ";Lineage=16:")):
				t.Fatalf("dead-letter queue: %+v, want %q with 16 hops", dead, c.deadLetter)
			}
		})
	}
}

// A batch mixing a message at the limit and a fresh one: only the first is
// stopped; the invocation continues the longer chain (Lambda does not say
// which chain a batch's invocation continues: the world takes the stricter).
func TestRecursionStopsOnlyTheMessagesAtTheLimit(t *testing.T) {
	bus, _ := sqsEndpoint(t, eventbus.Options{Seed: 7})
	q, err := bus.CreateQueue("Q", eventbus.QueueOptions{VisibilityTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const root = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
	q.Send("looped", eventbus.SendOptions{TraceHeader: root + ";Lineage=16:a87bd80c:0"})
	q.Send("deep", eventbus.SendOptions{TraceHeader: root + ";Lineage=15:a87bd80c:0"})
	q.Send("fresh", eventbus.SendOptions{})
	got := make(chan []string, 1)
	traces := make(chan string, 1)
	handler := func(ctx context.Context, ev events.SQSEvent) error {
		var bodies []string
		for _, r := range ev.Records {
			bodies = append(bodies, r.Body)
		}
		trace, _ := ctx.Value("x-amzn-trace-id").(string) // where aws-lambda-go puts it
		got <- bodies
		traces <- trace
		return nil
	}
	m, err := bus.StartMapping(q, bus.Function("f", handler), eventbus.MappingOptions{PollWait: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	if b := <-got; strings.Join(b, ",") != "deep,fresh" {
		t.Fatalf("the function got %v, want deep and fresh", b)
	}
	if tr := <-traces; !strings.HasPrefix(tr, "Root=1-5759e988-bd862e3fe1be46a994272793;") || !strings.Contains(tr, ";Lineage=16:") {
		t.Fatalf("the invocation's trace %q: want the deep chain's root with 16 hops", tr)
	}
	m.Stop()
	if st := q.Stats(); st.InFlight != 1 || m.Stats().RecursiveInvocationsDropped != 1 {
		t.Fatalf("queue %+v, mapping %+v: want the looped message back in the queue and one drop", st, m.Stats())
	}
}

// SQS keeps a message's trace: the request's X-Amzn-Trace-Id for every
// message it sends, unless the AWSTraceHeader message system attribute
// overrides it; ReceiveMessage returns it when asked.
func TestSQSKeepsTheTraceHeader(t *testing.T) {
	bus, client := sqsEndpoint(t, eventbus.Options{Seed: 7})
	q, err := bus.CreateQueue("Q", eventbus.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	const header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0;Lineage=2:a87bd80c:0"
	const attribute = "Root=1-5759e988-bd862e3fe1be46a994272794;Parent=53995c3f42cd8ad9;Sampled=1;Lineage=7:a87bd80c:0"
	invocation := context.WithValue(ctx, "x-amzn-trace-id", header) //nolint:staticcheck // aws-lambda-go's key
	if _, err := client.SendMessage(invocation, &sqs.SendMessageInput{QueueUrl: aws.String(q.URL()), MessageBody: aws.String("by-header")}); err != nil {
		t.Fatal(err)
	}
	out, err := client.SendMessageBatch(invocation, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q.URL()), Entries: []types.SendMessageBatchRequestEntry{
		{Id: aws.String("a"), MessageBody: aws.String("batch-by-header")},
		{Id: aws.String("b"), MessageBody: aws.String("batch-by-attribute"), MessageSystemAttributes: map[string]types.MessageSystemAttributeValue{
			"AWSTraceHeader": {DataType: aws.String("String"), StringValue: aws.String(attribute)},
		}},
	}})
	if err != nil || len(out.Successful) != 2 {
		t.Fatalf("SendMessageBatch: %+v, %v", out, err)
	}
	if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q.URL()), MessageBody: aws.String("untraced")}); err != nil {
		t.Fatal(err)
	}
	_, err = client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q.URL()), MessageBody: aws.String("bad"), MessageSystemAttributes: map[string]types.MessageSystemAttributeValue{
		"AWSTraceHeader": {DataType: aws.String("Number"), StringValue: aws.String("1")},
	}})
	if err == nil || !strings.Contains(err.Error(), "InvalidParameterValue") {
		t.Fatalf("an AWSTraceHeader of type Number: %v", err)
	}

	want := map[string]string{"by-header": header, "batch-by-header": header, "batch-by-attribute": attribute, "untraced": ""}
	recv, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.URL()), MaxNumberOfMessages: 10,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAWSTraceHeader}})
	if err != nil || len(recv.Messages) != len(want) {
		t.Fatalf("ReceiveMessage: %d messages, %v", len(recv.Messages), err)
	}
	for _, m := range recv.Messages {
		if got := m.Attributes[string(types.MessageSystemAttributeNameAWSTraceHeader)]; got != want[*m.Body] {
			t.Errorf("%s: AWSTraceHeader %q, want %q", *m.Body, got, want[*m.Body])
		}
	}
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
