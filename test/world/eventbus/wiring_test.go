package eventbus_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/fakehost"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// ECS's events reach the functions as contracts.md routes them: task
// changes through TaskQueue, instance changes through InstanceQueue, each
// an SQS batch whose bodies are the EventBridge envelopes.
func TestECSEventsReachTheFunctionsThroughQueues(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bus := eventbus.New(eventbus.Options{Seed: 9})
	defer bus.Close()
	srv := ecssim.New(ecssim.Options{Seed: 9, Publisher: bus})
	defer srv.Close()

	const clusterArn = "arn:aws:ecs:us-west-2:123456789012:cluster/tether"
	queues := map[string]*eventbus.Queue{}
	for _, name := range []string{"TaskQueue", "InstanceQueue"} {
		dlq, _ := bus.CreateQueue(name+"DLQ", eventbus.QueueOptions{})
		q, err := bus.CreateQueue(name, eventbus.QueueOptions{DeadLetter: dlq, MaxReceiveCount: 5})
		if err != nil {
			t.Fatal(err)
		}
		queues[name] = q
	}
	rules := map[string]string{
		"TaskQueue":     `{"source":["aws.ecs"],"detail-type":["ECS Task State Change"],"detail":{"clusterArn":["` + clusterArn + `"]}}`,
		"InstanceQueue": `{"source":["aws.ecs"],"detail-type":["ECS Container Instance State Change"],"detail":{"clusterArn":["` + clusterArn + `"]}}`,
	}
	for q, pattern := range rules {
		if err := bus.PutRule(q+"Rule", pattern, eventbus.QueueTarget{Queue: queues[q]}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[string][]string{} // detail-type -> "lastStatus" or "status" values
	fn := func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range ev.Records {
			var e worldapi.Event
			if err := json.Unmarshal([]byte(r.Body), &e); err != nil {
				return events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{{ItemIdentifier: r.MessageId}}}, nil
			}
			var d struct{ LastStatus, Status string }
			_ = json.Unmarshal(e.Detail, &d)
			seen[e.DetailType] = append(seen[e.DetailType], d.LastStatus+d.Status)
		}
		return events.SQSEventResponse{}, nil
	}
	for name, q := range queues {
		m, err := bus.StartMapping(q, bus.InProcess(name, lambda.NewHandler(fn)), eventbus.MappingOptions{ReportBatchItemFailures: true, PollWait: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Stop()
	}

	if _, err := srv.Handle(ctx, "CreateCluster", []byte(`{"clusterName":"tether"}`)); err != nil {
		t.Fatal(err)
	}
	h := fakehost.New(fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a"})
	defer h.Close()
	if _, err := srv.RegisterInstance(ctx, ecssim.InstanceRegistration{Cluster: "tether", EC2InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a", Host: h}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Handle(ctx, "RegisterTaskDefinition", []byte(`{"family":"app","containerDefinitions":[{"name":"app","image":"busybox","memory":64}]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Handle(ctx, "RunTask", []byte(`{"cluster":"tether","taskDefinition":"app"}`)); err != nil {
		t.Fatal(err)
	}
	if err := srv.WaitFor(ctx, "tether", "the task RUNNING", func(sn ecssim.Snapshot) bool {
		return len(sn.Tasks) == 1 && sn.Tasks[0].LastStatus == "RUNNING"
	}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range queues {
		if err := q.WaitEmpty(ctx); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if got := seen[ecssim.DetailTypeTask]; len(got) < 2 || got[len(got)-1] != "RUNNING" {
		t.Fatalf("task events seen by the function: %v", got)
	}
	if got := seen[ecssim.DetailTypeInstance]; len(got) < 2 || got[0] != "ACTIVE" {
		t.Fatalf("instance events seen by the function: %v", got)
	}
}
