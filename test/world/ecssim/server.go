// Package ecssim is the local world's Amazon ECS: the JSON 1.1 API that
// tether's functions and the seed walkthrough's aws CLI commands call, and a
// scheduler that places tasks on container instances (worldapi.Host), drives
// their lifecycle and publishes "ECS Task State Change" and "ECS Container
// Instance State Change" events the way ECS does.
//
// All state lives in a Server value under one lock. Host calls and event
// publishing happen outside the lock; a single scheduler goroutine advances
// timed lifecycle steps and keeps services at their desired count.
package ecssim

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand"
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Target is the X-Amz-Target prefix of ECS's JSON API.
const Target = "AmazonEC2ContainerServiceV20141113"

// Timing sets how long the steps that ECS does by itself take. The zero
// value makes them immediate (each is still its own state and event).
type Timing struct {
	Provision   time.Duration // PROVISIONING → PENDING (awsvpc ENI attachment)
	Activate    time.Duration // ACTIVATING → RUNNING (load balancer registration)
	Deactivate  time.Duration // DEACTIVATING → STOPPING (target deregistration)
	Deprovision time.Duration // DEPROVISIONING → STOPPED (ENI detachment)
	// RetryBase and RetryMax bound the service scheduler's backoff after
	// tasks that failed to start: base·2^(n-1), at most max. Unlike the
	// steps above, zero is not immediate: RetryBase defaults to 10ms and
	// RetryMax to 1s, so a task that can never start does not spin.
	RetryBase time.Duration
	RetryMax  time.Duration
}

// RealisticTiming approximates what ECS takes on EC2 with awsvpc.
func RealisticTiming() Timing {
	return Timing{
		Provision: 3 * time.Second, Activate: 5 * time.Second,
		Deactivate: 5 * time.Second, Deprovision: 2 * time.Second,
		RetryBase: 10 * time.Second, RetryMax: 15 * time.Minute,
	}
}

// Scaled multiplies every duration by f (the benchmarks' realistic*0.1).
func (t Timing) Scaled(f float64) Timing {
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) * f) }
	return Timing{
		Provision: scale(t.Provision), Activate: scale(t.Activate), Deactivate: scale(t.Deactivate),
		Deprovision: scale(t.Deprovision), RetryBase: scale(t.RetryBase), RetryMax: scale(t.RetryMax),
	}
}

// Options configure a Server.
type Options struct {
	Region    string // default us-west-2
	Account   string // default 123456789012
	Seed      int64  // ids and placement tie-breaks
	Publisher worldapi.Publisher
	Timing    Timing
	Logger    *slog.Logger
	// HostTimeout bounds each call into a Host (default 5 minutes).
	HostTimeout time.Duration
	// Limits are request-rate token buckets by action (ThrottlingException
	// past them); nil means DefaultLimits, ECS's own.
	Limits map[string]awsproto.Bucket
}

// Server is one region's ECS.
type Server struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	rng      *rand.Rand
	clusters map[string]*cluster // by name
	order    []string
	taskDefs map[string][]*taskDef // by family, index revision-1
	changed  chan struct{}         // closed and replaced on every change
	pending  []worldapi.Event      // to publish, in order
	closed   bool

	// Controls: the gate every call passes (ECS's request-rate buckets,
	// scripted faults, counts) and its test controls (ThrottleNext,
	// FailNext, SetErrorRate, SetThrottling, Counts, Gate).
	awsproto.Controls

	pubMu  sync.Mutex
	kick   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New starts a Server with its scheduler; Close stops it.
