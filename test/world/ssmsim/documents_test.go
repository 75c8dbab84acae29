package ssmsim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"gopkg.in/yaml.v3"

	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// AWS-RunShellScript as a user sends it: commands, workingDirectory and
// executionTimeout as AWS defines them (minItems 1, maxChars 4096, the
// 1..172800 pattern, defaults "" and "3600"), run on the node by the
// aws:runShellScript plugin, one line per command, in the working
// directory.
func TestAWSRunShellScript(t *testing.T) {
	w := newWorld(t, latency.Instant())
	ctx := context.Background()
	w.a.set(worldapi.CommandResult{Stdout: "a\nb\n"}, nil)
	out, err := w.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunShellScript"), InstanceIds: []string{instA},
		Parameters: map[string][]string{"commands": {"echo a", "echo b"}, "workingDirectory": {"/var/lib/it's"}, "executionTimeout": {"120"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := out.Command
	if got := aws.ToTime(c.ExpiresAfter).Sub(aws.ToTime(c.RequestedDateTime)).Round(time.Second); got != (3600+120)*time.Second {
		t.Errorf("ExpiresAfter %v after the request, want the default 3600 s delivery timeout + executionTimeout 120", got)
	}
	inv := w.waitInvocation(t, *c.CommandId, instA)
	if inv.Status != types.CommandInvocationStatusSuccess || aws.ToString(inv.PluginName) != "aws:runShellScript" || aws.ToString(inv.StandardOutputContent) != "a\nb\n" {
		t.Errorf("invocation %s plugin %q output %q", inv.Status, aws.ToString(inv.PluginName), aws.ToString(inv.StandardOutputContent))
	}
	if want := "cd -- '/var/lib/it'\\''s' || exit 1\necho a\necho b\n"; w.a.lastScript() != want {
		t.Errorf("script %q, want %q", w.a.lastScript(), want)
	}

	out, err = w.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunShellScript"), InstanceIds: []string{instA},
		Parameters: map[string][]string{"commands": {"uptime"}}})
	if err != nil {
		t.Fatal(err)
	}
	w.waitInvocation(t, *out.Command.CommandId, instA)
	if w.a.lastScript() != "uptime\n" || !slices.Equal(out.Command.Parameters["executionTimeout"], []string{"3600"}) ||
		!slices.Equal(out.Command.Parameters["workingDirectory"], []string{""}) {
		t.Errorf("defaults: script %q, parameters %v", w.a.lastScript(), out.Command.Parameters)
	}

	for name, params := range map[string]map[string][]string{
		"no commands":             {"executionTimeout": {"60"}},
		"empty commands":          {"commands": {}},
		"timeout 0":               {"commands": {"true"}, "executionTimeout": {"0"}},
		"timeout past 48 h":       {"commands": {"true"}, "executionTimeout": {"172801"}},
		"timeout not a number":    {"commands": {"true"}, "executionTimeout": {"1h"}},
		"directory of 4097":       {"commands": {"true"}, "workingDirectory": {"/" + strings.Repeat("d", 4096)}},
		"undefined parameter":     {"commands": {"true"}, "script": {"x"}},
		"two working directories": {"commands": {"true"}, "workingDirectory": {"/a", "/b"}},
	} {
		_, err := w.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunShellScript"), InstanceIds: []string{instA}, Parameters: params})
		if code(t, err) != "InvalidParameters" {
			t.Errorf("%s: %v, want InvalidParameters", name, err)
		}
	}
	if _, err := w.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunShellScript"), InstanceIds: []string{instA},
		Parameters: map[string][]string{"commands": {"true"}, "executionTimeout": {"172800"}}}); err != nil {
		t.Errorf("executionTimeout 172800: %v", err)
	}
}

