package samlocal_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/samlocal"
	"github.com/tether-ecs/tether/test/world/ssmsim"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

const (
	repoTemplate = "../../../template.yaml"
	endpoint     = "http://127.0.0.1:4566"
	clusterArn   = "arn:aws:ecs:us-west-2:123456789012:cluster/default"
)

// recorder is a Runtime whose functions record what they are invoked with
// and answer an empty partial batch response.
type recorder struct {
	mu      sync.Mutex
	started []samlocal.Function
	calls   map[string][][]byte // function logical id -> payloads
	changed chan struct{}
	failOn  string // logical id whose Start fails
}

func newRecorder() *recorder {
	return &recorder{calls: map[string][][]byte{}, changed: make(chan struct{}, 1)}
}

func (r *recorder) Start(_ context.Context, fn samlocal.Function) (samlocal.Running, error) {
	if fn.LogicalID == r.failOn {
		return nil, errors.New("bootstrap crashed at init")
	}
	r.mu.Lock()
	r.started = append(r.started, fn)
	r.mu.Unlock()
	return &recorded{r: r, id: fn.LogicalID}, nil
}

func (r *recorder) payloads(id string) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls[id])
}

// wait blocks until cond holds for the recorded calls (bounded).
func (r *recorder) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for !cond() {
		select {
		case <-r.changed:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("waited 20s for %s; calls so far: %d taskstate, %d drain, %d sweep", what,
				len(r.calls["TaskStateFunction"]), len(r.calls["DrainFunction"]), len(r.calls["SweepFunction"]))
		}
	}
}

type recorded struct {
	r       *recorder
	id      string
	stopped bool
}

func (f *recorded) Invoke(_ context.Context, payload []byte) ([]byte, error) {
	f.r.mu.Lock()
	f.r.calls[f.id] = append(f.r.calls[f.id], payload)
	f.r.mu.Unlock()
	select {
	case f.r.changed <- struct{}{}:
	default:
	}
	return []byte(`{"batchItemFailures":[]}`), nil
}
func (f *recorded) Output() string { return "" }
func (f *recorded) Stop() error    { f.stopped = true; return nil }

type env struct {
	bus *eventbus.Bus
	ssm *ssmsim.Server
}

func newEnv(t *testing.T) env {
	t.Helper()
	bus := eventbus.New(eventbus.Options{Seed: 1, TimeScale: 0.01, QueueURLBase: endpoint})
	t.Cleanup(func() { _ = bus.Close() })
	ssm := ssmsim.New(ssmsim.Config{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = ssm.Close() })
	return env{bus: bus, ssm: ssm}
}

func deploy(t *testing.T, e env, rt samlocal.Runtime, template string, params map[string]string) (*samlocal.Deployment, error) {
	t.Helper()
	d, err := samlocal.Deploy(context.Background(), samlocal.Config{
		Template: template, StackName: "tether", Parameters: params, Endpoint: endpoint,
		Bus: e.bus, SSM: e.ssm, Runtime: rt,
	})
	if d != nil {
		t.Cleanup(func() {
			if err := d.Stop(); err != nil {
				t.Errorf("stop: %v", err)
			}
		})
	}
	return d, err
}

