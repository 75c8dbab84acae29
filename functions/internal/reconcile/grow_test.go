package reconcile_test

import (
	"strings"
	"testing"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
)

// A new task definition revision that asks for a larger size: once its
// task runs with the volume, the volume is modified (one ModifyVolume),
// and once EBS puts the change in force the mount goes again and the
// mounted filesystem grows, the task still running. A revision asking for
// less changes nothing (EBS volumes cannot shrink) and says why.
func TestLargerSizeGrowsTheVolumeOnlineAndSmallerIsRefused(t *testing.T) {
	h := newHarness(t)
	h.w.AddInstance("i-a", "us-east-1a")
	t1, v := runningShared(t, h)
	if v.Size != 5 || v.FSGiB != 5 {
		t.Fatalf("volume %d GiB, filesystem %d GiB: want 5", v.Size, v.FSGiB)
	}
	revision := func(arn, size string) {
		h.w.AddTaskDef(cloudtest.TaskDef{ARN: arn, Volumes: []cloudtest.DockerVolume{{
			Name: volName, Driver: "tether", Scope: "shared", Autoprovision: true,
			DriverOpts: map[string]string{"volumetype": "gp2", "size": size},
		}}})
	}
	revision("arn:aws:ecs:us-east-1:111122223333:task-definition/mysql:2", "12")
	h.w.StopTask(t1, "deploy")
	t2 := h.w.PlaceTask("arn:aws:ecs:us-east-1:111122223333:task-definition/mysql:2", "i-a")
	h.settle(400)
	h.noViolations()
	h.wantRunning(t2)
	v = h.oneVolume(volName)
	if v.Size != 12 || v.FSGiB != 12 || v.Att == nil || v.Att.Instance != "i-a" {
		t.Fatalf("after the larger revision: volume %d GiB, filesystem %d GiB, attached %+v; want 12 and 12 on i-a", v.Size, v.FSGiB, v.Att)
	}
	if n := h.w.Calls()["EC2:ModifyVolume"]; n != 1 {
		t.Fatalf("%d ModifyVolume calls, want 1", n)
	}
	if !strings.Contains(h.logs.String(), "sending the mount again so the filesystem grows") {
		t.Fatal("no mount sent again once the modification was in force")
	}

	revision("arn:aws:ecs:us-east-1:111122223333:task-definition/mysql:3", "8")
	h.w.StopTask(t2, "deploy")
	t3 := h.w.PlaceTask("arn:aws:ecs:us-east-1:111122223333:task-definition/mysql:3", "i-a")
	h.settle(400)
	h.noViolations()
	h.wantRunning(t3)
	if v := h.oneVolume(volName); v.Size != 12 || v.FSGiB != 12 {
		t.Fatalf("after the smaller revision: volume %d GiB, filesystem %d GiB; want 12 kept", v.Size, v.FSGiB)
	}
	if n := h.w.Calls()["EC2:ModifyVolume"]; n != 1 {
		t.Fatalf("%d ModifyVolume calls after a smaller revision, want still 1", n)
	}
	if !strings.Contains(h.logs.String(), "EBS volumes cannot shrink") {
		t.Fatal("the smaller size was not reported")
	}
}