func New(opts Options) *Server {
	if opts.Region == "" {
		opts.Region = "us-west-2"
	}
	if opts.Account == "" {
		opts.Account = "123456789012"
	}
	if opts.Timing.RetryBase == 0 {
		opts.Timing.RetryBase = 10 * time.Millisecond
	}
	if opts.Timing.RetryMax == 0 {
		opts.Timing.RetryMax = max(time.Second, opts.Timing.RetryBase)
	}
	if opts.HostTimeout == 0 {
		opts.HostTimeout = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Limits == nil {
		opts.Limits = DefaultLimits()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:     opts,
		log:      opts.Logger.With("component", "ecssim"),
		rng:      rand.New(rand.NewSource(opts.Seed)),
		clusters: map[string]*cluster{},
		taskDefs: map[string][]*taskDef{},
		changed:  make(chan struct{}),
		kick:     make(chan struct{}, 1),
		Controls: awsproto.ControlsOf(awsproto.NewGate(awsproto.GateConfig{Limits: opts.Limits, Seed: uint64(opts.Seed),
			Throttle: func() *awsproto.Error { return awsproto.BadRequest("ThrottlingException", "Rate exceeded") }})),
		ctx:    ctx,
		cancel: cancel,
	}
	s.wg.Add(1)
	go s.run()
	return s
}

// Close stops the scheduler and waits for host calls in flight. Hosts are
// not closed: the world owns them.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Register serves ECS's JSON API on the world's router.
func (s *Server) Register(r *awsproto.Router) {
	r.HandleJSON("ecs", Target, "com.amazonaws.ecs", "1.1", s.Handle)
}

type action func(s *Server, body []byte) (any, error)

// decoded makes an action of a handler of one request type: the body is
// decoded strictly (decode) before the handler runs.
func decoded[R any](h func(s *Server, req R) (any, error)) action {
	return func(s *Server, body []byte) (any, error) {
		var req R
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return h(s, req)
	}
}

// actions is the flat table of what this ECS answers.
var actions = map[string]action{
	"CreateCluster":                 decoded((*Server).createCluster),
	"ListClusters":                  decoded((*Server).listClusters),
	"DescribeClusters":              decoded((*Server).describeClusters),
	"RegisterTaskDefinition":        decoded((*Server).registerTaskDefinition),
	"DescribeTaskDefinition":        decoded((*Server).describeTaskDefinition),
	"DeregisterTaskDefinition":      decoded((*Server).deregisterTaskDefinition),
	"CreateService":                 decoded((*Server).createService),
	"UpdateService":                 decoded((*Server).updateService),
	"DeleteService":                 decoded((*Server).deleteService),
	"DescribeServices":              decoded((*Server).describeServices),
	"ListServices":                  decoded((*Server).listServices),
	"RunTask":                       decoded((*Server).runTask),
	"StartTask":                     decoded((*Server).startTask),
	"StopTask":                      decoded((*Server).stopTask),
	"ListTasks":                     decoded((*Server).listTasks),
	"DescribeTasks":                 decoded((*Server).describeTasks),
	"ListContainerInstances":        decoded((*Server).listContainerInstances),
	"DescribeContainerInstances":    decoded((*Server).describeContainerInstances),
	"UpdateContainerInstancesState": decoded((*Server).updateContainerInstancesState),
	"DeregisterContainerInstance":   decoded((*Server).deregisterContainerInstance),
	"PutAttributes":                 decoded((*Server).putAttributes),
	"ListAttributes":                decoded((*Server).listAttributes),
}

// Handle answers one ECS action (the awsproto.JSONHandler).
func (s *Server) Handle(_ context.Context, name string, body []byte) (any, error) {
	a, ok := actions[name]
	if !ok {
		return nil, awsproto.BadRequest(codeUnknownOperation, "Operation %s is not supported by the local ECS world.", name)
	}
	if e := s.Gate().Admit(name, name); e != nil {
		return nil, e
	}
	out, err := a(s, body)
	s.afterChange()
	return out, err
}

// changedLocked wakes waiters and the scheduler; callers hold mu.
func (s *Server) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// afterChange publishes the events queued while the lock was held, in order.
func (s *Server) afterChange() {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.mu.Lock()
	evs := s.pending
	s.pending = nil
	s.mu.Unlock()
	if s.opts.Publisher == nil {
		return
	}
	for _, e := range evs {
		s.opts.Publisher.Publish(e)
	}
}

func (s *Server) now() time.Time { return time.Now().UTC() }

// newID returns n random lowercase hex digits from the seeded source.
func (s *Server) newID(n int) string {
	const hex = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = hex[s.rng.Intn(16)]
	}
	return string(b)
}

// newUUID returns a seeded random UUID (event ids, attachment ids).
func (s *Server) newUUID() string {
	h := s.newID(32)
	return h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}

func (s *Server) lookupCluster(ref string) (*cluster, error) {
	name, ok := s.clusterName(ref)
	if !ok {
		return nil, invalidParameter("Invalid cluster identifier %q.", ref)
	}
	c := s.clusters[name]
	if c == nil || c.status != statusActive {
		return nil, clusterNotFound()
	}
	return c, nil
}

// findIn resolves a short id (a name for services) or an ARN of one kind
// of resource of c; nil when the reference names another cluster or nothing.
func findIn[T any](s *Server, c *cluster, resource, ref string, byID map[string]*T) *T {
	cl, id, ok := s.resourceID(resource, ref)
	if !ok || (cl != "" && cl != c.name) {
		return nil
	}
	return byID[id]
}

func (c *cluster) findInstance(s *Server, ref string) *instance {
	return findIn(s, c, "container-instance", ref, c.instances)
}

func (c *cluster) findTask(s *Server, ref string) *task { return findIn(s, c, "task", ref, c.tasks) }

func (c *cluster) findService(s *Server, ref string) *service {
	return findIn(s, c, "service", ref, c.services)
}

// activeService finds a service of c that is ACTIVE, or answers as ECS
// does when it is missing or deleted.
func (c *cluster) activeService(s *Server, ref string) (*service, error) {
	sv := c.findService(s, ref)
	if sv == nil {
		return nil, serviceNotFound()
	}
	if sv.status != statusActive {
		return nil, serviceNotActive()
	}
	return sv, nil
}

// activeTaskDef finds a task definition new tasks may use.
func (s *Server) activeTaskDef(ref string) (*taskDef, error) {
	d, err := s.findTaskDef(ref)
	if err != nil {
		return nil, err
	}
	if d.status != statusActive {
		return nil, clientError("TaskDefinition is inactive")
	}
	return d, nil
}

// launchableTaskDef is activeTaskDef with the network configuration tasks
// of it would start with checked.
func (s *Server) launchableTaskDef(ref string, network *networkConfigurationJSON) (*taskDef, error) {
	d, err := s.activeTaskDef(ref)
	if err != nil {
		return nil, err
	}
	return d, checkNetwork(d, network)
}

func (s *Server) String() string { return fmt.Sprintf("ecssim(%s)", s.opts.Region) }
