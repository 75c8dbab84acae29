package samlocal

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// deployed is what a created resource answers to !Ref and !GetAtt.
type deployed struct {
	ref   string
	attrs map[string]string
}

// resolver evaluates !Ref, !Sub, !GetAtt and !Join (short and long forms)
// over parameters, pseudo parameters and the resources already deployed.
// A reference to an ignored resource, or any other intrinsic, is an error:
// nothing is ever resolved to a guess.
type resolver struct {
	values    map[string]string // parameters and pseudo parameters
	resources map[string]deployed
	ignored   map[string]string // logical id -> type
}

func (r *resolver) ref(name string) (string, error) {
	if v, ok := r.values[name]; ok {
		return v, nil
	}
	if d, ok := r.resources[name]; ok {
		return d.ref, nil
	}
	if typ, ok := r.ignored[name]; ok {
		return "", fmt.Errorf("!Ref %s: %s is not deployed in the world (%s is ignored): %w", name, name, typ, ErrUnsupported)
	}
	return "", fmt.Errorf("!Ref %s: no such parameter or resource", name)
}

func (r *resolver) getAtt(id, attr string) (string, error) {
	d, ok := r.resources[id]
	if !ok {
		if typ, ign := r.ignored[id]; ign {
			return "", fmt.Errorf("!GetAtt %s.%s: %s is not deployed in the world (%s is ignored): %w", id, attr, id, typ, ErrUnsupported)
		}
		return "", fmt.Errorf("!GetAtt %s.%s: no such resource", id, attr)
	}
	v, ok := d.attrs[attr]
	if !ok {
		return "", fmt.Errorf("!GetAtt %s.%s: attribute %w", id, attr, ErrUnsupported)
	}
	return v, nil
}

var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

func (r *resolver) sub(text string, vars map[string]string) (string, error) {
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

// resolve turns a YAML value into plain Go values (string, int, float64,
// bool, nil, []any, map[string]any) with every intrinsic evaluated.
func (r *resolver) resolve(n *yaml.Node) (any, error) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Tag {
	case "!Ref":
		return r.ref(n.Value)
	case "!Sub":
		return r.fnSub(n)
	case "!GetAtt":
		return r.fnGetAtt(n)
	case "!Join":
		return r.fnJoin(n)
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		return nil, fmt.Errorf("line %d: intrinsic %s: %w", n.Line, n.Tag, ErrUnsupported)
	}
	switch n.Kind {
	case yaml.MappingNode:
		if len(n.Content) == 2 {
			arg := n.Content[1]
			switch n.Content[0].Value {
			case "Ref":
				return r.ref(arg.Value)
			case "Fn::Sub":
				return r.fnSub(arg)
			case "Fn::GetAtt":
				return r.fnGetAtt(arg)
			case "Fn::Join":
				return r.fnJoin(arg)
			}
			if strings.HasPrefix(n.Content[0].Value, "Fn::") {
				return nil, fmt.Errorf("line %d: intrinsic %s: %w", n.Line, n.Content[0].Value, ErrUnsupported)
			}
		}
		out := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			v, err := r.resolve(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			out[n.Content[i].Value] = v
		}
		return out, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := r.resolve(c)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, fmt.Errorf("line %d: %w", n.Line, err)
	}
	return v, nil
}

func (r *resolver) fnSub(n *yaml.Node) (any, error) {
	if n.Kind == yaml.ScalarNode {
		return r.sub(n.Value, nil)
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) != 2 || n.Content[0].Kind != yaml.ScalarNode {
		return nil, fmt.Errorf("line %d: Fn::Sub takes a string or [string, {vars}]", n.Line)
	}
	vars := map[string]string{}
	m := n.Content[1]
	for i := 0; i+1 < len(m.Content); i += 2 {
		v, err := r.resolveString(m.Content[i+1])
		if err != nil {
			return nil, fmt.Errorf("Fn::Sub variable %s: %w", m.Content[i].Value, err)
		}
		vars[m.Content[i].Value] = v
	}
	return r.sub(n.Content[0].Value, vars)
}

func (r *resolver) fnGetAtt(n *yaml.Node) (any, error) {
	switch {
	case n.Kind == yaml.ScalarNode:
		id, attr, ok := strings.Cut(n.Value, ".")
		if !ok {
			return nil, fmt.Errorf("line %d: !GetAtt %q: want Resource.Attribute", n.Line, n.Value)
		}
		return r.getAtt(id, attr)
	case n.Kind == yaml.SequenceNode && len(n.Content) == 2:
		return r.getAtt(n.Content[0].Value, n.Content[1].Value)
	}
	return nil, fmt.Errorf("line %d: Fn::GetAtt takes Resource.Attribute or [Resource, Attribute]", n.Line)
}

func (r *resolver) fnJoin(n *yaml.Node) (any, error) {
	if n.Kind != yaml.SequenceNode || len(n.Content) != 2 {
		return nil, fmt.Errorf("line %d: Fn::Join takes [delimiter, [values]]", n.Line)
	}
	list, err := r.resolve(n.Content[1])
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

func (r *resolver) resolveString(n *yaml.Node) (string, error) {
	v, err := r.resolve(n)
	if err != nil {
		return "", err
	}
	return scalarString(v)
}

// resolveInt reads a whole number (a Number parameter arrives as a string).
func (r *resolver) resolveInt(n *yaml.Node, def int) (int, error) {
	if n == nil {
		return def, nil
	}
	s, err := r.resolveString(n)
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
