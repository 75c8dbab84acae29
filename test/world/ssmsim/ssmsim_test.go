package ssmsim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// scriptHost runs nothing: it records the scripts (and their environment)
// and answers with the result (or error) the test set; block holds a
// script until released.
type scriptHost struct {
	id string

	mu      sync.Mutex
	scripts []string
	envs    []map[string]string
	result  worldapi.CommandResult
	err     error
	block   chan struct{}
}

func (h *scriptHost) InstanceID() string { return h.id }
func (h *scriptHost) RunShellScript(ctx context.Context, script string, timeout time.Duration) (worldapi.CommandResult, error) {
	return h.RunShellScriptEnv(ctx, script, nil, timeout)
}
func (h *scriptHost) RunShellScriptEnv(ctx context.Context, script string, env map[string]string, timeout time.Duration) (worldapi.CommandResult, error) {
	h.mu.Lock()
	h.scripts, h.envs = append(h.scripts, script), append(h.envs, env)
	res, err, block := h.result, h.err, h.block
	h.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return worldapi.CommandResult{}, ctx.Err()
		}
	}
	return res, err
}
func (h *scriptHost) lastScript() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.scripts) == 0 {
		return ""
	}
	return h.scripts[len(h.scripts)-1]
}
func (h *scriptHost) lastEnv() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.envs) == 0 {
		return nil
	}
	return h.envs[len(h.envs)-1]
}
func (h *scriptHost) ran() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.scripts)
}
func (h *scriptHost) set(res worldapi.CommandResult, err error) {
	h.mu.Lock()
	h.result, h.err = res, err
	h.mu.Unlock()
}
func (h *scriptHost) AttachDevice(context.Context, worldapi.Attachment) error { return nil }
func (h *scriptHost) DetachDevice(context.Context, string, bool) error        { return nil }
func (h *scriptHost) Attributes(context.Context) (map[string]string, error)   { return nil, nil }
func (h *scriptHost) StartTask(context.Context, worldapi.TaskSpec, func(worldapi.TaskUpdate)) error {
	return errors.New("not used")
}
func (h *scriptHost) StopTask(context.Context, string) error { return errors.New("not used") }
func (h *scriptHost) Kill() error                            { return nil }
func (h *scriptHost) RestartAgent(context.Context) error     { return nil }
func (h *scriptHost) Close() error                           { return nil }

const (
	instA = "i-0aaaaaaaaaaaaaaaa"
	instB = "i-0bbbbbbbbbbbbbbbb"
	stack = "tether-test"
)

type world struct {
	srv  *Server
	ssm  *ssm.Client
	url  string
	docs map[string]string
	a, b *scriptHost
}

func newWorld(t *testing.T, profile latency.Profile) *world {
	t.Helper()
	return newWorldWith(t, Config{Profile: profile})
}

// newWorldWith is newWorld with more of the Config (Seed and Logger are
// the tests').
func newWorldWith(t *testing.T, cfg Config) *world {
	t.Helper()
	cfg.Seed, cfg.Logger = 3, slog.New(slog.NewJSONHandler(io.Discard, nil))
	srv := New(cfg)
	docs, err := srv.LoadTemplate("testdata/template.yaml", stack)
	if err != nil {
		t.Fatal(err)
	}
	r := awsproto.NewRouter()
	srv.Register(r)
	hs := httptest.NewServer(r)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	w := &world{srv: srv, url: hs.URL, docs: docs, a: &scriptHost{id: instA}, b: &scriptHost{id: instB}}
	srv.SetThrottling(false) // tests poll fast; TestThrottlingAndFaults turns it on
	if err := srv.AddInstance(instA, w.a); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddInstance(instB, w.b); err != nil {
		t.Fatal(err)
	}
	w.ssm = newClient(hs.URL)
	return w
}

// newClient is the real SDK client on the world's endpoint, retrying
// throttles at once.
func newClient(url string) *ssm.Client {
	return ssm.New(ssm.Options{Region: "us-west-2", BaseEndpoint: aws.String(url),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", ""),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
		})})
}

