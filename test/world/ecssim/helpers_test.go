package ecssim_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/fakehost"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// events records what the simulator publishes.
type events struct {
	mu  sync.Mutex
	all []worldapi.Event
}

func (e *events) Publish(ev worldapi.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) list() []worldapi.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]worldapi.Event(nil), e.all...)
}

// taskEvents decodes the Task State Changes of one task, in order.
func (e *events) taskEvents(t *testing.T, taskArn string) []ecssim.TaskDetail {
	t.Helper()
	var out []ecssim.TaskDetail
	for _, ev := range e.list() {
		if ev.DetailType != ecssim.DetailTypeTask || ev.Resources[0] != taskArn {
			continue
		}
		var d ecssim.TaskDetail
		if err := json.Unmarshal(ev.Detail, &d); err != nil {
			t.Fatalf("task event detail: %v", err)
		}
		out = append(out, d)
	}
	return out
}

type world struct {
	srv    *ecssim.Server
	router *awsproto.Router
	url    string
	ecs    *ecs.Client
	events *events
	disks  *fakehost.Disks
	hosts  map[string]*fakehost.Host
}

const testCluster = "tether-test"

func newWorld(t *testing.T, timing ecssim.Timing) *world {
	t.Helper()
	ev := &events{}
	srv := ecssim.New(ecssim.Options{Seed: 7, Publisher: ev, Timing: timing})
	t.Cleanup(func() { _ = srv.Close() })
	srv.SetThrottling(false) // tests call fast with one attempt; limits_test.go turns it on
	router := awsproto.NewRouter()
	srv.Register(router)
	hs := httptest.NewServer(router)
	t.Cleanup(hs.Close)
	w := &world{srv: srv, router: router, url: hs.URL, events: ev, disks: fakehost.NewDisks(), hosts: map[string]*fakehost.Host{}}
	w.ecs = ecs.New(ecs.Options{
		BaseEndpoint: aws.String(hs.URL), Region: "us-west-2",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDWORLD", "secret", ""),
		RetryMaxAttempts: 1,
	})
	return w
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (w *world) cluster(t *testing.T) {
	t.Helper()
	if _, err := w.ecs.CreateCluster(ctxT(t), &ecs.CreateClusterInput{ClusterName: aws.String(testCluster)}); err != nil {
		t.Fatalf("CreateCluster: %v", err)
	}
}

// addHost registers a fake host; opts.InstanceID and AZ are required.
func (w *world) addHost(t *testing.T, opts fakehost.Options) string {
	t.Helper()
	if opts.Disks == nil {
		opts.Disks = w.disks
	}
	h := fakehost.New(opts)
	t.Cleanup(func() { _ = h.Close() })
	w.hosts[opts.InstanceID] = h
	arn, err := w.srv.RegisterInstance(ctxT(t), ecssim.InstanceRegistration{
		Cluster: testCluster, EC2InstanceID: opts.InstanceID, AZ: opts.AZ, Host: h,
	})
	if err != nil {
		t.Fatalf("RegisterInstance %s: %v", opts.InstanceID, err)
	}
	return arn
}

// seedTaskDef returns the seed's task definition (driver tether) with its
// variables filled.
func seedTaskDef(t *testing.T, az string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/mysql-taskdef.json")
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer("${CWLogGroupName}", "tether-demo", "${AWSRegion}", "us-west-2", "${AvailabilityZone}", az).Replace(string(b))
}

func (w *world) registerSeedTaskDef(t *testing.T, az string) string {
	t.Helper()
	var in ecs.RegisterTaskDefinitionInput
	if err := json.Unmarshal([]byte(seedTaskDef(t, az)), &in); err != nil {
		t.Fatalf("seed task definition into SDK input: %v", err)
	}
	out, err := w.ecs.RegisterTaskDefinition(ctxT(t), &in)
	if err != nil {
		t.Fatalf("RegisterTaskDefinition: %v", err)
	}
	return *out.TaskDefinition.TaskDefinitionArn
}

// seedService creates the seed's service (max 100 / min 0, awsvpc, NLB).
func (w *world) seedService(t *testing.T, taskDefArn string) {
	t.Helper()
	_, err := w.ecs.CreateService(ctxT(t), &ecs.CreateServiceInput{
		Cluster: aws.String(testCluster), ServiceName: aws.String("mysql-svc"), TaskDefinition: aws.String(taskDefArn),
		LoadBalancers: []types.LoadBalancer{{
			TargetGroupArn: aws.String("arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/mysql/0123456789abcdef"),
			ContainerName:  aws.String("mysql"), ContainerPort: aws.Int32(3306),
		}},
		DesiredCount: aws.Int32(1), LaunchType: types.LaunchTypeEc2, HealthCheckGracePeriodSeconds: aws.Int32(60),
		DeploymentConfiguration: &types.DeploymentConfiguration{MaximumPercent: aws.Int32(100), MinimumHealthyPercent: aws.Int32(0)},
		NetworkConfiguration: &types.NetworkConfiguration{AwsvpcConfiguration: &types.AwsVpcConfiguration{
			Subnets: []string{"subnet-0a1b2c3d"}, SecurityGroups: []string{"sg-0a1b2c3d"}, AssignPublicIp: types.AssignPublicIpDisabled,
		}},
	})
	if err != nil {
		t.Fatalf("CreateService: %v", err)
	}
}

// liveServiceTask returns the service's task whose desired status is RUNNING.
func liveServiceTask(sn ecssim.Snapshot, service string) (ecssim.TaskInfo, bool) {
	for _, t := range sn.ServiceTasks(service) {
		if t.DesiredStatus == "RUNNING" {
			return t, true
		}
	}
	return ecssim.TaskInfo{}, false
}

// waitLive waits (bounded by ctx) until the service's live task satisfies
// ok, and returns it.
func (w *world) waitLive(ctx context.Context, t *testing.T, service, what string, ok func(ecssim.TaskInfo) bool) ecssim.TaskInfo {
	t.Helper()
	var got ecssim.TaskInfo
	if err := w.srv.WaitFor(ctx, testCluster, what, func(sn ecssim.Snapshot) bool {
		live, found := liveServiceTask(sn, service)
		got = live
		return found && ok(live)
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func isRunning(ti ecssim.TaskInfo) bool { return ti.LastStatus == "RUNNING" }

// replaces is a waitLive condition: a task other than old, RUNNING.
func replaces(old ecssim.TaskInfo) func(ecssim.TaskInfo) bool {
	return func(ti ecssim.TaskInfo) bool { return ti.Arn != old.Arn && isRunning(ti) }
}

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}