// ListDocuments and DescribeDocument show AWS's documents (Owner Amazon)
// and the account's (Owner: its id) with their real metadata; GetDocument
// gives AWS-RunShellScript's content as SSM does.
func TestDocumentsListedAndDescribed(t *testing.T) {
	w := newWorld(t, latency.Instant())
	ctx := context.Background()
	names := func(in *ssm.ListDocumentsInput) []string {
		t.Helper()
		var out []string
		p := ssm.NewListDocumentsPaginator(w.ssm, in)
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatalf("ListDocuments %+v: %v", in, err)
			}
			for _, d := range page.DocumentIdentifiers {
				out = append(out, aws.ToString(d.Name))
			}
		}
		return out
	}
	mine := []string{stack + "-mount", stack + "-status", stack + "-unmount"}
	all := append([]string{"AWS-RunShellScript"}, mine...)
	for name, c := range map[string]struct {
		in   *ssm.ListDocumentsInput
		want []string
	}{
		"everything":        {&ssm.ListDocumentsInput{}, all},
		"paged by one":      {&ssm.ListDocumentsInput{MaxResults: aws.Int32(1)}, all},
		"owner Self":        {&ssm.ListDocumentsInput{Filters: []types.DocumentKeyValuesFilter{{Key: aws.String("Owner"), Values: []string{"Self"}}}}, mine},
		"owner Amazon":      {&ssm.ListDocumentsInput{Filters: []types.DocumentKeyValuesFilter{{Key: aws.String("Owner"), Values: []string{"Amazon"}}}}, []string{"AWS-RunShellScript"}},
		"name prefix":       {&ssm.ListDocumentsInput{Filters: []types.DocumentKeyValuesFilter{{Key: aws.String("Name"), Values: []string{"AWS-Run"}}}}, []string{"AWS-RunShellScript"}},
		"Windows":           {&ssm.ListDocumentsInput{Filters: []types.DocumentKeyValuesFilter{{Key: aws.String("PlatformTypes"), Values: []string{"Windows"}}}}, nil},
		"Command, Linux":    {&ssm.ListDocumentsInput{Filters: []types.DocumentKeyValuesFilter{{Key: aws.String("DocumentType"), Values: []string{"Command"}}, {Key: aws.String("PlatformTypes"), Values: []string{"Linux"}}}}, all},
		"tagged":            {&ssm.ListDocumentsInput{Filters: []types.DocumentKeyValuesFilter{{Key: aws.String("tag:team"), Values: []string{"x"}}}}, nil},
		"legacy filter":     {&ssm.ListDocumentsInput{DocumentFilterList: []types.DocumentFilter{{Key: types.DocumentFilterKeyOwner, Value: aws.String("Amazon")}}}, []string{"AWS-RunShellScript"}},
		"automation (none)": {&ssm.ListDocumentsInput{Filters: []types.DocumentKeyValuesFilter{{Key: aws.String("DocumentType"), Values: []string{"Automation"}}}}, nil},
	} {
		if got := names(c.in); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
	_, err := w.ssm.ListDocuments(ctx, &ssm.ListDocumentsInput{Filters: []types.DocumentKeyValuesFilter{{Key: aws.String("Owner"), Values: []string{"Self", "Amazon"}}}})
	if code(t, err) != "ValidationException" {
		t.Errorf("two owners: %v", err)
	}
	if _, err := w.ssm.ListDocuments(ctx, &ssm.ListDocumentsInput{Filters: []types.DocumentKeyValuesFilter{{Key: aws.String("Color"), Values: []string{"x"}}}}); code(t, err) != "InvalidFilterKey" {
		t.Errorf("unknown filter key: %v", err)
	}

	ld, err := w.ssm.ListDocuments(ctx, &ssm.ListDocumentsInput{Filters: []types.DocumentKeyValuesFilter{{Key: aws.String("Name"), Values: []string{stack + "-mount"}}}})
	if err != nil || len(ld.DocumentIdentifiers) != 1 {
		t.Fatalf("ListDocuments by name: %+v %v", ld, err)
	}
	if id := ld.DocumentIdentifiers[0]; aws.ToString(id.Owner) != "123456789012" || id.DocumentType != types.DocumentTypeCommand ||
		aws.ToString(id.SchemaVersion) != "2.2" || !slices.Equal(platformStrings(id.PlatformTypes), []string{"Linux", "MacOS"}) || aws.ToString(id.DocumentVersion) != "1" {
		t.Errorf("the account's document: %+v", id)
	}

	dd, err := w.ssm.DescribeDocument(ctx, &ssm.DescribeDocumentInput{Name: aws.String("AWS-RunShellScript")})
	if err != nil {
		t.Fatal(err)
	}
	gd, err := w.ssm.GetDocument(ctx, &ssm.GetDocumentInput{Name: aws.String("AWS-RunShellScript")})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(aws.ToString(gd.Content)))
	d := dd.Document
	if aws.ToString(d.Owner) != "Amazon" || d.DocumentType != types.DocumentTypeCommand || aws.ToString(d.SchemaVersion) != "1.2" ||
		d.Status != types.DocumentStatusActive || d.DocumentFormat != types.DocumentFormatJson || aws.ToString(d.DocumentVersion) != "1" ||
		aws.ToString(d.LatestVersion) != "1" || aws.ToString(d.DefaultVersion) != "1" || d.HashType != types.DocumentHashTypeSha256 ||
		aws.ToString(d.Hash) != hex.EncodeToString(sum[:]) || aws.ToString(d.Description) != "Run a shell script or specify the commands to run." ||
		!slices.Equal(platformStrings(d.PlatformTypes), []string{"Linux", "MacOS"}) {
		t.Errorf("AWS-RunShellScript described as %+v", d)
	}
	var params []string
	for _, p := range d.Parameters {
		params = append(params, aws.ToString(p.Name)+":"+string(p.Type)+"="+aws.ToString(p.DefaultValue))
	}
	if want := []string{"commands:StringList=", "workingDirectory:String=", "executionTimeout:String=3600"}; !slices.Equal(params, want) {
		t.Errorf("AWS-RunShellScript parameters %v, want %v", params, want)
	}
	if d.Parameters[0].DefaultValue != nil {
		t.Errorf("commands has no default, described with %q", aws.ToString(d.Parameters[0].DefaultValue))
	}
	var content map[string]any
	if err := json.Unmarshal([]byte(aws.ToString(gd.Content)), &content); err != nil || content["schemaVersion"] != "1.2" ||
		gd.DocumentType != types.DocumentTypeCommand || gd.DocumentFormat != types.DocumentFormatJson || gd.Status != types.DocumentStatusActive {
		t.Errorf("GetDocument: %+v %v", gd, err)
	}
	asYAML, err := w.ssm.GetDocument(ctx, &ssm.GetDocumentInput{Name: aws.String("AWS-RunShellScript"), DocumentFormat: types.DocumentFormatYaml})
	var fromYAML map[string]any
	if err != nil || yaml.Unmarshal([]byte(aws.ToString(asYAML.Content)), &fromYAML) != nil || fromYAML["description"] != content["description"] {
		t.Errorf("GetDocument as YAML: %+v %v", asYAML, err)
	}

	for name, in := range map[string]*ssm.DescribeDocumentInput{
		"unknown":   {Name: aws.String("no-such-doc")},
		"version 2": {Name: aws.String("AWS-RunShellScript"), DocumentVersion: aws.String("2")},
	} {
		_, err := w.ssm.DescribeDocument(ctx, in)
		want := map[string]string{"unknown": "InvalidDocument", "version 2": "InvalidDocumentVersion"}[name]
		if code(t, err) != want {
			t.Errorf("%s: %v, want %s", name, err, want)
		}
	}
}