func code(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("not an API error: %v", err)
	}
	return ae.ErrorCode()
}

// waitInvocation polls GetCommandInvocation (bounded) until the status is
// final, as the reconciler does.
func (w *world) waitInvocation(t *testing.T, id, inst string) *ssm.GetCommandInvocationOutput {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		out, err := w.ssm.GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{CommandId: aws.String(id), InstanceId: aws.String(inst)})
		if err == nil {
			switch out.Status {
			case types.CommandInvocationStatusSuccess, types.CommandInvocationStatusFailed, types.CommandInvocationStatusTimedOut:
				return out
			}
			last = string(out.Status)
		} else {
			last = err.Error()
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("waited 10s for command %s on %s to finish; last: %s", id, inst, last)
	return nil
}

func TestTemplateDocumentsLoaded(t *testing.T) {
	w := newWorld(t, latency.Instant())
	want := map[string]string{"MountDocument": stack + "-mount", "UnmountDocument": stack + "-unmount", "StatusDocument": stack + "-status"}
	if len(w.docs) != 3 {
		t.Fatalf("documents %v", w.docs)
	}
	for k, v := range want {
		if w.docs[k] != v {
			t.Errorf("%s named %q, want %q", k, w.docs[k], v)
		}
	}
}

func TestSendCommandRunsDocumentWithParameters(t *testing.T) {
	w := newWorld(t, latency.Instant())
	ctx := context.Background()
	w.a.set(worldapi.CommandResult{Stdout: `{"volumeId":"vol-0123456789abcdef0"}` + "\n", Stderr: "log line\n", ExitCode: 0}, nil)
	out, err := w.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String(stack + "-mount"), InstanceIds: []string{instA},
		Parameters: map[string][]string{"VolumeId": {"vol-0123456789abcdef0"}, "VolumeName": {"rexray-vol"}}, Comment: aws.String("mount rexray-vol")})
	if err != nil {
		t.Fatal(err)
	}
	c := out.Command
	if c.Status != types.CommandStatusPending || c.TargetCount != 1 || len(aws.ToString(c.CommandId)) != 36 ||
		strings.Join(c.Parameters["FsType"], ",") != "ext4" || aws.ToString(c.DocumentName) != stack+"-mount" {
		t.Errorf("SendCommand answered %+v", c)
	}
	inv := w.waitInvocation(t, *c.CommandId, instA)
	if inv.Status != types.CommandInvocationStatusSuccess || inv.ResponseCode != 0 || aws.ToString(inv.StatusDetails) != "Success" ||
		aws.ToString(inv.StandardOutputContent) != `{"volumeId":"vol-0123456789abcdef0"}`+"\n" || aws.ToString(inv.StandardErrorContent) != "log line\n" ||
		aws.ToString(inv.PluginName) != "mount" || aws.ToString(inv.ExecutionStartDateTime) == "" || aws.ToString(inv.ExecutionEndDateTime) == "" {
		t.Errorf("invocation %+v", inv)
	}
	want := "exec /usr/local/bin/tether-agent mount --volume-id 'vol-0123456789abcdef0' --name 'rexray-vol' --fstype 'ext4' --device '' --json\n"
	if got := w.a.lastScript(); got != want {
		t.Errorf("script:\n%q\nwant\n%q", got, want)
	}

	// The SDK's waiter for command completion works against it.
	out2, err := w.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String(stack + "-status"),
		Targets: []types.Target{{Key: aws.String("InstanceIds"), Values: []string{instB}}}})
	if err != nil {
		t.Fatal(err)
	}
	waiter := ssm.NewCommandExecutedWaiter(w.ssm, func(o *ssm.CommandExecutedWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Millisecond, 5*time.Millisecond
	})
	if err := waiter.Wait(ctx, &ssm.GetCommandInvocationInput{CommandId: out2.Command.CommandId, InstanceId: aws.String(instB)}, 10*time.Second); err != nil {
		t.Errorf("CommandExecuted waiter: %v", err)
	}
	if got := w.b.lastScript(); got != "tether-agent status --json\n" {
		t.Errorf("status script %q", got)
	}

	// A failing script: Failed with its exit code.
	w.a.set(worldapi.CommandResult{Stderr: "device busy", ExitCode: 3}, nil)
	out3, err := w.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String(stack + "-unmount"), InstanceIds: []string{instA},
		Parameters: map[string][]string{"VolumeId": {"vol-0123456789abcdef0"}, "VolumeName": {"rexray-vol"}}})
	if err != nil {
		t.Fatal(err)
	}
	inv = w.waitInvocation(t, *out3.Command.CommandId, instA)
	if inv.Status != types.CommandInvocationStatusFailed || inv.ResponseCode != 3 || aws.ToString(inv.StandardErrorContent) != "device busy" {
		t.Errorf("failed invocation %+v", inv)
	}
	if got := w.a.lastScript(); !strings.Contains(got, "--volume-id 'vol-0123456789abcdef0'") || !strings.Contains(got, "--force=false") {
		t.Errorf("unmount script %q", got)
	}

	// ListCommands (newest first, filters) and ListCommandInvocations with details.
	lc, err := w.ssm.ListCommands(ctx, &ssm.ListCommandsInput{Filters: []types.CommandFilter{
		{Key: types.CommandFilterKeyDocumentName, Value: aws.String(stack + "-mount")},
		{Key: types.CommandFilterKeyInvokedAfter, Value: aws.String(time.Now().Add(-time.Minute).UTC().Format(time.RFC3339))}}})
	if err != nil || len(lc.Commands) != 1 || aws.ToString(lc.Commands[0].CommandId) != *c.CommandId || lc.Commands[0].Status != types.CommandStatusSuccess ||
		lc.Commands[0].CompletedCount != 1 {
		t.Errorf("ListCommands by document: %+v %v", lc, err)
	}
	lc, err = w.ssm.ListCommands(ctx, &ssm.ListCommandsInput{InstanceId: aws.String(instA)})
	if err != nil || len(lc.Commands) != 2 || aws.ToString(lc.Commands[0].CommandId) != *out3.Command.CommandId || lc.Commands[0].Status != types.CommandStatusFailed {
		t.Errorf("ListCommands by instance: %+v %v", lc, err)
	}
	if _, err := w.ssm.ListCommands(ctx, &ssm.ListCommandsInput{Filters: []types.CommandFilter{{Key: "Color", Value: aws.String("x")}}}); code(t, err) != "ValidationException" { // not in the model's enum of filter keys
		t.Errorf("unknown filter: %v", err)
	}
	li, err := w.ssm.ListCommandInvocations(ctx, &ssm.ListCommandInvocationsInput{CommandId: out3.Command.CommandId, Details: true})
	if err != nil || len(li.CommandInvocations) != 1 || len(li.CommandInvocations[0].CommandPlugins) != 1 ||
		li.CommandInvocations[0].CommandPlugins[0].ResponseCode != 3 ||
		aws.ToString(li.CommandInvocations[0].CommandPlugins[0].Output) != "\n----------ERROR-------\ndevice busy" {
		t.Errorf("ListCommandInvocations: %+v %v", li, err)
	}
	p := ssm.NewListCommandsPaginator(w.ssm, &ssm.ListCommandsInput{MaxResults: aws.Int32(1)})
	n := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Commands)
	}
	if n != 3 {
		t.Errorf("paged through %d commands, want 3", n)
	}
}

