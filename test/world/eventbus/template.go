package eventbus

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"gopkg.in/yaml.v3"

	"github.com/tether-ecs/tether/test/world/cfntemplate"
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
	Schedules []string            // "<function>.<event>", or a scheduled rule's logical id
	Unwired   []string            // events of functions not in Functions
}

// LoadTemplate wires the bus as a SAM template deploys it: every
// AWS::SQS::Queue (VisibilityTimeout, DelaySeconds,
// ReceiveMessageWaitTimeSeconds, RedrivePolicy), every AWS::Events::Rule
// with queue or function targets and an EventPattern or a
// ScheduleExpression, and each function's SQS events (BatchSize,
// MaximumBatchingWindowInSeconds, FunctionResponseTypes,
// ScalingConfig.MaximumConcurrency, the function's Timeout,
// ReservedConcurrentExecutions and RecursiveLoop, Globals.Function applied) and Schedule
// events. Queues, targets and dead-letter queues are named by !GetAtt X.Arn;
// values may use !Ref, !Sub and !Join of parameters and pseudo parameters.
// Anything else in those places is an error. A resource whose Condition
// does not hold for the parameters is not wired, as CloudFormation does not
// create it.
func (b *Bus) LoadTemplate(path string, o TemplateOptions) (*Wiring, error) {
	t, err := cfntemplate.Load(path)
	if err != nil {
		return nil, fmt.Errorf("eventbus: %w", err)
	}
	return b.WireTemplate(t, o)
}

// WireTemplate is LoadTemplate for a template already read.
func (b *Bus) WireTemplate(t *cfntemplate.Template, o TemplateOptions) (*Wiring, error) {
	values := cfntemplate.PseudoParameters(o.StackName, b.opts.Region, b.opts.Account)
	maps.Copy(values, t.Defaults())
	maps.Copy(values, o.Params)
	w := &wiring{bus: b, tpl: t, opts: o, r: &cfntemplate.Resolver{Values: values},
		w: &Wiring{Queues: map[string]*Queue{}, Mappings: map[string]*Mapping{}}}
	for _, step := range []struct {
		typ  string
		wire func(cfntemplate.Resource) error
	}{
		{"AWS::SQS::Queue", func(r cfntemplate.Resource) error { _, err := w.queue(r.LogicalID, 0); return err }},
		{"AWS::Events::Rule", w.rule},
		{"AWS::Serverless::Function", w.function},
	} {
		resources := t.OfType(step.typ)
		slices.SortFunc(resources, func(a, b cfntemplate.Resource) int { return strings.Compare(a.LogicalID, b.LogicalID) })
		for _, r := range resources {
			// A resource whose Condition does not hold is not created.
			if ok, err := t.Creates(w.r, r); err != nil {
				return nil, fmt.Errorf("eventbus: %w", err)
			} else if !ok {
				continue
			}
			if err := step.wire(r); err != nil {
				return nil, err
			}
		}
	}
	return w.w, nil
}

// wiring is one WireTemplate call's work.
type wiring struct {
	bus  *Bus
	tpl  *cfntemplate.Template
	opts TemplateOptions
	r    *cfntemplate.Resolver
	w    *Wiring
}

func (w *wiring) int(n *yaml.Node, def int) (int, error) {
	v, err := w.r.Int(n, def)
	if err != nil {
		return 0, fmt.Errorf("eventbus: %w", err)
	}
	return v, nil
}

// arnOf reads `!GetAtt X.Arn` (either form) and returns X.
func arnOf(n *yaml.Node) (string, error) {
	id, attr, err := cfntemplate.Reference(n)
	if err != nil || attr != "Arn" {
		return "", fmt.Errorf("eventbus: want !GetAtt <logical id>.Arn")
	}
	return id, nil
}

