package lambdarun_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/lambdarun"
)

// buildBootstrap compiles testdata/<fn> as a provided.al2023-style
// bootstrap.
func buildBootstrap(t *testing.T, fn string) string {
	t.Helper()
	testenv.RequireCommands(t, "go")
	out := filepath.Join(t.TempDir(), "bootstrap")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/"+fn)
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test bootstrap: %v\n%s", err, b)
	}
	return out
}

func startFunction(t *testing.T) *lambdarun.Function {
	t.Helper()
	return startBootstrap(t, "sqsfn", "taskstate", map[string]string{"TETHER_CLUSTER": "tether-test", "AWS_ENDPOINT_URL": "http://127.0.0.1:1"})
}

// startBootstrap runs testdata/<fn> under the emulator as function name.
func startBootstrap(t *testing.T, fn, name string, env map[string]string) *lambdarun.Function {
	t.Helper()
	rie, err := lambdarun.FindRIE()
	if err != nil {
		testenv.Missing(t, err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	f, err := lambdarun.Start(ctx, lambdarun.Config{Bootstrap: buildBootstrap(t, fn), RIE: rie, FunctionName: name, Env: env})
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

// sqsWorld serves the bus's SQS API over HTTP as the world does: requests'
// X-Amzn-Trace-Id reach the API (eventbus.CarryTraceHeader).
func sqsWorld(t *testing.T) (*eventbus.Bus, string) {
	t.Helper()
	router := awsproto.NewRouter()
	hs := httptest.NewServer(eventbus.CarryTraceHeader(router))
	t.Cleanup(hs.Close)
	bus := eventbus.New(eventbus.Options{Seed: 1, TimeScale: 0.001, QueueURLBase: hs.URL})
	t.Cleanup(func() { _ = bus.Close() })
	bus.RegisterSQS(router)
	return bus, hs.URL
}

// Lambda's recursive loop detection over a real bootstrap: the invocation's
// trace goes to the emulator as X-Amzn-Trace-Id, to the runtime as
// Lambda-Runtime-Trace-Id (added by lambdarun's relay, as the emulator drops
// it), to the function's environment as _X_AMZN_TRACE_ID (aws-lambda-go),
// and back to SQS as X-Amzn-Trace-Id (aws-sdk-go-v2's own recursion
// detection: testdata/loopfn has no tether code), lineage intact. A function
// that re-sends its message runs 16 times; the 17th invocation is stopped at
// each of the message's receives until the queue's redrive policy moves it to
// the dead-letter queue. With RecursiveLoop: Allow the chain runs on.
func TestRecursiveLoopThroughTheRealBootstrap(t *testing.T) {
	for _, c := range []struct {
		name          string
		loop          eventbus.RecursiveLoop
		body          string
		invocations   int
		dropped       int
		deadLetter    string // the body that ends in the dead-letter queue, if any
		lineageOfLast string
	}{
		{"terminate", eventbus.RecursiveLoopTerminate, "0/100", eventbus.RecursionLimit, 3, "16/100", "Lineage=16:"},
		{"allow", eventbus.RecursiveLoopAllow, "0/20", 21, 0, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			bus, endpoint := sqsWorld(t)
			dlq, err := bus.CreateQueue("LoopDLQ", eventbus.QueueOptions{})
			if err != nil {
				t.Fatal(err)
			}
			q, err := bus.CreateQueue("LoopQueue", eventbus.QueueOptions{DeadLetter: dlq, MaxReceiveCount: 3})
			if err != nil {
				t.Fatal(err)
			}
			f := startBootstrap(t, "loopfn", "loop", map[string]string{"AWS_ENDPOINT_URL": endpoint, "LOOP_QUEUE_URL": q.URL()})
			m, err := bus.StartMapping(q, f, eventbus.MappingOptions{BatchSize: 1, PollWait: 20 * time.Millisecond, Function: "loop", RecursiveLoop: c.loop})
			if err != nil {
				t.Fatal(err)
			}
			q.Send(c.body, eventbus.SendOptions{})
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			if err := q.WaitEmpty(ctx); err != nil { // a sent message exists before its cause is deleted: empty = the chain ended
				t.Fatal(err)
			}
			m.Stop()
			st := m.Stats()
			if f.Invocations() != c.invocations || st.Invocations != c.invocations || st.RecursiveInvocationsDropped != c.dropped || bus.RecursiveInvocationsDropped() != c.dropped {
				t.Fatalf("%d invocations (mapping: %+v), bus drops %d; want %d invocations, %d dropped",
					f.Invocations(), st, bus.RecursiveInvocationsDropped(), c.invocations, c.dropped)
			}
			if c.deadLetter == "" {
				if n := dlq.Stats().Visible; n != 0 {
					t.Fatalf("dead-letter queue holds %d messages, want none", n)
				}
				if !strings.Contains(f.Output(), `"messageTrace":"Root=`) || !strings.Contains(f.Output(), `Lineage=20:`) {
					t.Fatalf("the function never saw a lineage of 20 hops:\n%s", f.Output())
				}
				return
			}
			dead, err := dlq.Receive(ctx, eventbus.ReceiveOptions{Max: 10})
			if err != nil || len(dead) != 1 || dead[0].Body != c.deadLetter || !strings.Contains(dead[0].Attributes["AWSTraceHeader"], c.lineageOfLast) {
				t.Fatalf("dead-letter queue: %+v, %v; want %q with %s", dead, err, c.deadLetter, c.lineageOfLast)
			}
		})
	}
}
