// Command genmodel writes the Go tables of package awsmodel from the
// botocore service models the installed aws CLI ships
// (botocore/data/<service>/<version>/service-2.json[.gz]): for each
// operation, its input shape and every shape reachable from it, with
// members, wire names, required members, lengths, ranges, enums and
// patterns (each translated to RE2 where RE2 can express it).
//
// It runs from `go generate` in test/world/awsmodel; tests read only the
// generated files. Without -botocore it asks python3 where botocore is.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"compress/gzip"

	"github.com/tether-ecs/tether/test/world/awsmodel/internal/javaregex"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "genmodel:", err)
		os.Exit(1)
	}
}

func run() error {
	botocore := flag.String("botocore", "", "botocore package directory (default: asks python3)")
	services := flag.String("services", "ec2,ecs,ssm,sqs,cloudformation,autoscaling", "services to generate")
	ec2Ops := flag.String("ec2-operations", "ec2_operations.txt", "file listing the EC2 operations to generate (EC2's model is too large to generate whole)")
	out := flag.String("out", ".", "directory to write into")
	flag.Parse()

	dir := *botocore
	if dir == "" {
		b, err := exec.Command("python3", "-c", "import botocore,os;print(os.path.dirname(botocore.__file__))").Output()
		if err != nil {
			return fmt.Errorf("finding botocore with python3 (or pass -botocore): %w", err)
		}
		dir = strings.TrimSpace(string(b))
	}
	version, err := botocoreVersion(dir)
	if err != nil {
		return err
	}
	for _, svc := range strings.Split(*services, ",") {
		var only []string
		if svc == "ec2" {
			if only, err = readList(*ec2Ops); err != nil {
				return err
			}
		}
		src, err := generate(dir, version, svc, only)
		if err != nil {
			return fmt.Errorf("%s: %w", svc, err)
		}
		name := filepath.Join(*out, "model_"+svc+"_gen.go")
		if err := os.WriteFile(name, src, 0o644); err != nil {
			return err
		}
	}
	return nil
}

var versionRE = regexp.MustCompile(`(?m)^__version__ = ['"]([^'"]+)['"]`)

func botocoreVersion(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "__init__.py"))
	if err != nil {
		return "", err
	}
	m := versionRE.FindSubmatch(b)
	if m == nil {
		return "", errors.New("no __version__ in botocore/__init__.py")
	}
	return string(m[1]), nil
}

func readList(name string) ([]string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out, nil
}

// botocore's service-2.json, the parts read here.
type botoModel struct {
	Metadata struct {
		Protocol     string `json:"protocol"`
		APIVersion   string `json:"apiVersion"`
		JSONVersion  string `json:"jsonVersion"`
		TargetPrefix string `json:"targetPrefix"`
	} `json:"metadata"`
	Operations map[string]struct {
		Input *botoRef `json:"input"`
	} `json:"operations"`
	Shapes map[string]*botoShape `json:"shapes"`
}

type botoRef struct {
	Shape        string `json:"shape"`
	LocationName string `json:"locationName"`
	QueryName    string `json:"queryName"`
	Flattened    bool   `json:"flattened"`
}

type botoShape struct {
	Type      string          `json:"type"`
	Members   json.RawMessage `json:"members"`
	Required  []string        `json:"required"`
	Member    *botoRef        `json:"member"`
	Key       *botoRef        `json:"key"`
	Value     *botoRef        `json:"value"`
	Min       *float64        `json:"min"`
	Max       *float64        `json:"max"`
	Pattern   *string         `json:"pattern"`
	Enum      []string        `json:"enum"`
	Sensitive bool            `json:"sensitive"`
	Flattened bool            `json:"flattened"`
	Document  bool            `json:"document"`
	Union     bool            `json:"union"`

	members []namedRef // Members in model order
}

type namedRef struct {
	name string
	botoRef
}

