package functions_test

// template.yaml's parts for hosts that go away (issue 13): the termination
// hooks (only for the groups named), the hosts function's rules and queue,
// its IAM (draining the cluster's container instances, the named groups'
// lifecycle actions, stopping only the cluster's tagged instances and only
// when opted in), its alarms.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tether-ecs/tether/functions/internal/hosts"
	"github.com/tether-ecs/tether/test/world/cfntemplate"
	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// hostsManagedPolicies are HostsRole's managed policies beyond the ones
// every function's role has.
var hostsManagedPolicies = []string{"!Ref HostsPolicy", "!If HoldsGroups !Ref HoldPolicy !Ref AWS::NoValue",
	"!If StopsHungHosts !Ref StopHungHostsPolicy !Ref AWS::NoValue"}

// stopHungHostsStatements reads StopHungHostsPolicy's JSON document with the
// tag key and value substituted.
func stopHungHostsStatements(t *testing.T, tp template, key, value string) []statement {
	t.Helper()
	doc := get(tp.resource(t, "StopHungHostsPolicy"), "Properties", "PolicyDocument")
	if doc.Tag != "!Sub" || doc.Kind != yaml.SequenceNode || len(doc.Content) != 2 {
		t.Fatalf("StopHungHostsPolicy's document is not !Sub [text, {TagValue}]")
	}
	if v := intrinsic(get(doc.Content[1], "TagValue")); v != "!If HasInstanceTagValue !Ref InstanceTagValue !Ref ClusterName" {
		t.Errorf("TagValue = %s, want InstanceTagValue or, when empty, ClusterName", v)
	}
	text := strings.NewReplacer("${InstanceTagKey}", key, "${TagValue}", value).Replace(doc.Content[0].Value)
	if err := json.Unmarshal([]byte(text), new(any)); err != nil {
		t.Fatalf("StopHungHostsPolicy with key %q: not JSON: %v\n%s", key, err, text)
	}
	var parsed yaml.Node
	if err := yaml.Unmarshal([]byte(text), &parsed); err != nil {
		t.Fatal(err)
	}
	return statementsOf(t, "StopHungHostsPolicy", parsed.Content[0])
}

// conditionHolds evaluates a template condition for parameter values.
func conditionHolds(t *testing.T, tpl *cfntemplate.Template, name string, params map[string]string) bool {
	t.Helper()
	values := cfntemplate.PseudoParameters("demo", "us-east-1", "123456789012")
	for k, v := range tpl.Defaults() {
		values[k] = v
	}
	for k, v := range params {
		values[k] = v
	}
	ok, err := tpl.Holds(&cfntemplate.Resolver{Values: values}, name)
	if err != nil {
		t.Fatalf("condition %s with %v: %v", name, params, err)
	}
	return ok
}

