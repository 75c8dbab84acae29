// Package samlocal deploys tether's SAM template (template.yaml) into the
// local AWS world the way `sam deploy` would put it into an account: the
// SSM documents (through ssmsim.AddTemplateDocuments), the queues with their
// dead-letter queues, the EventBridge rules, the functions' SQS event source
// mappings and schedules (through eventbus.WireTemplate), and the functions
// themselves, each bound by logical id to a Runtime (in-process handlers or
// real bootstraps under the Lambda runtime interface emulator) with its
// environment resolved and pointed at the world (AWS_ENDPOINT_URL,
// TETHER_RETRY_QUEUE_URL = the world's retry queue), and Auto Scaling
// lifecycle hooks (PutLifecycleHook on the world's Auto Scaling). A
// resource whose Condition does not hold is not created (listed in
// Deployment.NotCreated), as in CloudFormation.
//
// What the template declares and the world cannot do (IAM, alarms, log
// groups, queue policies, encryption at rest...) is listed in
// Deployment.Ignored with the reason; anything else unknown (a resource
// type, a property, an event type, an intrinsic) is an error wrapping
// ErrUnsupported, never silently skipped.
package samlocal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"gopkg.in/yaml.v3"

	"github.com/tether-ecs/tether/test/world/cfntemplate"
	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/ssmsim"
)

// Config says where and how to deploy.
type Config struct {
	Template   string            // path of template.yaml
	StackName  string            // default "tether"
	Parameters map[string]string // template parameters; the others take their Default
	Region     string            // AWS::Region, default us-west-2
	Account    string            // AWS::AccountId, default 123456789012
	// Endpoint is the world's AWS endpoint, given to every function as
	// AWS_ENDPOINT_URL.
	Endpoint string
	Bus      *eventbus.Bus
	SSM      *ssmsim.Server
	// Runtime runs the functions; nil deploys everything but the functions
	// (their events stay unwired, see Deployment.Unwired).
	Runtime Runtime
	// AutoScaling puts the template's lifecycle hooks (the world's Auto
	// Scaling through the SDK); nil refuses a template that creates one.
	AutoScaling AutoScalingAPI
	Logger      *slog.Logger
}

// AutoScalingAPI is the Auto Scaling call Deploy makes
// (*autoscaling.Client has it).
type AutoScalingAPI interface {
	PutLifecycleHook(ctx context.Context, params *autoscaling.PutLifecycleHookInput, optFns ...func(*autoscaling.Options)) (*autoscaling.PutLifecycleHookOutput, error)
}

var _ AutoScalingAPI = (*autoscaling.Client)(nil)

// Function is one AWS::Serverless::Function as deployed.
type Function struct {
	LogicalID string
	Name      string // physical name: <stack>-<logical id>
	ARN       string
	// Package is the Go package under CodeUri that `sam build` builds for
	// it (the Makefile's build-<logical id> target).
	Package string
	CodeDir string
	// Env is the function's environment: the template's variables
	// (Globals merged) resolved, plus AWS_ENDPOINT_URL.
	Env                 map[string]string
	Timeout             time.Duration
	MemoryMB            int
	ReservedConcurrency int // 0: unreserved
}

// Deployment is a deployed template. Stop stops its functions and
// mappings; the rules and queues go with the bus.
type Deployment struct {
	StackName string
	Functions map[string]Function        // by logical id
	Queues    map[string]*eventbus.Queue // by logical id
	Rules     []string                   // EventBridge rules on the bus (logical ids)
	Schedules []string                   // "<function>.<event>"
	Documents map[string]string          // logical id -> SSM document name
	Outputs   map[string]string          // the stack's outputs, resolved
	Hooks     []string                   // lifecycle hooks put, "<group>/<hook>"
	Ignored   []Ignored
	Unwired   []string // events without a running function
	// NotCreated: resources whose Condition does not hold for the
	// parameters (logical ids, template order).
	NotCreated []string

	mu      sync.Mutex
	wiring  *eventbus.Wiring
	late    map[string]*lateInvoker
	running map[string]Running
	stopped bool
}

