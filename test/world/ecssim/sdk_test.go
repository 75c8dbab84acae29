package ecssim_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/fakehost"
)

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestClustersSDK(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	ctx := ctxT(t)
	for _, n := range []string{"a", "b", "c"} {
		out, err := w.ecs.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String(n)})
		if err != nil {
			t.Fatalf("CreateCluster %s: %v", n, err)
		}
		if got, want := *out.Cluster.ClusterArn, "arn:aws:ecs:us-west-2:123456789012:cluster/"+n; got != want || *out.Cluster.Status != "ACTIVE" {
			t.Fatalf("cluster %s: arn %s status %s", n, got, *out.Cluster.Status)
		}
	}
	again, err := w.ecs.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String("a")})
	if err != nil || *again.Cluster.ClusterName != "a" {
		t.Fatalf("CreateCluster is idempotent: %v", err)
	}
	var arns []string
	p := ecs.NewListClustersPaginator(w.ecs, &ecs.ListClustersInput{MaxResults: aws.Int32(2)})
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListClusters: %v", err)
		}
		pages++
		arns = append(arns, out.ClusterArns...)
	}
	if len(arns) != 3 || pages != 2 {
		t.Fatalf("ListClusters: %d arns over %d pages, want 3 over 2", len(arns), pages)
	}
	d, err := w.ecs.DescribeClusters(ctx, &ecs.DescribeClustersInput{Clusters: []string{"b", "arn:aws:ecs:us-west-2:123456789012:cluster/c", "nope"}})
	if err != nil {
		t.Fatalf("DescribeClusters: %v", err)
	}
	if len(d.Clusters) != 2 || len(d.Failures) != 1 || *d.Failures[0].Reason != "MISSING" || *d.Failures[0].Arn != "arn:aws:ecs:us-west-2:123456789012:cluster/nope" {
		t.Fatalf("DescribeClusters: %d clusters, failures %+v", len(d.Clusters), d.Failures)
	}
	_, err = w.ecs.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("nope")})
	var cnf *types.ClusterNotFoundException
	if !errors.As(err, &cnf) {
		t.Fatalf("ListTasks on a missing cluster: %v, want ClusterNotFoundException", err)
	}
}