func TestSendCommandValidation(t *testing.T) {
	w := newWorld(t, latency.Instant())
	ctx := context.Background()
	mount := aws.String(stack + "-mount")
	good := map[string][]string{"VolumeId": {"vol-0123456789abcdef0"}, "VolumeName": {"db"}}
	with := func(k, v string) map[string][]string {
		m := map[string][]string{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = []string{v}
		return m
	}
	for name, c := range map[string]struct {
		in   *ssm.SendCommandInput
		want string
	}{
		"bad volume id":     {&ssm.SendCommandInput{DocumentName: mount, InstanceIds: []string{instA}, Parameters: with("VolumeId", "vol-1; rm -rf /")}, "InvalidParameters"},
		"bad fstype":        {&ssm.SendCommandInput{DocumentName: mount, InstanceIds: []string{instA}, Parameters: with("FsType", "btrfs")}, "InvalidParameters"},
		"shell in name":     {&ssm.SendCommandInput{DocumentName: mount, InstanceIds: []string{instA}, Parameters: with("VolumeName", "x'$(id)'")}, "InvalidParameters"},
		"unknown parameter": {&ssm.SendCommandInput{DocumentName: mount, InstanceIds: []string{instA}, Parameters: with("Color", "red")}, "InvalidParameters"},
		"missing required":  {&ssm.SendCommandInput{DocumentName: mount, InstanceIds: []string{instA}, Parameters: map[string][]string{"VolumeId": {"vol-0123456789abcdef0"}}}, "InvalidParameters"},
		"two values":        {&ssm.SendCommandInput{DocumentName: mount, InstanceIds: []string{instA}, Parameters: with("VolumeName", "a")}, ""},
		"no document":       {&ssm.SendCommandInput{DocumentName: aws.String("nope"), InstanceIds: []string{instA}}, "InvalidDocument"},
		"unknown instance":  {&ssm.SendCommandInput{DocumentName: mount, InstanceIds: []string{"i-0ffffffffffffffff"}, Parameters: good}, "InvalidInstanceId"},
		"malformed id":      {&ssm.SendCommandInput{DocumentName: mount, InstanceIds: []string{"host-1"}, Parameters: good}, "ValidationException"}, // the model's InstanceId pattern
		"duplicate":         {&ssm.SendCommandInput{DocumentName: mount, InstanceIds: []string{instA, instA}, Parameters: good}, "DuplicateInstanceId"},
		"short timeout":     {&ssm.SendCommandInput{DocumentName: mount, InstanceIds: []string{instA}, Parameters: good, TimeoutSeconds: aws.Int32(5)}, "ValidationException"},
		"tag target":        {&ssm.SendCommandInput{DocumentName: mount, Targets: []types.Target{{Key: aws.String("tag:role"), Values: []string{"x"}}}, Parameters: good}, "ValidationException"},
		"unsupported field": {&ssm.SendCommandInput{DocumentName: mount, InstanceIds: []string{instA}, Parameters: good, OutputS3BucketName: aws.String("b")}, "ValidationException"},
	} {
		_, err := w.ssm.SendCommand(ctx, c.in)
		if got := code(t, err); got != c.want {
			t.Errorf("%s: %q (%v), want %q", name, got, err, c.want)
		}
	}
	two := map[string][]string{"VolumeId": {"vol-0123456789abcdef0"}, "VolumeName": {"a", "b"}}
	if _, err := w.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: mount, InstanceIds: []string{instA}, Parameters: two}); code(t, err) != "InvalidParameters" {
		t.Errorf("two values for a String: %v", err)
	}
	if _, err := w.ssm.GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{CommandId: aws.String("00000000-0000-4000-8000-000000000000"), InstanceId: aws.String(instA)}); code(t, err) != "InvocationDoesNotExist" {
		t.Errorf("unknown command: %v", err)
	}
	if _, err := w.ssm.ListCommands(ctx, &ssm.ListCommandsInput{CommandId: aws.String("00000000-0000-4000-8000-000000000000")}); code(t, err) != "InvalidCommandId" {
		t.Errorf("ListCommands of an unknown command: %v", err)
	}
}

