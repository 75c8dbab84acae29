package ssmsim

import (
	"bytes"
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
// template fails early: schema 2.2 with steps of aws:runShellScript and
// aws:runPowerShellScript (the account's own, e.g. tether's), or schema 1.2
// with one aws:runShellScript property (AWS-RunShellScript).
type document struct {
	name          string
	owner         string // the account id, or "Amazon" for AWS's documents
	description   string
	schemaVersion string
	format        string // JSON or YAML
	created       time.Time
	params        map[string]docParam
	order         []string // parameter names, as the document declares them
	steps         []docStep
	raw           string
}

// The plugins (step actions) this SSM runs.
const (
	actionShell      = "aws:runShellScript"
	actionPowerShell = "aws:runPowerShellScript"
)

// docStep is one plugin of the document: a 2.2 step, or 1.2's one plugin.
type docStep struct {
	name             string // the invocation's PluginName: a 2.2 step's name, a 1.2 plugin's action
	action           string
	runCommand       []string
	workingDirectory string // may hold {{ Name }}
	timeout          string // seconds, or {{ Name }}; "" is the plugin's default
	precondition     *precondition
	// The step's control-flow inputs ("Command document plugin
	// reference", onFailure, onSuccess, finallyStep; amazon-ssm-agent
	// runpluginutil): onFailure "exit" or "successAndExit", onSuccess
	// "exit", finallyStep true.
	onFailure, onSuccess string
	finally              bool
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
	// InterpolationType ENV_VAR: SSM Agent 3.3.2746.0 and later give the
	// value to the script as the environment variable SSM_<Name> ("Data
	// elements and parameters", parameters).
	InterpolationType string `json:"interpolationType"`
	pattern           *regexp.Regexp
	hasDefault        bool
}

// interpolationEnvVar is the one interpolationType SSM documents.
const interpolationEnvVar = "ENV_VAR"

// The plugin's inputs as both schemas spell them (runCommand is a string
// "{{ commands }}" in AWS-RunShellScript's 1.2 content, a list in 2.2).
// An input this SSM does not know is refused, never ignored.
type pluginInputs struct {
	ID               string `json:"id"`
	RunCommand       any    `json:"runCommand"`
	TimeoutSeconds   any    `json:"timeoutSeconds"`
	WorkingDirectory string `json:"workingDirectory"`
	OnFailure        string `json:"onFailure"`
	OnSuccess        string `json:"onSuccess"`
	FinallyStep      any    `json:"finallyStep"`
}

type docContent struct {
	SchemaVersion string              `json:"schemaVersion"`
	Description   string              `json:"description"`
	Parameters    map[string]docParam `json:"parameters"`
	MainSteps     []struct {
		Action       string              `json:"action"`
		Name         string              `json:"name"`
		Precondition map[string][]string `json:"precondition"`
		Inputs       json.RawMessage     `json:"inputs"`
	} `json:"mainSteps"`
	RuntimeConfig map[string]struct {
		Properties []json.RawMessage `json:"properties"`
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

// actionPlatforms are the platforms each plugin runs on.
// aws:runShellScript: Linux and macOS (DescribeDocument of
// AWS-RunShellScript: PlatformTypes Linux, MacOS; amazon-ssm-agent
// registers it only in plugin_unix.go, built for darwin and linux).
// aws:runPowerShellScript: all three (the agent registers it among its
// platform-independent plugins, plugin.go loadPlatformIndependentPlugins,
// and runs PowerShell Core on Linux and macOS).
var actionPlatforms = map[string][]string{
	actionShell:      {"Linux", "MacOS"},
	actionPowerShell: {"Windows", "Linux", "MacOS"},
}

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
	switch c.SchemaVersion {
	case "2.2":
		// "The mainSteps section enables Systems Manager to run steps in
		// sequence" ("Schemas, features, and examples").
		if len(c.MainSteps) == 0 {
			return nil, fmt.Errorf("document %s: no mainSteps", name)
		}
		for i, ms := range c.MainSteps {
			if ms.Name == "" {
				return nil, fmt.Errorf("document %s: step %d needs a name", name, i+1)
			}
			if slices.ContainsFunc(d.steps, func(o docStep) bool { return o.name == ms.Name }) {
				return nil, fmt.Errorf("document %s: two steps named %q", name, ms.Name)
			}
			st := docStep{name: ms.Name, action: ms.Action}
			if ms.Precondition != nil {
				sv := ms.Precondition["StringEquals"]
				if len(ms.Precondition) != 1 || len(sv) != 2 || sv[0] != "platformType" || !slices.Contains([]string{"Linux", "Windows", "MacOS"}, sv[1]) {
					return nil, fmt.Errorf("document %s: step %s: precondition %v: SSM knows only StringEquals [platformType, Linux|Windows|MacOS]", name, ms.Name, ms.Precondition)
				}
				st.precondition = &precondition{platform: sv[1]}
			}
			if err := st.readInputs(ms.Inputs); err != nil {
				return nil, fmt.Errorf("document %s: step %s: %w", name, ms.Name, err)
			}
			d.steps = append(d.steps, st)
		}
	case "1.2":
		if len(c.RuntimeConfig) != 1 {
			return nil, fmt.Errorf("document %s: %d runtimeConfig plugins: this SSM runs one aws:runShellScript", name, len(c.RuntimeConfig))
		}
		for action, rc := range c.RuntimeConfig {
			if len(rc.Properties) != 1 {
				return nil, fmt.Errorf("document %s: %s has %d properties, want 1", name, action, len(rc.Properties))
			}
			st := docStep{name: action, action: action}
			if err := st.readInputs(rc.Properties[0]); err != nil {
				return nil, fmt.Errorf("document %s: %s: %w", name, action, err)
			}
			d.steps = append(d.steps, st)
		}
		if d.steps[0].action != actionShell {
			return nil, fmt.Errorf("document %s: a 1.2 plugin %q: this SSM runs 1.2 documents of aws:runShellScript", name, d.steps[0].action)
		}
	default:
		return nil, fmt.Errorf("document %s: schemaVersion %q: this SSM runs Command documents of schema 2.2 (and AWS's 1.2)", name, c.SchemaVersion)
	}
	for pname, p := range c.Parameters {
		if p.Type != "String" && p.Type != "StringList" {
			return nil, fmt.Errorf("document %s: parameter %s: type %q is not supported (String, StringList)", name, pname, p.Type)
		}
		switch {
		case p.InterpolationType == "":
		case p.InterpolationType != interpolationEnvVar:
			return nil, fmt.Errorf("document %s: parameter %s: interpolationType %q (SSM knows ENV_VAR)", name, pname, p.InterpolationType)
		case p.Type != "String":
			// SSM documents ENV_VAR for "string parameters"; what it
			// does with a list is not documented, so it is refused here.
			return nil, fmt.Errorf("document %s: parameter %s: interpolationType ENV_VAR on a %s: this SSM interpolates String parameters only", name, pname, p.Type)
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
	for _, st := range d.steps {
		refs := func(text string, script bool) error {
			for _, m := range placeholder.FindAllStringSubmatch(text, -1) {
				p, ok := d.params[m[1]]
				if !ok {
					return fmt.Errorf("document %s: step %s refers to {{ %s }}, which is not a parameter", name, st.name, m[1])
				}
				// Where an ENV_VAR parameter outside the script goes is
				// not documented: refused rather than guessed.
				if !script && p.InterpolationType == interpolationEnvVar {
					return fmt.Errorf("document %s: step %s: ENV_VAR parameter {{ %s }} outside runCommand: this SSM passes ENV_VAR parameters to scripts only", name, st.name, m[1])
				}
			}
			return nil
		}
		for _, line := range st.runCommand {
			if err := refs(line, true); err != nil {
				return nil, err
			}
		}
		for _, in := range []string{st.workingDirectory, st.timeout} {
			if err := refs(in, false); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

// readInputs reads a plugin's inputs (a 2.2 step's, a 1.2 property).
func (st *docStep) readInputs(raw json.RawMessage) error {
	var in pluginInputs
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("inputs: %w", err)
	}
	if st.action != actionShell && st.action != actionPowerShell {
		return fmt.Errorf("action %q: this SSM runs aws:runShellScript and aws:runPowerShellScript steps", st.action)
	}
	switch rc := in.RunCommand.(type) {
	case string:
		st.runCommand = []string{rc}
	case []any:
		for _, l := range rc {
			s, ok := l.(string)
			if !ok {
				return fmt.Errorf("runCommand line %v is not a string", l)
			}
			st.runCommand = append(st.runCommand, s)
		}
	}
	if len(st.runCommand) == 0 {
		return errors.New("the step needs runCommand")
	}
	st.workingDirectory = in.WorkingDirectory
	switch t := in.TimeoutSeconds.(type) {
	case nil:
	case float64:
		st.timeout = strconv.Itoa(int(t))
	case string:
		st.timeout = t
	default:
		return fmt.Errorf("timeoutSeconds %v", t)
	}
	if st.timeout != "" && !placeholder.MatchString(st.timeout) {
		if n, err := strconv.Atoi(st.timeout); err != nil || n < 1 || n > maxExecutionTimeout {
			return fmt.Errorf("timeoutSeconds %q: want 1..%d", st.timeout, maxExecutionTimeout)
		}
	}
	if in.OnFailure != "" && in.OnFailure != modifierExit && in.OnFailure != modifierSuccessAndExit {
		return fmt.Errorf("onFailure %q: want exit or successAndExit", in.OnFailure)
	}
	if in.OnSuccess != "" && in.OnSuccess != modifierExit {
		return fmt.Errorf("onSuccess %q: want exit", in.OnSuccess)
	}
	st.onFailure, st.onSuccess = in.OnFailure, in.OnSuccess
	switch f := in.FinallyStep.(type) {
	case nil:
	case bool:
		st.finally = f
	case string:
		if f != "true" && f != "false" {
			return fmt.Errorf("finallyStep %q: want true or false", f)
		}
		st.finally = f == "true"
	default:
		return fmt.Errorf("finallyStep %v: want true or false", f)
	}
	return nil
}

// The control-flow inputs' values (amazon-ssm-agent contracts:
// ModifierValueExit, ModifierValueSuccessAndExit).
const (
	modifierExit           = "exit"
	modifierSuccessAndExit = "successAndExit"
)

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

// platforms are the platform types the document runs on: those of any of
// its plugins, in Windows, Linux, MacOS order.
func (d *document) platforms() []string {
	var out []string
	for _, p := range []string{"Windows", "Linux", "MacOS"} {
		for _, st := range d.steps {
			if slices.Contains(actionPlatforms[st.action], p) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

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

// resolved is what one SendCommand makes of a document: the parameters,
// defaults filled in, and each step's execution timeout (seconds).
type resolved struct {
	params   map[string][]string
	timeouts []int
}

// resolve checks the parameters of a SendCommand against the document
// (allowedPattern and the rest, whatever the parameter's
// interpolationType), applies defaults and resolves each step's execution
// timeout.
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
	out := resolved{params: params}
	for _, st := range d.steps {
		timeout := defaultExecutionTimeout
		if t := d.paste(st.timeout, params); t != "" {
			n, err := strconv.Atoi(t)
			if err != nil || n < 1 || n > maxExecutionTimeout {
				return resolved{}, fmt.Errorf("step %s: execution timeout %q: want 1..%d seconds", st.name, t, maxExecutionTimeout)
			}
			timeout = n
		}
		out.timeouts = append(out.timeouts, timeout)
	}
	return out, nil
}

// interpolation is how the node's SSM Agent hands a step the parameters.
type interpolation int

const (
	// pasteValues: every {{ Name }} in the step is replaced by the value,
	// whatever its interpolationType (SSM Agent before 3.3.2746.0, which
	// knows no interpolationType: docparser's ReplaceParameters).
	pasteValues interpolation = iota
	// envVars: SSM Agent 3.3.2746.0 and later "creates an environment
	// variable named SSM_parameter-name containing your parameter value"
	// for each ENV_VAR parameter ("Data elements and parameters"; AWS
	// blog "Run Command now supports interpolating parameters into
	// environment variables"). What the agent then writes for {{ Name }}
	// in the script is not published (its source of that version is not
	// public here), so this SSM does the stricter thing: the value reaches
	// the script only through the variable, and {{ Name }} becomes
	// ${SSM_Name}, never the value. Other parameters are pasted as before.
	envVars
)

// envVarPrefix names the variable of an ENV_VAR parameter: SSM_<Name>.
const envVarPrefix = "SSM_"

// firstEnvVarAgent is the first SSM Agent version with ENV_VAR
// interpolation ("Verify SSM Agent version is 3.3.2746.0 or later",
// "Troubleshooting parameter handling issues").
const firstEnvVarAgent = "3.3.2746.0"

// stepScript is the script the agent writes for a step and the variables
// it adds to the script's environment for the document's parameters. The
// working directory is modelled as the shell's `cd`, failing the step when
// it is not there.
func (d *document) stepScript(st docStep, params map[string][]string, mode interpolation) (string, map[string]string) {
	env := map[string]string{}
	if mode == envVars {
		for name, p := range d.params {
			if p.InterpolationType == interpolationEnvVar {
				env[envVarPrefix+name] = params[name][0]
			}
		}
	}
	var lines []string
	if dir := d.paste(st.workingDirectory, params); dir != "" {
		lines = append(lines, "cd -- "+shellQuote(dir)+" || exit 1")
	}
	for _, line := range st.runCommand {
		lines = append(lines, d.scriptLines(line, params, mode)...)
	}
	return strings.Join(lines, "\n") + "\n", env
}

// scriptLines is one runCommand line with its parameters in. As the agent's
// ReplaceParameters does, a line that is exactly one {{ Name }} becomes
// the value itself (a StringList: one line per item), and a value within
// other text is the string, or a StringList as JSON.
func (d *document) scriptLines(line string, params map[string][]string, mode interpolation) []string {
	if m := placeholder.FindStringSubmatch(line); m != nil && strings.TrimSpace(line) == m[0] {
		if ref, ok := d.envRef(m[1], mode); ok {
			return []string{ref}
		}
		return params[m[1]]
	}
	return []string{placeholder.ReplaceAllStringFunc(line, func(m string) string {
		name := placeholder.FindStringSubmatch(m)[1]
		if ref, ok := d.envRef(name, mode); ok {
			return ref
		}
		return d.valueText(name, params)
	})}
}

// envRef is what {{ Name }} becomes for an ENV_VAR parameter on an agent
// that interpolates into environment variables.
func (d *document) envRef(name string, mode interpolation) (string, bool) {
	if mode != envVars || d.params[name].InterpolationType != interpolationEnvVar {
		return "", false
	}
	return "${" + envVarPrefix + name + "}", true
}

// paste replaces every {{ Name }} in text by the value (the inputs other
// than runCommand, where no ENV_VAR parameter may appear).
func (d *document) paste(text string, params map[string][]string) string {
	return placeholder.ReplaceAllStringFunc(text, func(m string) string {
		return d.valueText(placeholder.FindStringSubmatch(m)[1], params)
	})
}

// valueText is a value within text: a String's value, a StringList as
// JSON (the agent's convertToString).
func (d *document) valueText(name string, params map[string][]string) string {
	if d.params[name].Type == "StringList" {
		buf, _ := json.Marshal(params[name])
		return string(buf)
	}
	return strings.Join(params[name], "")
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

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