func TestTaskDefinitionsSDK(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	ctx := ctxT(t)
	arn1 := w.registerSeedTaskDef(t, "us-west-2a")
	arn2 := w.registerSeedTaskDef(t, "us-west-2b")
	if arn1 != "arn:aws:ecs:us-west-2:123456789012:task-definition/mysql:1" || !strings.HasSuffix(arn2, ":2") {
		t.Fatalf("revisions: %s, %s", arn1, arn2)
	}
	for _, ref := range []string{"mysql", "mysql:2", arn2} {
		out, err := w.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String(ref)})
		if err != nil || *out.TaskDefinition.TaskDefinitionArn != arn2 {
			t.Fatalf("DescribeTaskDefinition %s: %v", ref, err)
		}
	}
	out, err := w.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("mysql:1")})
	if err != nil {
		t.Fatal(err)
	}
	td := out.TaskDefinition
	v := td.Volumes[0].DockerVolumeConfiguration
	if td.NetworkMode != types.NetworkModeAwsvpc || *td.Cpu != "512" || *td.Memory != "512" || v.Scope != types.ScopeShared ||
		!*v.Autoprovision || *v.Driver != "tether" || v.DriverOpts["size"] != "5" || v.DriverOpts["volumetype"] != "gp2" {
		t.Fatalf("task definition not kept: %+v / %+v", td, v)
	}
	if pm := td.ContainerDefinitions[0].PortMappings[0]; *pm.HostPort != 3306 || pm.Protocol != types.TransportProtocolTcp {
		t.Fatalf("awsvpc port mapping: hostPort %v protocol %s", pm.HostPort, pm.Protocol)
	}
	if *td.PlacementConstraints[0].Expression != "attribute:ecs.availability-zone==us-west-2a" {
		t.Fatalf("placement constraint: %+v", td.PlacementConstraints)
	}
	var req []string
	for _, a := range td.RequiresAttributes {
		req = append(req, *a.Name)
	}
	if !slices.Contains(req, "ecs.capability.docker-plugin.tether") || !slices.Contains(req, "ecs.capability.task-eni") {
		t.Fatalf("requiresAttributes %v", req)
	}
	if _, err := w.ecs.DeregisterTaskDefinition(ctx, &ecs.DeregisterTaskDefinitionInput{TaskDefinition: aws.String("mysql:2")}); err != nil {
		t.Fatal(err)
	}
	latest, err := w.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("mysql")})
	if err != nil || *latest.TaskDefinition.TaskDefinitionArn != arn1 {
		t.Fatalf("latest ACTIVE after deregistering :2 should be :1: %v", err)
	}
	gone, err := w.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("mysql:2")})
	if err != nil || gone.TaskDefinition.Status != types.TaskDefinitionStatusInactive || gone.TaskDefinition.DeregisteredAt == nil {
		t.Fatalf("deregistered revision: %v", err)
	}
	if _, err := w.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("nope")}); apiCode(err) != "ClientException" {
		t.Fatalf("missing task definition: %v", err)
	}

	bad := func(mutate func(*ecs.RegisterTaskDefinitionInput)) error {
		var in ecs.RegisterTaskDefinitionInput
		if err := json.Unmarshal([]byte(seedTaskDef(t, "us-west-2a")), &in); err != nil {
			t.Fatal(err)
		}
		mutate(&in)
		_, err := w.ecs.RegisterTaskDefinition(ctx, &in)
		return err
	}
	cases := map[string]struct {
		mutate func(*ecs.RegisterTaskDefinitionInput)
		msg    string
	}{
		"task scope with autoprovision false": {func(in *ecs.RegisterTaskDefinitionInput) {
			in.Volumes[0].DockerVolumeConfiguration.Scope = types.ScopeTask
			in.Volumes[0].DockerVolumeConfiguration.Autoprovision = aws.Bool(false)
		}, "When 'scope' parameter is 'task', 'autoprovision' must either not be specified or set to 'True'."},
		"unknown volume": {func(in *ecs.RegisterTaskDefinitionInput) {
			in.ContainerDefinitions[0].MountPoints[0].SourceVolume = aws.String("other")
		}, "Unknown volume 'other'."},
		"no driver": {func(in *ecs.RegisterTaskDefinitionInput) {
			in.Volumes[0].DockerVolumeConfiguration.Driver = nil
		}, "volume.dockerVolumeConfiguration.driver should not be null or empty."},
		"no memory anywhere": {func(in *ecs.RegisterTaskDefinitionInput) { in.Memory = nil }, "At least one of 'memory' or 'memoryReservation' must be specified."},
		"bad expression": {func(in *ecs.RegisterTaskDefinitionInput) {
			in.PlacementConstraints[0].Expression = aws.String("attribute:ecs.availability-zone ==")
		}, "Invalid placement constraint expression"},
		"awsvpc port mismatch": {func(in *ecs.RegisterTaskDefinitionInput) {
			in.ContainerDefinitions[0].PortMappings[0].HostPort = aws.Int32(3307)
		}, "host ports and container ports in port mappings must match"},
	}
	for name, c := range cases {
		err := bad(c.mutate)
		var ce *types.ClientException
		if !errors.As(err, &ce) || !strings.Contains(ce.ErrorMessage(), c.msg) {
			t.Errorf("%s: got %v, want ClientException %q", name, err, c.msg)
		}
	}
	if err := bad(func(in *ecs.RegisterTaskDefinitionInput) {
		in.Volumes[0].DockerVolumeConfiguration.Scope = types.ScopeTask
		in.Volumes[0].DockerVolumeConfiguration.Autoprovision = aws.Bool(true)
	}); err != nil {
		t.Errorf("ECS accepts task scope with autoprovision true (the agent refuses it at start): %v", err)
	}
}

