package samlocal

import (
	"fmt"
	"slices"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/tether-ecs/tether/test/world/cfntemplate"
)

// ErrUnsupported marks something a template declares that the world cannot
// do and that cannot be safely ignored: an unknown resource type, property or
// event type, or an intrinsic the resolver does not know. It is
// cfntemplate.ErrUnsupported, so the resolver's refusals match it too.
var ErrUnsupported = cfntemplate.ErrUnsupported

// Ignored is one thing the template declares that the world does not do,
// and why that is safe to leave out locally.
type Ignored struct {
	LogicalID string
	Type      string
	Property  string // "" when the whole resource is ignored
	Reason    string
}

func (i Ignored) String() string {
	if i.Property == "" {
		return fmt.Sprintf("%s (%s): %s", i.LogicalID, i.Type, i.Reason)
	}
	return fmt.Sprintf("%s.%s (%s): %s", i.LogicalID, i.Property, i.Type, i.Reason)
}

// Resource types the world does not deploy, with the reason.
var ignoredTypes = map[string]string{
	"AWS::IAM::ManagedPolicy":    "the world does not enforce IAM: every caller may call every action",
	"AWS::IAM::Role":             "the world does not enforce IAM: every caller may call every action",
	"AWS::IAM::Policy":           "the world does not enforce IAM: every caller may call every action",
	"AWS::CloudWatch::Alarm":     "the world has no CloudWatch: alarms are not evaluated",
	"AWS::Logs::LogGroup":        "the world has no CloudWatch Logs: function output stays with the world",
	"AWS::SQS::QueuePolicy":      "the world's queues accept messages from every sender",
	"AWS::Lambda::Permission":    "the world does not check who may invoke a function",
	"AWS::SNS::Topic":            "the world has no SNS (alarm notifications only)",
	"AWS::SNS::TopicPolicy":      "the world has no SNS (alarm notifications only)",
	"AWS::SNS::Subscription":     "the world has no SNS (alarm notifications only)",
	"AWS::CloudWatch::Dashboard": "the world has no CloudWatch",
	"AWS::DLM::LifecyclePolicy":  "the world has no Data Lifecycle Manager: scheduled snapshots are not taken (EC2's snapshot calls are there)",
}

// Properties of deployed types: handled (by eventbus.WireTemplate,
// ssmsim.AddTemplateDocuments or this package), inert (documentation only), or
// ignored with a reason. Anything else is ErrUnsupported.
type propertyRules struct {
	handled []string
	inert   []string
	ignored map[string]string
}

var deployedTypes = map[string]propertyRules{
	"AWS::SQS::Queue": {
		handled: []string{"VisibilityTimeout", "DelaySeconds", "ReceiveMessageWaitTimeSeconds", "RedrivePolicy"},
		ignored: map[string]string{
			"MessageRetentionPeriod": "the world's queues keep messages for the world's lifetime",
			"SqsManagedSseEnabled":   "encryption at rest: the world's queues live in memory",
			"KmsMasterKeyId":         "encryption at rest: the world's queues live in memory",
			"Tags":                   "the world's queues carry no tags",
		},
	},
	"AWS::Events::Rule": {
		handled: []string{"EventPattern", "ScheduleExpression", "Targets"}, // Targets: see targetRules
		inert:   []string{"Description"},
	},
	"AWS::SSM::Document": {
		handled: []string{"Name", "DocumentType", "Content"},
		ignored: map[string]string{
			"UpdateMethod": "documents are created once per world, never updated",
			"Tags":         "the world's documents carry no tags",
		},
	},
	// A termination (or launch) hook of an Auto Scaling group the world
	// already has (CloudFormation fails the stack otherwise, and so does
	// Deploy): put with PutLifecycleHook. Notifications reach EventBridge
	// without a target; the world's Auto Scaling refuses SNS and SQS ones.
	"AWS::AutoScaling::LifecycleHook": {
		handled: []string{"AutoScalingGroupName", "LifecycleHookName", "LifecycleTransition", "HeartbeatTimeout", "DefaultResult", "NotificationMetadata"},
	},
	"AWS::Serverless::Function": {
		handled: []string{"Events", "Timeout", "ReservedConcurrentExecutions", "RecursiveLoop", "Environment", "MemorySize", "CodeUri", "Handler", "Runtime"},
		inert:   []string{"Description"},
		ignored: map[string]string{
			"Policies":          "the world does not enforce IAM",
			"Role":              "the world does not enforce IAM",
			"Architectures":     "bootstraps run natively on this machine (the template's architecture is for AWS)",
			"EventInvokeConfig": "the world's schedules invoke once and never retry, whatever the asynchronous-invoke settings say",
			"Tags":              "the world's functions carry no tags",
			"LoggingConfig":     "the world has no CloudWatch Logs: function output stays with the world",
		},
	},
}

