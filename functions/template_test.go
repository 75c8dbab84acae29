package functions_test

// Tests that pin template.yaml to docs/contracts.md and to the code: the SSM
// documents and their allowedPatterns, the functions' environment, the event
// routing, the queues' dead-letter wiring, the Makefile targets SAM runs, and
// cfn-lint.

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	"pgregory.net/rapid"

	"github.com/tether-ecs/tether/internal/volspec"
	"github.com/tether-ecs/tether/test/testenv"
)

const templatePath = "../template.yaml"

// template is template.yaml as YAML nodes (short-form intrinsics such as
// !Ref keep their tag).
type template struct{ root *yaml.Node }

func loadTemplate(t *testing.T) template {
	t.Helper()
	b, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return template{root: doc.Content[0]}
}

// get walks mapping keys and sequence indexes ("0", "1"...); nil if absent.
func get(n *yaml.Node, path ...string) *yaml.Node {
	for _, p := range path {
		if n == nil {
			return nil
		}
		switch n.Kind {
		case yaml.MappingNode:
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					next = n.Content[i+1]
					break
				}
			}
			n = next
		case yaml.SequenceNode:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(n.Content) {
				return nil
			}
			n = n.Content[i]
		default:
			return nil
		}
	}
	return n
}

func (tp template) resource(t *testing.T, id string) *yaml.Node {
	t.Helper()
	r := get(tp.root, "Resources", id)
	if r == nil {
		t.Fatalf("template.yaml has no resource %s", id)
	}
	return r
}

// resources lists logical ids of the given type.
func (tp template) resources(typ string) []string {
	var ids []string
	rs := get(tp.root, "Resources")
	for i := 0; i+1 < len(rs.Content); i += 2 {
		if v := get(rs.Content[i+1], "Type"); v != nil && v.Value == typ {
			ids = append(ids, rs.Content[i].Value)
		}
	}
	return ids
}

func keys(n *yaml.Node) []string {
	var out []string
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		out = append(out, n.Content[i].Value)
	}
	slices.Sort(out)
	return out
}

func scalars(n *yaml.Node) []string {
	var out []string
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	for _, c := range n.Content {
		out = append(out, c.Value)
	}
	return out
}

