package ecssim_test

import (
	"encoding/json"
	"io"
	"net/http"
	neturl "net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/fakehost"
	"github.com/tether-ecs/tether/test/world/motoserver"
)

// deregister-container-instance --force, as the ECS guides describe it: the
// instance's tasks are STOPPED in ECS (a Task State Change each) but keep
// running on the host, orphaned; the service replaces them elsewhere; the
// container instance is INACTIVE with its agent disconnected. Without
// --force ECS refuses while tasks run there.
func TestForcedDeregistrationOrphansTasks(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	w.cluster(t)
	ctx := ctxT(t)
	arns := map[string]string{
		"i-0aaaaaaaaaaaaaaa1": w.addHost(t, fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a"}),
		"i-0bbbbbbbbbbbbbbb2": w.addHost(t, fakehost.Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", AZ: "us-west-2a"}),
	}
	def := w.plainTaskDef(t, "app")
	if _, err := w.ecs.CreateService(ctx, &ecs.CreateServiceInput{Cluster: aws.String(testCluster), ServiceName: aws.String("web"),
		TaskDefinition: aws.String(def), DesiredCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	first := w.waitLive(ctx, t, "web", "web RUNNING", isRunning)
	gone := arns[first.EC2InstanceID]

	_, err := w.ecs.DeregisterContainerInstance(ctx, &ecs.DeregisterContainerInstanceInput{Cluster: aws.String(testCluster), ContainerInstance: aws.String(gone)})
	if apiCode(err) != "InvalidParameterException" || !strings.Contains(err.Error(), "Found running tasks on the instance.") {
		t.Fatalf("deregistration without force while a task runs: %v", err)
	}
	c := newCLI(t, w.url)
	var out struct {
		ContainerInstance struct {
			Status         string `json:"status"`
			AgentConnected bool   `json:"agentConnected"`
			RunningTasks   int    `json:"runningTasksCount"`
		} `json:"containerInstance"`
	}
	if err := json.Unmarshal([]byte(c.run("ecs", "deregister-container-instance", "--cluster", testCluster, "--container-instance", gone, "--force")), &out); err != nil {
		t.Fatal(err)
	}
	if out.ContainerInstance.Status != "INACTIVE" || out.ContainerInstance.AgentConnected || out.ContainerInstance.RunningTasks != 0 {
		t.Fatalf("deregister-container-instance --force answered %+v", out.ContainerInstance)
	}

	orphan, _ := w.srv.Snapshot(testCluster).Task(first.Arn)
	if orphan.LastStatus != "STOPPED" || orphan.DesiredStatus != "STOPPED" || !orphan.Orphaned || orphan.StopCode != ecssim.StopUserInitiated {
		t.Fatalf("orphaned task in ECS: %+v", orphan)
	}
	if st := w.hosts[first.EC2InstanceID].State(); st.Tasks[first.Arn] != "RUNNING" {
		t.Fatalf("the orphan's containers on the host: %q, want still RUNNING (ECS never stops them)", st.Tasks[first.Arn])
	}
	second := w.waitLive(ctx, t, "web", "the replacement RUNNING", replaces(first))
	if second.EC2InstanceID == first.EC2InstanceID {
		t.Fatalf("replacement placed on the deregistered instance %s", second.EC2InstanceID)
	}

	running, err := w.ecs.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String(testCluster)})
	if err != nil || !slices.Equal(running.TaskArns, []string{second.Arn}) {
		t.Fatalf("ListTasks (RUNNING) after the orphaning: %v %v", running, err)
	}
	stopped, err := w.ecs.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String(testCluster), DesiredStatus: types.DesiredStatusStopped})
	if err != nil || !slices.Equal(stopped.TaskArns, []string{first.Arn}) {
		t.Fatalf("ListTasks STOPPED: %v %v", stopped, err)
	}
	dt, err := w.ecs.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(testCluster), Tasks: []string{first.Arn}})
	if err != nil || len(dt.Tasks) != 1 || aws.ToString(dt.Tasks[0].LastStatus) != "STOPPED" || aws.ToString(dt.Tasks[0].StoppedReason) == "" {
		t.Fatalf("DescribeTasks of the orphan: %+v %v", dt, err)
	}
	ci, err := w.ecs.DescribeContainerInstances(ctx, &ecs.DescribeContainerInstancesInput{Cluster: aws.String(testCluster), ContainerInstances: []string{gone}})
	if err != nil || len(ci.ContainerInstances) != 1 || aws.ToString(ci.ContainerInstances[0].Status) != "INACTIVE" {
		t.Fatalf("DescribeContainerInstances of the deregistered instance: %+v %v", ci, err)
	}
	listed, _ := w.ecs.ListContainerInstances(ctx, &ecs.ListContainerInstancesInput{Cluster: aws.String(testCluster)})
	if slices.Contains(listed.ContainerInstanceArns, gone) {
		t.Fatalf("ListContainerInstances still lists %s", gone)
	}
	if _, err := w.ecs.DeregisterContainerInstance(ctx, &ecs.DeregisterContainerInstanceInput{Cluster: aws.String(testCluster),
		ContainerInstance: aws.String(gone), Force: aws.Bool(true)}); apiCode(err) != "InvalidParameterException" {
		t.Fatalf("second deregistration: %v", err)
	}

	// Events: the orphan's STOPPED, then the instance INACTIVE and disconnected.
	evs := w.events.taskEvents(t, first.Arn)
	last := evs[len(evs)-1]
	if last.LastStatus != "STOPPED" || last.DesiredStatus != "STOPPED" || last.StopCode != ecssim.StopUserInitiated || last.StoppedReason == "" ||
		last.ContainerInstanceArn != gone || last.Containers[0].LastStatus != "STOPPED" {
		t.Fatalf("the orphan's last Task State Change: %+v", last)
	}
	var inactive int
	for _, ev := range w.events.list() {
		var d ecssim.InstanceDetail
		if ev.DetailType != ecssim.DetailTypeInstance || json.Unmarshal(ev.Detail, &d) != nil || d.ContainerInstanceArn != gone {
			continue
		}
		if d.Status == "INACTIVE" {
			inactive++
			if d.AgentConnected {
				t.Errorf("INACTIVE event with the agent connected: %s", ev.Detail)
			}
		}
	}
	if inactive != 1 {
		t.Fatalf("%d INACTIVE Container Instance State Changes, want 1", inactive)
	}

	// ECS has nothing left to stop when the host dies later.
	if err := w.srv.KillInstance(first.EC2InstanceID); err != nil {
		t.Fatalf("KillInstance after deregistration: %v", err)
	}
}

