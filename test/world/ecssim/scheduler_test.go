package ecssim_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/fakehost"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// handoff stands in for tether's reconciler in these tests: it keeps the
// shared volume "rexray-vol" (one EBS volume) attached and mounted where the
// service's live task is, moving it only once the previous holder's task
// has stopped (or its instance is gone).
type handoff struct {
	w        *world
	volumeID string
	holder   string // EC2 instance id the volume is attached to
	// formatted: a mount reported the filesystem made; until then the
	// volume is one this handoff created empty, and mount gets the grant
	// (as the reconciler gives it).
	formatted bool
	errs      chan error
}

func startHandoff(t *testing.T, w *world) *handoff {
	t.Helper()
	h := &handoff{w: w, volumeID: "vol-0123456789abcdef0", errs: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := h.run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			h.errs <- err
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		select {
		case err := <-h.errs:
			t.Errorf("handoff: %v", err)
		default:
		}
	})
	return h
}

// fingerprint changes whenever a task is added or changes.
func fingerprint(sn ecssim.Snapshot) string {
	var sum int64
	for _, t := range sn.Tasks {
		sum += t.Version
	}
	return fmt.Sprint(len(sn.Tasks), ":", sum)
}

func (h *handoff) run(ctx context.Context) error {
	last := ""
	for {
		sn := h.w.srv.Snapshot(testCluster)
		if err := h.step(ctx, sn); err != nil {
			return err
		}
		last = fingerprint(sn)
		if err := h.w.srv.WaitFor(ctx, testCluster, "a change", func(s ecssim.Snapshot) bool { return fingerprint(s) != last }); err != nil {
			return err
		}
	}
}

func (h *handoff) step(ctx context.Context, sn ecssim.Snapshot) error {
	target, ok := liveServiceTask(sn, "mysql-svc")
	if !ok || target.LastStatus == "STOPPED" || target.EC2InstanceID == h.holder {
		return nil
	}
	if h.holder != "" {
		for _, t := range sn.Tasks {
			if t.EC2InstanceID == h.holder && t.LastStatus != "STOPPED" {
				return nil // the old task still holds it
			}
		}
		old := h.w.hosts[h.holder]
		res, err := old.RunShellScript(ctx, "tether-agent unmount --volume-id "+h.volumeID+" --name rexray-vol --json", time.Minute)
		switch {
		case errors.Is(err, worldapi.ErrHostDown):
		case err != nil:
			return err
		case res.ExitCode != 0:
			return fmt.Errorf("unmount on %s: exit %d: %s", h.holder, res.ExitCode, res.Stderr)
		default:
			if err := old.DetachDevice(ctx, h.volumeID, false); err != nil {
				return err
			}
		}
	}
	host := h.w.hosts[target.EC2InstanceID]
	if err := host.AttachDevice(ctx, worldapi.Attachment{VolumeID: h.volumeID, DeviceName: "/dev/xvdf"}); err != nil {
		return err
	}
	h.holder = target.EC2InstanceID
	script := "tether-agent mount --volume-id '" + h.volumeID + "' --name 'rexray-vol' --fstype ext4 --json"
	if !h.formatted {
		script += " --format-if-blank"
	}
	res, err := host.RunShellScript(ctx, script, time.Minute)
	if err != nil || res.ExitCode != 0 {
		return fmt.Errorf("mount on %s: %v exit %d: %s", h.holder, err, res.ExitCode, res.Stderr)
	}
	out, _ := agentproto.ParseOutput(res.Stdout)
	if m, ok := out.Mount(); ok && m.Formatted {
		h.formatted = true
	}
	return nil
}

func statuses(ds []ecssim.TaskDetail) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.LastStatus+"/"+d.DesiredStatus)
	}
	return out
}

