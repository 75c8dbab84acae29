package functions_test

// template.yaml's IAM, pinned so a later edit cannot widen it unnoticed:
// one role per function, SQS actions on tether's queues only, EC2 volume
// actions on the cluster's volumes only, the instance side scoped by the
// operator's tag when one is named, KMS through EC2 only, and no action the
// code does not call.

import (
	"encoding/json"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// statement is one IAM statement, flattened for checks. Resources and
// condition values are the YAML values (a !Sub's text, a !Ref's name, a
// !GetAtt's "X.Arn").
type statement struct {
	policy, sid string
	actions     []string
	resources   []string
	conditions  map[string]map[string][]string
}

func statementsOf(t *testing.T, policy string, doc *yaml.Node) []statement {
	t.Helper()
	var out []statement
	for _, s := range get(doc, "Statement").Content {
		if e := get(s, "Effect"); e == nil || e.Value != "Allow" {
			t.Errorf("%s: statement %v is not an Allow", policy, get(s, "Sid"))
		}
		if get(s, "NotAction") != nil || get(s, "NotResource") != nil {
			t.Errorf("%s: statement %v uses NotAction or NotResource", policy, get(s, "Sid"))
		}
		st := statement{policy: policy, actions: scalars(get(s, "Action")), resources: scalars(get(s, "Resource")),
			conditions: map[string]map[string][]string{}}
		if sid := get(s, "Sid"); sid != nil {
			st.sid = sid.Value
		}
		cond := get(s, "Condition")
		for _, op := range keys(cond) {
			st.conditions[op] = map[string][]string{}
			for _, k := range keys(get(cond, op)) {
				st.conditions[op][k] = scalars(get(cond, op, k))
			}
		}
		out = append(out, st)
	}
	return out
}

// taggedInstancesStatements reads TaggedInstancesPolicy's JSON document
// with the tag key and value substituted.
func taggedInstancesStatements(t *testing.T, tp template, key, value string) []statement {
	t.Helper()
	doc := get(tp.resource(t, "TaggedInstancesPolicy"), "Properties", "PolicyDocument")
	if doc.Tag != "!Sub" || doc.Kind != yaml.SequenceNode || len(doc.Content) != 2 {
		t.Fatalf("TaggedInstancesPolicy's document is not !Sub [text, {TagValue}]")
	}
	if v := intrinsic(get(doc.Content[1], "TagValue")); v != "!If HasInstanceTagValue !Ref InstanceTagValue !Ref ClusterName" {
		t.Errorf("TagValue = %s, want InstanceTagValue or, when empty, ClusterName", v)
	}
	text := strings.NewReplacer("${InstanceTagKey}", key, "${TagValue}", value).Replace(doc.Content[0].Value)
	var parsed yaml.Node
	if err := json.Unmarshal([]byte(text), new(any)); err != nil {
		t.Fatalf("TaggedInstancesPolicy with key %q: not JSON: %v\n%s", key, err, text)
	}
	if err := yaml.Unmarshal([]byte(text), &parsed); err != nil {
		t.Fatal(err)
	}
	return statementsOf(t, "TaggedInstancesPolicy", parsed.Content[0])
}

// functionPolicies: every statement any function's role can hold, by
// policy (role inline policies, the managed policies they attach; the
// tagged-instances policy with sample values).
func functionPolicies(t *testing.T, tp template) []statement {
	t.Helper()
	var out []statement
	for _, role := range tp.resources("AWS::IAM::Role") {
		if slices.Contains(serviceRoles, role) {
			continue // an AWS service's role: its own test
		}
		for _, p := range get(tp.resource(t, role), "Properties", "Policies").Content {
			out = append(out, statementsOf(t, role+"."+get(p, "PolicyName").Value, get(p, "PolicyDocument"))...)
		}
	}
	for _, mp := range tp.resources("AWS::IAM::ManagedPolicy") {
		if mp == "TaggedInstancesPolicy" {
			out = append(out, taggedInstancesStatements(t, tp, "aws:autoscaling:groupName", "tether-asg")...)
			continue
		}
		if mp == "StopHungHostsPolicy" {
			out = append(out, stopHungHostsStatements(t, tp, "aws:autoscaling:groupName", "tether-asg")...)
			continue
		}
		out = append(out, statementsOf(t, mp, get(tp.resource(t, mp), "Properties", "PolicyDocument"))...)
	}
	return out
}

// serviceRoles are the stack's roles for AWS services, not functions (see
// TestScheduledSnapshotsPolicy).
var serviceRoles = []string{"SnapshotRole"}

var roleOf = map[string]string{"TaskStateFunction": "TaskStateRole", "DrainFunction": "DrainRole", "SweepFunction": "SweepRole", "HostsFunction": "HostsRole"}
var logGroupOf = map[string]string{"TaskStateFunction": "TaskStateLogGroup", "DrainFunction": "DrainLogGroup", "SweepFunction": "SweepLogGroup", "HostsFunction": "HostsLogGroup"}

// Each function has its own role: its log group, the queues it polls and
// the retry queue; no SAM policy (SAM would add its SQS poller policy,
// sqs:ReceiveMessage and DeleteMessage on "*").
func TestFunctionsHaveTheirOwnRoles(t *testing.T) {
	tp := loadTemplate(t)
	if get(tp.root, "Globals", "Function", "Policies") != nil || get(tp.root, "Globals", "Function", "Role") != nil {
		t.Error("Globals give the functions policies or a role")
	}
	if got := tp.resources("AWS::IAM::Role"); len(got) != len(roleOf)+len(serviceRoles) {
		t.Errorf("roles %v, want one per function", got)
	}
	polled := consumedQueues(t, tp)
	for fn, role := range roleOf {
		props := get(tp.resource(t, fn), "Properties")
		if get(props, "Policies") != nil {
			t.Errorf("%s has SAM Policies", fn)
		}
		if r := intrinsic(get(props, "Role")); r != "!GetAtt "+role+".Arn" {
			t.Errorf("%s Role %s, want !GetAtt %s.Arn", fn, r, role)
		}
		if lg := intrinsic(get(props, "LoggingConfig", "LogGroup")); lg != "!Ref "+logGroupOf[fn] {
			t.Errorf("%s logs to %s, want !Ref %s", fn, lg, logGroupOf[fn])
		}
		// The stack owns the log group; its name is generated, so a stack
		// deleted and created again never meets a group Lambda left.
		group := tp.resource(t, logGroupOf[fn])
		if get(group, "Properties", "LogGroupName") != nil || intrinsic(get(group, "Properties", "RetentionInDays")) != "!Ref LogRetentionDays" ||
			get(group, "DeletionPolicy").Value != "Delete" {
			t.Errorf("%s: a fixed name, no retention or no deletion with the stack", logGroupOf[fn])
		}

		rp := get(tp.resource(t, role), "Properties")
		if got := intrinsic(get(rp, "PermissionsBoundary")); got != "!If HasPermissionsBoundary !Ref PermissionsBoundary !Ref AWS::NoValue" {
			t.Errorf("%s PermissionsBoundary %s", role, got)
		}
		trust := statementsOf(t, role+" trust", get(rp, "AssumeRolePolicyDocument"))
		if len(trust) != 1 || !slices.Equal(trust[0].actions, []string{"sts:AssumeRole"}) ||
			get(rp, "AssumeRolePolicyDocument", "Statement", "0", "Principal", "Service").Value != "lambda.amazonaws.com" {
			t.Errorf("%s is not assumable by Lambda alone", role)
		}
		var managed []string
		for _, m := range get(rp, "ManagedPolicyArns").Content {
			managed = append(managed, intrinsic(m))
		}
		want := []string{"!Ref ReconcilerPolicy", "!If HasInstanceTag !Ref TaggedInstancesPolicy !Ref AnyInstancePolicy",
			"!If HasKmsKeys !Ref KmsThroughEc2Policy !Ref AWS::NoValue"}
		if role == "HostsRole" {
			want = append(want, hostsManagedPolicies...)
		}
		if !slices.Equal(managed, want) {
			t.Errorf("%s managed policies %v, want %v", role, managed, want)
		}
		var wantPolled []string
		for q, f := range polled {
			if f == fn {
				wantPolled = append(wantPolled, q+".Arn")
			}
		}
		slices.Sort(wantPolled)
		granted := map[string][]string{}
		for _, p := range get(rp, "Policies").Content {
			for _, st := range statementsOf(t, role, get(p, "PolicyDocument")) {
				res := slices.Sorted(slices.Values(st.resources))
				for _, a := range st.actions {
					granted[a] = append(granted[a], res...)
				}
				if len(st.conditions) != 0 {
					t.Errorf("%s %s: unexpected conditions", role, st.sid)
				}
			}
		}
		wantGrants := map[string][]string{
			"logs:CreateLogStream": {logGroupOf[fn] + ".Arn"}, "logs:PutLogEvents": {logGroupOf[fn] + ".Arn"},
			"sqs:SendMessage": {"RetryQueue.Arn"},
		}
		if fn == "HostsFunction" { // it sends its holds' and watches' next passes to its own queue
			wantGrants["sqs:SendMessage"] = []string{"HostsQueue.Arn", "RetryQueue.Arn"}
		}
		if len(wantPolled) > 0 {
			for _, a := range []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"} {
				wantGrants[a] = wantPolled
			}
		}
		if len(granted) != len(wantGrants) {
			t.Errorf("%s grants %v, want %v", role, granted, wantGrants)
		}
		for a, res := range wantGrants {
			if got := slices.Sorted(slices.Values(granted[a])); !slices.Equal(got, res) {
				t.Errorf("%s: %s on %v, want %v", role, a, got, res)
			}
		}
	}
}

