package ssmsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// agentPath is where tether's documents call the agent.
const agentPath = "/usr/local/bin/tether-agent"

// shHost runs each script with the real /bin/sh and only the environment
// SSM gives it (plus PATH), with tether-agent replaced by a stand-in that
// prints its arguments, one per line, and exits with the host's exit code.
type shHost struct {
	*scriptHost // records the scripts and their environment; the other Host methods
	agent       string

	mu   sync.Mutex
	exit int
}

func newSHHost(t *testing.T, id string) *shHost {
	t.Helper()
	agent := filepath.Join(t.TempDir(), "tether-agent")
	if err := os.WriteFile(agent, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\"\nexit \"$AGENT_EXIT\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &shHost{scriptHost: &scriptHost{id: id}, agent: agent}
}

func (h *shHost) setExit(code int) { h.mu.Lock(); h.exit = code; h.mu.Unlock() }

func (h *shHost) RunShellScriptEnv(ctx context.Context, script string, env map[string]string, timeout time.Duration) (worldapi.CommandResult, error) {
	if _, err := h.scriptHost.RunShellScriptEnv(ctx, script, env, timeout); err != nil {
		return worldapi.CommandResult{}, err
	}
	h.mu.Lock()
	exit := h.exit
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", strings.ReplaceAll(script, agentPath, h.agent))
	cmd.Env = []string{"PATH=/usr/bin:/bin", "AGENT_EXIT=" + strconv.Itoa(exit)}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Dir = &stdout, &stderr, "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	res := worldapi.CommandResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("after %s: %w", timeout, context.DeadlineExceeded)
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
	case err != nil:
		return res, err
	}
	return res, nil
}

// repoWorld is an SSM with the repository's template.yaml deployed (stack
// "tether") and two Linux nodes running scripts with the real shell.
type repoWorld struct {
	srv  *Server
	ssm  *ssm.Client
	url  string
	docs map[string]string
	a, b *shHost
}

