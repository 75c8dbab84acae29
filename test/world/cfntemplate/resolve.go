package cfntemplate

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Deployed is what a deployed resource answers to Ref and Fn::GetAtt.
type Deployed struct {
	Ref        string
	Attributes map[string]string
}

// Resolver evaluates Ref, Fn::Sub, Fn::GetAtt, Fn::Join, Fn::Select,
// Fn::Split and Fn::If (over
// the conditions Load bound into it: Fn::Equals, Fn::Not, Fn::And, Fn::Or),
// in the short (!Sub) and long ({"Fn::Sub": ...}) forms, over what the
// caller supplies. Ref AWS::NoValue removes the property, list item or
// value it stands for, as in CloudFormation. A name it does not know, a
// reference to a resource left out, or any other intrinsic is an error:
// nothing is ever resolved to a guess. The maps may grow between calls as
// the caller deploys resources.
type Resolver struct {
	Values    map[string]string   // parameters and pseudo parameters
	Resources map[string]Deployed // deployed resources by logical id
	// NotDeployed maps the logical ids of resources the template declares
	// and the world leaves out to their type: a reference to one wraps
	// ErrUnsupported.
	NotDeployed map[string]string
}

// PseudoParameters are CloudFormation's AWS::* values for a stack in the
// local world. AWS::NoValue is "" (the world does not remove properties).
func PseudoParameters(stackName, region, account string) map[string]string {
	return map[string]string{
		"AWS::StackName": stackName, "AWS::Region": region, "AWS::AccountId": account,
		"AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": "",
		"AWS::StackId": fmt.Sprintf("arn:aws:cloudformation:%s:%s:stack/%s/local", region, account, stackName),
	}
}

// noValue is what Ref AWS::NoValue resolves to: mappings and lists drop it,
// String makes it "" and Int its default.
type noValue struct{}

func (r *Resolver) ref(name string) (string, error) {
	if v, ok := r.Values[name]; ok {
		return v, nil
	}
	if d, ok := r.Resources[name]; ok {
		return d.Ref, nil
	}
	if typ, ok := r.NotDeployed[name]; ok {
		return "", fmt.Errorf("!Ref %s: %s is not deployed in the world (%s is ignored): %w", name, name, typ, ErrUnsupported)
	}
	return "", fmt.Errorf("!Ref %s: no such parameter or resource", name)
}

func (r *Resolver) getAtt(id, attr string) (string, error) {
	d, ok := r.Resources[id]
	if !ok {
		if typ, left := r.NotDeployed[id]; left {
			return "", fmt.Errorf("!GetAtt %s.%s: %s is not deployed in the world (%s is ignored): %w", id, attr, id, typ, ErrUnsupported)
		}
		return "", fmt.Errorf("!GetAtt %s.%s: no such resource", id, attr)
	}
	v, ok := d.Attributes[attr]
	if !ok {
		return "", fmt.Errorf("!GetAtt %s.%s: attribute %w", id, attr, ErrUnsupported)
	}
	return v, nil
}

var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

func (r *Resolver) sub(text string, vars map[string]string) (string, error) {
	var firstErr error
	out := subVar.ReplaceAllStringFunc(text, func(m string) string {
		name := m[2 : len(m)-1]
		if strings.HasPrefix(name, "!") {
			return "${" + name[1:] + "}" // ${!Literal}
		}
		if v, ok := vars[name]; ok {
			return v
		}
		var v string
		var err error
		if id, attr, ok := strings.Cut(name, "."); ok && !strings.Contains(id, "::") {
			v, err = r.getAtt(id, attr)
		} else {
			v, err = r.ref(name)
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("!Sub ${%s}: %w", name, err)
		}
		return v
	})
	return out, firstErr
}

// intrinsic returns the name and argument of an intrinsic function call in
// either form ("Ref", "Fn::Sub"...), or ok false for a plain value.
func intrinsic(n *yaml.Node) (name string, arg *yaml.Node, ok bool) {
	if isIntrinsic(n) {
		name = strings.TrimPrefix(n.Tag, "!")
		if name != "Ref" {
			name = "Fn::" + name
		}
		return name, n, true
	}
	if n.Kind == yaml.MappingNode && len(n.Content) == 2 {
		if k := n.Content[0].Value; k == "Ref" || strings.HasPrefix(k, "Fn::") {
			return k, n.Content[1], true
		}
	}
	return "", nil, false
}