// Deploy creates in the world what the template declares. On error nothing
// it started keeps running.
func Deploy(ctx context.Context, cfg Config) (*Deployment, error) {
	if cfg.Bus == nil || cfg.SSM == nil || cfg.Template == "" {
		return nil, errors.New("samlocal: Config needs Template, Bus and SSM")
	}
	if cfg.StackName == "" {
		cfg.StackName = "tether"
	}
	if cfg.Region == "" {
		cfg.Region = "us-west-2"
	}
	if cfg.Account == "" {
		cfg.Account = "123456789012"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t, err := Load(cfg.Template)
	if err != nil {
		return nil, err
	}
	params, err := t.parameterValues(cfg.Parameters)
	if err != nil {
		return nil, err
	}
	d := &Deployment{
		StackName: cfg.StackName, Functions: map[string]Function{}, Documents: map[string]string{},
		Outputs: map[string]string{}, Ignored: t.Ignored(), late: map[string]*lateInvoker{}, running: map[string]Running{},
	}
	if err := d.deploy(ctx, cfg, t, params); err != nil {
		return nil, errors.Join(err, d.Stop())
	}
	for _, ig := range d.Ignored {
		cfg.Logger.Info("template: not deployed in the world", "resource", ig.LogicalID, "type", ig.Type, "property", ig.Property, "reason", ig.Reason)
	}
	cfg.Logger.Info("template deployed", "stack", cfg.StackName, "functions", slices.Sorted(maps.Keys(d.Functions)),
		"queues", len(d.Queues), "rules", d.Rules, "schedules", d.Schedules, "hooks", d.Hooks, "unwired", d.Unwired, "notCreated", d.NotCreated)
	return d, nil
}

func (d *Deployment) deploy(ctx context.Context, cfg Config, t *Template, params map[string]string) error {
	r := &cfntemplate.Resolver{
		Values:    cfntemplate.PseudoParameters(cfg.StackName, cfg.Region, cfg.Account),
		Resources: map[string]cfntemplate.Deployed{}, NotDeployed: map[string]string{},
	}
	maps.Copy(r.Values, params)
	for _, ig := range d.Ignored {
		if ig.Property == "" {
			r.NotDeployed[ig.LogicalID] = ig.Type
		}
	}

	// The documents go to the world's SSM whole, every step and parameter
	// as written: it runs them as SSM Agent does, and refuses what it
	// cannot run.
	docs, err := cfg.SSM.AddTemplateDocuments(t.cfn, cfg.StackName, params)
	if err != nil {
		return fmt.Errorf("samlocal: %w: %w", ErrUnsupported, err)
	}
	var functions, hooks []cfntemplate.Resource
	for _, res := range t.cfn.Resources {
		if _, left := ignoredTypes[res.Type]; left {
			continue // not deployed whatever its condition says
		}
		if ok, err := t.cfn.Creates(r, res); err != nil {
			return fmt.Errorf("samlocal: %w", err)
		} else if !ok {
			d.NotCreated = append(d.NotCreated, res.LogicalID)
			continue
		}
		switch res.Type {
		case "AWS::AutoScaling::LifecycleHook":
			hooks = append(hooks, res)
		case "AWS::SSM::Document":
			name, ok := docs[res.LogicalID]
			if !ok {
				return fmt.Errorf("samlocal: %s: only Command documents can be run by the world's SSM: %w", res.LogicalID, ErrUnsupported)
			}
			d.Documents[res.LogicalID] = name
			r.Resources[res.LogicalID] = cfntemplate.Deployed{Ref: name}
		case "AWS::Serverless::Function":
			functions = append(functions, res)
			fn := Function{LogicalID: res.LogicalID, Name: cfg.StackName + "-" + res.LogicalID}
			fn.ARN = fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", cfg.Region, cfg.Account, fn.Name)
			d.Functions[res.LogicalID] = fn
			r.Resources[res.LogicalID] = cfntemplate.Deployed{Ref: fn.Name, Attributes: map[string]string{"Arn": fn.ARN}}
		}
	}

	// Queues, rules, mappings and schedules: the bus's own loader. Functions
	// are bound late, once their environment (which names the queues) is
	// known.
	invokers := map[string]eventbus.Invoker{}
	if cfg.Runtime != nil {
		for id := range d.Functions {
			l := newLateInvoker(id)
			d.late[id] = l
			invokers[id] = l
		}
	}
	w, err := cfg.Bus.WireTemplate(t.cfn, eventbus.TemplateOptions{StackName: cfg.StackName, Params: params, Functions: invokers})
	d.mu.Lock()
	d.wiring = w
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("samlocal: %w", err)
	}
	d.Queues, d.Rules, d.Schedules, d.Unwired = w.Queues, w.Rules, w.Schedules, w.Unwired
	for id, q := range w.Queues {
		r.Resources[id] = cfntemplate.Deployed{Ref: q.URL(), Attributes: map[string]string{"Arn": q.ARN(), "QueueName": q.Name(), "QueueUrl": q.URL()}}
	}
	for _, id := range w.Rules {
		r.Resources[id] = cfntemplate.Deployed{Ref: id, Attributes: map[string]string{"Arn": fmt.Sprintf("arn:aws:events:%s:%s:rule/%s", cfg.Region, cfg.Account, id)}}
	}

	for _, res := range hooks {
		if err := d.putHook(ctx, cfg, r, res); err != nil {
			return err
		}
	}
	for _, res := range functions {
		fn, err := d.function(cfg, t, r, res)
		if err != nil {
			return err
		}
		d.Functions[res.LogicalID] = fn
	}
	if cfg.Runtime != nil {
		ids := slices.Sorted(maps.Keys(d.Functions))
		for _, id := range ids {
			run, err := cfg.Runtime.Start(ctx, d.Functions[id])
			if err != nil {
				return err
			}
			d.mu.Lock()
			d.running[id] = run
			d.mu.Unlock()
			d.late[id].bind(run)
		}
	}
	return d.outputs(t, r)
}

