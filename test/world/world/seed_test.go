package world_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/world"
)

// The seed walkthrough (Amazon ECS and Docker volume drivers, part 1) with
// the real aws CLI against a world of two real instances in one AZ, tether's
// functions deployed from template.yaml: the task reaches RUNNING on one
// instance and writes into its tether volume; drain-instance.sh, verbatim,
// moves it to the other; the file is there, on the same EBS volume, now
// attached there; then the seed's cleanup.
func TestSeedWalkthroughInProcess(t *testing.T) {
	requireRealHosts(t)
	w := world.StartT(t, withFunctions(t, world.Options{Instances: 2, Hosts: world.RealHosts, AgentBinary: agentBinary(t)}, world.InProcessFunctions))
	seedWalkthrough(t, w)
}

func TestSeedWalkthroughBootstrapsUnderTheEmulator(t *testing.T) {
	requireRealHosts(t)
	w := world.StartT(t, withFunctions(t, world.Options{Instances: 2, Hosts: world.RealHosts, AgentBinary: agentBinary(t)}, world.EmulatedFunctions))
	seedWalkthrough(t, w)
}

// The seed's task definition with the driver changed to tether and MySQL
// replaced by a busybox container that leaves a mark in the volume the
// first time and counts its starts there. The rest is the seed's text.
func seedTaskDefinition(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("testdata/mysql-taskdef.seed")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	for old, new := range map[string]string{
		`"driver": "rexray/ebs",`: `"driver": "tether",`,
		`"image": "mysql",`: `"image": "busybox",
            "entryPoint": ["sh", "-c"],
            "command": ["test -f /var/lib/mysql/first || cat /proc/sys/kernel/random/uuid > /var/lib/mysql/first; echo start >> /var/lib/mysql/starts; sync; trap 'exit 0' TERM; while true; do sleep 1; done"],`,
	} {
		if strings.Count(text, old) != 1 {
			t.Fatalf("the seed's task definition no longer has %s once", old)
		}
		text = strings.Replace(text, old, new, 1)
	}
	return text
}

