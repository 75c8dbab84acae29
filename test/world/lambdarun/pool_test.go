package lambdarun_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/lambdarun"
)

func sqsPayload(t *testing.T, body string) []byte {
	t.Helper()
	b, err := json.Marshal(events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m-1", Body: body, EventSource: "aws:sqs"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A pool makes environments as Lambda does: one for invocations that come
// one at a time, a second only when an invocation arrives while the first
// is busy, never more than its concurrency.
func TestPoolMakesAnEnvironmentOnlyWhenAllAreBusy(t *testing.T) {
	rie, err := lambdarun.FindRIE()
	if err != nil {
		testenv.Missing(t, err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	p, err := lambdarun.StartPool(ctx, lambdarun.Config{Bootstrap: buildBootstrap(t, "sqsfn"), RIE: rie, FunctionName: "pooled", Timeout: time.Minute}, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stopping the pool: %v", err)
		}
	})
	for range 3 {
		if _, err := p.Invoke(ctx, sqsPayload(t, "ok")); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(p.Functions()); n != 1 {
		t.Fatalf("%d environments after three invocations one at a time, want 1", n)
	}

	release := filepath.Join(t.TempDir(), "release")
	held := make(chan error, 1)
	go func() {
		_, err := p.Invoke(ctx, sqsPayload(t, "wait:"+release))
		held <- err
	}()
	// Wait (bounded by ctx) until the held invocation has the only environment.
	for {
		if _, err := os.Stat(release + ".held"); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the held invocation never started")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if _, err := p.Invoke(ctx, sqsPayload(t, "ok")); err != nil {
		t.Fatal(err)
	}
	if n := len(p.Functions()); n != 2 {
		t.Fatalf("%d environments after an invocation while the only one was busy, want 2", n)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-held; err != nil {
		t.Fatalf("held invocation: %v", err)
	}
	if n := len(p.Functions()); n != 2 {
		t.Fatalf("%d environments, want at most the pool's 2", n)
	}
}
