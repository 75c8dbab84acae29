package samlocal

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrUnsupported marks something a template declares that the world cannot
// do and that cannot be safely ignored: an unknown resource type, property or
// event type, or an intrinsic the resolver does not know.
var ErrUnsupported = errors.New("not supported by the local world")

// Ignored is one thing the template declares that the world does not do,
// and why that is safe to leave out locally.
type Ignored struct {
	LogicalID string
	Type      string
	Property  string // "" when the whole resource is ignored
	Reason    string
}

func (i Ignored) String() string {
	if i.Property == "" {
		return fmt.Sprintf("%s (%s): %s", i.LogicalID, i.Type, i.Reason)
	}
	return fmt.Sprintf("%s.%s (%s): %s", i.LogicalID, i.Property, i.Type, i.Reason)
}

// Resource types the world does not deploy, with the reason.
var ignoredTypes = map[string]string{
	"AWS::IAM::ManagedPolicy":    "the world does not enforce IAM: every caller may call every action",
	"AWS::IAM::Role":             "the world does not enforce IAM: every caller may call every action",
	"AWS::IAM::Policy":           "the world does not enforce IAM: every caller may call every action",
	"AWS::CloudWatch::Alarm":     "the world has no CloudWatch: alarms are not evaluated",
	"AWS::Logs::LogGroup":        "the world has no CloudWatch Logs: function output stays with the world",
	"AWS::SQS::QueuePolicy":      "the world's queues accept messages from every sender",
	"AWS::Lambda::Permission":    "the world does not check who may invoke a function",
	"AWS::SNS::Topic":            "the world has no SNS (alarm notifications only)",
	"AWS::SNS::TopicPolicy":      "the world has no SNS (alarm notifications only)",
	"AWS::SNS::Subscription":     "the world has no SNS (alarm notifications only)",
	"AWS::CloudWatch::Dashboard": "the world has no CloudWatch",
}

// Properties of deployed types: handled (by eventbus.LoadTemplate,
// ssmsim.LoadTemplate or this package), inert (documentation only), or
// ignored with a reason. Anything else is ErrUnsupported.
type propertyRules struct {
	handled []string
	inert   []string
	ignored map[string]string
}

var deployedTypes = map[string]propertyRules{
	"AWS::SQS::Queue": {
		handled: []string{"VisibilityTimeout", "DelaySeconds", "ReceiveMessageWaitTimeSeconds", "RedrivePolicy"},
		ignored: map[string]string{
			"MessageRetentionPeriod": "the world's queues keep messages for the world's lifetime",
			"SqsManagedSseEnabled":   "encryption at rest: the world's queues live in memory",
			"KmsMasterKeyId":         "encryption at rest: the world's queues live in memory",
			"Tags":                   "the world's queues carry no tags",
		},
	},
	"AWS::Events::Rule": {
		handled: []string{"EventPattern", "Targets"},
		inert:   []string{"Description"},
	},
	"AWS::SSM::Document": {
		handled: []string{"Name", "DocumentType", "Content"},
		ignored: map[string]string{
			"UpdateMethod": "documents are created once per world, never updated",
			"Tags":         "the world's documents carry no tags",
		},
	},
	"AWS::Serverless::Function": {
		handled: []string{"Events", "Timeout", "ReservedConcurrentExecutions", "Environment", "MemorySize", "CodeUri", "Handler", "Runtime"},
		inert:   []string{"Description"},
		ignored: map[string]string{
			"Policies":          "the world does not enforce IAM",
			"Role":              "the world does not enforce IAM",
			"Architectures":     "bootstraps run natively on this machine (the template's architecture is for AWS)",
			"EventInvokeConfig": "the world's schedules invoke once and never retry, whatever the asynchronous-invoke settings say",
			"Tags":              "the world's functions carry no tags",
		},
	},
}

// Event properties eventbus.LoadTemplate applies, per event type.
var eventProperties = map[string]propertyRules{
	"SQS":      {handled: []string{"Queue", "BatchSize", "MaximumBatchingWindowInSeconds", "FunctionResponseTypes", "ScalingConfig"}},
	"Schedule": {handled: []string{"Schedule"}, inert: []string{"Description"}},
}

