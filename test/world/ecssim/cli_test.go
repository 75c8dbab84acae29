package ecssim_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/fakehost"
)

// cli runs the real aws CLI (v1) against the world with dummy credentials.
type cli struct {
	t   *testing.T
	url string
	env []string
}

func newCLI(t *testing.T, url string) *cli {
	t.Helper()
	testenv.RequireCommands(t, "aws", "bash")
	home := t.TempDir()
	return &cli{t: t, url: url, env: []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_ACCESS_KEY_ID=AKIDWORLD", "AWS_SECRET_ACCESS_KEY=secret", "AWS_DEFAULT_REGION=us-west-2",
		"AWS_CONFIG_FILE=" + filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER=",
	}}
}

// run is one aws command with --endpoint-url and --region added.
func (c *cli) run(args ...string) string {
	c.t.Helper()
	args = append(args, "--endpoint-url", c.url, "--region", "us-west-2")
	cmd := exec.Command("aws", args...)
	cmd.Env = c.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func TestSeedWalkthroughWithTheAWSCLI(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	c := newCLI(t, w.url)
	ctx := ctxT(t)
	dir := t.TempDir()

	c.run("ecs", "create-cluster", "--cluster-name", testCluster)
	w.addHost(t, fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a"})
	w.addHost(t, fakehost.Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", AZ: "us-west-2a"})
	startHandoff(t, w)

	// Step 3: the task definition, driver "tether", variables filled.
	taskDefFile := filepath.Join(dir, "mysql-taskdef.json")
	if err := os.WriteFile(taskDefFile, []byte(seedTaskDef(t, "us-west-2a")), 0o600); err != nil {
		t.Fatal(err)
	}
	var reg struct {
		TaskDefinition struct {
			TaskDefinitionArn string `json:"taskDefinitionArn"`
			Status            string `json:"status"`
		} `json:"taskDefinition"`
	}
	if err := json.Unmarshal([]byte(c.run("ecs", "register-task-definition", "--cli-input-json", "file://"+taskDefFile)), &reg); err != nil {
		t.Fatal(err)
	}
	taskDefArn := reg.TaskDefinition.TaskDefinitionArn
	if taskDefArn != "arn:aws:ecs:us-west-2:123456789012:task-definition/mysql:1" || reg.TaskDefinition.Status != "ACTIVE" {
		t.Fatalf("register-task-definition: %+v", reg)
	}

	// Step 4: the service.
	svc, err := os.ReadFile("testdata/mysql-svcdef.json")
	if err != nil {
		t.Fatal(err)
	}
	svcFile := filepath.Join(dir, "mysql-svcdef.json")
	filled := strings.NewReplacer("${ECSClusterName}", testCluster, "${TaskDefinitionArn}", taskDefArn,
		"${MySQLTargetGroupArn}", "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/mysql/0123456789abcdef",
		"${SubnetId}", "subnet-0a1b2c3d", "${SecurityGroupId}", "sg-0a1b2c3d").Replace(string(svc))
	if err := os.WriteFile(svcFile, []byte(filled), 0o600); err != nil {
		t.Fatal(err)
	}
	var created struct {
		Service struct {
			ServiceArn string `json:"serviceArn"`
			Status     string `json:"status"`
		} `json:"service"`
	}
	if err := json.Unmarshal([]byte(c.run("ecs", "create-service", "--cli-input-json", "file://"+svcFile)), &created); err != nil {
		t.Fatal(err)
	}
	svcArn := created.Service.ServiceArn
	if svcArn != "arn:aws:ecs:us-west-2:123456789012:service/"+testCluster+"/mysql-svc" || created.Service.Status != "ACTIVE" {
		t.Fatalf("create-service: %+v", created)
	}
	first := w.waitLive(ctx, t, "mysql-svc", "mysql RUNNING", isRunning)

	// Step 6: drain-instance.sh, verbatim, with AWS_ENDPOINT_URL pointing the
	// CLI at the world.
	script := exec.Command("bash", "../../demo/seed/drain-instance.sh") // the seed's, verbatim
	script.Env = append(c.env, "AWS_ENDPOINT_URL="+w.url, "AWSRegion=us-west-2", "ECSClusterName="+testCluster, "TaskDefinitionArn="+taskDefArn)
	var stderr bytes.Buffer
	script.Stderr = &stderr
	out, err := script.Output()
	if err != nil {
		t.Fatalf("drain-instance.sh: %v\n%s\n%s", err, out, stderr.String())
	}
	text := string(out)
	for _, want := range []string{"Task ARNs [" + first.Arn + "]", "Container Instance ARNs [" + first.ContainerInstanceArn + "]", `"status": "DRAINING"`} {
		if !strings.Contains(text, want) {
			t.Fatalf("drain-instance.sh output lacks %q:\n%s", want, text)
		}
	}
	w.waitLive(ctx, t, "mysql-svc", "the replacement RUNNING on the other instance", func(ti ecssim.TaskInfo) bool {
		return replaces(first)(ti) && ti.EC2InstanceID != first.EC2InstanceID
	})
	if got := strings.Fields(c.run("ecs", "list-tasks", "--cluster", testCluster, "--query", "taskArns", "--output", "text")); len(got) != 1 || got[0] == first.Arn {
		t.Fatalf("list-tasks after the drain: %v", got)
	}

	// Clean up as the seed does.
	c.run("ecs", "update-service", "--cluster", testCluster, "--service", svcArn, "--desired-count", "0")
	var deleted struct {
		Service struct {
			Status       string `json:"status"`
			DesiredCount int    `json:"desiredCount"`
		} `json:"service"`
	}
	if err := json.Unmarshal([]byte(c.run("ecs", "delete-service", "--cluster", testCluster, "--service", svcArn)), &deleted); err != nil {
		t.Fatal(err)
	}
	if deleted.Service.Status != "DRAINING" || deleted.Service.DesiredCount != 0 {
		t.Fatalf("delete-service: %+v", deleted)
	}
	if err := w.srv.WaitFor(ctx, testCluster, "mysql-svc INACTIVE and its tasks STOPPED", func(sn ecssim.Snapshot) bool {
		_, live := liveServiceTask(sn, "mysql-svc")
		return sn.Services[0].Status == "INACTIVE" && !live
	}); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(c.run("ecs", "list-tasks", "--cluster", testCluster, "--query", "taskArns", "--output", "text")); got != "" {
		t.Fatalf("list-tasks after delete-service: %q", got)
	}
}