func load(dir, svc string) (*botoModel, string, error) {
	versions, err := filepath.Glob(filepath.Join(dir, "data", svc, "*"))
	if err != nil || len(versions) == 0 {
		return nil, "", fmt.Errorf("no botocore data for %s in %s", svc, dir)
	}
	sort.Strings(versions) // API versions are dates: the last is the newest
	var path string
	for _, v := range slices.Backward(versions) {
		for _, name := range []string{"service-2.json.gz", "service-2.json"} {
			if _, err := os.Stat(filepath.Join(v, name)); err == nil {
				path = filepath.Join(v, name)
				break
			}
		}
		if path != "" {
			break
		}
	}
	if path == "" {
		return nil, "", fmt.Errorf("no service-2.json for %s", svc)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, "", err
		}
		r = gz
	}
	var m botoModel
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	for name, s := range m.Shapes {
		if s.members, err = orderedMembers(s.Members); err != nil {
			return nil, "", fmt.Errorf("shape %s: %w", name, err)
		}
	}
	rel, _ := filepath.Rel(dir, path)
	return &m, filepath.ToSlash(rel), nil
}

// orderedMembers decodes a "members" object keeping the model's order,
// which is the order AWS checks and reports members in.
func orderedMembers(raw json.RawMessage) ([]namedRef, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	var out []namedRef
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var ref botoRef
		if err := dec.Decode(&ref); err != nil {
			return nil, err
		}
		out = append(out, namedRef{name: tok.(string), botoRef: ref})
	}
	return out, nil
}

