package reconcile_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// A container that runs as a numeric non-root user gets the new
// filesystem: the mount with the format grant carries its user as
// FormatOwner; every later mount (the task moved to another instance)
// carries neither.
func TestFormatOwnerGoesOnlyWithTheGrant(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	td := "arn:aws:ecs:us-east-1:111122223333:task-definition/app:1"
	h.w.AddTaskDef(cloudtest.TaskDef{ARN: td,
		Volumes: []cloudtest.DockerVolume{{Name: "appdata", Driver: "tether", Scope: "shared", Autoprovision: true}},
		Containers: []cloudtest.Container{
			{Name: "sidecar", User: "root"}, // mounts nothing: not asked
			{Name: "app", User: "1000:1000", Mounts: []string{"appdata"}},
		}})
	t1 := h.w.PlaceTask(td, "i-a")
	h.settle(300)
	h.wantRunning(t1)
	h.w.StopTask(t1, "moved")
	t2 := h.w.PlaceTask(td, "i-b")
	h.settle(300)
	h.wantRunning(t2)
	mounts := h.commandsOf(mountDoc)
	if len(mounts) < 2 {
		t.Fatalf("mounts %+v: want one per instance", mounts)
	}
	for i, c := range mounts {
		grant := c.Params[agentproto.ParamFormatIfBlank] == "true"
		owner, has := c.Params[agentproto.ParamFormatOwner]
		switch {
		case i == 0 && (!grant || owner != "1000:1000"):
			t.Errorf("first mount %v: want the grant and FormatOwner 1000:1000", c.Params)
		case i > 0 && (grant || has):
			t.Errorf("mount %d on %s %v: want neither the grant nor FormatOwner", i, c.Instance, c.Params)
		}
	}
}

// Users tether cannot resolve, or that disagree, give no owner, and the
// log says why; root and the image's user give none, silently.
func TestFormatOwnerNotGuessed(t *testing.T) {
	cases := []struct {
		name       string
		containers []cloudtest.Container
		owner      string // FormatOwner sent with the grant
		log        string // in the reconciler's log
	}{
		{"uid", []cloudtest.Container{{Name: "app", User: "1000", Mounts: []string{"v"}}}, "1000", ""},
		{"name", []cloudtest.Container{{Name: "app", User: "mysql", Mounts: []string{"v"}}}, "", `container user \"mysql\" names a user or group`},
		{"uid:group", []cloudtest.Container{{Name: "app", User: "1000:staff", Mounts: []string{"v"}}}, "", "not numeric ids"},
		{"user:gid", []cloudtest.Container{{Name: "app", User: "app:1000", Mounts: []string{"v"}}}, "", "not numeric ids"},
		{"out of range", []cloudtest.Container{{Name: "app", User: "4294967295", Mounts: []string{"v"}}}, "", "out of range"},
		{"different users", []cloudtest.Container{{Name: "a", User: "1000", Mounts: []string{"v"}}, {Name: "b", User: "2000", Mounts: []string{"v"}}},
			"", "run as different users"},
		{"same user twice", []cloudtest.Container{{Name: "a", User: "1000:50", Mounts: []string{"v"}}, {Name: "b", User: "1000:50", Mounts: []string{"v"}}},
			"1000:50", ""},
		{"root", []cloudtest.Container{{Name: "app", User: "0:0", Mounts: []string{"v"}}}, "", ""},
		{"image's user", []cloudtest.Container{{Name: "app", Mounts: []string{"v"}}}, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.w.AddInstance("i-a", "us-east-1a")
			td := "arn:aws:ecs:us-east-1:111122223333:task-definition/app:1"
			h.w.AddTaskDef(cloudtest.TaskDef{ARN: td, Containers: c.containers,
				Volumes: []cloudtest.DockerVolume{{Name: "v", Driver: "tether", Scope: "shared", Autoprovision: true}}})
			task := h.w.PlaceTask(td, "i-a")
			h.settle(300)
			h.wantRunning(task)
			mounts := h.commandsOf(mountDoc)
			if len(mounts) == 0 || mounts[0].Params[agentproto.ParamFormatIfBlank] != "true" {
				t.Fatalf("mounts %+v: want a first one with the grant", mounts)
			}
			if got := mounts[0].Params[agentproto.ParamFormatOwner]; got != c.owner {
				t.Errorf("FormatOwner %q, want %q", got, c.owner)
			}
			logged := strings.Contains(h.logs.String(), "is not given to the container's user")
			if c.log != "" && (!logged || !strings.Contains(h.logs.String(), c.log)) {
				t.Errorf("the log does not say why (%q):\n%s", c.log, tail(h.logs.String(), 20))
			}
			if c.log == "" && logged {
				t.Errorf("the log warns of an owner not given, want silence:\n%s", tail(h.logs.String(), 20))
			}
		})
	}
}

