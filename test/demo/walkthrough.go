package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/world"
)

// The names the seed's texts use.
const (
	VolumeName  = "rexray-vol" // the task definition's volume, the EBS volume's Name tag
	ServiceName = "mysql-svc"
	TaskDefFile = "mysql-taskdef.json"
)

// Walkthrough is the seed's walkthrough against one world: the seed's
// snippets in a Session, the waits between them watched through the SDK.
type Walkthrough struct {
	Target   Target
	Session  *Session
	Watch    *Watcher
	Progress Progress
}

// Limits bound the walkthrough's waits (generous for the realistic
// profile; the instant profile takes a fraction).
var (
	TaskLimit   = 5 * time.Minute // a task (first or replacement) to reach RUNNING
	VolumeLimit = 3 * time.Minute // the volume to be detached once its service is gone
)

// Target is the world a walkthrough runs against, as its shell and its
// watcher reach it.
type Target struct {
	// Env is the shell's environment: the endpoint, region, dummy
	// credentials, CLI config and CloudFormationStack.
	Env     map[string]string
	AWS     aws.Config // the watcher's SDK config (the same endpoint)
	Cluster string
	// Journal, when set, is the endpoint's record of calls (it dates the
	// drain exactly); without it the drain is dated by the script's start.
	Journal func() []awsproto.Call
}

// WorldTarget is a world of this process. The shell does not get the
// stack's outputs: get-outputs.sh gives those, as in the seed.
func WorldTarget(w *world.World) Target {
	env := w.Env()
	for k := range w.StackOutputs() {
		delete(env, k)
	}
	return Target{Env: env, AWS: w.AWSConfig(), Cluster: w.Options().Cluster, Journal: w.Router().Journal}
}

// EnvFileTarget is a world another process runs (`make world`), as a
// person reaches it: the export lines of its TETHER_WORLD_ENV file (which
// also name the seed stack's outputs, ECSClusterName among them).
func EnvFileTarget(path string) (Target, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Target{}, fmt.Errorf("demo: %w", err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		kv, ok := strings.CutPrefix(strings.TrimSpace(line), "export ")
		if !ok {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Target{}, fmt.Errorf("demo: %s: unreadable line %q", path, line)
		}
		env[k] = strings.ReplaceAll(strings.Trim(v, "'"), `'\''`, "'")
	}
	for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "ECSClusterName"} {
		if env[k] == "" {
			return Target{}, fmt.Errorf("demo: %s sets no %s", path, k)
		}
	}
	cluster := env["ECSClusterName"]
	// The shell starts like WorldTarget's: the stack's outputs come from
	// seed step 2 (get-outputs.sh), which checks that they are set.
	for k := range env {
		if !strings.HasPrefix(k, "AWS_") && k != "CloudFormationStack" {
			delete(env, k)
		}
	}
	cfg := aws.Config{
		Region:       env["AWS_REGION"],
		BaseEndpoint: aws.String(env["AWS_ENDPOINT_URL"]),
		Credentials:  credentials.NewStaticCredentialsProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], ""),
	}
	return Target{Env: env, AWS: cfg, Cluster: cluster}, nil
}

// New starts a walkthrough in dir (its shell's working directory) against
// t. Everything shown goes to out.
func New(t Target, dir string, out io.Writer) (*Walkthrough, error) {
	env := maps.Clone(t.Env)
	env["PATH"] = os.Getenv("PATH")
	env["HOME"] = filepath.Join(dir, ".tether", "home")
	env["LANG"] = "C.UTF-8"
	if err := os.MkdirAll(env["HOME"], 0o700); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	environ := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		environ = append(environ, k+"="+env[k])
	}
	s, err := NewSession(dir, environ, out)
	if err != nil {
		return nil, err
	}
	return &Walkthrough{Target: t, Session: s, Watch: NewWatcher(t.AWS, t.Cluster), Progress: Progress{Out: out}}, nil
}