// Template is a parsed SAM template.
type Template struct {
	Path      string
	params    map[string]parameter
	globals   *yaml.Node // Globals.Function
	resources []resource
	outputs   *yaml.Node
	ignored   []Ignored
}

type parameter struct {
	typ, def           string
	hasDefault         bool
	pattern            string
	allowed            []string
	minValue, maxValue *float64
}

type resource struct {
	id, typ  string
	props    *yaml.Node
	metadata *yaml.Node
}

// Load reads a template and checks that the world can deploy what it
// declares: every resource type is deployed or deliberately ignored (see
// Ignored), every property and event is one the world applies.
func Load(path string) (*Template, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("samlocal: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, fmt.Errorf("samlocal: %s: %w", path, err)
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("samlocal: %s is not a template", path)
	}
	top := root.Content[0]
	t := &Template{Path: path, params: map[string]parameter{}, globals: child(child(top, "Globals"), "Function"), outputs: child(top, "Outputs")}
	if err := t.readParameters(child(top, "Parameters")); err != nil {
		return nil, err
	}
	res := child(top, "Resources")
	if res == nil || res.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("samlocal: %s has no Resources", path)
	}
	for i := 0; i+1 < len(res.Content); i += 2 {
		r := resource{id: res.Content[i].Value, props: child(res.Content[i+1], "Properties"), metadata: child(res.Content[i+1], "Metadata")}
		if n := child(res.Content[i+1], "Type"); n != nil {
			r.typ = n.Value
		}
		if err := t.check(r); err != nil {
			return nil, fmt.Errorf("samlocal: %s: %w", path, err)
		}
		t.resources = append(t.resources, r)
	}
	return t, nil
}

// Ignored lists what the world leaves out, in template order.
func (t *Template) Ignored() []Ignored { return slices.Clone(t.ignored) }

// check sorts one resource into deployed or ignored, or refuses it.
func (t *Template) check(r resource) error {
	if reason, ok := ignoredTypes[r.typ]; ok {
		t.ignored = append(t.ignored, Ignored{LogicalID: r.id, Type: r.typ, Reason: reason})
		return nil
	}
	rules, ok := deployedTypes[r.typ]
	if !ok {
		return fmt.Errorf("%s: resource type %q: %w", r.id, r.typ, ErrUnsupported)
	}
	props := r.props
	if r.typ == "AWS::Serverless::Function" {
		props = mergeGlobals(t.globals, r.props)
	}
	if err := t.checkProperties(r, "", props, rules); err != nil {
		return err
	}
	if r.typ == "AWS::Serverless::Function" {
		return t.checkEvents(r, child(props, "Events"))
	}
	return nil
}

func (t *Template) checkProperties(r resource, prefix string, props *yaml.Node, rules propertyRules) error {
	if props == nil {
		return nil
	}
	if props.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: Properties is not a mapping", r.id)
	}
	for i := 0; i+1 < len(props.Content); i += 2 {
		name := props.Content[i].Value
		switch {
		case slices.Contains(rules.handled, name), slices.Contains(rules.inert, name):
		case rules.ignored[name] != "":
			t.ignored = append(t.ignored, Ignored{LogicalID: r.id, Type: r.typ, Property: prefix + name, Reason: rules.ignored[name]})
		default:
			return fmt.Errorf("%s: property %s%s of %s: %w", r.id, prefix, name, r.typ, ErrUnsupported)
		}
	}
	return nil
}

func (t *Template) checkEvents(r resource, events *yaml.Node) error {
	if events == nil {
		return nil
	}
	for i := 0; i+1 < len(events.Content); i += 2 {
		name, ev := events.Content[i].Value, events.Content[i+1]
		typ := ""
		if n := child(ev, "Type"); n != nil {
			typ = n.Value
		}
		rules, ok := eventProperties[typ]
		if !ok {
			return fmt.Errorf("%s: event %s of type %q: %w (SQS and Schedule only)", r.id, name, typ, ErrUnsupported)
		}
		if err := t.checkProperties(r, "Events."+name+".", child(ev, "Properties"), rules); err != nil {
			return err
		}
	}
	return nil
}