// rawCall posts one JSON request to the world, bypassing the SDK.
func rawCall(t *testing.T, url, target, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewBufferString(body))
	req.Header.Set("X-Amz-Target", target)
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("response %s: %v", b, err)
	}
	return resp.StatusCode, out
}

func TestUnknownAndUnsupported(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	// AWS refuses an empty TagResource before anything else (its model
	// requires resourceArn and tags); ECS says so with ClientException.
	code, out := rawCall(t, w.url, ecssim.Target+".TagResource", `{}`)
	if code != 400 || out["__type"] != "com.amazonaws.ecs#ClientException" || !strings.HasPrefix(out["message"].(string), "2 validation errors detected") {
		t.Fatalf("TagResource without its required members: %d %v", code, out)
	}
	code, out = rawCall(t, w.url, ecssim.Target+".TagResource", `{"resourceArn":"arn:aws:ecs:us-west-2:123456789012:cluster/x","tags":[{"key":"k","value":"v"}]}`)
	if code != 400 || out["__type"] != "com.amazonaws.ecs#UnknownOperationException" {
		t.Fatalf("unknown operation: %d %v", code, out)
	}
	code, out = rawCall(t, w.url, ecssim.Target+".CreateCluster", `{"clusterName":"x","capacityProviders":["FARGATE"]}`)
	if code != 400 || out["__type"] != "com.amazonaws.ecs#InvalidParameterException" || !strings.Contains(out["message"].(string), "capacityProviders") {
		t.Fatalf("unsupported parameter: %d %v", code, out)
	}
	code, out = rawCall(t, w.url, ecssim.Target+".CreateCluster", `{"clusterName":`)
	if code != 400 || out["__type"] != "com.amazonaws.ecs#SerializationException" {
		t.Fatalf("malformed body: %d %v", code, out)
	}
}

