package eventsrc

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// eventsDir is the repository's events/ directory (samples for tests and
// `sam local invoke -e`).
const eventsDir = "../../../events"

const (
	demo   = "tether-demo"
	arnCl  = "arn:aws:ecs:us-east-1:123456789012:cluster/tether-demo"
	ciA    = "arn:aws:ecs:us-east-1:123456789012:container-instance/tether-demo/3f2b6a4c1d9e4b7f8a0c5d6e7f8091a2"
	ciB    = "arn:aws:ecs:us-east-1:123456789012:container-instance/tether-demo/9c8d7e6f5a4b4c3d2e1f0a9b8c7d6e5f"
	task1  = "arn:aws:ecs:us-east-1:123456789012:task/tether-demo/5b1f0c2d9e8a4f7b8c6d1e2f3a4b5c6d"
	task2  = "arn:aws:ecs:us-east-1:123456789012:task/tether-demo/7d3e2c1b0a9f4e8d9c7b6a5f4e3d2c1b"
	task3  = "arn:aws:ecs:us-east-1:123456789012:task/tether-demo/0e1d2c3b4a5f4e6d8c9b0a1f2e3d4c5b"
	mysql1 = "arn:aws:ecs:us-east-1:123456789012:task-definition/mysql:1"
)

// want is what a sample must decode to: a trigger, or a skip (quiet or not).
type want struct {
	kind    string
	trigger reconcile.Trigger
	skip    bool
	quiet   bool
}

