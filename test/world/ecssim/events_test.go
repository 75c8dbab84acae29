package ecssim_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/fakehost"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// sample reads one of testdata/aws-samples (events as AWS sends them).
func sample(t *testing.T, name string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "aws-samples", name))
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return ev
}

// keySet is the keys of the object at path ("detail", "detail.containers.0").
func keySet(doc any, path string) map[string]bool {
	out := map[string]bool{}
	for _, k := range keys(at(doc, path)) {
		out[k] = true
	}
	return out
}

func decoded(t *testing.T, ev worldapi.Event) map[string]any {
	t.Helper()
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// ECS's events, checked against the shapes AWS publishes: the envelope of
// an EventBridge event, a Task State Change detail whose every key appears
// in a documented or captured sample and which carries every key of the
// guide's EC2 example, and a Container Instance State Change likewise.
func TestEventsAreShapedAsAWSSendsThem(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	w.cluster(t)
	ctx := ctxT(t)
	ci := w.addHost(t, fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a"})
	w.plainTaskDef(t, "app")
	run, err := w.ecs.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String(testCluster), TaskDefinition: aws.String("app"), StartedBy: aws.String("tester")})
	if err != nil || len(run.Tasks) != 1 {
		t.Fatalf("RunTask: %+v %v", run, err)
	}
	arn := *run.Tasks[0].TaskArn
	if err := w.srv.WaitFor(ctx, testCluster, "the task RUNNING", func(sn ecssim.Snapshot) bool {
		ti, _ := sn.Task(arn)
		return ti.LastStatus == "RUNNING"
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ecs.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(testCluster), Task: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.WaitFor(ctx, testCluster, "the task STOPPED", func(sn ecssim.Snapshot) bool {
		ti, _ := sn.Task(arn)
		return ti.LastStatus == "STOPPED"
	}); err != nil {
		t.Fatal(err)
	}

	taskSamples := []map[string]any{sample(t, "docs-2018-task-ec2-running.json"), sample(t, "docs-task-fargate-running.json"),
		sample(t, "kotlinx-2022-task-fargate-service-stopped-elb.json")}
	documented, documentedContainer := map[string]bool{}, map[string]bool{}
	for _, s := range taskSamples {
		for k := range keySet(s, "detail") {
			documented[k] = true
		}
		for k := range keySet(s, "detail.containers.0") {
			documentedContainer[k] = true
		}
	}
	// The detail "resembles the Task object that is returned from a
	// DescribeTasks API operation" (Amazon ECS events): container fields of
	// that object the samples happen not to show.
	for _, k := range []string{"reason", "memory", "memoryReservation"} {
		documentedContainer[k] = true
	}
	ec2Example := keySet(taskSamples[0], "detail")

	var running, stopped map[string]any
	for _, ev := range w.events.list() {
		doc := decoded(t, ev)
		if _, err := time.Parse("2006-01-02T15:04:05Z", ev.Time); err != nil || ev.Version != "0" || ev.Source != "aws.ecs" ||
			ev.Account != "123456789012" || ev.Region != "us-west-2" || len(ev.ID) != 36 || len(ev.Resources) != 1 {
			t.Errorf("envelope %+v", ev)
		}
		if ev.DetailType != ecssim.DetailTypeTask {
			continue
		}
		if ev.Resources[0] != arn {
			t.Errorf("task event resources %v", ev.Resources)
		}
		for k := range keySet(doc, "detail") {
			if !documented[k] {
				t.Errorf("Task State Change detail key %q appears in no sample AWS published", k)
			}
		}
		for k := range keySet(doc, "detail.containers.0") {
			if !documentedContainer[k] {
				t.Errorf("Task State Change container key %q appears in no sample AWS published", k)
			}
		}
		switch at(doc, "detail.lastStatus") {
		case "RUNNING":
			running = doc
		case "STOPPED":
			stopped = doc
		}
	}
	if running == nil || stopped == nil {
		t.Fatalf("no RUNNING or no STOPPED Task State Change: %v", w.events.list())
	}
	have := keySet(running, "detail")
	for k := range ec2Example {
		if !have[k] {
			t.Errorf("RUNNING Task State Change lacks %q of the guide's EC2 example", k)
		}
	}
	for _, k := range []string{"stoppedAt", "stoppingAt", "stopCode", "stoppedReason", "executionStoppedAt"} {
		if !keySet(stopped, "detail")[k] {
			t.Errorf("STOPPED Task State Change lacks %q (kotlinx-2022 sample)", k)
		}
	}
	if at(running, "detail.containerInstanceArn") != ci || at(running, "detail.launchType") != "EC2" {
		t.Errorf("EC2 task event: %v", running["detail"])
	}

	ciDocs := sample(t, "docs-container-instance-active.json")
	ciCaptured := sample(t, "capacity-2017-ci-active-noattrs.json")
	ciKnown := keySet(ciDocs, "detail")
	for k := range keySet(ciCaptured, "detail") {
		ciKnown[k] = true
	}
	var sawInstance bool
	for _, ev := range w.events.list() {
		if ev.DetailType != ecssim.DetailTypeInstance {
			continue
		}
		sawInstance = true
		doc := decoded(t, ev)
		if ev.Resources[0] != ci {
			t.Errorf("instance event resources %v", ev.Resources)
		}
		got := keySet(doc, "detail")
		for k := range got {
			if !ciKnown[k] {
				t.Errorf("Container Instance State Change key %q appears in no sample AWS published", k)
			}
		}
		for k := range keySet(ciDocs, "detail") {
			if !got[k] {
				t.Errorf("Container Instance State Change lacks %q of the guide's example", k)
			}
		}
		if names := keys(at(doc, "detail.registeredResources.0")); !slices.Contains(names, "integerValue") {
			t.Errorf("registeredResources entry %v", names)
		}
	}
	if !sawInstance {
		t.Fatal("no Container Instance State Change")
	}
}