func generate(dir, version, svc string, only []string) ([]byte, error) {
	m, rel, err := load(dir, svc)
	if err != nil {
		return nil, err
	}
	proto := m.Metadata.Protocol
	switch proto {
	case "ec2", "query", "json":
	default:
		return nil, fmt.Errorf("protocol %q not supported", proto)
	}
	ops := only
	if ops == nil {
		for name := range m.Operations {
			ops = append(ops, name)
		}
	}
	sort.Strings(ops)

	// Every shape reachable from an input, numbered in name order.
	reach := map[string]bool{}
	var visit func(name string) error
	visit = func(name string) error {
		if reach[name] {
			return nil
		}
		s, ok := m.Shapes[name]
		if !ok {
			return fmt.Errorf("shape %s not in the model", name)
		}
		reach[name] = true
		for _, mem := range s.members {
			if err := visit(mem.Shape); err != nil {
				return err
			}
		}
		for _, ref := range []*botoRef{s.Member, s.Key, s.Value} {
			if ref != nil {
				if err := visit(ref.Shape); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, op := range ops {
		o, ok := m.Operations[op]
		if !ok {
			return nil, fmt.Errorf("operation %s not in the model", op)
		}
		if o.Input != nil {
			if err := visit(o.Input.Shape); err != nil {
				return nil, err
			}
		}
	}
	names := make([]string, 0, len(reach))
	for n := range reach {
		names = append(names, n)
	}
	sort.Strings(names)
	index := make(map[string]int, len(names))
	for i, n := range names {
		index[n] = i
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by internal/genmodel from botocore %s, %s. DO NOT EDIT.\n\n", version, rel)
	b.WriteString("package awsmodel\n\n")
	fmt.Fprintf(&b, "var %sModel = &model{\n", goIdent(svc))
	fmt.Fprintf(&b, "name: %q, protocol: %q, apiVersion: %q,\n", svc, proto, m.Metadata.APIVersion)
	if proto == "json" {
		fmt.Fprintf(&b, "targetPrefix: %q, jsonVersion: %q,\n", m.Metadata.TargetPrefix, m.Metadata.JSONVersion)
	}
	fmt.Fprintf(&b, "source: %q,\n", "botocore "+version+" "+rel)
	b.WriteString("ops: map[string]int{\n")
	for _, op := range ops {
		in := -1
		if ref := m.Operations[op].Input; ref != nil {
			in = index[ref.Shape]
		}
		fmt.Fprintf(&b, "%q: %d,\n", op, in)
	}
	b.WriteString("},\nshapes: []shape{\n")
	for i, n := range names {
		line, err := shapeLiteral(proto, n, m.Shapes[n], m, index)
		if err != nil {
			return nil, fmt.Errorf("shape %s: %w", n, err)
		}
		fmt.Fprintf(&b, "/* %d */ %s,\n", i, line)
	}
	b.WriteString("},\n}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("formatting: %w", err)
	}
	return src, nil
}

var kinds = map[string]string{
	"structure": "kStructure", "list": "kList", "map": "kMap", "string": "kString",
	"integer": "kInteger", "long": "kLong", "double": "kDouble", "float": "kFloat",
	"boolean": "kBoolean", "timestamp": "kTimestamp", "blob": "kBlob",
}

func shapeLiteral(proto, name string, s *botoShape, m *botoModel, index map[string]int) (string, error) {
	k, ok := kinds[s.Type]
	if !ok {
		return "", fmt.Errorf("type %q not supported", s.Type)
	}
	if s.Document {
		k = "kDocument"
	}
	f := []string{fmt.Sprintf("name: %q", name), "kind: " + k}
	if len(s.members) > 0 {
		required := map[string]bool{}
		for _, r := range s.Required {
			required[r] = true
		}
		var ms []string
		for _, mem := range s.members {
			mf := []string{fmt.Sprintf("name: %q", mem.name), fmt.Sprintf("shape: %d", index[mem.Shape])}
			if w := wireName(proto, mem, m); w != mem.name {
				mf = append(mf, fmt.Sprintf("wire: %q", w))
			}
			if required[mem.name] {
				mf = append(mf, "required: true")
			}
			ms = append(ms, "{"+strings.Join(mf, ", ")+"}")
		}
		f = append(f, "members: []member{"+strings.Join(ms, ", ")+"}")
	}
	if s.Member != nil {
		f = append(f, fmt.Sprintf("item: %d", index[s.Member.Shape]))
		if proto == "query" && s.Member.LocationName != "" {
			f = append(f, fmt.Sprintf("itemWire: %q", s.Member.LocationName))
		}
	}
	if s.Key != nil {
		f = append(f, fmt.Sprintf("key: %d, val: %d", index[s.Key.Shape], index[s.Value.Shape]))
		if proto == "query" && s.Key.LocationName != "" {
			f = append(f, fmt.Sprintf("keyWire: %q", s.Key.LocationName))
		}
		if proto == "query" && s.Value.LocationName != "" {
			f = append(f, fmt.Sprintf("valWire: %q", s.Value.LocationName))
		}
	}
	if proto == "query" && s.Flattened {
		f = append(f, "flat: true")
	}
	if s.Min != nil {
		f = append(f, "min: n("+num(*s.Min)+")")
	}
	if s.Max != nil {
		f = append(f, "max: n("+num(*s.Max)+")")
	}
	if len(s.Enum) > 0 {
		var q []string
		for _, e := range s.Enum {
			q = append(q, strconv.Quote(e))
		}
		f = append(f, "enum: []string{"+strings.Join(q, ", ")+"}")
	}
	if s.Pattern != nil {
		f = append(f, fmt.Sprintf("pattern: %s", goString(*s.Pattern)))
		if re2, err := javaregex.Translate(*s.Pattern); err != nil {
			f = append(f, fmt.Sprintf("noRE2: %q", err.Error()))
		} else {
			f = append(f, fmt.Sprintf("re2: %s", goString(re2)))
		}
	}
	if s.Sensitive {
		f = append(f, "sensitive: true")
	}
	if s.Union {
		f = append(f, "union: true")
	}
	return "{" + strings.Join(f, ", ") + "}", nil
}

// wireName is the member's name on the wire: for EC2 its queryName, else
// its locationName with a capital, else its name; for awsQuery its
// locationName, or for a flattened list whose items are named, the item
// name; for JSON its locationName (botocore's serializers).
func wireName(proto string, mem namedRef, m *botoModel) string {
	switch proto {
	case "ec2":
		if mem.QueryName != "" {
			return mem.QueryName
		}
		if mem.LocationName != "" {
			return strings.ToUpper(mem.LocationName[:1]) + mem.LocationName[1:]
		}
	case "query":
		target := m.Shapes[mem.Shape]
		if target.Type == "list" && (target.Flattened || mem.Flattened) && target.Member.LocationName != "" {
			return target.Member.LocationName
		}
		if mem.LocationName != "" {
			return mem.LocationName
		}
	case "json":
		if mem.LocationName != "" {
			return mem.LocationName
		}
	}
	return mem.name
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// goString quotes s as a raw string when it can, for readable patterns.
func goString(s string) string {
	if !strings.Contains(s, "`") && strconv.CanBackquote(s) {
		return "`" + s + "`"
	}
	return strconv.Quote(s)
}

func goIdent(svc string) string { return strings.ReplaceAll(svc, "-", "_") }
