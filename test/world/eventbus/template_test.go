package eventbus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// The repository's template.yaml, loaded: the same queues, rules, event
// source mappings and schedule the SAM deployment makes.
func TestLoadTheRepositoryTemplate(t *testing.T) {
	bus := eventbus.New(eventbus.Options{Seed: 4, TimeScale: 0.001})
	defer bus.Close()
	var mu sync.Mutex
	got := map[string][]string{} // function -> detail-types (or "retry")
	record := func(fn string) func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
		return func(_ context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range ev.Records {
				var e worldapi.Event
				if json.Unmarshal([]byte(r.Body), &e) == nil && e.DetailType != "" {
					got[fn] = append(got[fn], e.DetailType)
				} else {
					got[fn] = append(got[fn], "retry")
				}
			}
			return events.SQSEventResponse{}, nil
		}
	}
	swept := make(chan worldapi.Event, 1)
	w, err := bus.LoadTemplate("../../../template.yaml", eventbus.TemplateOptions{
		StackName: "tether", Params: map[string]string{"ClusterName": "demo"},
		Functions: map[string]eventbus.Invoker{
			"TaskStateFunction": bus.Function("taskstate", record("taskstate")),
			"DrainFunction":     bus.Function("drain", record("drain")),
			"HostsFunction":     bus.Function("hosts", record("hosts")),
			"SweepFunction": bus.Function("sweep", func(_ context.Context, e worldapi.Event) error {
				swept <- e
				return nil
			}),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Unwired) != 0 {
		t.Fatalf("unwired: %v", w.Unwired)
	}
	for _, id := range []string{"TaskQueue", "InstanceQueue", "VolumeQueue", "RetryQueue", "TaskDeadLetterQueue"} {
		if w.Queues[id] == nil {
			t.Fatalf("queue %s not made (have %v)", id, w.Queues)
		}
	}
	if o := w.Queues["TaskQueue"].Options(); o.VisibilityTimeout != 360*time.Second || o.MaxReceiveCount != 5 || o.DeadLetter != w.Queues["TaskDeadLetterQueue"] {
		t.Fatalf("TaskQueue options: %+v", o)
	}
	// TerminationHoldRule exists only with AutoScalingGroupNames (its Condition).
	if !slices.Equal(w.Rules, []string{"CommandRule", "HostDisconnectedRule", "HostStateRule", "InstanceDisconnectedRule", "InstanceStateRule", "SpotWarningRule", "TaskStateRule", "VolumeRule"}) ||
		len(w.Mappings) != 5 || !slices.Equal(w.Schedules, []string{"SweepFunction.Sweep"}) {
		t.Fatalf("wiring: rules %v, mappings %d, schedules %v", w.Rules, len(w.Mappings), w.Schedules)
	}

	clusterArn := "arn:aws:ecs:us-west-2:123456789012:cluster/"
	ev := func(source, detailType, cluster string) worldapi.Event {
		// The fields the template's rules filter on besides the cluster: an
		// EC2 task that stopped, an instance being drained.
		d, _ := json.Marshal(map[string]string{"clusterArn": clusterArn + cluster, "launchType": "EC2", "lastStatus": "STOPPED", "status": "DRAINING"})
		return worldapi.Event{Version: "0", ID: "x", Source: source, DetailType: detailType, Account: "123456789012", Region: "us-west-2", Resources: []string{}, Detail: d}
	}
	bus.Publish(ev("aws.ecs", "ECS Task State Change", "demo"))
	bus.Publish(ev("aws.ecs", "ECS Task State Change", "other")) // another cluster's: dropped by the pattern
	bus.Publish(ev("aws.ecs", "ECS Container Instance State Change", "demo"))
	bus.Publish(ev("aws.ec2", "EBS Volume Notification", ""))
	stopped, _ := json.Marshal(map[string]string{"instance-id": "i-0123456789abcdef0", "state": "stopped"})
	bus.Publish(worldapi.Event{Version: "0", ID: "y", Source: "aws.ec2", DetailType: "EC2 Instance State-change Notification", Account: "123456789012",
		Region: "us-west-2", Resources: []string{}, Detail: stopped})
	w.Queues["RetryQueue"].Send(`{"tether":"retry"}`, eventbus.SendOptions{})
	if err := bus.FireSchedule("SweepFunction.Sweep"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range w.Queues {
		if err := q.WaitEmpty(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if e := <-swept; e.DetailType != "Scheduled Event" {
		t.Fatalf("sweep got %+v", e)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(got["taskstate"])
	if !slices.Equal(got["taskstate"], []string{"EBS Volume Notification", "ECS Task State Change", "retry"}) ||
		!slices.Equal(got["drain"], []string{"ECS Container Instance State Change"}) ||
		!slices.Equal(got["hosts"], []string{"EC2 Instance State-change Notification"}) {
		t.Fatalf("functions got %v", got)
	}
}

func TestReservedConcurrencyThrottles(t *testing.T) {
	bus := eventbus.New(eventbus.Options{Seed: 4})
	defer bus.Close()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	inv := eventbus.Reserved(bus.Function("f", func(context.Context, json.RawMessage) error {
		started <- struct{}{}
		<-release
		return nil
	}), 1)
	done := make(chan error, 1)
	go func() {
		_, err := inv.Invoke(context.Background(), []byte(`{}`))
		done <- err
	}()
	<-started
	if _, err := inv.Invoke(context.Background(), []byte(`{}`)); err != eventbus.ErrThrottled {
		t.Fatalf("second concurrent invocation: %v, want ErrThrottled", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func writeTemplate(t *testing.T, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "template.yaml")
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// An AWS::Events::Rule with a ScheduleExpression is a schedule named by
// its logical id, delivering to its targets (queues and functions).
func TestScheduledRule(t *testing.T) {
	bus := eventbus.New(eventbus.Options{Seed: 4}) // unscaled: the 5-minute ticker never fires on its own here
	defer bus.Close()
	path := writeTemplate(t, `
Parameters:
  Every: {Type: String, Default: "rate(5 minutes)"}
Resources:
  Ticks:
    Type: AWS::SQS::Queue
  Tick:
    Type: AWS::Events::Rule
    Properties:
      ScheduleExpression: !Ref Every
      Targets:
        - {Id: q, Arn: !GetAtt Ticks.Arn}
        - {Id: f, Arn: {"Fn::GetAtt": [Ticker, Arn]}}
  Ticker:
    Type: AWS::Serverless::Function
    Properties: {Handler: bootstrap}
`)
	got := make(chan worldapi.Event, 1)
	w, err := bus.LoadTemplate(path, eventbus.TemplateOptions{StackName: "s", Functions: map[string]eventbus.Invoker{
		"Ticker": bus.Function("ticker", func(_ context.Context, e worldapi.Event) error { got <- e; return nil }),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(w.Rules, []string{"Tick"}) || !slices.Equal(w.Schedules, []string{"Tick"}) || len(w.Unwired) != 0 {
		t.Fatalf("wiring: rules %v, schedules %v, unwired %v", w.Rules, w.Schedules, w.Unwired)
	}
	if err := bus.FireSchedule("Tick"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		if e.DetailType != "Scheduled Event" || e.Source != "aws.events" || !slices.Equal(e.Resources, []string{"arn:aws:events:us-west-2:123456789012:rule/Tick"}) {
			t.Errorf("the function got %+v", e)
		}
	case <-ctx.Done():
		t.Fatal("the function was not invoked")
	}
	msgs, err := w.Queues["Ticks"].Receive(ctx, eventbus.ReceiveOptions{Max: 10})
	if err != nil || len(msgs) != 1 || !strings.Contains(msgs[0].Body, `"detail-type":"Scheduled Event"`) {
		t.Errorf("queue got %v, %v", msgs, err)
	}
}

func TestARuleNeedsAPatternOrASchedule(t *testing.T) {
	const rule = `
Resources:
  Q: {Type: AWS::SQS::Queue}
  R:
    Type: AWS::Events::Rule
    Properties:
%s      Targets: [{Id: q, Arn: !GetAtt Q.Arn}]
`
	for name, props := range map[string]string{
		"neither": "",
		"both":    "      ScheduleExpression: rate(1 minute)\n      EventPattern: {source: [x]}\n",
	} {
		t.Run(name, func(t *testing.T) {
			bus := eventbus.New(eventbus.Options{Seed: 1})
			defer bus.Close()
			if _, err := bus.LoadTemplate(writeTemplate(t, fmt.Sprintf(rule, props)), eventbus.TemplateOptions{StackName: "s"}); err == nil {
				t.Fatal("loaded")
			}
		})
	}
}

// RecursiveLoop (Allow or Terminate, default Terminate) from a function's
// properties or Globals.Function reaches its event source mappings.
func TestTemplateRecursiveLoop(t *testing.T) {
	const src = `
Globals:
  Function:
    Timeout: 30
%s
Resources:
  Q: {Type: AWS::SQS::Queue}
  R: {Type: AWS::SQS::Queue}
  Looping:
    Type: AWS::Serverless::Function
    Properties:
%s      Events:
        E: {Type: SQS, Properties: {Queue: !GetAtt Q.Arn}}
  Plain:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        E: {Type: SQS, Properties: {Queue: !GetAtt R.Arn}}
`
	nop := func(context.Context, events.SQSEvent) error { return nil }
	for _, c := range []struct {
		name, globals, own   string
		looping, plain, fail string
	}{
		{"default", "", "", "Terminate", "Terminate", ""},
		{"own", "", "      RecursiveLoop: Allow\n", "Allow", "Terminate", ""},
		{"globals", "    RecursiveLoop: Allow", "      RecursiveLoop: Terminate\n", "Terminate", "Allow", ""},
		{"invalid", "", "      RecursiveLoop: allow\n", "", "", `RecursiveLoop "allow"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			bus := eventbus.New(eventbus.Options{Seed: 1})
			defer bus.Close()
			w, err := bus.LoadTemplate(writeTemplate(t, fmt.Sprintf(src, c.globals, c.own)), eventbus.TemplateOptions{StackName: "s",
				Functions: map[string]eventbus.Invoker{"Looping": bus.Function("looping", nop), "Plain": bus.Function("plain", nop)}})
			if c.fail != "" {
				if err == nil || !strings.Contains(err.Error(), c.fail) {
					t.Fatalf("loaded (%v); want an error naming %s", err, c.fail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for id, want := range map[string]string{"Looping.E": c.looping, "Plain.E": c.plain} {
				if o := w.Mappings[id].Options(); string(o.RecursiveLoop) != want || o.Function != strings.TrimSuffix(id, ".E") {
					t.Errorf("%s: RecursiveLoop %q, function %q; want %q", id, o.RecursiveLoop, o.Function, want)
				}
			}
		})
	}
}