func TestTemplateCfnLint(t *testing.T) {
	testenv.RequireCommands(t, "cfn-lint")
	cmd := exec.Command("cfn-lint", templatePath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil || out.Len() != 0 {
		t.Fatalf("cfn-lint %s: %v\n%s", templatePath, err, out.String())
	}
}

// docSpec is what docs/contracts.md says of each SSM document.
type docSpec struct {
	id, suffix, command string
	params              []string
	defaults            map[string]string
}

var documents = []docSpec{
	{"MountDocument", "-mount", "tether-agent mount", []string{"Device", "FsType", "VolumeId", "VolumeName"},
		map[string]string{"FsType": "ext4", "Device": ""}},
	{"UnmountDocument", "-unmount", "tether-agent unmount", []string{"Force", "VolumeId", "VolumeName"},
		map[string]string{"Force": "false"}},
	{"StatusDocument", "-status", "tether-agent status", nil, nil},
}

var placeholder = regexp.MustCompile(`{{\s*([A-Za-z0-9_]+)\s*}}`)

func TestSSMDocumentsMatchContract(t *testing.T) {
	tp := loadTemplate(t)
	if got := tp.resources("AWS::SSM::Document"); len(got) != len(documents) {
		t.Errorf("SSM documents %v, want exactly %d", got, len(documents))
	}
	for _, d := range documents {
		t.Run(d.id, func(t *testing.T) {
			r := tp.resource(t, d.id)
			props := get(r, "Properties")
			if name := get(props, "Name"); name == nil || name.Tag != "!Sub" || name.Value != "${AWS::StackName}"+d.suffix {
				t.Errorf("Name = %v, want !Sub ${AWS::StackName}%s", name, d.suffix)
			}
			if v := get(props, "DocumentType"); v == nil || v.Value != "Command" {
				t.Errorf("DocumentType %v, want Command", v)
			}
			content := get(props, "Content")
			if v := get(content, "schemaVersion"); v == nil || v.Value != "2.2" {
				t.Errorf("schemaVersion %v, want 2.2", v)
			}
			params := get(content, "parameters")
			if got := keys(params); !slices.Equal(got, d.params) {
				t.Errorf("parameters %v, want %v", got, d.params)
			}
			for _, p := range d.params {
				pat := get(params, p, "allowedPattern")
				if pat == nil || pat.Value == "" {
					t.Errorf("parameter %s has no allowedPattern", p)
					continue
				}
				if typ := get(params, p, "type"); typ == nil || typ.Value != "String" {
					t.Errorf("parameter %s: type %v, want String", p, typ)
				}
				if def, ok := d.defaults[p]; ok {
					v := get(params, p, "default")
					if v == nil || v.Value != def {
						t.Errorf("parameter %s: default %v, want %q", p, v, def)
					} else if !compile(t, pat.Value).MatchString(def) {
						t.Errorf("parameter %s: default %q does not match its own allowedPattern", p, def)
					}
				}
			}
			step := get(content, "mainSteps", "0")
			if v := get(step, "action"); v == nil || v.Value != "aws:runShellScript" {
				t.Errorf("mainSteps[0].action %v, want aws:runShellScript", v)
			}
			if n := len(get(content, "mainSteps").Content); n != 1 {
				t.Errorf("%d steps, want 1", n)
			}
			script := strings.Join(scalars(get(step, "inputs", "runCommand")), "\n")
			if !strings.Contains(script, "exec "+d.command) {
				t.Errorf("script does not run %q:\n%s", d.command, script)
			}
			if !strings.Contains(script, "--json") {
				t.Errorf("script does not ask for --json:\n%s", script)
			}
			// Every placeholder names a declared parameter, inside single quotes.
			used := map[string]bool{}
			for _, m := range placeholder.FindAllStringSubmatchIndex(script, -1) {
				name := script[m[2]:m[3]]
				used[name] = true
				if !slices.Contains(d.params, name) {
					t.Errorf("script uses undeclared parameter %s", name)
				}
				if m[0] == 0 || script[m[0]-1] != '\'' || m[1] >= len(script) || script[m[1]] != '\'' {
					t.Errorf("placeholder %s is not inside single quotes", script[m[0]:m[1]])
				}
			}
			for _, p := range d.params {
				if !used[p] {
					t.Errorf("parameter %s is declared but never used", p)
				}
			}
		})
	}
}

// compile reads an allowedPattern the way the local world's SSM does
// (anchored, Go RE2): it must also be a pattern SSM accepts, so no
// lookaround or backreferences.
func compile(t *testing.T, pattern string) *regexp.Regexp {
	t.Helper()
	re, err := regexp.Compile(`^(?:` + pattern + `)$`)
	if err != nil {
		t.Fatalf("allowedPattern %q: %v", pattern, err)
	}
	return re
}

func allowedPattern(t *testing.T, doc, param string) *regexp.Regexp {
	t.Helper()
	tp := loadTemplate(t)
	p := get(tp.resource(t, doc), "Properties", "Content", "parameters", param, "allowedPattern")
	if p == nil {
		t.Fatalf("%s has no allowedPattern for %s", doc, param)
	}
	return compile(t, p.Value)
}

// Characters that must never reach the shell through a parameter.
const shellSpecial = " \t\n\r'\"`$\\;|&<>(){}*?[]!#~=%^,:@+\x00"

var hostileValues = []string{
	"", "..", "a..b", "../etc", "a/b", "/abs", "-rf", "--force", ".hidden", "a b", "a;b", "a|b", "a&b", "$(id)", "a`id`",
	"a'b", `a"b`, "a\nb", "a\tb", "a\\b", "a*", "a?", "é", "a\x00b", "{{ VolumeId }}", "x' ; reboot ; '",
	"rexray-vol\n", " rexray-vol", "vol-0123abcd'", strings.Repeat("a", 511),
}

func TestVolumeNamePatternAgreesWithVolspec(t *testing.T) {
	for _, doc := range []string{"MountDocument", "UnmountDocument"} {
		re := allowedPattern(t, doc, "VolumeName")
		valid := []string{"rexray-vol", "a", "A", "0", "a.", "a.b.c", "v1.2_x", "ecs-mysql-3-data-d2b1c9e8f0a1b2c3d4e5",
			"task-5b1f0c2d9e8a4f7b8c6d1e2f3a4b5c6d-data", strings.Repeat("a", 255), "a" + strings.Repeat(".b", 127)}
		for _, v := range valid {
			if volspec.ValidateName(v) != nil {
				t.Fatalf("test bug: %q is not a valid name", v)
			}
			if !re.MatchString(v) {
				t.Errorf("%s VolumeName refuses valid name %q", doc, v)
			}
		}
		for _, v := range hostileValues {
			if re.MatchString(v) {
				t.Errorf("%s VolumeName accepts %q", doc, v)
			}
		}
		rapid.Check(t, func(rt *rapid.T) {
			// Names over Docker's alphabet plus a few hostile characters.
			s := rapid.StringOfN(rapid.SampledFrom([]rune("ab09Z_.-./ '$;\n")), 1, 300, -1).Draw(rt, "name")
			valid := volspec.ValidateName(s) == nil
			accepted := re.MatchString(s)
			if valid && !accepted {
				rt.Fatalf("valid name %q refused", s)
			}
			if accepted {
				if strings.ContainsAny(s, shellSpecial+"/") || strings.Contains(s, "..") || len(s) > 510 || s[0] == '.' || s[0] == '-' {
					rt.Fatalf("pattern accepts unsafe %q", s)
				}
				// Within 255 characters the pattern is exactly volspec.
				if len(s) <= volspec.MaxNameLength && !valid {
					rt.Fatalf("pattern accepts %q, volspec refuses it", s)
				}
			}
		})
	}
}

func TestVolumeIDPatternIsVolspec(t *testing.T) {
	for _, doc := range []string{"MountDocument", "UnmountDocument"} {
		re := allowedPattern(t, doc, "VolumeId")
		for _, v := range []string{"vol-0123abcd", "vol-0123456789abcdef0", "vol-0c8f3e2a1b4d5e6f7"} {
			if !re.MatchString(v) {
				t.Errorf("%s VolumeId refuses %q", doc, v)
			}
		}
		for _, v := range append(hostileValues, "vol-", "vol-0123abc", "vol-0123ABCD", "vol-0123456789abcdef01", "vol-0123abcd;id") {
			if re.MatchString(v) {
				t.Errorf("%s VolumeId accepts %q", doc, v)
			}
		}
		rapid.Check(t, func(rt *rapid.T) {
			s := "vol-" + rapid.StringOfN(rapid.SampledFrom([]rune("0123456789abcdefA; ")), 0, 20, -1).Draw(rt, "hex")
			if got, want := re.MatchString(s), volspec.ValidateVolumeID(s) == nil; got != want {
				rt.Fatalf("%q: pattern %v, volspec %v", s, got, want)
			}
		})
	}
}

func TestOtherParameterPatterns(t *testing.T) {
	cases := []struct {
		doc, param string
		accept     []string
	}{
		{"MountDocument", "FsType", []string{"ext4", "xfs"}},
		{"MountDocument", "Device", []string{"", "/dev/xvdf", "/dev/sdf", "/dev/xvdba", "/dev/sdz"}},
		{"UnmountDocument", "Force", []string{"true", "false"}},
	}
	extra := []string{"ext3", "btrfs", "EXT4", "/dev/xvda", "/dev/nvme1n1", "/dev/xvdf1", "/dev/xvdabc", "/dev/../sda", "/dev/sdf;id", "TRUE", "yes", "1"}
	for _, c := range cases {
		re := allowedPattern(t, c.doc, c.param)
		for _, v := range c.accept {
			if !re.MatchString(v) {
				t.Errorf("%s %s refuses %q", c.doc, c.param, v)
			}
		}
		for _, v := range append(hostileValues, extra...) {
			if slices.Contains(c.accept, v) {
				continue
			}
			if re.MatchString(v) {
				t.Errorf("%s %s accepts %q", c.doc, c.param, v)
			}
		}
	}
}

func TestFunctionEnvironmentMatchesContract(t *testing.T) {
	tp := loadTemplate(t)
	vars := get(tp.root, "Globals", "Function", "Environment", "Variables")
	want := map[string][2]string{ // variable -> (tag, value)
		"TETHER_CLUSTER":          {"!Ref", "ClusterName"},
		"TETHER_MOUNT_DOCUMENT":   {"!Ref", "MountDocument"},
		"TETHER_UNMOUNT_DOCUMENT": {"!Ref", "UnmountDocument"},
		"TETHER_STATUS_DOCUMENT":  {"!Ref", "StatusDocument"},
		"TETHER_RETRY_QUEUE_URL":  {"!Ref", "RetryQueue"},
	}
	for name, w := range want {
		v := get(vars, name)
		if v == nil || v.Tag != w[0] || v.Value != w[1] {
			t.Errorf("%s = %v, want %s %s", name, v, w[0], w[1])
		}
	}
	// Nothing in a function's own Environment may override the contract.
	for _, fn := range tp.resources("AWS::Serverless::Function") {
		for _, name := range keys(get(tp.resource(t, fn), "Properties", "Environment", "Variables")) {
			if _, ok := want[name]; ok {
				t.Errorf("%s overrides %s", fn, name)
			}
		}
	}
}

// route is one line of docs/contracts.md's Events section.
type route struct {
	rule, source, detailType, queue, function string
}

var routes = []route{
	{"TaskStateRule", "aws.ecs", "ECS Task State Change", "TaskQueue", "TaskStateFunction"},
	{"InstanceStateRule", "aws.ecs", "ECS Container Instance State Change", "InstanceQueue", "DrainFunction"},
	{"VolumeRule", "aws.ec2", "EBS Volume Notification", "VolumeQueue", "TaskStateFunction"},
	{"CommandRule", "aws.ssm", "EC2 Command Invocation Status-change Notification", "VolumeQueue", "TaskStateFunction"},
}

func TestEventRoutingMatchesContract(t *testing.T) {
	tp := loadTemplate(t)
	if got := tp.resources("AWS::Events::Rule"); len(got) != len(routes) {
		t.Errorf("rules %v, want %d", got, len(routes))
	}
	for _, r := range routes {
		rule := get(tp.resource(t, r.rule), "Properties")
		pat := get(rule, "EventPattern")
		if got := scalars(get(pat, "source")); !slices.Equal(got, []string{r.source}) {
			t.Errorf("%s source %v, want [%s]", r.rule, got, r.source)
		}
		if got := scalars(get(pat, "detail-type")); !slices.Equal(got, []string{r.detailType}) {
			t.Errorf("%s detail-type %v, want [%s]", r.rule, got, r.detailType)
		}
		if r.source == "aws.ssm" {
			// Only tether's own documents (their Name), only commands that ended.
			var docs []string
			for _, d := range get(pat, "detail", "document-name").Content {
				docs = append(docs, d.Tag+" "+d.Value)
			}
			if !slices.Equal(docs, []string{"!Sub ${AWS::StackName}-mount", "!Sub ${AWS::StackName}-unmount"}) {
				t.Errorf("%s document-name %v, want the mount and unmount documents' names", r.rule, docs)
			}
			for _, d := range []string{"MountDocument", "UnmountDocument"} {
				if n := get(tp.resource(t, d), "Properties", "Name"); n == nil || n.Tag != "!Sub" || !slices.Contains(docs, "!Sub "+n.Value) {
					t.Errorf("%s is not named as %s matches it: %v", d, r.rule, n)
				}
			}
			if got := scalars(get(pat, "detail", "status")); !slices.Equal(got, []string{"Success", "Failed", "TimedOut", "Cancelled"}) {
				t.Errorf("%s status %v, want the final ones", r.rule, got)
			}
		}
		if r.source == "aws.ecs" {
			arn := get(pat, "detail", "clusterArn", "0")
			if arn == nil || arn.Tag != "!Sub" || arn.Value != "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:cluster/${ClusterName}" {
				t.Errorf("%s is not filtered to the cluster's ARN: %v", r.rule, arn)
			}
		}
		target := get(rule, "Targets", "0", "Arn")
		if target == nil || target.Tag != "!GetAtt" || target.Value != r.queue+".Arn" {
			t.Errorf("%s target %v, want %s.Arn", r.rule, target, r.queue)
		}
		if !sqsEventOf(tp, t, r.function, r.queue) {
			t.Errorf("%s does not consume %s", r.function, r.queue)
		}
		// Only the rule may send to its queue.
		found := false
		for _, id := range tp.resources("AWS::SQS::QueuePolicy") {
			p := get(tp.resource(t, id), "Properties")
			if q := get(p, "Queues", "0"); q == nil || q.Value != r.queue {
				continue
			}
			found = true
			st := get(p, "PolicyDocument", "Statement")
			if len(st.Content) != 1 {
				t.Errorf("%s: %d statements, want 1", id, len(st.Content))
			}
			s := st.Content[0]
			if get(s, "Principal", "Service").Value != "events.amazonaws.com" || get(s, "Action").Value != "sqs:SendMessage" {
				t.Errorf("%s does not admit exactly events.amazonaws.com SendMessage", id)
			}
			// The rules that route to this queue, and only they.
			var want []string
			for _, o := range routes {
				if o.queue == r.queue {
					want = append(want, o.rule+".Arn")
				}
			}
			got := scalars(get(s, "Condition", "ArnEquals", "aws:SourceArn"))
			if slices.Sort(got); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
				t.Errorf("%s: aws:SourceArn %v, want %v", id, got, want)
			}
		}
		if !found {
			t.Errorf("no queue policy for %s", r.queue)
		}
	}
	if !sqsEventOf(tp, t, "TaskStateFunction", "RetryQueue") {
		t.Error("no function consumes RetryQueue")
	}
	sweep := get(tp.resource(t, "SweepFunction"), "Properties", "Events", "Sweep")
	if get(sweep, "Type").Value != "Schedule" || get(sweep, "Properties", "Schedule").Value != "rate(1 minute)" {
		t.Errorf("sweep schedule %v", sweep)
	}
}

