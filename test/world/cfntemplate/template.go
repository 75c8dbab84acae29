// Package cfntemplate reads a CloudFormation or SAM template for the local
// world, once: its parameters, SAM's Globals.Function, its resources by
// logical id and its outputs, as YAML nodes the deployers read with typed
// accessors. Resolver evaluates the intrinsics the world understands over
// values the caller supplies (parameters, pseudo parameters, the resources
// it has deployed); Reference reads which resource a property points to.
// Conditions are bound into the Fn::If calls that name them when the
// template is read, so any Resolver evaluates them from parameter values.
//
// ssmsim (documents), eventbus (queues, rules, event source mappings) and
// samlocal (the whole stack) all read template.yaml through this package.
package cfntemplate

import (
	"errors"
	"fmt"
	"iter"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrUnsupported marks what a template asks and the world cannot do: an
// intrinsic the resolver does not know, a reference to a resource the world
// leaves out. Deployers wrap it for their own refusals too.
var ErrUnsupported = errors.New("not supported by the local world")

// Template is a parsed template.
type Template struct {
	Path       string
	Parameters []Parameter // in template order
	// FunctionGlobals is SAM's Globals.Function (nil when absent); see
	// FunctionProperties.
	FunctionGlobals *yaml.Node
	Resources       []Resource // in template order
	Outputs         []Output   // in template order
	// Conditions are the template's conditions by name, each with the
	// conditions it names put in place (see bindConditions).
	Conditions map[string]*yaml.Node
}

// Parameter is one template parameter with its CloudFormation constraints.
type Parameter struct {
	Name, Type         string
	Default            string
	HasDefault         bool
	AllowedPattern     string
	AllowedValues      []string
	MinValue, MaxValue *float64
}

// Resource is one entry of Resources.
type Resource struct {
	LogicalID  string
	Type       string
	Properties *yaml.Node // nil when the resource has none
	Metadata   *yaml.Node
	// Condition names the template condition the resource exists under
	// ("" always): CloudFormation creates it only when the condition
	// holds (see Template.Creates).
	Condition string
}

// Property returns one property's node, or nil.
func (r Resource) Property(name string) *yaml.Node { return Child(r.Properties, name) }

// Output is one entry of Outputs.
type Output struct {
	Name  string
	Value *yaml.Node
}

// Load reads and parses the template at path.
func Load(path string) (*Template, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parse(path, raw)
}

func parse(path string, raw []byte) (*Template, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s is not a template", path)
	}
	top := root.Content[0]
	t := &Template{Path: path, FunctionGlobals: Child(Child(top, "Globals"), "Function")}
	if err := t.readParameters(Child(top, "Parameters")); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	res := Child(top, "Resources")
	if res == nil || res.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s has no Resources", path)
	}
	if err := t.bindConditions(Child(top, "Conditions"), res, Child(top, "Outputs"), Child(top, "Globals")); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for key, n := range Pairs(res) {
		r := Resource{LogicalID: key.Value, Properties: Child(n, "Properties"), Metadata: Child(n, "Metadata")}
		if typ := Child(n, "Type"); typ != nil {
			r.Type = typ.Value
		}
		if c := Child(n, "Condition"); c != nil {
			if _, ok := t.Conditions[c.Value]; !ok {
				return nil, fmt.Errorf("%s: resource %s: condition %q is not defined", path, r.LogicalID, c.Value)
			}
			r.Condition = c.Value
		}
		t.Resources = append(t.Resources, r)
	}
	for key, n := range Pairs(Child(top, "Outputs")) {
		t.Outputs = append(t.Outputs, Output{Name: key.Value, Value: Child(n, "Value")})
	}
	return t, nil
}