// DeregisterContainerInstance without force, with a task running there,
// answers as moto does (moto's message is the one the world uses).
func TestDeregisterRefusalMatchesMoto(t *testing.T) {
	moto := motoserver.Start(t)
	// moto registers only an instance its EC2 knows.
	doc := `{"instanceId":"` + motoRunInstance(t, moto) + `","availabilityZone":"us-west-2a","region":"us-west-2"}`
	ecsCall(t, moto, "CreateCluster", map[string]any{"clusterName": "c1"})
	reg := ecsCall(t, moto, "RegisterContainerInstance", map[string]any{"cluster": "c1", "instanceIdentityDocument": doc})
	motoCI, _ := at(reg.doc, "containerInstance.containerInstanceArn").(string)
	ecsCall(t, moto, "RegisterTaskDefinition", map[string]any{"family": "app", "containerDefinitions": []any{map[string]any{"name": "app", "image": "busybox", "memory": 128}}})
	if r := ecsCall(t, moto, "RunTask", map[string]any{"cluster": "c1", "taskDefinition": "app"}); r.status != 200 || motoCI == "" {
		t.Fatalf("moto setup: %v %v", reg.doc, r.doc)
	}

	w := newWorld(t, ecssim.Timing{})
	ecsCall(t, w.url, "CreateCluster", map[string]any{"clusterName": "c1"})
	h := fakehost.New(fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a", Disks: w.disks})
	t.Cleanup(func() { _ = h.Close() })
	worldCI, err := w.srv.RegisterInstance(ctxT(t), ecssim.InstanceRegistration{Cluster: "c1", EC2InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a", Host: h})
	if err != nil {
		t.Fatal(err)
	}
	ecsCall(t, w.url, "RegisterTaskDefinition", map[string]any{"family": "app", "containerDefinitions": []any{map[string]any{"name": "app", "image": "busybox", "memory": 128}}})
	if r := ecsCall(t, w.url, "RunTask", map[string]any{"cluster": "c1", "taskDefinition": "app"}); r.status != 200 {
		t.Fatalf("world RunTask: %v", r.doc)
	}

	m := ecsCall(t, moto, "DeregisterContainerInstance", map[string]any{"cluster": "c1", "containerInstance": motoCI})
	wr := ecsCall(t, w.url, "DeregisterContainerInstance", map[string]any{"cluster": "c1", "containerInstance": worldCI})
	if m.status != wr.status || m.code != wr.code || m.doc["message"] != wr.doc["message"] {
		t.Errorf("without force: moto %d %s %q, world %d %s %q", m.status, m.code, m.doc["message"], wr.status, wr.code, wr.doc["message"])
	}
	m = ecsCall(t, moto, "DeregisterContainerInstance", map[string]any{"cluster": "c1", "containerInstance": motoCI, "force": true})
	wr = ecsCall(t, w.url, "DeregisterContainerInstance", map[string]any{"cluster": "c1", "containerInstance": worldCI, "force": true})
	if m.status != 200 || wr.status != 200 {
		t.Fatalf("with force: moto %d %v, world %d %v", m.status, m.doc, wr.status, wr.doc)
	}
	for _, k := range keys(at(m.doc, "containerInstance")) {
		if at(wr.doc, "containerInstance."+k) == nil {
			t.Errorf("world's deregistered containerInstance lacks %s that moto returns", k)
		}
	}
}

// motoRunInstance launches one EC2 instance in moto (query protocol) and
// returns its id.
func motoRunInstance(t *testing.T, url string) string {
	t.Helper()
	form := neturl.Values{"Action": {"RunInstances"}, "Version": {"2016-11-15"}, "ImageId": {"ami-12345678"}, "MinCount": {"1"}, "MaxCount": {"1"}}
	req, _ := http.NewRequest(http.MethodPost, url+"/", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDWORLD/20250101/us-west-2/ec2/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`<instanceId>(i-[0-9a-f]+)</instanceId>`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("moto RunInstances: %d %s", resp.StatusCode, body)
	}
	return string(m[1])
}

// An EC2 stop: ECS moves the instance's tasks to STOPPED and its agent
// disconnects, but the container instance stays registered (ACTIVE); the
// service replaces the task elsewhere, and the instance takes tasks again
// once it starts.
func TestStoppedInstanceStaysRegistered(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	w.cluster(t)
	ctx := ctxT(t)
	w.addHost(t, fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a"})
	w.addHost(t, fakehost.Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", AZ: "us-west-2a"})
	def := w.plainTaskDef(t, "app")
	if _, err := w.ecs.CreateService(ctx, &ecs.CreateServiceInput{Cluster: aws.String(testCluster), ServiceName: aws.String("web"),
		TaskDefinition: aws.String(def), DesiredCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	first := w.waitLive(ctx, t, "web", "web RUNNING", isRunning)
	if err := w.srv.StopInstance(first.EC2InstanceID); err != nil {
		t.Fatal(err)
	}
	stopped, _ := w.srv.Snapshot(testCluster).Task(first.Arn)
	if stopped.LastStatus != "STOPPED" || stopped.StopCode != ecssim.StopTerminationNotice || stopped.StoppedReason != "Host EC2 (instance "+first.EC2InstanceID+") stopped." || stopped.Orphaned {
		t.Fatalf("task of the stopped instance: %+v", stopped)
	}
	var inst ecssim.InstanceInfo
	for _, in := range w.srv.Snapshot(testCluster).Instances {
		if in.EC2InstanceID == first.EC2InstanceID {
			inst = in
		}
	}
	if inst.Status != "ACTIVE" || inst.AgentConnected {
		t.Fatalf("stopped container instance: %+v", inst)
	}
	second := w.waitLive(ctx, t, "web", "the replacement RUNNING", replaces(first))
	if second.EC2InstanceID == first.EC2InstanceID {
		t.Fatalf("replacement placed on the stopped instance")
	}
	if err := w.srv.StartInstance(first.EC2InstanceID); err != nil {
		t.Fatal(err)
	}
	out, err := w.ecs.StartTask(ctx, &ecs.StartTaskInput{Cluster: aws.String(testCluster), TaskDefinition: aws.String("app"), ContainerInstances: []string{inst.Arn}})
	if err != nil || len(out.Tasks) != 1 {
		t.Fatalf("StartTask on the started instance: %+v %v", out, err)
	}
}
