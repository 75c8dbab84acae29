package cloudtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/cfntemplate"
	"github.com/tether-ecs/tether/test/world/ec2sim"
	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/fakehost"
	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/motoserver"
	"github.com/tether-ecs/tether/test/world/samlocal"
	"github.com/tether-ecs/tether/test/world/ssmsim"
)

// The three implementations the conformance table runs against, each
// set up with the same resources in its own way.

const (
	region  = "us-west-2"
	account = "123456789012"
	azA     = region + "a"
	azB     = region + "b"
	cluster = "conformance"
	family  = "conformance-app"
	service = "conformance-svc"
	// stack names the SSM documents as template.yaml does for a stack:
	// tether-<stack>-mount and tether-<stack>-unmount.
	stack = "conformance"
)

var (
	mountDoc   = "tether-" + stack + "-mount"
	unmountDoc = "tether-" + stack + "-unmount"
	// template is the SAM template whose SSM documents tether sends.
	template = filepath.Join("..", "..", "..", "..", "template.yaml")
)

// target is one implementation of the AWS calls tether's seam makes: its
// clients behind cloud's SDK-exact interfaces and the resources the rows
// name.
type target struct {
	name string
	ec2  cloud.EC2API
	ecs  cloud.ECSAPI
	ssm  cloud.SSMAPI
	fx   fixtures
	// memo carries what one row made to a later one (a volume id, a
	// command id).
	memo map[string]string
}

// fixtures are the resources the rows name. An empty one is a resource
// the target cannot make (moto has no stopping instance and no SSM agent):
// the rows that need it are not asked of that target.
type fixtures struct {
	running, runningB string // running instances in azA and azB
	stopped, stopping string // in azA
	terminated        string
	ssmDown           string // running, its SSM agent down long enough that SSM shows it ConnectionLost

	volAvail      string // available in azA; the refusals name it
	volAttach     string // available in azA; attached to running by a row
	volForStopped string // available in azA; attached to stopped by a row
	volDelete     string // available in azA; deleted by a row
	volInUse      string // attached to running as /dev/xvdf
	volOnStopping string // attached to stopping as /dev/xvdf

	containerInstance string // running's
	taskDef           string // family's revision 1 (ARN)
	task, taskToStop  string // family's tasks on running, desired RUNNING
}

// roleTag marks the fixtures' volumes, so the rows can filter on a tag as
// tether does.
const roleTag = "conformance"

func newTarget(name string, e cloud.EC2API, c cloud.ECSAPI, s cloud.SSMAPI) *target {
	return &target{name: name, ec2: e, ecs: c, ssm: s, memo: map[string]string{}}
}

// settleFunc waits until what a request started has ended as the target
// ends it: "create" until the volume is available, "attach" until it is
// attached.
type settleFunc func(t *testing.T, ctx context.Context, step, volumeID string)

// volume creates a 1 GiB gp3 volume in azA tagged with its role and
// waits until it is available.
func (tg *target) volume(t *testing.T, ctx context.Context, settle settleFunc, role string) string {
	t.Helper()
	out, err := tg.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1),
		VolumeType: ec2types.VolumeTypeGp3, TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeVolume,
			Tags: []ec2types.Tag{{Key: aws.String(roleTag), Value: aws.String(role)}}}}})
	if err != nil {
		t.Fatalf("%s: setup: CreateVolume %s: %v", tg.name, role, err)
	}
	id := aws.ToString(out.VolumeId)
	settle(t, ctx, "create", id)
	return id
}

// attached attaches volume to instance as /dev/xvdf and waits until it is
// attached.
func (tg *target) attached(t *testing.T, ctx context.Context, settle settleFunc, volumeID, instanceID string) {
	t.Helper()
	if _, err := tg.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(volumeID), InstanceId: aws.String(instanceID),
		Device: aws.String("/dev/xvdf")}); err != nil {
		t.Fatalf("%s: setup: AttachVolume %s to %s: %v", tg.name, volumeID, instanceID, err)
	}
	settle(t, ctx, "attach", volumeID)
}

