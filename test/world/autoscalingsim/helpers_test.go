package autoscalingsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/ec2sim"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

const (
	azA = "us-west-2a"
	azB = "us-west-2b"
)

// recorder keeps every event EC2 and Auto Scaling published.
type recorder struct {
	mu  sync.Mutex
	all []worldapi.Event
}

func (r *recorder) Publish(e worldapi.Event) {
	r.mu.Lock()
	r.all = append(r.all, e)
	r.mu.Unlock()
}

func (r *recorder) list() []worldapi.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]worldapi.Event(nil), r.all...)
}

// lifecycleEvents are the lifecycle action events for an instance.
func (r *recorder) lifecycleEvents(t *testing.T, instanceID string) []LifecycleActionDetail {
	t.Helper()
	var out []LifecycleActionDetail
	for _, e := range r.list() {
		if e.DetailType != DetailLaunchLifecycleAction && e.DetailType != DetailTerminateLifecycleAction {
			continue
		}
		var d LifecycleActionDetail
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			t.Fatal(err)
		}
		if d.EC2InstanceID == instanceID {
			out = append(out, d)
		}
	}
	return out
}

type world struct {
	ec2    *ec2sim.Server
	asg    *Server
	url    string
	client *autoscaling.Client
	events *recorder

	mu       sync.Mutex
	launched int
	failNext int // launches to fail
}

// newWorld starts EC2 and Auto Scaling behind one router. Instances are
// EC2 instances without a guest. scale is Auto Scaling's TimeScale.
func newWorld(t *testing.T, scale float64) *world {
	t.Helper()
	w := &world{events: &recorder{}}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	var err error
	w.ec2, err = ec2sim.New(ec2sim.Config{Region: "us-west-2", Seed: 1, Dir: t.TempDir(), Publisher: w.events, Logger: logger,
		InstanceStateChanged: func(id, state string) {
			if w.asg != nil {
				w.asg.InstanceStateChanged(id, state)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	w.asg, err = New(Config{Region: "us-west-2", AZs: []string{azA, azB, "us-west-2c"}, EC2: w.ec2, Publisher: w.events,
		Logger: logger, Seed: 7, TimeScale: scale, HealthCheckEvery: 5 * time.Millisecond,
		Launcher: LauncherFunc(func(_ context.Context, r LaunchRequest) (string, error) {
			w.mu.Lock()
			w.launched++
			n, fail := w.launched, w.failNext > 0
			if fail {
				w.failNext--
			}
			w.mu.Unlock()
			if fail {
				return "", errors.New("InsufficientInstanceCapacity: scripted")
			}
			id := fmt.Sprintf("i-0%016x", n)
			return id, w.ec2.AddInstance(ec2sim.InstanceSpec{ID: id, AZ: r.AZ, Spot: r.Template.Spot, Tags: r.Tags})
		})})
	if err != nil {
		t.Fatal(err)
	}
	router := awsproto.NewRouter()
	w.ec2.Register(router)
	w.asg.Register(router)
	hs := httptest.NewServer(router)
	t.Cleanup(func() {
		hs.Close()
		w.asg.Close()
		w.ec2.Close()
	})
	w.url = hs.URL
	w.client = autoscaling.New(autoscaling.Options{Region: "us-west-2", BaseEndpoint: aws.String(hs.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 1
		})})
	if _, err := w.asg.AddLaunchTemplate(LaunchTemplate{Name: "ecs-ondemand"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.asg.AddLaunchTemplate(LaunchTemplate{Name: "ecs-spot", Spot: true}); err != nil {
		t.Fatal(err)
	}
	return w
}

// code returns the AWS error code of err ("" for nil).
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

// message returns the AWS error message of err.
func message(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorMessage()
	}
	return ""
}

// eventually polls cond (bounded, 20 s) and fails with what it waited for.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, now := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited for %s; now: %s", what, now)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// inService waits until the group has n InService instances and returns
// them in launch order.
func (w *world) inService(t *testing.T, group string, n int) []string {
	t.Helper()
	var ids []string
	eventually(t, fmt.Sprintf("%d instances InService in %s", n, group), func() (bool, string) {
		ids, _ = w.asg.InService(group)
		g, _ := w.asg.Group(group)
		return len(ids) == n && g.Launching == 0, fmt.Sprintf("%+v", g)
	})
	return ids
}

// lifecycleState is the instance's LifecycleState per
// DescribeAutoScalingInstances ("absent" when not listed).
func (w *world) lifecycleState(t *testing.T, id string) string {
	t.Helper()
	out, err := w.client.DescribeAutoScalingInstances(context.Background(), &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.AutoScalingInstances) == 0 {
		return "absent"
	}
	return aws.ToString(out.AutoScalingInstances[0].LifecycleState)
}

func (w *world) ec2State(id string) string {
	st, err := w.ec2.InstanceState(id)
	if err != nil {
		return err.Error()
	}
	return st
}
