package functions_test

// Tests that pin template.yaml to docs/contracts.md and to the code: the SSM
// documents and their allowedPatterns, the functions' environment, the event
// routing, the queues' dead-letter wiring, the Makefile targets SAM runs, and
// cfn-lint. IAM is in template_iam_test.go; alarms, the dashboard and the
// outputs in template_ops_test.go.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	"pgregory.net/rapid"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/internal/volspec"
	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/cfntemplate"
	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/worldapi"
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

// intrinsic renders a short-form intrinsic as "!Tag value" (its arguments
// joined with spaces, a plain list in brackets, "" for an empty string) for
// comparisons.
func intrinsic(n *yaml.Node) string {
	if n == nil {
		return "<nil>"
	}
	if n.Kind == yaml.SequenceNode {
		var parts []string
		for _, c := range n.Content {
			parts = append(parts, intrinsic(c))
		}
		if n.Tag == "!!seq" {
			return "[" + strings.Join(parts, " ") + "]"
		}
		return strings.TrimSpace(n.Tag + " " + strings.Join(parts, " "))
	}
	if strings.HasPrefix(n.Tag, "!!") {
		if n.Value == "" {
			return `""`
		}
		return n.Value
	}
	return strings.TrimSpace(n.Tag + " " + n.Value)
}