// volumes makes the fixtures' volumes, all but volOnStopping.
func (tg *target) volumes(t *testing.T, ctx context.Context, settle settleFunc) {
	t.Helper()
	fx := &tg.fx
	fx.volAvail = tg.volume(t, ctx, settle, "available")
	fx.volAttach = tg.volume(t, ctx, settle, "to-attach")
	fx.volForStopped = tg.volume(t, ctx, settle, "for-stopped")
	fx.volDelete = tg.volume(t, ctx, settle, "to-delete")
	fx.volInUse = tg.volume(t, ctx, settle, "in-use")
	tg.attached(t, ctx, settle, fx.volInUse, fx.running)
}

func staticConfig(url string) aws.Config {
	// One attempt: the table shows each answer as it came, never a retry's.
	return aws.Config{Region: region, BaseEndpoint: aws.String(url), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")}
}

// worldTarget is the local AWS world: ec2sim, ecssim and ssmsim behind
// one awsproto Router (which checks every request against botocore's
// models), reached over HTTP by the real SDK clients. Its instances are
// fakehost guests. Throttling is off: the table is about what a request
// is answered, not how fast it may be sent.
func worldTarget(t *testing.T, ctx context.Context) *target {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	// A stop takes a day, so "an instance that is stopping" stays so for
	// the whole table; everything else is instant.
	profile := latency.Profile{Name: "conformance", Dists: map[latency.Op]latency.Dist{ec2sim.OpStopInstance: {Median: 24 * time.Hour}}}
	ec2Srv, err := ec2sim.New(ec2sim.Config{Dir: t.TempDir(), Logger: log, Profile: profile, Region: region, Account: account})
	if err != nil {
		t.Fatal(err)
	}
	ecsSrv := ecssim.New(ecssim.Options{Logger: log, Region: region, Account: account})
	// An invocation stays invisible for a day after SendCommand, so "right
	// after" does not depend on how fast the row runs. ConnectionLostAfter
	// 0: an agent that stops shows ConnectionLost at once.
	ssmSrv := ssmsim.New(ssmsim.Config{Logger: log, Region: region, Account: account, Invisible: 24 * time.Hour})
	ec2Srv.SetThrottling(false)
	ecsSrv.SetThrottling(false)
	ssmSrv.SetThrottling(false)
	router := awsproto.NewRouter()
	ec2Srv.Register(router)
	ecsSrv.Register(router)
	ssmSrv.Register(router)
	hs := httptest.NewServer(router)
	var hosts []*fakehost.Host
	t.Cleanup(func() {
		hs.Close()
		_ = ssmSrv.Close()
		_ = ecsSrv.Close()
		_ = ec2Srv.Close()
		for _, h := range hosts {
			_ = h.Close()
		}
	})
	cfg := staticConfig(hs.URL)
	ec2c, ecsc := ec2.NewFromConfig(cfg), ecs.NewFromConfig(cfg)
	tg := newTarget("world", ec2c, ecsc, ssm.NewFromConfig(cfg))

	n := 0
	launch := func(az string) (string, *fakehost.Host) {
		n++
		id := fmt.Sprintf("i-0%016x", 0xc0f0000+n)
		h := fakehost.New(fakehost.Options{InstanceID: id, AZ: az, Logger: log})
		hosts = append(hosts, h)
		if err := ec2Srv.AddInstance(ec2sim.InstanceSpec{ID: id, AZ: az, Host: h}); err != nil {
			t.Fatal(err)
		}
		return id, h
	}
	fx := &tg.fx
	var runningHost, downHost *fakehost.Host
	fx.running, runningHost = launch(azA)
	fx.runningB, _ = launch(azB)
	fx.stopped, _ = launch(azA)
	fx.stopping, _ = launch(azA)
	fx.terminated, _ = launch(azA)
	fx.ssmDown, downHost = launch(azA)
	if err := ec2Srv.StopInstance(ctx, fx.stopped, true); err != nil {
		t.Fatal(err)
	}
	if err := ec2Srv.TerminateInstance(ctx, fx.terminated); err != nil {
		t.Fatal(err)
	}
	settle := func(t *testing.T, ctx context.Context, step, volumeID string) {
		t.Helper()
		waitVolume(t, ctx, ec2c, step, volumeID)
	}
	tg.volumes(t, ctx, settle)
	fx.volOnStopping = tg.volume(t, ctx, settle, "on-stopping")
	tg.attached(t, ctx, settle, fx.volOnStopping, fx.stopping)
	if _, err := ec2c.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{fx.stopping}}); err != nil {
		t.Fatal(err)
	}
	if st, err := ec2Srv.InstanceState(fx.stopping); err != nil || st != "stopping" {
		t.Fatalf("world: setup: %s is %q (%v), want stopping", fx.stopping, st, err)
	}

	// The template deployed as the world deploys it (its documents as the
	// world's Linux instances run them), without functions.
	bus := eventbus.New(eventbus.Options{Region: region, Account: account, Logger: log})
	dep, err := samlocal.Deploy(ctx, samlocal.Config{Template: template, StackName: stack, Region: region, Account: account, Parameters: map[string]string{"ClusterName": cluster},
		Endpoint: hs.URL, Bus: bus, SSM: ssmSrv, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = dep.Stop()
		_ = bus.Close()
	})
	if dep.Documents["MountDocument"] != mountDoc || dep.Documents["UnmountDocument"] != unmountDoc {
		t.Fatalf("world: setup: template.yaml's documents are %v, want %s and %s", dep.Documents, mountDoc, unmountDoc)
	}
	if err := ssmSrv.AddInstance(fx.running, runningHost); err != nil {
		t.Fatal(err)
	}
	if err := ssmSrv.AddInstance(fx.ssmDown, downHost); err != nil {
		t.Fatal(err)
	}
	if err := ssmSrv.StopAgent(fx.ssmDown); err != nil {
		t.Fatal(err)
	}

	if _, err := ecsc.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String(cluster)}); err != nil {
		t.Fatal(err)
	}
	if fx.containerInstance, err = ecsSrv.RegisterInstance(ctx, ecssim.InstanceRegistration{Cluster: cluster, EC2InstanceID: fx.running,
		AZ: azA, Host: runningHost}); err != nil {
		t.Fatal(err)
	}
	tg.ecsTasksAndService(t, ctx, ecsc, sdkRunTask(ctx, ecsc))
	return tg
}

