package awsmodel

import (
	"encoding/base64"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// CheckJSON checks a JSON-protocol request body against the operation's
// input shape; nil means the model accepts it.
func (s *Service) CheckJSON(op string, body []byte) *Refusal {
	in, ok := s.m.ops[op]
	if !ok {
		return s.style().unknownOperation(op)
	}
	v, err := parseJSON(body)
	if err != nil || v.k != vObject {
		return jsonRootRefusal(v, err)
	}
	if in < 0 {
		return nil
	}
	root := &s.m.shapes[in]
	if r := s.jsonTypes(root, v); r != nil {
		return r
	}
	return s.style().refuse(s.constraints(root, v))
}

// CheckQuery checks an EC2 or awsQuery request's form (Action and Version
// aside) against the operation's input shape; nil means the model accepts
// it.
func (s *Service) CheckQuery(op string, form url.Values) *Refusal {
	in, ok := s.m.ops[op]
	if !ok {
		return s.style().unknownOperation(op)
	}
	tree := queryTree(form)
	if in < 0 {
		for _, seg := range tree.sortedChildren() {
			return s.style().unknownParameter(unknownParam{key: tree.children[seg].key, segment: seg})
		}
		return nil
	}
	root := &s.m.shapes[in]
	v, unknown := s.queryValue(root, tree)
	if unknown != nil {
		return s.style().unknownParameter(*unknown)
	}
	if bad := s.queryTypes(root, v, ""); bad != nil {
		return s.style().malformed(*bad)
	}
	return s.style().refuse(s.constraints(root, v))
}

func (s *Service) shape(i int) *shape { return &s.m.shapes[i] }

// --- JSON types ---------------------------------------------------------

// jsonTypes checks that every member the model knows has the JSON type its
// shape needs, as AWS's JSON deserializer does before validating (a wrong
// type is a SerializationException). Members the model does not know are
// ignored, as AWS ignores them; null is an absent member.
func (s *Service) jsonTypes(sh *shape, v *value) *Refusal {
	if v.k == vNull {
		return nil
	}
	switch sh.kind {
	case kDocument:
		return nil
	case kStructure:
		switch v.k {
		case vObject:
		case vList:
			return serialization("Start of list found where not expected")
		default:
			// Measured on Athena (a Coral JSON service): a string where a
			// structure belongs.
			return serialization("Expected null")
		}
		for _, m := range sh.members {
			if mv := v.get(m.wireName()); mv != nil {
				if r := s.jsonTypes(s.shape(m.shape), mv); r != nil {
					return r
				}
			}
		}
	case kList:
		switch v.k {
		case vList:
		case vObject:
			return serialization("Start of structure or map found where not expected.")
		default:
			return serialization("Expected list or null")
		}
		for _, el := range v.list {
			if r := s.jsonTypes(s.shape(sh.item), el); r != nil {
				return r
			}
		}
	case kMap:
		switch v.k {
		case vObject:
		case vList:
			return serialization("Start of list found where not expected")
		default:
			return serialization("Expected map or null")
		}
		for _, f := range v.obj {
			if r := s.jsonTypes(s.shape(sh.val), f.v); r != nil {
				return r
			}
		}
	default:
		return jsonScalar(sh, v)
	}
	return nil
}

// javaTypes are the names Coral's messages give the scalar types.
var javaTypes = map[kind]string{
	kString: "a String", kInteger: "an Integer", kLong: "a Long", kDouble: "a Double",
	kFloat: "a Float", kBoolean: "a Boolean", kTimestamp: "a Date", kBlob: "a ByteBuffer",
}

// jsonScalar checks one scalar. The messages are Coral's, as measured on
// Athena ("STRING_VALUE can not be converted to an Integer", "NUMBER_VALUE
// can not be converted to a String", "Start of list found where not
// expected"). Where AWS is lenient the world is not: AWS truncates 1.5 for
// an integer and converts "true" for a boolean; both are refused here.
func jsonScalar(sh *shape, v *value) *Refusal {
	target := javaTypes[sh.kind]
	token := map[vkind]string{vString: "STRING_VALUE", vNumber: "NUMBER_VALUE"}[v.k]
	if v.k == vBool {
		token = strings.ToUpper(v.s) + "_VALUE"
	}
	switch v.k {
	case vList:
		return serialization("Start of list found where not expected")
	case vObject:
		return serialization("Start of structure or map found where not expected.")
	}
	switch sh.kind {
	case kString:
		if v.k == vString {
			return nil
		}
	case kInteger, kLong:
		if v.k == vNumber {
			bits := 32
			if sh.kind == kLong {
				bits = 64
			}
			if _, err := strconv.ParseInt(v.s, 10, bits); err == nil {
				return nil
			}
			if strings.ContainsAny(v.s, ".eE") {
				token = "DECIMAL_VALUE"
			}
		}
	case kDouble, kFloat:
		if v.k == vNumber {
			return nil
		}
	case kBoolean:
		if v.k == vBool {
			return nil
		}
	case kTimestamp:
		// JSON protocols send epoch seconds (botocore's unixtimestamp).
		if v.k == vNumber {
			return nil
		}
	case kBlob:
		if v.k == vString {
			if _, err := base64.StdEncoding.DecodeString(v.s); err == nil {
				return nil
			}
			return serialization("Base64 encoded length is expected a multiple of 4 bytes but found: " + strconv.Itoa(len(v.s)))
		}
		return serialization("only base-64-encoded strings are convertible to bytes")
	}
	return serialization(token + " can not be converted to " + target)
}

// --- query forms --------------------------------------------------------

// queryValue folds a form subtree into a value of the shape, or names the
// first key the model has no place for. EC2 lists are always flattened
// (Name.N); awsQuery lists are Name.member.N unless flattened, and an
// empty awsQuery list is sent as "Name=" (botocore's query serializer).
func (s *Service) queryValue(sh *shape, n *qnode) (*value, *unknownParam) {
	ec2 := s.m.protocol == string(ProtocolEC2)
	switch sh.kind {
	case kStructure:
		if n.val != nil && (*n.val != "" || len(n.children) == 0) && n.key != "" {
			return nil, &unknownParam{key: n.key, segment: lastSegment(n.key)}
		}
		v := &value{k: vObject}
		for _, seg := range n.sortedChildren() {
			m, ok := memberByWire(sh, seg)
			if !ok {
				return nil, &unknownParam{key: n.children[seg].key, segment: seg}
			}
			mv, bad := s.queryValue(s.shape(m.shape), n.children[seg])
			if bad != nil {
				return nil, bad
			}
			v.obj = append(v.obj, field{name: m.wireName(), v: mv})
		}
		return v, nil
	case kList:
		items := n
		if !ec2 && !sh.flat {
			if n.val != nil && *n.val == "" && len(n.children) == 0 {
				return &value{k: vList, list: []*value{}}, nil
			}
			name := sh.itemWire
			if name == "" {
				name = "member"
			}
			for _, seg := range n.sortedChildren() {
				if seg != name {
					return nil, &unknownParam{key: n.children[seg].key, segment: seg}
				}
			}
			if n.val != nil || len(n.children) == 0 {
				return nil, &unknownParam{key: n.key, segment: lastSegment(n.key)}
			}
			items = n.children[name]
		}
		if items.val != nil {
			return nil, &unknownParam{key: items.key, segment: lastSegment(items.key)}
		}
		v := &value{k: vList, list: []*value{}}
		for _, seg := range items.sortedChildren() {
			if i, err := strconv.Atoi(seg); err != nil || i < 1 || strconv.Itoa(i) != seg {
				return nil, &unknownParam{key: items.children[seg].key, segment: seg}
			}
			el, bad := s.queryValue(s.shape(sh.item), items.children[seg])
			if bad != nil {
				return nil, bad
			}
			v.list = append(v.list, el)
		}
		return v, nil
	case kMap:
		entries := n
		if !sh.flat {
			if n.val != nil && *n.val == "" && len(n.children) == 0 {
				return &value{k: vObject}, nil
			}
			for _, seg := range n.sortedChildren() {
				if seg != "entry" {
					return nil, &unknownParam{key: n.children[seg].key, segment: seg}
				}
			}
			if n.val != nil || len(n.children) == 0 {
				return nil, &unknownParam{key: n.key, segment: lastSegment(n.key)}
			}
			entries = n.children["entry"]
		}
		keyName, valName := or(sh.keyWire, "key"), or(sh.valWire, "value")
		v := &value{k: vObject}
		for _, seg := range entries.sortedChildren() {
			e := entries.children[seg]
			if i, err := strconv.Atoi(seg); err != nil || i < 1 {
				return nil, &unknownParam{key: e.key, segment: seg}
			}
			for _, part := range e.sortedChildren() {
				if part != keyName && part != valName {
					return nil, &unknownParam{key: e.children[part].key, segment: part}
				}
			}
			k, kv := e.children[keyName], e.children[valName]
			if k == nil || k.val == nil {
				return nil, &unknownParam{key: e.key, segment: seg}
			}
			var mv *value
			if kv != nil {
				var bad *unknownParam
				if mv, bad = s.queryValue(s.shape(sh.val), kv); bad != nil {
					return nil, bad
				}
			} else {
				mv = &value{k: vNull}
			}
			v.obj = append(v.obj, field{name: *k.val, v: mv})
		}
		return v, nil
	default:
		for _, seg := range n.sortedChildren() {
			return nil, &unknownParam{key: n.children[seg].key, segment: seg}
		}
		return &value{k: vString, s: *n.val, key: n.key}, nil
	}
}

func memberByWire(sh *shape, wire string) (member, bool) {
	for _, m := range sh.members {
		if m.wireName() == wire {
			return m, true
		}
	}
	return member{}, false
}

func lastSegment(key string) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[i+1:]
	}
	return key
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// malformedValue is a query value that is not of its shape's type.
type malformedValue struct {
	key, param, text string
	v                *value
	expected         string
}