func newRepoWorld(t *testing.T) *repoWorld {
	t.Helper()
	srv := New(Config{Seed: 5, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	docs, err := srv.LoadTemplate("../../../template.yaml", "tether")
	if err != nil {
		t.Fatal(err)
	}
	r := awsproto.NewRouter()
	srv.Register(r)
	hs := httptest.NewServer(r)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	srv.SetThrottling(false)
	w := &repoWorld{srv: srv, url: hs.URL, docs: docs, a: newSHHost(t, instA), b: newSHHost(t, instB), ssm: newClient(hs.URL)}
	for _, h := range []*shHost{w.a, w.b} {
		if err := srv.AddInstance(h.id, h); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *repoWorld) send(t *testing.T, doc, inst string, params map[string][]string) string {
	t.Helper()
	out, err := w.ssm.SendCommand(context.Background(), &ssm.SendCommandInput{DocumentName: aws.String(w.docs[doc]),
		InstanceIds: []string{inst}, Parameters: params})
	if err != nil {
		t.Fatalf("SendCommand %s: %v", doc, err)
	}
	return aws.ToString(out.Command.CommandId)
}

// final waits (bounded) for the invocation's final status and returns it,
// with its plugins, as ListCommandInvocations shows it.
func (w *repoWorld) final(t *testing.T, id, inst string) types.CommandInvocation {
	t.Helper()
	var inv types.CommandInvocation
	waitUntil(t, "command "+id+" final on "+inst, func() bool {
		out, err := w.ssm.ListCommandInvocations(context.Background(), &ssm.ListCommandInvocationsInput{CommandId: aws.String(id),
			InstanceId: aws.String(inst), Details: true})
		if err != nil {
			t.Fatalf("ListCommandInvocations: %v", err)
		}
		if len(out.CommandInvocations) != 1 {
			return false
		}
		inv = out.CommandInvocations[0]
		switch inv.Status {
		case types.CommandInvocationStatusPending, types.CommandInvocationStatusInProgress:
			return false
		}
		return true
	})
	return inv
}

// plugin is GetCommandInvocation for one step once SSM has its result.
func (w *repoWorld) plugin(t *testing.T, id, inst, step string) *ssm.GetCommandInvocationOutput {
	t.Helper()
	var out *ssm.GetCommandInvocationOutput
	waitUntil(t, "step "+step+" of "+id, func() bool {
		var err error
		out, err = w.ssm.GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{CommandId: aws.String(id),
			InstanceId: aws.String(inst), PluginName: aws.String(step)})
		switch code(t, err) {
		case "":
			return true
		case "InvalidPluginName", "InvocationDoesNotExist":
			return false
		}
		t.Fatalf("GetCommandInvocation %s: %v", step, err)
		return false
	})
	return out
}

// agentCall reads the stand-in agent's output: the command and its flags
// (a flag without a value maps to "").
func agentCall(stdout string) (string, map[string]string) {
	args := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	flags := map[string]string{}
	for i := 1; i < len(args); i++ {
		if i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			flags[args[i]] = args[i+1]
			i++
		} else {
			flags[args[i]] = ""
		}
	}
	return args[0], flags
}

const (
	testVolume     = "vol-0123456789abcdef0"
	testAttachment = "i-0aaaaaaaaaaaaaaaa:1700000000000"
)

var skipWindows = `Step execution skipped due to unsatisfied preconditions: '"StringEquals": [platformType, Windows]'. Step name: refuseWindows`

// The repository's documents, whole, on a Linux node: the Windows and
// macOS steps are skipped by their preconditions (Success, code 0, the
// reason as the plugin's Output), the Linux step runs tether-agent with the
// parameters from SSM_<Name> variables only (ENV_VAR), and
// GetCommandInvocation answers only for a named step.
func TestRepositoryDocumentsOnLinux(t *testing.T) {
	w := newRepoWorld(t)
	ctx := context.Background()
	params := map[string][]string{agentproto.ParamVolumeID: {testVolume}, agentproto.ParamVolumeName: {"rexray-vol"},
		agentproto.ParamFormatIfBlank: {"true"}, agentproto.ParamSizeGiB: {"5"}, agentproto.ParamDevice: {"/dev/xvdf"},
		agentproto.ParamAttachment: {testAttachment}}
	id := w.send(t, "MountDocument", instA, params)
	inv := w.final(t, id, instA)
	if inv.Status != types.CommandInvocationStatusSuccess || aws.ToString(inv.StatusDetails) != "Success" {
		t.Errorf("invocation %s %s", inv.Status, aws.ToString(inv.StatusDetails))
	}
	var names []string
	for _, p := range inv.CommandPlugins {
		names = append(names, aws.ToString(p.Name))
	}
	if !slices.Equal(names, []string{"refuseWindows", "refuseMacOS", agentproto.StepMount}) {
		t.Fatalf("CommandPlugins %v", names)
	}
	skipMacOS := `Step execution skipped due to unsatisfied preconditions: '"StringEquals": [platformType, MacOS]'. Step name: refuseMacOS`
	for i, want := range []string{skipWindows, skipMacOS} {
		p := inv.CommandPlugins[i]
		if p.Status != types.CommandPluginStatusSuccess || p.ResponseCode != 0 || aws.ToString(p.Output) != want {
			t.Errorf("plugin %s: %s %d %q", aws.ToString(p.Name), p.Status, p.ResponseCode, aws.ToString(p.Output))
		}
	}

	// Without PluginName, or with a name that is not a step's (a plugin's
	// action is not a step name): InvalidPluginName, no message.
	for _, name := range []*string{nil, aws.String("aws:runShellScript"), aws.String("nope")} {
		_, err := w.ssm.GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{CommandId: aws.String(id), InstanceId: aws.String(instA), PluginName: name})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidPluginName" || ae.ErrorMessage() != "" {
			t.Errorf("PluginName %q: %v", aws.ToString(name), err)
		}
	}
	mount := w.plugin(t, id, instA, agentproto.StepMount)
	cmd, flags := agentCall(aws.ToString(mount.StandardOutputContent))
	want := map[string]string{"--volume-id": testVolume, "--name": "rexray-vol", "--fstype": "ext4", "--size-gib": "5", "--json": "",
		"--device": "/dev/xvdf", "--format-if-blank": "", "--attachment": testAttachment}
	if mount.Status != types.CommandInvocationStatusSuccess || mount.ResponseCode != 0 || aws.ToString(mount.PluginName) != agentproto.StepMount ||
		cmd != "mount" || !maps.Equal(flags, want) || aws.ToString(mount.ExecutionStartDateTime) == "" {
		t.Errorf("mount step: %s %d %q: %s %v, want %v", mount.Status, mount.ResponseCode, aws.ToString(mount.PluginName), cmd, flags, want)
	}
	refuse := w.plugin(t, id, instA, "refuseWindows")
	if refuse.Status != types.CommandInvocationStatusSuccess || refuse.ResponseCode != 0 || aws.ToString(refuse.StandardOutputContent) != "" {
		t.Errorf("refuseWindows: %s %d %q", refuse.Status, refuse.ResponseCode, aws.ToString(refuse.StandardOutputContent))
	}

	// Only the Linux step ran; the values reached it only as variables.
	view, _ := w.srvInvocation(id, instA)
	if len(view.Steps) != 3 || view.Steps[0].Ran || view.Steps[1].Ran || !view.Steps[2].Ran || w.a.ran() != 1 {
		t.Fatalf("steps %+v, %d scripts", view.Steps, w.a.ran())
	}
	script, env := w.a.lastScript(), w.a.lastEnv()
	if strings.Contains(script, testVolume) || strings.Contains(script, testAttachment) || !strings.Contains(script, `"${SSM_VolumeId}"`) ||
		env["SSM_VolumeId"] != testVolume || env["SSM_Attachment"] != testAttachment || env["SSM_FsType"] != "ext4" ||
		env["AWS_SSM_INSTANCE_ID"] != instA || env["AWS_SSM_REGION_NAME"] != "us-west-2" || env["AWS_SSM_PLATFORM_NAME"] != PlatformLinux.Name {
		t.Errorf("script\n%s\nenv %v", script, env)
	}

	// A failing agent fails its step and the invocation; the skipped
	// steps still count as successes.
	w.a.setExit(agentproto.ExitBusy)
	id = w.send(t, "UnmountDocument", instA, map[string][]string{agentproto.ParamVolumeID: {testVolume}, agentproto.ParamVolumeName: {"rexray-vol"},
		agentproto.ParamForce: {"true"}})
	inv = w.final(t, id, instA)
	unmount := w.plugin(t, id, instA, agentproto.StepUnmount)
	cmd, flags = agentCall(aws.ToString(unmount.StandardOutputContent))
	if inv.Status != types.CommandInvocationStatusFailed || unmount.Status != types.CommandInvocationStatusFailed ||
		unmount.ResponseCode != agentproto.ExitBusy || aws.ToString(unmount.StatusDetails) != "Failed" || cmd != "unmount" ||
		!maps.Equal(flags, map[string]string{"--volume-id": testVolume, "--name": "rexray-vol", "--json": "", "--force": ""}) {
		t.Errorf("failed unmount: invocation %s, step %s %d: %s %v", inv.Status, unmount.Status, unmount.ResponseCode, cmd, flags)
	}
	if p := inv.CommandPlugins[0]; p.Status != types.CommandPluginStatusSuccess || p.ResponseCode != 0 {
		t.Errorf("refuseWindows of the failed unmount: %s %d", p.Status, p.ResponseCode)
	}
	lc, err := w.ssm.ListCommands(ctx, &ssm.ListCommandsInput{CommandId: aws.String(id)})
	if err != nil || len(lc.Commands) != 1 || lc.Commands[0].Status != types.CommandStatusFailed || lc.Commands[0].ErrorCount != 1 ||
		lc.Commands[0].CompletedCount != 1 {
		t.Errorf("ListCommands of the failed unmount: %+v %v", lc, err)
	}
	w.a.setExit(0)
	id = w.send(t, "StatusDocument", instA, nil)
	w.final(t, id, instA)
	if st := w.plugin(t, id, instA, agentproto.StepStatus); st.Status != types.CommandInvocationStatusSuccess ||
		aws.ToString(st.StandardOutputContent) != "status\n--json\n" {
		t.Errorf("status step: %s %q", st.Status, aws.ToString(st.StandardOutputContent))
	}
}