// Every queue is on a handoff's path: its events are worked as soon as a
// poller has them (no batching window), in batches Lambda allows without
// one (at most 10); the taskstate function's reserved concurrency covers
// its three queues' pollers.
func TestQueuesDoNotWaitToBatch(t *testing.T) {
	tp := loadTemplate(t)
	n := 0
	for _, fn := range tp.resources("AWS::Serverless::Function") {
		evs := get(tp.resource(t, fn), "Properties", "Events")
		for _, name := range keys(evs) {
			ev := get(evs, name)
			if get(ev, "Type").Value != "SQS" {
				continue
			}
			n++
			props := get(ev, "Properties")
			if w := get(props, "MaximumBatchingWindowInSeconds"); w == nil || w.Value != "0" {
				t.Errorf("%s.%s: batching window %v, want 0", fn, name, w)
			}
			if b := get(props, "BatchSize"); b == nil {
				t.Errorf("%s.%s: no BatchSize (Lambda's default, 10, is fine, but say it)", fn, name)
			} else if n, err := strconv.Atoi(b.Value); err != nil || n < 1 || n > 10 {
				t.Errorf("%s.%s: BatchSize %q, want 1 to 10", fn, name, b.Value)
			}
			if c := get(props, "ScalingConfig", "MaximumConcurrency"); c == nil || c.Tag != "!Ref" || c.Value != "QueueConcurrency" {
				t.Errorf("%s.%s: MaximumConcurrency %v, want !Ref QueueConcurrency", fn, name, c)
			}
		}
	}
	if n != 4 {
		t.Errorf("%d SQS events, want 4", n)
	}
	def := func(p string) int {
		v, err := strconv.Atoi(get(tp.root, "Parameters", p, "Default").Value)
		if err != nil {
			t.Fatalf("%s default: %v", p, err)
		}
		return v
	}
	if r, q := def("ReservedConcurrency"), def("QueueConcurrency"); r < 3*q {
		t.Errorf("ReservedConcurrency default %d < 3 x QueueConcurrency default %d: the taskstate pollers would be throttled", r, q)
	}
}

