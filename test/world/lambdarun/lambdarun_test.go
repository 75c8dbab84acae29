package lambdarun_test

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/lambdarun"
)

// buildBootstrap compiles testdata/sqsfn as a provided.al2023-style
// bootstrap.
func buildBootstrap(t *testing.T) string {
	t.Helper()
	testenv.RequireCommands(t, "go")
	out := filepath.Join(t.TempDir(), "bootstrap")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/sqsfn")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test bootstrap: %v\n%s", err, b)
	}
	return out
}

func startFunction(t *testing.T) *lambdarun.Function {
	t.Helper()
	rie, err := lambdarun.FindRIE()
	if err != nil {
		testenv.Missing(t, err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	f, err := lambdarun.Start(ctx, lambdarun.Config{
		Bootstrap: buildBootstrap(t), RIE: rie, FunctionName: "taskstate",
		Env: map[string]string{"TETHER_CLUSTER": "tether-test", "AWS_ENDPOINT_URL": "http://127.0.0.1:1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Stop(); err != nil {
			t.Errorf("stopping the emulator: %v", err)
		}
		if t.Failed() {
			t.Logf("emulator output:\n%s", f.Output())
		}
	})
	return f
}

func TestBootstrapUnderTheEmulatorAnswersAnSQSBatch(t *testing.T) {
	f := startFunction(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, ok := f.InitDuration(); ok {
		t.Fatal("an init duration before the first invoke: the emulator initialises lazily")
	}
	batch := events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "m-1", Body: "ok", EventSource: "aws:sqs"},
		{MessageId: "m-2", Body: "fail please", EventSource: "aws:sqs"},
	}}
	payload, _ := json.Marshal(batch)
	out, err := f.Invoke(ctx, payload)
	if err != nil {
		t.Fatal(err)
	}
	var resp events.SQSEventResponse
	if err := json.Unmarshal(out, &resp); err != nil || len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "m-2" {
		t.Fatalf("response %s (%v): want m-2 reported as failed", out, err)
	}
	if d, ok := f.InitDuration(); !ok || d <= 0 {
		t.Fatalf("cold init not measured: %v %v", d, ok)
	}
	logs := f.Output()
	if !strings.Contains(logs, `"cluster":"tether-test"`) || !strings.Contains(logs, `"endpoint":"http://127.0.0.1:1"`) {
		t.Fatalf("the function did not get its environment:\n%s", logs)
	}

	crash, _ := json.Marshal(events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m-3", Body: "crash"}}})
	_, err = f.Invoke(ctx, crash)
	var fe *lambdarun.FunctionError
	if !errors.As(err, &fe) || fe.Message != "crash requested" {
		t.Fatalf("function error: %v", err)
	}
	if f.Invocations() != 2 {
		t.Fatalf("invocations %d", f.Invocations())
	}
}

func TestMappingDrivesTheRealBootstrap(t *testing.T) {
	f := startFunction(t)
	bus := eventbus.New(eventbus.Options{Seed: 1, TimeScale: 0.001})
	defer bus.Close()
	dlq, _ := bus.CreateQueue("TaskDLQ", eventbus.QueueOptions{})
	q, err := bus.CreateQueue("TaskQueue", eventbus.QueueOptions{DeadLetter: dlq, MaxReceiveCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"ok-1", "fail-1", "ok-2"} {
		q.Send(body, eventbus.SendOptions{})
	}
	m, err := bus.StartMapping(q, f, eventbus.MappingOptions{BatchSize: 10, ReportBatchItemFailures: true, PollWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := q.WaitEmpty(ctx); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	if st := m.Stats(); st.Deleted != 2 || st.ItemFailures != 2 || st.FunctionErrors != 0 {
		t.Fatalf("mapping over the real bootstrap: %+v", st)
	}
	if dlq.Stats().Visible != 1 {
		t.Fatalf("the failing message should be in the DLQ: %+v", dlq.Stats())
	}
}
