package fakehost_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/fakehost"
	"github.com/tether-ecs/tether/test/world/ssmsim"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// The repository's own SSM documents (template.yaml), whole, sent through
// the world's SSM, run on a fake host: the Windows and macOS steps are
// skipped, and the fake shell and fake agent understand exactly what the
// Linux step makes of the reconciler's parameters (SSM_<Name> variables).
func TestTemplateDocumentsRunOnTheFakeHost(t *testing.T) {
	const stack, inst, vol = "tether", "i-0aaaaaaaaaaaaaaa1", "vol-0123456789abcdef0"
	router := awsproto.NewRouter()
	hs := httptest.NewServer(router)
	defer hs.Close()
	srv := ssmsim.New(ssmsim.Config{Seed: 1, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	defer srv.Close()
	srv.Register(router)
	docs, err := srv.LoadTemplate("../../../template.yaml", stack)
	if err != nil {
		t.Fatal(err)
	}
	host := fakehost.New(fakehost.Options{InstanceID: inst, AZ: "us-west-2a"})
	defer host.Close()
	if err := srv.AddInstance(inst, host); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := host.AttachDevice(ctx, worldapi.Attachment{VolumeID: vol, DeviceName: "/dev/xvdf"}); err != nil {
		t.Fatal(err)
	}
	client := ssm.New(ssm.Options{Region: "us-west-2", BaseEndpoint: aws.String(hs.URL), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDWORLD", "secret", "")})
	steps := map[string]string{"MountDocument": agentproto.StepMount, "UnmountDocument": agentproto.StepUnmount, "StatusDocument": agentproto.StepStatus}
	// run sends a document and reads it as the reconciler must: the
	// invocation's final status from ListCommandInvocations, then the
	// Linux step's result by its PluginName (a document of several steps
	// answers GetCommandInvocation for a named step only).
	run := func(doc string, params map[string][]string) *ssm.GetCommandInvocationOutput {
		t.Helper()
		out, err := client.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String(docs[doc]), InstanceIds: []string{inst}, Parameters: params})
		if err != nil {
			t.Fatalf("SendCommand %s: %v", doc, err)
		}
		id := out.Command.CommandId
		status := waitFinal(t, ctx, client, aws.ToString(id), inst)
		inv, err := client.GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{CommandId: id, InstanceId: aws.String(inst),
			PluginName: aws.String(steps[doc])})
		if err != nil {
			t.Fatalf("%s: step %s: %v", doc, steps[doc], err)
		}
		if inv.Status != status {
			t.Errorf("%s: step %s %s, invocation %s (the other steps are skipped on Linux)", doc, steps[doc], inv.Status, status)
		}
		return inv
	}

	// The reconciler's parameters of protocol 2: the grant, the size, the
	// attachment token (template.yaml passes them to the agent's flags).
	mount := run("MountDocument", map[string][]string{"VolumeId": {vol}, "VolumeName": {"rexray-vol"},
		agentproto.ParamFormatIfBlank: {"true"}, agentproto.ParamSizeGiB: {"5"}, agentproto.ParamAttachment: {"i-0aaaaaaaaaaaaaaa1:1700000000000"}})
	if mount.Status != types.CommandInvocationStatusSuccess {
		t.Fatalf("mount: %s %d %q", mount.Status, mount.ResponseCode, aws.ToString(mount.StandardErrorContent))
	}
	out, _ := agentproto.ParseOutput(aws.ToString(mount.StandardOutputContent))
	if res, ok := out.Mount(); !ok || res.VolumeID != vol || !res.Formatted || res.Mountpoint != "/var/lib/tether/volumes/rexray-vol" ||
		res.Generation != 1 || res.Attachment != "i-0aaaaaaaaaaaaaaa1:1700000000000" {
		t.Fatalf("mount output %q", aws.ToString(mount.StandardOutputContent))
	}
	withDevice := run("MountDocument", map[string][]string{"VolumeId": {vol}, "VolumeName": {"rexray-vol"}, "Device": {"/dev/xvdf"}})
	if withDevice.Status != types.CommandInvocationStatusSuccess {
		t.Fatalf("mount with a device: %q", aws.ToString(withDevice.StandardErrorContent))
	}
	status := run("StatusDocument", nil)
	if status.Status != types.CommandInvocationStatusSuccess || !json.Valid([]byte(aws.ToString(status.StandardOutputContent))) {
		t.Fatalf("status: %+v", status)
	}

	// A running container holds the volume: unmount is refused (exit 3)
	// unless forced.
	report := make(chan worldapi.TaskUpdate, 8)
	spec := worldapi.TaskSpec{TaskArn: "arn:aws:ecs:us-west-2:123456789012:task/c1/0123456789abcdef0123456789abcdef", Family: "mysql", Revision: 1,
		Containers: []worldapi.ContainerSpec{{Name: "mysql", Image: "mysql", Essential: true}},
		Volumes:    []worldapi.VolumeSpec{{Name: "rexray-vol", Docker: &worldapi.DockerVolumeConfiguration{Scope: "shared", Autoprovision: true, Driver: "tether"}}}}
	if err := host.StartTask(ctx, spec, func(u worldapi.TaskUpdate) { report <- u }); err != nil {
		t.Fatal(err)
	}
	for u := range report {
		if u.Status == "RUNNING" {
			break
		}
	}
	var st struct {
		Volumes []struct {
			Name, VolumeID string
			Mounted        bool
			Users          []struct{ ID, Name string }
		}
	}
	if err := json.Unmarshal([]byte(aws.ToString(run("StatusDocument", nil).StandardOutputContent)), &st); err != nil ||
		len(st.Volumes) != 1 || !st.Volumes[0].Mounted || st.Volumes[0].VolumeID != vol || len(st.Volumes[0].Users) != 1 {
		t.Fatalf("status while a container uses the volume: %+v %v", st, err)
	}
	busy := run("UnmountDocument", map[string][]string{"VolumeId": {vol}, "VolumeName": {"rexray-vol"}, "Force": {"false"}})
	if busy.Status != types.CommandInvocationStatusFailed || busy.ResponseCode != agentproto.ExitBusy {
		t.Fatalf("unmount under a container: %s %d", busy.Status, busy.ResponseCode)
	}
	// --force goes past the container, whose mount namespace keeps the
	// filesystem: still busy, naming it (a lazy unmount is no unmount).
	forced := run("UnmountDocument", map[string][]string{"VolumeId": {vol}, "VolumeName": {"rexray-vol"}, "Force": {"true"}})
	fout, _ := agentproto.ParseOutput(aws.ToString(forced.StandardOutputContent))
	if forced.ResponseCode != agentproto.ExitBusy || host.State().ForcedUnmount != 1 || fout.Error == nil || len(fout.Error.Holders) == 0 {
		t.Fatalf("forced unmount under a running container: %s %d %q", forced.Status, forced.ResponseCode, aws.ToString(forced.StandardOutputContent))
	}
	if err := host.StopTask(ctx, spec.TaskArn); err != nil {
		t.Fatal(err)
	}
	for u := range report {
		if u.Status == "STOPPED" {
			break
		}
	}
	done := run("UnmountDocument", map[string][]string{"VolumeId": {vol}, "VolumeName": {"rexray-vol"}, "Force": {"false"},
		agentproto.ParamAttachment: {"i-0aaaaaaaaaaaaaaa1:1700000000000"}})
	dout, _ := agentproto.ParseOutput(aws.ToString(done.StandardOutputContent))
	if u, ok := dout.Unmount(); done.Status != types.CommandInvocationStatusSuccess || !ok || !u.Released || u.Generation != 1 {
		t.Fatalf("unmount once the task stopped: %s %q", done.Status, aws.ToString(done.StandardOutputContent))
	}
	// Only the Linux step reached the host, each time calling the agent
	// by its absolute path, the values only in the variables.
	for _, script := range host.Scripts() {
		if !strings.Contains(script, "exec /usr/local/bin/tether-agent ") || strings.Contains(script, "Linux ECS container instances only") ||
			strings.Contains(script, vol) {
			t.Errorf("script on the host:\n%s", script)
		}
	}
}

// On a node whose SSM Agent predates ENV_VAR (before 3.3.2746.0), the
// values are pasted into the Linux step's script, quoted, and the fake
// agent gets the same arguments.
func TestTemplateDocumentsOnAnOlderAgent(t *testing.T) {
	const inst, vol = "i-0aaaaaaaaaaaaaaa2", "vol-0123456789abcdef1"
	router := awsproto.NewRouter()
	hs := httptest.NewServer(router)
	defer hs.Close()
	srv := ssmsim.New(ssmsim.Config{Seed: 2, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	defer srv.Close()
	srv.Register(router)
	docs, err := srv.LoadTemplate("../../../template.yaml", "tether")
	if err != nil {
		t.Fatal(err)
	}
	host := fakehost.New(fakehost.Options{InstanceID: inst, AZ: "us-west-2a"})
	defer host.Close()
	if err := srv.AddInstance(inst, host); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetAgentVersion(inst, "3.3.2745.0"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := host.AttachDevice(ctx, worldapi.Attachment{VolumeID: vol, DeviceName: "/dev/xvdg"}); err != nil {
		t.Fatal(err)
	}
	client := ssm.New(ssm.Options{Region: "us-west-2", BaseEndpoint: aws.String(hs.URL), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDWORLD", "secret", "")})
	out, err := client.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String(docs["MountDocument"]), InstanceIds: []string{inst},
		Parameters: map[string][]string{agentproto.ParamVolumeID: {vol}, agentproto.ParamVolumeName: {"old.agent"},
			agentproto.ParamFormatIfBlank: {"true"}, agentproto.ParamSizeGiB: {"5"}}})
	if err != nil {
		t.Fatal(err)
	}
	if st := waitFinal(t, ctx, client, aws.ToString(out.Command.CommandId), inst); st != types.CommandInvocationStatusSuccess {
		t.Fatalf("mount on an older agent: %s", st)
	}
	inv, err := client.GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{CommandId: out.Command.CommandId, InstanceId: aws.String(inst),
		PluginName: aws.String(agentproto.StepMount)})
	if err != nil {
		t.Fatal(err)
	}
	res, _ := agentproto.ParseOutput(aws.ToString(inv.StandardOutputContent))
	if m, ok := res.Mount(); !ok || m.VolumeID != vol || !m.Formatted || m.Mountpoint != "/var/lib/tether/volumes/old.agent" {
		t.Errorf("mount output %q", aws.ToString(inv.StandardOutputContent))
	}
	if s := host.Scripts(); len(s) != 1 || !strings.Contains(s[0], `--volume-id "`+vol+`"`) {
		t.Errorf("scripts %q", s)
	}
}

// The fake shell expands "$NAME" and "${NAME}" from the environment SSM
// gives a script; an unset one is "" but, after set -u, an error (exit 2),
// as sh does.
func TestFakeShellVariables(t *testing.T) {
	host := fakehost.New(fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa3", AZ: "us-west-2a"})
	defer host.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const script = `if [ -n "${SSM_Run}" ]; then exec /usr/local/bin/tether-agent "$SSM_Command" --json; fi`
	for name, c := range map[string]struct {
		script string
		env    map[string]string
		code   int
		stdout string
		stderr string
	}{
		"set":                       {script, map[string]string{"SSM_Run": "yes", "SSM_Command": "version"}, 0, `"protocol"`, ""},
		"unset":                     {script, nil, 0, "", ""},
		"unset, set -u":             {"set -eu\n" + script, nil, 2, "", "SSM_Run: parameter not set"},
		"a value is data, not code": {script, map[string]string{"SSM_Run": "yes", "SSM_Command": "$(reboot)"}, agentproto.ExitBadInput, "", "unknown command"},
	} {
		res, err := host.RunShellScriptEnv(ctx, c.script, c.env, time.Minute)
		if err != nil || res.ExitCode != c.code || !strings.Contains(res.Stdout, c.stdout) || !strings.Contains(res.Stderr, c.stderr) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q, %v", name, res.ExitCode, res.Stdout, res.Stderr, err)
		}
	}
}

// waitFinal polls ListCommandInvocations (bounded, backing off to 100 ms
// so as to stay within SSM's read rate) until the invocation's status is
// final and returns it.
func waitFinal(t *testing.T, ctx context.Context, client *ssm.Client, id, inst string) types.CommandInvocationStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last, pause := "not listed", 5*time.Millisecond
	for time.Now().Before(deadline) {
		out, err := client.ListCommandInvocations(ctx, &ssm.ListCommandInvocationsInput{CommandId: aws.String(id), InstanceId: aws.String(inst)})
		if err != nil {
			t.Fatalf("ListCommandInvocations %s: %v", id, err)
		}
		if len(out.CommandInvocations) == 1 {
			switch st := out.CommandInvocations[0].Status; st {
			case types.CommandInvocationStatusPending, types.CommandInvocationStatusInProgress, types.CommandInvocationStatusDelayed:
				last = string(st)
			default:
				return st
			}
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
	t.Fatalf("waited 30s for command %s on %s to finish; last: %s", id, inst, last)
	return ""
}