// sqsEventOf reports whether function has an SQS event on queue, and checks
// that every SQS event answers with partial batch responses.
func sqsEventOf(tp template, t *testing.T, function, queue string) bool {
	t.Helper()
	evs := get(tp.resource(t, function), "Properties", "Events")
	found := false
	for _, name := range keys(evs) {
		ev := get(evs, name)
		if get(ev, "Type").Value != "SQS" {
			continue
		}
		if got := scalars(get(ev, "Properties", "FunctionResponseTypes")); !slices.Equal(got, []string{"ReportBatchItemFailures"}) {
			t.Errorf("%s.%s: FunctionResponseTypes %v", function, name, got)
		}
		if q := get(ev, "Properties", "Queue"); q != nil && q.Value == queue+".Arn" {
			found = true
		}
	}
	return found
}

func TestEveryQueueHasAnAlarmedDeadLetterQueue(t *testing.T) {
	tp := loadTemplate(t)
	dlqs := map[string]bool{}
	for _, q := range []string{"TaskQueue", "InstanceQueue", "VolumeQueue", "RetryQueue"} {
		rp := get(tp.resource(t, q), "Properties", "RedrivePolicy")
		if n := get(rp, "maxReceiveCount"); n == nil || n.Value != "5" {
			t.Errorf("%s maxReceiveCount %v, want 5", q, n)
		}
		dlq := get(rp, "deadLetterTargetArn")
		if dlq == nil || dlq.Tag != "!GetAtt" || !strings.HasSuffix(dlq.Value, ".Arn") {
			t.Errorf("%s deadLetterTargetArn %v", q, dlq)
			continue
		}
		name := strings.TrimSuffix(dlq.Value, ".Arn")
		if dlqs[name] {
			t.Errorf("%s shares its dead-letter queue %s", q, name)
		}
		dlqs[name] = true
	}
	for _, id := range tp.resources("AWS::CloudWatch::Alarm") {
		p := get(tp.resource(t, id), "Properties")
		if v := get(p, "Dimensions", "0", "Value"); v != nil && v.Tag == "!GetAtt" && get(p, "Namespace").Value == "AWS/SQS" {
			delete(dlqs, strings.TrimSuffix(v.Value, ".QueueName"))
		}
	}
	for q := range dlqs {
		t.Errorf("dead-letter queue %s has no alarm", q)
	}
}

