package ops

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

var (
	now   = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	key   = reconcile.Key{Cluster: "prod", Volume: "rexray-vol"}
	tdARN = "arn:aws:ecs:us-east-1:111122223333:task-definition/mysql:3"
	ciA   = "arn:aws:ecs:us-east-1:111122223333:container-instance/prod/aaaa"
	ciB   = "arn:aws:ecs:us-east-1:111122223333:container-instance/prod/bbbb"
	old   = "arn:aws:ecs:us-east-1:111122223333:task/prod/0123456789abcdef0123456789abcdef"
	fresh = "arn:aws:ecs:us-east-1:111122223333:task/prod/fedcba9876543210fedcba9876543210"
)

// handoff is a volume attached to i-a whose task there stopped, and a task
// of the same service waiting on i-b.
func handoff() *facts {
	v := cloud.Volume{ID: "vol-0abc", AZ: "us-east-1a", State: cloud.VolumeInUse, SizeGiB: 5, Type: "gp2", CreateTime: now.Add(-time.Hour),
		Tags:        map[string]string{cloud.TagCluster: "prod", cloud.TagVolume: "rexray-vol", cloud.TagScope: cloud.ScopeShared},
		Attachments: []cloud.Attachment{{InstanceID: "i-a", Device: "/dev/xvdf", State: cloud.AttachAttached, AttachTime: now.Add(-time.Hour)}}}
	return &facts{key: key, now: now, volume: &v,
		tasks: []cloud.Task{
			{ARN: old, TaskDefinitionARN: tdARN, ContainerInstanceARN: ciA, LastStatus: "STOPPED", DesiredStatus: "STOPPED",
				CreatedAt: now.Add(-time.Hour), StartedAt: now.Add(-time.Hour), StoppedAt: now.Add(-time.Minute)},
			{ARN: fresh, TaskDefinitionARN: tdARN, ContainerInstanceARN: ciB, LastStatus: "PENDING", DesiredStatus: "RUNNING", CreatedAt: now.Add(-time.Minute)},
		},
		instances: map[string]instance{"i-a": {ID: "i-a", State: "running", AZ: "us-east-1a", ECSStatus: "DRAINING", SSM: "Online"},
			"i-b": {ID: "i-b", State: "running", AZ: "us-east-1a", ECSStatus: "ACTIVE", SSM: "Online"}},
		ec2Of: map[string]string{ciA: "i-a", ciB: "i-b"},
	}
}

func unmountCmd(status cloud.CommandStatus, detail, output string) *cloud.Command {
	return &cloud.Command{ID: "cmd-unmount", Document: "tether-tether-unmount", InstanceID: "i-a", Status: status, Detail: detail,
		Requested: now.Add(-40 * time.Second), Output: output, ExitCode: 3}
}

func steps(x Explanation) string {
	var b strings.Builder
	for _, s := range x.Steps {
		b.WriteString(s.State + " " + s.What + ": " + s.Detail + "\n")
	}
	return b.String()
}