// An agent older than --format-owner exits 2 on it (Go's flag package):
// the mount is sent again without it, the task runs, and the log says the
// agent should be upgraded. Its root stays root's.
func TestOldAgentMountsWithoutFormatOwner(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.SetOldAgent("i-a", true)
	td := "arn:aws:ecs:us-east-1:111122223333:task-definition/app:1"
	h.w.AddTaskDef(cloudtest.TaskDef{ARN: td,
		Volumes:    []cloudtest.DockerVolume{{Name: "appdata", Driver: "tether", Scope: "shared", Autoprovision: true}},
		Containers: []cloudtest.Container{{Name: "app", User: "1000:1000", Mounts: []string{"appdata"}}}})
	task := h.w.PlaceTask(td, "i-a")
	h.settle(300)
	h.wantRunning(task)
	mounts := h.commandsOf(mountDoc)
	if len(mounts) != 2 {
		t.Fatalf("mounts %+v: want the refused one and one without FormatOwner", mounts)
	}
	if p := mounts[0].Params; p[agentproto.ParamFormatOwner] != "1000:1000" || p[agentproto.ParamFormatIfBlank] != "true" || mounts[0].Exit != agentproto.ExitBadInput {
		t.Errorf("first mount %v exit %d: want the grant and FormatOwner, refused", p, mounts[0].Exit)
	}
	if p := mounts[1].Params; p[agentproto.ParamFormatIfBlank] != "true" || p[agentproto.ParamFormatOwner] != "" {
		t.Errorf("second mount %v: want the grant without FormatOwner", p)
	}
	if !strings.Contains(h.logs.String(), "upgrade the agent") {
		t.Errorf("the log does not ask for an upgrade:\n%s", tail(h.logs.String(), 20))
	}
}

// A volume whose driverOpts say devsuid=true is mounted by the reconciler's
// command with DevSuid=true (the agent's --dev-suid), as the plugin mounts
// it; without the option the parameter is not sent (the document's
// default, false).
func TestDevSuidGoesWithTheMount(t *testing.T) {
	for _, devsuid := range []bool{true, false} {
		t.Run(fmt.Sprint(devsuid), func(t *testing.T) {
			h := newHarness(t)
			h.w.AddInstance("i-a", "us-east-1a")
			td := "arn:aws:ecs:us-east-1:111122223333:task-definition/suid:1"
			opts := map[string]string{"size": "1"}
			if devsuid {
				opts["devsuid"] = "true"
			}
			h.w.AddTaskDef(cloudtest.TaskDef{ARN: td, Volumes: []cloudtest.DockerVolume{{
				Name: "suid-vol", Driver: "tether", Scope: "shared", Autoprovision: true, DriverOpts: opts,
			}}})
			task := h.w.PlaceTask(td, "i-a")
			h.settle(300)
			h.noViolations()
			h.wantRunning(task)
			mounts := h.commandsOf(mountDoc)
			if len(mounts) == 0 {
				t.Fatal("no mount command sent")
			}
			for _, m := range mounts {
				if got, want := m.Params[agentproto.ParamDevSuid], map[bool]string{true: "true"}[devsuid]; got != want {
					t.Errorf("mount %s: DevSuid %q, want %q", m.ID, got, want)
				}
			}
		})
	}
}

// staleKeyRead answers the first DescribeVolumes by the key's tag as it
// was a moment before: without the volume an operator adopted since.
type staleKeyRead struct {
	cloud.EC2API
	once sync.Once
}

func (s *staleKeyRead) DescribeVolumes(ctx context.Context, in *ec2.DescribeVolumesInput, opts ...func(*ec2.Options)) (*ec2.DescribeVolumesOutput, error) {
	stale := false
	for _, f := range in.Filters {
		if aws.ToString(f.Name) == "tag:tether:volume" {
			s.once.Do(func() { stale = true })
		}
	}
	if stale {
		return &ec2.DescribeVolumesOutput{}, nil
	}
	return s.EC2API.DescribeVolumes(ctx, in, opts...)
}

// A volume adopted (`tether adopt`) between the pass's read of the key and
// its name check is the key's own: the pass looks again, and never creates
// a second volume beside it (a fresh-clone CI run saw TestMigrationFromREXRay
// get a second rexray-vol).
func TestAVolumeAdoptedDuringThePassIsNotShadowed(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	adopted := h.w.AddVolume("us-east-1a", map[string]string{"Name": volName, "tether:cluster": cluster, "tether:volume": volName, "tether:scope": "shared"})
	h.w.PlaceTask(tdShared, "i-a")
	c := cloud.NewWithClients(&staleKeyRead{EC2API: h.w.EC2()}, h.w.ECS(), h.w.SSM(mountDoc, unmountDoc), cloud.Options{BatchWindow: -1, Now: h.w.Now})
	r, err := reconcile.New(reconcile.Config{Cloud: c, Cluster: cluster, MountDocument: mountDoc, UnmountDocument: unmountDoc,
		Logger: slog.New(slog.NewJSONHandler(h.logs, nil)), Now: h.w.Now})
	if err != nil {
		t.Fatal(err)
	}
	key := reconcile.Key{Cluster: cluster, Volume: volName}
	for _, e := range h.w.TakeEvents() {
		ctx := r.Invocation(context.Background())
		keys, err := r.Keys(ctx, h.trigger(e))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if k != key {
				continue
			}
			res, err := r.Reconcile(ctx, k)
			if err != nil || res.Done() || !strings.Contains(res.Reason, adopted) {
				t.Fatalf("the pass that read the key before the adoption: %+v %v; want it handed back, naming %s", res, err, adopted)
			}
		}
	}
	if n := h.w.Calls()["EC2:CreateVolume"]; n != 0 {
		t.Fatalf("%d CreateVolume calls beside the adopted volume %s", n, adopted)
	}
}
