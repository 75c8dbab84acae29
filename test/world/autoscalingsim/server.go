// Package autoscalingsim is the local world's Amazon EC2 Auto Scaling: the
// groups, lifecycle hooks and lifecycle actions tether's termination hold
// needs, over the awsQuery protocol (API version 2011-01-01, form in, XML
// out, <ErrorResponse> errors), so aws-sdk-go-v2's autoscaling client and
// `aws autoscaling ...` work against it unchanged.
//
// A group keeps its desired capacity: it launches instances through a
// Launcher (the world boots a host and registers it with EC2, SSM and ECS)
// and terminates them through the world's EC2, so EC2's own stopping,
// shutting-down and terminated states, events and volume release follow.
// Instances pass through Auto Scaling's lifecycle states (Pending,
// Pending:Wait, Pending:Proceed, InService, Terminating, Terminating:Wait,
// Terminating:Proceed, Terminated; lifecycle.go), held in the wait states by
// lifecycle hooks until CompleteLifecycleAction or the hook's timeout
// (hooks.go). Scale-in picks instances by the default termination policy
// (termination.go). EC2's health checks replace instances that leave
// running or whose status checks stay impaired (health.go). Events are
// those the Auto Scaling user guide's event reference shows (events.go).
//
// It is never kinder than Auto Scaling: it refuses what the API reference
// refuses, with its codes; what the world does not model (launch
// configurations, mixed instances policies, subnets, SNS/SQS notification
// targets, warm pools) is refused with a ValidationError that says so, not
// silently ignored. Each rule names its source.
package autoscalingsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/ec2sim"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// The awsQuery protocol's identity of Auto Scaling (botocore's
// autoscaling-2011-01-01 service model metadata).
const (
	APIVersion = "2011-01-01"
	XMLNS      = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
)

// EC2 is what Auto Scaling needs of the world's EC2.
type EC2 interface {
	InstanceState(id string) (string, error)
	// ImpairedSince reports whether a status check fails now, and since when.
	ImpairedSince(id string) (time.Time, bool, error)
	// TerminateInstance terminates as TerminateInstances does and returns
	// once EC2 says terminated.
	TerminateInstance(ctx context.Context, id string) error
}

var _ EC2 = (*ec2sim.Server)(nil)

// LaunchRequest is one instance a group asks for.
type LaunchRequest struct {
	Group    string
	AZ       string
	Template LaunchTemplate
	// Tags for the instance: aws:autoscaling:groupName (as Auto Scaling
	// tags every instance it launches) and the group's tags with
	// PropagateAtLaunch.
	Tags map[string]string
}

// Launcher starts an instance for a group and returns its EC2 instance id
// once EC2 knows it (running). It is called without any lock held.
type Launcher interface {
	Launch(ctx context.Context, r LaunchRequest) (string, error)
}

// LauncherFunc adapts a function to Launcher.
type LauncherFunc func(ctx context.Context, r LaunchRequest) (string, error)

// Launch calls f.
func (f LauncherFunc) Launch(ctx context.Context, r LaunchRequest) (string, error) { return f(ctx, r) }

// Config sets up a Server.
type Config struct {
	Region  string   // default us-west-2
	Account string   // default 123456789012
	AZs     []string // the zones groups may use; default Region + a, b, c
	// Subnets names a subnet per zone for the events' Details (the world
	// has no VPC; empty: made up from the zone).
	Subnets   map[string]string
	EC2       EC2      // required
	Launcher  Launcher // required
	Publisher worldapi.Publisher
	Logger    *slog.Logger
	Seed      uint64
	// TimeScale turns Auto Scaling's own durations (hook heartbeat and
	// global timeouts, the status-check grace, how long Terminated
	// instances stay listed, the launch retry) into real time; default 1.
	TimeScale float64
	// ImpairedGrace is how long an instance's status checks may stay
	// impaired before Auto Scaling marks it unhealthy ("waits a few
	// minutes", user guide, health checks); world time, default 5 min.
	ImpairedGrace time.Duration
	// HealthCheckEvery is how often the health checks look at EC2 (real
	// time, default 200ms). A state other than running is also acted on
	// as soon as InstanceStateChanged reports it.
	HealthCheckEvery time.Duration
}