// putHook puts one AWS::AutoScaling::LifecycleHook into the world's Auto
// Scaling, as CloudFormation does (PutLifecycleHook).
func (d *Deployment) putHook(ctx context.Context, cfg Config, r *cfntemplate.Resolver, res cfntemplate.Resource) error {
	if cfg.AutoScaling == nil {
		return fmt.Errorf("samlocal: %s: no Auto Scaling to put the lifecycle hook into (Config.AutoScaling): %w", res.LogicalID, ErrUnsupported)
	}
	str := func(name string) (string, error) {
		v, err := r.String(res.Property(name))
		if err != nil {
			return "", fmt.Errorf("samlocal: %s.%s: %w", res.LogicalID, name, err)
		}
		return v, nil
	}
	in := &autoscaling.PutLifecycleHookInput{}
	for name, dst := range map[string]**string{"AutoScalingGroupName": &in.AutoScalingGroupName, "LifecycleHookName": &in.LifecycleHookName,
		"LifecycleTransition": &in.LifecycleTransition, "DefaultResult": &in.DefaultResult, "NotificationMetadata": &in.NotificationMetadata} {
		v, err := str(name)
		if err != nil {
			return err
		}
		if v != "" {
			*dst = aws.String(v)
		}
	}
	if res.Property("HeartbeatTimeout") != nil {
		n, err := r.Int(res.Property("HeartbeatTimeout"), 0)
		if err != nil {
			return fmt.Errorf("samlocal: %s.HeartbeatTimeout: %w", res.LogicalID, err)
		}
		in.HeartbeatTimeout = aws.Int32(int32(n))
	}
	if _, err := cfg.AutoScaling.PutLifecycleHook(ctx, in); err != nil {
		return fmt.Errorf("samlocal: %s: PutLifecycleHook: %w", res.LogicalID, err)
	}
	d.Hooks = append(d.Hooks, aws.ToString(in.AutoScalingGroupName)+"/"+aws.ToString(in.LifecycleHookName))
	return nil
}

// function resolves one function's configuration.
func (d *Deployment) function(cfg Config, t *Template, r *cfntemplate.Resolver, res cfntemplate.Resource) (Function, error) {
	fn := d.Functions[res.LogicalID]
	props := t.cfn.FunctionProperties(res)
	prop := func(name string) *yaml.Node { return cfntemplate.Child(props, name) }
	timeout, err := r.Int(prop("Timeout"), 3)
	if err != nil {
		return fn, fmt.Errorf("samlocal: %s.Timeout: %w", res.LogicalID, err)
	}
	fn.Timeout = time.Duration(timeout) * time.Second
	if fn.MemoryMB, err = r.Int(prop("MemorySize"), 128); err != nil {
		return fn, fmt.Errorf("samlocal: %s.MemorySize: %w", res.LogicalID, err)
	}
	if fn.ReservedConcurrency, err = r.Int(prop("ReservedConcurrentExecutions"), 0); err != nil {
		return fn, fmt.Errorf("samlocal: %s.ReservedConcurrentExecutions: %w", res.LogicalID, err)
	}
	fn.Env = map[string]string{}
	for key, val := range cfntemplate.Pairs(cfntemplate.Child(prop("Environment"), "Variables")) {
		v, err := r.String(val)
		if err != nil {
			return fn, fmt.Errorf("samlocal: %s.Environment.Variables.%s: %w", res.LogicalID, key.Value, err)
		}
		fn.Env[key.Value] = v
	}
	if cfg.Endpoint != "" {
		fn.Env["AWS_ENDPOINT_URL"] = cfg.Endpoint
	}
	codeURI, err := r.String(prop("CodeUri"))
	if err != nil {
		return fn, fmt.Errorf("samlocal: %s.CodeUri: %w", res.LogicalID, err)
	}
	fn.CodeDir = filepath.Join(filepath.Dir(t.Path), codeURI)
	method := ""
	if m := cfntemplate.Child(res.Metadata, "BuildMethod"); m != nil {
		method = m.Value
	}
	if method != "makefile" {
		return fn, fmt.Errorf("samlocal: %s: BuildMethod %q: %w (makefile only)", res.LogicalID, method, ErrUnsupported)
	}
	if fn.Package, err = buildTarget(filepath.Join(fn.CodeDir, "Makefile"), res.LogicalID); err != nil {
		return fn, fmt.Errorf("samlocal: %s: %w", res.LogicalID, err)
	}
	return fn, nil
}

