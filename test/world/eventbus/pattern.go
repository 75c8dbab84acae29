package eventbus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/tether-ecs/tether/test/world/worldapi"
)

// ErrUnsupportedPattern marks an event pattern outside the subset the world
// implements (it is never silently treated as "match everything").
var ErrUnsupportedPattern = errors.New("unsupported event pattern")

// Pattern is a compiled EventBridge event pattern. The subset: fields at any
// depth matched against arrays of exact values (strings, numbers, booleans,
// null) or {"prefix": "..."}; an array means any-of; an event field that is
// itself an array matches when any element does; every field named must
// match; a field missing from the event never matches. Other matchers
// (anything-but, numeric, exists, suffix, wildcard, cidr, equals-ignore-case,
// $or) are refused with ErrUnsupportedPattern.
type Pattern struct {
	root map[string]node
	src  string
}

type node struct {
	fields   map[string]node // nested object
	matchers []matcher       // leaf
}

type matcher struct {
	prefix   bool
	value    any // string, json.Number, bool or nil
	valueSet bool
}

// CompilePattern parses and checks a pattern.
func CompilePattern(src string) (*Pattern, error) {
	dec := json.NewDecoder(strings.NewReader(src))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("event pattern is not a JSON object: %w", err)
	}
	if len(raw) == 0 {
		return nil, errors.New("event pattern is empty")
	}
	root, err := compileObject(raw, "")
	if err != nil {
		return nil, err
	}
	return &Pattern{root: root, src: src}, nil
}

func (p *Pattern) String() string { return p.src }

func compileObject(raw map[string]any, path string) (map[string]node, error) {
	out := map[string]node{}
	for k, v := range raw {
		if strings.HasPrefix(k, "$") {
			return nil, fmt.Errorf("%w: %s%s", ErrUnsupportedPattern, path, k)
		}
		switch val := v.(type) {
		case map[string]any:
			sub, err := compileObject(val, path+k+".")
			if err != nil {
				return nil, err
			}
			out[k] = node{fields: sub}
		case []any:
			if len(val) == 0 {
				return nil, fmt.Errorf("event pattern field %s%s: empty array", path, k)
			}
			var ms []matcher
			for _, item := range val {
				m, err := compileMatcher(item, path+k)
				if err != nil {
					return nil, err
				}
				ms = append(ms, m)
			}
			out[k] = node{matchers: ms}
		default:
			return nil, fmt.Errorf("event pattern field %s%s: want an array or an object, got %T", path, k, v)
		}
	}
	return out, nil
}

func compileMatcher(item any, field string) (matcher, error) {
	switch v := item.(type) {
	case string, json.Number, bool, nil:
		return matcher{value: v, valueSet: true}, nil
	case map[string]any:
		if len(v) != 1 {
			return matcher{}, fmt.Errorf("%w: %s: one matcher per object", ErrUnsupportedPattern, field)
		}
		for name, arg := range v {
			s, ok := arg.(string)
			if name == "prefix" && ok {
				return matcher{prefix: true, value: s}, nil
			}
			return matcher{}, fmt.Errorf("%w: %s: matcher %q (supported: exact values and prefix)", ErrUnsupportedPattern, field, name)
		}
	}
	return matcher{}, fmt.Errorf("%w: %s: value %v", ErrUnsupportedPattern, field, item)
}

// Match reports whether the event matches.
func (p *Pattern) Match(e worldapi.Event) bool {
	b, err := json.Marshal(e)
	if err != nil {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc map[string]any
	if dec.Decode(&doc) != nil {
		return false
	}
	return matchObject(p.root, doc)
}

func matchObject(fields map[string]node, doc map[string]any) bool {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		n := fields[k]
		v, present := doc[k]
		if !present {
			return false
		}
		if n.fields != nil {
			obj, ok := v.(map[string]any)
			if !ok || !matchObject(n.fields, obj) {
				return false
			}
			continue
		}
		if !matchLeaf(n.matchers, v) {
			return false
		}
	}
	return true
}

func matchLeaf(ms []matcher, v any) bool {
	if arr, ok := v.([]any); ok {
		for _, el := range arr {
			if matchLeaf(ms, el) {
				return true
			}
		}
		return false
	}
	for _, m := range ms {
		if m.matches(v) {
			return true
		}
	}
	return false
}

func (m matcher) matches(v any) bool {
	if m.prefix {
		s, ok := v.(string)
		return ok && strings.HasPrefix(s, m.value.(string))
	}
	switch want := m.value.(type) {
	case nil:
		return v == nil
	case string:
		s, ok := v.(string)
		return ok && s == want
	case bool:
		b, ok := v.(bool)
		return ok && b == want
	case json.Number:
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		a, errA := want.Float64()
		b, errB := n.Float64()
		return errA == nil && errB == nil && a == b
	}
	return false
}