// Resolve turns a YAML value into plain Go values (string, int, float64,
// bool, nil, []any, map[string]any) with every intrinsic evaluated. A nil
// node is nil.
func (r *Resolver) Resolve(n *yaml.Node) (any, error) {
	if n == nil {
		return nil, nil
	}
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if name, arg, ok := intrinsic(n); ok {
		switch name {
		case "Ref":
			if arg.Value == "AWS::NoValue" {
				return noValue{}, nil
			}
			return r.ref(arg.Value)
		case "Fn::Sub":
			return r.fnSub(arg)
		case "Fn::GetAtt":
			return r.fnGetAtt(arg)
		case "Fn::Join":
			return r.fnJoin(arg)
		case "Fn::If":
			return r.fnIf(arg)
		case "Fn::Select":
			return r.fnSelect(arg)
		case "Fn::Split":
			return r.fnSplit(arg)
		}
		return nil, fmt.Errorf("line %d: intrinsic %s: %w", n.Line, name, ErrUnsupported)
	}
	switch n.Kind {
	case yaml.MappingNode:
		out := map[string]any{}
		for k, v := range Pairs(n) {
			val, err := r.Resolve(v)
			if err != nil {
				return nil, err
			}
			if val != (noValue{}) {
				out[k.Value] = val
			}
		}
		return out, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := r.Resolve(c)
			if err != nil {
				return nil, err
			}
			if v != (noValue{}) {
				out = append(out, v)
			}
		}
		return out, nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, fmt.Errorf("line %d: %w", n.Line, err)
	}
	return v, nil
}

func (r *Resolver) fnSub(n *yaml.Node) (any, error) {
	if n.Kind == yaml.ScalarNode {
		return r.sub(n.Value, nil)
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) != 2 || n.Content[0].Kind != yaml.ScalarNode {
		return nil, fmt.Errorf("line %d: Fn::Sub takes a string or [string, {vars}]", n.Line)
	}
	vars := map[string]string{}
	for k, v := range Pairs(n.Content[1]) {
		s, err := r.String(v)
		if err != nil {
			return nil, fmt.Errorf("Fn::Sub variable %s: %w", k.Value, err)
		}
		vars[k.Value] = s
	}
	return r.sub(n.Content[0].Value, vars)
}

func (r *Resolver) fnGetAtt(n *yaml.Node) (any, error) {
	id, attr, err := getAttArgs(n)
	if err != nil {
		return nil, err
	}
	return r.getAtt(id, attr)
}

func getAttArgs(n *yaml.Node) (id, attr string, err error) {
	switch {
	case n.Kind == yaml.ScalarNode:
		if id, attr, ok := strings.Cut(n.Value, "."); ok {
			return id, attr, nil
		}
	case n.Kind == yaml.SequenceNode && len(n.Content) == 2:
		return n.Content[0].Value, n.Content[1].Value, nil
	}
	return "", "", fmt.Errorf("line %d: Fn::GetAtt takes Resource.Attribute or [Resource, Attribute]", n.Line)
}

func (r *Resolver) fnJoin(n *yaml.Node) (any, error) {
	if n.Kind != yaml.SequenceNode || len(n.Content) != 2 {
		return nil, fmt.Errorf("line %d: Fn::Join takes [delimiter, [values]]", n.Line)
	}
	list, err := r.Resolve(n.Content[1])
	if err != nil {
		return nil, err
	}
	items, ok := list.([]any)
	if !ok {
		return nil, fmt.Errorf("line %d: Fn::Join: the values are not a list", n.Line)
	}
	parts := make([]string, len(items))
	for i, it := range items {
		s, err := scalarString(it)
		if err != nil {
			return nil, fmt.Errorf("line %d: Fn::Join item %d: %w", n.Line, i, err)
		}
		parts[i] = s
	}
	return strings.Join(parts, n.Content[0].Value), nil
}

// fnSelect evaluates [index, list]: CloudFormation fails on an index past
// the list's end ("Fn::Select cannot select nonexistent value at index"),
// and so does the resolver.
func (r *Resolver) fnSelect(n *yaml.Node) (any, error) {
	if n.Kind != yaml.SequenceNode || len(n.Content) != 2 {
		return nil, fmt.Errorf("line %d: Fn::Select takes [index, [values]]", n.Line)
	}
	i, err := r.Int(n.Content[0], -1)
	if err != nil {
		return nil, fmt.Errorf("line %d: Fn::Select index: %w", n.Line, err)
	}
	list, err := r.Resolve(n.Content[1])
	if err != nil {
		return nil, err
	}
	items, ok := list.([]any)
	if !ok {
		return nil, fmt.Errorf("line %d: Fn::Select: the values are not a list", n.Line)
	}
	if i < 0 || i >= len(items) {
		return nil, fmt.Errorf("line %d: Fn::Select cannot select nonexistent value at index %d", n.Line, i)
	}
	return items[i], nil
}

