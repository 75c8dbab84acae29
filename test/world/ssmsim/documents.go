package ssmsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tether-ecs/tether/test/world/cfntemplate"
)

// document is one Command document (schema 2.2, one aws:runShellScript
// step), checked when it is added so a bad template fails early.
type document struct {
	name        string
	description string
	params      map[string]docParam
	order       []string // parameter names, sorted
	step        string   // the step's name: the invocation's PluginName
	runCommand  []string
	timeout     int // the step's timeoutSeconds (execution timeout)
	raw         string
}

type docParam struct {
	Type           string   `json:"type"`
	Description    string   `json:"description"`
	Default        any      `json:"default"`
	AllowedPattern string   `json:"allowedPattern"`
	AllowedValues  []string `json:"allowedValues"`
	pattern        *regexp.Regexp
	hasDefault     bool
}

type docContent struct {
	SchemaVersion string              `json:"schemaVersion"`
	Description   string              `json:"description"`
	Parameters    map[string]docParam `json:"parameters"`
	MainSteps     []struct {
		Action string `json:"action"`
		Name   string `json:"name"`
		Inputs struct {
			RunCommand       []string `json:"runCommand"`
			TimeoutSeconds   any      `json:"timeoutSeconds"`
			WorkingDirectory string   `json:"workingDirectory"`
		} `json:"inputs"`
	} `json:"mainSteps"`
}

// placeholder is SSM's parameter reference in a document: {{ Name }}.
var placeholder = regexp.MustCompile(`{{\s*([A-Za-z0-9_.:-]+)\s*}}`)

const defaultExecutionTimeout = 3600 // aws:runShellScript's default, seconds

// parseDocument checks content (JSON or YAML) the way SSM's CreateDocument
// would for what this world runs.
func parseDocument(name, content string) (*document, error) {
	var generic any
	if err := yaml.Unmarshal([]byte(content), &generic); err != nil {
		return nil, fmt.Errorf("document %s: content is neither JSON nor YAML: %w", name, err)
	}
	buf, err := json.Marshal(generic)
	if err != nil {
		return nil, fmt.Errorf("document %s: %w", name, err)
	}
	var c docContent
	dec := json.NewDecoder(strings.NewReader(string(buf)))
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("document %s: %w", name, err)
	}
	if c.SchemaVersion != "2.2" {
		return nil, fmt.Errorf("document %s: schemaVersion %q: this SSM runs schema 2.2 command documents", name, c.SchemaVersion)
	}
	if len(c.MainSteps) != 1 {
		return nil, fmt.Errorf("document %s: %d mainSteps: this SSM runs documents of one aws:runShellScript step", name, len(c.MainSteps))
	}
	step := c.MainSteps[0]
	if step.Action != "aws:runShellScript" {
		return nil, fmt.Errorf("document %s: action %q: only aws:runShellScript is supported", name, step.Action)
	}
	if step.Name == "" || len(step.Inputs.RunCommand) == 0 {
		return nil, fmt.Errorf("document %s: the step needs a name and runCommand", name)
	}
	if step.Inputs.WorkingDirectory != "" {
		return nil, fmt.Errorf("document %s: workingDirectory is not supported", name)
	}
	d := &document{name: name, description: c.Description, params: map[string]docParam{}, step: step.Name,
		runCommand: step.Inputs.RunCommand, timeout: defaultExecutionTimeout, raw: content}
	switch t := step.Inputs.TimeoutSeconds.(type) {
	case nil:
	case float64:
		d.timeout = int(t)
	case string:
		if _, err := fmt.Sscanf(t, "%d", &d.timeout); err != nil {
			return nil, fmt.Errorf("document %s: timeoutSeconds %q", name, t)
		}
	default:
		return nil, fmt.Errorf("document %s: timeoutSeconds %v", name, t)
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
		d.order = append(d.order, pname)
	}
	sort.Strings(d.order)
	for _, line := range d.runCommand {
		for _, m := range placeholder.FindAllStringSubmatch(line, -1) {
			if _, ok := d.params[m[1]]; !ok {
				return nil, fmt.Errorf("document %s: runCommand refers to {{ %s }}, which is not a parameter", name, m[1])
			}
		}
	}
	return d, nil
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

// resolve checks the parameters of a SendCommand, applies defaults and
// returns the script with every {{ Name }} replaced.
func (d *document) resolve(given map[string][]string) (script string, params map[string][]string, err error) {
	params = map[string][]string{}
	for name, vals := range given {
		p, ok := d.params[name]
		if !ok {
			return "", nil, fmt.Errorf("parameter %q is not defined in document %s", name, d.name)
		}
		if p.Type == "String" && len(vals) != 1 {
			return "", nil, fmt.Errorf("parameter %q is a String: give exactly one value, not %d", name, len(vals))
		}
		for _, v := range vals {
			if err := p.check(name, v); err != nil {
				return "", nil, err
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
			return "", nil, fmt.Errorf("parameter %q is required by document %s", name, d.name)
		}
		params[name] = values(p.Default)
	}
	lines := make([]string, len(d.runCommand))
	for i, line := range d.runCommand {
		lines[i] = placeholder.ReplaceAllStringFunc(line, func(m string) string {
			return strings.Join(params[placeholder.FindStringSubmatch(m)[1]], "\n")
		})
	}
	return strings.Join(lines, "\n") + "\n", params, nil
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
// Default).
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