// bindConditions reads the Conditions section and puts each condition's
// expression in place of its name in every Fn::If of the given sections
// (and of a `Condition: Name` inside another condition), so a Resolver,
// which knows parameter values and not the template, can evaluate them. An
// Fn::If naming no condition of the template is left for the Resolver to
// refuse.
func (t *Template) bindConditions(conditions *yaml.Node, sections ...*yaml.Node) error {
	defs := map[string]*yaml.Node{}
	for k, v := range Pairs(conditions) {
		defs[k.Value] = v
	}
	t.Conditions = map[string]*yaml.Node{}
	var expand func(name string, path []string) (*yaml.Node, error)
	var bind func(n *yaml.Node, path []string) (*yaml.Node, error)
	expand = func(name string, path []string) (*yaml.Node, error) {
		if c, ok := t.Conditions[name]; ok {
			return c, nil
		}
		if slices.Contains(path, name) {
			return nil, fmt.Errorf("condition %s refers to itself (%s)", name, strings.Join(append(path, name), " -> "))
		}
		def, ok := defs[name]
		if !ok {
			return nil, fmt.Errorf("condition %s is not defined", name)
		}
		c, err := bind(def, append(path, name))
		if err != nil {
			return nil, err
		}
		t.Conditions[name] = c
		return c, nil
	}
	// bind returns n with the conditions it names bound: a `Condition: X`
	// mapping inside a condition becomes X's expression, the first
	// argument of an Fn::If becomes its condition's expression.
	bind = func(n *yaml.Node, path []string) (*yaml.Node, error) {
		if n == nil {
			return nil, nil
		}
		if len(path) > 0 && n.Kind == yaml.MappingNode && len(n.Content) == 2 && n.Content[0].Value == "Condition" && n.Content[1].Kind == yaml.ScalarNode {
			return expand(n.Content[1].Value, path)
		}
		if name, arg, ok := intrinsic(n); ok && name == "Fn::If" && arg.Kind == yaml.SequenceNode && len(arg.Content) == 3 && arg.Content[0].Kind == yaml.ScalarNode {
			if _, defined := defs[arg.Content[0].Value]; defined {
				c, err := expand(arg.Content[0].Value, path)
				if err != nil {
					return nil, err
				}
				arg.Content[0] = c
			}
		}
		for i, c := range n.Content {
			b, err := bind(c, path)
			if err != nil {
				return nil, err
			}
			n.Content[i] = b
		}
		return n, nil
	}
	for name := range defs {
		if _, err := expand(name, nil); err != nil {
			return err
		}
	}
	for _, s := range sections {
		if _, err := bind(s, nil); err != nil {
			return err
		}
	}
	return nil
}

// Creates reports whether CloudFormation creates res for the values r
// resolves with: always without a Condition, else when it holds.
func (t *Template) Creates(r *Resolver, res Resource) (bool, error) {
	if res.Condition == "" {
		return true, nil
	}
	ok, err := r.condition(t.Conditions[res.Condition])
	if err != nil {
		return false, fmt.Errorf("resource %s: condition %s: %w", res.LogicalID, res.Condition, err)
	}
	return ok, nil
}

// Holds evaluates the template's condition name for the values r resolves
// with.
func (t *Template) Holds(r *Resolver, name string) (bool, error) {
	c, ok := t.Conditions[name]
	if !ok {
		return false, fmt.Errorf("condition %s is not defined", name)
	}
	return r.condition(c)
}

// Resource returns the resource with that logical id.
func (t *Template) Resource(logicalID string) (Resource, bool) {
	i := slices.IndexFunc(t.Resources, func(r Resource) bool { return r.LogicalID == logicalID })
	if i < 0 {
		return Resource{}, false
	}
	return t.Resources[i], true
}

// OfType returns the resources of one type, in template order.
func (t *Template) OfType(typ string) []Resource {
	var out []Resource
	for _, r := range t.Resources {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// FunctionProperties returns a function's properties with SAM's
// Globals.Function applied: the function's own values win, maps merge key
// by key, lists add up.
func (t *Template) FunctionProperties(r Resource) *yaml.Node {
	return mergeGlobals(t.FunctionGlobals, r.Properties)
}

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
	for key, val := range Pairs(global) {
		if o := Child(own, key.Value); o != nil {
			val = mergeGlobals(val, o)
		}
		out.Content = append(out.Content, key, val)
	}
	for key, val := range Pairs(own) {
		if Child(global, key.Value) == nil {
			out.Content = append(out.Content, key, val)
		}
	}
	return out
}

// isIntrinsic reports a short-form intrinsic (!Ref, !Sub...), not a YAML
// core tag (!!map, !!str).
func isIntrinsic(n *yaml.Node) bool {
	return strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!")
}

// Child returns the value of key in a mapping node, or nil (also when n is
// nil or not a mapping).
func Child(n *yaml.Node, key string) *yaml.Node {
	for k, v := range Pairs(n) {
		if k.Value == key {
			return v
		}
	}
	return nil
}

// Pairs iterates a mapping node's keys and values, in order (nothing for
// nil or a node that is not a mapping).
func Pairs(n *yaml.Node) iter.Seq2[*yaml.Node, *yaml.Node] {
	return func(yield func(key, value *yaml.Node) bool) {
		if n == nil || n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !yield(n.Content[i], n.Content[i+1]) {
				return
			}
		}
	}
}