func TestRepositoryTemplateDeploysAsSAMWould(t *testing.T) {
	e := newEnv(t)
	rec := newRecorder()
	d, err := deploy(t, e, rec, repoTemplate, map[string]string{"ClusterName": "default"})
	if err != nil {
		t.Fatal(err)
	}

	// Functions: names, code, limits (no reserved concurrency by default)
	// and an environment pointing at the world.
	want := map[string]struct {
		pkg      string
		reserved int
	}{"TaskStateFunction": {"taskstate", 0}, "DrainFunction": {"drain", 0}, "SweepFunction": {"sweep", 0}, "HostsFunction": {"hosts", 0}}
	if len(d.Functions) != len(want) || len(rec.started) != len(want) {
		t.Fatalf("functions %v, started %d; want %d", d.Functions, len(rec.started), len(want))
	}
	retry := d.Queues["RetryQueue"]
	if retry == nil {
		t.Fatalf("no RetryQueue among %v", d.Queues)
	}
	for id, w := range want {
		fn := d.Functions[id]
		if fn.Name != "tether-"+id || fn.Package != w.pkg || fn.ReservedConcurrency != w.reserved ||
			fn.Timeout != 60*time.Second || fn.MemoryMB != 256 || fn.ARN != "arn:aws:lambda:us-west-2:123456789012:function:tether-"+id {
			t.Errorf("%s = %+v", id, fn)
		}
		for k, v := range map[string]string{
			"TETHER_CLUSTER": "default", "TETHER_MOUNT_DOCUMENT": "tether-tether-mount", "TETHER_UNMOUNT_DOCUMENT": "tether-tether-unmount",
			"TETHER_STATUS_DOCUMENT": "tether-tether-status", "TETHER_RETRY_QUEUE_URL": retry.URL(), "TETHER_LOG_LEVEL": "info",
			"TETHER_DEFAULT_VOLUME_TYPE": "gp3", "TETHER_DEFAULT_SIZE_GIB": "16", "TETHER_EXTRA_TAGS": "{}", "TETHER_KMS_KEY_ID": "",
			"AWS_ENDPOINT_URL": endpoint,
		} {
			if _, ok := fn.Env[k]; !ok {
				t.Errorf("%s env has no %s", id, k)
			}
			if fn.Env[k] != v {
				t.Errorf("%s env %s = %q, want %q", id, k, fn.Env[k], v)
			}
		}
	}
	if !strings.HasPrefix(retry.URL(), endpoint+"/") {
		t.Errorf("retry queue URL %s is not on the world's endpoint", retry.URL())
	}
	// The hosts function's own settings; without AutoScalingGroupNames it
	// holds no group (no hook name).
	for k, v := range map[string]string{"TETHER_HOSTS_QUEUE_URL": endpoint + "/123456789012/tether-HostsQueue", "TETHER_HOLD_HOOK": "",
		"TETHER_HOLD_DEADLINE": "600s", "TETHER_HUNG_HOST_ACTION": "none", "TETHER_HUNG_HOST_THRESHOLD": "300s"} {
		if got, ok := d.Functions["HostsFunction"].Env[k]; !ok || got != v {
			t.Errorf("HostsFunction env %s = %q (%v), want %q", k, got, ok, v)
		}
	}
	if !slices.Equal(d.NotCreated, []string{"TerminationHoldRule", "TerminationHook1", "TerminationHook2", "TerminationHook3", "TerminationHook4"}) || len(d.Hooks) != 0 {
		t.Errorf("without groups: not created %v, hooks %v", d.NotCreated, d.Hooks)
	}

	// Queues and their dead-letter queues (and the rules' one).
	if len(d.Queues) != 11 || d.Queues["RuleDeadLetterQueue"] == nil {
		t.Errorf("%d queues, want 11 (5 + 5 dead-letter + the rules' dead-letter queue)", len(d.Queues))
	}
	for _, id := range []string{"TaskQueue", "InstanceQueue", "VolumeQueue", "RetryQueue", "HostsQueue"} {
		q := d.Queues[id]
		dlq := d.Queues[strings.TrimSuffix(id, "Queue")+"DeadLetterQueue"]
		if q == nil || dlq == nil {
			t.Fatalf("%s or its dead-letter queue missing", id)
		}
		o := q.Options()
		if o.VisibilityTimeout != 360*time.Second || o.DeadLetter != dlq || o.MaxReceiveCount != 5 || q.Name() != "tether-"+id {
			t.Errorf("%s: name %s, options %+v", id, q.Name(), o)
		}
	}
	if got := e.ssm.Documents(); !slices.Equal(got, []string{"tether-tether-mount", "tether-tether-status", "tether-tether-unmount"}) {
		t.Errorf("SSM documents %v", got)
	}

	// Everything not deployed is listed with a reason.
	ignored := map[string]bool{}
	for _, ig := range d.Ignored {
		if ig.Reason == "" {
			t.Errorf("ignored without a reason: %+v", ig)
		}
		ignored[ig.LogicalID+"."+ig.Property] = true
	}
	for _, k := range []string{"ReconcilerPolicy.", "TaskStateRole.", "TaskDeadLetterAlarm.", "HandoffDurationAlarm.", "TaskStateLogGroup.",
		"Dashboard.", "TaskQueuePolicy.", "TaskQueue.MessageRetentionPeriod", "TaskQueue.SqsManagedSseEnabled",
		"TaskStateFunction.Role", "TaskStateFunction.LoggingConfig",
		"SweepFunction.EventInvokeConfig", "SweepFunction.Events.Sweep.DeadLetterConfig", "DrainFunction.Architectures",
		"TaskStateRule.Targets.TaskQueue.DeadLetterConfig", "MountDocument.UpdateMethod", "DashboardUrl.", "TaskStateRoleArn."} {
		if !ignored[k] {
			t.Errorf("%s not listed as ignored; ignored: %v", k, d.Ignored)
		}
	}
	// The SSM documents are deployed whole: nothing of their content is
	// left out, and the world's SSM holds the Windows step too (its
	// aws:runPowerShellScript makes Windows one of the platforms).
	for _, ig := range d.Ignored {
		if ig.Type == "AWS::SSM::Document" && strings.HasPrefix(ig.Property, "Content") {
			t.Errorf("document content not deployed: %s", ig)
		}
	}
	desc, err := e.ssm.Handle(context.Background(), "DescribeDocument", []byte(`{"Name":"tether-tether-mount"}`))
	if raw, _ := json.Marshal(desc); err != nil || !strings.Contains(string(raw), `"PlatformTypes":["Windows","Linux","MacOS"]`) {
		t.Errorf("the mount document in the world's SSM: %s %v", raw, err)
	}
	if len(d.Unwired) != 0 {
		t.Errorf("unwired events: %v", d.Unwired)
	}

	// Outputs resolve to the world's resources.
	for k, v := range map[string]string{
		"TaskQueueUrl": d.Queues["TaskQueue"].URL(), "RetryQueueUrl": retry.URL(), "MountDocumentName": "tether-tether-mount",
		"StatusDocumentName": "tether-tether-status", "SweepFunctionName": "tether-SweepFunction",
		"RuleDeadLetterQueueUrl": d.Queues["RuleDeadLetterQueue"].URL(),
	} {
		if d.Outputs[k] != v {
			t.Errorf("output %s = %q, want %q", k, d.Outputs[k], v)
		}
	}

	// Routing as contracts.md says: the cluster's EC2 task events, EBS
	// events and retries to taskstate, instance events that release
	// volumes to drain, the schedule to sweep; another cluster's events,
	// Fargate tasks and live instances' changes to nobody.
	publish := func(source, detailType, detail string) {
		e.bus.Publish(worldapi.Event{Version: "0", ID: detailType + detail, Source: source, DetailType: detailType,
			Account: "123456789012", Region: "us-west-2", Time: "2024-01-01T00:00:00Z", Detail: json.RawMessage(detail)})
	}
	publish("aws.ecs", "ECS Task State Change", `{"clusterArn":"arn:aws:ecs:us-west-2:123456789012:cluster/other","launchType":"EC2","lastStatus":"RUNNING"}`)
	publish("aws.ecs", "ECS Task State Change", `{"clusterArn":"`+clusterArn+`","launchType":"FARGATE","lastStatus":"PENDING"}`)
	publish("aws.ecs", "ECS Task State Change", `{"clusterArn":"`+clusterArn+`","launchType":"EC2","lastStatus":"RUNNING"}`) // started: left out
	publish("aws.ecs", "ECS Task State Change", `{"clusterArn":"`+clusterArn+`","launchType":"EC2","lastStatus":"STOPPED"}`)
	publish("aws.ec2", "EBS Volume Notification", `{"event":"attachVolume","result":"attached"}`)
	publish("aws.ecs", "ECS Container Instance State Change", `{"clusterArn":"`+clusterArn+`","status":"ACTIVE","agentConnected":true,"version":7}`)
	publish("aws.ecs", "ECS Container Instance State Change", `{"clusterArn":"`+clusterArn+`","status":"DRAINING","agentConnected":true}`)
	publish("aws.ecs", "ECS Container Instance State Change", `{"clusterArn":"`+clusterArn+`","status":"ACTIVE","agentConnected":false}`)
	publish("aws.ec2", "EC2 Instance State-change Notification", `{"instance-id":"i-0123456789abcdef0","state":"running"}`)
	publish("aws.ec2", "EC2 Instance State-change Notification", `{"instance-id":"i-0123456789abcdef0","state":"terminated"}`)
	publish("aws.ec2", "EC2 Spot Instance Interruption Warning", `{"instance-id":"i-0123456789abcdef0","instance-action":"terminate"}`)
	publish("aws.autoscaling", "EC2 Instance-terminate Lifecycle Action", `{"LifecycleHookName":"tether-tether","EC2InstanceId":"i-0123456789abcdef0"}`)
	retry.Send(`{"tether":"retry","key":{"cluster":"default","volume":"v"}}`, eventbus.SendOptions{})
	if err := e.bus.FireSchedule("SweepFunction.Sweep"); err != nil {
		t.Fatal(err)
	}
	bodies := func(id string) []string {
		var out []string
		for _, p := range rec.payloads(id) {
			var batch events.SQSEvent
			if err := json.Unmarshal(p, &batch); err != nil || len(batch.Records) == 0 {
				out = append(out, "direct:"+string(p))
				continue
			}
			for _, r := range batch.Records {
				out = append(out, r.Body)
			}
		}
		return out
	}
	rec.wait(t, "taskstate to get 3 messages, drain 2, sweep 1, hosts 3", func() bool {
		return len(bodies("TaskStateFunction")) >= 3 && len(bodies("DrainFunction")) >= 2 && len(bodies("SweepFunction")) >= 1 &&
			len(bodies("HostsFunction")) >= 3
	})
	ts := strings.Join(bodies("TaskStateFunction"), "\n")
	for _, want := range []string{`"lastStatus":"STOPPED"`, `"attachVolume"`, `"tether":"retry"`} {
		if !strings.Contains(ts, want) {
			t.Errorf("taskstate did not get %s:\n%s", want, ts)
		}
	}
	if strings.Contains(ts, "cluster/other") || strings.Contains(ts, "FARGATE") || strings.Contains(ts, `"lastStatus":"RUNNING"`) {
		t.Errorf("taskstate got another cluster's, a Fargate task's or a started task's event:\n%s", ts)
	}
	drain := bodies("DrainFunction")
	slices.Sort(drain)
	if len(drain) != 2 || !strings.Contains(drain[0], `"agentConnected":false`) || !strings.Contains(drain[1], `"DRAINING"`) {
		t.Errorf("drain got %v, want the DRAINING and the disconnected instance's events", drain)
	}
	if got := bodies("SweepFunction"); len(got) != 1 || !strings.Contains(got[0], `"Scheduled Event"`) || !strings.HasPrefix(got[0], "direct:") {
		t.Errorf("sweep got %v, want one Scheduled Event invoked directly", got)
	}
	// Hosts: an instance leaving, a Spot warning, a disconnected agent;
	// not a running instance, nor a lifecycle action (no group, no rule).
	hosts := bodies("HostsFunction")
	if all := strings.Join(hosts, "\n"); len(hosts) != 3 || !strings.Contains(all, `"agentConnected":false`) || !strings.Contains(all, `"instance-action"`) ||
		!strings.Contains(all, `"terminated"`) {
		t.Errorf("hosts got %v, want the disconnected agent, the Spot warning and the termination", hosts)
	}
}