// queryTypes converts the form's text to the shapes' types: integers,
// booleans (true or false, as botocore sends them), RFC 3339 timestamps,
// base64 blobs.
func (s *Service) queryTypes(sh *shape, v *value, path string) *malformedValue {
	switch sh.kind {
	case kStructure:
		for _, m := range sh.members {
			if mv := v.get(m.wireName()); mv != nil {
				if bad := s.queryTypes(s.shape(m.shape), mv, join(path, lowerFirst(m.name))); bad != nil {
					return bad
				}
			}
		}
	case kList:
		for i, el := range v.list {
			if bad := s.queryTypes(s.shape(sh.item), el, fmt.Sprintf("%s.%d.member", path, i+1)); bad != nil {
				return bad
			}
		}
	case kMap:
		for _, f := range v.obj {
			if bad := s.queryTypes(s.shape(sh.val), f.v, path+"."+f.name); bad != nil {
				return bad
			}
		}
	case kString, kDocument:
	default:
		if v.k != vString {
			return nil
		}
		ok, expected := true, ""
		switch sh.kind {
		case kInteger:
			_, err := strconv.ParseInt(v.s, 10, 32)
			ok, expected = err == nil, "integer"
		case kLong:
			_, err := strconv.ParseInt(v.s, 10, 64)
			ok, expected = err == nil, "long"
		case kDouble, kFloat:
			f, err := strconv.ParseFloat(v.s, 64)
			ok, expected = err == nil && !math.IsNaN(f) && !math.IsInf(f, 0), "number"
		case kBoolean:
			ok, expected = v.s == "true" || v.s == "false", "boolean"
		case kTimestamp:
			_, err := time.Parse(time.RFC3339Nano, v.s)
			ok, expected = err == nil, "timestamp"
		case kBlob:
			_, err := base64.StdEncoding.DecodeString(v.s)
			ok, expected = err == nil, "base64"
		}
		if !ok {
			return &malformedValue{key: v.key, param: lowerFirst(v.key), text: path, v: v, expected: expected}
		}
		if sh.kind != kBlob && sh.kind != kTimestamp {
			if sh.kind == kBoolean {
				v.k = vBool
			} else {
				v.k = vNumber
			}
		}
	}
	return nil
}

