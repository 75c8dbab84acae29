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

// The repository's own SSM documents (template.yaml), sent through the
// world's SSM, run on a fake host: the fake shell and fake agent understand
// exactly what the reconciler will send.
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
	run := func(doc string, params map[string][]string) *ssm.GetCommandInvocationOutput {
		t.Helper()
		out, err := client.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String(docs[doc]), InstanceIds: []string{inst}, Parameters: params})
		if err != nil {
			t.Fatalf("SendCommand %s: %v", doc, err)
		}
		waiter := ssm.NewCommandExecutedWaiter(client, func(o *ssm.CommandExecutedWaiterOptions) {
			o.MinDelay, o.MaxDelay = time.Millisecond, 10*time.Millisecond
		})
		inv, err := waiter.WaitForOutput(ctx, &ssm.GetCommandInvocationInput{CommandId: out.Command.CommandId, InstanceId: aws.String(inst)}, 30*time.Second)
		if err != nil && inv == nil {
			inv, _ = client.GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{CommandId: out.Command.CommandId, InstanceId: aws.String(inst)})
		}
		if inv == nil {
			t.Fatalf("%s: no invocation: %v", doc, err)
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
	if !strings.Contains(host.Scripts()[0], "/usr/local/bin/tether-agent") {
		t.Errorf("the mount document does not call the agent by its absolute path: %q", host.Scripts()[0])
	}
}
