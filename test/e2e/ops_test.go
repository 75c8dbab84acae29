package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/world/world"
)

// The tether command for operators, built and run as a user runs it: the
// world's environment (AWS_ENDPOINT_URL, region, credentials), its stdout,
// stderr and exit code. These worlds have fake hosts (the data path is
// not what is tested) and tether's functions in this process.

// tetherBinary builds functions/cmd/tether into the test's directory.
func tetherBinary(t *testing.T) string {
	t.Helper()
	root, err := world.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "tether")
	cmd := exec.Command("go", "build", "-o", out, "./functions/cmd/tether")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./functions/cmd/tether: %v\n%s", err, b)
	}
	return out
}

// opsWorld is a world with tether's stack registered in its CloudFormation
// (as `sam deploy` leaves it: the command finds the retry queue there) and
// the tether command.
type opsWorld struct {
	*world.World
	bin     string
	cluster string
	ecs     *ecs.Client
	ec2     *ec2.Client
}

func startOpsWorld(t *testing.T, o world.Options) *opsWorld {
	t.Helper()
	if o.Instances == 0 {
		o.Instances = 2
	}
	if o.Functions == "" {
		o.Functions = world.InProcessFunctions
	}
	w := world.StartT(t, o)
	w.CloudFormation().AddStack(w.Options().StackName, w.Deployment().Outputs)
	return &opsWorld{World: w, bin: tetherBinary(t), cluster: w.Options().Cluster,
		ecs: ecs.NewFromConfig(w.AWSConfig()), ec2: ec2.NewFromConfig(w.AWSConfig())}
}

type run struct {
	stdout, stderr string
	code           int
}

// tether runs the command with the world's environment (and TETHER_STACK
// for the world's stack name); stdin is not a terminal.
func (w *opsWorld) tether(t *testing.T, args ...string) run {
	t.Helper()
	cmd := exec.Command(w.bin, args...)
	cmd.Env = append(w.Environ(), "PATH="+os.Getenv("PATH"), "HOME="+t.TempDir(), "TETHER_STACK="+w.Options().StackName)
	cmd.Stdin = strings.NewReader("")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := run{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("tether %v: %v", args, err)
	}
	t.Logf("$ tether %s\n(exit %d)\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// want runs the command and fails unless it exits with code.
func (w *opsWorld) want(t *testing.T, code int, args ...string) run {
	t.Helper()
	r := w.tether(t, args...)
	if r.code != code {
		t.Fatalf("tether %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}

func decode[T any](t *testing.T, r run) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("stdout is not the JSON expected: %v\n%s", err, r.stdout)
	}
	return v
}

// registerApp registers family: one container using the shared tether
// volume named volume (autoprovision).
func (w *opsWorld) registerApp(t *testing.T, ctx context.Context, family, volume string) {
	t.Helper()
	_, err := w.ecs.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family: aws.String(family),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: aws.String("app"), Image: aws.String("busybox"), Memory: aws.Int32(64), Essential: aws.Bool(true),
			EntryPoint:  []string{"sh", "-c"},
			Command:     []string{"trap 'exit 0' TERM; while true; do sleep 1; done"},
			MountPoints: []ecstypes.MountPoint{{SourceVolume: aws.String(volume), ContainerPath: aws.String("/data")}},
		}},
		Volumes: []ecstypes.Volume{{Name: aws.String(volume), DockerVolumeConfiguration: &ecstypes.DockerVolumeConfiguration{
			Scope: ecstypes.ScopeShared, Autoprovision: aws.Bool(true), Driver: aws.String("tether"), DriverOpts: map[string]string{"size": "1"},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// runOn starts a task of family on instance and returns its ARN.
func (w *opsWorld) runOn(t *testing.T, ctx context.Context, family, instance string) string {
	t.Helper()
	out, err := w.ecs.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String(w.cluster), TaskDefinition: aws.String(family),
		PlacementConstraints: []ecstypes.PlacementConstraint{{Type: ecstypes.PlacementConstraintTypeMemberOf, Expression: aws.String("ec2InstanceId == " + instance)}}})
	if err != nil || len(out.Tasks) != 1 {
		t.Fatalf("RunTask %s on %s: %v %+v", family, instance, err, out)
	}
	return aws.ToString(out.Tasks[0].TaskArn)
}

func (w *opsWorld) stopTask(t *testing.T, ctx context.Context, arn string) {
	t.Helper()
	if _, err := w.ecs.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(w.cluster), Task: aws.String(arn), Reason: aws.String("test")}); err != nil {
		t.Fatal(err)
	}
}

// task waits (bounded by ctx) until ECS shows task arn as ok says.
func (w *opsWorld) task(t *testing.T, ctx context.Context, arn, what string, ok func(ecstypes.Task) bool) ecstypes.Task {
	t.Helper()
	var last ecstypes.Task
	eventually(t, ctx, "task "+arn+" "+what, func() (bool, string) {
		out, err := w.ecs.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(w.cluster), Tasks: []string{arn}})
		if err != nil || len(out.Tasks) != 1 {
			return false, fmt.Sprint(err)
		}
		last = out.Tasks[0]
		return ok(last), aws.ToString(last.LastStatus) + " " + aws.ToString(last.StoppedReason)
	})
	return last
}