func (w *repoWorld) srvInvocation(id, inst string) (Invocation, bool) {
	for _, v := range w.srv.Invocations() {
		if v.CommandID == id && v.InstanceID == inst {
			return v, true
		}
	}
	return Invocation{}, false
}

// An SSM Agent older than 3.3.2746.0 knows no interpolationType: it pastes
// every value into the script. The repository's documents quote each
// placeholder, so tether-agent gets the same arguments either way.
func TestRepositoryDocumentsOnAnOlderAgent(t *testing.T) {
	w := newRepoWorld(t)
	if err := w.srv.SetAgentVersion(instA, "3.3.2745.0"); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.SetAgentVersion(instA, "3.3"); err == nil {
		t.Error("agent version 3.3 accepted")
	}
	di, err := w.ssm.DescribeInstanceInformation(context.Background(), &ssm.DescribeInstanceInformationInput{})
	if err != nil || len(di.InstanceInformationList) != 2 || aws.ToString(di.InstanceInformationList[0].AgentVersion) != "3.3.2745.0" ||
		aws.ToString(di.InstanceInformationList[1].AgentVersion) != DefaultAgentVersion {
		t.Fatalf("agent versions: %+v %v", di, err)
	}
	params := map[string][]string{agentproto.ParamVolumeID: {testVolume}, agentproto.ParamVolumeName: {"db.main"}, agentproto.ParamFSType: {"xfs"}}
	for _, inst := range []string{instA, instB} {
		id := w.send(t, "MountDocument", inst, params)
		w.final(t, id, inst)
		cmd, flags := agentCall(aws.ToString(w.plugin(t, id, inst, agentproto.StepMount).StandardOutputContent))
		if want := map[string]string{"--volume-id": testVolume, "--name": "db.main", "--fstype": "xfs", "--size-gib": "0", "--json": ""}; cmd != "mount" || !maps.Equal(flags, want) {
			t.Errorf("on %s: %s %v, want %v", inst, cmd, flags, want)
		}
	}
	if s, env := w.a.lastScript(), w.a.lastEnv(); !strings.Contains(s, `--volume-id "`+testVolume+`"`) || env["SSM_VolumeId"] != "" {
		t.Errorf("older agent: script\n%s\nenv %v", s, env)
	}
	if s, env := w.b.lastScript(), w.b.lastEnv(); strings.Contains(s, testVolume) || env["SSM_VolumeId"] != testVolume {
		t.Errorf("current agent: script\n%s\nenv %v", s, env)
	}
}