// --- constraints --------------------------------------------------------

// violation is one constraint a request breaks.
type violation struct {
	path  string // AWS's member path: comment, tags.1.member.value
	param string // EC2 and awsQuery: the form key (or, when missing, where it belongs)
	v     *value // nil: a required member is missing
	sh    *shape
	rule  rule
	bound float64
	// rules lists every rule of a list's items or a map's keys or values
	// (AWS then reports them all, in brackets, against the whole list or map).
	rules []ruleText
	scope string // "", "Member", "Map keys", "Map value"
}

type rule uint8

const (
	ruleRequired rule = iota + 1
	ruleMaxLength
	ruleMinLength
	ruleMaxValue
	ruleMinValue
	rulePattern
	ruleEnum
	ruleItems // a list's items or a map's keys or values break rules
)

type ruleText struct {
	rule  rule
	bound float64
}

// constraints walks the value in model order and lists every broken rule.
func (s *Service) constraints(root *shape, v *value) []violation {
	var out []violation
	s.walk(root, v, "", "", &out)
	return out
}

func (s *Service) walk(sh *shape, v *value, path, param string, out *[]violation) {
	switch sh.kind {
	case kStructure:
		for _, m := range sh.members {
			p := join(path, lowerFirst(m.name))
			wp := joinWire(param, m.wireName())
			mv := v.get(m.wireName())
			if mv == nil || mv.k == vNull {
				if m.required {
					*out = append(*out, violation{path: p, param: wp, sh: s.shape(m.shape), rule: ruleRequired})
				}
				continue
			}
			s.walk(s.shape(m.shape), mv, p, wp, out)
		}
	case kList:
		s.lengths(sh, v, len(v.list), path, param, out)
		item := s.shape(sh.item)
		if isScalar(item) {
			for _, el := range v.list {
				if el.k != vNull && len(s.scalarRules(item, el)) > 0 {
					*out = append(*out, violation{path: path, param: param, v: v, sh: sh, rule: ruleItems, rules: allRules(item), scope: "Member"})
					break
				}
			}
			return
		}
		for i, el := range v.list {
			if el.k != vNull {
				s.walk(item, el, fmt.Sprintf("%s.%d.member", path, i+1), fmt.Sprintf("%s.%d", param, i+1), out)
			}
		}
	case kMap:
		s.lengths(sh, v, len(v.obj), path, param, out)
		key, val := s.shape(sh.key), s.shape(sh.val)
		for _, f := range v.obj {
			if len(s.scalarRules(key, &value{k: vString, s: f.name})) > 0 {
				*out = append(*out, violation{path: path, param: param, v: v, sh: sh, rule: ruleItems, rules: allRules(key), scope: "Map keys"})
				break
			}
		}
		if isScalar(val) {
			for _, f := range v.obj {
				if f.v.k != vNull && len(s.scalarRules(val, f.v)) > 0 {
					*out = append(*out, violation{path: path, param: param, v: v, sh: sh, rule: ruleItems, rules: allRules(val), scope: "Map value"})
					break
				}
			}
			return
		}
		for _, f := range v.obj {
			if f.v.k != vNull {
				s.walk(val, f.v, path+"."+f.name, param+"."+f.name, out)
			}
		}
	case kDocument:
	default:
		for _, r := range s.scalarRules(sh, v) {
			*out = append(*out, violation{path: path, param: param, v: v, sh: sh, rule: r.rule, bound: r.bound})
		}
	}
}

