package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/emf"
	"github.com/tether-ecs/tether/functions/internal/eventsrc"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// The dispatcher with the real reconciler core over the in-memory fake AWS:
// events travel as EventBridge JSON in SQS records, keys that wait come back
// through the retry queue (the SQS endpoint) with their delay and hint,
// failed records come back after the visibility timeout. This is the seed's
// walkthrough end to end through the function layer.

const (
	coreCluster = "c" // cloudtest's cluster
	instA       = "i-0a1b2c3d4e5f60718"
	instB       = "i-0f9e8d7c6b5a40312"
	tdMySQL     = "arn:aws:ecs:us-east-1:111122223333:task-definition/mysql:1"
	visibility  = 120 * time.Second
	maxReceives = 5
)

// queued is one SQS message waiting to be delivered.
type queued struct {
	body     string
	due      time.Time
	receives int
}

type pump struct {
	t        *testing.T
	w        *cloudtest.World
	d        *Dispatcher
	srv      *sqsServer
	sentSeen int
	queue    []queued
	dlq      []queued
	seq      int
	batches  int
	retries  int
}

func newPump(t *testing.T) *pump {
	w := cloudtest.New(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
	c := cloud.NewWithClients(w.EC2(), w.ECS(), w.SSM("tether-mount", "tether-unmount"), cloud.Options{BatchWindow: -1})
	core, err := reconcile.New(reconcile.Config{
		Cloud: c, Cluster: coreCluster, MountDocument: "tether-mount", UnmountDocument: "tether-unmount",
		Logger:  slog.New(slog.NewJSONHandler(testWriter{t}, nil)),
		Metrics: emf.New(testWriter{t}, "Tether", w.Now),
		Now:     w.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.AddTaskDef(cloudtest.TaskDef{ARN: tdMySQL, Volumes: []cloudtest.DockerVolume{{
		Name: "rexray-vol", Driver: "tether", Scope: "shared", Autoprovision: true,
		DriverOpts: map[string]string{"volumetype": "gp2", "size": "5"},
	}}})
	srv := newSQSServer(t)
	dec, err := eventsrc.NewDecoder(coreCluster)
	if err != nil {
		t.Fatal(err)
	}
	rq, err := NewSQSRequeuer(srv.client(), queueURL)
	if err != nil {
		t.Fatal(err)
	}
	d := New(dec, core, rq, slog.New(slog.NewJSONHandler(testWriter{t}, nil)), Config{})
	return &pump{t: t, w: w, d: d, srv: srv}
}

// eventBridge writes a fake AWS event as EventBridge delivers it.
func (p *pump) eventBridge(ev cloudtest.Event) string {
	p.seq++
	env := map[string]any{
		"version": "0", "id": fmt.Sprintf("00000000-0000-4000-8000-%012d", p.seq),
		"account": "111122223333", "region": "us-east-1", "time": p.w.Now().UTC().Format(time.RFC3339),
	}
	clusterArn := "arn:aws:ecs:us-east-1:111122223333:cluster/" + coreCluster
	switch ev.Kind {
	case "task":
		env["source"], env["detail-type"], env["resources"] = "aws.ecs", "ECS Task State Change", []string{ev.Task}
		env["detail"] = map[string]any{
			"clusterArn": clusterArn, "taskArn": ev.Task, "taskDefinitionArn": ev.TaskDef, "containerInstanceArn": ev.CI,
			"lastStatus": ev.LastStatus, "desiredStatus": ev.DesiredStatus, "launchType": "EC2", "version": ev.Version,
			"updatedAt": p.w.Now().UTC().Format("2006-01-02T15:04:05.000Z"), "containers": []any{}, "attachments": []any{},
		}
	case "volume":
		env["source"], env["detail-type"] = "aws.ec2", "EBS Volume Notification"
		env["resources"] = []string{"arn:aws:ec2:us-east-1:111122223333:volume/" + ev.Volume}
		env["detail"] = map[string]any{"event": ev.Action, "result": ev.Result, "cause": "", "request-id": ""}
	case "instance":
		env["source"], env["detail-type"], env["resources"] = "aws.ecs", "ECS Container Instance State Change", []string{ev.Instance}
		env["detail"] = map[string]any{
			"clusterArn": clusterArn, "containerInstanceArn": ev.Instance, "ec2InstanceId": ev.EC2ID,
			"status": ev.Status, "agentConnected": ev.AgentConnected, "version": ev.Version, "attributes": []any{},
		}
	case "command":
		env["source"], env["detail-type"] = "aws.ssm", "EC2 Command Invocation Status-change Notification"
		env["resources"] = []string{"arn:aws:ec2:us-east-1:111122223333:instance/" + ev.EC2ID}
		env["detail"] = map[string]any{"command-id": ev.Command, "document-name": ev.Document, "instance-id": ev.EC2ID,
			"requested-date-time": p.w.Now().UTC().Format("2006-01-02T15:04:05.000Z"), "status": ev.Status}
	default:
		p.t.Fatalf("unknown fake event %+v", ev)
	}
	b, err := json.Marshal(env)
	if err != nil {
		p.t.Fatal(err)
	}
	return string(b)
}

// collect moves new world events and new retry messages onto the queue.
func (p *pump) collect() {
	now := p.w.Now()
	for _, ev := range p.w.TakeEvents() {
		p.queue = append(p.queue, queued{body: p.eventBridge(ev), due: now})
	}
	sent := p.srv.messages()
	for _, m := range sent[p.sentSeen:] {
		if *m.QueueUrl != queueURL {
			p.t.Fatalf("retry sent to %s", *m.QueueUrl)
		}
		p.queue = append(p.queue, queued{body: *m.MessageBody, due: now.Add(time.Duration(m.DelaySeconds) * time.Second)})
		p.retries++
	}
	p.sentSeen = len(sent)
}

// deliver hands the due messages (at most 10, oldest first) to HandleSQS.
func (p *pump) deliver() {
	now := p.w.Now()
	sort.SliceStable(p.queue, func(i, j int) bool { return p.queue[i].due.Before(p.queue[j].due) })
	var batch events.SQSEvent
	var taken []queued
	rest := p.queue[:0:0]
	for _, q := range p.queue {
		if !q.due.After(now) && len(taken) < 10 {
			q.receives++
			taken = append(taken, q)
			batch.Records = append(batch.Records, events.SQSMessage{
				MessageId: fmt.Sprintf("m%d-%d", p.batches, len(taken)-1), Body: q.body,
				Attributes: map[string]string{"ApproximateReceiveCount": fmt.Sprint(q.receives)},
			})
			continue
		}
		rest = append(rest, q)
	}
	p.queue = rest
	p.batches++
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := p.d.HandleSQS(ctx, batch)
	if err != nil {
		p.t.Fatalf("HandleSQS: %v", err)
	}
	failed := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	for i, r := range batch.Records {
		if !failed[r.MessageId] {
			continue
		}
		q := taken[i]
		if q.receives >= maxReceives {
			p.dlq = append(p.dlq, q)
			continue
		}
		q.due = now.Add(visibility)
		p.queue = append(p.queue, q)
	}
}

func (p *pump) settle(maxSteps int) {
	p.t.Helper()
	for step := 0; step < maxSteps; step++ {
		p.collect()
		now := p.w.Now()
		due, next := false, time.Time{}
		for _, q := range p.queue {
			if !q.due.After(now) {
				due = true
			} else if next.IsZero() || q.due.Before(next) {
				next = q.due
			}
		}
		switch {
		case due:
			p.deliver()
		case len(p.w.Pending()) > 0:
			p.w.Advance(time.Second)
			p.w.Complete(p.w.Pending()[0])
		case !next.IsZero():
			p.w.Advance(next.Sub(now))
		default:
			if len(p.dlq) > 0 {
				p.t.Fatalf("%d messages reached the dead-letter queue: %+v", len(p.dlq), p.dlq)
			}
			if v := p.w.Violations(); len(v) > 0 {
				p.t.Fatalf("safety violations:\n%s", strings.Join(v, "\n"))
			}
			return
		}
	}
	p.t.Fatalf("did not settle in %d steps; %d queued, pending %v", maxSteps, len(p.queue), p.w.Pending())
}

func (p *pump) volume() cloudtest.Volume {
	p.t.Helper()
	var out []cloudtest.Volume
	for _, v := range p.w.Volumes() {
		if v.Tags["tether:volume"] == "rexray-vol" && v.Tags["tether:cluster"] == coreCluster {
			out = append(out, v)
		}
	}
	if len(out) != 1 {
		p.t.Fatalf("want one volume for rexray-vol, have %+v", out)
	}
	return out[0]
}

func TestDispatcherWithTheCoreMovesTheVolume(t *testing.T) {
	p := newPump(t)
	p.w.AddInstance(instA, "us-east-1a")
	p.w.AddInstance(instB, "us-east-1a")

	t1 := p.w.PlaceTask(tdMySQL, instA)
	p.settle(300)
	if s := p.w.TaskState(t1); s.LastStatus != "RUNNING" {
		t.Fatalf("first task %s, want RUNNING (%s)", s.LastStatus, s.StoppedReason)
	}
	v := p.volume()
	if v.Att == nil || v.Att.Instance != instA {
		t.Fatalf("volume not on A: %+v", v.Att)
	}

	// Drain A: ECS stops T1 and places T2 on B; a Fargate task's event and a
	// malformed message ride along and are dropped.
	p.w.Drain(instA)
	p.w.StopTask(t1, "Task stopped during instance draining")
	t2 := p.w.PlaceTask(tdMySQL, instB)
	p.queue = append(p.queue, queued{body: `{"version":"0","id":"x`, due: p.w.Now()})
	p.settle(600)
	if s := p.w.TaskState(t2); s.LastStatus != "RUNNING" {
		t.Fatalf("second task %s, want RUNNING (%s)", s.LastStatus, s.StoppedReason)
	}
	v2 := p.volume()
	if v2.ID != v.ID || v2.Att == nil || v2.Att.Instance != instB {
		t.Fatalf("volume did not follow the task: was %s, now %+v", v.ID, v2)
	}
	if p.retries == 0 {
		t.Error("no key went through the retry queue; the test did not exercise it")
	}
	t.Logf("%d batches, %d retry messages, EC2 calls %v", p.batches, p.retries, p.w.Calls())
}