// outputs resolves the stack's outputs. One that names a resource the
// world leaves out (a role's ARN, the dashboard) has no value here: it is
// listed in Ignored.
func (d *Deployment) outputs(t *Template, r *cfntemplate.Resolver) error {
	for _, o := range t.cfn.Outputs {
		if id, typ, ok := notDeployedIn(o.Value, r.NotDeployed); ok {
			d.Ignored = append(d.Ignored, Ignored{LogicalID: o.Name, Type: "Output",
				Reason: fmt.Sprintf("names %s (%s), which the world does not deploy", id, typ)})
			continue
		}
		v, err := r.String(o.Value)
		if err != nil {
			return fmt.Errorf("samlocal: output %s: %w", o.Name, err)
		}
		d.Outputs[o.Name] = v
	}
	return nil
}

// notDeployedIn finds a Ref, Fn::GetAtt or Fn::Sub variable in n that names
// a resource of notDeployed.
func notDeployedIn(n *yaml.Node, notDeployed map[string]string) (id, typ string, ok bool) {
	if n == nil {
		return "", "", false
	}
	var names []string
	if ref, _, err := cfntemplate.Reference(n); err == nil {
		names = append(names, ref)
	}
	sub := n
	if k := cfntemplate.Child(n, "Fn::Sub"); k != nil {
		sub = k
	} else if n.Tag != "!Sub" {
		sub = nil
	}
	if sub != nil && sub.Kind == yaml.SequenceNode && len(sub.Content) > 0 {
		sub = sub.Content[0]
	}
	if sub != nil && sub.Kind == yaml.ScalarNode {
		for _, m := range subVariable.FindAllStringSubmatch(sub.Value, -1) {
			names = append(names, m[1])
		}
	}
	for _, name := range names {
		if typ, ok := notDeployed[name]; ok {
			return name, typ, true
		}
	}
	for _, c := range n.Content {
		if id, typ, ok := notDeployedIn(c, notDeployed); ok {
			return id, typ, true
		}
	}
	return "", "", false
}

// subVariable is a ${Name} or ${Name.Attribute} of Fn::Sub (not ${!Literal}).
var subVariable = regexp.MustCompile(`\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}`)

// Output returns what function logicalID has written so far ("" when it
// does not run).
func (d *Deployment) Output(logicalID string) string {
	d.mu.Lock()
	run := d.running[logicalID]
	d.mu.Unlock()
	if run == nil {
		return ""
	}
	return run.Output()
}

// Mappings returns the SQS event source mappings by "<function>.<event>".
func (d *Deployment) Mappings() map[string]*eventbus.Mapping {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.wiring == nil {
		return nil
	}
	return maps.Clone(d.wiring.Mappings)
}

// Stop stops the event source mappings (waiting for invocations in flight)
// and the functions; schedules and rules that still fire find the functions
// gone. Idempotent.
func (d *Deployment) Stop() error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	d.stopped = true
	w, running := d.wiring, maps.Clone(d.running)
	d.mu.Unlock()
	for _, l := range d.late {
		l.stop()
	}
	if w != nil {
		names := slices.Collect(maps.Keys(w.Mappings))
		sort.Strings(names)
		for _, n := range names {
			w.Mappings[n].Stop()
		}
	}
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(running)) {
		if err := running[id].Stop(); err != nil {
			errs = append(errs, fmt.Errorf("samlocal: stop %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// lateInvoker stands for a function the bus is wired to before it runs:
// invocations wait (bounded by their context) until it is bound; once the
// deployment stops, they fail.
type lateInvoker struct {
	id      string
	once    sync.Once
	ready   chan struct{}
	inv     eventbus.Invoker
	stopped atomic.Bool
}

func newLateInvoker(id string) *lateInvoker { return &lateInvoker{id: id, ready: make(chan struct{})} }

func (l *lateInvoker) bind(inv eventbus.Invoker) {
	l.once.Do(func() {
		l.inv = inv
		close(l.ready)
	})
}

func (l *lateInvoker) stop() {
	l.stopped.Store(true)
	l.bind(nil)
}

func (l *lateInvoker) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	select {
	case <-l.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("samlocal: %s not started yet: %w", l.id, ctx.Err())
	}
	if l.inv == nil || l.stopped.Load() {
		return nil, fmt.Errorf("samlocal: %s is not running (deployment stopped)", l.id)
	}
	return l.inv.Invoke(ctx, payload)
}