// mergeGlobals applies SAM's Globals.Function to a function's properties:
// the function's own values win, maps merge key by key, lists add up.
func mergeGlobals(global, own *yaml.Node) *yaml.Node {
	if global == nil {
		return own
	}
	if own == nil {
		return global
	}
	if global.Kind != yaml.MappingNode || own.Kind != yaml.MappingNode || isIntrinsic(own) || isIntrinsic(global) {
		if global.Kind == yaml.SequenceNode && own.Kind == yaml.SequenceNode {
			return &yaml.Node{Kind: yaml.SequenceNode, Tag: own.Tag, Content: append(slices.Clone(global.Content), own.Content...)}
		}
		return own
	}
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: own.Tag, Line: own.Line}
	seen := map[string]bool{}
	for i := 0; i+1 < len(global.Content); i += 2 {
		key := global.Content[i].Value
		seen[key] = true
		val := global.Content[i+1]
		if o := child(own, key); o != nil {
			val = mergeGlobals(val, o)
		}
		out.Content = append(out.Content, global.Content[i], val)
	}
	for i := 0; i+1 < len(own.Content); i += 2 {
		if !seen[own.Content[i].Value] {
			out.Content = append(out.Content, own.Content[i], own.Content[i+1])
		}
	}
	return out
}

// isIntrinsic reports a short-form intrinsic (!Ref, !Sub...), not a YAML
// core tag (!!map, !!str).
func isIntrinsic(n *yaml.Node) bool {
	return strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!")
}

func (t *Template) readParameters(n *yaml.Node) error {
	if n == nil {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name, def := n.Content[i].Value, n.Content[i+1]
		p := parameter{}
		if v := child(def, "Type"); v != nil {
			p.typ = v.Value
		}
		if v := child(def, "Default"); v != nil {
			p.def, p.hasDefault = v.Value, true
		}
		if v := child(def, "AllowedPattern"); v != nil {
			p.pattern = v.Value
		}
		if v := child(def, "AllowedValues"); v != nil {
			for _, c := range v.Content {
				p.allowed = append(p.allowed, c.Value)
			}
		}
		for key, dst := range map[string]**float64{"MinValue": &p.minValue, "MaxValue": &p.maxValue} {
			if v := child(def, key); v != nil {
				f, err := strconv.ParseFloat(v.Value, 64)
				if err != nil {
					return fmt.Errorf("samlocal: parameter %s: %s %q is not a number", name, key, v.Value)
				}
				*dst = &f
			}
		}
		t.params[name] = p
	}
	return nil
}

// parameterValues checks overrides as CloudFormation does and returns every
// parameter's value (override, else Default).
func (t *Template) parameterValues(overrides map[string]string) (map[string]string, error) {
	var errs []error
	for name := range overrides {
		if _, ok := t.params[name]; !ok {
			errs = append(errs, fmt.Errorf("parameter %s is not in the template", name))
		}
	}
	out := map[string]string{}
	for name, p := range t.params {
		v, ok := overrides[name]
		if !ok {
			if !p.hasDefault {
				errs = append(errs, fmt.Errorf("parameter %s has no Default and no value was given", name))
				continue
			}
			v = p.def
		}
		if err := p.validate(v); err != nil {
			errs = append(errs, fmt.Errorf("parameter %s=%q: %w", name, v, err))
			continue
		}
		out[name] = v
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("samlocal: %w", err)
	}
	return out, nil
}

func (p parameter) validate(v string) error {
	if p.pattern != "" {
		re, err := regexp.Compile("^(?:" + p.pattern + ")$")
		if err != nil {
			return fmt.Errorf("AllowedPattern %q: %w", p.pattern, err)
		}
		if !re.MatchString(v) {
			return fmt.Errorf("does not match AllowedPattern %s", p.pattern)
		}
	}
	if len(p.allowed) > 0 && !slices.Contains(p.allowed, v) {
		return fmt.Errorf("not one of the AllowedValues %v", p.allowed)
	}
	if p.typ == "Number" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return errors.New("not a number")
		}
		if p.minValue != nil && f < *p.minValue || p.maxValue != nil && f > *p.maxValue {
			return fmt.Errorf("outside [%v, %v]", deref(p.minValue), deref(p.maxValue))
		}
	}
	return nil
}

func deref(f *float64) any {
	if f == nil {
		return "-"
	}
	return *f
}

func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