func TestInvocationInvisibleRightAfterSend(t *testing.T) {
	// With a visibility delay (the realistic profile's, made long), the
	// invocation is unknown at first, as SSM's is (aws/aws-sdk#86).
	slow := latency.Profile{Name: "slow-visibility", Dists: map[latency.Op]latency.Dist{latency.SSMVisible: {Median: time.Hour, P99: 2 * time.Hour}}}
	w := newWorld(t, slow)
	out, err := w.ssm.SendCommand(context.Background(), &ssm.SendCommandInput{DocumentName: aws.String(stack + "-status"), InstanceIds: []string{instA}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.ssm.GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{CommandId: out.Command.CommandId, InstanceId: aws.String(instA)})
	if code(t, err) != "InvocationDoesNotExist" {
		t.Errorf("right after SendCommand: %v", err)
	}
}

func TestThrottlingAndFaults(t *testing.T) {
	w := newWorld(t, latency.Instant())
	ctx := context.Background()
	w.srv.SetThrottling(true)
	w.srv.Gate().SetLimit("DescribeInstanceInformation", awsproto.Bucket{Size: 1, Refill: 0})
	if _, err := w.ssm.DescribeInstanceInformation(ctx, &ssm.DescribeInstanceInformationInput{}); err != nil {
		t.Fatal(err)
	}
	_, err := w.ssm.DescribeInstanceInformation(ctx, &ssm.DescribeInstanceInformationInput{})
	if code(t, err) != "ThrottlingException" {
		t.Fatalf("over the limit: %v", err)
	}
	if c := w.srv.Counts(); c.Throttled["DescribeInstanceInformation"] != 3 || c.Calls["DescribeInstanceInformation"] != 4 {
		t.Errorf("counts %+v", c)
	}
	w.srv.ThrottleNext("SendCommand", 2)
	if _, err := w.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String(stack + "-status"), InstanceIds: []string{instA}}); err != nil {
		t.Errorf("two throttles, absorbed by the SDK's retries: %v", err)
	}
	w.srv.FailNext("GetCommandInvocation", 1, awsproto.BadRequest("InternalServerError", "boom"))
	if _, err := w.ssm.GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{CommandId: aws.String("00000000-0000-4000-8000-000000000000"), InstanceId: aws.String(instA)}); code(t, err) != "InternalServerError" {
		t.Errorf("scripted error: %v", err)
	}
	if _, err := w.srv.Handle(ctx, "CancelCommand", []byte("{}")); err == nil {
		t.Error("unsupported action accepted")
	}
}