func (w *wiring) queue(id string, depth int) (*Queue, error) {
	if q := w.w.Queues[id]; q != nil {
		return q, nil
	}
	res, ok := w.tpl.Resource(id)
	if !ok || res.Type != "AWS::SQS::Queue" || depth > 1 {
		return nil, fmt.Errorf("eventbus: %s is not a queue this loader can make", id)
	}
	var o QueueOptions
	for field, dst := range map[string]*time.Duration{"VisibilityTimeout": &o.VisibilityTimeout, "DelaySeconds": &o.DelaySeconds, "ReceiveMessageWaitTimeSeconds": &o.ReceiveWaitTime} {
		secs, err := w.int(res.Property(field), -1)
		if err != nil {
			return nil, err
		}
		if secs >= 0 {
			*dst = time.Duration(secs) * time.Second
		}
	}
	if rp := res.Property("RedrivePolicy"); rp != nil {
		dlqID, err := arnOf(cfntemplate.Child(rp, "deadLetterTargetArn"))
		if err != nil {
			return nil, fmt.Errorf("%w (queue %s RedrivePolicy)", err, id)
		}
		if o.DeadLetter, err = w.queue(dlqID, depth+1); err != nil {
			return nil, err
		}
		if o.MaxReceiveCount, err = w.int(cfntemplate.Child(rp, "maxReceiveCount"), 0); err != nil {
			return nil, err
		}
	}
	q, err := w.bus.CreateQueue(w.opts.StackName+"-"+id, o)
	if err != nil {
		return nil, err
	}
	w.w.Queues[id] = q
	return q, nil
}

// rule wires an EventBridge rule: an event pattern, or a schedule (then
// listed in Schedules too, fired by its logical id).
func (w *wiring) rule(res cfntemplate.Resource) error {
	id := res.LogicalID
	pattern, schedule := res.Property("EventPattern"), res.Property("ScheduleExpression")
	if (pattern == nil) == (schedule == nil) {
		return fmt.Errorf("eventbus: rule %s needs an EventPattern or a ScheduleExpression (one of them)", id)
	}
	var expr, js string
	if schedule != nil {
		var err error
		if expr, err = w.r.String(schedule); err != nil {
			return fmt.Errorf("eventbus: rule %s ScheduleExpression: %w", id, err)
		}
	} else {
		doc, err := w.r.Resolve(pattern)
		if err != nil {
			return fmt.Errorf("eventbus: rule %s EventPattern: %w", id, err)
		}
		buf, err := json.Marshal(doc)
		if err != nil {
			return fmt.Errorf("eventbus: rule %s EventPattern: %w", id, err)
		}
		js = string(buf)
	}
	var targets []Target
	tn := res.Property("Targets")
	if tn == nil || tn.Kind != yaml.SequenceNode {
		return fmt.Errorf("eventbus: rule %s has no Targets", id)
	}
	for _, tgt := range tn.Content {
		ref, err := arnOf(cfntemplate.Child(tgt, "Arn"))
		if err != nil {
			return fmt.Errorf("%w (rule %s target)", err, id)
		}
		if q := w.w.Queues[ref]; q != nil {
			targets = append(targets, QueueTarget{Queue: q})
		} else if inv := w.opts.Functions[ref]; inv != nil {
			targets = append(targets, InvokerTarget{Name: ref, Invoker: inv})
		} else {
			w.w.Unwired = append(w.w.Unwired, id+"->"+ref)
		}
	}
	if len(targets) == 0 {
		return nil
	}
	if schedule != nil {
		if err := w.bus.PutSchedule(id, expr, targets...); err != nil {
			return err
		}
		w.w.Schedules = append(w.w.Schedules, id)
	} else if err := w.bus.PutRule(id, js, targets...); err != nil {
		return err
	}
	w.w.Rules = append(w.w.Rules, id)
	return nil
}