func TestInstancesAndAttributesSDK(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	w.cluster(t)
	ctx := ctxT(t)
	a := w.addHost(t, fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a"})
	b := w.addHost(t, fakehost.Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", AZ: "us-west-2b", NoPlugin: true})
	list, err := w.ecs.ListContainerInstances(ctx, &ecs.ListContainerInstancesInput{Cluster: aws.String(testCluster)})
	if err != nil || !slices.Equal(list.ContainerInstanceArns, []string{a, b}) {
		t.Fatalf("ListContainerInstances: %v %v", list, err)
	}
	// The cluster query language's ec2InstanceId subject (a lookup by EC2
	// instance that costs the same in any cluster); other subjects are refused.
	one, err := w.ecs.ListContainerInstances(ctx, &ecs.ListContainerInstancesInput{Cluster: aws.String(testCluster), Filter: aws.String("ec2InstanceId == i-0bbbbbbbbbbbbbbb2")})
	if err != nil || !slices.Equal(one.ContainerInstanceArns, []string{b}) {
		t.Fatalf("filter ec2InstanceId ==: %v %v", one, err)
	}
	both, err := w.ecs.ListContainerInstances(ctx, &ecs.ListContainerInstancesInput{Cluster: aws.String(testCluster), Filter: aws.String("ec2InstanceId in [i-0aaaaaaaaaaaaaaa1, i-0bbbbbbbbbbbbbbb2]")})
	if err != nil || !slices.Equal(both.ContainerInstanceArns, []string{a, b}) {
		t.Fatalf("filter ec2InstanceId in: %v %v", both, err)
	}
	var inv *types.InvalidParameterException
	if _, err := w.ecs.ListContainerInstances(ctx, &ecs.ListContainerInstancesInput{Cluster: aws.String(testCluster), Filter: aws.String("runningTasksCount > 1")}); !errors.As(err, &inv) {
		t.Fatalf("a filter the world does not serve: %v, want InvalidParameterException", err)
	}
	if !strings.HasPrefix(a, "arn:aws:ecs:us-west-2:123456789012:container-instance/tether-test/") {
		t.Fatalf("container instance ARN not in the long format: %s", a)
	}
	shortID := a[strings.LastIndexByte(a, '/')+1:]
	d, err := w.ecs.DescribeContainerInstances(ctx, &ecs.DescribeContainerInstancesInput{
		Cluster: aws.String(testCluster), ContainerInstances: []string{shortID, b, "0123"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.ContainerInstances) != 2 || len(d.Failures) != 1 || *d.Failures[0].Reason != "MISSING" {
		t.Fatalf("DescribeContainerInstances: %+v", d.Failures)
	}
	ci := d.ContainerInstances[0]
	attrs := map[string]string{}
	for _, at := range ci.Attributes {
		attrs[*at.Name] = aws.ToString(at.Value)
	}
	if *ci.Ec2InstanceId != "i-0aaaaaaaaaaaaaaa1" || !ci.AgentConnected || *ci.Status != "ACTIVE" ||
		attrs["ecs.availability-zone"] != "us-west-2a" || len(ci.RegisteredResources) != 4 || *ci.RegisteredResources[0].Name != "CPU" {
		t.Fatalf("container instance: %+v attrs %v", ci, attrs)
	}
	if _, ok := attrs["ecs.capability.docker-plugin.tether"]; !ok {
		t.Fatal("the plugin capability is missing on the host that serves it")
	}
	for _, at := range d.ContainerInstances[1].Attributes {
		if *at.Name == "ecs.capability.docker-plugin.tether" {
			t.Fatal("a host without the plugin advertises it")
		}
	}

	up, err := w.ecs.UpdateContainerInstancesState(ctx, &ecs.UpdateContainerInstancesStateInput{
		Cluster: aws.String(testCluster), ContainerInstances: []string{a}, Status: types.ContainerInstanceStatusDraining,
	})
	if err != nil || *up.ContainerInstances[0].Status != "DRAINING" {
		t.Fatalf("UpdateContainerInstancesState: %v", err)
	}
	draining, err := w.ecs.ListContainerInstances(ctx, &ecs.ListContainerInstancesInput{Cluster: aws.String(testCluster), Status: types.ContainerInstanceStatusDraining})
	if err != nil || !slices.Equal(draining.ContainerInstanceArns, []string{a}) {
		t.Fatalf("status filter: %v %v", draining, err)
	}

	if _, err := w.ecs.PutAttributes(ctx, &ecs.PutAttributesInput{Cluster: aws.String(testCluster), Attributes: []types.Attribute{
		{Name: aws.String("stack"), Value: aws.String("prod"), TargetType: types.TargetTypeContainerInstance, TargetId: aws.String(b)},
	}}); err != nil {
		t.Fatalf("PutAttributes: %v", err)
	}
	la, err := w.ecs.ListAttributes(ctx, &ecs.ListAttributesInput{Cluster: aws.String(testCluster), TargetType: types.TargetTypeContainerInstance, AttributeName: aws.String("stack")})
	if err != nil || len(la.Attributes) != 1 || *la.Attributes[0].TargetId != b || *la.Attributes[0].Value != "prod" {
		t.Fatalf("ListAttributes: %+v %v", la, err)
	}
	_, err = w.ecs.PutAttributes(ctx, &ecs.PutAttributesInput{Cluster: aws.String(testCluster), Attributes: []types.Attribute{
		{Name: aws.String("stack"), TargetType: types.TargetTypeContainerInstance, TargetId: aws.String("nope")},
	}})
	var tnf *types.TargetNotFoundException
	if !errors.As(err, &tnf) {
		t.Fatalf("PutAttributes on a missing target: %v", err)
	}
}

// plainTaskDef registers a small bridge-mode task definition without volumes.
func (w *world) plainTaskDef(t *testing.T, family string) string {
	t.Helper()
	out, err := w.ecs.RegisterTaskDefinition(ctxT(t), &ecs.RegisterTaskDefinitionInput{
		Family: aws.String(family),
		ContainerDefinitions: []types.ContainerDefinition{{
			Name: aws.String("app"), Image: aws.String("busybox"), Memory: aws.Int32(128), Cpu: 256,
			Command: []string{"sleep", "3600"}, Essential: aws.Bool(true),
		}},
	})
	if err != nil {
		t.Fatalf("RegisterTaskDefinition %s: %v", family, err)
	}
	return *out.TaskDefinition.TaskDefinitionArn
}

func TestTasksAndServicesSDK(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	w.cluster(t)
	ctx := ctxT(t)
	a := w.addHost(t, fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a"})
	w.addHost(t, fakehost.Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", AZ: "us-west-2b"})
	def := w.plainTaskDef(t, "app")

	run, err := w.ecs.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String(testCluster), TaskDefinition: aws.String("app"), Count: aws.Int32(5), StartedBy: aws.String("tester")})
	if err != nil || len(run.Tasks) != 5 || len(run.Failures) != 0 {
		t.Fatalf("RunTask: %v %+v", err, run)
	}
	var arns []string
	for _, task := range run.Tasks {
		if !strings.HasPrefix(*task.TaskArn, "arn:aws:ecs:us-west-2:123456789012:task/tether-test/") || *task.Group != "family:app" || *task.StartedBy != "tester" {
			t.Fatalf("RunTask task: %s group %s", *task.TaskArn, *task.Group)
		}
		arns = append(arns, *task.TaskArn)
	}
	waitCtx, cancel := contextWithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := ecs.NewTasksRunningWaiter(w.ecs, func(o *ecs.TasksRunningWaiterOptions) {
		o.MinDelay, o.MaxDelay = 10*time.Millisecond, 50*time.Millisecond
	}).
		Wait(waitCtx, &ecs.DescribeTasksInput{Cluster: aws.String(testCluster), Tasks: arns}, 30*time.Second); err != nil {
		t.Fatalf("TasksRunning waiter: %v", err)
	}

	var listed []string
	p := ecs.NewListTasksPaginator(w.ecs, &ecs.ListTasksInput{Cluster: aws.String(testCluster), Family: aws.String("app"), MaxResults: aws.Int32(2)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, page.TaskArns...)
	}
	if !slices.Equal(listed, arns) {
		t.Fatalf("ListTasks pages: %v, want %v", listed, arns)
	}
	onA, err := w.ecs.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String(testCluster), ContainerInstance: aws.String(a)})
	if err != nil || len(onA.TaskArns) == 0 || len(onA.TaskArns) == 5 {
		t.Fatalf("tasks should spread over both instances: %d on A (%v)", len(onA.TaskArns), err)
	}
	byStarter, _ := w.ecs.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String(testCluster), StartedBy: aws.String("nobody")})
	if len(byStarter.TaskArns) != 0 {
		t.Fatalf("startedBy filter: %v", byStarter.TaskArns)
	}

	id := arns[0][strings.LastIndexByte(arns[0], '/')+1:]
	dt, err := w.ecs.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(testCluster), Tasks: []string{id, "arn:aws:ecs:us-west-2:123456789012:task/" + id, "ffff"}})
	if err != nil || len(dt.Tasks) != 2 || len(dt.Failures) != 1 {
		t.Fatalf("DescribeTasks by id and short ARN: %v %+v", err, dt)
	}
	if got := dt.Tasks[0]; *got.TaskArn != arns[0] || *got.LastStatus != "RUNNING" || got.LaunchType != types.LaunchTypeEc2 ||
		*got.Containers[0].LastStatus != "RUNNING" || got.Version < 2 {
		t.Fatalf("described task: %+v", got)
	}

	stop, err := w.ecs.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(testCluster), Task: aws.String(arns[0]), Reason: aws.String("test says so")})
	if err != nil || *stop.Task.DesiredStatus != "STOPPED" {
		t.Fatalf("StopTask: %v", err)
	}
	if err := ecs.NewTasksStoppedWaiter(w.ecs, func(o *ecs.TasksStoppedWaiterOptions) {
		o.MinDelay, o.MaxDelay = 10*time.Millisecond, 50*time.Millisecond
	}).
		Wait(waitCtx, &ecs.DescribeTasksInput{Cluster: aws.String(testCluster), Tasks: arns[:1]}, 30*time.Second); err != nil {
		t.Fatalf("TasksStopped waiter: %v", err)
	}
	st, _ := w.ecs.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(testCluster), Tasks: arns[:1]})
	if got := st.Tasks[0]; got.StopCode != types.TaskStopCodeUserInitiated || *got.StoppedReason != "test says so" || *got.Containers[0].ExitCode != 0 {
		t.Fatalf("stopped task: %s %q", got.StopCode, aws.ToString(got.StoppedReason))
	}
	stopped, _ := w.ecs.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String(testCluster), DesiredStatus: types.DesiredStatusStopped})
	if !slices.Equal(stopped.TaskArns, arns[:1]) {
		t.Fatalf("desiredStatus STOPPED: %v", stopped.TaskArns)
	}

	// Services.
	if _, err := w.ecs.CreateService(ctx, &ecs.CreateServiceInput{Cluster: aws.String(testCluster), ServiceName: aws.String("web"), TaskDefinition: aws.String(def), DesiredCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	_, err = w.ecs.CreateService(ctx, &ecs.CreateServiceInput{Cluster: aws.String(testCluster), ServiceName: aws.String("web"), TaskDefinition: aws.String(def), DesiredCount: aws.Int32(2)})
	if apiCode(err) != "InvalidParameterException" {
		t.Fatalf("duplicate service: %v", err)
	}
	if err := w.srv.WaitFor(ctx, testCluster, "web at 2 RUNNING", func(sn ecssim.Snapshot) bool { return sn.Services[0].Running == 2 }); err != nil {
		t.Fatal(err)
	}
	svcTasks, _ := w.ecs.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String(testCluster), ServiceName: aws.String("web")})
	if len(svcTasks.TaskArns) != 2 {
		t.Fatalf("ListTasks by service: %v", svcTasks.TaskArns)
	}
	ds, err := w.ecs.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(testCluster), Services: []string{"web", "nope"}})
	if err != nil || len(ds.Services) != 1 || len(ds.Failures) != 1 || ds.Services[0].RunningCount != 2 ||
		*ds.Services[0].DeploymentConfiguration.MaximumPercent != 200 || !strings.HasPrefix(*ds.Services[0].Deployments[0].Id, "ecs-svc/") {
		t.Fatalf("DescribeServices: %v %+v", err, ds)
	}
	ls, _ := w.ecs.ListServices(ctx, &ecs.ListServicesInput{Cluster: aws.String(testCluster)})
	if len(ls.ServiceArns) != 1 || ls.ServiceArns[0] != "arn:aws:ecs:us-west-2:123456789012:service/tether-test/web" {
		t.Fatalf("ListServices: %v", ls.ServiceArns)
	}
	_, err = w.ecs.DeleteService(ctx, &ecs.DeleteServiceInput{Cluster: aws.String(testCluster), Service: aws.String("web")})
	if apiCode(err) != "InvalidParameterException" {
		t.Fatalf("DeleteService above 0: %v", err)
	}
	if _, err := w.ecs.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(testCluster), Service: aws.String("web"), DesiredCount: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ecs.DeleteService(ctx, &ecs.DeleteServiceInput{Cluster: aws.String(testCluster), Service: aws.String("web")}); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.WaitFor(ctx, testCluster, "web INACTIVE", func(sn ecssim.Snapshot) bool { return sn.Services[0].Status == "INACTIVE" }); err != nil {
		t.Fatal(err)
	}
	_, err = w.ecs.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(testCluster), Service: aws.String("web"), DesiredCount: aws.Int32(1)})
	var sna *types.ServiceNotActiveException
	if !errors.As(err, &sna) {
		t.Fatalf("UpdateService on a deleted service: %v", err)
	}
	_, err = w.ecs.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(testCluster), Service: aws.String("nope")})
	var snf *types.ServiceNotFoundException
	if !errors.As(err, &snf) {
		t.Fatalf("UpdateService on a missing service: %v", err)
	}
}