func platformStrings(ps []types.PlatformType) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return out
}

// A node's platform: a document whose plugin the platform does not run is
// refused at SendCommand (UnsupportedPlatformType); a step whose
// precondition the platform does not meet is skipped by the agent, and the
// invocation reports Success with the agent's message as the plugin's
// output, nothing having run.
func TestPlatforms(t *testing.T) {
	w := newWorld(t, latency.Instant())
	ctx := context.Background()
	linuxOnly := `{"schemaVersion":"2.2","description":"linux only","mainSteps":[{"action":"aws:runShellScript","name":"mount",` +
		`"precondition":{"StringEquals":["platformType","Linux"]},"inputs":{"runCommand":["tether-agent status --json"]}}]}`
	if err := w.srv.AddDocument("tether-linux-only", linuxOnly); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.SetPlatform(instA, PlatformWindows); err != nil {
		t.Fatal(err)
	}
	for _, doc := range []string{"AWS-RunShellScript", stack + "-status", "tether-linux-only"} {
		in := &ssm.SendCommandInput{DocumentName: aws.String(doc), InstanceIds: []string{instA}}
		if doc == "AWS-RunShellScript" {
			in.Parameters = map[string][]string{"commands": {"true"}}
		}
		if _, err := w.ssm.SendCommand(ctx, in); code(t, err) != "UnsupportedPlatformType" {
			t.Errorf("%s to Windows: %v", doc, err)
		}
	}
	di, err := w.ssm.DescribeInstanceInformation(ctx, &ssm.DescribeInstanceInformationInput{
		Filters: []types.InstanceInformationStringFilter{{Key: aws.String("PlatformTypes"), Values: []string{"Windows"}}}})
	if err != nil || len(di.InstanceInformationList) != 1 || aws.ToString(di.InstanceInformationList[0].InstanceId) != instA ||
		aws.ToString(di.InstanceInformationList[0].PlatformName) != PlatformWindows.Name {
		t.Errorf("Windows nodes: %+v %v", di, err)
	}

	if err := w.srv.SetPlatform(instA, PlatformMacOS); err != nil {
		t.Fatal(err)
	}
	out, err := w.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String("tether-linux-only"), InstanceIds: []string{instA}})
	if err != nil {
		t.Fatal(err)
	}
	inv := w.waitInvocation(t, *out.Command.CommandId, instA)
	want := `Step execution skipped due to unsatisfied preconditions: '"StringEquals": [platformType, Linux]'. Step name: mount`
	if inv.Status != types.CommandInvocationStatusSuccess || inv.ResponseCode != 0 || aws.ToString(inv.StandardOutputContent) != "" || w.a.lastScript() != "" {
		t.Errorf("skipped on macOS: %s %d %q, script %q", inv.Status, inv.ResponseCode, aws.ToString(inv.StandardOutputContent), w.a.lastScript())
	}
	// The reason is the plugin's Output (the agent sends it as the
	// plugin's output, not as standard output).
	li, err := w.ssm.ListCommandInvocations(ctx, &ssm.ListCommandInvocationsInput{CommandId: out.Command.CommandId, Details: true})
	if err != nil || len(li.CommandInvocations) != 1 || len(li.CommandInvocations[0].CommandPlugins) != 1 ||
		aws.ToString(li.CommandInvocations[0].CommandPlugins[0].Output) != want {
		t.Errorf("skipped on macOS, plugins: %+v %v", li, err)
	}
	// On Linux the same document runs.
	if err := w.srv.SetPlatform(instA, PlatformLinux); err != nil {
		t.Fatal(err)
	}
	out, err = w.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String("tether-linux-only"), InstanceIds: []string{instA}})
	if err != nil {
		t.Fatal(err)
	}
	w.waitInvocation(t, *out.Command.CommandId, instA)
	if w.a.lastScript() != "tether-agent status --json\n" {
		t.Errorf("on Linux: script %q", w.a.lastScript())
	}
}