// sam build runs `make build-<LogicalId>` in CodeUri (functions/).
func TestMakefileBuildsEveryFunction(t *testing.T) {
	tp := loadTemplate(t)
	mk, err := os.ReadFile("Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if get(tp.root, "Globals", "Function", "CodeUri").Value != "functions/" {
		t.Error("CodeUri is not functions/")
	}
	fns := tp.resources("AWS::Serverless::Function")
	if len(fns) != 3 {
		t.Errorf("functions %v, want 3", fns)
	}
	for _, fn := range fns {
		if m := get(tp.resource(t, fn), "Metadata", "BuildMethod"); m == nil || m.Value != "makefile" {
			t.Errorf("%s: BuildMethod %v, want makefile", fn, m)
		}
		if !regexp.MustCompile(`(?m)^build-` + fn + `:`).Match(mk) {
			t.Errorf("functions/Makefile has no build-%s target", fn)
		}
	}
	for _, k := range [][]string{{"Runtime", "provided.al2023"}, {"Handler", "bootstrap"}} {
		if v := get(tp.root, "Globals", "Function", k[0]); v == nil || v.Value != k[1] {
			t.Errorf("%s %v, want %s", k[0], v, k[1])
		}
	}
	if got := scalars(get(tp.root, "Globals", "Function", "Architectures")); !slices.Equal(got, []string{"arm64"}) {
		t.Errorf("Architectures %v, want [arm64]", got)
	}
}

