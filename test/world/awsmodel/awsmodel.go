// Package awsmodel checks requests to the local AWS world against the
// services' published models before any simulator sees them, and answers
// what AWS answers: the same error codes and message shapes.
//
// The models are Go tables generated from botocore's service models (the
// ones the installed aws CLI ships; see generate.go and the header of each
// model_*_gen.go for the exact source). A request is checked for unknown
// members (query protocols), types, required members, string and list
// lengths, numeric ranges, enums and patterns. How each service words its
// refusals is in refusals.go, with the sources.
package awsmodel

import (
	"fmt"
	"regexp"
	"sort"
	"sync"
)

//go:generate go run ./internal/genmodel -ec2-operations ec2_operations.txt -out .

// Protocol is a service's wire protocol.
type Protocol string

const (
	ProtocolEC2   Protocol = "ec2"   // EC2's query dialect
	ProtocolQuery Protocol = "query" // awsQuery (CloudFormation, Auto Scaling)
	ProtocolJSON  Protocol = "json"  // JSON 1.0 / 1.1 (ECS, SSM, SQS)
)

type kind uint8

const (
	kStructure kind = iota + 1
	kList
	kMap
	kString
	kInteger
	kLong
	kDouble
	kFloat
	kBoolean
	kTimestamp
	kBlob
	kDocument
)

// shape is one model shape; shapes refer to each other by index in their
// model's table.
type shape struct {
	name      string
	kind      kind
	members   []member // structure, in model order
	item      int      // list: member shape
	itemWire  string   // awsQuery list: item name ("" is "member")
	key, val  int      // map
	keyWire   string   // awsQuery map: key name ("" is "key")
	valWire   string   // awsQuery map: value name ("" is "value")
	flat      bool     // awsQuery: flattened list or map
	min, max  *float64 // length (string, blob, list, map) or value (numbers)
	enum      []string
	pattern   string // as the model writes it (Java), quoted in messages
	re2       string // its RE2 translation, anchored
	noRE2     string // why pattern has no RE2 translation
	sensitive bool
	// union: exactly one member may be set. Not checked: the only union
	// in these models is SSM's ExecutionInputs, which has one member, and
	// AWS's wording for a broken union is not documented.
	union bool

	re *regexp.Regexp // compiled re2 or the exception's equivalent
}

type member struct {
	name     string // the model's member name
	wire     string // name on the wire when it differs (EC2, awsQuery, JSON locationName)
	shape    int
	required bool
}

func (m member) wireName() string {
	if m.wire != "" {
		return m.wire
	}
	return m.name
}

// model is one generated service model.
type model struct {
	name, protocol, apiVersion string
	targetPrefix, jsonVersion  string // JSON protocols
	source                     string // botocore version and file
	ops                        map[string]int
	shapes                     []shape
}

// n makes the generated bounds readable.
func n(v float64) *float64 { return &v }

// Service is one service's request model.
type Service struct {
	m *model
}

var services = map[string]*model{
	"ec2":            ec2Model,
	"ecs":            ecsModel,
	"ssm":            ssmModel,
	"sqs":            sqsModel,
	"cloudformation": cloudformationModel,
	"autoscaling":    autoscalingModel,
}

var prepare = sync.OnceValue(func() error {
	for _, m := range services {
		if err := m.compile(); err != nil {
			return err
		}
	}
	return nil
})

// Lookup returns the model of the named service (ec2, ecs, ssm, sqs,
// cloudformation, autoscaling). It fails for a service without a model and
// for a model whose patterns cannot all be checked or explained.
func Lookup(name string) (*Service, error) {
	if err := prepare(); err != nil {
		return nil, err
	}
	m, ok := services[name]
	if !ok {
		return nil, fmt.Errorf("awsmodel: no model for service %q (have %v)", name, Names())
	}
	return &Service{m: m}, nil
}

// Names lists the services with a model.
func Names() []string {
	var out []string
	for n := range services {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// compile compiles every pattern's RE2 translation; a pattern without one
// must be in the exception list.
func (m *model) compile() error {
	for i := range m.shapes {
		s := &m.shapes[i]
		if s.pattern == "" {
			continue
		}
		expr := s.re2
		if expr == "" {
			ex, ok := patternExceptions[s.pattern]
			if !ok {
				return fmt.Errorf("awsmodel: %s shape %s: pattern %q has no RE2 translation (%s) and is not in patternExceptions",
					m.name, s.name, s.pattern, s.noRE2)
			}
			expr = ex.equivalent
		}
		if expr == "" {
			continue
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return fmt.Errorf("awsmodel: %s shape %s: %w", m.name, s.name, err)
		}
		s.re = re
	}
	return nil
}

// Name is the service's name (ec2, ssm, ...).
func (s *Service) Name() string { return s.m.name }

// Protocol is the service's wire protocol.
func (s *Service) Protocol() Protocol { return Protocol(s.m.protocol) }

// APIVersion is the model's API version (EC2 and awsQuery requests carry it).
func (s *Service) APIVersion() string { return s.m.apiVersion }

// TargetPrefix is the X-Amz-Target prefix of a JSON service.
func (s *Service) TargetPrefix() string { return s.m.targetPrefix }

// JSONVersion is "1.0" or "1.1" for a JSON service.
func (s *Service) JSONVersion() string { return s.m.jsonVersion }

// Source names the botocore file and version the model came from.
func (s *Service) Source() string { return s.m.source }

// Has reports whether the model has the operation. For EC2 the model holds
// only the operations the world serves (ec2_operations.txt).
func (s *Service) Has(op string) bool {
	_, ok := s.m.ops[op]
	return ok
}

// Operations lists the model's operations.
func (s *Service) Operations() []string {
	out := make([]string, 0, len(s.m.ops))
	for op := range s.m.ops {
		out = append(out, op)
	}
	sort.Strings(out)
	return out
}