func (w *wiring) function(res cfntemplate.Resource) error {
	id := res.LogicalID
	props := w.tpl.FunctionProperties(res)
	timeout, err := w.int(cfntemplate.Child(props, "Timeout"), 3)
	if err != nil {
		return err
	}
	events := cfntemplate.Child(props, "Events")
	if events == nil {
		return nil
	}
	inv := w.opts.Functions[id]
	// RecursiveLoop (AWS::Lambda::Function, passed through by SAM and
	// settable in Globals.Function): Allow or Terminate, default Terminate.
	recursion := RecursiveLoopTerminate
	if n := cfntemplate.Child(props, "RecursiveLoop"); n != nil {
		v, err := w.r.String(n)
		if err != nil {
			return fmt.Errorf("eventbus: %s.RecursiveLoop: %w", id, err)
		}
		if recursion = RecursiveLoop(v); !recursion.valid() {
			return fmt.Errorf("eventbus: %s.RecursiveLoop %q: want Allow or Terminate", id, v)
		}
	}
	reserved, err := w.int(cfntemplate.Child(props, "ReservedConcurrentExecutions"), 0)
	if err != nil {
		return err
	}
	if inv != nil && reserved > 0 {
		inv = Reserved(inv, reserved)
	}
	for key, ev := range cfntemplate.Pairs(events) {
		name := id + "." + key.Value
		if inv == nil {
			w.w.Unwired = append(w.w.Unwired, name)
			continue
		}
		ep := cfntemplate.Child(ev, "Properties")
		typ, err := w.r.String(cfntemplate.Child(ev, "Type"))
		if err != nil {
			return fmt.Errorf("eventbus: %s: %w", name, err)
		}
		switch typ {
		case "SQS":
			if err := w.mapping(name, ep, inv, MappingOptions{FunctionTimeout: time.Duration(timeout) * time.Second, Function: id, RecursiveLoop: recursion}); err != nil {
				return err
			}
		case "Schedule":
			expr, err := w.r.String(cfntemplate.Child(ep, "Schedule"))
			if err != nil {
				return fmt.Errorf("eventbus: %s: %w", name, err)
			}
			if err := w.bus.PutSchedule(name, expr, InvokerTarget{Name: id, Invoker: inv}); err != nil {
				return err
			}
			w.w.Schedules = append(w.w.Schedules, name)
		default:
			return fmt.Errorf("eventbus: %s: event type %s is not supported (SQS, Schedule)", name, typ)
		}
	}
	return nil
}

// mapping wires one SQS event of a function; o has the function's settings.
func (w *wiring) mapping(name string, ep *yaml.Node, inv Invoker, o MappingOptions) error {
	qid, err := arnOf(cfntemplate.Child(ep, "Queue"))
	if err != nil {
		return fmt.Errorf("%w (%s Queue)", err, name)
	}
	q := w.w.Queues[qid]
	if q == nil {
		return fmt.Errorf("eventbus: %s: no queue %s", name, qid)
	}
	if o.BatchSize, err = w.int(cfntemplate.Child(ep, "BatchSize"), 10); err != nil {
		return err
	}
	window, err := w.int(cfntemplate.Child(ep, "MaximumBatchingWindowInSeconds"), 0)
	if err != nil {
		return err
	}
	o.MaxBatchingWindow = time.Duration(window) * time.Second
	if o.MaxConcurrency, err = w.int(cfntemplate.Child(cfntemplate.Child(ep, "ScalingConfig"), "MaximumConcurrency"), 2); err != nil {
		return err
	}
	if frt := cfntemplate.Child(ep, "FunctionResponseTypes"); frt != nil {
		for _, v := range frt.Content {
			if v.Value != "ReportBatchItemFailures" {
				return fmt.Errorf("eventbus: %s: FunctionResponseTypes %s", name, v.Value)
			}
			o.ReportBatchItemFailures = true
		}
	}
	m, err := w.bus.StartMapping(q, inv, o)
	if err != nil {
		return fmt.Errorf("%w (%s)", err, name)
	}
	w.w.Mappings[name] = m
	return nil
}