func seedWalkthrough(t *testing.T, w *world.World) {
	ctx := ctxT(t)
	cluster := w.Options().Cluster
	// The scripts learn the stack's outputs from get-outputs.sh, as in the
	// walkthrough: the shell starts without them.
	env := w.Env()
	for k := range w.StackOutputs() {
		delete(env, k)
	}
	sh := newShell(t, env)
	sh.copySeed("get-outputs.sh", 0o755)
	sh.copySeed("drain-instance.sh", 0o755)

	// Step 2: export the stack's outputs.
	out := sh.run("./get-outputs.sh && source <(./get-outputs.sh) && echo \"#cluster is $ECSClusterName\"")
	outputs := exports(out)
	if !maps.Equal(outputs, w.StackOutputs()) || !strings.Contains(out, "#cluster is "+cluster) {
		t.Fatalf("get-outputs.sh exported %v, want %v\n%s", outputs, w.StackOutputs(), out)
	}
	maps.Copy(sh.env, outputs)

	// Step 3: the task definition (the seed's heredoc, variables expanded by
	// bash), registered with the CLI.
	sh.run("cat > mysql-taskdef.json << EOF\n" + seedTaskDefinition(t) + "EOF\n")
	taskDef := strings.TrimSpace(sh.run(`aws ecs register-task-definition --cli-input-json 'file://mysql-taskdef.json' | jq -r .taskDefinition.taskDefinitionArn`))
	if !strings.HasPrefix(taskDef, "arn:aws:ecs:us-west-2:123456789012:task-definition/mysql:") {
		t.Fatalf("TaskDefinitionArn = %q", taskDef)
	}
	sh.env["TaskDefinitionArn"] = taskDef

	// Step 4: the service.
	svcdef, err := os.ReadFile("testdata/mysql-svcdef.seed")
	if err != nil {
		t.Fatal(err)
	}
	sh.run("cat > mysql-svcdef.json << EOF\n" + string(svcdef) + "EOF\n")
	svcArn := strings.TrimSpace(sh.run(`aws ecs create-service --cli-input-json file://mysql-svcdef.json | jq -r .service.serviceArn`))
	if svcArn != "arn:aws:ecs:us-west-2:123456789012:service/"+cluster+"/mysql-svc" {
		t.Fatalf("SvcDefinitionArn = %q", svcArn)
	}
	sh.env["SvcDefinitionArn"] = svcArn

	first := waitServiceTask(t, ctx, w, "the first task RUNNING", func(ti ecssim.TaskInfo) bool { return ti.LastStatus == "RUNNING" })
	a, b := otherInstance(t, w, first.EC2InstanceID)
	cliTask(t, sh, first.Arn, "RUNNING", first.ContainerInstanceArn)
	mark := readVolumeFile(t, ctx, w, a, "first")
	if starts := readVolumeFile(t, ctx, w, a, "starts"); starts != "start" {
		t.Fatalf("starts on %s = %q, want one start", a, starts)
	}
	volumeID, state, attachedTo := cliVolume(t, sh)
	if state != "in-use" || attachedTo != a {
		t.Fatalf("rexray-vol %s is %s attached to %q, want in-use on %s", volumeID, state, attachedTo, a)
	}
	t.Logf("task %s RUNNING on %s with %s (mark %s)", first.ID, a, volumeID, mark)

	// Step 6: drain-instance.sh, verbatim.
	out = sh.run("./drain-instance.sh")
	for _, want := range []string{"Task ARNs [" + first.Arn + "]", "Container Instance ARNs [" + first.ContainerInstanceArn + "]", `"DRAINING"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("drain-instance.sh output lacks %q:\n%s", want, out)
		}
	}
	second := waitServiceTask(t, ctx, w, "the replacement RUNNING on the other instance", func(ti ecssim.TaskInfo) bool {
		return ti.Arn != first.Arn && ti.LastStatus == "RUNNING"
	})
	if second.EC2InstanceID != b {
		t.Fatalf("replacement on %s, want %s", second.EC2InstanceID, b)
	}
	cliTask(t, sh, second.Arn, "RUNNING", second.ContainerInstanceArn)
	if got := readVolumeFile(t, ctx, w, b, "first"); got != mark {
		t.Fatalf("on %s the volume's mark is %q, want %q (written on %s)", b, got, mark, a)
	}
	if starts := readVolumeFile(t, ctx, w, b, "starts"); starts != "start\nstart" {
		t.Fatalf("starts on %s = %q, want two starts on one filesystem", b, starts)
	}
	id2, state, attachedTo := cliVolume(t, sh)
	if id2 != volumeID || state != "in-use" || attachedTo != b {
		t.Fatalf("rexray-vol is %s, %s, attached to %q; want %s in-use on %s", id2, state, attachedTo, volumeID, b)
	}

	// Cleanup, as the seed does it: the service, then the volume.
	sh.run(`aws ecs update-service --cluster $ECSClusterName --service $SvcDefinitionArn --desired-count 0`)
	sh.run(`aws ecs delete-service --cluster $ECSClusterName --service $SvcDefinitionArn`)
	eventually(t, ctx, "rexray-vol detached and available once its service is gone", func() (bool, string) {
		state, att, err := w.EC2().VolumeState(volumeID)
		return err == nil && state == "available", state + "/" + att
	})
	sh.run(`rexrayVolumeID=$(aws ec2 describe-volumes --filter Name="tag:Name",Values=rexray-vol --query "Volumes[].VolumeId" --output text)
aws ec2 delete-volume --volume-id $rexrayVolumeID`)
	eventually(t, ctx, "rexray-vol deleted", func() (bool, string) {
		left := strings.TrimSpace(sh.run(`aws ec2 describe-volumes --filter Name="tag:Name",Values=rexray-vol --query "Volumes[?State!='deleted'].VolumeId" --output text`))
		return left == "", left
	})
}

// waitServiceTask waits for mysql-svc's newest live task to satisfy cond.
func waitServiceTask(t *testing.T, ctx context.Context, w *world.World, what string, cond func(ecssim.TaskInfo) bool) ecssim.TaskInfo {
	t.Helper()
	var found ecssim.TaskInfo
	if err := w.ECS().WaitFor(ctx, w.Options().Cluster, what, func(sn ecssim.Snapshot) bool {
		tasks := sn.ServiceTasks("mysql-svc")
		for i := len(tasks) - 1; i >= 0; i-- {
			if tasks[i].DesiredStatus == "RUNNING" && cond(tasks[i]) {
				found = tasks[i]
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

// otherInstance returns the instance holding the task and the other one.
func otherInstance(t *testing.T, w *world.World, holder string) (a, b string) {
	t.Helper()
	for _, in := range w.Instances() {
		if in.ID != holder {
			b = in.ID
		}
	}
	if b == "" {
		t.Fatalf("no instance besides %s", holder)
	}
	return holder, b
}

// cliTask checks a task with describe-tasks.
func cliTask(t *testing.T, sh *shell, arn, status, containerInstance string) {
	t.Helper()
	got := strings.Fields(sh.run(`aws ecs describe-tasks --cluster $ECSClusterName --tasks ` + arn + ` --query 'tasks[0].[lastStatus,containerInstanceArn]' --output text`))
	if len(got) != 2 || got[0] != status || got[1] != containerInstance {
		t.Fatalf("describe-tasks %s: %v, want %s on %s", arn, got, status, containerInstance)
	}
	if listed := sh.run(`aws ecs list-tasks --cluster $ECSClusterName --query taskArns --output text`); !strings.Contains(listed, arn) {
		t.Fatalf("list-tasks does not list %s: %s", arn, listed)
	}
}

// cliVolume describes the volume tagged Name=rexray-vol.
func cliVolume(t *testing.T, sh *shell) (id, state, attachedTo string) {
	t.Helper()
	got := strings.Fields(sh.run(`aws ec2 describe-volumes --filters Name=tag:Name,Values=rexray-vol --query 'Volumes[].[VolumeId,State,Attachments[0].InstanceId]' --output text`))
	if len(got) != 3 {
		t.Fatalf("describe-volumes tag:Name=rexray-vol: %v, want one volume", got)
	}
	if got[2] == "None" {
		got[2] = ""
	}
	return got[0], got[1], got[2]
}

// readVolumeFile reads a file of the mounted rexray-vol on a real host.
func readVolumeFile(t *testing.T, ctx context.Context, w *world.World, instance, name string) string {
	t.Helper()
	in, err := w.Instance(instance)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("/var/lib/tether/volumes/rexray-vol", name)
	var res string
	eventually(t, ctx, path+" on "+instance, func() (bool, string) {
		r, err := in.Host.RunShellScript(ctx, "cat "+path, time.Minute)
		if err != nil || r.ExitCode != 0 {
			return false, r.Stderr
		}
		res = strings.TrimSpace(r.Stdout)
		return true, ""
	})
	return res
}
