package dispatch

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/tether-ecs/tether/functions/internal/eventsrc"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/eventbus"
)

// A key handed back reaches the local world's SQS (test/world/eventbus)
// through the real SDK client and comes out as a retry message the decoder
// accepts, after its delay.
func TestRequeueThroughTheWorldsSQS(t *testing.T) {
	// 1 s of SQS time is 1 ms here.
	bus := eventbus.New(eventbus.Options{Region: "us-east-1", TimeScale: 0.001})
	t.Cleanup(func() { _ = bus.Close() })
	router := awsproto.NewRouter()
	bus.RegisterSQS(router)
	srv := httptest.NewServer(router)
	t.Cleanup(srv.Close)
	q, err := bus.CreateQueue("tether-demo-RetryQueue", eventbus.QueueOptions{VisibilityTimeout: 120 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	client := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), Credentials: aws.AnonymousCredentials{}})
	rq, err := NewSQSRequeuer(client, q.URL())
	if err != nil {
		t.Fatal(err)
	}
	key := reconcile.Key{Cluster: "tether-demo", Volume: "rexray-vol"}
	if err := rq.Requeue(context.Background(), key, `{"s":"attach","v":"vol-0123456789abcdef0"}`, 2500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := q.Receive(ctx, eventbus.ReceiveOptions{Max: 10, Wait: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d messages on the retry queue, want 1", len(msgs))
	}
	dec, _ := eventsrc.NewDecoder("tether-demo")
	ev, err := dec.Decode([]byte(msgs[0].Body))
	if err != nil {
		t.Fatalf("retry message %s: %v", msgs[0].Body, err)
	}
	if want := (reconcile.Retry{Key: key, Hint: `{"s":"attach","v":"vol-0123456789abcdef0"}`}); ev.Trigger != want {
		t.Errorf("got %#v, want %#v", ev.Trigger, want)
	}
}