func TestExplainSaysWhatAHandoffWaitsFor(t *testing.T) {
	for _, c := range []struct {
		name    string
		edit    func(*facts)
		waiting string // WaitingFor's prefix
		step    string // a line of the steps
		advice  string
	}{
		{"unmount running", func(f *facts) { f.unmount = unmountCmd(cloud.CommandPending, "InProgress", "") },
			"the unmount on i-a (command cmd-unmount running for 40s)", "now unmount on i-a: command cmd-unmount running for 40s", ""},
		{"unmount not picked up", func(f *facts) { f.unmount = unmountCmd(cloud.CommandPending, "Pending", "") },
			"the unmount on i-a (command cmd-unmount waiting 40s for the instance's SSM agent to pick it up)", "next detach from i-a", ""},
		{"a container holds it", func(f *facts) {
			f.unmount = unmountCmd(cloud.CommandFailed, "Failed", `{"error":{"exitCode":3,"class":"busy","message":"volume rexray-vol is held","holders":[{"kind":"container","name":"backup","state":"running"}]}}`)
		}, "containers on i-a to let go of the volume (container backup (running))", "failed unmount on i-a: command cmd-unmount: exit 3 (busy): volume rexray-vol is held", "a force is refused"},
		{"SSM agent silent", func(f *facts) {
			in := f.instances["i-a"]
			in.SSM = "ConnectionLost"
			f.instances["i-a"] = in
		}, "the SSM agent on i-a (SSM says ConnectionLost); tether never force-detaches a running instance", "now unmount on i-a: SSM cannot run it there", "tether release --force"},
		{"unmounted, detaching", func(f *facts) {
			f.unmount = unmountCmd(cloud.CommandSucceeded, "Success", `{"volumeId":"vol-0abc","name":"rexray-vol","released":true,"generation":3,"agentVersion":"v0.4.0","protocol":2}`)
			f.unmount.Ended = now.Add(-30 * time.Second)
			f.volume.Attachments[0].State = cloud.AttachDetaching
		}, "EC2 to detach vol-0abc from i-a (detaching (unmounted 30s ago))", "done unmount on i-a: command cmd-unmount succeeded at 2026-12-06T11:59:30Z (tether-agent v0.4.0, protocol 2)", ""},
		{"the old task still stopping", func(f *facts) {
			f.tasks[0].LastStatus, f.tasks[0].StoppedAt = "RUNNING", time.Time{}
		}, "task 0123456789abcdef0123456789abcdef on i-a to stop (last status RUNNING)", "next unmount on i-a: ", ""},
		{"an agent of another protocol", func(f *facts) {
			f.unmount = unmountCmd(cloud.CommandFailed, "Failed", `{"error":{"exitCode":2,"class":"bad-input","message":"flag provided but not defined: -attachment","agentVersion":"v0.9.0","protocol":3}}`)
		}, "the host i-a to let go", "failed unmount on i-a: command cmd-unmount: exit 2 (bad-input): flag provided but not defined: -attachment [tether-agent v0.9.0 speaks protocol 3, these functions 2]", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := handoff()
			c.edit(f)
			x := explain(f)
			if !strings.HasPrefix(x.WaitingFor, c.waiting) {
				t.Errorf("waiting for %q\nwant it to start with %q", x.WaitingFor, c.waiting)
			}
			if !strings.Contains(steps(x), c.step) {
				t.Errorf("steps:\n%swant a line with %q", steps(x), c.step)
			}
			if !strings.Contains(x.Advice, c.advice) {
				t.Errorf("advice %q, want %q in it", x.Advice, c.advice)
			}
			if !strings.Contains(steps(x), "next task fedcba9876543210fedcba9876543210 starts") {
				t.Errorf("steps do not end with the waiting task's start:\n%s", steps(x))
			}
		})
	}
}

func TestExplainOfAVolumeServedAndOfNoVolume(t *testing.T) {
	// Attached to i-b, mounted, the task there started: nothing waits.
	f := handoff()
	f.tasks = f.tasks[1:]
	f.tasks[0].LastStatus, f.tasks[0].StartedAt = "RUNNING", now.Add(-10*time.Second)
	f.volume.Attachments[0].InstanceID = "i-b"
	f.mount = &cloud.Command{ID: "cmd-mount", Status: cloud.CommandSucceeded, Requested: now.Add(-20 * time.Second), Ended: now.Add(-15 * time.Second),
		Output: `{"volumeId":"vol-0abc","name":"rexray-vol","generation":4,"agentVersion":"v0.4.0","protocol":2}`}
	x := explain(f)
	if x.WaitingFor != "" || !strings.Contains(steps(x), "done mount on i-b") || !strings.Contains(steps(x), "done task fedcba9876543210fedcba9876543210 runs") {
		t.Fatalf("in use: waiting %q\n%s", x.WaitingFor, steps(x))
	}
	// Attaching there, the mount sent with it.
	f.tasks[0].LastStatus, f.tasks[0].StartedAt = "PENDING", time.Time{}
	f.volume.Attachments[0].State, f.volume.Attachments[0].AttachTime = cloud.AttachAttaching, now.Add(-3*time.Second)
	f.mount = &cloud.Command{ID: "cmd-mount", Status: cloud.CommandPending, Detail: "InProgress", Requested: now.Add(-3 * time.Second)}
	if x := explain(f); !strings.HasPrefix(x.WaitingFor, "EC2 to attach vol-0abc to i-b (attaching for 3s)") {
		t.Fatalf("attaching: %q", x.WaitingFor)
	}
	// Mounted, the task not started yet: ECS starts it.
	f.volume.Attachments[0].State = cloud.AttachAttached
	f.mount.Status = cloud.CommandSucceeded
	if x := explain(f); x.WaitingFor != "ECS to start task fedcba9876543210fedcba9876543210 (its volume is mounted on i-b)" {
		t.Fatalf("mounted: %q", x.WaitingFor)
	}

	// No volume yet, and one of the name that tether does not own.
	f = handoff()
	f.volume = nil
	f.unowned = []cloud.Volume{{ID: "vol-0rex", AZ: "us-east-1a"}}
	f.tasks[1].LastStatus, f.tasks[1].DesiredStatus, f.tasks[1].StoppedReason = "STOPPED", "STOPPED", "tether: EBS volume vol-0rex (us-east-1a) is named rexray-vol but is not tether's"
	x = explain(f)
	if x.Advice != "claim it: tether adopt vol-0rex --name rexray-vol --cluster prod" || !strings.Contains(x.WaitingFor, "an operator to adopt vol-0rex") ||
		!strings.Contains(steps(x), "failed task fedcba9876543210fedcba9876543210 stopped by tether: EBS volume vol-0rex") {
		t.Fatalf("unowned: %+v\n%s", x, steps(x))
	}
	// No volume yet, a task waits for it: tether creates it.
	f = handoff()
	f.volume = nil
	if x := explain(f); !strings.HasPrefix(x.WaitingFor, "tether to create rexray-vol for task fedcba9876543210fedcba9876543210 on i-b") {
		t.Fatalf("to be created: %q", x.WaitingFor)
	}
}

