package cfntemplate

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func mustParse(t *testing.T, src string) *Template {
	t.Helper()
	tpl, err := parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

func TestTheRepositoryTemplate(t *testing.T) {
	tpl, err := Load("../../../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var params []string
	for _, p := range tpl.Parameters {
		params = append(params, p.Name)
	}
	if want := []string{"ClusterName", "InstanceTagKey", "InstanceTagValue", "DefaultVolumeType", "DefaultSizeGiB", "ExtraVolumeTags",
		"KmsKeyArns", "DefaultKmsKeyId", "SnapshotCron", "SnapshotRetainCount", "PermissionsBoundary", "ReservedConcurrency", "QueueConcurrency", "AlarmTopic",
		"HandoffAlarmMilliseconds", "QueueAgeAlarmSeconds", "LogRetentionDays", "LogLevel",
		"AutoScalingGroupNames", "TerminationHoldSeconds", "HungHostAction", "HungHostThresholdSeconds"}; !slices.Equal(params, want) {
		t.Errorf("parameters %v, want %v", params, want)
	}
	if n := len(tpl.OfType("AWS::SQS::Queue")); n != 11 {
		t.Errorf("%d queues, want 11", n)
	}
	sweep, ok := tpl.Resource("SweepFunction")
	if !ok || sweep.Type != "AWS::Serverless::Function" {
		t.Fatalf("SweepFunction = %+v, %v", sweep, ok)
	}
	// Globals.Function applies under the function's own properties.
	props := tpl.FunctionProperties(sweep)
	values := tpl.Defaults()
	values["ClusterName"] = "demo"
	r := &Resolver{Values: values,
		Resources: map[string]Deployed{"MountDocument": {Ref: "m"}, "UnmountDocument": {Ref: "u"}, "StatusDocument": {Ref: "s"}, "RetryQueue": {Ref: "q"}}}
	if n, err := r.Int(Child(props, "Timeout"), 3); err != nil || n != 60 {
		t.Errorf("Timeout %d, %v; want the global 60", n, err)
	}
	// No reservation by default (the property is AWS::NoValue); 1 for the
	// sweep once ReservedConcurrency asks for reservations.
	if n, err := r.Int(Child(props, "ReservedConcurrentExecutions"), 0); err != nil || n != 0 {
		t.Errorf("ReservedConcurrentExecutions %d, %v; want none (0) by default", n, err)
	}
	values["ReservedConcurrency"] = "30"
	if n, err := r.Int(Child(props, "ReservedConcurrentExecutions"), 0); err != nil || n != 1 {
		t.Errorf("ReservedConcurrentExecutions %d, %v; want the sweep's 1 with ReservedConcurrency=30", n, err)
	}
	env, err := r.Resolve(Child(props, "Environment"))
	if err != nil {
		t.Fatal(err)
	}
	if vars := env.(map[string]any)["Variables"].(map[string]any); vars["TETHER_CLUSTER"] != "demo" || vars["TETHER_RETRY_QUEUE_URL"] != "q" {
		t.Errorf("environment %v", vars)
	}
	if len(tpl.Outputs) != 27 || tpl.Outputs[0].Name != "DashboardUrl" {
		t.Errorf("outputs %+v", tpl.Outputs)
	}
	if _, ok := tpl.Conditions["HasReservedConcurrency"]; !ok {
		t.Errorf("conditions %v", tpl.Conditions)
	}
}

// Conditions are bound into the Fn::If calls that name them, so a Resolver
// with parameter values alone evaluates them; AWS::NoValue removes what it
// stands for.
func TestConditions(t *testing.T) {
	tpl := mustParse(t, `
Parameters:
  Count: {Type: Number, Default: 0}
  Key: {Type: String, Default: ""}
Conditions:
  HasCount: !Not [!Equals [!Ref Count, "0"]]
  HasKey: !Not [{"Fn::Equals": [!Ref Key, ""]}]
  Both: !And [{Condition: HasCount}, {Condition: HasKey}]
  Either: {"Fn::Or": [{Condition: HasCount}, {Condition: HasKey}]}
Resources:
  F:
    Type: AWS::Serverless::Function
    Condition: HasKey
    Properties:
      Reserved: !If [HasCount, !Ref Count, !Ref AWS::NoValue]
      Both: !If [Both, yes, no]
      Either: {"Fn::If": [Either, yes, no]}
      List: [a, !If [HasKey, !Ref Key, !Ref AWS::NoValue], b]
`)
	f, _ := tpl.Resource("F")
	for _, c := range []struct {
		count, key                 string
		reserved                   int
		both, either, list, absent string
	}{
		{"0", "", 7, "no", "no", "[a b]", "Reserved"},
		{"3", "", 3, "no", "yes", "[a b]", ""},
		{"3", "k", 3, "yes", "yes", "[a k b]", ""},
	} {
		r := &Resolver{Values: map[string]string{"Count": c.count, "Key": c.key}}
		if n, err := r.Int(f.Property("Reserved"), 7); err != nil || n != c.reserved {
			t.Errorf("%+v: Reserved = %d, %v", c, n, err)
		}
		got, err := r.Resolve(f.Properties)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		m := got.(map[string]any)
		if m["Both"] != c.both || m["Either"] != c.either || fmt.Sprint(m["List"]) != c.list {
			t.Errorf("%+v: resolved %v", c, m)
		}
		if _, present := m["Reserved"]; c.absent == "Reserved" && present {
			t.Errorf("%+v: AWS::NoValue left Reserved in %v", c, m)
		}
	}
	for src, want := range map[string]string{
		"Conditions: {A: {Condition: B}, B: {Condition: A}}\nResources: {}\n": "refers to itself",
		"Conditions: {A: {Condition: Nope}}\nResources: {}\n":                 "Nope is not defined",
	} {
		if _, err := parse("x.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", src, err, want)
		}
	}
}

func TestGlobalsMerge(t *testing.T) {
	tpl := mustParse(t, `
Globals:
  Function:
    Timeout: 10
    Layers: [a]
    Environment:
      Variables: {A: "1", B: "2"}
Resources:
  F:
    Type: AWS::Serverless::Function
    Properties:
      Layers: [b]
      Environment:
        Variables: {B: "3"}
      MemorySize: 512
`)
	f, _ := tpl.Resource("F")
	got, err := (&Resolver{}).Resolve(tpl.FunctionProperties(f))
	if err != nil {
		t.Fatal(err)
	}
	m := got.(map[string]any)
	vars := m["Environment"].(map[string]any)["Variables"].(map[string]any)
	if m["Timeout"] != 10 || m["MemorySize"] != 512 || !slices.Equal(m["Layers"].([]any), []any{"a", "b"}) || vars["A"] != "1" || vars["B"] != "3" {
		t.Errorf("merged %v", m)
	}
}

func TestResolver(t *testing.T) {
	r := &Resolver{
		Values:      PseudoParameters("st", "eu-west-1", "111122223333"),
		Resources:   map[string]Deployed{"Q": {Ref: "https://q", Attributes: map[string]string{"Arn": "arn:q"}}},
		NotDeployed: map[string]string{"Role": "AWS::IAM::Role"},
	}
	r.Values["Name"] = "n"
	for src, want := range map[string]any{
		`!Ref Name`:                          "n",
		`{Ref: AWS::Region}`:                 "eu-west-1",
		`!Ref Q`:                             "https://q",
		`!GetAtt Q.Arn`:                      "arn:q",
		`{"Fn::GetAtt": [Q, Arn]}`:           "arn:q",
		`!Sub "${AWS::StackName}-${Q.Arn}"`:  "st-arn:q",
		`!Sub "${!Literal} ${Name}"`:         "${Literal} n",
		`!Sub ["${x}/${Name}", {x: !Ref Q}]`: "https://q/n",
		`{"Fn::Sub": "${AWS::AccountId}"}`:   "111122223333",
		`!Join [":", [a, !Ref Name, 3]]`:     "a:n:3",
		`!Split [",", "a,,b"]`:               []any{"a", "", "b"},
		`!Select [1, !Split [",", "a,b"]]`:   "b",
		`{"Fn::Select": ["0", [x, y]]}`:      "x",
		`7`:                                  7,
		`[x, {y: !Ref Name}]`:                []any{"x", map[string]any{"y": "n"}},
	} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(src), &n); err != nil {
			t.Fatal(err)
		}
		got, err := r.Resolve(n.Content[0])
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		if gs, ws := yamlString(t, got), yamlString(t, want); gs != ws {
			t.Errorf("%s = %s, want %s", src, gs, ws)
		}
	}
	for src, unsupported := range map[string]bool{
		`!Ref Role`:               true, // declared, not deployed
		`!GetAtt Role.Arn`:        true,
		`!GetAtt Q.QueueName`:     true, // an attribute the world does not give
		`!GetAZs ""`:              true,
		`!Select [2, [a, b]]`:     false, // CloudFormation fails too
		`!Split ["", "a"]`:        false,
		`{"Fn::If": [c, a, b]}`:   false, // a condition no template defines: a mistake
		`!If [c, a]`:              false,
		`!Ref Nothing`:            false, // a mistake, not a limit of the world
		`!Sub "${Nothing}"`:       false,
		`!GetAtt NoDot`:           false,
		`!Join [",", notalist]`:   false,
		`!Join [",", [[nested]]]`: false,
	} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(src), &n); err != nil {
			t.Fatal(err)
		}
		_, err := r.Resolve(n.Content[0])
		if err == nil || errors.Is(err, ErrUnsupported) != unsupported {
			t.Errorf("%s: err = %v, want an error (ErrUnsupported: %v)", src, err, unsupported)
		}
	}
	if s, err := r.String(nil); s != "" || err != nil {
		t.Errorf("String(nil) = %q, %v", s, err)
	}
	if v, err := r.Int(nil, 42); v != 42 || err != nil {
		t.Errorf("Int(nil, 42) = %d, %v", v, err)
	}
}

