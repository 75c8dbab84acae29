package reconcile_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
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