func (t *Template) readParameters(n *yaml.Node) error {
	for key, def := range Pairs(n) {
		p := Parameter{Name: key.Value}
		if v := Child(def, "Type"); v != nil {
			p.Type = v.Value
		}
		if v := Child(def, "Default"); v != nil {
			p.Default, p.HasDefault = v.Value, true
		}
		if v := Child(def, "AllowedPattern"); v != nil {
			p.AllowedPattern = v.Value
		}
		if v := Child(def, "AllowedValues"); v != nil {
			for _, c := range v.Content {
				p.AllowedValues = append(p.AllowedValues, c.Value)
			}
		}
		for field, dst := range map[string]**float64{"MinValue": &p.MinValue, "MaxValue": &p.MaxValue} {
			if v := Child(def, field); v != nil {
				f, err := strconv.ParseFloat(v.Value, 64)
				if err != nil {
					return fmt.Errorf("parameter %s: %s %q is not a number", p.Name, field, v.Value)
				}
				*dst = &f
			}
		}
		t.Parameters = append(t.Parameters, p)
	}
	return nil
}

// Defaults returns the parameters that have a Default, with it.
func (t *Template) Defaults() map[string]string {
	out := map[string]string{}
	for _, p := range t.Parameters {
		if p.HasDefault {
			out[p.Name] = p.Default
		}
	}
	return out
}

// ParameterValues checks values as CloudFormation does when a stack is
// created (every value known to the template and within its constraints,
// every parameter without a Default given) and returns every parameter's
// value: the given one, else the Default. All problems are reported at once.
func (t *Template) ParameterValues(given map[string]string) (map[string]string, error) {
	var errs []error
	for name := range given {
		if !slices.ContainsFunc(t.Parameters, func(p Parameter) bool { return p.Name == name }) {
			errs = append(errs, fmt.Errorf("parameter %s is not in the template", name))
		}
	}
	out := map[string]string{}
	for _, p := range t.Parameters {
		v, ok := given[p.Name]
		if !ok {
			if !p.HasDefault {
				errs = append(errs, fmt.Errorf("parameter %s has no Default and no value was given", p.Name))
				continue
			}
			v = p.Default
		}
		if err := p.Check(v); err != nil {
			errs = append(errs, fmt.Errorf("parameter %s=%q: %w", p.Name, v, err))
			continue
		}
		out[p.Name] = v
	}
	return out, errors.Join(errs...)
}

// Check tells whether v satisfies the parameter's constraints.
func (p Parameter) Check(v string) error {
	if p.AllowedPattern != "" {
		re, err := regexp.Compile("^(?:" + p.AllowedPattern + ")$")
		if err != nil {
			return fmt.Errorf("AllowedPattern %q: %w", p.AllowedPattern, err)
		}
		if !re.MatchString(v) {
			return fmt.Errorf("does not match AllowedPattern %s", p.AllowedPattern)
		}
	}
	if len(p.AllowedValues) > 0 && !slices.Contains(p.AllowedValues, v) {
		return fmt.Errorf("not one of the AllowedValues %v", p.AllowedValues)
	}
	if p.Type == "Number" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return errors.New("not a number")
		}
		if p.MinValue != nil && f < *p.MinValue || p.MaxValue != nil && f > *p.MaxValue {
			return fmt.Errorf("outside [%v, %v]", bound(p.MinValue), bound(p.MaxValue))
		}
	}
	return nil
}

func bound(f *float64) any {
	if f == nil {
		return "-"
	}
	return *f
}