// statement is one IAM statement of ReconcilerPolicy, flattened for checks.
type statement struct {
	sid        string
	actions    []string
	resources  []string // values, or the !Sub text
	conditions map[string]map[string][]string
}

func policyStatements(t *testing.T, tp template) []statement {
	t.Helper()
	var out []statement
	for _, s := range get(tp.resource(t, "ReconcilerPolicy"), "Properties", "PolicyDocument", "Statement").Content {
		if e := get(s, "Effect"); e == nil || e.Value != "Allow" {
			t.Errorf("statement %v is not an Allow", get(s, "Sid"))
		}
		st := statement{sid: get(s, "Sid").Value, actions: scalars(get(s, "Action")), conditions: map[string]map[string][]string{}}
		if r := get(s, "Resource"); r.Kind == yaml.SequenceNode {
			st.resources = scalars(r)
		} else {
			st.resources = []string{r.Value}
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

// The reconciler's permissions keep its hands off everything that is not
// tether's: pinned here so a later edit cannot widen them unnoticed.
func TestReconcilerPolicyIsScopedToTetherVolumes(t *testing.T) {
	tp := loadTemplate(t)
	sts := policyStatements(t, tp)
	volumeARN := "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:volume/*"
	granted := map[string]bool{}
	for _, st := range sts {
		for _, a := range st.actions {
			granted[a] = true
			if strings.Contains(a, "*") {
				t.Errorf("%s grants wildcard action %s", st.sid, a)
			}
		}
		owned := st.conditions["StringEquals"]["aws:ResourceTag/tether:cluster"]
		for _, a := range st.actions {
			switch a {
			case "ec2:AttachVolume", "ec2:DetachVolume", "ec2:ModifyVolume", "ec2:DeleteVolume":
				if slices.Contains(st.resources, volumeARN) && !slices.Equal(owned, []string{"ClusterName"}) {
					t.Errorf("%s: %s on volumes without aws:ResourceTag/tether:cluster", st.sid, a)
				}
			}
			if a == "ec2:DeleteVolume" && !slices.Equal(st.conditions["StringEquals"]["aws:ResourceTag/tether:scope"], []string{"task"}) {
				t.Errorf("%s: DeleteVolume not limited to tether:scope=task volumes", st.sid)
			}
			if a == "ec2:CreateVolume" && slices.Contains(st.resources, volumeARN) &&
				!slices.Equal(st.conditions["StringEquals"]["aws:RequestTag/tether:cluster"], []string{"ClusterName"}) {
				t.Errorf("%s: CreateVolume without aws:RequestTag/tether:cluster", st.sid)
			}
			if a == "ec2:CreateTags" {
				createOnly := slices.Equal(st.conditions["StringEquals"]["ec2:CreateAction"], []string{"CreateVolume"})
				adopt := slices.Equal(st.conditions["Null"]["aws:ResourceTag/tether:cluster"], []string{"true"}) &&
					slices.Equal(st.conditions["StringEquals"]["aws:RequestTag/tether:scope"], []string{"shared"})
				if !createOnly && !adopt && !slices.Equal(owned, []string{"ClusterName"}) {
					t.Errorf("%s: CreateTags on volumes tether does not own", st.sid)
				}
			}
			if a == "ecs:StopTask" && len(st.conditions["ArnEquals"]["ecs:cluster"]) != 1 {
				t.Errorf("%s: StopTask not limited to the cluster", st.sid)
			}
			if a == "ssm:SendCommand" {
				for _, r := range st.resources {
					if strings.Contains(r, ":document/") && !strings.HasPrefix(strings.SplitN(r, ":document/", 2)[1], "${AWS::StackName}-") {
						t.Errorf("%s: SendCommand on a document not tether's: %s", st.sid, r)
					}
				}
			}
		}
	}
	// What the core calls (functions/internal/cloud) must be granted.
	for _, a := range []string{
		"ec2:DescribeVolumes", "ec2:DescribeInstances", "ec2:CreateVolume", "ec2:AttachVolume", "ec2:DetachVolume",
		"ec2:DeleteVolume", "ec2:CreateTags", "ecs:ListTasks", "ecs:DescribeTasks", "ecs:DescribeTaskDefinition",
		"ecs:ListContainerInstances", "ecs:DescribeContainerInstances", "ecs:StopTask",
		"ssm:SendCommand", "ssm:GetCommandInvocation", "ssm:ListCommands", "sqs:SendMessage",
	} {
		if !granted[a] {
			t.Errorf("%s is not granted", a)
		}
	}
}