func TestSeedDrainStopsOldBeforePlacingNew(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	w.cluster(t)
	ctx := ctxT(t)
	w.addHost(t, fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a"})
	w.addHost(t, fakehost.Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", AZ: "us-west-2a"})
	w.addHost(t, fakehost.Options{InstanceID: "i-0ccccccccccccccc3", AZ: "us-west-2b"})
	startHandoff(t, w)
	w.seedService(t, w.registerSeedTaskDef(t, "us-west-2a"))

	first := w.waitLive(ctx, t, "mysql-svc", "the first mysql task RUNNING", isRunning)
	if first.AZ != "us-west-2a" || !strings.HasPrefix(first.StartedBy, "ecs-svc/") || first.Group != "service:mysql-svc" {
		t.Fatalf("first task: %+v", first)
	}
	if _, err := w.ecs.UpdateContainerInstancesState(ctx, &ecs.UpdateContainerInstancesStateInput{
		Cluster: aws.String(testCluster), ContainerInstances: []string{first.ContainerInstanceArn}, Status: types.ContainerInstanceStatusDraining,
	}); err != nil {
		t.Fatal(err)
	}
	second := w.waitLive(ctx, t, "mysql-svc", "the replacement RUNNING", replaces(first))
	if second.EC2InstanceID == first.EC2InstanceID || second.AZ != "us-west-2a" {
		t.Fatalf("replacement on %s (%s), want the other us-west-2a instance", second.EC2InstanceID, second.AZ)
	}
	old, _ := w.srv.Snapshot(testCluster).Task(first.Arn)
	if old.StopCode != ecssim.StopServiceSchedulerInitiated || !strings.Contains(old.StoppedReason, "DRAINING") {
		t.Fatalf("drained task: %s %q", old.StopCode, old.StoppedReason)
	}

	// max 100 / min 0: the old task is STOPPED before the new one exists.
	evs := w.events.list()
	stoppedAt, placedAt := -1, -1
	for i, ev := range evs {
		if ev.DetailType != ecssim.DetailTypeTask {
			continue
		}
		if ev.Resources[0] == first.Arn && strings.Contains(string(ev.Detail), `"lastStatus":"STOPPED"`) && stoppedAt < 0 {
			stoppedAt = i
		}
		if ev.Resources[0] == second.Arn && placedAt < 0 {
			placedAt = i
		}
	}
	if stoppedAt < 0 || placedAt < 0 || stoppedAt > placedAt {
		t.Fatalf("old STOPPED at event %d, new first seen at %d: want old first", stoppedAt, placedAt)
	}

	want := []string{
		"PROVISIONING/RUNNING", "PENDING/RUNNING", "ACTIVATING/RUNNING", "RUNNING/RUNNING", "RUNNING/STOPPED",
		"DEACTIVATING/STOPPED", "STOPPING/STOPPED", "STOPPING/STOPPED", "DEPROVISIONING/STOPPED", "STOPPED/STOPPED",
	}
	details := w.events.taskEvents(t, first.Arn)
	got := statuses(details)
	t.Logf("drained task's events: %v", got)
	if !subsequence(want, got) {
		t.Fatalf("lifecycle of the drained task: %v, want in order %v", got, want)
	}
	for i, d := range details {
		if d.Version != int64(i+1) {
			t.Fatalf("event %d has version %d: versions must rise by one per change", i, d.Version)
		}
		if d.ContainerInstanceArn != first.ContainerInstanceArn || d.ClusterArn != "arn:aws:ecs:us-west-2:123456789012:cluster/"+testCluster {
			t.Fatalf("event detail ARNs: %+v", d)
		}
	}
	last := details[len(details)-1]
	if last.StopCode != "ServiceSchedulerInitiated" || last.StoppedAt == "" || last.Containers[0].ExitCode == nil || len(last.Attachments) != 1 || last.Attachments[0].Type != "eni" {
		t.Fatalf("STOPPED event: %+v", last)
	}

	disk, _ := w.disks.Volume("vol-0123456789abcdef0")
	if disk.Formats != 1 || !slices.Equal(disk.Writes, []string{first.Arn, second.Arn}) || disk.Unclean != 0 {
		t.Fatalf("the volume's data did not follow the task: %+v", disk)
	}
}

// subsequence reports whether want appears in got in order.
func subsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestPlacementByAZCapabilityAndResources(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	w.cluster(t)
	ctx := ctxT(t)
	a := w.addHost(t, fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a"})
	b := w.addHost(t, fakehost.Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", AZ: "us-west-2b"})
	c := w.addHost(t, fakehost.Options{InstanceID: "i-0ccccccccccccccc3", AZ: "us-west-2a", NoPlugin: true})
	w.registerSeedTaskDef(t, "us-west-2a")
	network := &types.NetworkConfiguration{AwsvpcConfiguration: &types.AwsVpcConfiguration{Subnets: []string{"subnet-0a1b2c3d"}}}

	// 2048 CPU units on A fit four 512-unit tasks; B is in the wrong AZ and
	// C lacks the tether plugin.
	out, err := w.ecs.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String(testCluster), TaskDefinition: aws.String("mysql"), Count: aws.Int32(5), NetworkConfiguration: network})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Tasks) != 4 {
		t.Fatalf("placed %d tasks, want 4", len(out.Tasks))
	}
	for _, task := range out.Tasks {
		if *task.ContainerInstanceArn != a {
			t.Fatalf("task placed on %s, want only %s", *task.ContainerInstanceArn, a)
		}
	}
	reasons := map[string]string{}
	for _, f := range out.Failures {
		reasons[*f.Arn] = *f.Reason
	}
	if reasons[a] != "RESOURCE:CPU" || reasons[b] != "MemberOf placement constraint unsatisfied." || reasons[c] != "ATTRIBUTE" {
		t.Fatalf("failures: %v", reasons)
	}

	// Run-time constraints: in [...], != and distinctInstance.
	w.plainTaskDef(t, "plain")
	run := func(constraints ...types.PlacementConstraint) *ecs.RunTaskOutput {
		t.Helper()
		out, err := w.ecs.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String(testCluster), TaskDefinition: aws.String("plain"), Count: aws.Int32(3), PlacementConstraints: constraints, Group: aws.String(fmt.Sprint(len(constraints)))})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	in := run(types.PlacementConstraint{Type: types.PlacementConstraintTypeMemberOf, Expression: aws.String("attribute:ecs.availability-zone in [us-west-2b, us-west-2c]")})
	for _, task := range in.Tasks {
		if *task.ContainerInstanceArn != b {
			t.Fatalf("'in' placed a task on %s", *task.ContainerInstanceArn)
		}
	}
	_, err = w.ecs.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String(testCluster), TaskDefinition: aws.String("plain"), PlacementConstraints: []types.PlacementConstraint{
		{Type: types.PlacementConstraintTypeMemberOf, Expression: aws.String("attribute:ecs.availability-zone != us-west-2b and registeredAt exists")},
	}})
	if apiCode(err) != "InvalidParameterException" || !strings.Contains(err.Error(), "registeredAt") {
		t.Fatalf("an expression the world does not implement must be refused, got %v", err)
	}
	distinct := run(
		types.PlacementConstraint{Type: types.PlacementConstraintTypeDistinctInstance},
		types.PlacementConstraint{Type: types.PlacementConstraintTypeMemberOf, Expression: aws.String("(attribute:ecs.availability-zone==us-west-2a or attribute:ecs.availability-zone==us-west-2b) and agentConnected == true")},
	)
	// A is full of mysql tasks: B and C take one each, the third finds none.
	if len(distinct.Tasks) != 2 || len(distinct.Failures) == 0 {
		t.Fatalf("distinctInstance over B and C: %d tasks, failures %+v", len(distinct.Tasks), distinct.Failures)
	}
	if *distinct.Tasks[0].ContainerInstanceArn == *distinct.Tasks[1].ContainerInstanceArn {
		t.Fatal("distinctInstance placed two tasks on one instance")
	}
}

