package ssmsim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tether-ecs/tether/test/world/cfntemplate"
)

// document is one Command document, checked when it is added so a bad
// template fails early: schema 2.2 with one aws:runShellScript step (the
// account's own, e.g. tether's), or schema 1.2 with one aws:runShellScript
// property (AWS-RunShellScript).
type document struct {
	name          string
	owner         string // the account id, or "Amazon" for AWS's documents
	description   string
	schemaVersion string
	format        string // JSON or YAML
	created       time.Time
	params        map[string]docParam
	order         []string // parameter names, as the document declares them
	step          docStep
	raw           string
}

// docStep is the document's one plugin.
type docStep struct {
	name             string // the invocation's PluginName: a 2.2 step's name, a 1.2 plugin's action
	action           string
	runCommand       []string
	workingDirectory string // may hold {{ Name }}
	timeout          string // seconds, or {{ Name }}; "" is the plugin's default
	precondition     *precondition
}

// precondition is a 2.2 step's "precondition", of which SSM knows one
// form: {"StringEquals": ["platformType", "Linux"|"Windows"|"MacOS"]}
// (SSM user guide, "Command document plugin reference", Preconditions).
type precondition struct{ platform string }

func (p *precondition) String() string {
	return fmt.Sprintf(`"StringEquals": [platformType, %s]`, p.platform)
}

type docParam struct {
	Type           string   `json:"type"`
	Description    string   `json:"description"`
	Default        any      `json:"default"`
	AllowedPattern string   `json:"allowedPattern"`
	AllowedValues  []string `json:"allowedValues"`
	MinItems       *int     `json:"minItems"`
	MaxItems       *int     `json:"maxItems"`
	MinChars       *int     `json:"minChars"`
	MaxChars       *int     `json:"maxChars"`
	DisplayType    string   `json:"displayType"`
	pattern        *regexp.Regexp
	hasDefault     bool
}

// The plugin's inputs as both schemas spell them (runCommand is a string
// "{{ commands }}" in AWS-RunShellScript's 1.2 content, a list in 2.2).
type pluginInputs struct {
	ID               string `json:"id"`
	RunCommand       any    `json:"runCommand"`
	TimeoutSeconds   any    `json:"timeoutSeconds"`
	WorkingDirectory string `json:"workingDirectory"`
}

type docContent struct {
	SchemaVersion string              `json:"schemaVersion"`
	Description   string              `json:"description"`
	Parameters    map[string]docParam `json:"parameters"`
	MainSteps     []struct {
		Action       string              `json:"action"`
		Name         string              `json:"name"`
		Precondition map[string][]string `json:"precondition"`
		Inputs       pluginInputs        `json:"inputs"`
	} `json:"mainSteps"`
	RuntimeConfig map[string]struct {
		Properties []pluginInputs `json:"properties"`
	} `json:"runtimeConfig"`
}

// placeholder is SSM's parameter reference in a document: {{ Name }}.
var placeholder = regexp.MustCompile(`{{\s*([A-Za-z0-9_.:-]+)\s*}}`)

// aws:runShellScript's default execution timeout (seconds) and the longest
// AWS-RunShellScript's executionTimeout allows (172800: 48 hours).
const (
	defaultExecutionTimeout = 3600
	maxExecutionTimeout     = 172800
)

// runShellScriptPlatforms are the platforms aws:runShellScript runs on
// (DescribeDocument of AWS-RunShellScript: PlatformTypes Linux, MacOS).
var runShellScriptPlatforms = []string{"Linux", "MacOS"}