// fnSplit evaluates [delimiter, string] into a list of strings.
func (r *Resolver) fnSplit(n *yaml.Node) (any, error) {
	if n.Kind != yaml.SequenceNode || len(n.Content) != 2 || n.Content[0].Kind != yaml.ScalarNode || n.Content[0].Value == "" {
		return nil, fmt.Errorf("line %d: Fn::Split takes [delimiter, string]", n.Line)
	}
	s, err := r.String(n.Content[1])
	if err != nil {
		return nil, fmt.Errorf("line %d: Fn::Split: %w", n.Line, err)
	}
	var out []any
	for _, part := range strings.Split(s, n.Content[0].Value) {
		out = append(out, part)
	}
	return out, nil
}

// fnIf evaluates [condition, then, else]; Load has put the condition's
// expression in place of its name.
func (r *Resolver) fnIf(n *yaml.Node) (any, error) {
	if n.Kind != yaml.SequenceNode || len(n.Content) != 3 {
		return nil, fmt.Errorf("line %d: Fn::If takes [condition, value if true, value if false]", n.Line)
	}
	ok, err := r.condition(n.Content[0])
	if err != nil {
		return nil, fmt.Errorf("line %d: Fn::If: %w", n.Line, err)
	}
	if ok {
		return r.Resolve(n.Content[1])
	}
	return r.Resolve(n.Content[2])
}

// condition evaluates a condition expression (Fn::Equals, Fn::Not, Fn::And,
// Fn::Or over values the Resolver resolves).
func (r *Resolver) condition(n *yaml.Node) (bool, error) {
	name, arg, ok := intrinsic(n)
	if !ok {
		if n.Kind == yaml.ScalarNode {
			return false, fmt.Errorf("condition %q is not defined in the template", n.Value)
		}
		return false, fmt.Errorf("line %d: not a condition", n.Line)
	}
	if arg.Kind != yaml.SequenceNode {
		return false, fmt.Errorf("line %d: %s takes a list", n.Line, name)
	}
	args := arg.Content
	switch name {
	case "Fn::Equals":
		if len(args) != 2 {
			return false, fmt.Errorf("line %d: Fn::Equals takes two values", n.Line)
		}
		a, err := r.String(args[0])
		if err != nil {
			return false, err
		}
		b, err := r.String(args[1])
		if err != nil {
			return false, err
		}
		return a == b, nil
	case "Fn::Not":
		if len(args) != 1 {
			return false, fmt.Errorf("line %d: Fn::Not takes one condition", n.Line)
		}
		v, err := r.condition(args[0])
		return !v, err
	case "Fn::And", "Fn::Or":
		if len(args) < 2 || len(args) > 10 {
			return false, fmt.Errorf("line %d: %s takes 2 to 10 conditions", n.Line, name)
		}
		for _, c := range args {
			v, err := r.condition(c)
			if err != nil {
				return false, err
			}
			if v == (name == "Fn::Or") {
				return v, nil
			}
		}
		return name == "Fn::And", nil
	}
	return false, fmt.Errorf("line %d: condition function %s: %w", n.Line, name, ErrUnsupported)
}

// String resolves a value that must be a scalar; a nil node (or one that
// resolves to AWS::NoValue) is "".
func (r *Resolver) String(n *yaml.Node) (string, error) {
	if n == nil {
		return "", nil
	}
	v, err := r.Resolve(n)
	if err != nil {
		return "", err
	}
	if v == (noValue{}) {
		return "", nil
	}
	return scalarString(v)
}

// Int resolves a whole number (a Number parameter arrives as a string);
// def when n is nil or resolves to AWS::NoValue (the property is absent).
func (r *Resolver) Int(n *yaml.Node, def int) (int, error) {
	if n == nil {
		return def, nil
	}
	resolved, err := r.Resolve(n)
	if err != nil {
		return 0, err
	}
	if resolved == (noValue{}) {
		return def, nil
	}
	s, err := scalarString(resolved)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("line %d: %q is not a whole number", n.Line, s)
	}
	return v, nil
}

func scalarString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int, int64, float64, bool:
		return fmt.Sprint(x), nil
	}
	return "", fmt.Errorf("%v is not a scalar", v)
}

// Reference reads which resource a property points to, without resolving
// it: a Ref or Fn::GetAtt (either form) of a logical id. Wiring code needs
// the resource itself (a rule's target queue, a dead-letter queue), not
// its ARN. attribute is "" for a Ref.
func Reference(n *yaml.Node) (logicalID, attribute string, err error) {
	if n == nil {
		return "", "", fmt.Errorf("want a Ref or Fn::GetAtt of a resource, found nothing")
	}
	name, arg, ok := intrinsic(n)
	switch {
	case ok && name == "Ref" && arg.Kind == yaml.ScalarNode:
		return arg.Value, "", nil
	case ok && name == "Fn::GetAtt":
		return getAttArgs(arg)
	}
	return "", "", fmt.Errorf("line %d: want a Ref or Fn::GetAtt of a resource", n.Line)
}