// The same documents on Windows and macOS nodes fail, as their first steps
// mean them to, and never run tether-agent: on Windows the agent has no
// aws:runShellScript (those steps are skipped) and runs the PowerShell
// step, which this world cannot, failing it; on macOS the PowerShell step
// is skipped by its precondition and the macOS step fails.
func TestRepositoryDocumentsOnOtherPlatforms(t *testing.T) {
	w := newRepoWorld(t)
	params := map[string][]string{agentproto.ParamVolumeID: {testVolume}, agentproto.ParamVolumeName: {"rexray-vol"}}
	if err := w.srv.SetPlatform(instA, PlatformWindows); err != nil {
		t.Fatal(err)
	}
	id := w.send(t, "MountDocument", instA, params)
	inv := w.final(t, id, instA)
	unsupported := func(step string) string {
		return "Step execution skipped due to unsupported plugin: aws:runShellScript. Step name: " + step
	}
	if inv.Status != types.CommandInvocationStatusFailed || len(inv.CommandPlugins) != 3 {
		t.Fatalf("on Windows: %s, %d plugins", inv.Status, len(inv.CommandPlugins))
	}
	if p := inv.CommandPlugins[0]; p.Status != types.CommandPluginStatusFailed || p.ResponseCode != 1 || !strings.Contains(aws.ToString(p.Output), "PowerShell") {
		t.Errorf("refuseWindows on Windows: %s %d %q", p.Status, p.ResponseCode, aws.ToString(p.Output))
	}
	for i, step := range []string{"refuseMacOS", agentproto.StepMount} {
		if p := inv.CommandPlugins[i+1]; p.Status != types.CommandPluginStatusSuccess || aws.ToString(p.Output) != unsupported(step) {
			t.Errorf("%s on Windows: %s %q", step, p.Status, aws.ToString(p.Output))
		}
	}

	if err := w.srv.SetPlatform(instA, PlatformMacOS); err != nil {
		t.Fatal(err)
	}
	id = w.send(t, "StatusDocument", instA, nil)
	inv = w.final(t, id, instA)
	macOS := w.plugin(t, id, instA, "refuseMacOS")
	if inv.Status != types.CommandInvocationStatusFailed || macOS.Status != types.CommandInvocationStatusFailed || macOS.ResponseCode != 1 ||
		aws.ToString(macOS.StandardErrorContent) != "tether runs tether-agent on Linux ECS container instances only\n" {
		t.Errorf("on macOS: %s; refuseMacOS %s %d %q", inv.Status, macOS.Status, macOS.ResponseCode, aws.ToString(macOS.StandardErrorContent))
	}
	if p := inv.CommandPlugins[0]; aws.ToString(p.Output) != skipWindows {
		t.Errorf("refuseWindows on macOS: %q", aws.ToString(p.Output))
	}
	if p := inv.CommandPlugins[2]; p.Status != types.CommandPluginStatusSuccess ||
		aws.ToString(p.Output) != `Step execution skipped due to unsatisfied preconditions: '"StringEquals": [platformType, Linux]'. Step name: status` {
		t.Errorf("status on macOS: %s %q", p.Status, aws.ToString(p.Output))
	}
	if w.a.ran() != 1 || strings.Contains(w.a.lastScript(), agentPath) {
		t.Errorf("on macOS ran %d scripts, the last %q", w.a.ran(), w.a.lastScript())
	}
}

