package dispatch

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/tether-ecs/tether/functions/internal/eventsrc"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/test/world/awsproto"
)

// recorder is a fake reconciler that records every call. keysFor and
// resultFor script its answers; unscripted keys converge.
type recorder struct {
	mu         sync.Mutex
	triggers   []reconcile.Trigger
	reconciled []reconcile.Key

	keysFor   func(reconcile.Trigger) ([]reconcile.Key, error)
	resultFor func(ctx context.Context, k reconcile.Key) (reconcile.Result, error)

	handBackFailed []reconcile.Key
}

// HandBackFailed records the keys dispatch could not hand back.
func (r *recorder) HandBackFailed(ctx context.Context, k reconcile.Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handBackFailed = append(r.handBackFailed, k)
}

func (r *recorder) Keys(ctx context.Context, t reconcile.Trigger) ([]reconcile.Key, error) {
	r.mu.Lock()
	r.triggers = append(r.triggers, t)
	r.mu.Unlock()
	if r.keysFor == nil {
		return nil, nil
	}
	return r.keysFor(t)
}

func (r *recorder) Reconcile(ctx context.Context, k reconcile.Key) (reconcile.Result, error) {
	r.mu.Lock()
	r.reconciled = append(r.reconciled, k)
	r.mu.Unlock()
	if r.resultFor == nil {
		return reconcile.Result{Reason: "converged"}, nil
	}
	return r.resultFor(ctx, k)
}

func (r *recorder) calls() ([]reconcile.Trigger, []reconcile.Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]reconcile.Trigger(nil), r.triggers...), append([]reconcile.Key(nil), r.reconciled...)
}

// sqsServer is an SQS endpoint speaking the JSON 1.0 protocol the SDK uses,
// recording SendMessage calls; fail makes it answer with an error.
type sqsServer struct {
	*httptest.Server
	mu   sync.Mutex
	sent []sqs.SendMessageInput
	fail *awsproto.Error
}

type sendMessageJSON struct {
	QueueUrl     string
	MessageBody  string
	DelaySeconds int32
}

func newSQSServer(t *testing.T) *sqsServer {
	t.Helper()
	s := &sqsServer{}
	r := awsproto.NewRouter()
	r.HandleJSON("sqs", "AmazonSQS", "com.amazonaws.sqs", "1.0", func(ctx context.Context, action string, body []byte) (any, error) {
		if action != "SendMessage" {
			return nil, awsproto.BadRequest("UnsupportedOperation", "%s", action)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.fail != nil {
			return nil, s.fail
		}
		var in sendMessageJSON
		if err := json.Unmarshal(body, &in); err != nil {
			return nil, awsproto.BadRequest("InvalidParameterValue", "%v", err)
		}
		s.sent = append(s.sent, sqs.SendMessageInput{QueueUrl: &in.QueueUrl, MessageBody: &in.MessageBody, DelaySeconds: in.DelaySeconds})
		sum := md5.Sum([]byte(in.MessageBody))
		return map[string]string{"MessageId": fmt.Sprintf("sent-%d", len(s.sent)), "MD5OfMessageBody": hex.EncodeToString(sum[:])}, nil
	})
	s.Server = httptest.NewServer(r)
	t.Cleanup(s.Close)
	return s
}

func (s *sqsServer) messages() []sqs.SendMessageInput {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sqs.SendMessageInput(nil), s.sent...)
}

func (s *sqsServer) setFail(e *awsproto.Error) {
	s.mu.Lock()
	s.fail = e
	s.mu.Unlock()
}

// client is the real SDK client pointed at the fake endpoint.
func (s *sqsServer) client() *sqs.Client {
	return sqs.New(sqs.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(s.URL),
		Credentials:      aws.AnonymousCredentials{},
		RetryMaxAttempts: 1,
	})
}

const queueURL = "https://sqs.us-east-1.amazonaws.com/123456789012/tether-demo-RetryQueue"

// newTestDispatcher wires a Dispatcher for cluster tether-demo to rec and an
// SQS endpoint; its logs go to the test log.
func newTestDispatcher(t *testing.T, rec Reconciler, srv *sqsServer, cfg Config) *Dispatcher {
	t.Helper()
	dec, err := eventsrc.NewDecoder("tether-demo")
	if err != nil {
		t.Fatal(err)
	}
	rq, err := NewSQSRequeuer(srv.client(), queueURL)
	if err != nil {
		t.Fatal(err)
	}
	return New(dec, rec, rq, slog.New(slog.NewJSONHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})), cfg)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

var _ io.Writer = testWriter{}

// withDeadline gives ctx a Lambda-like deadline d from now.
func withDeadline(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