// targetRules are the keys of an EventBridge rule's target the world reads
// (Id, Arn: eventbus.WireTemplate) or leaves out.
var targetRules = propertyRules{
	handled: []string{"Id", "Arn"},
	ignored: map[string]string{
		"DeadLetterConfig": "the world's EventBridge delivers every matched event to its target (a queue or a function), so nothing goes to a target's dead-letter queue",
		"RetryPolicy":      "the world's EventBridge delivers every matched event to its target at once, so it never retries",
	},
}

// Event properties eventbus.WireTemplate applies, per event type.
var eventProperties = map[string]propertyRules{
	"SQS": {handled: []string{"Queue", "BatchSize", "MaximumBatchingWindowInSeconds", "FunctionResponseTypes", "ScalingConfig"}},
	"Schedule": {handled: []string{"Schedule"}, inert: []string{"Description"}, ignored: map[string]string{
		"DeadLetterConfig": "the world's schedules invoke the function directly and never fail to deliver, so nothing goes to a dead-letter queue",
		"RetryPolicy":      "the world's schedules invoke once and never retry",
	}},
}

// Template is a parsed SAM template.
type Template struct {
	Path    string
	cfn     *cfntemplate.Template
	ignored []Ignored
}

// Load reads a template and checks that the world can deploy what it
// declares: every resource type is deployed or deliberately ignored (see
// Ignored), every property and event is one the world applies.
func Load(path string) (*Template, error) {
	cfn, err := cfntemplate.Load(path)
	if err != nil {
		return nil, fmt.Errorf("samlocal: %w", err)
	}
	t := &Template{Path: path, cfn: cfn}
	for _, r := range cfn.Resources {
		if err := t.check(r); err != nil {
			return nil, fmt.Errorf("samlocal: %s: %w", path, err)
		}
	}
	return t, nil
}

// Ignored lists what the world leaves out, in template order.
func (t *Template) Ignored() []Ignored { return slices.Clone(t.ignored) }

// check sorts one resource into deployed or ignored, or refuses it.
func (t *Template) check(r cfntemplate.Resource) error {
	if reason, ok := ignoredTypes[r.Type]; ok {
		t.ignored = append(t.ignored, Ignored{LogicalID: r.LogicalID, Type: r.Type, Reason: reason})
		return nil
	}
	rules, ok := deployedTypes[r.Type]
	if !ok {
		return fmt.Errorf("%s: resource type %q: %w", r.LogicalID, r.Type, ErrUnsupported)
	}
	props := r.Properties
	if r.Type == "AWS::Serverless::Function" {
		props = t.cfn.FunctionProperties(r)
	}
	if err := t.checkProperties(r, "", props, rules); err != nil {
		return err
	}
	switch r.Type {
	case "AWS::Serverless::Function":
		return t.checkEvents(r, cfntemplate.Child(props, "Events"))
	case "AWS::Events::Rule":
		if targets := r.Property("Targets"); targets != nil {
			for i, tgt := range targets.Content {
				id := strconv.Itoa(i)
				if n := cfntemplate.Child(tgt, "Id"); n != nil {
					id = n.Value
				}
				if err := t.checkProperties(r, "Targets."+id+".", tgt, targetRules); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (t *Template) checkProperties(r cfntemplate.Resource, prefix string, props *yaml.Node, rules propertyRules) error {
	if props == nil {
		return nil
	}
	if props.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: Properties is not a mapping", r.LogicalID)
	}
	for key := range cfntemplate.Pairs(props) {
		name := key.Value
		switch {
		case slices.Contains(rules.handled, name), slices.Contains(rules.inert, name):
		case rules.ignored[name] != "":
			t.ignored = append(t.ignored, Ignored{LogicalID: r.LogicalID, Type: r.Type, Property: prefix + name, Reason: rules.ignored[name]})
		default:
			return fmt.Errorf("%s: property %s%s of %s: %w", r.LogicalID, prefix, name, r.Type, ErrUnsupported)
		}
	}
	return nil
}

func (t *Template) checkEvents(r cfntemplate.Resource, events *yaml.Node) error {
	for key, ev := range cfntemplate.Pairs(events) {
		name, typ := key.Value, ""
		if n := cfntemplate.Child(ev, "Type"); n != nil {
			typ = n.Value
		}
		rules, ok := eventProperties[typ]
		if !ok {
			return fmt.Errorf("%s: event %s of type %q: %w (SQS and Schedule only)", r.LogicalID, name, typ, ErrUnsupported)
		}
		if err := t.checkProperties(r, "Events."+name+".", cfntemplate.Child(ev, "Properties"), rules); err != nil {
			return err
		}
	}
	return nil
}

// parameterValues checks the given values as CloudFormation does and
// returns every parameter's value (given, else Default).
func (t *Template) parameterValues(given map[string]string) (map[string]string, error) {
	values, err := t.cfn.ParameterValues(given)
	if err != nil {
		return nil, fmt.Errorf("samlocal: %w", err)
	}
	return values, nil
}
