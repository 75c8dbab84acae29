package awsmodel

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// value is a request's input in a form common to the protocols: JSON
// decoded keeping member order, query forms folded into a tree.
type value struct {
	k    vkind
	s    string // scalar text as sent (a JSON number keeps its literal)
	list []*value
	obj  []field
	key  string // query: the form key a scalar came from
}

type vkind uint8

const (
	vNull vkind = iota
	vString
	vNumber
	vBool
	vList
	vObject
)

type field struct {
	name string
	v    *value
}

// get returns the member named name, or nil; a repeated key counts once,
// the last one (as a JSON parser reading into a map would).
func (v *value) get(name string) *value {
	var out *value
	for _, f := range v.obj {
		if f.name == name {
			out = f.v
		}
	}
	return out
}

var errTrailingJSON = errors.New("data after the JSON value")

// parseJSON reads a request body, keeping members in order and numbers as
// written.
func parseJSON(body []byte) (*value, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	v, err := readJSON(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errTrailingJSON
	}
	return v, nil
}

func readJSON(dec *json.Decoder) (*value, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			v := &value{k: vObject}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				child, err := readJSON(dec)
				if err != nil {
					return nil, err
				}
				v.obj = append(v.obj, field{name: kt.(string), v: child})
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return v, nil
		case '[':
			v := &value{k: vList, list: []*value{}}
			for dec.More() {
				child, err := readJSON(dec)
				if err != nil {
					return nil, err
				}
				v.list = append(v.list, child)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return v, nil
		}
	case string:
		return &value{k: vString, s: t}, nil
	case json.Number:
		return &value{k: vNumber, s: t.String()}, nil
	case bool:
		return &value{k: vBool, s: strconv.FormatBool(t)}, nil
	case nil:
		return &value{k: vNull}, nil
	}
	return nil, errors.New("unexpected JSON token")
}

// qnode is one dotted segment of a query form's keys: Filter.1.Value.2 is
// the path Filter → 1 → Value → 2.
type qnode struct {
	key      string // the full key up to this segment
	val      *string
	children map[string]*qnode
}

// queryTree folds a form into segments, leaving out Action and Version.
func queryTree(form url.Values) *qnode {
	root := &qnode{children: map[string]*qnode{}}
	for k, vs := range form {
		if k == "Action" || k == "Version" {
			continue
		}
		n := root
		for _, seg := range strings.Split(k, ".") {
			c := n.children[seg]
			if c == nil {
				key := seg
				if n.key != "" {
					key = n.key + "." + seg
				}
				c = &qnode{key: key, children: map[string]*qnode{}}
				n.children[seg] = c
			}
			n = c
		}
		if len(vs) > 0 {
			v := vs[0]
			n.val = &v
		}
	}
	return root
}

// sortedChildren returns a node's segments in order (indices numerically).
func (n *qnode) sortedChildren() []string {
	out := make([]string, 0, len(n.children))
	for k := range n.children {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		a, ea := strconv.Atoi(out[i])
		b, eb := strconv.Atoi(out[j])
		if ea == nil && eb == nil {
			return a < b
		}
		return out[i] < out[j]
	})
	return out
}

// unknownParam is a form key the model has no place for: segment is the
// part not recognized, key the whole key.
type unknownParam struct {
	key, segment string
}