// Server is the simulated Auto Scaling of one account and Region.
type Server struct {
	cfg Config
	log *slog.Logger
	// Controls: the gate every call passes (scripted faults, counts).
	// Auto Scaling publishes no request-rate limits, so none are set; its
	// throttling answer is Throttling "Rate exceeded".
	awsproto.Controls
	handlers map[string]action

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	rng       *rand.Rand
	seq       int64
	groups    map[string]*group
	templates []*LaunchTemplate
	actions   map[string]*lifecycleAction // active ones, by token
	instances map[string]*instance        // every instance any group has, by id
}

type action struct {
	run    func(ctx context.Context, form url.Values) (any, error)
	params []string
}

// New makes a Server and starts its health checks.
func New(cfg Config) (*Server, error) {
	if cfg.Region == "" {
		cfg.Region = "us-west-2"
	}
	if cfg.Account == "" {
		cfg.Account = "123456789012"
	}
	if len(cfg.AZs) == 0 {
		cfg.AZs = []string{cfg.Region + "a", cfg.Region + "b", cfg.Region + "c"}
	}
	if cfg.EC2 == nil || cfg.Launcher == nil {
		return nil, errors.New("autoscalingsim: Config.EC2 and Config.Launcher are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TimeScale <= 0 {
		cfg.TimeScale = 1
	}
	if cfg.ImpairedGrace <= 0 {
		cfg.ImpairedGrace = 5 * time.Minute
	}
	if cfg.HealthCheckEvery <= 0 {
		cfg.HealthCheckEvery = 200 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, log: cfg.Logger.With("service", "autoscaling"),
		Controls: awsproto.ControlsOf(awsproto.NewGate(awsproto.GateConfig{Throttle: throttled, Seed: cfg.Seed + 3})),
		ctx:      ctx, cancel: cancel,
		rng:    rand.New(rand.NewPCG(cfg.Seed, 0xa5a5)),
		groups: map[string]*group{}, actions: map[string]*lifecycleAction{}, instances: map[string]*instance{},
	}
	s.handlers = map[string]action{
		"CreateAutoScalingGroup": {s.createAutoScalingGroup, []string{"AutoScalingGroupName", "LaunchTemplate", "MinSize", "MaxSize",
			"DesiredCapacity", "DefaultCooldown", "AvailabilityZones", "HealthCheckType", "HealthCheckGracePeriod", "TerminationPolicies",
			"NewInstancesProtectedFromScaleIn", "CapacityRebalance", "LifecycleHookSpecificationList", "Tags",
			// Refused with a message below rather than as unknown:
			"LaunchConfigurationName", "MixedInstancesPolicy", "InstanceId", "VPCZoneIdentifier"}},
		"DescribeAutoScalingGroups":           {s.describeAutoScalingGroups, []string{"AutoScalingGroupNames", "IncludeInstances", "NextToken", "MaxRecords", "Filters"}},
		"UpdateAutoScalingGroup":              {s.updateAutoScalingGroup, []string{"AutoScalingGroupName", "MinSize", "MaxSize", "DesiredCapacity", "DefaultCooldown", "HealthCheckType", "HealthCheckGracePeriod", "TerminationPolicies", "NewInstancesProtectedFromScaleIn", "CapacityRebalance"}},
		"SetDesiredCapacity":                  {s.setDesiredCapacity, []string{"AutoScalingGroupName", "DesiredCapacity", "HonorCooldown"}},
		"TerminateInstanceInAutoScalingGroup": {s.terminateInstanceInAutoScalingGroup, []string{"InstanceId", "ShouldDecrementDesiredCapacity"}},
		"DescribeAutoScalingInstances":        {s.describeAutoScalingInstances, []string{"InstanceIds", "MaxRecords", "NextToken"}},
		"PutLifecycleHook": {s.putLifecycleHook, []string{"LifecycleHookName", "AutoScalingGroupName", "LifecycleTransition", "RoleARN",
			"NotificationTargetARN", "NotificationMetadata", "HeartbeatTimeout", "DefaultResult"}},
		"DescribeLifecycleHooks":         {s.describeLifecycleHooks, []string{"AutoScalingGroupName", "LifecycleHookNames"}},
		"DeleteLifecycleHook":            {s.deleteLifecycleHook, []string{"LifecycleHookName", "AutoScalingGroupName"}},
		"DescribeLifecycleHookTypes":     {s.describeLifecycleHookTypes, nil},
		"CompleteLifecycleAction":        {s.completeLifecycleAction, []string{"LifecycleHookName", "AutoScalingGroupName", "LifecycleActionToken", "LifecycleActionResult", "InstanceId"}},
		"RecordLifecycleActionHeartbeat": {s.recordLifecycleActionHeartbeat, []string{"LifecycleHookName", "AutoScalingGroupName", "LifecycleActionToken", "InstanceId"}},
	}
	s.wg.Go(s.healthChecks)
	return s, nil
}

// Register puts the server on the router's Auto Scaling endpoint.
func (s *Server) Register(r *awsproto.Router) {
	r.HandleQuery("autoscaling", APIVersion, XMLNS, s.Handle)
}

// Handle answers one awsQuery call (the awsproto.QueryHandler).
func (s *Server) Handle(ctx context.Context, name string, form url.Values) (any, error) {
	a, ok := s.handlers[name]
	if !ok {
		return nil, awsproto.BadRequest("InvalidAction", "The action %s is not valid for this web service.", name)
	}
	for k := range form {
		top, _, _ := strings.Cut(k, ".")
		if top == "Action" || top == "Version" {
			continue
		}
		known := false
		for _, p := range a.params {
			if top == p {
				known = true
				break
			}
		}
		if !known {
			return nil, errValidation("The world's Auto Scaling does not take the parameter %s in %s.", k, name)
		}
	}
	if e := s.Gate().Admit(name, name); e != nil {
		return nil, e
	}
	return a.run(ctx, form)
}

// Close stops the health checks, pending timers and launches, and waits
// for them.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// afterLocked runs fn on its own goroutine once d has passed, unless the
// server closes first. Caller holds s.mu.
func (s *Server) afterLocked(d time.Duration, fn func()) {
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-s.ctx.Done():
				return
			}
		}
		if s.ctx.Err() == nil {
			fn()
		}
	}()
}