// Flags come before, between or after the arguments, as people type them;
// usage errors exit 2 and name the problem.
func TestCommandLine(t *testing.T) {
	var co common
	c := &cmd{io: IO{Getenv: func(string) string { return "" }}}
	fs := c.verbFlags("release", &co)
	force := fs.Bool("force", false, "")
	pos, err := parse(fs, []string{"--cluster", "prod", "rexray-vol", "--force", "--json"})
	if err != nil || len(pos) != 1 || pos[0] != "rexray-vol" || !*force || !c.json || co.cluster != "prod" || co.stack != DefaultStack {
		t.Fatalf("parse: %v %v force=%v json=%v %+v", pos, err, *force, c.json, co)
	}
	if mount, unmount := co.documents(); mount != "tether-tether-mount" || unmount != "tether-tether-unmount" {
		t.Fatalf("documents %s %s", mount, unmount)
	}
	for _, args := range [][]string{
		nil, {"frobnicate"}, {"volumes", "extra"}, {"explain"}, {"release"}, {"release", "a", "b"},
		{"adopt", "vol-0123456789abcdef0"}, {"adopt", "vol-0123456789abcdef0", "--name", "x"}, // no cluster
		{"adopt", "vol-bad", "--name", "x", "--cluster", "c"}, {"adopt", "vol-0123456789abcdef0", "--name", "a;b", "--cluster", "c"},
		{"release", "x", "--wait", "2h"}, {"volumes", "--history", "0s"}, {"volumes", "--cluster", "a b"},
	} {
		var stderr bytes.Buffer
		code := Run(context.Background(), Deps{}, IO{Stdout: &bytes.Buffer{}, Stderr: &stderr, Getenv: func(string) string { return "" }}, args)
		if code != ExitUsage || stderr.Len() == 0 {
			t.Errorf("tether %q: exit %d (%s), want %d with a message", args, code, stderr.String(), ExitUsage)
		}
	}
	var stdout bytes.Buffer
	if code := Run(context.Background(), Deps{}, IO{Stdout: &stdout, Stderr: &bytes.Buffer{}}, []string{"help"}); code != ExitOK || !strings.Contains(stdout.String(), "Exit codes") {
		t.Fatalf("help: exit %d\n%s", code, stdout.String())
	}
}

// A volume whose waiting task was placed in another AZ: explain says the
// task is stopped and how to enable a move, or, with a move under way, its
// snapshot's progress and the steps that follow.
func TestExplainShowsAnAZMove(t *testing.T) {
	moved := func() *facts {
		f := handoff()
		f.volume.Attachments = nil
		f.volume.State = cloud.VolumeAvailable
		in := f.instances["i-b"]
		in.AZ = "us-east-1b"
		f.instances["i-b"] = in
		return f
	}
	x := explain(moved())
	if !strings.Contains(steps(x), "failed attach to i-b") || !strings.Contains(x.Advice, "azmove=snapshot") {
		t.Fatalf("no move under way: steps\n%sadvice %q; want the attach failing and the driverOpt named", steps(x), x.Advice)
	}
	f := moved()
	f.moves = []cloud.EBSSnapshot{{ID: "snap-0abc", VolumeID: "vol-0abc", State: cloud.SnapshotPending, Progress: "45%",
		StartTime: now.Add(-time.Minute), Tags: map[string]string{cloud.TagMoveTo: "us-east-1b"}}}
	x = explain(f)
	if !strings.Contains(steps(x), "now snapshot for the move to us-east-1b: snap-0abc pending 45%") || !strings.HasPrefix(x.WaitingFor, "EBS to complete snapshot snap-0abc") ||
		!strings.Contains(steps(x), "next create the volume in us-east-1b from snap-0abc") {
		t.Fatalf("move under way: steps\n%swaiting %q", steps(x), x.WaitingFor)
	}
	f.moves[0].State = cloud.SnapshotCompleted
	if x = explain(f); !strings.Contains(steps(x), "done snapshot for the move to us-east-1b: snap-0abc") || !strings.Contains(steps(x), "now create the volume in us-east-1b") {
		t.Fatalf("snapshot complete: steps\n%s", steps(x))
	}
}
