package autoscalingsim

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-ecs/tether/test/testenv"
)

// runCLI runs a command line through bash with the real aws CLI pointed at
// the world.
func runCLI(t *testing.T, w *world, line string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command("bash", "-c", line)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=secret", "AWS_DEFAULT_REGION=us-west-2",
		"AWS_ENDPOINT_URL=" + w.url, "AWS_CONFIG_FILE=" + filepath.Join(home, "config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"), "AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER="}
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out) + string(ee.Stderr), err
	}
	return string(out), err
}

// TestLifecycleHookWithAWSCLI drives a termination hook the way an
// operator (or the user guide's "Complete a lifecycle action") does:
// put-lifecycle-hook, set-desired-capacity, describe-auto-scaling-instances,
// record-lifecycle-action-heartbeat and complete-lifecycle-action by
// instance id; the CLI's view of the error for an unknown instance.
func TestLifecycleHookWithAWSCLI(t *testing.T) {
	testenv.RequireCommands(t, "aws", "bash")
	w := newWorld(t, 1)
	createGroup(t, w, "my-asg", "ecs-ondemand", 1, []string{azA})
	id := w.inService(t, "my-asg", 1)[0]

	if out, err := runCLI(t, w, `aws autoscaling put-lifecycle-hook --lifecycle-hook-name my-hook --auto-scaling-group-name my-asg \
  --lifecycle-transition autoscaling:EC2_INSTANCE_TERMINATING --heartbeat-timeout 600 --default-result CONTINUE`); err != nil {
		t.Fatalf("put-lifecycle-hook: %v\n%s", err, out)
	}
	out, err := runCLI(t, w, `aws autoscaling describe-lifecycle-hooks --auto-scaling-group-name my-asg`)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var hooks struct {
		LifecycleHooks []struct {
			LifecycleHookName, LifecycleTransition, DefaultResult string
			HeartbeatTimeout, GlobalTimeout                       int
		}
	}
	if err := json.Unmarshal([]byte(out), &hooks); err != nil || len(hooks.LifecycleHooks) != 1 || hooks.LifecycleHooks[0].GlobalTimeout != 60000 ||
		hooks.LifecycleHooks[0].DefaultResult != "CONTINUE" || hooks.LifecycleHooks[0].HeartbeatTimeout != 600 {
		t.Fatalf("describe-lifecycle-hooks: %v\n%s", err, out)
	}
	if out, err := runCLI(t, w, `aws autoscaling set-desired-capacity --auto-scaling-group-name my-asg --desired-capacity 0`); err != nil {
		t.Fatalf("set-desired-capacity: %v\n%s", err, out)
	}
	eventually(t, id+" in Terminating:Wait", func() (bool, string) {
		out, _ := runCLI(t, w, `aws autoscaling describe-auto-scaling-instances --instance-ids `+id+` --query "AutoScalingInstances[0].LifecycleState" --output text`)
		return strings.TrimSpace(out) == StateTerminatingWait, out
	})
	if out, err := runCLI(t, w, `aws autoscaling record-lifecycle-action-heartbeat --lifecycle-hook-name my-hook --auto-scaling-group-name my-asg --instance-id `+id); err != nil {
		t.Fatalf("record-lifecycle-action-heartbeat: %v\n%s", err, out)
	}
	out, err = runCLI(t, w, `aws autoscaling complete-lifecycle-action --lifecycle-action-result CONTINUE --instance-id i-0123456789abcdef0 \
  --lifecycle-hook-name my-hook --auto-scaling-group-name my-asg`)
	if err == nil || !strings.Contains(out, "ValidationError") || !strings.Contains(out, "No active Lifecycle Action found with instance ID i-0123456789abcdef0") {
		t.Errorf("complete for an unknown instance: %v\n%s", err, out)
	}
	if out, err := runCLI(t, w, `aws autoscaling complete-lifecycle-action --lifecycle-action-result CONTINUE --instance-id `+id+` \
  --lifecycle-hook-name my-hook --auto-scaling-group-name my-asg`); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("complete-lifecycle-action: %v\n%s", err, out)
	}
	eventually(t, id+" terminated", func() (bool, string) { return w.ec2State(id) == "terminated", w.ec2State(id) })
	out, err = runCLI(t, w, `aws autoscaling describe-auto-scaling-groups --auto-scaling-group-names my-asg --query "AutoScalingGroups[0].[DesiredCapacity,Instances[0].LifecycleState]" --output text`)
	if err != nil || strings.Join(strings.Fields(out), " ") != "0 Terminated" {
		t.Errorf("describe-auto-scaling-groups: %v %q", err, out)
	}
}
