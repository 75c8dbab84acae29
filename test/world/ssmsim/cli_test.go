package ssmsim

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// awsCLI runs the real aws CLI (v1) against the world, dummy credentials.
func awsCLI(t *testing.T, url string, args ...string) (string, error) {
	t.Helper()
	testenv.RequireCommands(t, "aws")
	home := t.TempDir()
	cmd := exec.Command("aws", append(args, "--endpoint-url", url, "--region", "us-west-2", "--output", "json")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_ACCESS_KEY_ID=AKIDWORLD", "AWS_SECRET_ACCESS_KEY=secret", "AWS_DEFAULT_REGION=us-west-2",
		"AWS_CONFIG_FILE=" + filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER="}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return stderr.String(), err
	}
	return string(out), nil
}

func mustCLI(t *testing.T, url string, args ...string) map[string]any {
	t.Helper()
	out, err := awsCLI(t, url, args...)
	if err != nil {
		t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("aws %s: %q: %v", strings.Join(args, " "), out, err)
	}
	return doc
}

// What a user types: the AWS document listed, described and run with the
// aws CLI, its output read back; a stopped agent refused by send-command.
func TestAWSRunShellScriptWithTheAWSCLI(t *testing.T) {
	w := newWorld(t, latency.Instant())
	w.a.set(worldapi.CommandResult{Stdout: "HelloWorld\n"}, nil)

	listed := mustCLI(t, w.url, "ssm", "list-documents", "--filters", "Key=Owner,Values=Amazon")
	ids, _ := listed["DocumentIdentifiers"].([]any)
	if len(ids) != 1 || ids[0].(map[string]any)["Name"] != "AWS-RunShellScript" || ids[0].(map[string]any)["Owner"] != "Amazon" {
		t.Fatalf("list-documents --filters Key=Owner,Values=Amazon: %v", listed)
	}
	described := mustCLI(t, w.url, "ssm", "describe-document", "--name", "AWS-RunShellScript")
	if d, _ := described["Document"].(map[string]any); d["DocumentType"] != "Command" || d["SchemaVersion"] != "1.2" || d["Status"] != "Active" {
		t.Fatalf("describe-document: %v", described)
	}

	sent := mustCLI(t, w.url, "ssm", "send-command", "--document-name", "AWS-RunShellScript",
		"--parameters", `commands=["echo HelloWorld"]`, "--targets", "Key=instanceids,Values="+instA, "--comment", "echo HelloWorld") // the key as the aws CLI's own example spells it
	cmd, _ := sent["Command"].(map[string]any)
	id, _ := cmd["CommandId"].(string)
	if cmd["Status"] != "Pending" || cmd["StatusDetails"] != "Pending" || cmd["Comment"] != "echo HelloWorld" || len(id) != 36 {
		t.Fatalf("send-command: %v", sent)
	}
	w.waitInvocation(t, id, instA)
	inv := mustCLI(t, w.url, "ssm", "get-command-invocation", "--command-id", id, "--instance-id", instA)
	if inv["StandardOutputContent"] != "HelloWorld\n" || inv["PluginName"] != "aws:runShellScript" || inv["ResponseCode"] != float64(0) {
		t.Errorf("get-command-invocation: %v", inv)
	}
	if w.a.lastScript() != "echo HelloWorld\n" {
		t.Errorf("script %q", w.a.lastScript())
	}

	if err := w.srv.StopAgent(instB); err != nil {
		t.Fatal(err)
	}
	out, err := awsCLI(t, w.url, "ssm", "send-command", "--document-name", "AWS-RunShellScript", "--parameters", "commands=uptime", "--instance-ids", instB)
	if err == nil || !strings.Contains(out, "An error occurred (InvalidInstanceId) when calling the SendCommand operation") {
		t.Errorf("send-command to a stopped agent: %v %s", err, out)
	}
	// The CLI's waiter for a command, against the world.
	sent = mustCLI(t, w.url, "ssm", "send-command", "--document-name", "AWS-RunShellScript", "--parameters", "commands=uptime", "--instance-ids", instA)
	id = sent["Command"].(map[string]any)["CommandId"].(string)
	w.waitInvocation(t, id, instA)
	if out, err := awsCLI(t, w.url, "ssm", "wait", "command-executed", "--command-id", id, "--instance-id", instA); err != nil {
		t.Errorf("aws ssm wait command-executed: %v %s", err, out)
	}
}

// tether's documents (the repository's template.yaml) with the aws CLI:
// get-command-invocation needs --plugin-name (InvalidPluginName without,
// as AWS answers for a document of several steps), list-command-invocations
// --details lists the steps, and the CLI's waiter works for a named step.
func TestRepositoryDocumentsWithTheAWSCLI(t *testing.T) {
	w := newRepoWorld(t)
	sent := mustCLI(t, w.url, "ssm", "send-command", "--document-name", w.docs["MountDocument"], "--instance-ids", instA,
		"--parameters", "VolumeId="+testVolume+",VolumeName=rexray-vol,SizeGiB=5")
	id, _ := sent["Command"].(map[string]any)["CommandId"].(string)
	w.final(t, id, instA)

	out, err := awsCLI(t, w.url, "ssm", "get-command-invocation", "--command-id", id, "--instance-id", instA)
	if err == nil || !strings.Contains(out, "An error occurred (InvalidPluginName) when calling the GetCommandInvocation operation") {
		t.Errorf("get-command-invocation without --plugin-name: %v %s", err, out)
	}
	inv := mustCLI(t, w.url, "ssm", "get-command-invocation", "--command-id", id, "--instance-id", instA, "--plugin-name", agentproto.StepMount)
	if inv["PluginName"] != agentproto.StepMount || inv["Status"] != "Success" || inv["ResponseCode"] != float64(0) ||
		!strings.HasPrefix(inv["StandardOutputContent"].(string), "mount\n--volume-id\n"+testVolume+"\n") {
		t.Errorf("get-command-invocation --plugin-name mount: %v", inv)
	}
	listed := mustCLI(t, w.url, "ssm", "list-command-invocations", "--command-id", id, "--details")
	invs, _ := listed["CommandInvocations"].([]any)
	var names []string
	if len(invs) == 1 {
		for _, p := range invs[0].(map[string]any)["CommandPlugins"].([]any) {
			names = append(names, p.(map[string]any)["Name"].(string))
		}
	}
	if !slices.Equal(names, []string{"refuseWindows", "refuseMacOS", agentproto.StepMount}) {
		t.Errorf("list-command-invocations --details: %v", listed)
	}
	if out, err := awsCLI(t, w.url, "ssm", "wait", "command-executed", "--command-id", id, "--instance-id", instA, "--plugin-name", agentproto.StepMount); err != nil {
		t.Errorf("aws ssm wait command-executed --plugin-name mount: %v %s", err, out)
	}
	if out, err := awsCLI(t, w.url, "ssm", "wait", "command-executed", "--command-id", id, "--instance-id", instA); err == nil || !strings.Contains(out, "InvalidPluginName") {
		t.Errorf("aws ssm wait command-executed without --plugin-name: %v %s", err, out)
	}
}