// cfn-lint with its informational checks: the template carries no
// exception, so any finding fails.
func TestTemplateCfnLint(t *testing.T) {
	testenv.RequireCommands(t, "cfn-lint")
	cmd := exec.Command("cfn-lint", "--include-checks", "I", "--", templatePath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil || out.Len() != 0 {
		t.Fatalf("cfn-lint --include-checks I %s: %v\n%s", templatePath, err, out.String())
	}
}

// docSpec is what docs/contracts.md and internal/agentproto say of each
// SSM document.
type docSpec struct {
	id, suffix, step, command string
	params                    []string
	defaults                  map[string]string
}

var documents = []docSpec{
	{"MountDocument", "-mount", agentproto.StepMount, "mount",
		[]string{agentproto.ParamVolumeID, agentproto.ParamVolumeName, agentproto.ParamFSType, agentproto.ParamDevice,
			agentproto.ParamFormatIfBlank, agentproto.ParamSizeGiB, agentproto.ParamAttachment, agentproto.ParamFormatOwner, agentproto.ParamDevSuid},
		map[string]string{agentproto.ParamFSType: volspec.FSExt4, agentproto.ParamDevice: "", agentproto.ParamFormatIfBlank: "false",
			agentproto.ParamSizeGiB: "0", agentproto.ParamAttachment: "", agentproto.ParamFormatOwner: "", agentproto.ParamDevSuid: "false"}},
	{"UnmountDocument", "-unmount", agentproto.StepUnmount, "unmount",
		[]string{agentproto.ParamVolumeID, agentproto.ParamVolumeName, agentproto.ParamForce, agentproto.ParamAttachment, agentproto.ParamReleasedFor},
		map[string]string{agentproto.ParamForce: "false", agentproto.ParamAttachment: "", agentproto.ParamReleasedFor: ""}},
	{"StatusDocument", "-status", agentproto.StepStatus, "status", nil, nil},
}

// agentPath is where the hosts install tether-agent; the documents call it
// by this path, never through PATH.
const agentPath = "/usr/local/bin/tether-agent"

var placeholder = regexp.MustCompile(`{{\s*([A-Za-z0-9_]+)\s*}}`)

// reservedDocumentPrefixes: SSM refuses document names that start with
// these (botocore's ssm model, CreateDocumentRequest.Name), in any case.
var reservedDocumentPrefixes = []string{"aws", "amazon", "amzn", "awsec2", "awsconfigremediation", "awssupport"}

func TestSSMDocumentsMatchContract(t *testing.T) {
	tp := loadTemplate(t)
	if got := tp.resources("AWS::SSM::Document"); len(got) != len(documents) {
		t.Errorf("SSM documents %v, want exactly %d", got, len(documents))
	}
	for _, d := range documents {
		t.Run(d.id, func(t *testing.T) {
			r := tp.resource(t, d.id)
			props := get(r, "Properties")
			// tether-<stack><suffix>: whatever the stack is called, the name
			// starts with tether-, never with a prefix SSM reserves, and a
			// stack name of 113 characters still fits SSM's 128.
			name := get(props, "Name")
			if name == nil || name.Tag != "!Sub" || name.Value != "tether-${AWS::StackName}"+d.suffix {
				t.Errorf("Name = %v, want !Sub tether-${AWS::StackName}%s", intrinsic(name), d.suffix)
			}
			for _, stack := range []string{"aws", "amazon-ecs", "AWSSupport", "amzn", strings.Repeat("s", 113)} {
				n := strings.ReplaceAll(name.Value, "${AWS::StackName}", stack)
				for _, p := range reservedDocumentPrefixes {
					if strings.HasPrefix(strings.ToLower(n), p) {
						t.Errorf("stack %q names the document %q, which SSM refuses (prefix %s)", stack, n, p)
					}
				}
				if !regexp.MustCompile(`^[a-zA-Z0-9_\-.]{3,128}$`).MatchString(n) {
					t.Errorf("stack %q names the document %q, which is not a valid SSM document name", stack, n)
				}
			}
			if v := get(props, "DocumentType"); v == nil || v.Value != "Command" {
				t.Errorf("DocumentType %v, want Command", v)
			}
			content := get(props, "Content")
			if v := get(content, "schemaVersion"); v == nil || v.Value != "2.2" {
				t.Errorf("schemaVersion %v, want 2.2", v)
			}
			params := get(content, "parameters")
			if got, want := keys(params), slices.Sorted(slices.Values(d.params)); !slices.Equal(got, want) {
				t.Errorf("parameters %v, want %v", got, want)
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
				if it := get(params, p, "interpolationType"); it == nil || it.Value != "ENV_VAR" {
					t.Errorf("parameter %s: interpolationType %v, want ENV_VAR (SSM_%s in the script's environment)", p, it, p)
				}
				def, hasDefault := d.defaults[p]
				v := get(params, p, "default")
				switch {
				case !hasDefault && v != nil:
					t.Errorf("parameter %s has a default %q; the reconciler must always give it", p, v.Value)
				case hasDefault && (v == nil || v.Value != def):
					t.Errorf("parameter %s: default %v, want %q", p, v, def)
				case hasDefault && !compile(t, pat.Value).MatchString(def):
					t.Errorf("parameter %s: default %q does not match its own allowedPattern", p, def)
				}
			}
			checkSteps(t, d, get(content, "mainSteps"))
		})
	}
}

// checkSteps: every step but the last refuses a platform other than Linux
// (SSM skips a step whose action the platform does not support and calls
// that Success); the last runs tether-agent on Linux.
func checkSteps(t *testing.T, d docSpec, steps *yaml.Node) {
	t.Helper()
	if steps == nil || len(steps.Content) != 3 {
		t.Fatalf("mainSteps %v, want 3 (refuse Windows, refuse macOS, run on Linux)", steps)
	}
	platformOf := func(step *yaml.Node) string {
		eq := get(step, "precondition", "StringEquals")
		if got := scalars(eq); len(got) != 2 || got[0] != "platformType" || len(keys(get(step, "precondition"))) != 1 {
			t.Errorf("step %s: precondition %v, want StringEquals [platformType, P]", get(step, "name").Value, got)
			return ""
		}
		return scalars(eq)[1]
	}
	for i, want := range []struct{ platform, action string }{{"Windows", "aws:runPowerShellScript"}, {"MacOS", "aws:runShellScript"}} {
		step := steps.Content[i]
		if platformOf(step) != want.platform || get(step, "action").Value != want.action {
			t.Errorf("step %d: %s on %s, want %s on %s", i, get(step, "action").Value, platformOf(step), want.action, want.platform)
		}
		lines := scalars(get(step, "inputs", "runCommand"))
		if len(lines) != 2 || lines[1] != "exit 1" || !strings.Contains(lines[0], "Linux") {
			t.Errorf("step %d does not fail with a message naming Linux: %q", i, lines)
		}
	}
	step := steps.Content[2]
	if platformOf(step) != "Linux" || get(step, "action").Value != "aws:runShellScript" || get(step, "name").Value != d.step {
		t.Errorf("last step: %s %s on %s, want aws:runShellScript %s on Linux", get(step, "action").Value, get(step, "name").Value, platformOf(step), d.step)
	}
	if n := get(step, "inputs", "timeoutSeconds"); n == nil {
		t.Errorf("step %s has no timeoutSeconds", d.step)
	}
	script := strings.Join(scalars(get(step, "inputs", "runCommand")), "\n")
	if !strings.Contains(script, "exec "+agentPath+" "+d.command+" ") && !strings.HasSuffix(script, "exec "+agentPath+" "+d.command) {
		t.Errorf("script does not exec %s %s:\n%s", agentPath, d.command, script)
	}
	if strings.Count(script, "tether-agent") != 1 {
		t.Errorf("script names tether-agent other than by %s once:\n%s", agentPath, script)
	}
	// Every placeholder names a declared parameter, inside double quotes:
	// substituted as text (SSM Agent before 3.3.2746.0) it is a quoted
	// word, and if SSM puts a reference to SSM_<Name> in its place it still
	// expands as one word. Never in single quotes (a reference would stay
	// literal), never bare.
	used := map[string]bool{}
	for _, m := range placeholder.FindAllStringSubmatchIndex(script, -1) {
		name := script[m[2]:m[3]]
		used[name] = true
		if !slices.Contains(d.params, name) {
			t.Errorf("script uses undeclared parameter %s", name)
		}
		if m[0] == 0 || script[m[0]-1] != '"' || m[1] >= len(script) || script[m[1]] != '"' {
			t.Errorf("placeholder %s is not a whole double-quoted word", script[m[0]:m[1]])
		}
	}
	for _, p := range d.params {
		// ReleasedFor is the functions' bookkeeping, read back from SSM
		// (agentproto.ParamReleasedFor): the agent never sees it.
		if !used[p] && p != agentproto.ParamReleasedFor {
			t.Errorf("parameter %s is declared but never used", p)
		}
	}
}

// The Linux step's script, run by a real /bin/sh with tether-agent replaced
// by a recorder, gives the agent the flags docs/contracts.md names, with
// parameters given as text (older SSM agents) and as SSM_<Name>
// environment variables alike; in the second form a hostile value stays one
// literal argument.
func TestDocumentScriptsGiveTheAgentItsFlags(t *testing.T) {
	testenv.RequireCommands(t, "sh")
	tp := loadTemplate(t)
	dir := t.TempDir()
	recorder := filepath.Join(dir, "tether-agent")
	if err := os.WriteFile(recorder, []byte("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const vol, name = "vol-0123456789abcdef0", "rexray-vol"
	token := agentproto.AttachmentToken("i-0123456789abcdef0", 1733456789123)
	cases := []struct {
		doc    string
		params map[string]string
		want   []string // the agent's argv, flags sorted after the command
	}{
		{"MountDocument", map[string]string{"VolumeId": vol, "VolumeName": name},
			[]string{"mount", "--fstype=ext4", "--json", "--name=" + name, "--size-gib=0", "--volume-id=" + vol}},
		{"MountDocument", map[string]string{"VolumeId": vol, "VolumeName": name, "FsType": "xfs", "Device": "/dev/xvdba", "FormatIfBlank": "true",
			"SizeGiB": "65536", "Attachment": token},
			[]string{"mount", "--attachment=" + token, "--device=/dev/xvdba", "--format-if-blank", "--fstype=xfs", "--json", "--name=" + name,
				"--size-gib=65536", "--volume-id=" + vol}},
		{"MountDocument", map[string]string{"VolumeId": vol, "VolumeName": name, "FormatIfBlank": "true", "FormatOwner": "1000:1000"},
			[]string{"mount", "--format-if-blank", "--format-owner=1000:1000", "--fstype=ext4", "--json", "--name=" + name, "--size-gib=0", "--volume-id=" + vol}},
		{"MountDocument", map[string]string{"VolumeId": vol, "VolumeName": name, "DevSuid": "true"},
			[]string{"mount", "--dev-suid", "--fstype=ext4", "--json", "--name=" + name, "--size-gib=0", "--volume-id=" + vol}},
		{"UnmountDocument", map[string]string{"VolumeId": vol, "VolumeName": name},
			[]string{"unmount", "--json", "--name=" + name, "--volume-id=" + vol}},
		{"UnmountDocument", map[string]string{"VolumeId": vol, "VolumeName": name, "Force": "true", "Attachment": token},
			[]string{"unmount", "--attachment=" + token, "--force", "--json", "--name=" + name, "--volume-id=" + vol}},
		{"StatusDocument", nil, []string{"status", "--json"}},
	}
	for i, c := range cases {
		content := get(tp.resource(t, c.doc), "Properties", "Content")
		params := get(content, "parameters")
		values := map[string]string{}
		for _, p := range keys(params) {
			if def := get(params, p, "default"); def != nil {
				values[p] = def.Value
			}
		}
		for k, v := range c.params {
			if !compile(t, get(params, k, "allowedPattern").Value).MatchString(v) {
				t.Fatalf("test bug: %s=%q does not match its allowedPattern", k, v)
			}
			values[k] = v
		}
		steps := get(content, "mainSteps").Content
		script := strings.Join(scalars(get(steps[len(steps)-1], "inputs", "runCommand")), "\n")
		script = strings.ReplaceAll(script, agentPath, recorder)
		for _, mode := range []string{"text", "env"} {
			t.Run(fmt.Sprintf("%d-%s-%s", i, c.doc, mode), func(t *testing.T) {
				argv := runScript(t, script, values, mode)
				if got := agentArgs(argv); !slices.Equal(got, c.want) {
					t.Errorf("agent argv %q (as %v), want %v", argv, got, c.want)
				}
			})
		}
	}
	// Passed as environment variables, even a value no allowedPattern
	// admits reaches the agent as one literal argument.
	content := get(tp.resource(t, "MountDocument"), "Properties", "Content")
	steps := get(content, "mainSteps").Content
	script := strings.ReplaceAll(strings.Join(scalars(get(steps[len(steps)-1], "inputs", "runCommand")), "\n"), agentPath, recorder)
	hostile := `x"; touch ` + filepath.Join(dir, "pwned") + `; echo "$(id)`
	argv := runScript(t, script, map[string]string{"VolumeId": vol, "VolumeName": hostile, "FsType": "ext4", "Device": "",
		"FormatIfBlank": "false", "SizeGiB": "0", "Attachment": "", "FormatOwner": "", "DevSuid": "false"}, "env")
	if !slices.Contains(argv, hostile) {
		t.Errorf("hostile value not passed literally: %q", argv)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Error("a parameter value ran as a command")
	}
}

// runScript runs script with /bin/sh: mode "text" substitutes each
// {{ Name }} with its value; "env" puts a reference to SSM_<Name> there and
// the value in the environment. It returns the recorder's argv.
func runScript(t *testing.T, script string, values map[string]string, mode string) []string {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", placeholder.ReplaceAllStringFunc(script, func(m string) string {
		name := placeholder.FindStringSubmatch(m)[1]
		if mode == "env" {
			return "${SSM_" + name + "}"
		}
		return values[name]
	}))
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if mode == "env" {
		for k, v := range values {
			cmd.Env = append(cmd.Env, "SSM_"+k+"="+v)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sh: %v\n%s", err, stderr.String())
	}
	return strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
}

// agentArgs turns an argv into the command followed by its flags sorted, a
// flag and its value joined with "=".
func agentArgs(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	boolFlags := map[string]bool{"--json": true, "--format-if-blank": true, "--force": true}
	var flags []string
	for i := 1; i < len(argv); i++ {
		if boolFlags[argv[i]] || i+1 == len(argv) {
			flags = append(flags, argv[i])
			continue
		}
		flags = append(flags, argv[i]+"="+argv[i+1])
		i++
	}
	slices.Sort(flags)
	return append([]string{argv[0]}, flags...)
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

// Characters that must never reach the shell through a parameter. Not the
// comma, which the unmount's lists need (agentproto.ListSep): the scripts
// use every value as one double-quoted word, where a comma means nothing,
// and its one meaning outside quotes, brace expansion, needs a brace.
const shellSpecial = " \t\n\r'\"`$\\;|&<>(){}*?[]!#~=%^@+\x00"

var hostileValues = []string{
	"..", "a..b", "../etc", "a/b", "/abs", "-rf", "--force", ".hidden", "a b", "a;b", "a|b", "a&b", "$(id)", "a`id`",
	"a'b", `a"b`, "a\nb", "a\tb", "a\\b", "a*", "a?", "é", "a\x00b", "{{ VolumeId }}", "x' ; reboot ; '", `x" ; reboot ; "`,
	"rexray-vol\n", " rexray-vol", "vol-0123abcd'", strings.Repeat("a", 401),
}

// Every parameter of every document: no value its pattern accepts carries
// a character the shell gives a meaning inside double quotes or between
// words.
func TestNoPatternAdmitsShellSyntax(t *testing.T) {
	for _, d := range documents {
		for _, p := range d.params {
			re := allowedPattern(t, d.id, p)
			for _, v := range hostileValues {
				if re.MatchString(v) && strings.ContainsAny(v, shellSpecial+"\n") {
					t.Errorf("%s %s accepts %q", d.id, p, v)
				}
			}
			rapid.Check(t, func(rt *rapid.T) {
				s := rapid.StringOfN(rapid.SampledFrom([]rune("aZ09_.-:/"+shellSpecial)), 0, 80, -1).Draw(rt, "value")
				if re.MatchString(s) && strings.ContainsAny(s, shellSpecial) {
					rt.Fatalf("%s %s accepts %q", d.id, p, s)
				}
			})
		}
	}
}

func TestVolumeNamePatternAgreesWithVolspec(t *testing.T) {
	for _, doc := range []string{"MountDocument", "UnmountDocument"} {
		re := allowedPattern(t, doc, agentproto.ParamVolumeName)
		// The unmount's VolumeName is a list of names (agentproto.ListSep):
		// its pattern cannot count each one's characters (RE2 bounds nested
		// repeats), so tether-agent checks each name's length.
		list := doc == "UnmountDocument"
		valid := []string{"rexray-vol", "a", "A", "0", "a.", "a.b.c", "v1.2_x", "ecs-mysql-3-data-d2b1c9e8f0a1b2c3d4e5",
			volspec.TaskVolumeName("arn:aws:ecs:us-east-1:123456789012:task/c/5b1f0c2d9e8a4f7b8c6d1e2f3a4b5c6d", "data"),
			strings.Repeat("a", volspec.MaxNameLength), "a" + strings.Repeat(".b", (volspec.MaxNameLength-1)/2)}
		for _, v := range valid {
			if volspec.ValidateName(v) != nil {
				t.Fatalf("test bug: %q is not a valid name", v)
			}
			if !re.MatchString(v) {
				t.Errorf("%s VolumeName refuses valid name %q", doc, v)
			}
		}
		if names := strings.Join(valid[:agentproto.MaxBatch/3], agentproto.ListSep); list && !re.MatchString(names) {
			t.Errorf("%s VolumeName refuses a list of valid names %q", doc, names)
		}
		if names := strings.Repeat("a,", agentproto.MaxBatch) + "a"; list && re.MatchString(names) {
			t.Errorf("%s VolumeName accepts %d names", doc, agentproto.MaxBatch+1)
		}
		for _, v := range append(hostileValues, "", "a,", ",a", "a,,b") {
			if list && len(v) > volspec.MaxNameLength && !strings.ContainsAny(v, shellSpecial+"/.") {
				continue // only too long: the agent refuses it
			}
			if re.MatchString(v) {
				t.Errorf("%s VolumeName accepts %q", doc, v)
			}
		}
		rapid.Check(t, func(rt *rapid.T) {
			// Names over Docker's alphabet plus a few hostile characters.
			s := rapid.StringOfN(rapid.SampledFrom([]rune("ab09Z_.-./ '\"$;\n")), 1, 450, -1).Draw(rt, "name")
			valid := volspec.ValidateName(s) == nil
			accepted := re.MatchString(s)
			if valid && !accepted {
				rt.Fatalf("valid name %q refused", s)
			}
			if accepted {
				if strings.ContainsAny(s, shellSpecial+"/") || strings.Contains(s, "..") || !list && len(s) > 400 || s[0] == '.' || s[0] == '-' {
					rt.Fatalf("pattern accepts unsafe %q", s)
				}
				// Within volspec's length the pattern is exactly volspec.
				if len(s) <= volspec.MaxNameLength && !valid {
					rt.Fatalf("pattern accepts %q, volspec refuses it", s)
				}
			}
		})
	}
}

func TestVolumeIDPatternIsVolspec(t *testing.T) {
	for _, doc := range []string{"MountDocument", "UnmountDocument"} {
		re := allowedPattern(t, doc, agentproto.ParamVolumeID)
		for _, v := range []string{"vol-0123abcd", "vol-0123456789abcdef0", "vol-0c8f3e2a1b4d5e6f7"} {
			if !re.MatchString(v) {
				t.Errorf("%s VolumeId refuses %q", doc, v)
			}
		}
		for _, v := range append(hostileValues, "", "vol-", "vol-0123abc", "vol-0123ABCD", "vol-0123456789abcdef01", "vol-0123abcd;id") {
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

// Device: exactly EC2's device names (volspec), or "" for none. Every
// candidate /dev/sd* and /dev/xvd* name of one or two letters is tried.
func TestDevicePatternIsVolspec(t *testing.T) {
	re := allowedPattern(t, "MountDocument", agentproto.ParamDevice)
	if !re.MatchString("") {
		t.Error("Device refuses the empty default")
	}
	letters := "abcdefghijklmnopqrstuvwxyz"
	n := 0
	for _, prefix := range []string{"/dev/sd", "/dev/xvd", "/dev/hd", "/dev/nvme"} {
		for _, a := range letters {
			names := []string{prefix + string(a), prefix + string(a) + "1"}
			for _, b := range letters {
				names = append(names, prefix+string(a)+string(b))
			}
			for _, name := range names {
				n++
				if got, want := re.MatchString(name), volspec.ValidateDeviceName(name) == nil; got != want {
					t.Errorf("Device %q: pattern %v, volspec %v", name, got, want)
				}
			}
		}
	}
	for _, v := range append(hostileValues, "/dev/../sda", "/dev/sdf;id", "/dev/xvdf\n") {
		if re.MatchString(v) {
			t.Errorf("Device accepts %q", v)
		}
	}
	t.Logf("%d device names compared with volspec", n)
}

// SizeGiB: 0 (unknown) or a whole number of GiB EBS allows (1 to 65536),
// written without sign or leading zero.
func TestSizeGiBPattern(t *testing.T) {
	re := allowedPattern(t, "MountDocument", agentproto.ParamSizeGiB)
	for n := 0; n <= 70000; n++ {
		if got := re.MatchString(strconv.Itoa(n)); got != (n <= 65536) {
			t.Fatalf("SizeGiB %d: accepted %v", n, got)
		}
	}
	for _, v := range append(hostileValues, "", "00", "01", "+1", "-1", "1.0", "1e3", " 1", "65536 ", "0x10", "１") {
		if re.MatchString(v) {
			t.Errorf("SizeGiB accepts %q", v)
		}
	}
}

// Attachment: "" or a token agentproto accepts, exactly.
func TestAttachmentPatternIsAgentproto(t *testing.T) {
	for _, doc := range []string{"MountDocument", "UnmountDocument"} {
		re := allowedPattern(t, doc, agentproto.ParamAttachment)
		for _, v := range []string{"", agentproto.AttachmentToken("i-0123456789abcdef0", 1733456789123), agentproto.AttachmentToken("i-01234567", 0)} {
			if !re.MatchString(v) {
				t.Errorf("%s Attachment refuses %q", doc, v)
			}
		}
		rapid.Check(t, func(rt *rapid.T) {
			s := rapid.StringOfN(rapid.SampledFrom([]rune("i-09af:._Z;$ '\"/\n")), 0, 70, -1).Draw(rt, "token")
			if got, want := re.MatchString(s), agentproto.ValidateAttachment(s) == nil; got != want {
				rt.Fatalf("%q: pattern %v, agentproto %v", s, got, want)
			}
		})
	}
}

// FormatOwner: "" or what agentproto.ParseFormatOwner accepts, exactly
// (numeric UID[:GID], 0 to 2^31-2, no sign, no leading zero).
func TestFormatOwnerPatternIsAgentproto(t *testing.T) {
	re := allowedPattern(t, "MountDocument", agentproto.ParamFormatOwner)
	same := func(s string) bool {
		_, err := agentproto.ParseFormatOwner(s)
		return re.MatchString(s) == (err == nil)
	}
	var edges []string
	for _, n := range []int64{0, 1, 9, 10, 999999999, 1000000000, 1999999999, 2000000000, 2099999999, 2100000000, 2139999999, 2140000000,
		2146999999, 2147000000, 2147399999, 2147400000, 2147479999, 2147480000, 2147482999, 2147483000, 2147483599, 2147483600,
		2147483639, 2147483640, 2147483645, 2147483646, 2147483647, 2147483648, 2999999999, 9999999999, 10000000000} {
		edges = append(edges, strconv.FormatInt(n, 10), "1000:"+strconv.FormatInt(n, 10), strconv.FormatInt(n, 10)+":0")
	}
	for _, s := range append(append(edges, hostileValues...), "", "1000:1000", "app", "app:staff", "1000:staff", "00", "01", "-1", "+1", ":", "1:", ":1", "1:2:3", "１") {
		if !same(s) {
			_, err := agentproto.ParseFormatOwner(s)
			t.Errorf("FormatOwner %q: pattern %v, agentproto %v", s, re.MatchString(s), err)
		}
	}
	rapid.Check(t, func(rt *rapid.T) {
		s := rapid.StringOfN(rapid.SampledFrom([]rune("0123456789:-a ")), 0, 23, -1).Draw(rt, "owner")
		if !same(s) {
			rt.Fatalf("%q: pattern %v, agentproto disagrees", s, re.MatchString(s))
		}
	})
	for n := int64(2147483600); n <= 2147483700; n++ {
		if !same(strconv.FormatInt(n, 10)) {
			t.Fatalf("FormatOwner %d: pattern and agentproto disagree", n)
		}
	}
}

func TestOtherParameterPatterns(t *testing.T) {
	cases := []struct {
		doc, param string
		accept     []string
	}{
		{"MountDocument", agentproto.ParamFSType, []string{volspec.FSExt4, volspec.FSXFS}},
		{"MountDocument", agentproto.ParamFormatIfBlank, []string{"true", "false"}},
		{"UnmountDocument", agentproto.ParamForce, []string{"true", "false"}},
	}
	extra := []string{"", "ext3", "btrfs", "EXT4", "TRUE", "yes", "1", "true ", "false\n"}
	for _, c := range cases {
		re := allowedPattern(t, c.doc, c.param)
		for _, v := range c.accept {
			if !re.MatchString(v) {
				t.Errorf("%s %s refuses %q", c.doc, c.param, v)
			}
		}
		for _, v := range append(hostileValues, extra...) {
			if !slices.Contains(c.accept, v) && re.MatchString(v) {
				t.Errorf("%s %s accepts %q", c.doc, c.param, v)
			}
		}
		if c.param == agentproto.ParamFSType {
			for _, v := range []string{"ext4", "xfs", "ext2", "vfat", "XFS"} {
				if got, want := re.MatchString(v), volspec.ValidateFSType(v) == nil; got != want {
					t.Errorf("FsType %q: pattern %v, volspec %v", v, got, want)
				}
			}
		}
	}
}

// The functions' environment: the documents, the retry queue, the cluster,
// and the defaults for volumes tether creates.
func TestFunctionEnvironmentMatchesContract(t *testing.T) {
	tp := loadTemplate(t)
	vars := get(tp.root, "Globals", "Function", "Environment", "Variables")
	want := map[string][2]string{ // variable -> (tag, value)
		"TETHER_CLUSTER":             {"!Ref", "ClusterName"},
		"TETHER_MOUNT_DOCUMENT":      {"!Ref", "MountDocument"},
		"TETHER_UNMOUNT_DOCUMENT":    {"!Ref", "UnmountDocument"},
		"TETHER_STATUS_DOCUMENT":     {"!Ref", "StatusDocument"},
		"TETHER_RETRY_QUEUE_URL":     {"!Ref", "RetryQueue"},
		"TETHER_LOG_LEVEL":           {"!Ref", "LogLevel"},
		"TETHER_DEFAULT_VOLUME_TYPE": {"!Ref", "DefaultVolumeType"},
		"TETHER_DEFAULT_SIZE_GIB":    {"!Ref", "DefaultSizeGiB"},
		"TETHER_EXTRA_TAGS":          {"!Ref", "ExtraVolumeTags"},
		"TETHER_KMS_KEY_ID":          {"!Ref", "DefaultKmsKeyId"},
	}
	if got := keys(vars); !slices.Equal(got, slices.Sorted(func(yield func(string) bool) {
		for k := range want {
			if !yield(k) {
				return
			}
		}
	})) {
		t.Errorf("environment %v", got)
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
	// The defaults agree with volspec: a default volume type needs no
	// IOPS (io1/io2 require them), the default size suits every type
	// offered, extra tags default to none.
	params := get(tp.root, "Parameters")
	for _, typ := range scalars(get(params, "DefaultVolumeType", "AllowedValues")) {
		size := get(params, "DefaultSizeGiB", "Default").Value
		if typ == "st1" || typ == "sc1" {
			size = "125"
		}
		if _, err := volspec.ParseDriverOpts(map[string]string{volspec.OptVolumeType: typ, volspec.OptSize: size}); err != nil {
			t.Errorf("DefaultVolumeType %s: %v", typ, err)
		}
	}
	if d := get(params, "DefaultVolumeType", "Default").Value; d != volspec.DefaultVolumeType {
		t.Errorf("DefaultVolumeType default %s, volspec's %s", d, volspec.DefaultVolumeType)
	}
	if d := get(params, "DefaultSizeGiB", "Default").Value; d != strconv.Itoa(volspec.DefaultSizeGiB) {
		t.Errorf("DefaultSizeGiB default %s, volspec's %d", d, volspec.DefaultSizeGiB)
	}
	tags := compile(t, get(params, "ExtraVolumeTags", "AllowedPattern").Value)
	for _, v := range []string{"{}", `{"CostCenter":"1234"}`, `{ "a" : "b" , "team":"db" }`, `{"k":""}`} {
		var m map[string]string
		if !tags.MatchString(v) || json.Unmarshal([]byte(v), &m) != nil {
			t.Errorf("ExtraVolumeTags %s: pattern %v", v, tags.MatchString(v))
		}
	}
	for _, v := range []string{"", "[]", `{"a":1}`, `{"a":"b",}`, `{"a\"":"b"}`, `{"a":"b"}{"c":"d"}`, `{"a":["b"]}`} {
		if tags.MatchString(v) {
			t.Errorf("ExtraVolumeTags accepts %s", v)
		}
	}
	kms := compile(t, get(params, "DefaultKmsKeyId", "AllowedPattern").Value)
	for _, v := range []string{"", "alias/tether", "1234abcd-12ab-34cd-56ef-1234567890ab", "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"} {
		if !kms.MatchString(v) {
			t.Errorf("DefaultKmsKeyId refuses %q", v)
		}
		if v != "" {
			if _, err := volspec.ParseDriverOpts(map[string]string{volspec.OptKMSKeyID: v}); err != nil {
				t.Errorf("DefaultKmsKeyId %q accepted, but volspec refuses it as a kmskeyid: %v", v, err)
			}
		}
	}
}

// route is one line of docs/contracts.md's Events section; condition names
// the template condition a rule exists under ("" always).
type route struct {
	rule, source, detailType, queue, function, condition string
}

// sourceArn is how a queue policy names the route's rule.
func (r route) sourceArn() string {
	if r.condition != "" {
		return "!If " + r.condition + " !GetAtt " + r.rule + ".Arn !Ref AWS::NoValue"
	}
	return "!GetAtt " + r.rule + ".Arn"
}

var routes = []route{
	{"TaskStateRule", "aws.ecs", "ECS Task State Change", "TaskQueue", "TaskStateFunction", ""},
	{"InstanceStateRule", "aws.ecs", "ECS Container Instance State Change", "InstanceQueue", "DrainFunction", ""},
	{"InstanceDisconnectedRule", "aws.ecs", "ECS Container Instance State Change", "InstanceQueue", "DrainFunction", ""},
	{"VolumeRule", "aws.ec2", "EBS Volume Notification", "VolumeQueue", "TaskStateFunction", ""},
	{"CommandRule", "aws.ssm", "EC2 Command Invocation Status-change Notification", "VolumeQueue", "TaskStateFunction", ""},
	{"HostStateRule", "aws.ec2", "EC2 Instance State-change Notification", "HostsQueue", "HostsFunction", ""},
	{"SpotWarningRule", "aws.ec2", "EC2 Spot Instance Interruption Warning", "HostsQueue", "HostsFunction", ""},
	{"HostDisconnectedRule", "aws.ecs", "ECS Container Instance State Change", "HostsQueue", "HostsFunction", ""},
	{"TerminationHoldRule", "aws.autoscaling", "EC2 Instance-terminate Lifecycle Action", "HostsQueue", "HostsFunction", "HoldsGroups"},
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
			if !slices.Equal(docs, []string{"!Sub tether-${AWS::StackName}-mount", "!Sub tether-${AWS::StackName}-unmount"}) {
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
		if n := len(get(rule, "Targets").Content); n != 1 {
			t.Errorf("%s has %d targets, want 1", r.rule, n)
		}
		target := get(rule, "Targets", "0", "Arn")
		if target == nil || target.Tag != "!GetAtt" || target.Value != r.queue+".Arn" {
			t.Errorf("%s target %v, want %s.Arn", r.rule, target, r.queue)
		}
		if dlq := get(rule, "Targets", "0", "DeadLetterConfig", "Arn"); intrinsic(dlq) != "!GetAtt RuleDeadLetterQueue.Arn" {
			t.Errorf("%s target's dead-letter queue %v, want !GetAtt RuleDeadLetterQueue.Arn", r.rule, intrinsic(dlq))
		}
		if !sqsEventOf(tp, t, r.function, r.queue) {
			t.Errorf("%s does not consume %s", r.function, r.queue)
		}
		// Only the rules may send to their queue.
		checkQueuePolicy(t, tp, r.queue, func() []string {
			var want []string
			for _, o := range routes {
				if o.queue == r.queue {
					want = append(want, o.sourceArn())
				}
			}
			return want
		}())
	}
	if !sqsEventOf(tp, t, "TaskStateFunction", "RetryQueue") {
		t.Error("no function consumes RetryQueue")
	}
	sweep := get(tp.resource(t, "SweepFunction"), "Properties", "Events", "Sweep")
	if get(sweep, "Type").Value != "Schedule" || get(sweep, "Properties", "Schedule").Value != "rate(1 minute)" {
		t.Errorf("sweep schedule %v", sweep)
	}
	if dlq := get(sweep, "Properties", "DeadLetterConfig", "Arn"); intrinsic(dlq) != "!GetAtt RuleDeadLetterQueue.Arn" {
		t.Errorf("the sweep schedule's dead-letter queue %v", intrinsic(dlq))
	}
	// The rules' dead-letter queue takes undelivered events from every rule
	// (SweepFunctionSweep is the rule SAM makes for the schedule).
	var all []string
	for _, r := range routes {
		all = append(all, r.sourceArn())
	}
	checkQueuePolicy(t, tp, "RuleDeadLetterQueue", append(all, "!GetAtt SweepFunctionSweep.Arn"))
}

// checkQueuePolicy: the queue's policy admits exactly events.amazonaws.com
// SendMessage from the given rule ARNs.
func checkQueuePolicy(t *testing.T, tp template, queue string, sourceArns []string) {
	t.Helper()
	found := false
	for _, id := range tp.resources("AWS::SQS::QueuePolicy") {
		p := get(tp.resource(t, id), "Properties")
		if q := get(p, "Queues", "0"); q == nil || q.Value != queue {
			continue
		}
		found = true
		st := get(p, "PolicyDocument", "Statement")
		if len(st.Content) != 1 {
			t.Errorf("%s: %d statements, want 1", id, len(st.Content))
			continue
		}
		s := st.Content[0]
		if get(s, "Principal", "Service").Value != "events.amazonaws.com" || get(s, "Action").Value != "sqs:SendMessage" ||
			intrinsic(get(s, "Resource")) != "!GetAtt "+queue+".Arn" {
			t.Errorf("%s does not admit exactly events.amazonaws.com SendMessage to %s", id, queue)
		}
		var got []string
		switch a := get(s, "Condition", "ArnEquals", "aws:SourceArn"); {
		case a == nil:
		case a.Kind == yaml.SequenceNode:
			for _, c := range a.Content {
				got = append(got, intrinsic(c))
			}
		default:
			got = []string{intrinsic(a)}
		}
		if slices.Sort(got); !slices.Equal(got, slices.Sorted(slices.Values(sourceArns))) {
			t.Errorf("%s: aws:SourceArn %v, want %v", id, got, sourceArns)
		}
	}
	if !found {
		t.Errorf("no queue policy for %s", queue)
	}
}

// The rules as EventBridge applies them (the world's matcher) to events/:
// the cluster's EC2 tasks, instances that release volumes, EBS events and
// tether's own commands reach their queues; Fargate tasks, another
// cluster's, and live instances' changes reach none.
func TestRulesRouteTheSampleEvents(t *testing.T) {
	tpl, err := cfntemplate.Load(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	// The samples' cluster and account; a stack named demo runs documents
	// tether-demo-mount and tether-demo-unmount.
	values := cfntemplate.PseudoParameters("demo", "us-east-1", "123456789012")
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
	want := map[string][]string{ // sample -> queues
		"task-provisioning.json":         {"TaskQueue"},
		"task-running.json":              nil, // started: nothing to act on, so the rule leaves it out
		"task-stopped-drain.json":        {"TaskQueue"},
		"task-stopped-failed.json":       {"TaskQueue"},
		"task-pending-two-volumes.json":  {"TaskQueue"},
		"foreign-fargate-task.json":      nil,
		"foreign-other-cluster.json":     nil,
		"instance-draining.json":         {"InstanceQueue"},
		"instance-active.json":           nil,
		"volume-attached.json":           {"VolumeQueue"},
		"volume-detached.json":           {"VolumeQueue"},
		"command-unmount-succeeded.json": {"VolumeQueue"},
		"scheduled.json":                 nil,
	}
	for file, queues := range want {
		raw, err := os.ReadFile(filepath.Join("..", "events", file))
		if err != nil {
			t.Fatal(err)
		}
		var ev worldapi.Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var got []string
		for _, route := range routes {
			if patterns[route.rule].Match(ev) && !slices.Contains(got, route.queue) {
				got = append(got, route.queue)
			}
		}
		if !slices.Equal(got, queues) {
			t.Errorf("%s goes to %v, want %v", file, got, queues)
		}
	}
	// A disconnected agent on an ACTIVE instance: its tasks may never send
	// STOPPED, so drain looks at its volumes.
	disconnected := worldapi.Event{Source: "aws.ecs", DetailType: "ECS Container Instance State Change",
		Detail: json.RawMessage(`{"clusterArn":"arn:aws:ecs:us-east-1:123456789012:cluster/tether-demo","status":"ACTIVE","agentConnected":false}`)}
	if !patterns["InstanceDisconnectedRule"].Match(disconnected) || patterns["InstanceStateRule"].Match(disconnected) {
		t.Error("a disconnected ACTIVE instance's event is not routed by InstanceDisconnectedRule alone")
	}
}

// Every queue is on a handoff's path: its events are worked as soon as a
// poller has them (no batching window), in batches Lambda allows without
// one (at most 10); MaximumConcurrency, not a reservation, bounds the rate.
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
	if n != 5 {
		t.Errorf("%d SQS events, want 5", n)
	}
}

// No function reserves concurrency unless the operator asks
// (ReservedConcurrency, default 0): a reservation fails the deploy on new
// and small accounts.
func TestNoReservedConcurrencyByDefault(t *testing.T) {
	tp := loadTemplate(t)
	p := get(tp.root, "Parameters", "ReservedConcurrency")
	if d := get(p, "Default"); d == nil || d.Value != "0" || get(p, "MinValue").Value != "0" {
		t.Errorf("ReservedConcurrency default %v, want 0 (none)", d)
	}
	if c := intrinsic(get(tp.root, "Conditions", "HasReservedConcurrency")); c != `!Not !Equals !Ref ReservedConcurrency 0` {
		t.Errorf("HasReservedConcurrency = %s", c)
	}
	want := map[string]string{"TaskStateFunction": "!Ref ReservedConcurrency", "DrainFunction": "!Ref QueueConcurrency", "SweepFunction": "1",
		"HostsFunction": "!Ref QueueConcurrency"}
	for _, fn := range tp.resources("AWS::Serverless::Function") {
		got := intrinsic(get(tp.resource(t, fn), "Properties", "ReservedConcurrentExecutions"))
		if w := "!If HasReservedConcurrency " + want[fn] + " !Ref AWS::NoValue"; got != w {
			t.Errorf("%s ReservedConcurrentExecutions %s, want %s", fn, got, w)
		}
	}
	if get(tp.root, "Globals", "Function", "ReservedConcurrentExecutions") != nil {
		t.Error("Globals reserve concurrency")
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

// consumedQueues maps each queue a function polls to the function.
func consumedQueues(t *testing.T, tp template) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, fn := range tp.resources("AWS::Serverless::Function") {
		evs := get(tp.resource(t, fn), "Properties", "Events")
		for _, name := range keys(evs) {
			if q := get(evs, name, "Properties", "Queue"); get(evs, name, "Type").Value == "SQS" && q != nil {
				out[strings.TrimSuffix(q.Value, ".Arn")] = fn
			}
		}
	}
	return out
}

func TestEveryQueueHasAnAlarmedDeadLetterQueue(t *testing.T) {
	tp := loadTemplate(t)
	dlqs := map[string]bool{"RuleDeadLetterQueue": true}
	timeout, _ := strconv.Atoi(get(tp.root, "Globals", "Function", "Timeout").Value)
	for q := range consumedQueues(t, tp) {
		props := get(tp.resource(t, q), "Properties")
		rp := get(props, "RedrivePolicy")
		if n := get(rp, "maxReceiveCount"); n == nil || n.Value != "5" {
			t.Errorf("%s maxReceiveCount %v, want 5", q, n)
		}
		// AWS's guidance for a Lambda event source: at least 6 x the
		// function's timeout.
		if v, _ := strconv.Atoi(get(props, "VisibilityTimeout").Value); v < 6*timeout {
			t.Errorf("%s VisibilityTimeout %d, want at least 6 x %d", q, v, timeout)
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
		src, _ := strconv.Atoi(get(props, "MessageRetentionPeriod").Value)
		if ret, _ := strconv.Atoi(get(tp.resource(t, name), "Properties", "MessageRetentionPeriod").Value); ret <= src {
			t.Errorf("%s keeps messages %d s, no longer than its source %s (%d s)", name, ret, q, src)
		}
	}
	if len(dlqs) != 6 {
		t.Errorf("dead-letter queues %v, want one per consumed queue and the rules'", dlqs)
	}
	for _, id := range tp.resources("AWS::CloudWatch::Alarm") {
		p := get(tp.resource(t, id), "Properties")
		if v := get(p, "Dimensions", "0", "Value"); v != nil && v.Tag == "!GetAtt" && get(p, "Namespace").Value == "AWS/SQS" &&
			get(p, "MetricName").Value == "ApproximateNumberOfMessagesVisible" {
			delete(dlqs, strings.TrimSuffix(v.Value, ".QueueName"))
		}
	}
	for q := range dlqs {
		t.Errorf("dead-letter queue %s has no alarm", q)
	}
	for _, q := range tp.resources("AWS::SQS::Queue") {
		r := tp.resource(t, q)
		if get(r, "DeletionPolicy").Value != "Delete" || get(r, "UpdateReplacePolicy").Value != "Delete" {
			t.Errorf("%s: DeletionPolicy and UpdateReplacePolicy are not both Delete", q)
		}
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
	if len(fns) != 4 {
		t.Errorf("functions %v, want 4", fns)
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

// samconfig.toml: sam build builds every time (a cached build would deploy
// a bootstrap older than a change under internal/), in source (go.mod is
// above functions/), and no cluster is assumed.
func TestSamconfig(t *testing.T) {
	raw, err := os.ReadFile("../samconfig.toml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	for _, bad := range []string{"cached", "tether-demo"} {
		if strings.Contains(s, bad) {
			t.Errorf("samconfig.toml mentions %q", bad)
		}
	}
	if regexp.MustCompile(`(?m)^parameter_overrides`).MatchString(s) {
		t.Error("samconfig.toml overrides parameters (the cluster is the deployer's to name)")
	}
	if !regexp.MustCompile(`(?m)^build_in_source = true`).MatchString(s) {
		t.Error("samconfig.toml does not build in source")
	}
}
