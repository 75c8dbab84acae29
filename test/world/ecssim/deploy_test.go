package ecssim_test

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/fakehost"
)

func TestRollingDeploymentReplacesEveryTask(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	w.cluster(t)
	ctx := ctxT(t)
	w.addHost(t, fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a"})
	w.addHost(t, fakehost.Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", AZ: "us-west-2b"})
	def1 := w.plainTaskDef(t, "web")
	def2 := w.plainTaskDef(t, "web")
	if _, err := w.ecs.CreateService(ctx, &ecs.CreateServiceInput{Cluster: aws.String(testCluster), ServiceName: aws.String("web"), TaskDefinition: aws.String(def1), DesiredCount: aws.Int32(2),
		DeploymentConfiguration: &types.DeploymentConfiguration{MinimumHealthyPercent: aws.Int32(50), MaximumPercent: aws.Int32(150)}}); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.WaitFor(ctx, testCluster, "2 RUNNING", func(sn ecssim.Snapshot) bool { return sn.Services[0].Running == 2 }); err != nil {
		t.Fatal(err)
	}
	up, err := w.ecs.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(testCluster), Service: aws.String("web"), TaskDefinition: aws.String(def2)})
	if err != nil || *up.Service.TaskDefinition != def2 {
		t.Fatalf("UpdateService: %v", err)
	}
	deployment := *up.Service.Deployments[0].Id
	if err := w.srv.WaitFor(ctx, testCluster, "2 RUNNING on the new revision, old ones STOPPED", func(sn ecssim.Snapshot) bool {
		newRunning, oldLive := 0, 0
		for _, task := range sn.ServiceTasks("web") {
			switch {
			case task.TaskDefinitionArn == def2 && task.LastStatus == "RUNNING":
				newRunning++
			case task.TaskDefinitionArn == def1 && task.LastStatus != "STOPPED":
				oldLive++
			}
		}
		return newRunning == 2 && oldLive == 0
	}); err != nil {
		t.Fatal(err)
	}
	for _, task := range w.srv.Snapshot(testCluster).ServiceTasks("web") {
		if task.TaskDefinitionArn == def1 && (task.StopCode != ecssim.StopServiceSchedulerInitiated || task.StoppedReason != "Scaling activity initiated by (deployment "+deployment+")") {
			t.Fatalf("replaced task: %s %q", task.StopCode, task.StoppedReason)
		}
		if task.TaskDefinitionArn == def2 && task.StartedBy != deployment {
			t.Fatalf("new task startedBy %s, want %s", task.StartedBy, deployment)
		}
	}
	// At no time more than 150% of 2 tasks were live.
	live, peak := map[string]bool{}, 0
	for _, ev := range w.events.list() {
		if ev.DetailType != ecssim.DetailTypeTask {
			continue
		}
		live[ev.Resources[0]] = !strings.Contains(string(ev.Detail), `"lastStatus":"STOPPED"`)
		n := 0
		for _, l := range live {
			if l {
				n++
			}
		}
		peak = max(peak, n)
	}
	if peak != 3 {
		t.Fatalf("peak live tasks %d, want 3 (maximumPercent 150 of 2)", peak)
	}
}

func TestStartTaskOnANamedInstance(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	w.cluster(t)
	ctx := ctxT(t)
	w.addHost(t, fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a"})
	b := w.addHost(t, fakehost.Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", AZ: "us-west-2b"})
	w.plainTaskDef(t, "job")
	out, err := w.ecs.StartTask(ctx, &ecs.StartTaskInput{Cluster: aws.String(testCluster), TaskDefinition: aws.String("job"), ContainerInstances: []string{b, "nope"}, StartedBy: aws.String("cron")})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Tasks) != 1 || *out.Tasks[0].ContainerInstanceArn != b || len(out.Failures) != 1 || *out.Failures[0].Reason != "MISSING" {
		t.Fatalf("StartTask: %+v", out)
	}
	if _, err := w.ecs.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String(testCluster), NextToken: aws.String("garbage")}); apiCode(err) != "InvalidParameterException" {
		t.Fatalf("a bad nextToken: %v", err)
	}
	_, err = w.ecs.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String(testCluster), TaskDefinition: aws.String("job"), LaunchType: types.LaunchTypeFargate})
	if apiCode(err) != "InvalidParameterException" {
		t.Fatalf("FARGATE launch type: %v", err)
	}
}

// With timed steps (a thousandth of the realistic profile) the lifecycle
// goes through the same states, driven by the scheduler's timer.
func TestTimedLifecycle(t *testing.T) {
	w := newWorld(t, ecssim.RealisticTiming().Scaled(0.001))
	w.cluster(t)
	ctx := ctxT(t)
	w.addHost(t, fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a"})
	w.addHost(t, fakehost.Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", AZ: "us-west-2a"})
	startHandoff(t, w)
	w.seedService(t, w.registerSeedTaskDef(t, "us-west-2a"))
	first := w.waitLive(ctx, t, "mysql-svc", "mysql RUNNING", isRunning)
	if _, err := w.ecs.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(testCluster), Task: aws.String(first.Arn)}); err != nil {
		t.Fatal(err)
	}
	w.waitLive(ctx, t, "mysql-svc", "a replacement RUNNING", replaces(first))
	got := statuses(w.events.taskEvents(t, first.Arn))
	want := []string{"PROVISIONING/RUNNING", "PENDING/RUNNING", "ACTIVATING/RUNNING", "RUNNING/RUNNING", "RUNNING/STOPPED",
		"DEACTIVATING/STOPPED", "STOPPING/STOPPED", "DEPROVISIONING/STOPPED", "STOPPED/STOPPED"}
	if !subsequence(want, got) {
		t.Fatalf("lifecycle %v, want in order %v", got, want)
	}
}

func TestInjectedThrottling(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	w.cluster(t)
	w.srv.Gate().ThrottleNext("DescribeTasks", 1)
	_, err := w.ecs.DescribeTasks(ctxT(t), &ecs.DescribeTasksInput{Cluster: aws.String(testCluster), Tasks: []string{"x"}})
	if apiCode(err) != "ThrottlingException" {
		t.Fatalf("scripted throttle: %v", err)
	}
	if _, err := w.ecs.DescribeTasks(ctxT(t), &ecs.DescribeTasksInput{Cluster: aws.String(testCluster), Tasks: []string{"x"}}); err != nil {
		t.Fatalf("after the scripted throttle: %v", err)
	}
	if c := w.srv.Gate().Counts(); c.Calls["DescribeTasks"] != 2 || c.Throttled["DescribeTasks"] != 1 {
		t.Fatalf("gate counts %+v", c)
	}
}
