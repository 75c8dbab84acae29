package eventbus

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"gopkg.in/yaml.v3"
)

// Function wraps an in-process handler with aws-lambda-go's signature
// (anything lambda.Start accepts) as an Invoker named like the function;
// each invocation gets its own environment, so they may run concurrently
// (bound them with mappings' MaxConcurrency or Reserved).
func (b *Bus) Function(name string, handler any) Invoker {
	return &inProcess{bus: b, name: name, factory: func() Invoker { return lambda.NewHandler(handler) }}
}

// TemplateOptions say how to read a SAM template.
type TemplateOptions struct {
	StackName string            // queue names are <StackName>-<logical id>
	Params    map[string]string // template parameters; others take their Default
	// Functions are the invokers of the template's AWS::Serverless::Function
	// resources, by logical id. A function left out has its events unwired
	// (listed in Wiring.Unwired).
	Functions map[string]Invoker
}

// Wiring is what LoadTemplate made.
type Wiring struct {
	Queues    map[string]*Queue   // by logical id
	Rules     []string            // EventBridge rules (logical ids)
	Mappings  map[string]*Mapping // "<function>.<event>"
	Schedules []string            // "<function>.<event>"
	Unwired   []string            // events of functions not in Functions
}

// LoadTemplate wires the bus as a SAM template deploys it: every
// AWS::SQS::Queue (VisibilityTimeout, DelaySeconds,
// ReceiveMessageWaitTimeSeconds, RedrivePolicy), every AWS::Events::Rule
// with an EventPattern and queue or function targets, and each function's
// SQS events (BatchSize, MaximumBatchingWindowInSeconds,
// FunctionResponseTypes, ScalingConfig.MaximumConcurrency, the function's
// Timeout and ReservedConcurrentExecutions) and Schedule events. Intrinsics understood: !Ref, !Sub, !GetAtt
// X.Arn; any other in those places is an error.
func (b *Bus) LoadTemplate(path string, o TemplateOptions) (*Wiring, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("eventbus: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil || len(root.Content) == 0 {
		return nil, fmt.Errorf("eventbus: %s: not a YAML template: %v", path, err)
	}
	top := root.Content[0]
	t := &template{bus: b, opts: o, params: map[string]string{}, w: &Wiring{Queues: map[string]*Queue{}, Mappings: map[string]*Mapping{}}}
	t.readParams(child(top, "Parameters"))
	if t.globalTimeout, err = t.int(child(child(child(top, "Globals"), "Function"), "Timeout"), 3); err != nil {
		return nil, err
	}
	resources := child(top, "Resources")
	if resources == nil {
		return nil, fmt.Errorf("eventbus: %s has no Resources", path)
	}
	byType := map[string][]string{}
	t.resources = map[string]*yaml.Node{}
	for i := 0; i+1 < len(resources.Content); i += 2 {
		id, res := resources.Content[i].Value, resources.Content[i+1]
		t.resources[id] = res
		if typ := child(res, "Type"); typ != nil {
			byType[typ.Value] = append(byType[typ.Value], id)
		}
	}
	for _, ids := range byType {
		sort.Strings(ids)
	}
	for _, id := range byType["AWS::SQS::Queue"] {
		if _, err := t.queue(id, 0); err != nil {
			return nil, err
		}
	}
	for _, id := range byType["AWS::Events::Rule"] {
		if err := t.rule(id); err != nil {
			return nil, err
		}
	}
	for _, id := range byType["AWS::Serverless::Function"] {
		if err := t.function(id); err != nil {
			return nil, err
		}
	}
	return t.w, nil
}