// No policy grants a wildcard action, and no SQS or CloudWatch Logs action
// is granted outside the roles' own queues and log groups.
func TestNoPolicyGrantsWildcardsOrForeignQueues(t *testing.T) {
	tp := loadTemplate(t)
	for _, st := range functionPolicies(t, tp) {
		for _, a := range st.actions {
			if strings.Contains(a, "*") {
				t.Errorf("%s %s grants wildcard action %s", st.policy, st.sid, a)
			}
			if (strings.HasPrefix(a, "sqs:") || strings.HasPrefix(a, "logs:")) && !strings.Contains(st.policy, "Role.") {
				t.Errorf("%s %s grants %s outside a function's own role policy", st.policy, st.sid, a)
			}
		}
		for _, r := range st.resources {
			if r == "*" && slices.ContainsFunc(st.actions, func(a string) bool {
				return strings.HasPrefix(a, "sqs:") || strings.HasPrefix(a, "logs:") || strings.HasPrefix(a, "kms:")
			}) {
				t.Errorf("%s %s grants %v on *", st.policy, st.sid, st.actions)
			}
		}
	}
}

// calledActions are the AWS actions the functions' code calls: the
// methods of the cloud package's EC2, ECS and SSM interfaces (the AWS seam
// holds only the methods tether calls), and SQS SendMessage (the retry
// queue). Lambda itself polls the queues and writes the logs; EBS uses the
// KMS keys through EC2.
func calledActions(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, file := range []string{"internal/cloud/api.go", "internal/cloud/hosts.go"} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		// The host seam's interfaces (hosts.go) are HostsEC2API, HostsECSAPI and AutoScalingAPI.
		for _, m := range regexp.MustCompile(`(?s)type (?:Hosts)?(EC2|ECS|SSM|AutoScaling)API interface \{(.*?)\n\}`).FindAllStringSubmatch(string(src), -1) {
			for _, method := range regexp.MustCompile(`(?m)^\t([A-Z][A-Za-z]+)\(ctx`).FindAllStringSubmatch(m[2], -1) {
				out = append(out, strings.ToLower(m[1])+":"+method[1])
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("read only %v from internal/cloud/api.go", out)
	}
	return append(out, "sqs:SendMessage")
}

// Every action the code calls is granted, and nothing else (besides what
// Lambda and EBS do on the functions' behalf). ec2:ModifyVolume and
// ec2:DescribeVolumesModifications (online resizing), ec2:StopInstances and
// autoscaling:CompleteLifecycleAction (lifecycle hooks) come with the code
// that calls them.
func TestOnlyCalledActionsAreGranted(t *testing.T) {
	tp := loadTemplate(t)
	called := calledActions(t)
	granted := map[string]bool{}
	for _, st := range functionPolicies(t, tp) {
		for _, a := range st.actions {
			switch {
			case strings.HasPrefix(a, "logs:"), a == "sqs:ReceiveMessage", a == "sqs:DeleteMessage", a == "sqs:GetQueueAttributes":
				// Lambda's: logging and polling.
			case strings.HasPrefix(a, "kms:"):
				// EBS's, through EC2 (see TestKMSOnlyThroughEC2).
			default:
				granted[a] = true
				if !slices.Contains(called, a) {
					t.Errorf("%s %s grants %s, which the functions never call", st.policy, st.sid, a)
				}
			}
		}
	}
	for _, a := range called {
		if !granted[a] {
			t.Errorf("%s is called but not granted", a)
		}
	}
}

// The reconciler's permissions keep its hands off everything that is not
// tether's.
func TestReconcilerPolicyIsScopedToTetherVolumes(t *testing.T) {
	tp := loadTemplate(t)
	volumeARN := "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:volume/*"
	instanceARN := "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"
	sts := statementsOf(t, "ReconcilerPolicy", get(tp.resource(t, "ReconcilerPolicy"), "Properties", "PolicyDocument"))
	deleteMoved := 0
	for _, st := range sts {
		owned := st.conditions["StringEquals"]["aws:ResourceTag/tether:cluster"]
		for _, a := range st.actions {
			switch a {
			case "ec2:DeleteSnapshot":
				// Only the cluster's own AZ-move snapshots (a duplicate of a move).
				if !slices.Equal(st.resources, []string{"arn:${AWS::Partition}:ec2:${AWS::Region}::snapshot/*"}) ||
					!slices.Equal(st.conditions["StringEquals"]["aws:ResourceTag/tether:cluster"], []string{"ClusterName"}) ||
					!slices.Equal(st.conditions["Null"]["aws:ResourceTag/tether:move-of"], []string{"false"}) {
					t.Errorf("%s: DeleteSnapshot beyond the cluster's AZ-move snapshots", st.sid)
				}
			case "ec2:CreateSnapshot":
				// Of the cluster's volumes, tagged with the cluster in the request.
				snapARN := "arn:${AWS::Partition}:ec2:${AWS::Region}::snapshot/*"
				switch {
				case slices.Equal(st.resources, []string{volumeARN}) && slices.Equal(owned, []string{"ClusterName"}):
				case slices.Equal(st.resources, []string{snapARN}) && slices.Equal(st.conditions["StringEquals"]["aws:RequestTag/tether:cluster"], []string{"ClusterName"}):
				default:
					t.Errorf("%s: CreateSnapshot on %v beyond the cluster's volumes and tagged snapshots", st.sid, st.resources)
				}
			case "ec2:AttachVolume", "ec2:DetachVolume", "ec2:DeleteVolume":
				if !slices.Equal(st.resources, []string{volumeARN}) || !slices.Equal(owned, []string{"ClusterName"}) {
					t.Errorf("%s: %s on %v without aws:ResourceTag/tether:cluster", st.sid, a, st.resources)
				}
			case "ec2:CreateVolume":
				if slices.Contains(st.resources, volumeARN) &&
					!slices.Equal(st.conditions["StringEquals"]["aws:RequestTag/tether:cluster"], []string{"ClusterName"}) {
					t.Errorf("%s: CreateVolume without aws:RequestTag/tether:cluster", st.sid)
				}
			case "ec2:CreateTags":
				// Adoption is the operator's: the functions tag a volume only in
				// the CreateVolume that makes it, or one already the cluster's.
				createOnly := slices.Equal(st.conditions["StringEquals"]["ec2:CreateAction"], []string{"CreateVolume"}) ||
					slices.Equal(st.conditions["StringEquals"]["ec2:CreateAction"], []string{"CreateSnapshot"}) &&
						slices.Equal(st.resources, []string{"arn:${AWS::Partition}:ec2:${AWS::Region}::snapshot/*"})
				if !createOnly && !slices.Equal(owned, []string{"ClusterName"}) {
					t.Errorf("%s: CreateTags on volumes tether does not own", st.sid)
				}
				if !createOnly && (!slices.Equal(st.conditions["StringEqualsIfExists"]["aws:RequestTag/tether:cluster"], []string{"ClusterName"}) ||
					!slices.Equal(st.conditions["StringEqualsIfExists"]["aws:RequestTag/tether:scope"], []string{"shared"}) ||
					!slices.Equal(st.conditions["ForAllValues:StringNotEquals"]["aws:TagKeys"], []string{"tether:task"})) {
					t.Errorf("%s: CreateTags may move a volume to another cluster, make it task-scoped or change its task", st.sid)
				}
				if _, ok := st.conditions["Null"]; ok {
					t.Errorf("%s: CreateTags on volumes without tether:cluster (adoption is the operator's)", st.sid)
				}
			case "ecs:StopTask":
				if len(st.conditions["ArnEquals"]["ecs:cluster"]) != 1 {
					t.Errorf("%s: StopTask not limited to the cluster", st.sid)
				}
			case "ssm:SendCommand":
				want := []string{"arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:document/${MountDocument}",
					"arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:document/${UnmountDocument}",
					"arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:document/${StatusDocument}"}
				if !slices.Equal(st.resources, want) {
					t.Errorf("%s: SendCommand on %v, want tether's three documents only", st.sid, st.resources)
				}
			}
		}
		if a := "ec2:DeleteVolume"; slices.Contains(st.actions, a) {
			// Task volumes, or the old volume of an AZ move whose driverOpts
			// asked for its deletion (tether:moved-to and tether:delete-after
			// present): never a key's shared volume.
			task := slices.Equal(st.conditions["StringEquals"]["aws:ResourceTag/tether:scope"], []string{"task"})
			moved := slices.Equal(st.conditions["Null"]["aws:ResourceTag/tether:moved-to"], []string{"false"}) &&
				slices.Equal(st.conditions["Null"]["aws:ResourceTag/tether:delete-after"], []string{"false"})
			if !task && !moved {
				t.Errorf("%s: DeleteVolume beyond tether:scope=task volumes and moved volumes marked for deletion", st.sid)
			}
			if len(st.actions) != 1 {
				t.Errorf("%s: DeleteVolume shares its conditions with %v", st.sid, st.actions)
			}
			if moved {
				deleteMoved++
			}
		}
		if slices.Contains(st.resources, instanceARN) {
			t.Errorf("%s: instance resources belong in AnyInstancePolicy or TaggedInstancesPolicy", st.sid)
		}
	}
	// The sweep retires moved volumes (reconcile/retire.go): one statement
	// grants it, for the cluster's moved volumes alone (checked above).
	if deleteMoved != 1 {
		t.Errorf("%d statements let the reconciler delete moved volumes, want 1", deleteMoved)
	}
}

// The instance side of attach, detach and SendCommand: any instance of the
// account and Region when InstanceTagKey is empty, else only instances
// tagged InstanceTagKey=InstanceTagValue (ClusterName by default).
func TestInstanceScoping(t *testing.T) {
	tp := loadTemplate(t)
	instanceARN := "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"
	if c := intrinsic(get(tp.root, "Conditions", "AnyInstance")); c != `!Equals !Ref InstanceTagKey ""` {
		t.Errorf("AnyInstance = %q", c)
	}
	if c := intrinsic(get(tp.root, "Conditions", "HasInstanceTag")); c != `!Not !Equals !Ref InstanceTagKey ""` {
		t.Errorf("HasInstanceTag = %q", c)
	}
	if c := get(tp.resource(t, "AnyInstancePolicy"), "Condition"); c == nil || c.Value != "AnyInstance" {
		t.Errorf("AnyInstancePolicy condition %v", c)
	}
	if c := get(tp.resource(t, "TaggedInstancesPolicy"), "Condition"); c == nil || c.Value != "HasInstanceTag" {
		t.Errorf("TaggedInstancesPolicy condition %v", c)
	}
	wantActions := [][]string{{"ec2:AttachVolume", "ec2:DetachVolume"}, {"ssm:SendCommand"}}
	any := statementsOf(t, "AnyInstancePolicy", get(tp.resource(t, "AnyInstancePolicy"), "Properties", "PolicyDocument"))
	if len(any) != 2 {
		t.Fatalf("AnyInstancePolicy: %d statements", len(any))
	}
	for i, st := range any {
		if !slices.Equal(st.actions, wantActions[i]) || !slices.Equal(st.resources, []string{instanceARN}) || len(st.conditions) != 0 {
			t.Errorf("AnyInstancePolicy %s: %v on %v %v", st.sid, st.actions, st.resources, st.conditions)
		}
	}
	// The tag key is the operator's: any key the parameter accepts keeps the
	// document JSON and lands in the condition key.
	keyPattern := compile(t, get(tp.root, "Parameters", "InstanceTagKey", "AllowedPattern").Value)
	valuePattern := compile(t, get(tp.root, "Parameters", "InstanceTagValue", "AllowedPattern").Value)
	for _, kv := range [][2]string{{"aws:autoscaling:groupName", "tether-asg"}, {"ecs/cluster", "prod db"}, {"a", "demo"}} {
		if !keyPattern.MatchString(kv[0]) || !valuePattern.MatchString(kv[1]) {
			t.Fatalf("test bug: %q=%q refused by the parameters' patterns", kv[0], kv[1])
		}
		tagged := taggedInstancesStatements(t, tp, kv[0], kv[1])
		if len(tagged) != 2 {
			t.Fatalf("TaggedInstancesPolicy: %d statements", len(tagged))
		}
		for i, st := range tagged {
			key := "aws:ResourceTag/" + kv[0]
			if i == 1 {
				key = "ssm:resourceTag/" + kv[0]
			}
			if !slices.Equal(st.actions, wantActions[i]) || !slices.Equal(st.resources, []string{instanceARN}) ||
				len(st.conditions) != 1 || !slices.Equal(st.conditions["StringEquals"][key], []string{kv[1]}) {
				t.Errorf("TaggedInstancesPolicy %s with %s=%s: %v on %v if %v", st.sid, kv[0], kv[1], st.actions, st.resources, st.conditions)
			}
		}
	}
	for _, bad := range []string{`a"b`, `a\b`, "a b", "a}", "${AWS::Region}"} {
		if keyPattern.MatchString(bad) {
			t.Errorf("InstanceTagKey accepts %q", bad)
		}
	}
	for _, bad := range []string{`a"b`, `a\b`, "${AWS::Region}"} {
		if valuePattern.MatchString(bad) {
			t.Errorf("InstanceTagValue accepts %q", bad)
		}
	}
}

// Customer managed keys through EC2 only: the permissions EBS needs to
// create, attach and read volumes encrypted with the keys the operator
// lists, each conditioned on kms:ViaService = ec2.<Region>.amazonaws.com;
// grants only for AWS resources.
func TestKMSOnlyThroughEC2(t *testing.T) {
	tp := loadTemplate(t)
	r := tp.resource(t, "KmsThroughEc2Policy")
	if c := get(r, "Condition"); c == nil || c.Value != "HasKmsKeys" {
		t.Errorf("KmsThroughEc2Policy condition %v, want HasKmsKeys", c)
	}
	if c := intrinsic(get(tp.root, "Conditions", "HasKmsKeys")); c != `!Not !Equals !Join "" !Ref KmsKeyArns ""` {
		t.Errorf("HasKmsKeys = %q", c)
	}
	granted := map[string]bool{}
	for _, st := range statementsOf(t, "KmsThroughEc2Policy", get(r, "Properties", "PolicyDocument")) {
		if !slices.Equal(st.resources, []string{"KmsKeyArns"}) {
			t.Errorf("%s on %v, want !Ref KmsKeyArns", st.sid, st.resources)
		}
		if via := st.conditions["StringEquals"]["kms:ViaService"]; !slices.Equal(via, []string{"ec2.${AWS::Region}.amazonaws.com"}) {
			t.Errorf("%s: kms:ViaService %v, want ec2.${AWS::Region}.amazonaws.com", st.sid, via)
		}
		for _, a := range st.actions {
			granted[a] = true
			if a == "kms:CreateGrant" && !slices.Equal(st.conditions["Bool"]["kms:GrantIsForAWSResource"], []string{"true"}) {
				t.Errorf("%s: CreateGrant without kms:GrantIsForAWSResource", st.sid)
			}
		}
	}
	want := []string{"kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo"}
	if got := slices.Sorted(func(yield func(string) bool) {
		for a := range granted {
			if !yield(a) {
				return
			}
		}
	}); !slices.Equal(got, want) {
		t.Errorf("KMS actions %v, want %v", got, want)
	}
	for _, st := range functionPolicies(t, tp) {
		if st.policy != "KmsThroughEc2Policy" && slices.ContainsFunc(st.actions, func(a string) bool { return strings.HasPrefix(a, "kms:") }) {
			t.Errorf("%s %s grants KMS actions", st.policy, st.sid)
		}
	}
	keys := compile(t, get(tp.root, "Parameters", "KmsKeyArns", "AllowedPattern").Value)
	for _, v := range []string{"", "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		"arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab", "arn:aws:kms:eu-west-1:123456789012:key/*"} {
		if !keys.MatchString(v) {
			t.Errorf("KmsKeyArns refuses %q", v)
		}
	}
	for _, v := range []string{"alias/x", "arn:aws:kms:us-east-1:123456789012:alias/x", "*", "arn:aws:kms:*:*:key/*", "1234abcd-12ab-34cd-56ef-1234567890ab"} {
		if keys.MatchString(v) {
			t.Errorf("KmsKeyArns accepts %q (IAM authorizes grants on key ARNs)", v)
		}
	}
	if a := get(tp.root, "Rules", "DefaultKeyIsAllowed", "Assertions", "0", "Assert"); intrinsic(a) != `!Not !Contains !Ref KmsKeyArns ""` {
		t.Errorf("no rule requires KmsKeyArns when DefaultKmsKeyId is set: %s", intrinsic(a))
	}
	pb := compile(t, get(tp.root, "Parameters", "PermissionsBoundary", "AllowedPattern").Value)
	for v, ok := range map[string]bool{"": true, "arn:aws:iam::123456789012:policy/boundaries/tether": true, "arn:aws:iam::aws:policy/PowerUserAccess": false, "x": false} {
		if pb.MatchString(v) != ok {
			t.Errorf("PermissionsBoundary %q: accepted %v", v, !ok)
		}
	}
}

// Which volumes the reconciler's policy lets it delete, by their tags:
// the IAM conditions of its DeleteVolume statements evaluated as AWS
// does (StringEquals and Null on aws:ResourceTag; a statement allows when
// all its conditions hold), with ClusterName = "prod". A key's shared
// volume, a moved volume the task definition did not ask to delete and
// any volume of another cluster are refused.
func TestReconcilerDeletesOnlyTaskVolumesAndMovedVolumesMarkedForDeletion(t *testing.T) {
	tp := loadTemplate(t)
	var deletes []statement
	for _, st := range statementsOf(t, "ReconcilerPolicy", get(tp.resource(t, "ReconcilerPolicy"), "Properties", "PolicyDocument")) {
		if slices.Contains(st.actions, "ec2:DeleteVolume") {
			deletes = append(deletes, st)
		}
	}
	allows := func(tags map[string]string) []string {
		var by []string
		for _, st := range deletes {
			ok := true
			for op, conds := range st.conditions {
				for k, want := range conds {
					key, isTag := strings.CutPrefix(k, "aws:ResourceTag/")
					if !isTag || len(want) != 1 {
						t.Fatalf("%s: condition %s %s %v: the test evaluates resource tags alone", st.sid, op, k, want)
					}
					v, has := tags[key]
					switch op {
					case "StringEquals":
						if want[0] == "ClusterName" {
							want = []string{"prod"}
						}
						ok = ok && has && v == want[0]
					case "Null":
						ok = ok && has == (want[0] == "false")
					default:
						t.Fatalf("%s: condition operator %s: the test evaluates StringEquals and Null alone", st.sid, op)
					}
				}
			}
			if ok {
				by = append(by, st.sid)
			}
		}
		return by
	}
	moved := map[string]string{"tether:cluster": "prod", "tether:scope": "shared", "tether:volume": "", "tether:moved-name": "pgdata",
		"tether:moved-to": "vol-0123456789abcdef0", "tether:moved-at": "2026-01-02T03:04:05Z", "tether:delete-after": "24h0m0s"}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := maps.Clone(m)
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "-" {
				delete(out, kv[i])
			} else {
				out[kv[i]] = kv[i+1]
			}
		}
		return out
	}
	for _, c := range []struct {
		what  string
		tags  map[string]string
		allow bool
	}{
		{"a task volume of the cluster", map[string]string{"tether:cluster": "prod", "tether:scope": "task", "tether:volume": "t-x"}, true},
		{"a moved volume marked for deletion", moved, true},
		{"a key's shared volume", map[string]string{"tether:cluster": "prod", "tether:scope": "shared", "tether:volume": "pgdata"}, false},
		{"a moved volume without azmove-delete-after", with(moved, "tether:delete-after", "-", "tether:moved-at", "-"), false},
		{"a moved volume of another cluster", with(moved, "tether:cluster", "staging"), false},
		{"a moved volume without a cluster", with(moved, "tether:cluster", "-"), false},
		{"a shared volume carrying only delete-after", with(moved, "tether:moved-to", "-"), false},
		{"an untagged volume", map[string]string{}, false},
	} {
		if by := allows(c.tags); (len(by) > 0) != c.allow {
			t.Errorf("%s: DeleteVolume allowed by %v, want allowed %t", c.what, by, c.allow)
		}
	}
}