func TestDocumentChecks(t *testing.T) {
	s := New(Config{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	defer s.Close()
	for name, content := range map[string]string{
		"schema 1.2, no plugin": `{"schemaVersion":"1.2","runtimeConfig":{}}`,
		"schema 2.0":            `{"schemaVersion":"2.0","mainSteps":[{"action":"aws:runShellScript","name":"x","inputs":{"runCommand":["echo"]}}]}`,
		"undeclared":            `{"schemaVersion":"2.2","mainSteps":[{"action":"aws:runShellScript","name":"x","inputs":{"runCommand":["echo {{ Nope }}"]}}]}`,
		"undeclared directory":  `{"schemaVersion":"2.2","mainSteps":[{"action":"aws:runShellScript","name":"x","inputs":{"runCommand":["echo"],"workingDirectory":"{{ Dir }}"}}]}`,
		"other action":          `{"schemaVersion":"2.2","mainSteps":[{"action":"aws:downloadContent","name":"x","inputs":{"runCommand":["echo"]}}]}`,
		"no steps":              `{"schemaVersion":"2.2","mainSteps":[]}`,
		"two steps, one name":   `{"schemaVersion":"2.2","mainSteps":[{"action":"aws:runShellScript","name":"x","inputs":{"runCommand":["echo"]}},{"action":"aws:runShellScript","name":"x","inputs":{"runCommand":["echo"]}}]}`,
		"unknown input":         `{"schemaVersion":"2.2","mainSteps":[{"action":"aws:runShellScript","name":"x","inputs":{"runCommand":["echo"],"shell":"bash"}}]}`,
		"bad onFailure":         `{"schemaVersion":"2.2","mainSteps":[{"action":"aws:runShellScript","name":"x","inputs":{"runCommand":["echo"],"onFailure":"retry"}}]}`,
		"bad onSuccess":         `{"schemaVersion":"2.2","mainSteps":[{"action":"aws:runShellScript","name":"x","inputs":{"runCommand":["echo"],"onSuccess":"successAndExit"}}]}`,
		"bad interpolation":     `{"schemaVersion":"2.2","parameters":{"A":{"type":"String","interpolationType":"SHELL"}},"mainSteps":[{"action":"aws:runShellScript","name":"x","inputs":{"runCommand":["echo {{A}}"]}}]}`,
		"ENV_VAR list":          `{"schemaVersion":"2.2","parameters":{"A":{"type":"StringList","interpolationType":"ENV_VAR"}},"mainSteps":[{"action":"aws:runShellScript","name":"x","inputs":{"runCommand":["echo {{A}}"]}}]}`,
		"ENV_VAR directory":     `{"schemaVersion":"2.2","parameters":{"A":{"type":"String","interpolationType":"ENV_VAR"}},"mainSteps":[{"action":"aws:runShellScript","name":"x","inputs":{"runCommand":["echo"],"workingDirectory":"{{A}}"}}]}`,
		"bad pattern":           `{"schemaVersion":"2.2","parameters":{"A":{"type":"String","allowedPattern":"("}},"mainSteps":[{"action":"aws:runShellScript","name":"x","inputs":{"runCommand":["echo {{A}}"]}}]}`,
		"default mismatch":      `{"schemaVersion":"2.2","parameters":{"A":{"type":"String","default":"x","allowedPattern":"^y$"}},"mainSteps":[{"action":"aws:runShellScript","name":"x","inputs":{"runCommand":["echo {{A}}"]}}]}`,
		"unknown precondition":  `{"schemaVersion":"2.2","mainSteps":[{"action":"aws:runShellScript","name":"x","precondition":{"StringEquals":["platformType","Solaris"]},"inputs":{"runCommand":["echo"]}}]}`,
		"timeout past 48 h":     `{"schemaVersion":"2.2","mainSteps":[{"action":"aws:runShellScript","name":"x","inputs":{"runCommand":["echo"],"timeoutSeconds":172801}}]}`,
	} {
		if err := s.AddDocument("doc-x", content); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	good := "schemaVersion: '2.2'\nmainSteps:\n- action: aws:runShellScript\n  name: x\n  inputs:\n    runCommand: [echo hi]\n    workingDirectory: /tmp\n"
	if err := s.AddDocument("ok-doc", good); err != nil {
		t.Errorf("YAML document: %v", err)
	}
	// Steps for several platforms, control-flow inputs, ENV_VAR.
	several := `{"schemaVersion":"2.2","parameters":{"A":{"type":"String","interpolationType":"ENV_VAR","allowedPattern":"^[a-z]*$"}},"mainSteps":[` +
		`{"action":"aws:runPowerShellScript","name":"win","precondition":{"StringEquals":["platformType","Windows"]},"inputs":{"runCommand":["exit 1"],"onFailure":"exit"}},` +
		`{"action":"aws:runShellScript","name":"lin","inputs":{"runCommand":["echo \"{{ A }}\""],"onSuccess":"exit","timeoutSeconds":"60"}},` +
		`{"action":"aws:runShellScript","name":"last","inputs":{"runCommand":["true"],"finallyStep":true}}]}`
	if err := s.AddDocument("steps-doc", several); err != nil {
		t.Errorf("document of several steps: %v", err)
	}
	// Names CreateDocument refuses: AWS's prefixes, whatever their case,
	// and names outside DocumentName's pattern.
	for _, name := range []string{"AWS-RunShellScript", "aws-mine", "Amazon-x", "amzn.tools", "AWSSupport-x", "ab", "has space"} {
		if err := s.AddDocument(name, good); err == nil {
			t.Errorf("document named %q accepted", name)
		}
	}
	if got := s.Documents(); !slices.Equal(got, []string{"ok-doc", "steps-doc"}) {
		t.Errorf("the account's documents: %v", got)
	}
}

// events collects what a Server publishes.
type events struct {
	mu  sync.Mutex
	got []worldapi.Event
}

func (e *events) Publish(ev worldapi.Event) { e.mu.Lock(); e.got = append(e.got, ev); e.mu.Unlock() }

func (e *events) all() []worldapi.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]worldapi.Event(nil), e.got...)
}