// Reserved concurrency is the operator's choice: with ReservedConcurrency
// set, taskstate reserves it, drain and hosts one poller's worth
// (QueueConcurrency) and sweep one.
func TestReservedConcurrencyIsOptIn(t *testing.T) {
	e := newEnv(t)
	d, err := deploy(t, e, nil, repoTemplate, map[string]string{"ClusterName": "default", "ReservedConcurrency": "30", "QueueConcurrency": "4"})
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]int{"TaskStateFunction": 30, "DrainFunction": 4, "SweepFunction": 1, "HostsFunction": 4} {
		if got := d.Functions[id].ReservedConcurrency; got != want {
			t.Errorf("%s reserves %d, want %d", id, got, want)
		}
	}
}

// writeTemplate writes the repository template with old replaced by new.
func writeTemplate(t *testing.T, old, new string) string {
	t.Helper()
	raw, err := os.ReadFile(repoTemplate)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), old) {
		t.Fatalf("template.yaml no longer contains %q", old)
	}
	dir := t.TempDir()
	// The functions' CodeUri (functions/) must resolve next to the copy.
	if err := os.Symlink(mustAbs(t, "../../../functions"), filepath.Join(dir, "functions")); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "template.yaml")
	if err := os.WriteFile(p, []byte(strings.Replace(string(raw), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func TestWhatTheWorldCannotDoIsAnError(t *testing.T) {
	const anchor = "  # ------------------------------------------------------------------- queues\n"
	cases := []struct {
		name, old, new string
	}{
		{"unknown resource type", anchor, anchor + "  Bucket:\n    Type: AWS::S3::Bucket\n"},
		{"unknown queue property", "      VisibilityTimeout: 360\n", "      VisibilityTimeout: 360\n      FifoQueue: true\n"},
		{"unknown rule target property", "          Arn: !GetAtt TaskQueue.Arn\n", "          Arn: !GetAtt TaskQueue.Arn\n          InputPath: $.detail\n"},
		{"unknown schedule property", "            Schedule: rate(1 minute)\n", "            Schedule: rate(1 minute)\n            Input: '{}'\n"},
		{"a step precondition the world's SSM does not know", "              StringEquals: [platformType, MacOS]\n", "              StringEquals: [platformVersion, \"14\"]\n"},
		{"unknown event type", "          Type: Schedule\n", "          Type: Api\n"},
		{"unknown SQS event property", "            BatchSize: 10\n", "            BatchSize: 10\n            FilterCriteria: {Filters: []}\n"},
		{"unsupported intrinsic", "TETHER_LOG_LEVEL: !Ref LogLevel", `TETHER_LOG_LEVEL: !Select [0, !GetAZs ""]`},
		{"a lifecycle hook notifying SNS", "      HeartbeatTimeout: 300\n", "      HeartbeatTimeout: 300\n      NotificationTargetARN: arn:aws:sns:us-west-2:123456789012:t\n"},
		{"reference to an ignored resource", "TETHER_LOG_LEVEL: !Ref LogLevel", "TETHER_LOG_LEVEL: !Ref ReconcilerPolicy"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			rec := newRecorder()
			_, err := deploy(t, e, rec, writeTemplate(t, c.old, c.new), map[string]string{"ClusterName": "default"})
			if !errors.Is(err, samlocal.ErrUnsupported) {
				t.Fatalf("err = %v, want ErrUnsupported", err)
			}
			t.Logf("refused as expected: %v", err)
		})
	}
}

func TestParametersAreCheckedAsCloudFormationDoes(t *testing.T) {
	for name, params := range map[string]map[string]string{
		"ClusterName has no default": nil,
		"pattern":                    {"ClusterName": "not a name!"},
		"allowed values":             {"ClusterName": "default", "LogLevel": "loud"},
		"min value":                  {"ClusterName": "default", "QueueConcurrency": "1"},
		"extra tags not an object":   {"ClusterName": "default", "ExtraVolumeTags": `["a"]`},
		"a quote in a tag key":       {"ClusterName": "default", "InstanceTagKey": `a"b`},
		"unknown parameter":          {"ClusterName": "default", "Nope": "x"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			if _, err := deploy(t, e, newRecorder(), repoTemplate, params); err == nil {
				t.Fatal("deployed with bad parameters")
			} else {
				t.Logf("refused: %v", err)
			}
		})
	}
}

func TestAFunctionThatCannotStartFailsTheDeployAndStopsTheOthers(t *testing.T) {
	e := newEnv(t)
	rec := newRecorder()
	rec.failOn = "SweepFunction" // started after DrainFunction and HostsFunction (logical id order)
	d, err := deploy(t, e, rec, repoTemplate, map[string]string{"ClusterName": "default"})
	if err == nil || d != nil {
		t.Fatalf("deploy = %v, %v; want an error", d, err)
	}
	if len(rec.started) != 2 || rec.started[0].LogicalID != "DrainFunction" || rec.started[1].LogicalID != "HostsFunction" {
		t.Fatalf("started %v", rec.started)
	}
	// The drain function's mapping is stopped: a message stays queued.
	q := e.bus.Queue("tether-InstanceQueue")
	q.Send(`{}`, eventbus.SendOptions{})
	time.Sleep(50 * time.Millisecond) // give a (wrongly) running poller the chance to take it
	if got := rec.payloads("DrainFunction"); len(got) != 0 {
		t.Fatalf("drain invoked after the failed deploy: %s", got)
	}
	if st := q.Stats(); st.Visible != 1 {
		t.Fatalf("instance queue %+v, want the message still visible", st)
	}
}

func TestWithoutARuntimeTheFunctionsEventsAreUnwired(t *testing.T) {
	e := newEnv(t)
	d, err := deploy(t, e, nil, repoTemplate, map[string]string{"ClusterName": "default"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Unwired) != 6 { // 3 taskstate queues, 1 drain queue, 1 hosts queue, 1 schedule
		t.Errorf("unwired %v, want the six function events", d.Unwired)
	}
	if len(d.Queues) != 11 || len(d.Rules) != 8 || len(d.Documents) != 3 {
		t.Errorf("queues %d, rules %v, documents %v", len(d.Queues), d.Rules, d.Documents)
	}
	if d.Functions["TaskStateFunction"].Env["TETHER_RETRY_QUEUE_URL"] != d.Queues["RetryQueue"].URL() {
		t.Errorf("environment not resolved without a runtime: %v", d.Functions["TaskStateFunction"].Env)
	}
}

func TestEmulatorNamesAMissingBootstrap(t *testing.T) {
	_, err := samlocal.Emulator{Bootstraps: t.TempDir()}.Start(context.Background(), samlocal.Function{LogicalID: "SweepFunction", Package: "sweep"})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "bootstraps OUT=") {
		t.Fatalf("err = %v, want not-exist with the make command", err)
	}
}