func TestDecodeEventSamples(t *testing.T) {
	cases := map[string]want{
		"task-provisioning.json": {kind: KindTask, trigger: reconcile.TaskChanged{Cluster: demo, TaskArn: task1,
			TaskDefinitionArn: mysql1, ContainerInstanceArn: ciA, LastStatus: "PROVISIONING", DesiredStatus: "RUNNING", Version: 1,
			CreatedAt: time.Date(2026, 3, 2, 10, 14, 7, 912000000, time.UTC), Group: "service:mysql-svc", AZ: "us-east-1a"}},
		"task-running.json": {kind: KindTask, trigger: reconcile.TaskChanged{Cluster: demo, TaskArn: task1,
			TaskDefinitionArn: mysql1, ContainerInstanceArn: ciA, LastStatus: "RUNNING", DesiredStatus: "RUNNING", Version: 4,
			CreatedAt: time.Date(2026, 3, 2, 10, 14, 7, 912000000, time.UTC), StartedAt: time.Date(2026, 3, 2, 10, 14, 41, 570000000, time.UTC), Group: "service:mysql-svc", AZ: "us-east-1a"}},
		"task-stopped-drain.json": {kind: KindTask, trigger: reconcile.TaskChanged{Cluster: demo, TaskArn: task1,
			TaskDefinitionArn: mysql1, ContainerInstanceArn: ciA, LastStatus: "STOPPED", DesiredStatus: "STOPPED", Version: 7,
			CreatedAt: time.Date(2026, 3, 2, 10, 14, 7, 912000000, time.UTC), StartedAt: time.Date(2026, 3, 2, 10, 14, 41, 570000000, time.UTC), StoppedAt: time.Date(2026, 3, 2, 11, 2, 19, 200000000, time.UTC), Group: "service:mysql-svc", AZ: "us-east-1a"}},
		"task-stopped-failed.json": {kind: KindTask, trigger: reconcile.TaskChanged{Cluster: demo, TaskArn: task2,
			TaskDefinitionArn: mysql1, ContainerInstanceArn: ciB, LastStatus: "STOPPED", DesiredStatus: "STOPPED", Version: 5,
			CreatedAt: time.Date(2026, 3, 2, 10, 14, 7, 912000000, time.UTC), StoppedAt: time.Date(2026, 3, 2, 11, 5, 2, 418000000, time.UTC), Group: "service:mysql-svc", AZ: "us-east-1a"}},
		"task-pending-two-volumes.json": {kind: KindTask, trigger: reconcile.TaskChanged{Cluster: demo, TaskArn: task3,
			TaskDefinitionArn:    "arn:aws:ecs:us-east-1:123456789012:task-definition/mysql-replica:3",
			ContainerInstanceArn: ciB, LastStatus: "PENDING", DesiredStatus: "RUNNING", Version: 2,
			CreatedAt: time.Date(2026, 3, 2, 10, 14, 7, 912000000, time.UTC), Group: "service:mysql-replica-svc", AZ: "us-east-1a"}},
		"instance-draining.json": {kind: KindInstance, trigger: reconcile.InstanceChanged{Cluster: demo,
			ContainerInstanceArn: ciA, EC2InstanceID: "i-0a1b2c3d4e5f60718", Status: "DRAINING", AgentConnected: true, Version: 12,
			RemainingCPU: 1536, RemainingMemory: 6656}},
		"instance-active.json": {kind: KindInstance, trigger: reconcile.InstanceChanged{Cluster: demo,
			ContainerInstanceArn: ciB, EC2InstanceID: "i-0f9e8d7c6b5a40312", Status: "ACTIVE", AgentConnected: true, Version: 2,
			RemainingCPU: 1536, RemainingMemory: 6656}},
		"volume-detached.json": {kind: KindVolume, trigger: reconcile.VolumeChanged{VolumeID: "vol-0c8f3e2a1b4d5e6f7",
			Event: "detachVolume", Result: "detached"}},
		"volume-attached.json": {kind: KindVolume, trigger: reconcile.VolumeChanged{VolumeID: "vol-0c8f3e2a1b4d5e6f7",
			Event: "attachVolume", Result: "attached"}},
		"command-unmount-succeeded.json": {kind: KindCommand, trigger: reconcile.CommandChanged{
			CommandID: "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", InstanceID: "i-0a1b2c3d4e5f60718",
			Document: "tether-demo-unmount", Status: "Success"}},
		"scheduled.json":             {kind: KindSchedule, trigger: reconcile.SweepRequested{Cluster: demo}},
		"retry.json":                 {kind: KindRetry, trigger: reconcile.Retry{Key: reconcile.Key{Cluster: demo, Volume: "rexray-vol"}}},
		"foreign-fargate-task.json":  {skip: true, quiet: true},
		"foreign-other-cluster.json": {skip: true},
	}
	files, err := filepath.Glob(filepath.Join(eventsDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(cases) {
		t.Errorf("events/ has %d samples, the test knows %d: every sample needs an expected outcome", len(files), len(cases))
	}
	dec := mustDecoder(t, demo)
	for _, f := range files {
		name := filepath.Base(f)
		w, ok := cases[name]
		if !ok {
			t.Errorf("%s: no expected outcome", name)
			continue
		}
		t.Run(name, func(t *testing.T) { checkDecode(t, dec, readFile(t, f), w) })
	}
}

// The shared samples are real events published by AWS and others (see
// testdata/aws-samples/INDEX.md), each decoded for its own cluster.
func TestDecodeAWSSamples(t *testing.T) {
	const (
		docsCI  = "arn:aws:ecs:us-east-1:111122223333:container-instance/b54a2a04-046f-4331-9d74-3f6d7f6ca315"
		capCI   = "arn:aws:ecs:us-west-2:543279062384:container-instance/0606dc43-fd6a-4837-a4f1-0a5ec2f2d6fe"
		capName = "microtrader-development-ApplicationCluster-1WI6BZ50YXJS4"
	)
	cases := map[string]struct {
		cluster string
		want    want
	}{
		"capacity-2017-ci-active-noattrs.json": {capName, want{kind: KindInstance, trigger: reconcile.InstanceChanged{
			Cluster: capName, ContainerInstanceArn: capCI, EC2InstanceID: "i-06cb96155228d49d6", Status: "ACTIVE", AgentConnected: true, Version: 2,
			RemainingCPU: 1024, RemainingMemory: 993}}},
		"docs-2018-task-ec2-running.json": {"default", want{kind: KindTask, trigger: reconcile.TaskChanged{
			Cluster: "default", TaskArn: "arn:aws:ecs:us-east-1:111122223333:task/b99d40b3-5176-4f71-9a52-9dbd6f1cebef",
			TaskDefinitionArn: "arn:aws:ecs:us-east-1:111122223333:task-definition/xray:2", ContainerInstanceArn: docsCI,
			LastStatus: "RUNNING", DesiredStatus: "RUNNING", Version: 4,
			CreatedAt: time.Date(2016, 12, 6, 16, 41, 5, 702000000, time.UTC), StartedAt: time.Date(2016, 12, 6, 16, 41, 6, 800000000, time.UTC), Group: "task-group"}}},
		"docs-container-instance-active.json": {"default", want{kind: KindInstance, trigger: reconcile.InstanceChanged{
			Cluster: "default", ContainerInstanceArn: docsCI, EC2InstanceID: "i-f3a8506b", Status: "ACTIVE", AgentConnected: true, Version: 14801,
			RemainingCPU: 1988, RemainingMemory: 767}}},
		"lambdago-container-instance-active.json": {"default", want{kind: KindInstance, trigger: reconcile.InstanceChanged{
			Cluster: "default", ContainerInstanceArn: docsCI, EC2InstanceID: "i-f3a8506b", Status: "ACTIVE", AgentConnected: true, Version: 14801,
			RemainingCPU: 1988, RemainingMemory: 767}}},
		"docs-task-fargate-running.json":                     {"FargateCluster", want{skip: true, quiet: true}},
		"kotlinx-2022-task-fargate-service-stopped-elb.json": {"sin-web_cluster-dev", want{skip: true, quiet: true}},
	}
	files, err := filepath.Glob("testdata/aws-samples/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(cases) {
		t.Errorf("testdata/aws-samples has %d samples, the test knows %d", len(files), len(cases))
	}
	for _, f := range files {
		name := filepath.Base(f)
		c, ok := cases[name]
		if !ok {
			t.Errorf("%s: no expected outcome", name)
			continue
		}
		body := readFile(t, f)
		t.Run(name, func(t *testing.T) {
			checkDecode(t, mustDecoder(t, c.cluster), body, c.want)
			// For any other cluster, the same event is skipped.
			if _, err := mustDecoder(t, demo).Decode(body); err == nil {
				t.Errorf("decoded for cluster %q too; want a skip", demo)
			} else if _, ok := AsSkip(err); !ok {
				t.Errorf("other cluster: %v is not a *SkipError", err)
			}
		})
	}
}

// Every SQS-wrapped sample carries its EventBridge sample unchanged, with a
// correct MD5, from the queue the routing in docs/contracts.md names.
func TestSQSSamplesWrapTheEventBridgeSamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(eventsDir, "sqs", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("only %d SQS samples in events/sqs", len(files))
	}
	samples := map[string][]byte{}
	plain, _ := filepath.Glob(filepath.Join(eventsDir, "*.json"))
	for _, f := range plain {
		samples[filepath.Base(f)] = readFile(t, f)
	}
	queueFor := map[string]string{KindTask: "TaskQueue", KindInstance: "InstanceQueue", KindVolume: "VolumeQueue", KindRetry: "RetryQueue",
		KindCommand: "VolumeQueue"}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			var ev events.SQSEvent
			dec := json.NewDecoder(bytes.NewReader(readFile(t, f)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&ev); err != nil {
				t.Fatalf("not an SQS event: %v", err)
			}
			if len(ev.Records) == 0 {
				t.Fatal("no records")
			}
			for _, r := range ev.Records {
				sum := md5.Sum([]byte(r.Body))
				if got := hex.EncodeToString(sum[:]); got != r.Md5OfBody {
					t.Errorf("%s: md5OfBody %s, body hashes to %s", r.MessageId, r.Md5OfBody, got)
				}
				if r.EventSource != "aws:sqs" || r.MessageId == "" || r.Attributes["ApproximateReceiveCount"] == "" {
					t.Errorf("%s: not shaped like Lambda's SQS record: %+v", r.MessageId, r)
				}
			}
			if name == "batch-handoff.json" {
				return // mixes queues on purpose; TestDispatch* use it
			}
			if len(ev.Records) != 1 {
				t.Fatalf("%d records, want 1", len(ev.Records))
			}
			orig, ok := samples[name]
			if !ok {
				t.Fatalf("no events/%s to compare with", name)
			}
			if !jsonEqual(t, []byte(ev.Records[0].Body), orig) {
				t.Errorf("body differs from events/%s", name)
			}
			// Skipped samples (foreign events) come from the queue their
			// rule would use had it matched; decoded ones from their own.
			if got, err := mustDecoder(t, demo).Decode(orig); err == nil {
				q := queueFor[got.Kind]
				if !strings.Contains(ev.Records[0].EventSourceARN, "-"+q+"-") {
					t.Errorf("eventSourceARN %s, want the %s", ev.Records[0].EventSourceARN, q)
				}
			}
		})
	}
}

