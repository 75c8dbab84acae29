package functions_test

import (
	"testing"

	"github.com/tether-ecs/tether/test/world/cfntemplate"
)

// Scheduled snapshots are Data Lifecycle Manager's (issue 12): with
// SnapshotCron set, one policy snapshots the volumes tagged
// tether:snapshots=<ClusterName> on that schedule and keeps
// SnapshotRetainCount of each; its role trusts DLM alone and holds AWS's
// managed policy for DLM, under the stack's permissions boundary. Without
// SnapshotCron neither exists.
func TestScheduledSnapshotsPolicy(t *testing.T) {
	tp := loadTemplate(t)
	tpl, err := cfntemplate.Load(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"SnapshotRole", "SnapshotPolicy"} {
		if c := get(tp.resource(t, r), "Condition"); c == nil || c.Value != "SnapshotsScheduled" {
			t.Errorf("%s not conditional on SnapshotsScheduled", r)
		}
	}
	if conditionHolds(t, tpl, "SnapshotsScheduled", nil) {
		t.Error("a policy by default")
	}
	if !conditionHolds(t, tpl, "SnapshotsScheduled", map[string]string{"SnapshotCron": "cron(0 3 * * ? *)"}) {
		t.Error("no policy with SnapshotCron set")
	}
	details := get(tp.resource(t, "SnapshotPolicy"), "Properties", "PolicyDetails")
	tags := get(details, "TargetTags")
	if tags == nil || len(tags.Content) != 1 || get(tags.Content[0], "Key").Value != "tether:snapshots" || intrinsic(get(tags.Content[0], "Value")) != "!Ref ClusterName" {
		t.Errorf("TargetTags: want exactly tether:snapshots = !Ref ClusterName")
	}
	sched := get(details, "Schedules").Content[0]
	if c := intrinsic(get(sched, "CreateRule", "CronExpression")); c != "!Ref SnapshotCron" {
		t.Errorf("CronExpression %s", c)
	}
	if c := intrinsic(get(sched, "RetainRule", "Count")); c != "!Ref SnapshotRetainCount" {
		t.Errorf("RetainRule.Count %s", c)
	}
	role := get(tp.resource(t, "SnapshotRole"), "Properties")
	trust := get(role, "AssumeRolePolicyDocument", "Statement").Content
	if len(trust) != 1 || get(trust[0], "Principal", "Service").Value != "dlm.amazonaws.com" {
		t.Error("SnapshotRole must trust dlm.amazonaws.com alone")
	}
	if get(role, "Policies") != nil {
		t.Error("SnapshotRole has inline policies: AWS's managed policy for DLM is all it needs")
	}
	if m := get(role, "ManagedPolicyArns").Content; len(m) != 1 || intrinsic(m[0]) != "!Sub arn:${AWS::Partition}:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole" {
		t.Error("SnapshotRole's managed policies: want AWSDataLifecycleManagerServiceRole alone")
	}
	if b := intrinsic(get(role, "PermissionsBoundary")); b != "!If HasPermissionsBoundary !Ref PermissionsBoundary !Ref AWS::NoValue" {
		t.Errorf("SnapshotRole's boundary %s", b)
	}
}