// A step's result is known to GetCommandInvocation only once the agent has
// sent it: while the Linux step runs, the skipped steps answer and the
// running one is InvalidPluginName; if the agent stops meanwhile, the step
// stays unknown after it ended until the agent is back.
func TestStepUnknownUntilItEnds(t *testing.T) {
	w := newRepoWorld(t)
	release := make(chan struct{})
	w.a.scriptHost.mu.Lock()
	w.a.scriptHost.block = release
	w.a.scriptHost.mu.Unlock()
	id := w.send(t, "StatusDocument", instA, nil)
	waitUntil(t, "the status step running", func() bool { return w.a.ran() == 1 })
	if p := w.plugin(t, id, instA, "refuseMacOS"); p.Status != types.CommandInvocationStatusSuccess {
		t.Errorf("refuseMacOS while status runs: %s", p.Status)
	}
	_, err := w.ssm.GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{CommandId: aws.String(id),
		InstanceId: aws.String(instA), PluginName: aws.String(agentproto.StepStatus)})
	if code(t, err) != "InvalidPluginName" {
		t.Errorf("the running step: %v", err)
	}
	li, err := w.ssm.ListCommandInvocations(context.Background(), &ssm.ListCommandInvocationsInput{CommandId: aws.String(id), Details: true})
	if err != nil || len(li.CommandInvocations) != 1 || li.CommandInvocations[0].Status != types.CommandInvocationStatusInProgress ||
		len(li.CommandInvocations[0].CommandPlugins) != 2 {
		t.Errorf("while running: %+v %v", li, err)
	}
	if err := w.srv.StopAgent(instA); err != nil {
		t.Fatal(err)
	}
	close(release)
	waitUntil(t, "the step's result held for the agent", func() bool {
		v, _ := w.srvInvocation(id, instA)
		return v.AwaitingAgent && len(v.Steps) == 3
	})
	if v, _ := w.srvInvocation(id, instA); v.Steps[2].Reported || !v.Steps[1].Reported || v.Status != "InProgress" {
		t.Errorf("held: %+v", v)
	}
	_, err = w.ssm.GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{CommandId: aws.String(id),
		InstanceId: aws.String(instA), PluginName: aws.String(agentproto.StepStatus)})
	if code(t, err) != "InvalidPluginName" {
		t.Errorf("the ended step, agent down: %v", err)
	}
	if err := w.srv.StartAgent(instA); err != nil {
		t.Fatal(err)
	}
	if inv := w.final(t, id, instA); inv.Status != types.CommandInvocationStatusSuccess || len(inv.CommandPlugins) != 3 {
		t.Errorf("after: %s, %d plugins", inv.Status, len(inv.CommandPlugins))
	}
	if p := w.plugin(t, id, instA, agentproto.StepStatus); p.Status != types.CommandInvocationStatusSuccess {
		t.Errorf("the status step once the agent is back: %s", p.Status)
	}
}