func checkDecode(t *testing.T, dec *Decoder, body []byte, w want) {
	t.Helper()
	ev, err := dec.Decode(body)
	if w.skip {
		s, ok := AsSkip(err)
		if !ok {
			t.Fatalf("Decode = %+v, %v; want a *SkipError", ev, err)
		}
		if s.Quiet != w.quiet {
			t.Errorf("skip %q: quiet = %v, want %v", s.Reason, s.Quiet, w.quiet)
		}
		return
	}
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if ev.Kind != w.kind {
		t.Errorf("kind %q, want %q", ev.Kind, w.kind)
	}
	if !reflect.DeepEqual(ev.Trigger, w.trigger) {
		t.Errorf("trigger\n got %#v\nwant %#v", ev.Trigger, w.trigger)
	}
	if ev.Kind != KindRetry && ev.ID == "" {
		t.Error("no event id")
	}
	if len(ev.Attrs) == 0 {
		t.Error("no log attributes")
	}
}

func attrValue(attrs []slog.Attr, key string) (slog.Value, bool) {
	for _, a := range attrs {
		if a.Key == key {
			return a.Value, true
		}
	}
	return slog.Value{}, false
}

func mustDecoder(t *testing.T, cluster string) *Decoder {
	t.Helper()
	d, err := NewDecoder(cluster)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}