func running(t ecstypes.Task) bool { return aws.ToString(t.LastStatus) == "RUNNING" }
func stopped(t ecstypes.Task) bool { return aws.ToString(t.LastStatus) == "STOPPED" }

// eventually polls cond until it holds (bounded by ctx), failing with what
// it waited for and what it saw last.
func eventually(t *testing.T, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	for {
		ok, now := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waited for %s; last seen: %s", what, now)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// volumeNamed is the one EBS volume with tether's tags for name.
func (w *opsWorld) volumeNamed(t *testing.T, ctx context.Context, name string) ec2types.Volume {
	t.Helper()
	out, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:tether:volume"), Values: []string{name}}, {Name: aws.String("tag:tether:cluster"), Values: []string{w.cluster}}}})
	if err != nil || len(out.Volumes) != 1 {
		t.Fatalf("tether volume %s: %v, %d volumes", name, err, len(out.Volumes))
	}
	return out.Volumes[0]
}

// The command's exit codes and JSON, as README documents them (the test
// reads them as a user's script would, not through the Go types).
const (
	exitOK           = 0
	exitUsage        = 2
	exitRefused      = 3
	exitNotFound     = 4
	exitNotFinished  = 5
	exitNotConfirmed = 6
)

type volumeLine struct {
	Name        string `json:"name"`
	VolumeID    string `json:"volumeId"`
	Cluster     string `json:"cluster"`
	Scope       string `json:"scope"`
	State       string `json:"state"`
	AZ          string `json:"az"`
	Instance    string `json:"instance"`
	Task        string `json:"task"`
	TaskStatus  string `json:"taskStatus"`
	SizeGiB     int32  `json:"sizeGiB"`
	Type        string `json:"type"`
	Adopted     string `json:"adoptedAt"`
	LastHandoff *struct {
		From     string    `json:"from"`
		To       string    `json:"to"`
		Released time.Time `json:"releasedAt"`
		Mounted  time.Time `json:"mountedAt"`
		Seconds  float64   `json:"seconds"`
	} `json:"lastHandoff"`
}

type volumesOut struct {
	Volumes []volumeLine `json:"volumes"`
}

type step struct{ State, What, Detail string }

type explanation struct {
	Volume     string `json:"volume"`
	VolumeID   string `json:"volumeId"`
	Instance   string `json:"instance"`
	Steps      []step `json:"steps"`
	WaitingFor string `json:"waitingFor"`
	Advice     string `json:"advice"`
}

type explainOut struct {
	Volumes []explanation `json:"volumes"`
}

type releaseOut struct {
	Outcome  string `json:"outcome"`
	Instance string `json:"instance"`
	VolumeID string `json:"volumeId"`
	Force    bool   `json:"force"`
	Forced   bool   `json:"forced"`
}

type adoptOut struct {
	Adopted bool              `json:"adopted"`
	Already bool              `json:"already"`
	DryRun  bool              `json:"dryRun"`
	Tags    map[string]string `json:"tags"`
}

func hasStep(x explanation, state, what string) bool {
	return slices.ContainsFunc(x.Steps, func(s step) bool { return s.State == state && s.What == what })
}

// `tether volumes` and `tether explain`: a task's volume where it runs; a
// handoff held up by a host that does not let go (its unmount answers busy,
// naming the process), explained as what it waits for now, with the
// command's id; then the handoff done, listed with how long it took.
func TestTetherVolumesAndExplain(t *testing.T) {
	w := startOpsWorld(t, world.Options{})
	ctx := ctxFor(t)
	i0, i1 := w.Instances()[0].ID, w.Instances()[1].ID
	w.registerApp(t, ctx, "app", "data")
	t1 := w.runOn(t, ctx, "app", i0)
	w.task(t, ctx, t1, "running", running)
	vid := aws.ToString(w.volumeNamed(t, ctx, "data").VolumeId)

	vs := decode[volumesOut](t, w.want(t, exitOK, "volumes", "--json"))
	if len(vs.Volumes) != 1 {
		t.Fatalf("volumes: %+v, want one", vs.Volumes)
	}
	l := vs.Volumes[0]
	if l.Name != "data" || l.VolumeID != vid || l.Cluster != w.cluster || l.Scope != "shared" || l.State != "in-use" || l.Instance != i0 ||
		l.Task != t1 || l.TaskStatus != "RUNNING" || l.SizeGiB != 1 || l.Type != "gp3" || l.LastHandoff == nil || l.LastHandoff.To != i0 || l.LastHandoff.From != "" {
		t.Fatalf("volumes: %+v", l)
	}
	text := w.want(t, exitOK, "volumes", "--cluster", w.cluster).stdout
	if !strings.HasPrefix(text, "NAME") || !strings.Contains(text, vid) || !strings.Contains(text, "RUNNING") {
		t.Fatalf("volumes as text:\n%s", text)
	}

	x := decode[explainOut](t, w.want(t, exitOK, "explain", "data", "--json")).Volumes[0]
	if x.WaitingFor != "" || !hasStep(x, "done", "mount on "+i0) || !hasStep(x, "done", "task "+taskID(t1)+" runs") || x.Instance != i0 {
		t.Fatalf("explain of a volume in use: %+v", x)
	}

	// The handoff to i1 waits for i0 to let go: a process there (outside
	// any container) keeps the device open, and the unmount says so.
	h0, ok := w.FakeHost(i0)
	if !ok {
		t.Fatalf("%s is not a fake host", i0)
	}
	h0.HoldDevice(vid, agentproto.Holder{Kind: "process", PID: 4242, Command: "tar"})
	w.stopTask(t, ctx, t1)
	t2 := w.runOn(t, ctx, "app", i1)
	eventually(t, ctx, "explain to say the handoff waits for "+i0+" to let go", func() (bool, string) {
		r := w.tether(t, "explain", vid, "--json")
		if r.code != 0 {
			return false, r.stderr
		}
		x = decode[explainOut](t, r).Volumes[0]
		return strings.HasPrefix(x.WaitingFor, "the host "+i0+" to let go: its unmount answered exit 3 (busy)") && strings.Contains(x.WaitingFor, "tar"), x.WaitingFor
	})
	if !hasStep(x, "failed", "unmount on "+i0) || !hasStep(x, "next", "detach from "+i0) || !hasStep(x, "next", "attach to "+i1) ||
		!hasStep(x, "next", "task "+taskID(t2)+" starts") {
		t.Fatalf("steps of the held-up handoff: %+v", x.Steps)
	}
	byTask := w.want(t, exitOK, "explain", t2).stdout
	if !strings.Contains(byTask, "waiting for: the host "+i0+" to let go") || !strings.Contains(byTask, "PENDING") || !strings.Contains(byTask, "command ") {
		t.Fatalf("explain of the waiting task:\n%s", byTask)
	}

	h0.ReleaseDevice(vid)
	w.task(t, ctx, t2, "running", running)
	vs = decode[volumesOut](t, w.want(t, exitOK, "volumes", "--json"))
	h := vs.Volumes[0].LastHandoff
	if vs.Volumes[0].Instance != i1 || vs.Volumes[0].Task != t2 || h == nil || h.From != i0 || h.To != i1 || h.Seconds <= 0 || h.Released.IsZero() {
		t.Fatalf("after the handoff: %+v, last handoff %+v", vs.Volumes[0], h)
	}
	x = decode[explainOut](t, w.want(t, exitOK, "explain", "data", "--json")).Volumes[0]
	if x.WaitingFor != "" || !hasStep(x, "done", "unmount on "+i0) || !hasStep(x, "done", "mount on "+i1) {
		t.Fatalf("explain after the handoff: %+v", x)
	}
	w.want(t, exitNotFound, "explain", "vol-0123456789abcdef0")
	w.want(t, exitUsage, "explain")
}

func taskID(arn string) string { return arn[strings.LastIndexByte(arn, '/')+1:] }

// `tether release`: refused while a task there uses the volume; with the
// instance's SSM agent silent, tether waits (it never forces on its own), a
// release without force does not finish (exit 5), --force without a
// terminal or --yes is not confirmed (exit 6), and with --yes the
// reconciler force-detaches it (the command only sent the message).
func TestTetherReleaseAndForce(t *testing.T) {
	w := startOpsWorld(t, world.Options{})
	ctx := ctxFor(t)
	i0 := w.Instances()[0].ID
	w.registerApp(t, ctx, "app", "data")
	t1 := w.runOn(t, ctx, "app", i0)
	w.task(t, ctx, t1, "running", running)
	vid := aws.ToString(w.volumeNamed(t, ctx, "data").VolumeId)

	r := w.want(t, exitRefused, "release", "data")
	if !strings.Contains(r.stderr, "task "+taskID(t1)) || !strings.Contains(r.stderr, "never detaches") {
		t.Fatalf("refusal does not name the task: %s", r.stderr)
	}

	if err := w.SSM().StopAgent(i0); err != nil {
		t.Fatal(err)
	}
	w.stopTask(t, ctx, t1)
	w.task(t, ctx, t1, "stopped", stopped)
	r = w.want(t, exitNotFinished, "release", vid, "--wait", "3s")
	if !strings.Contains(r.stderr, "release of data ("+vid+") from "+i0+" sent") || !strings.Contains(r.stderr, "still waiting") {
		t.Fatalf("release without force: %s", r.stderr)
	}
	if v := w.volumeNamed(t, ctx, "data"); len(v.Attachments) != 1 || aws.ToString(v.Attachments[0].InstanceId) != i0 {
		t.Fatalf("detached from a live host with a silent agent without force: %+v", v.Attachments)
	}
	w.want(t, exitNotConfirmed, "release", "data", "--force")

	res := decode[releaseOut](t, w.want(t, exitOK, "release", "data", "--force", "--yes", "--reason", "SSM agent of i0 is gone", "--json"))
	if res.Outcome != "released" || res.Instance != i0 || !res.Force || !res.Forced || res.VolumeID != vid {
		t.Fatalf("forced release: %+v", res)
	}
	v := w.volumeNamed(t, ctx, "data")
	if len(v.Attachments) != 0 || v.State != ec2types.VolumeStateAvailable {
		t.Fatalf("after the forced release: %s %+v", v.State, v.Attachments)
	}
	again := decode[releaseOut](t, w.want(t, exitOK, "release", "data", "--json"))
	if again.Outcome != "not-attached" {
		t.Fatalf("a second release: %+v", again)
	}
}

// A force is refused while the unmount answers that a container on the
// host (which answers: it is not wedged) holds the volume; once it let
// go, a plain release detaches it.
func TestTetherReleaseRefusesForceUnderAContainer(t *testing.T) {
	w := startOpsWorld(t, world.Options{})
	ctx := ctxFor(t)
	i0 := w.Instances()[0].ID
	w.registerApp(t, ctx, "app", "data")
	t1 := w.runOn(t, ctx, "app", i0)
	w.task(t, ctx, t1, "running", running)
	vid := aws.ToString(w.volumeNamed(t, ctx, "data").VolumeId)
	h0, _ := w.FakeHost(i0)
	h0.HoldDevice(vid, agentproto.Holder{Kind: "container", ID: "5e1dca7", Name: "backup-sidecar", State: "running"})
	w.stopTask(t, ctx, t1)
	w.task(t, ctx, t1, "stopped", stopped)
	eventually(t, ctx, "the unmount on "+i0+" to answer busy", func() (bool, string) {
		x := decode[explainOut](t, w.want(t, exitOK, "explain", "data", "--json")).Volumes[0]
		return strings.Contains(x.WaitingFor, "backup-sidecar"), x.WaitingFor
	})
	r := w.want(t, exitRefused, "release", "data", "--force", "--yes")
	if !strings.Contains(r.stderr, "backup-sidecar") || !strings.Contains(r.stderr, "force is refused") {
		t.Fatalf("refusal: %s", r.stderr)
	}
	if v := w.volumeNamed(t, ctx, "data"); len(v.Attachments) != 1 {
		t.Fatalf("detached under a container: %+v", v.Attachments)
	}
	h0.ReleaseDevice(vid)
	res := decode[releaseOut](t, w.want(t, exitOK, "release", "data", "--json"))
	if res.Outcome != "released" || res.Forced {
		t.Fatalf("plain release: %+v", res)
	}
}

// `tether adopt`: usage and not found; the checks that refuse (AZ,
// another cluster's, Multi-Attach); a dry run; the adoption, listed by
// `tether volumes`; and the migration's first half on fake hosts: a task
// whose volume name an unowned volume carries is stopped with a reason
// naming `tether adopt`, and tether creates no second volume.
func TestTetherAdopt(t *testing.T) {
	w := startOpsWorld(t, world.Options{})
	ctx := ctxFor(t)
	az := w.Instances()[0].AZ
	create := func(name string, tags map[string]string, mutate func(*ec2.CreateVolumeInput)) string {
		t.Helper()
		in := &ec2.CreateVolumeInput{AvailabilityZone: aws.String(az), Size: aws.Int32(1), VolumeType: ec2types.VolumeTypeGp3,
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeVolume, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(name)}}}}}
		for k, v := range tags {
			in.TagSpecifications[0].Tags = append(in.TagSpecifications[0].Tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		if mutate != nil {
			mutate(in)
		}
		out, err := w.ec2.CreateVolume(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		id := aws.ToString(out.VolumeId)
		eventually(t, ctx, id+" available", func() (bool, string) {
			d, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
			if err != nil || len(d.Volumes) != 1 {
				return false, fmt.Sprint(err)
			}
			return d.Volumes[0].State == ec2types.VolumeStateAvailable, string(d.Volumes[0].State)
		})
		return id
	}
	legacy := create("legacy", nil, nil)

	w.want(t, exitUsage, "adopt", legacy, "--cluster", w.cluster)
	w.want(t, exitUsage, "adopt", legacy, "--name", "../etc", "--cluster", w.cluster)
	w.want(t, exitNotFound, "adopt", "vol-0123456789abcdef0", "--name", "legacy", "--cluster", w.cluster)
	r := w.want(t, exitRefused, "adopt", legacy, "--name", "legacy", "--cluster", w.cluster, "--az", az+"x")
	if !strings.Contains(r.stdout, "FAIL availability zone") {
		t.Fatalf("AZ refusal:\n%s", r.stdout)
	}
	others := create("theirs", map[string]string{"tether:cluster": "other", "tether:volume": "theirs", "tether:scope": "shared"}, nil)
	if r := w.want(t, exitRefused, "adopt", others, "--name", "theirs", "--cluster", w.cluster); !strings.Contains(r.stdout, "belongs to tether cluster other") {
		t.Fatalf("another cluster's volume:\n%s", r.stdout)
	}
	multi := create("shared-io2", nil, func(in *ec2.CreateVolumeInput) {
		in.VolumeType, in.Iops, in.Size, in.MultiAttachEnabled = ec2types.VolumeTypeIo2, aws.Int32(1000), aws.Int32(10), aws.Bool(true)
	})
	if r := w.want(t, exitRefused, "adopt", multi, "--name", "shared-io2", "--cluster", w.cluster); !strings.Contains(r.stdout, "FAIL single-attach") {
		t.Fatalf("Multi-Attach volume:\n%s", r.stdout)
	}

	dry := decode[adoptOut](t, w.want(t, exitOK, "adopt", legacy, "--name", "legacy", "--cluster", w.cluster, "--dry-run", "--json"))
	if dry.Adopted || !dry.DryRun || dry.Tags["tether:cluster"] != w.cluster || dry.Tags["tether:blank"] != "" {
		t.Fatalf("dry run: %+v", dry)
	}
	if v := describe(t, ctx, w, legacy); tag(v, "tether:cluster") != "" {
		t.Fatalf("a dry run tagged the volume: %+v", v.Tags)
	}
	res := decode[adoptOut](t, w.want(t, exitOK, "adopt", legacy, "--name", "legacy", "--cluster", w.cluster, "--json"))
	v := describe(t, ctx, w, legacy)
	if !res.Adopted || tag(v, "tether:cluster") != w.cluster || tag(v, "tether:volume") != "legacy" || tag(v, "tether:scope") != "shared" ||
		tag(v, "tether:adopted") == "" || tag(v, "tether:blank") != "" {
		t.Fatalf("adopted: %+v, tags %+v", res, v.Tags)
	}
	if again := decode[adoptOut](t, w.want(t, exitOK, "adopt", legacy, "--name", "legacy", "--cluster", w.cluster, "--json")); !again.Already {
		t.Fatalf("adopting again: %+v", again)
	}
	vs := decode[volumesOut](t, w.want(t, exitOK, "volumes", "--json"))
	if !slices.ContainsFunc(vs.Volumes, func(l volumeLine) bool { return l.VolumeID == legacy && l.Name == "legacy" && l.Adopted != "" }) {
		t.Fatalf("volumes does not list the adopted volume: %+v", vs.Volumes)
	}

	// Migration, first half: the driver changed, autoprovision on, and a
	// volume with the name that tether does not own.
	rexray := create("rexray-vol", nil, nil)
	w.registerApp(t, ctx, "mysql", "rexray-vol")
	task := w.runOn(t, ctx, "mysql", w.Instances()[0].ID)
	st := w.task(t, ctx, task, "stopped by tether", stopped)
	if reason := aws.ToString(st.StoppedReason); !strings.Contains(reason, "tether adopt "+rexray+" --name rexray-vol --cluster "+w.cluster) {
		t.Fatalf("stopped reason %q does not say how to adopt", reason)
	}
	d, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{{Name: aws.String("tag:Name"), Values: []string{"rexray-vol"}}}})
	if err != nil || len(d.Volumes) != 1 {
		t.Fatalf("volumes named rexray-vol: %v, %d; want only the unowned one", err, len(d.Volumes))
	}
	x := decode[explainOut](t, w.want(t, exitOK, "explain", "rexray-vol", "--cluster", w.cluster, "--json")).Volumes[0]
	if !strings.Contains(x.Advice, "tether adopt "+rexray) || !hasStep(x, "failed", "create rexray-vol") {
		t.Fatalf("explain of the unadopted name: %+v", x)
	}
}

func describe(t *testing.T, ctx context.Context, w *opsWorld, id string) ec2types.Volume {
	t.Helper()
	d, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
	if err != nil || len(d.Volumes) != 1 {
		t.Fatalf("describe %s: %v", id, err)
	}
	return d.Volumes[0]
}

func tag(v ec2types.Volume, key string) string {
	for _, t := range v.Tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}