func yamlString(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReference(t *testing.T) {
	for src, want := range map[string]string{
		`!GetAtt Q.Arn`:               "Q.Arn",
		`{"Fn::GetAtt": [Q, Arn]}`:    "Q.Arn",
		`{"Fn::GetAtt": "Q.Arn"}`:     "Q.Arn",
		`!Ref Q`:                      "Q.",
		`{Ref: Q}`:                    "Q.",
		`arn:aws:sqs:::elsewhere`:     "error",
		`!Sub "${Q.Arn}"`:             "error",
		`{Ref: Q, Other: x}`:          "error",
		`{"Fn::GetAtt": [Q, Arn, x]}`: "error",
	} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(src), &n); err != nil {
			t.Fatal(err)
		}
		id, attr, err := Reference(n.Content[0])
		got := id + "." + attr
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("Reference(%s) = %s (%v), want %s", src, got, err, want)
		}
	}
}

func TestParameterValues(t *testing.T) {
	tpl := mustParse(t, `
Parameters:
  Name: {Type: String, AllowedPattern: "[a-z]+"}
  Level: {Type: String, Default: info, AllowedValues: [info, debug]}
  Count: {Type: Number, Default: 3, MinValue: 2, MaxValue: 10}
Resources: {}
`)
	got, err := tpl.ParameterValues(map[string]string{"Name": "abc", "Count": "5"})
	if err != nil || got["Name"] != "abc" || got["Level"] != "info" || got["Count"] != "5" {
		t.Errorf("values %v, %v", got, err)
	}
	if d := tpl.Defaults(); len(d) != 2 || d["Count"] != "3" {
		t.Errorf("defaults %v", d)
	}
	_, err = tpl.ParameterValues(map[string]string{"Level": "loud", "Count": "11", "Other": "x"})
	for _, want := range []string{"Name has no Default", "Level=\"loud\": not one of", "Count=\"11\": outside [2, 10]", "Other is not in the template"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to say %q", err, want)
		}
	}
	if _, err := tpl.ParameterValues(map[string]string{"Name": "ABC"}); err == nil {
		t.Error("a value outside AllowedPattern was accepted")
	}
}