// GetCommandInvocation: no output before the command finished, then the
// first 24,000 characters of stdout and 8,000 of stderr; ListCommandInvocations'
// plugin Output at most 2,500.
func TestOutputLimits(t *testing.T) {
	w := newWorld(t, latency.Instant())
	release := make(chan struct{})
	w.a.mu.Lock()
	w.a.block = release
	w.a.mu.Unlock()
	w.a.set(worldapi.CommandResult{Stdout: strings.Repeat("o", 30000), Stderr: strings.Repeat("e", 9000), ExitCode: 1}, nil)
	id := w.status(t, instA)
	waitUntil(t, "the script running", func() bool { return w.a.lastScript() != "" })
	if inv := w.get(t, id, instA); inv.Status != types.CommandInvocationStatusInProgress || aws.ToString(inv.StandardOutputContent) != "" {
		t.Errorf("running: %s, %d characters of output", inv.Status, len(aws.ToString(inv.StandardOutputContent)))
	}
	close(release)
	inv := w.waitInvocation(t, id, instA)
	if len(aws.ToString(inv.StandardOutputContent)) != 24000 || len(aws.ToString(inv.StandardErrorContent)) != 8000 || inv.ResponseCode != 1 {
		t.Errorf("finished: %d and %d characters, code %d", len(aws.ToString(inv.StandardOutputContent)), len(aws.ToString(inv.StandardErrorContent)), inv.ResponseCode)
	}
	li, err := w.ssm.ListCommandInvocations(context.Background(), &ssm.ListCommandInvocationsInput{CommandId: aws.String(id), Details: true})
	if err != nil || len(li.CommandInvocations) != 1 || len(aws.ToString(li.CommandInvocations[0].CommandPlugins[0].Output)) != 2500 {
		t.Errorf("plugin output: %+v %v", li, err)
	}
}

// Right after SendCommand, GetCommandInvocation answers
// InvocationDoesNotExist for at least Config.Invisible, in every profile.
func TestInvisibleFloor(t *testing.T) {
	plain := New(Config{})
	plain.Close()
	if d := plain.cfg.Invisible; d != DefaultInvisible {
		t.Errorf("default floor %v, want %v", d, DefaultInvisible)
	}
	w := newWorldWith(t, Config{Profile: latency.Instant(), Invisible: time.Hour})
	id := w.status(t, instA)
	_, err := w.ssm.GetCommandInvocation(context.Background(), &ssm.GetCommandInvocationInput{CommandId: aws.String(id), InstanceId: aws.String(instA)})
	if code(t, err) != "InvocationDoesNotExist" {
		t.Errorf("within the floor: %v", err)
	}
	li, err := w.ssm.ListCommandInvocations(context.Background(), &ssm.ListCommandInvocationsInput{CommandId: aws.String(id)})
	if err != nil || len(li.CommandInvocations) != 0 {
		t.Errorf("ListCommandInvocations within the floor: %+v %v", li, err)
	}
}