// ErrSeedOutput: a seed snippet ran but did not set what the walkthrough
// needs next (an output of the stack, an ARN).
var ErrSeedOutput = errors.New("seed snippet did not set")

// Outputs runs seed step 2: get-outputs.sh sourced into the shell.
func (wt *Walkthrough) Outputs(ctx context.Context) error {
	if err := wt.Session.Run(ctx, "outputs.sh"); err != nil {
		return err
	}
	for _, k := range []string{"AWSRegion", "ECSClusterName", "AvailabilityZone", "CWLogGroupName", "SubnetId", "SecurityGroupId", "MySQLTargetGroupArn"} {
		if wt.Session.Var(k) == "" {
			return fmt.Errorf("outputs.sh: %w %s", ErrSeedOutput, k)
		}
	}
	return nil
}

// TaskDefinition runs seed step 3: the task definition's heredoc, then
// edit (nil: the seed's as it is, only its driver changed) on the JSON it
// wrote, then register-task-definition. It returns TaskDefinitionArn.
func (wt *Walkthrough) TaskDefinition(ctx context.Context, edit func(def map[string]any) error) (string, error) {
	if err := wt.Session.Run(ctx, "taskdef.sh"); err != nil {
		return "", err
	}
	if edit != nil {
		if err := wt.editTaskDefinition(edit); err != nil {
			return "", err
		}
	}
	if err := wt.Session.Run(ctx, "register-taskdef.sh"); err != nil {
		return "", err
	}
	arn := wt.Session.Var("TaskDefinitionArn")
	if !strings.Contains(arn, ":task-definition/") {
		return "", fmt.Errorf("register-taskdef.sh: %w TaskDefinitionArn (got %q)", ErrSeedOutput, arn)
	}
	return arn, nil
}