func TestInstanceDeathStopsTasksAndReplaces(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	w.cluster(t)
	ctx := ctxT(t)
	w.addHost(t, fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a"})
	w.addHost(t, fakehost.Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", AZ: "us-west-2a"})
	startHandoff(t, w)
	w.seedService(t, w.registerSeedTaskDef(t, "us-west-2a"))
	first := w.waitLive(ctx, t, "mysql-svc", "mysql RUNNING", isRunning)
	if err := w.hosts[first.EC2InstanceID].Kill(); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.KillInstance(first.EC2InstanceID); err != nil {
		t.Fatal(err)
	}
	dead, _ := w.srv.Snapshot(testCluster).Task(first.Arn)
	if dead.LastStatus != "STOPPED" || dead.StopCode != ecssim.StopTerminationNotice || !strings.Contains(dead.StoppedReason, first.EC2InstanceID) {
		t.Fatalf("task on the dead instance: %+v", dead)
	}
	var inst ecssim.InstanceInfo
	for _, in := range w.srv.Snapshot(testCluster).Instances {
		if in.EC2InstanceID == first.EC2InstanceID {
			inst = in
		}
	}
	if inst.AgentConnected || inst.Status != "INACTIVE" {
		t.Fatalf("dead container instance: %+v", inst)
	}
	w.waitLive(ctx, t, "mysql-svc", "the replacement RUNNING", func(ti ecssim.TaskInfo) bool {
		return replaces(first)(ti) && ti.EC2InstanceID != first.EC2InstanceID
	})
	disk, _ := w.disks.Volume("vol-0123456789abcdef0")
	if disk.Unclean != 1 || disk.Formats != 1 || len(disk.Writes) != 2 {
		t.Fatalf("volume after the instance died under it: %+v", disk)
	}
	var sawInactive bool
	for _, ev := range w.events.list() {
		if ev.DetailType == ecssim.DetailTypeInstance && strings.Contains(string(ev.Detail), `"status":"INACTIVE"`) && strings.Contains(string(ev.Detail), `"agentConnected":false`) {
			sawInactive = true
		}
	}
	if !sawInactive {
		t.Fatal("no Container Instance State Change for the dead instance")
	}
}

func TestVolumeThatNeverMountsFailsTheTaskAndTheServiceRetries(t *testing.T) {
	w := newWorld(t, ecssim.Timing{RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond})
	w.cluster(t)
	ctx := ctxT(t)
	w.addHost(t, fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a", PluginWait: 20 * time.Millisecond})
	w.seedService(t, w.registerSeedTaskDef(t, "us-west-2a")) // nobody mounts the volume
	if err := w.srv.WaitFor(ctx, testCluster, "three failed starts", func(sn ecssim.Snapshot) bool {
		n := 0
		for _, task := range sn.ServiceTasks("mysql-svc") {
			if task.LastStatus == "STOPPED" {
				n++
			}
		}
		return n >= 3
	}); err != nil {
		t.Fatal(err)
	}
	sn := w.srv.Snapshot(testCluster)
	for _, task := range sn.ServiceTasks("mysql-svc") {
		if task.LastStatus != "STOPPED" {
			continue
		}
		if task.StopCode != ecssim.StopTaskFailedToStart || !strings.Contains(task.StoppedReason, "VolumeDriver.Mount: tether: volume rexray-vol not mounted on this host after 20ms") {
			t.Fatalf("failed task: %s %q", task.StopCode, task.StoppedReason)
		}
		if task.Containers[0].Reason != task.StoppedReason {
			t.Fatalf("container reason %q", task.Containers[0].Reason)
		}
	}
	if ev := sn.Services[0].Events; len(ev) < 3 || !strings.Contains(ev[len(ev)-1], "has started 1 tasks") {
		t.Fatalf("service events: %v", ev)
	}
}

func TestDrainWithMinimum100StartsReplacementFirst(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	w.cluster(t)
	ctx := ctxT(t)
	w.addHost(t, fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a"})
	w.addHost(t, fakehost.Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", AZ: "us-west-2b"})
	def := w.plainTaskDef(t, "web")
	if _, err := w.ecs.CreateService(ctx, &ecs.CreateServiceInput{Cluster: aws.String(testCluster), ServiceName: aws.String("web"), TaskDefinition: aws.String(def), DesiredCount: aws.Int32(1),
		DeploymentConfiguration: &types.DeploymentConfiguration{MinimumHealthyPercent: aws.Int32(100), MaximumPercent: aws.Int32(200)}}); err != nil {
		t.Fatal(err)
	}
	first := w.waitLive(ctx, t, "web", "web RUNNING", isRunning)
	if _, err := w.ecs.UpdateContainerInstancesState(ctx, &ecs.UpdateContainerInstancesStateInput{Cluster: aws.String(testCluster), ContainerInstances: []string{first.ContainerInstanceArn}, Status: types.ContainerInstanceStatusDraining}); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.WaitFor(ctx, testCluster, "old task STOPPED", func(sn ecssim.Snapshot) bool {
		old, _ := sn.Task(first.Arn)
		return old.LastStatus == "STOPPED"
	}); err != nil {
		t.Fatal(err)
	}
	// With min 100 the replacement was RUNNING before the old task was told to stop.
	var secondRunning, oldStopRequested = -1, -1
	for i, ev := range w.events.list() {
		d := string(ev.Detail)
		if ev.DetailType != ecssim.DetailTypeTask {
			continue
		}
		if ev.Resources[0] != first.Arn && strings.Contains(d, `"lastStatus":"RUNNING"`) && secondRunning < 0 {
			secondRunning = i
		}
		if ev.Resources[0] == first.Arn && strings.Contains(d, `"desiredStatus":"STOPPED"`) && oldStopRequested < 0 {
			oldStopRequested = i
		}
	}
	if secondRunning < 0 || oldStopRequested < secondRunning {
		t.Fatalf("replacement RUNNING at event %d, old stop requested at %d: want the replacement first", secondRunning, oldStopRequested)
	}
}
