package functions_test

// The three functions as Lambda runs them: static bootstraps built by this
// directory's Makefile, run under the Lambda runtime interface emulator
// (test/world/lambdarun) with the events/ samples, against an AWS endpoint
// (AWS_ENDPOINT_URL) that refuses every call.

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/lambdarun"
)

var functionNames = []string{"taskstate", "drain", "sweep", "hosts"}

// makeTarget runs a target of functions/Makefile.
func makeTarget(t *testing.T, args ...string) {
	t.Helper()
	testenv.RequireCommands(t, "make", "go")
	cmd := exec.Command("make", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
}

// checkStaticStripped opens an executable and checks what Lambda's
// provided.al2023 needs of a bootstrap: ELF for machine, no interpreter
// (static), no symbol table (stripped).
func checkStaticStripped(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&0o111 == 0 {
		t.Errorf("%s is not executable", path)
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s: machine %v, want %v", path, f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked", path)
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s is not stripped", path)
	}
}

func nativeMachine(t *testing.T) elf.Machine {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.Machine
}

// refusingAWS is an endpoint for EC2, ECS, SSM and SQS that answers every
// call with the service's access-denied error, as an account without
// tether's permissions would.
func refusingAWS(t *testing.T) (*awsproto.Router, string) {
	r := awsproto.NewRouter()
	deny := func(code string) awsproto.JSONHandler {
		return func(ctx context.Context, action string, body []byte) (any, error) {
			return nil, awsproto.BadRequest(code, "not authorized to perform %s", action)
		}
	}
	r.HandleJSON("ecs", "AmazonEC2ContainerServiceV20141113", "com.amazonaws.ecs", "1.1", deny("AccessDeniedException"))
	r.HandleJSON("ssm", "AmazonSSM", "", "1.1", deny("AccessDeniedException"))
	r.HandleJSON("sqs", "AmazonSQS", "com.amazonaws.sqs", "1.0", deny("AccessDenied"))
	r.HandleEC2(func(ctx context.Context, action string, form url.Values) (any, error) {
		return nil, awsproto.Errorf(403, "UnauthorizedOperation", "You are not authorized to perform this operation.")
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv.URL
}

func TestBootstraps(t *testing.T) {
	out := t.TempDir()
	makeTarget(t, "bootstraps", "OUT="+out)

	t.Run("static and stripped", func(t *testing.T) {
		for _, fn := range functionNames {
			checkStaticStripped(t, filepath.Join(out, fn, "bootstrap"), nativeMachine(t))
		}
	})

	// What `sam build` runs: linux/arm64 into ARTIFACTS_DIR.
	t.Run("sam build target", func(t *testing.T) {
		artifacts := t.TempDir()
		makeTarget(t, "build-SweepFunction", "ARTIFACTS_DIR="+artifacts)
		checkStaticStripped(t, filepath.Join(artifacts, "bootstrap"), elf.EM_AARCH64)
	})

	t.Run("bad configuration fails the init", func(t *testing.T) {
		cmd := exec.Command(filepath.Join(out, "taskstate", "bootstrap"))
		cmd.Env = []string{"PATH=/usr/bin:/bin", "AWS_REGION=us-east-1", "TETHER_RETRY_QUEUE_URL=https://sqs.us-east-1.amazonaws.com/123456789012/q"}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("bootstrap without TETHER_CLUSTER: %v, want exit status 1", err)
		}
		if !strings.Contains(stderr.String(), "TETHER_CLUSTER") {
			t.Errorf("stderr does not name the missing variable: %q", stderr.String())
		}
	})

	rie, err := lambdarun.FindRIE()
	if err != nil {
		testenv.Missing(t, err.Error())
	}
	router, endpoint := refusingAWS(t)
	start := func(t *testing.T, fn string) *lambdarun.Function {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		f, err := lambdarun.Start(ctx, lambdarun.Config{
			Bootstrap: filepath.Join(out, fn, "bootstrap"), RIE: rie, FunctionName: fn, Region: "us-east-1",
			Timeout: 30 * time.Second,
			Env: map[string]string{
				"AWS_ENDPOINT_URL":        endpoint,
				"TETHER_CLUSTER":          "tether-demo",
				"TETHER_MOUNT_DOCUMENT":   "tether-demo-mount",
				"TETHER_UNMOUNT_DOCUMENT": "tether-demo-unmount",
				"TETHER_STATUS_DOCUMENT":  "tether-demo-status",
				"TETHER_RETRY_QUEUE_URL":  "https://sqs.us-east-1.amazonaws.com/123456789012/tether-demo-RetryQueue",
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := f.Stop(); err != nil {
				t.Errorf("stopping %s: %v", fn, err)
			}
			if t.Failed() {
				t.Logf("%s output:\n%s", fn, f.Output())
			}
		})
		return f
	}
	invoke := func(t *testing.T, f *lambdarun.Function, sample string) ([]byte, error) {
		payload, err := os.ReadFile(filepath.Join("..", "events", sample))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return f.Invoke(ctx, payload)
	}

	t.Run("taskstate answers a batch", func(t *testing.T) {
		f := start(t, "taskstate")
		body, err := invoke(t, f, "sqs/batch-handoff.json")
		if err != nil {
			t.Fatal(err)
		}
		var batch events.SQSEvent
		raw, _ := os.ReadFile(filepath.Join("..", "events", "sqs", "batch-handoff.json"))
		if err := json.Unmarshal(raw, &batch); err != nil {
			t.Fatal(err)
		}
		// Every message that needs AWS goes back (access denied); the
		// Fargate task and the malformed body are acknowledged.
		var want []string
		for _, r := range batch.Records {
			if !strings.Contains(r.Body, `"FARGATE"`) && !strings.HasPrefix(r.Body, `{"version":"0","id":"not json`) {
				want = append(want, r.MessageId)
			}
		}
		var resp events.SQSEventResponse
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Fatalf("response %s: %v", body, err)
		}
		var got []string
		for _, f := range resp.BatchItemFailures {
			got = append(got, f.ItemIdentifier)
		}
		slices.Sort(got)
		slices.Sort(want)
		if len(want) != 4 || !slices.Equal(got, want) {
			t.Errorf("batchItemFailures %v, want %v", got, want)
		}
		logs := f.Output()
		for _, s := range []string{`"function":"taskstate"`, `"msg":"message dropped (poison)"`, `"messageId":"` + want[0] + `"`} {
			if !strings.Contains(logs, s) {
				t.Errorf("logs lack %s", s)
			}
		}
		if calls, _ := router.Counts(); len(calls) == 0 {
			t.Error("no request reached AWS_ENDPOINT_URL")
		}
		if d, ok := f.InitDuration(); ok {
			t.Logf("taskstate cold init %v", d)
		}
		t.Logf("taskstate output:\n%s", logs)
	})

	t.Run("drain answers a batch", func(t *testing.T) {
		f := start(t, "drain")
		body, err := invoke(t, f, "sqs/instance-draining.json")
		if err != nil {
			t.Fatal(err)
		}
		var resp events.SQSEventResponse
		if err := json.Unmarshal(body, &resp); err != nil || len(resp.BatchItemFailures) != 1 {
			t.Errorf("response %s (%v): want the draining instance's message back", body, err)
		}
		body, err = invoke(t, f, "sqs/foreign-other-cluster.json")
		if err != nil || string(body) != `{"batchItemFailures":[]}` {
			t.Errorf("foreign event: %s, %v; want it acknowledged", body, err)
		}
	})

	t.Run("sweep reports an unfinished sweep as an error", func(t *testing.T) {
		f := start(t, "sweep")
		_, err := invoke(t, f, "scheduled.json")
		var fe *lambdarun.FunctionError
		if !errors.As(err, &fe) || !strings.Contains(fe.Message, "not fully reconciled") {
			t.Errorf("sweep with AWS refusing: %v, want a function error", err)
		}
	})
}