// goLocked runs fn on its own goroutine with the server's context. Caller
// holds s.mu.
func (s *Server) goLocked(fn func(ctx context.Context)) {
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn(s.ctx)
	}()
}

// real turns a world duration into real time.
func (s *Server) real(d time.Duration) time.Duration {
	return time.Duration(float64(d) * s.cfg.TimeScale)
}

func (s *Server) nextSeq() int64 { s.seq++; return s.seq }

// newUUID makes a random UUID from the seeded source (tokens, activity
// ids). Caller holds s.mu.
func (s *Server) newUUID() string {
	a, b := s.rng.Uint64(), s.rng.Uint64()
	a = a&^(0xf<<12) | 0x4<<12
	b = b&^(0x3<<62) | 0x2<<62
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", a>>32, (a>>16)&0xffff, a&0xffff, b>>48, b&0xffffffffffff)
}

func (s *Server) hasAZ(az string) bool {
	for _, z := range s.cfg.AZs {
		if z == az {
			return true
		}
	}
	return false
}

func (s *Server) subnet(az string) string {
	if id, ok := s.cfg.Subnets[az]; ok {
		return id
	}
	h := uint64(14695981039346656037)
	for _, c := range az {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return fmt.Sprintf("subnet-0%016x", h)
}

func (s *Server) instanceARN(id string) string {
	return "arn:aws:ec2:" + s.cfg.Region + ":" + s.cfg.Account + ":instance/" + id
}

// Errors, as the Auto Scaling API reference and botocore's model name
// them: most client errors are ValidationError (HTTP 400); AlreadyExists,
// LimitExceeded, ResourceInUse, ScalingActivityInProgress are the faults
// the model lists.

func errValidation(format string, args ...any) *awsproto.Error {
	return awsproto.BadRequest("ValidationError", format, args...)
}

// errNull is the message AWS's query services give for a missing required
// member.
func errNull(member string) *awsproto.Error {
	return errValidation("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null",
		strings.ToLower(member[:1])+member[1:])
}

func errGroupNotFound(name string) *awsproto.Error {
	return errValidation("AutoScalingGroup name not found - AutoScalingGroup '%s' not found", name)
}

func throttled() *awsproto.Error { return awsproto.BadRequest("Throttling", "Rate exceeded") }