// Each status an invocation takes after Pending is published as Run
// Command's "EC2 Command Invocation Status-change Notification", in order,
// with the detail fields AWS documents, and each status its command takes
// as an "EC2 Command Status-change Notification"; the final one is
// published once GetCommandInvocation shows it.
func TestInvocationStatusChangesArePublished(t *testing.T) {
	pub := &events{}
	srv := New(Config{Seed: 3, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Publisher: pub, Invisible: -1})
	t.Cleanup(func() { srv.Close() })
	if _, err := srv.LoadTemplate("testdata/template.yaml", stack); err != nil {
		t.Fatal(err)
	}
	host := &scriptHost{id: instA}
	host.set(worldapi.CommandResult{ExitCode: 3, Stderr: "busy"}, nil)
	if err := srv.AddInstance(instA, host); err != nil {
		t.Fatal(err)
	}
	body := `{"DocumentName":"` + stack + `-unmount","InstanceIds":["` + instA + `"],"Parameters":{"VolumeId":["vol-0123456789abcdef0"],"VolumeName":["rexray-vol"]}}`
	out, err := srv.Handle(context.Background(), "SendCommand", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	sent := out.(*struct{ Command wireCommand }).Command
	id := sent.CommandId
	deadline := time.Now().Add(10 * time.Second)
	for len(pub.all()) < 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	got := pub.all()
	if len(got) != 4 {
		t.Fatalf("%d events, want InProgress and Failed for the invocation and its command: %+v", len(got), got)
	}
	inv, err := srv.Handle(context.Background(), "GetCommandInvocation", []byte(`{"CommandId":"`+id+`","InstanceId":"`+instA+`"}`))
	if err != nil || inv.(*wireGetInvocation).Status != "Failed" {
		t.Fatalf("invocation after its last event: %+v %v", inv, err)
	}
	want := []struct{ detailType, status string }{
		{"EC2 Command Invocation Status-change Notification", "InProgress"},
		{"EC2 Command Status-change Notification", "InProgress"},
		{"EC2 Command Invocation Status-change Notification", "Failed"},
		{"EC2 Command Status-change Notification", "Failed"},
	}
	for i, w := range want {
		ev := got[i]
		if ev.Source != "aws.ssm" || ev.DetailType != w.detailType || ev.Version != "0" ||
			ev.Account != "123456789012" || ev.Region != "us-west-2" || len(ev.ID) != 36 ||
			len(ev.Resources) != 1 || ev.Resources[0] != "arn:aws:ec2:us-west-2:123456789012:instance/"+instA {
			t.Errorf("event %d envelope: %+v", i, ev)
		}
		if _, err := time.Parse(time.RFC3339, ev.Time); err != nil {
			t.Errorf("event %d time %q: %v", i, ev.Time, err)
		}
		var d map[string]any
		if err := json.Unmarshal(ev.Detail, &d); err != nil {
			t.Fatal(err)
		}
		req, err := time.Parse("2006-01-02T15:04:05.000Z", d["requested-date-time"].(string))
		if d["command-id"] != id || d["document-name"] != stack+"-unmount" || d["status"] != w.status || err != nil || time.Since(req) > time.Minute {
			t.Errorf("event %d detail: %s", i, ev.Detail)
		}
		switch w.detailType {
		case "EC2 Command Invocation Status-change Notification":
			if len(d) != 5 || d["instance-id"] != instA {
				t.Errorf("event %d: invocation detail %s", i, ev.Detail)
			}
		default:
			exp, err := time.Parse("2006-01-02T15:04:05.000Z", d["expire-after"].(string))
			params, _ := json.Marshal(d["parameters"])
			if len(d) != 6 || err != nil || !exp.Equal(time.Time(*sent.ExpiresAfter).Truncate(time.Millisecond)) ||
				string(params) != `{"Force":["false"],"VolumeId":["vol-0123456789abcdef0"],"VolumeName":["rexray-vol"]}` {
				t.Errorf("event %d: command detail %s (expires %v)", i, ev.Detail, time.Time(*sent.ExpiresAfter))
			}
		}
	}
}