func (s *Service) lengths(sh *shape, v *value, n int, path, param string, out *[]violation) {
	if sh.max != nil && float64(n) > *sh.max {
		*out = append(*out, violation{path: path, param: param, v: v, sh: sh, rule: ruleMaxLength, bound: *sh.max})
	}
	if sh.min != nil && float64(n) < *sh.min {
		*out = append(*out, violation{path: path, param: param, v: v, sh: sh, rule: ruleMinLength, bound: *sh.min})
	}
}

func isScalar(sh *shape) bool {
	switch sh.kind {
	case kStructure, kList, kMap, kDocument:
		return false
	}
	return true
}

// scalarRules returns the rules a scalar breaks, in the order AWS reports
// them for SSM's comment: length, then pattern (a 104-character comment
// got "Member must have length less than or equal to 100; ... Member must
// satisfy regular expression pattern: ^.{0,100}$", aws-samples/
// bottlerocket-images-cache#11).
func (s *Service) scalarRules(sh *shape, v *value) []ruleText {
	var out []ruleText
	switch sh.kind {
	case kString, kBlob:
		n := utf8.RuneCountInString(v.s) // AWS counts code points
		if sh.kind == kBlob {
			b, _ := base64.StdEncoding.DecodeString(v.s)
			n = len(b)
		}
		if sh.max != nil && float64(n) > *sh.max {
			out = append(out, ruleText{ruleMaxLength, *sh.max})
		}
		if sh.min != nil && float64(n) < *sh.min {
			out = append(out, ruleText{ruleMinLength, *sh.min})
		}
		if sh.re != nil && !sh.re.MatchString(v.s) {
			out = append(out, ruleText{rule: rulePattern})
		}
		if len(sh.enum) > 0 && s.checksEnums() && !contains(sh.enum, v.s) {
			out = append(out, ruleText{rule: ruleEnum})
		}
	case kInteger, kLong, kDouble, kFloat:
		f, err := strconv.ParseFloat(v.s, 64)
		if err != nil {
			return nil
		}
		if sh.max != nil && f > *sh.max {
			out = append(out, ruleText{ruleMaxValue, *sh.max})
		}
		if sh.min != nil && f < *sh.min {
			out = append(out, ruleText{ruleMinValue, *sh.min})
		}
	}
	return out
}

// allRules lists every rule of an item shape, in the order AWS lists them
// in brackets: "[Member must have length less than or equal to 253, Member
// must have length greater than or equal to 1, Member must satisfy regular
// expression pattern: ...]" (ACM's subjectAlternativeNames).
func allRules(sh *shape) []ruleText {
	var out []ruleText
	switch sh.kind {
	case kString, kBlob:
		if sh.max != nil {
			out = append(out, ruleText{ruleMaxLength, *sh.max})
		}
		if sh.min != nil {
			out = append(out, ruleText{ruleMinLength, *sh.min})
		}
		if sh.pattern != "" {
			out = append(out, ruleText{rule: rulePattern})
		}
		if len(sh.enum) > 0 {
			out = append(out, ruleText{rule: ruleEnum})
		}
	default:
		if sh.max != nil {
			out = append(out, ruleText{ruleMaxValue, *sh.max})
		}
		if sh.min != nil {
			out = append(out, ruleText{ruleMinValue, *sh.min})
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func joinWire(param, wire string) string {
	if param == "" {
		return wire
	}
	return param + "." + wire
}

// lowerFirst is how AWS names members in messages: SSM's Comment is
// 'comment', CloudFormation's StackName 'stackName'.
func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return strings.ToLower(string(r)) + s[n:]
}