func (wt *Walkthrough) editTaskDefinition(edit func(map[string]any) error) error {
	path := filepath.Join(wt.Session.Dir(), TaskDefFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var def map[string]any
	if err := json.Unmarshal(raw, &def); err != nil {
		return fmt.Errorf("%s: %w", TaskDefFile, err)
	}
	if err := edit(def); err != nil {
		return fmt.Errorf("%s: %w", TaskDefFile, err)
	}
	out, err := json.MarshalIndent(def, "", "    ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(out, '\n'), 0o644)
}

// TaskDefinitionVolumes is the "volumes" part of the task definition the
// walkthrough wrote, indented, for showing.
func (wt *Walkthrough) TaskDefinitionVolumes() (string, error) {
	raw, err := os.ReadFile(filepath.Join(wt.Session.Dir(), TaskDefFile))
	if err != nil {
		return "", err
	}
	var def struct {
		Volumes json.RawMessage `json:"volumes"`
	}
	if err := json.Unmarshal(raw, &def); err != nil {
		return "", fmt.Errorf("%s: %w", TaskDefFile, err)
	}
	var b bytes.Buffer
	if err := json.Indent(&b, def.Volumes, "    ", "  "); err != nil {
		return "", err
	}
	return "    \"volumes\": " + b.String(), nil
}

// Service runs seed step 4: the service definition's heredoc and
// create-service. It returns SvcDefinitionArn.
func (wt *Walkthrough) Service(ctx context.Context) (string, error) {
	for _, name := range []string{"svcdef.sh", "create-service.sh"} {
		if err := wt.Session.Run(ctx, name); err != nil {
			return "", err
		}
	}
	arn := wt.Session.Var("SvcDefinitionArn")
	if !strings.HasSuffix(arn, "/"+ServiceName) {
		return "", fmt.Errorf("create-service.sh: %w SvcDefinitionArn (got %q)", ErrSeedOutput, arn)
	}
	return arn, nil
}

// FirstTask waits for the service's task to run.
func (wt *Walkthrough) FirstTask(ctx context.Context) (Task, time.Duration, error) {
	var t Task
	took, err := wt.Progress.Wait(ctx, "the mysql task to run", TaskLimit,
		wt.Watch.TaskCheck(ServiceName, VolumeName, Task.Running, &t))
	return t, took, err
}

// Drain runs seed step 6 (drain-instance.sh) and returns when ECS was
// asked to drain: the endpoint's record of the script's
// update-container-instances-state, or when the script started if the
// record is missing.
func (wt *Walkthrough) Drain(ctx context.Context) (time.Time, error) {
	start := time.Now()
	if err := wt.Session.Run(ctx, "drain.sh"); err != nil {
		return time.Time{}, err
	}
	drained := start
	if wt.Target.Journal == nil {
		return drained, nil
	}
	for _, c := range wt.Target.Journal() {
		if c.Service == "ecs" && c.Action == "UpdateContainerInstancesState" && c.ErrorCode == "" && !c.Time.Before(start) {
			drained = c.Time
		}
	}
	return drained, nil
}

// ErrSameInstance: ECS ran the replacement where the first task ran (the
// drained instance), which the walkthrough is meant to prevent.
var ErrSameInstance = errors.New("replacement task on the drained instance")

// Replacement waits for a task other than first to run on another
// instance.
func (wt *Walkthrough) Replacement(ctx context.Context, first Task) (Task, time.Duration, error) {
	var t Task
	took, err := wt.Progress.Wait(ctx, "the replacement task to run on the other instance", TaskLimit,
		wt.Watch.TaskCheck(ServiceName, VolumeName, func(t Task) bool { return t.Arn != first.Arn && t.Running() }, &t))
	if err == nil && t.InstanceID == first.InstanceID {
		err = fmt.Errorf("%w: task %s on %s", ErrSameInstance, t.ID, t.InstanceID)
	}
	return t, took, err
}

// Volume is the EBS volume named VolumeName; an error when there is none.
func (wt *Walkthrough) Volume(ctx context.Context) (Volume, error) {
	v, ok, err := wt.Watch.VolumeNamed(ctx, VolumeName)
	if err == nil && !ok {
		err = fmt.Errorf("no EBS volume tagged Name=%s", VolumeName)
	}
	return v, err
}

// ShowVolume shows the volume with the aws CLI's describe-volumes.
func (wt *Walkthrough) ShowVolume(ctx context.Context) error {
	return wt.Session.RunText(ctx, "describe-volumes", `aws ec2 describe-volumes --filters Name=tag:Name,Values=`+VolumeName+` \
--query 'Volumes[].{VolumeId:VolumeId,State:State,AZ:AvailabilityZone,Type:VolumeType,GiB:Size,AttachedTo:Attachments[0].InstanceId,Attachment:Attachments[0].State}' --output table
`)
}

// CleanUp runs the seed's cleanup: delete-service.sh, a wait for the
// volume to be left available (shared scope outlives the service), then
// delete-volume.sh and a wait for it to go.
func (wt *Walkthrough) CleanUp(ctx context.Context) error {
	if err := wt.Session.Run(ctx, "delete-service.sh"); err != nil {
		return err
	}
	var v Volume
	if _, err := wt.Progress.Wait(ctx, "the volume to be detached and left available", VolumeLimit,
		wt.Watch.VolumeCheck(VolumeName, func(v Volume, ok bool) bool { return ok && v.State == "available" }, &v)); err != nil {
		return err
	}
	if err := wt.Session.Run(ctx, "delete-volume.sh"); err != nil {
		return err
	}
	if got := wt.Session.Var("rexrayVolumeID"); got != v.ID {
		return fmt.Errorf("delete-volume.sh: %w rexrayVolumeID to %s (got %q)", ErrSeedOutput, v.ID, got)
	}
	_, err := wt.Progress.Wait(ctx, "the volume to be deleted", time.Minute,
		wt.Watch.VolumeCheck(VolumeName, func(_ Volume, ok bool) bool { return !ok }, &v))
	return err
}