// The agent's control flow over steps (runpluginutil): a failed step does
// not stop the next; onFailure exit, onSuccess exit and exit codes 168 and
// 169 skip the rest but a last finallyStep; onFailure successAndExit turns
// the failure into a success (168); a step killed at its timeout, or
// exiting 137, is TimedOut.
func TestStepControlFlow(t *testing.T) {
	w := newRepoWorld(t)
	step := func(name, inputs string) string {
		return `{"action":"aws:runShellScript","name":"` + name + `","inputs":{` + inputs + `}}`
	}
	doc := func(steps ...string) string {
		return `{"schemaVersion":"2.2","mainSteps":[` + strings.Join(steps, ",") + `]}`
	}
	const priorExit = "Plugin with name aws:runShellScript and id %s skipped due to prior step with an exit condition"
	type result struct {
		status string
		code   int
	}
	for _, c := range []struct {
		name    string
		content string
		status  string
		steps   []result
		skipped []string // steps skipped for a prior exit
	}{
		{"a failure does not stop the next step", doc(step("s1", `"runCommand":["exit 3"]`), step("s2", `"runCommand":["echo two"]`)),
			"Failed", []result{{"Failed", 3}, {"Success", 0}}, nil},
		{"onFailure exit", doc(step("s1", `"runCommand":["exit 3"],"onFailure":"exit"`), step("s2", `"runCommand":["echo two"]`)),
			"Failed", []result{{"Failed", 3}, {"Success", 0}}, []string{"s2"}},
		{"onFailure successAndExit", doc(step("s1", `"runCommand":["exit 3"],"onFailure":"successAndExit"`), step("s2", `"runCommand":["echo two"]`)),
			"Success", []result{{"Success", 168}, {"Success", 0}}, []string{"s2"}},
		{"onSuccess exit", doc(step("s1", `"runCommand":["true"],"onSuccess":"exit"`), step("s2", `"runCommand":["exit 4"]`)),
			"Success", []result{{"Success", 0}, {"Success", 0}}, []string{"s2"}},
		{"exit 168", doc(step("s1", `"runCommand":["exit 168"]`), step("s2", `"runCommand":["exit 4"]`)),
			"Success", []result{{"Success", 168}, {"Success", 0}}, []string{"s2"}},
		{"exit 169 and a finallyStep", doc(step("s1", `"runCommand":["exit 169"]`), step("s2", `"runCommand":["exit 4"]`),
			step("s3", `"runCommand":["exit 5"],"finallyStep":true`)),
			"Failed", []result{{"Failed", 169}, {"Success", 0}, {"Failed", 5}}, []string{"s2"}},
		{"exit 137", doc(step("s1", `"runCommand":["exit 137"]`), step("s2", `"runCommand":["true"]`)),
			"TimedOut", []result{{"TimedOut", 137}, {"Success", 0}}, nil},
		{"timed out", doc(step("s1", `"runCommand":["sleep 30"],"timeoutSeconds":1`), step("s2", `"runCommand":["true"]`)),
			"TimedOut", []result{{"TimedOut", 137}, {"Success", 0}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := "flow-" + strings.ReplaceAll(c.name, " ", "-")
			if err := w.srv.AddDocument(name, c.content); err != nil {
				t.Fatal(err)
			}
			out, err := w.ssm.SendCommand(context.Background(), &ssm.SendCommandInput{DocumentName: aws.String(name), InstanceIds: []string{instB}})
			if err != nil {
				t.Fatal(err)
			}
			id := aws.ToString(out.Command.CommandId)
			inv := w.final(t, id, instB)
			if string(inv.Status) != c.status || len(inv.CommandPlugins) != len(c.steps) {
				t.Fatalf("invocation %s %s, %d plugins", inv.Status, aws.ToString(inv.StatusDetails), len(inv.CommandPlugins))
			}
			for i, want := range c.steps {
				p := inv.CommandPlugins[i]
				name := aws.ToString(p.Name)
				if string(p.Status) != want.status || int(p.ResponseCode) != want.code {
					t.Errorf("step %s: %s %d, want %s %d (%q)", name, p.Status, p.ResponseCode, want.status, want.code, aws.ToString(p.Output))
				}
				if slices.Contains(c.skipped, name) && aws.ToString(p.Output) != fmt.Sprintf(priorExit, name) {
					t.Errorf("step %s: output %q", name, aws.ToString(p.Output))
				}
				if want.status == "TimedOut" && aws.ToString(p.StatusDetails) != "Execution Timed Out" {
					t.Errorf("step %s: details %q", name, aws.ToString(p.StatusDetails))
				}
			}
		})
	}
}
