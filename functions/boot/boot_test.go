package boot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/tether-ecs/tether/functions/internal/dispatch"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func goodEnv() map[string]string {
	return map[string]string{
		EnvCluster:       "tether-demo",
		EnvRetryQueueURL: "https://sqs.us-east-1.amazonaws.com/123456789012/tether-demo-RetryQueue",
		"AWS_REGION":     "us-east-1",
	}
}

func TestLoadEnv(t *testing.T) {
	e := goodEnv()
	e[EnvLogLevel], e[EnvConcurrency] = "DEBUG", "4"
	env, err := LoadEnv(envOf(e))
	if err != nil {
		t.Fatal(err)
	}
	if env.Cluster != "tether-demo" || env.LogLevel != slog.LevelDebug || env.Concurrency != 4 {
		t.Errorf("got %+v", env)
	}
	_, err = LoadEnv(envOf(map[string]string{EnvLogLevel: "loud", EnvConcurrency: "0"}))
	if err == nil {
		t.Fatal("empty environment accepted")
	}
	for _, name := range []string{EnvCluster, EnvRetryQueueURL, EnvLogLevel, EnvConcurrency} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

type fakeCore struct{}

func (fakeCore) Keys(ctx context.Context, t reconcile.Trigger) ([]reconcile.Key, error) {
	return nil, nil
}
func (fakeCore) Reconcile(ctx context.Context, k reconcile.Key) (reconcile.Result, error) {
	return reconcile.Result{}, nil
}

func fake(ctx context.Context, getenv func(string) string, awsCfg aws.Config, logs, metrics io.Writer) (dispatch.Reconciler, error) {
	return fakeCore{}, nil
}

func TestSetup(t *testing.T) {
	var out bytes.Buffer
	d, err := Setup(context.Background(), "taskstate", envOf(goodEnv()), aws.Config{Region: "us-east-1"}, &out, fake)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.HandleSQS(context.Background(), events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m1", Body: "nonsense"}}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("HandleSQS = %+v, %v", resp, err)
	}
	// Logs are JSON lines on the given writer, naming the function.
	line := strings.SplitN(strings.TrimSpace(out.String()), "\n", 2)[0]
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["function"] != "taskstate" {
		t.Errorf("log line %q (%v)", line, err)
	}
}

func TestSetupRefusesBadConfiguration(t *testing.T) {
	bad := []map[string]string{
		{EnvRetryQueueURL: goodEnv()[EnvRetryQueueURL]},
		{EnvCluster: "tether-demo"},
		{EnvCluster: "arn:aws:ecs:us-east-1:123456789012:cluster/tether-demo", EnvRetryQueueURL: goodEnv()[EnvRetryQueueURL]},
		{EnvCluster: "tether-demo", EnvRetryQueueURL: "tether-demo-RetryQueue"},
	}
	for _, e := range bad {
		if _, err := Setup(context.Background(), "drain", envOf(e), aws.Config{Region: "us-east-1"}, io.Discard, fake); err == nil {
			t.Errorf("Setup accepted %v", e)
		}
	}
	boom := errors.New("core: TETHER_MOUNT_DOCUMENT is not set")
	_, err := Setup(context.Background(), "drain", envOf(goodEnv()), aws.Config{Region: "us-east-1"}, io.Discard,
		func(context.Context, func(string) string, aws.Config, io.Writer, io.Writer) (dispatch.Reconciler, error) {
			return nil, boom
		})
	if !errors.Is(err, boom) {
		t.Errorf("core error lost: %v", err)
	}
}

func TestHandlerKinds(t *testing.T) {
	cfg := aws.Config{Region: "us-east-1"}
	env := goodEnv()
	env["TETHER_MOUNT_DOCUMENT"], env["TETHER_UNMOUNT_DOCUMENT"] = "tether-mount", "tether-unmount"
	for function, want := range map[string]string{
		"taskstate": "func(context.Context, events.SQSEvent) (events.SQSEventResponse, error)",
		"drain":     "func(context.Context, events.SQSEvent) (events.SQSEventResponse, error)",
		"sweep":     "func(context.Context, json.RawMessage) error",
	} {
		h, err := Handler(context.Background(), function, envOf(env), cfg, io.Discard)
		if err != nil {
			t.Fatalf("Handler(%s): %v", function, err)
		}
		if got := fmt.Sprintf("%T", h); got != want {
			t.Errorf("Handler(%s) is %s, want %s", function, got, want)
		}
	}
	if _, err := Handler(context.Background(), "../evil", envOf(env), cfg, io.Discard); err == nil {
		t.Error("Handler accepted an unknown function")
	}
}