// waitVolume polls the world until a create or attach has ended (bounded
// by ctx).
func waitVolume(t *testing.T, ctx context.Context, c *ec2.Client, step, volumeID string) {
	t.Helper()
	for {
		out, err := c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{volumeID}})
		if err != nil {
			t.Fatalf("world: setup: waiting for %s of %s: %v", step, volumeID, err)
		}
		v := out.Volumes[0]
		switch {
		case step == "create" && v.State == ec2types.VolumeStateAvailable:
			return
		case step == "attach" && len(v.Attachments) == 1 && v.Attachments[0].State == ec2types.VolumeAttachmentStateAttached:
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("world: setup: %s of %s not over (%s): %v", step, volumeID, v.State, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// ecsTasksAndService registers family's task definition, runs two of its
// tasks (with runTask) and creates an empty service, through the SDK
// (world and moto).
func (tg *target) ecsTasksAndService(t *testing.T, ctx context.Context, c *ecs.Client, runTask func(taskDef string, count int) ([]string, error)) {
	t.Helper()
	td, err := c.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{Family: aws.String(family),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("app"), Image: aws.String("busybox"),
			Memory: aws.Int32(128), Command: []string{"sleep", "3600"}, Essential: aws.Bool(true)}}})
	if err != nil {
		t.Fatalf("%s: setup: RegisterTaskDefinition: %v", tg.name, err)
	}
	tg.fx.taskDef = aws.ToString(td.TaskDefinition.TaskDefinitionArn)
	tasks, err := runTask(tg.fx.taskDef, 2)
	if err != nil {
		t.Fatalf("%s: setup: RunTask: %v", tg.name, err)
	}
	if len(tasks) != 2 {
		t.Fatalf("%s: setup: RunTask started %d tasks", tg.name, len(tasks))
	}
	tg.fx.task, tg.fx.taskToStop = tasks[0], tasks[1]
	if _, err := c.CreateService(ctx, &ecs.CreateServiceInput{Cluster: aws.String(cluster), ServiceName: aws.String(service),
		TaskDefinition: aws.String(tg.fx.taskDef), DesiredCount: aws.Int32(0)}); err != nil {
		t.Fatalf("%s: setup: CreateService: %v", tg.name, err)
	}
}

