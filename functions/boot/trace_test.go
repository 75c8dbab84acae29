package boot

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/tether-ecs/tether/functions/internal/dispatch"
)

// sqsRecorder answers SendMessage (JSON protocol) and records each
// request's X-Amzn-Trace-Id.
type sqsRecorder struct {
	mu     sync.Mutex
	traces []string
}

func (r *sqsRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var in struct{ MessageBody string }
	body, _ := io.ReadAll(req.Body)
	_ = json.Unmarshal(body, &in)
	r.mu.Lock()
	r.traces = append(r.traces, req.Header.Get(TraceHeader))
	r.mu.Unlock()
	sum := md5.Sum([]byte(in.MessageBody))
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_ = json.NewEncoder(w).Encode(map[string]string{"MessageId": "m-1", "MD5OfMessageBody": hex.EncodeToString(sum[:])})
}

func (r *sqsRecorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.traces[len(r.traces)-1]
}

// The real SDK over HTTP: a SendMessage made during an invocation carries
// the invocation's trace, from the context when the process-wide variable
// the SDK reads is not there (the local world's in-process functions), and
// the SDK's own value when it is (a bootstrap under Lambda).
func TestPropagateTrace(t *testing.T) {
	rec := &sqsRecorder{}
	hs := httptest.NewServer(rec)
	defer hs.Close()
	client := sqs.New(sqs.Options{
		BaseEndpoint: aws.String(hs.URL), Region: "us-west-2", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDWORLD", "secret", ""),
		APIOptions:  []func(*middleware.Stack) error{PropagateTrace},
	})
	send := func(ctx context.Context) string {
		t.Helper()
		if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(hs.URL + "/123456789012/q"), MessageBody: aws.String("x")}); err != nil {
			t.Fatal(err)
		}
		return rec.last()
	}
	const inContext = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0;Lineage=3:a87bd80c:0"
	invocation := context.WithValue(context.Background(), lambdaTraceKey, inContext) //nolint:staticcheck // aws-lambda-go's key

	for _, k := range []string{"AWS_LAMBDA_FUNCTION_NAME", "_X_AMZN_TRACE_ID"} {
		t.Setenv(k, "") // restored after the test; unset now: not a Lambda environment
		if err := os.Unsetenv(k); err != nil {
			t.Fatal(err)
		}
	}
	if got := send(invocation); got != inContext {
		t.Errorf("in-process invocation: X-Amzn-Trace-Id %q, want the context's %q", got, inContext)
	}
	if got := send(context.Background()); got != "" {
		t.Errorf("outside an invocation: X-Amzn-Trace-Id %q, want none", got)
	}

	// Under Lambda, aws-lambda-go sets _X_AMZN_TRACE_ID and the SDK's
	// recursion detection sends it; this middleware leaves it alone.
	const fromEnv = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0000000000000001;Sampled=0;Lineage=4:a87bd80c:0"
	t.Setenv("AWS_LAMBDA_FUNCTION_NAME", "tether-TaskStateFunction")
	t.Setenv("_X_AMZN_TRACE_ID", fromEnv)
	if got := send(invocation); got != fromEnv {
		t.Errorf("under Lambda: X-Amzn-Trace-Id %q, want the SDK's %q", got, fromEnv)
	}
	if got := send(context.Background()); got != fromEnv {
		t.Errorf("under Lambda without a context value: X-Amzn-Trace-Id %q, want the SDK's %q", got, fromEnv)
	}
}

// Setup gives every client it builds PropagateTrace, without changing the
// caller's configuration.
func TestSetupAddsPropagateTrace(t *testing.T) {
	cfg := aws.Config{Region: "us-east-1", APIOptions: make([]func(*middleware.Stack) error, 0, 4)}
	var seen aws.Config
	_, err := Setup(context.Background(), "taskstate", envOf(goodEnv()), cfg, io.Discard,
		func(_ context.Context, _ func(string) string, c aws.Config, _, _ io.Writer) (dispatch.Reconciler, error) {
			seen = c
			return fakeCore{}, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen.APIOptions) != 1 || cfg.APIOptions[:1][0] != nil {
		t.Fatalf("the core got %d APIOptions; the caller's backing array changed: %v", len(seen.APIOptions), cfg.APIOptions[:1][0] != nil)
	}
	stack := middleware.NewStack("probe", smithyhttp.NewStackRequest)
	if err := seen.APIOptions[0](stack); err != nil {
		t.Fatal(err)
	}
	if _, ok := stack.Build.Get("TetherPropagateTrace"); !ok {
		t.Fatalf("the core's APIOption is not PropagateTrace: build step %v", stack.Build.List())
	}
}