type template struct {
	bus           *Bus
	opts          TemplateOptions
	params        map[string]string
	resources     map[string]*yaml.Node
	globalTimeout int
	w             *Wiring
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

func (t *template) readParams(n *yaml.Node) {
	if n == nil {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name := n.Content[i].Value
		if d := child(n.Content[i+1], "Default"); d != nil {
			t.params[name] = d.Value
		}
	}
	for k, v := range t.opts.Params {
		t.params[k] = v
	}
	t.params["AWS::Region"] = t.bus.opts.Region
	t.params["AWS::AccountId"] = t.bus.opts.Account
	t.params["AWS::Partition"] = "aws"
	t.params["AWS::StackName"] = t.opts.StackName
	t.params["AWS::URLSuffix"] = "amazonaws.com"
}

var subVar = regexp.MustCompile(`\$\{([A-Za-z0-9_:.]+)\}`)

// scalar resolves a value to a string: plain, !Ref of a parameter, !Sub.
func (t *template) scalar(n *yaml.Node) (string, error) {
	if n == nil {
		return "", nil
	}
	switch n.Tag {
	case "!Ref":
		v, ok := t.params[n.Value]
		if !ok {
			return "", fmt.Errorf("eventbus: !Ref %s: not a parameter with a value", n.Value)
		}
		return v, nil
	case "!Sub":
		var err error
		out := subVar.ReplaceAllStringFunc(n.Value, func(m string) string {
			name := m[2 : len(m)-1]
			v, ok := t.params[name]
			if !ok {
				err = fmt.Errorf("eventbus: !Sub %q: ${%s} is not a parameter", n.Value, name)
			}
			return v
		})
		return out, err
	case "", "!!str", "!!int", "!!bool", "!!float":
		if n.Kind != yaml.ScalarNode {
			return "", fmt.Errorf("eventbus: line %d: want a value", n.Line)
		}
		return n.Value, nil
	}
	return "", fmt.Errorf("eventbus: line %d: intrinsic %s is not supported here", n.Line, n.Tag)
}

func (t *template) int(n *yaml.Node, def int) (int, error) {
	if n == nil {
		return def, nil
	}
	s, err := t.scalar(n)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("eventbus: line %d: %q is not a number", n.Line, s)
	}
	return v, nil
}

// getAtt reads `!GetAtt X.Arn` and returns X.
func getAtt(n *yaml.Node) (string, error) {
	if n == nil || n.Tag != "!GetAtt" || !strings.HasSuffix(n.Value, ".Arn") {
		return "", fmt.Errorf("eventbus: want !GetAtt <logical id>.Arn")
	}
	return strings.TrimSuffix(n.Value, ".Arn"), nil
}

func (t *template) queue(id string, depth int) (*Queue, error) {
	if q := t.w.Queues[id]; q != nil {
		return q, nil
	}
	res := t.resources[id]
	if typ := child(res, "Type"); typ == nil || typ.Value != "AWS::SQS::Queue" || depth > 1 {
		return nil, fmt.Errorf("eventbus: %s is not a queue this loader can make", id)
	}
	props := child(res, "Properties")
	var o QueueOptions
	for field, dst := range map[string]*time.Duration{"VisibilityTimeout": &o.VisibilityTimeout, "DelaySeconds": &o.DelaySeconds, "ReceiveMessageWaitTimeSeconds": &o.ReceiveWaitTime} {
		secs, err := t.int(child(props, field), -1)
		if err != nil {
			return nil, err
		}
		if secs >= 0 {
			*dst = time.Duration(secs) * time.Second
		}
	}
	if rp := child(props, "RedrivePolicy"); rp != nil {
		dlqID, err := getAtt(child(rp, "deadLetterTargetArn"))
		if err != nil {
			return nil, fmt.Errorf("%w (queue %s RedrivePolicy)", err, id)
		}
		if o.DeadLetter, err = t.queue(dlqID, depth+1); err != nil {
			return nil, err
		}
		if o.MaxReceiveCount, err = t.int(child(rp, "maxReceiveCount"), 0); err != nil {
			return nil, err
		}
	}
	q, err := t.bus.CreateQueue(t.opts.StackName+"-"+id, o)
	if err != nil {
		return nil, err
	}
	t.w.Queues[id] = q
	return q, nil
}

func (t *template) rule(id string) error {
	props := child(t.resources[id], "Properties")
	pattern := child(props, "EventPattern")
	if pattern == nil {
		return fmt.Errorf("eventbus: rule %s has no EventPattern (schedules belong to the functions' Schedule events)", id)
	}
	doc, err := t.plain(pattern)
	if err != nil {
		return fmt.Errorf("%w (rule %s)", err, id)
	}
	js, _ := json.Marshal(doc)
	var targets []Target
	tn := child(props, "Targets")
	if tn == nil || tn.Kind != yaml.SequenceNode {
		return fmt.Errorf("eventbus: rule %s has no Targets", id)
	}
	for _, tgt := range tn.Content {
		ref, err := getAtt(child(tgt, "Arn"))
		if err != nil {
			return fmt.Errorf("%w (rule %s target)", err, id)
		}
		if q := t.w.Queues[ref]; q != nil {
			targets = append(targets, QueueTarget{Queue: q})
		} else if inv := t.opts.Functions[ref]; inv != nil {
			targets = append(targets, InvokerTarget{Name: ref, Invoker: inv})
		} else {
			t.w.Unwired = append(t.w.Unwired, id+"->"+ref)
		}
	}
	if len(targets) == 0 {
		return nil
	}
	if err := t.bus.PutRule(id, string(js), targets...); err != nil {
		return err
	}
	t.w.Rules = append(t.w.Rules, id)
	return nil
}