// sdkRunTask runs tasks through the SDK.
func sdkRunTask(ctx context.Context, c *ecs.Client) func(string, int) ([]string, error) {
	return func(taskDef string, count int) ([]string, error) {
		out, err := c.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String(cluster), TaskDefinition: aws.String(taskDef), Count: aws.Int32(int32(count))})
		if err != nil {
			return nil, err
		}
		var arns []string
		for _, task := range out.Tasks {
			arns = append(arns, aws.ToString(task.TaskArn))
		}
		return arns, nil
	}
}

// rawRunTask runs tasks in moto by hand: moto writes a task's
// containers[].cpu as a number where ECS's model has a string, so the
// SDK cannot read its RunTask answer.
func rawRunTask(ctx context.Context, url string) func(string, int) ([]string, error) {
	return func(taskDef string, count int) ([]string, error) {
		body, _ := json.Marshal(map[string]any{"cluster": cluster, "taskDefinition": taskDef, "count": count})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("X-Amz-Target", ecssim.Target+".RunTask")
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		// moto picks the service from the credential scope.
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/"+region+"/ecs/aws4_request, SignedHeaders=host, Signature=0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out struct {
			Tasks []struct {
				TaskArn string `json:"taskArn"`
			} `json:"tasks"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("HTTP %d: %v", resp.StatusCode, err)
		}
		var arns []string
		for _, task := range out.Tasks {
			arns = append(arns, task.TaskArn)
		}
		return arns, nil
	}
}

// fakeTarget is cloudtest: its clients are called directly, and its
// driver finishes what the world finishes by itself.
func fakeTarget(t *testing.T, ctx context.Context) *target {
	t.Helper()
	w := cloudtest.New(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	tg := newTarget("fake", w.EC2(), w.ECS(), w.SSM(mountDoc, unmountDoc))
	fx := &tg.fx
	n := 0
	launch := func(az string) string {
		n++
		id := fmt.Sprintf("i-0%016x", 0xfa4e000+n)
		w.AddInstance(id, az)
		return id
	}
	fx.running, fx.runningB, fx.stopped, fx.stopping = launch(azA), launch(azB), launch(azA), launch(azA)
	fx.terminated, fx.ssmDown = launch(azA), launch(azA)
	w.SetInstanceState(fx.stopped, "stopped")
	w.SetInstanceState(fx.terminated, "terminated")
	w.SetSSMDown(fx.ssmDown, true)
	settle := func(t *testing.T, _ context.Context, step, volumeID string) {
		t.Helper()
		w.Complete(cloudtest.Op{Kind: step, ID: volumeID})
	}
	tg.volumes(t, ctx, settle)
	fx.volOnStopping = tg.volume(t, ctx, settle, "on-stopping")
	tg.attached(t, ctx, settle, fx.volOnStopping, fx.stopping)
	w.SetInstanceState(fx.stopping, "stopping")

	fx.containerInstance = w.InstanceState(fx.running).CI
	fx.taskDef = fmt.Sprintf("arn:aws:ecs:%s:%s:task-definition/%s:1", region, account, family)
	w.AddTaskDef(cloudtest.TaskDef{ARN: fx.taskDef})
	fx.task, fx.taskToStop = w.PlaceTask(fx.taskDef, fx.running), w.PlaceTask(fx.taskDef, fx.running)
	w.AddService(service, 0, 100, 200)
	return tg
}

// motoTarget is moto's server, set up through the SDK. It has no stopping
// state (a stop is immediate) and no SSM agent, so fx.stopping and
// fx.ssmDown stay empty.
func motoTarget(t *testing.T, ctx context.Context, url string) *target {
	t.Helper()
	cfg := staticConfig(url)
	ec2c, ecsc, ssmc := ec2.NewFromConfig(cfg), ecs.NewFromConfig(cfg), ssm.NewFromConfig(cfg)
	tg := newTarget("moto", ec2c, ecsc, ssmc)
	fx := &tg.fx
	launch := func(az string) string {
		out, err := ec2c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-12345678"), InstanceType: ec2types.InstanceTypeT3Medium,
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1), Placement: &ec2types.Placement{AvailabilityZone: aws.String(az)}})
		if err != nil {
			t.Fatalf("moto: setup: RunInstances: %v", err)
		}
		return aws.ToString(out.Instances[0].InstanceId)
	}
	fx.running, fx.runningB, fx.stopped, fx.terminated = launch(azA), launch(azB), launch(azA), launch(azA)
	if _, err := ec2c.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{fx.stopped}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ec2c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{fx.terminated}}); err != nil {
		t.Fatal(err)
	}
	tg.volumes(t, ctx, func(*testing.T, context.Context, string, string) {}) // moto has no transitional states

	for logicalID, name := range map[string]string{"MountDocument": mountDoc, "UnmountDocument": unmountDoc} {
		content := templateDocument(t, logicalID)
		if _, err := ssmc.CreateDocument(ctx, &ssm.CreateDocumentInput{Name: aws.String(name), Content: aws.String(content),
			DocumentType: ssmtypes.DocumentTypeCommand, DocumentFormat: ssmtypes.DocumentFormatJson}); err != nil {
			t.Fatalf("moto: setup: CreateDocument %s: %v", name, err)
		}
	}

	if _, err := ecsc.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String(cluster)}); err != nil {
		t.Fatal(err)
	}
	// moto registers only an instance its EC2 knows, named by an instance
	// identity document as the ECS agent sends it.
	identity, _ := json.Marshal(map[string]string{"instanceId": fx.running, "availabilityZone": azA, "region": region,
		"accountId": account, "instanceType": "t3.medium", "imageId": "ami-12345678"})
	reg, err := ecsc.RegisterContainerInstance(ctx, &ecs.RegisterContainerInstanceInput{Cluster: aws.String(cluster),
		InstanceIdentityDocument: aws.String(string(identity))})
	if err != nil {
		t.Fatalf("moto: setup: RegisterContainerInstance: %v", err)
	}
	fx.containerInstance = aws.ToString(reg.ContainerInstance.ContainerInstanceArn)
	tg.ecsTasksAndService(t, ctx, ecsc, rawRunTask(ctx, url))
	return tg
}

// templateDocument is the content of one of template.yaml's SSM documents
// as CloudFormation would create it (JSON).
func templateDocument(t *testing.T, logicalID string) string {
	t.Helper()
	tpl, err := cfntemplate.Load(template)
	if err != nil {
		t.Fatal(err)
	}
	res, ok := tpl.Resource(logicalID)
	if !ok {
		t.Fatalf("template.yaml has no %s", logicalID)
	}
	r := &cfntemplate.Resolver{Values: cfntemplate.PseudoParameters(stack, region, account)}
	for k, v := range tpl.Defaults() {
		r.Values[k] = v
	}
	content, err := r.Resolve(res.Property("Content"))
	if err != nil {
		t.Fatal(err)
	}
	buf, err := json.Marshal(content)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf)
}

// startMoto starts moto's server; without it the moto column is empty and
// the test says so (it fails in CI, where nothing may be missing).
func startMoto(t *testing.T, ctx context.Context) (string, error) {
	t.Helper()
	s, err := motoserver.StartWithError(ctx)
	if err != nil {
		if errors.Is(err, motoserver.ErrMissing) {
			return "", err
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s.URL, nil
}