// documentNamePattern is DocumentName's pattern (SSM service model).
var documentNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_\-.]{3,128}$`)

// reservedPrefixes: "You can't use the following strings as document name
// prefixes. These are reserved by Amazon Web Services for use as document
// name prefixes: aws, amazon, amzn, AWSEC2, AWSConfigRemediation,
// AWSSupport" (CreateDocument, Name). Compared without case, so the three
// short ones cover the others.
var reservedPrefixes = []string{"aws", "amazon", "amzn"}

// errReservedName: a document of the account named with a prefix AWS keeps.
var errReservedName = errors.New("document name prefix is reserved by AWS")

// checkAccountDocumentName applies CreateDocument's rules on names to a
// document of the account (what CloudFormation's AWS::SSM::Document does).
func checkAccountDocumentName(name string) error {
	if !documentNamePattern.MatchString(name) {
		return fmt.Errorf("document name %q: want %s", name, documentNamePattern)
	}
	lower := strings.ToLower(name)
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(lower, p) {
			return fmt.Errorf("document name %q: %w (%s)", name, errReservedName, strings.Join(reservedPrefixes, ", "))
		}
	}
	return nil
}

// parseDocument checks content (JSON or YAML) the way SSM's CreateDocument
// would for what this world runs.
func parseDocument(name, content string) (*document, error) {
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(content), &node); err != nil {
		return nil, fmt.Errorf("document %s: content is neither JSON nor YAML: %w", name, err)
	}
	var generic any
	if err := node.Decode(&generic); err != nil {
		return nil, fmt.Errorf("document %s: %w", name, err)
	}
	buf, err := json.Marshal(generic)
	if err != nil {
		return nil, fmt.Errorf("document %s: %w", name, err)
	}
	var c docContent
	if err := json.Unmarshal(buf, &c); err != nil {
		return nil, fmt.Errorf("document %s: %w", name, err)
	}
	d := &document{name: name, description: c.Description, schemaVersion: c.SchemaVersion, params: map[string]docParam{},
		order: declaredParameters(&node), raw: content, format: "JSON"}
	if !strings.HasPrefix(strings.TrimSpace(content), "{") {
		d.format = "YAML"
	}
	var in pluginInputs
	switch c.SchemaVersion {
	case "2.2":
		if len(c.MainSteps) != 1 {
			return nil, fmt.Errorf("document %s: %d mainSteps: this SSM runs documents of one aws:runShellScript step", name, len(c.MainSteps))
		}
		step := c.MainSteps[0]
		d.step = docStep{name: step.Name, action: step.Action}
		if step.Name == "" {
			return nil, fmt.Errorf("document %s: the step needs a name", name)
		}
		if step.Precondition != nil {
			sv := step.Precondition["StringEquals"]
			if len(step.Precondition) != 1 || len(sv) != 2 || sv[0] != "platformType" || !slices.Contains([]string{"Linux", "Windows", "MacOS"}, sv[1]) {
				return nil, fmt.Errorf("document %s: precondition %v: SSM knows only StringEquals [platformType, Linux|Windows|MacOS]", name, step.Precondition)
			}
			d.step.precondition = &precondition{platform: sv[1]}
		}
		in = step.Inputs
	case "1.2":
		if len(c.RuntimeConfig) != 1 {
			return nil, fmt.Errorf("document %s: %d runtimeConfig plugins: this SSM runs one aws:runShellScript", name, len(c.RuntimeConfig))
		}
		for action, rc := range c.RuntimeConfig {
			if len(rc.Properties) != 1 {
				return nil, fmt.Errorf("document %s: %s has %d properties, want 1", name, action, len(rc.Properties))
			}
			d.step = docStep{name: action, action: action}
			in = rc.Properties[0]
		}
	default:
		return nil, fmt.Errorf("document %s: schemaVersion %q: this SSM runs Command documents of schema 2.2 (and AWS's 1.2)", name, c.SchemaVersion)
	}
	if d.step.action != "aws:runShellScript" {
		return nil, fmt.Errorf("document %s: action %q: only aws:runShellScript is supported", name, d.step.action)
	}
	switch rc := in.RunCommand.(type) {
	case string:
		d.step.runCommand = []string{rc}
	case []any:
		for _, l := range rc {
			s, ok := l.(string)
			if !ok {
				return nil, fmt.Errorf("document %s: runCommand line %v is not a string", name, l)
			}
			d.step.runCommand = append(d.step.runCommand, s)
		}
	}
	if len(d.step.runCommand) == 0 {
		return nil, fmt.Errorf("document %s: the step needs runCommand", name)
	}
	d.step.workingDirectory = in.WorkingDirectory
	switch t := in.TimeoutSeconds.(type) {
	case nil:
	case float64:
		d.step.timeout = strconv.Itoa(int(t))
	case string:
		d.step.timeout = t
	default:
		return nil, fmt.Errorf("document %s: timeoutSeconds %v", name, t)
	}
	if d.step.timeout != "" && !placeholder.MatchString(d.step.timeout) {
		if n, err := strconv.Atoi(d.step.timeout); err != nil || n < 1 || n > maxExecutionTimeout {
			return nil, fmt.Errorf("document %s: timeoutSeconds %q: want 1..%d", name, d.step.timeout, maxExecutionTimeout)
		}
	}
	for pname, p := range c.Parameters {
		if p.Type != "String" && p.Type != "StringList" {
			return nil, fmt.Errorf("document %s: parameter %s: type %q is not supported (String, StringList)", name, pname, p.Type)
		}
		if p.AllowedPattern != "" {
			re, err := regexp.Compile(`^(?:` + p.AllowedPattern + `)$`)
			if err != nil {
				return nil, fmt.Errorf("document %s: parameter %s: allowedPattern: %w", name, pname, err)
			}
			p.pattern = re
		}
		if p.Default != nil {
			p.hasDefault = true
			for _, v := range values(p.Default) {
				if err := p.check(pname, v); err != nil {
					return nil, fmt.Errorf("document %s: default of %s: %w", name, pname, err)
				}
			}
		}
		d.params[pname] = p
	}
	if !slices.Equal(slices.Sorted(slices.Values(d.order)), slices.Sorted(maps.Keys(d.params))) {
		return nil, fmt.Errorf("document %s: parameters %v not read in order (%v)", name, slices.Sorted(maps.Keys(d.params)), d.order)
	}
	for _, line := range append(slices.Clone(d.step.runCommand), d.step.workingDirectory, d.step.timeout) {
		for _, m := range placeholder.FindAllStringSubmatch(line, -1) {
			if _, ok := d.params[m[1]]; !ok {
				return nil, fmt.Errorf("document %s: the step refers to {{ %s }}, which is not a parameter", name, m[1])
			}
		}
	}
	return d, nil
}

// declaredParameters lists the names under "parameters" in the order the
// content declares them (DescribeDocument lists them so).
func declaredParameters(root *yaml.Node) []string {
	doc := root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	var out []string
	for i := 0; doc.Kind == yaml.MappingNode && i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value != "parameters" || doc.Content[i+1].Kind != yaml.MappingNode {
			continue
		}
		ps := doc.Content[i+1].Content
		for j := 0; j+1 < len(ps); j += 2 {
			out = append(out, ps[j].Value)
		}
	}
	return out
}

// platforms are the platform types the document runs on, from its plugin.
func (d *document) platforms() []string { return runShellScriptPlatforms }

// hash is DescribeDocument's Hash: the SHA-256 of the content.
func (d *document) hash() string {
	sum := sha256.Sum256([]byte(d.raw))
	return hex.EncodeToString(sum[:])
}

func values(v any) []string {
	switch t := v.(type) {
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			out = append(out, fmt.Sprint(e))
		}
		return out
	default:
		return []string{fmt.Sprint(t)}
	}
}

var errConstraint = errors.New("failed to satisfy constraint")

func (p docParam) check(name, v string) error {
	if p.pattern != nil && !p.pattern.MatchString(v) {
		return fmt.Errorf("parameter %q value %q %w: allowedPattern %s", name, v, errConstraint, p.AllowedPattern)
	}
	if p.MaxChars != nil && len(v) > *p.MaxChars {
		return fmt.Errorf("parameter %q value %w: maxChars %d", name, errConstraint, *p.MaxChars)
	}
	if p.MinChars != nil && len(v) < *p.MinChars {
		return fmt.Errorf("parameter %q value %q %w: minChars %d", name, v, errConstraint, *p.MinChars)
	}
	if len(p.AllowedValues) > 0 {
		for _, a := range p.AllowedValues {
			if a == v {
				return nil
			}
		}
		return fmt.Errorf("parameter %q value %q %w: allowedValues %v", name, v, errConstraint, p.AllowedValues)
	}
	return nil
}

// resolved is what one SendCommand makes of a document.
type resolved struct {
	script  string
	params  map[string][]string
	timeout int // execution timeout, seconds
}

// resolve checks the parameters of a SendCommand, applies defaults and
// returns the script with every {{ Name }} replaced, run in the working
// directory, and the execution timeout.
func (d *document) resolve(given map[string][]string) (resolved, error) {
	params := map[string][]string{}
	for name, vals := range given {
		p, ok := d.params[name]
		if !ok {
			return resolved{}, fmt.Errorf("parameter %q is not defined in document %s", name, d.name)
		}
		if p.Type == "String" && len(vals) != 1 {
			return resolved{}, fmt.Errorf("parameter %q is a String: give exactly one value, not %d", name, len(vals))
		}
		if p.MinItems != nil && len(vals) < *p.MinItems {
			return resolved{}, fmt.Errorf("parameter %q %w: minItems %d", name, errConstraint, *p.MinItems)
		}
		if p.MaxItems != nil && len(vals) > *p.MaxItems {
			return resolved{}, fmt.Errorf("parameter %q %w: maxItems %d", name, errConstraint, *p.MaxItems)
		}
		for _, v := range vals {
			if err := p.check(name, v); err != nil {
				return resolved{}, err
			}
		}
		params[name] = vals
	}
	for _, name := range d.order {
		if _, ok := params[name]; ok {
			continue
		}
		p := d.params[name]
		if !p.hasDefault {
			return resolved{}, fmt.Errorf("parameter %q is required by document %s", name, d.name)
		}
		params[name] = values(p.Default)
	}
	sub := func(s string) string {
		return placeholder.ReplaceAllStringFunc(s, func(m string) string {
			return strings.Join(params[placeholder.FindStringSubmatch(m)[1]], "\n")
		})
	}
	out := resolved{params: params, timeout: defaultExecutionTimeout}
	if t := sub(d.step.timeout); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 || n > maxExecutionTimeout {
			return resolved{}, fmt.Errorf("execution timeout %q: want 1..%d seconds", t, maxExecutionTimeout)
		}
		out.timeout = n
	}
	var lines []string
	// The agent runs the script in the working directory; one that is not
	// there fails the step (modelled as the shell's failing cd).
	if dir := sub(d.step.workingDirectory); dir != "" {
		lines = append(lines, "cd -- "+shellQuote(dir)+" || exit 1")
	}
	for _, line := range d.step.runCommand {
		lines = append(lines, sub(line))
	}
	out.script = strings.Join(lines, "\n") + "\n"
	return out, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// skipReason is why the agent on a node of the given platform skips the
// step, "" when it runs it. The agent reports a skipped step as a success
// with this message as its output (amazon-ssm-agent, runpluginutil: a
// plugin of another platform is "Step execution skipped due to
// incompatible platform", an unmet precondition "Step execution skipped
// due to unsatisfied preconditions").
func (d *document) skipReason(platform string) string {
	switch {
	case d.step.precondition != nil && d.step.precondition.platform != platform:
		return fmt.Sprintf("Step execution skipped due to unsatisfied preconditions: '%s'. Step name: %s", d.step.precondition, d.step.name)
	case !slices.Contains(d.platforms(), platform):
		return "Step execution skipped due to incompatible platform. Step name: " + d.step.name
	}
	return ""
}

// LoadTemplate adds every AWS::SSM::Document of type Command that a SAM or
// CloudFormation template defines, with its name resolved as CloudFormation
// would for stackName (!Sub "${AWS::StackName}-mount", !Ref of template
// parameters with defaults, pseudo parameters). It returns logical id ->
// document name.
func (s *Server) LoadTemplate(path, stackName string) (map[string]string, error) {
	t, err := cfntemplate.Load(path)
	if err != nil {
		return nil, fmt.Errorf("ssmsim: %w", err)
	}
	return s.AddTemplateDocuments(t, stackName, nil)
}

// AddTemplateDocuments is LoadTemplate for a template already read, with
// params as the template's parameter values (those not given take their
// Default). Each document is the account's, named as CreateDocument allows.
func (s *Server) AddTemplateDocuments(t *cfntemplate.Template, stackName string, params map[string]string) (map[string]string, error) {
	r := &cfntemplate.Resolver{Values: cfntemplate.PseudoParameters(stackName, s.cfg.Region, s.cfg.Account)}
	maps.Copy(r.Values, t.Defaults())
	maps.Copy(r.Values, params)
	out := map[string]string{}
	for _, res := range t.OfType("AWS::SSM::Document") {
		if dt := res.Property("DocumentType"); dt != nil && dt.Value != "Command" {
			continue
		}
		name := stackName + "-" + res.LogicalID
		if n := res.Property("Name"); n != nil {
			var err error
			if name, err = r.String(n); err != nil {
				return nil, fmt.Errorf("ssmsim: %s: %s.Name: %w", t.Path, res.LogicalID, err)
			}
		}
		contentNode := res.Property("Content")
		if contentNode == nil {
			return nil, fmt.Errorf("ssmsim: %s: %s has no Content", t.Path, res.LogicalID)
		}
		content, err := r.Resolve(contentNode)
		if err != nil {
			return nil, fmt.Errorf("ssmsim: %s: %s.Content: %w", t.Path, res.LogicalID, err)
		}
		text, ok := content.(string)
		if !ok {
			buf, err := json.Marshal(content)
			if err != nil {
				return nil, fmt.Errorf("ssmsim: %s: %s.Content: %w", t.Path, res.LogicalID, err)
			}
			text = string(buf)
		}
		if err := s.AddDocument(name, text); err != nil {
			return nil, fmt.Errorf("ssmsim: %s: %s: %w", t.Path, res.LogicalID, err)
		}
		out[res.LogicalID] = name
	}
	return out, nil
}