// plain turns a YAML tree into JSON-able values, resolving !Sub and !Ref.
func (t *template) plain(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.MappingNode:
		out := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			v, err := t.plain(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			out[n.Content[i].Value] = v
		}
		return out, nil
	case yaml.SequenceNode:
		out := []any{}
		for _, c := range n.Content {
			v, err := t.plain(c)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	if n.Tag == "!!int" || n.Tag == "!!float" {
		return json.Number(n.Value), nil
	}
	if n.Tag == "!!bool" {
		return n.Value == "true", nil
	}
	if n.Tag == "!!null" {
		return nil, nil
	}
	return t.scalar(n)
}

func (t *template) function(id string) error {
	props := child(t.resources[id], "Properties")
	timeout, err := t.int(child(props, "Timeout"), t.globalTimeout)
	if err != nil {
		return err
	}
	events := child(props, "Events")
	if events == nil {
		return nil
	}
	inv := t.opts.Functions[id]
	reserved, err := t.int(child(props, "ReservedConcurrentExecutions"), 0)
	if err != nil {
		return err
	}
	if inv != nil && reserved > 0 {
		inv = Reserved(inv, reserved)
	}
	for i := 0; i+1 < len(events.Content); i += 2 {
		name, ev := id+"."+events.Content[i].Value, events.Content[i+1]
		if inv == nil {
			t.w.Unwired = append(t.w.Unwired, name)
			continue
		}
		ep := child(ev, "Properties")
		switch typ := child(ev, "Type"); typ.Value {
		case "SQS":
			if err := t.mapping(name, ep, inv, timeout); err != nil {
				return err
			}
		case "Schedule":
			expr, err := t.scalar(child(ep, "Schedule"))
			if err != nil {
				return err
			}
			if err := t.bus.PutSchedule(name, expr, InvokerTarget{Name: id, Invoker: inv}); err != nil {
				return err
			}
			t.w.Schedules = append(t.w.Schedules, name)
		default:
			return fmt.Errorf("eventbus: %s: event type %s is not supported (SQS, Schedule)", name, typ.Value)
		}
	}
	return nil
}

func (t *template) mapping(name string, ep *yaml.Node, inv Invoker, timeout int) error {
	qid, err := getAtt(child(ep, "Queue"))
	if err != nil {
		return fmt.Errorf("%w (%s Queue)", err, name)
	}
	q := t.w.Queues[qid]
	if q == nil {
		return fmt.Errorf("eventbus: %s: no queue %s", name, qid)
	}
	o := MappingOptions{FunctionTimeout: time.Duration(timeout) * time.Second}
	if o.BatchSize, err = t.int(child(ep, "BatchSize"), 10); err != nil {
		return err
	}
	window, err := t.int(child(ep, "MaximumBatchingWindowInSeconds"), 0)
	if err != nil {
		return err
	}
	o.MaxBatchingWindow = time.Duration(window) * time.Second
	if o.MaxConcurrency, err = t.int(child(child(ep, "ScalingConfig"), "MaximumConcurrency"), 2); err != nil {
		return err
	}
	if frt := child(ep, "FunctionResponseTypes"); frt != nil {
		for _, v := range frt.Content {
			if v.Value != "ReportBatchItemFailures" {
				return fmt.Errorf("eventbus: %s: FunctionResponseTypes %s", name, v.Value)
			}
			o.ReportBatchItemFailures = true
		}
	}
	m, err := t.bus.StartMapping(q, inv, o)
	if err != nil {
		return fmt.Errorf("%w (%s)", err, name)
	}
	t.w.Mappings[name] = m
	return nil
}