func TestNotATemplate(t *testing.T) {
	for _, src := range []string{"", "- a list", "Parameters: {}\n", "Resources: [a]\n"} {
		if _, err := parse("x.yaml", []byte(src)); err == nil {
			t.Errorf("%q parsed as a template", src)
		}
	}
}

// A resource with a Condition exists only where it holds; conditions may
// pick items of a comma-separated parameter (Fn::Select over Fn::Split),
// as template.yaml's termination hooks do.
func TestResourceConditions(t *testing.T) {
	tpl := mustParse(t, `
Parameters:
  Names: {Type: String, Default: ""}
Conditions:
  HasFirst: !Not [!Equals [!Select [0, !Split [",", !Sub "${Names},,"]], ""]]
  HasSecond: !Not [!Equals [!Select [1, !Split [",", !Sub "${Names},,"]], ""]]
Resources:
  Always: {Type: AWS::SQS::Queue}
  First: {Type: AWS::SQS::Queue, Condition: HasFirst}
  Second: {Type: AWS::SQS::Queue, Condition: HasSecond}
`)
	for names, want := range map[string]string{"": "Always", "a": "Always First", "a,b": "Always First Second"} {
		r := &Resolver{Values: map[string]string{"Names": names}}
		var got []string
		for _, res := range tpl.Resources {
			ok, err := tpl.Creates(r, res)
			if err != nil {
				t.Fatalf("%q: %v", names, err)
			}
			if ok {
				got = append(got, res.LogicalID)
			}
		}
		if strings.Join(got, " ") != want {
			t.Errorf("Names=%q creates %v, want %s", names, got, want)
		}
	}
	if _, err := parse("t.yaml", []byte("Resources:\n  X: {Type: AWS::SQS::Queue, Condition: Nope}\n")); err == nil {
		t.Error("a resource under an undefined condition was accepted")
	}
}
