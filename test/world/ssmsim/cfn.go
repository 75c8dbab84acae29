package ssmsim

import (
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// cfnResolver evaluates the CloudFormation intrinsics a template may use
// around its SSM documents: Ref and Fn::Sub of pseudo parameters and of
// template parameters with defaults, and Fn::Join; in both the short (!Sub)
// and long ({"Fn::Sub": ...}) forms. Anything else is an error, never
// silently kept.
type cfnResolver struct {
	pseudo map[string]string
	params map[string]string
}

func (r *cfnResolver) parameters(n *yaml.Node) {
	r.params = map[string]string{}
	if n == nil || n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if d := mapGet(n.Content[i+1], "Default"); d != nil && d.Kind == yaml.ScalarNode {
			r.params[n.Content[i].Value] = d.Value
		}
	}
}

func (r *cfnResolver) ref(name string) (string, error) {
	if v, ok := r.pseudo[name]; ok {
		return v, nil
	}
	if v, ok := r.params[name]; ok {
		return v, nil
	}
	return "", fmt.Errorf("%s: only pseudo parameters and template parameters with a Default can be resolved here", name)
}

var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

func (r *cfnResolver) sub(text string, vars map[string]string) (string, error) {
	var firstErr error
	out := subVar.ReplaceAllStringFunc(text, func(m string) string {
		name := m[2 : len(m)-1]
		if strings.HasPrefix(name, "!") {
			return "${" + name[1:] + "}" // ${!Literal}
		}
		if v, ok := vars[name]; ok {
			return v
		}
		v, err := r.ref(name)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("Fn::Sub ${%s}: %w", name, err)
		}
		return v
	})
	return out, firstErr
}

func (r *cfnResolver) resolve(n *yaml.Node) (any, error) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Tag {
	case "!Ref":
		return r.ref(n.Value)
	case "!Sub":
		return r.fnSub(n)
	case "!Join":
		return r.fnJoin(n)
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		return nil, fmt.Errorf("intrinsic %s is not supported here", n.Tag)
	}
	switch n.Kind {
	case yaml.MappingNode:
		if len(n.Content) == 2 {
			switch n.Content[0].Value {
			case "Ref":
				return r.ref(n.Content[1].Value)
			case "Fn::Sub":
				return r.fnSub(n.Content[1])
			case "Fn::Join":
				return r.fnJoin(n.Content[1])
			}
			if strings.HasPrefix(n.Content[0].Value, "Fn::") {
				return nil, fmt.Errorf("intrinsic %s is not supported here", n.Content[0].Value)
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
		return nil, err
	}
	return v, nil
}

func (r *cfnResolver) fnSub(n *yaml.Node) (any, error) {
	if n.Kind == yaml.ScalarNode {
		return r.sub(n.Value, nil)
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) != 2 {
		return nil, fmt.Errorf("Fn::Sub takes a string or [string, {vars}]")
	}
	vars := map[string]string{}
	m := n.Content[1]
	for i := 0; i+1 < len(m.Content); i += 2 {
		v, err := r.resolve(m.Content[i+1])
		if err != nil {
			return nil, err
		}
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("Fn::Sub variable %s is not a string", m.Content[i].Value)
		}
		vars[m.Content[i].Value] = s
	}
	return r.sub(n.Content[0].Value, vars)
}

func (r *cfnResolver) fnJoin(n *yaml.Node) (any, error) {
	if n.Kind != yaml.SequenceNode || len(n.Content) != 2 {
		return nil, fmt.Errorf("Fn::Join takes [delimiter, [values]]")
	}
	list, err := r.resolve(n.Content[1])
	if err != nil {
		return nil, err
	}
	items, ok := list.([]any)
	if !ok {
		return nil, fmt.Errorf("Fn::Join: the values are not a list")
	}
	parts := make([]string, len(items))
	for i, it := range items {
		parts[i] = fmt.Sprint(it)
	}
	return strings.Join(parts, n.Content[0].Value), nil
}