// The hooks: one per group named (up to 4, as the parameter's pattern
// allows), each a termination hook named tether-<stack>, CONTINUE by
// default (Auto Scaling's default is ABANDON), heartbeated well within its
// timeout; the rule for their lifecycle actions and the hosts function's
// knowledge of the hook's name exist only with groups.
func TestTerminationHooks(t *testing.T) {
	tp := loadTemplate(t)
	tpl, err := cfntemplate.Load(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	pattern := compile(t, get(tp.root, "Parameters", "AutoScalingGroupNames", "AllowedPattern").Value)
	for _, ok := range []string{"", "ecs-asg", "a,b", "prod ecs/spot:1,b,c,d"} {
		if !pattern.MatchString(ok) {
			t.Errorf("AutoScalingGroupNames refuses %q", ok)
		}
	}
	for _, bad := range []string{"a,b,c,d,e", ",a", "a,", "a,,b", `a"b`, "${AWS::Region}", strings.Repeat("x", 256)} {
		if pattern.MatchString(bad) {
			t.Errorf("AutoScalingGroupNames accepts %q", bad)
		}
	}
	for names, want := range map[string][]bool{
		"":        {false, false, false, false, false},
		"a":       {true, false, false, false, true},
		"a,b":     {true, true, false, false, true},
		"a,b,c,d": {true, true, true, true, true},
		"x y,z,w": {true, true, true, false, true},
	} {
		var got []bool
		for _, c := range []string{"HasGroup1", "HasGroup2", "HasGroup3", "HasGroup4", "HoldsGroups"} {
			got = append(got, conditionHolds(t, tpl, c, map[string]string{"AutoScalingGroupNames": names}))
		}
		if !slices.Equal(got, want) {
			t.Errorf("AutoScalingGroupNames %q: HasGroup1-4, HoldsGroups = %v, want %v", names, got, want)
		}
	}
	hooks := tp.resources("AWS::AutoScaling::LifecycleHook")
	if len(hooks) != 4 {
		t.Fatalf("hooks %v, want 4 slots", hooks)
	}
	heartbeat := 0
	for i, id := range hooks {
		r := tp.resource(t, id)
		p := get(r, "Properties")
		n := string(rune('1' + i))
		if c := get(r, "Condition"); c == nil || c.Value != "HasGroup"+n {
			t.Errorf("%s condition %v, want HasGroup%s", id, c, n)
		}
		if g := intrinsic(get(p, "AutoScalingGroupName")); g != "!Select "+string(rune('0'+i))+` !Split , !Ref AutoScalingGroupNames` {
			t.Errorf("%s group %s", id, g)
		}
		if intrinsic(get(p, "LifecycleHookName")) != "!Sub tether-${AWS::StackName}" || get(p, "LifecycleTransition").Value != "autoscaling:EC2_INSTANCE_TERMINATING" ||
			get(p, "DefaultResult").Value != "CONTINUE" || get(p, "NotificationTargetARN") != nil || get(p, "RoleARN") != nil {
			t.Errorf("%s: %v", id, keys(p))
		}
		if h := get(p, "HeartbeatTimeout"); h == nil || (heartbeat != 0 && h.Value != "300") {
			t.Errorf("%s HeartbeatTimeout %v", id, h)
		} else if h.Value == "300" {
			heartbeat = 300
		}
	}
	// The hold heartbeats every pass (hosts.Config.HoldPoll, 5 s by
	// default): far within the hook's timeout.
	if heartbeat != 300 {
		t.Errorf("HeartbeatTimeout %d, want 300", heartbeat)
	}
	rule := tp.resource(t, "TerminationHoldRule")
	if c := get(rule, "Condition"); c == nil || c.Value != "HoldsGroups" {
		t.Errorf("TerminationHoldRule condition %v", c)
	}
	if got := intrinsic(get(rule, "Properties", "EventPattern", "detail", "LifecycleHookName", "0")); got != "!Sub tether-${AWS::StackName}" {
		t.Errorf("TerminationHoldRule matches hook %s, want tether's", got)
	}
	env := get(tp.resource(t, "HostsFunction"), "Properties", "Environment", "Variables")
	for k, want := range map[string]string{
		hosts.EnvQueueURL:      "!Ref HostsQueue",
		hosts.EnvHoldHook:      `!If HoldsGroups !Sub tether-${AWS::StackName} ""`,
		hosts.EnvHoldDeadline:  "!Sub ${TerminationHoldSeconds}s",
		hosts.EnvHungAction:    "!Ref HungHostAction",
		hosts.EnvHungThreshold: "!Sub ${HungHostThresholdSeconds}s",
	} {
		if got := intrinsic(get(env, k)); got != want {
			t.Errorf("HostsFunction %s = %s, want %s", k, got, want)
		}
	}
	if got := scalars(get(tp.root, "Parameters", "HungHostAction", "AllowedValues")); !slices.Equal(got, []string{hosts.HungNone, hosts.HungStop}) ||
		get(tp.root, "Parameters", "HungHostAction", "Default").Value != hosts.HungNone {
		t.Errorf("HungHostAction values %v, want none (default) or stop", got)
	}
}

// The hosts function's IAM: drain only the cluster's container instances;
// heartbeat and complete only the named groups' lifecycle actions; stop
// only the cluster's tagged instances, and only with HungHostAction stop
// (which the Rules section refuses without InstanceTagKey).
func TestHostsIAM(t *testing.T) {
	tp := loadTemplate(t)
	sts := statementsOf(t, "HostsPolicy", get(tp.resource(t, "HostsPolicy"), "Properties", "PolicyDocument"))
	if len(sts) != 1 || !slices.Equal(sts[0].actions, []string{"ecs:UpdateContainerInstancesState"}) ||
		!slices.Equal(sts[0].resources, []string{"arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:container-instance/${ClusterName}/*"}) ||
		!slices.Equal(sts[0].conditions["ArnEquals"]["ecs:cluster"], []string{"arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:cluster/${ClusterName}"}) {
		t.Errorf("HostsPolicy %+v", sts)
	}
	hold := tp.resource(t, "HoldPolicy")
	if c := get(hold, "Condition"); c == nil || c.Value != "HoldsGroups" {
		t.Errorf("HoldPolicy condition %v", c)
	}
	st := get(hold, "Properties", "PolicyDocument", "Statement", "0")
	if got := scalars(get(st, "Action")); !slices.Equal(got, []string{"autoscaling:RecordLifecycleActionHeartbeat", "autoscaling:CompleteLifecycleAction"}) {
		t.Errorf("HoldPolicy actions %v", got)
	}
	res := get(st, "Resource").Content
	if len(res) != 4 {
		t.Fatalf("HoldPolicy resources: %d, want one per group slot", len(res))
	}
	groupARN := "arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:autoScalingGroupName/${Group}"
	for i, r := range res {
		sub := r
		if i > 0 {
			if r.Tag != "!If" || get(r, "0").Value != "HasGroup"+string(rune('1'+i)) || intrinsic(get(r, "2")) != "!Ref AWS::NoValue" {
				t.Errorf("HoldPolicy resource %d: %s", i, intrinsic(r))
				continue
			}
			sub = get(r, "1")
		}
		if sub.Tag != "!Sub" || get(sub, "0").Value != groupARN ||
			intrinsic(get(sub, "1", "Group")) != "!Select "+string(rune('0'+i))+" !Split , !Ref AutoScalingGroupNames" {
			t.Errorf("HoldPolicy resource %d: %s", i, intrinsic(sub))
		}
	}
	stop := tp.resource(t, "StopHungHostsPolicy")
	if c := get(stop, "Condition"); c == nil || c.Value != "StopsHungHosts" {
		t.Errorf("StopHungHostsPolicy condition %v", c)
	}
	if c := intrinsic(get(tp.root, "Conditions", "StopsHungHosts")); c != `!And !Equals !Ref HungHostAction stop !Not !Equals !Ref InstanceTagKey ""` {
		t.Errorf("StopsHungHosts = %s", c)
	}
	for _, kv := range [][2]string{{"aws:autoscaling:groupName", "tether-asg"}, {"ecs/cluster", "prod db"}} {
		sts := stopHungHostsStatements(t, tp, kv[0], kv[1])
		if len(sts) != 1 || !slices.Equal(sts[0].actions, []string{"ec2:StopInstances"}) ||
			!slices.Equal(sts[0].resources, []string{"arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"}) ||
			len(sts[0].conditions) != 1 || !slices.Equal(sts[0].conditions["StringEquals"]["aws:ResourceTag/"+kv[0]], []string{kv[1]}) {
			t.Errorf("StopHungHostsPolicy with %s=%s: %+v", kv[0], kv[1], sts)
		}
	}
	rule := get(tp.root, "Rules", "StoppingHungHostsNeedsTheInstanceTag")
	if intrinsic(get(rule, "RuleCondition")) != "!Equals !Ref HungHostAction stop" ||
		intrinsic(get(rule, "Assertions", "0", "Assert")) != `!Not !Equals !Ref InstanceTagKey ""` {
		t.Errorf("StoppingHungHostsNeedsTheInstanceTag: %s / %s", intrinsic(get(rule, "RuleCondition")), intrinsic(get(rule, "Assertions", "0", "Assert")))
	}
	// Every function reads EC2's status checks for a fenced host's reason.
	for _, st := range statementsOf(t, "ReconcilerPolicy", get(tp.resource(t, "ReconcilerPolicy"), "Properties", "PolicyDocument")) {
		if st.sid == "EC2Read" && !slices.Contains(st.actions, "ec2:DescribeInstanceStatus") {
			t.Errorf("EC2Read lacks ec2:DescribeInstanceStatus: %v", st.actions)
		}
	}
}

// The host rules as EventBridge applies them to events/hosts: instances
// leaving, Spot warnings, disconnected agents (to the drain function too)
// and tether's own hook's lifecycle actions reach the hosts queue; a
// running instance and another hook's actions do not.
func TestHostRulesRouteTheSampleEvents(t *testing.T) {
	tpl, err := cfntemplate.Load(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	// A stack named tether: its hook is tether-tether, as in the samples.
	values := cfntemplate.PseudoParameters("tether", "us-east-1", "123456789012")
	values["ClusterName"] = "tether-demo"
	r := &cfntemplate.Resolver{Values: values}
	patterns := map[string]*eventbus.Pattern{}
	for _, route := range routes {
		res, _ := tpl.Resource(route.rule)
		doc, err := r.Resolve(res.Property("EventPattern"))
		if err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(doc)
		if patterns[route.rule], err = eventbus.CompilePattern(string(js)); err != nil {
			t.Fatalf("%s: %v", route.rule, err)
		}
	}
	route := func(ev worldapi.Event) []string {
		var got []string
		for _, rt := range routes {
			if patterns[rt.rule].Match(ev) && !slices.Contains(got, rt.queue) {
				got = append(got, rt.queue)
			}
		}
		slices.Sort(got)
		return got
	}
	want := map[string][]string{
		"instance-stopped.json":           {"HostsQueue"},
		"instance-terminated.json":        {"HostsQueue"},
		"instance-running.json":           nil,
		"spot-interruption-warning.json":  {"HostsQueue"},
		"terminate-lifecycle-action.json": {"HostsQueue"},
		"instance-disconnected.json":      {"HostsQueue", "InstanceQueue"},
	}
	for file, queues := range want {
		raw, err := os.ReadFile(filepath.Join("..", "events", "hosts", file))
		if err != nil {
			t.Fatal(err)
		}
		var ev worldapi.Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if got := route(ev); !slices.Equal(got, queues) {
			t.Errorf("%s goes to %v, want %v", file, got, queues)
		}
		if file == "terminate-lifecycle-action.json" {
			ev.Detail = json.RawMessage(strings.Replace(string(ev.Detail), `"tether-tether"`, `"someone-elses"`, 1))
			if got := route(ev); len(got) != 0 {
				t.Errorf("another hook's lifecycle action goes to %v", got)
			}
		}
	}
}
