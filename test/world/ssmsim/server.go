// Package ssmsim is the local world's AWS Systems Manager: Run Command over
// SSM's JSON 1.1 protocol (X-Amz-Target AmazonSSM.*), so aws-sdk-go-v2 and
// the aws CLI work against it unchanged. Documents come from the project's
// SAM template (LoadTemplate) or from tests (AddDocument); SendCommand
// validates parameters against each document's allowedPattern, fills in
// defaults, substitutes {{ Name }} and runs the aws:runShellScript step in
// the instance through worldapi.Host, with Run Command's statuses and its
// delivery and completion delays from a latency profile.
package ssmsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Config sets up a Server.
type Config struct {
	Region  string // default us-west-2
	Account string // default 123456789012
	// Profile times visibility, delivery and completion of commands
	// (latency.Instant() if its Dists is nil).
	Profile latency.Profile
	Seed    uint64 // command ids, latencies, random faults
	Logger  *slog.Logger
	// Publisher receives Run Command's EventBridge events (nil: none are
	// sent): one "EC2 Command Invocation Status-change Notification" per
	// status an invocation takes after Pending.
	Publisher worldapi.Publisher
}

// Server is the simulated SSM of one account and Region.
type Server struct {
	cfg Config
	log *slog.Logger
	lat *latency.Sampler
	// Controls: the gate every call passes (throttling, scripted faults,
	// counts) and its test controls (FailNext, ThrottleNext, SetErrorRate,
	// SetThrottling, Counts, Gate).
	awsproto.Controls
	handlers map[string]func(ctx context.Context, body []byte) (any, error)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	rng       *rand.Rand
	seq       int64
	documents map[string]*document
	instances map[string]*managedInstance
	commands  map[string]*command
	changed   chan struct{} // closed and replaced when an instance's ping status changes
}

type managedInstance struct {
	id       string
	host     worldapi.Host
	online   bool
	lastPing time.Time
}

// New makes a Server with no documents and no instances.
func New(cfg Config) *Server {
	if cfg.Region == "" {
		cfg.Region = "us-west-2"
	}
	if cfg.Account == "" {
		cfg.Account = "123456789012"
	}
	if cfg.Profile.Dists == nil {
		cfg.Profile = latency.Instant()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, log: cfg.Logger.With("service", "ssm"), lat: latency.NewSampler(cfg.Profile, cfg.Seed),
		Controls: awsproto.ControlsOf(awsproto.NewGate(awsproto.GateConfig{Limits: DefaultLimits(), Seed: cfg.Seed + 1,
			Throttle: func() *awsproto.Error { return awsproto.BadRequest("ThrottlingException", "Rate exceeded") }})),
		ctx: ctx, cancel: cancel, rng: rand.New(rand.NewPCG(cfg.Seed, 0x55a)),
		documents: map[string]*document{}, instances: map[string]*managedInstance{}, commands: map[string]*command{},
		changed: make(chan struct{}),
	}
	s.handlers = map[string]func(context.Context, []byte) (any, error){
		"SendCommand":                 s.sendCommand,
		"GetCommandInvocation":        s.getCommandInvocation,
		"ListCommands":                s.listCommands,
		"ListCommandInvocations":      s.listCommandInvocations,
		"DescribeInstanceInformation": s.describeInstanceInformation,
	}
	return s
}

// DefaultLimits are the request-rate buckets. AWS publishes no per-action
// token buckets for Run Command; these assume EC2's shape (mutating 50 /
// 5 per s, reads 100 / 20 per s), which is generous for tether's use.
func DefaultLimits() map[string]awsproto.Bucket {
	read := awsproto.Bucket{Size: 100, Refill: 20}
	return map[string]awsproto.Bucket{
		"SendCommand":                 {Size: 50, Refill: 5},
		"GetCommandInvocation":        read,
		"ListCommands":                read,
		"ListCommandInvocations":      read,
		"DescribeInstanceInformation": read,
	}
}

// Register puts the server on the router (X-Amz-Target AmazonSSM.*).
func (s *Server) Register(r *awsproto.Router) {
	r.HandleJSON("ssm", "AmazonSSM", "", "1.1", s.Handle)
}

// Handle answers one SSM call (the awsproto.JSONHandler).
func (s *Server) Handle(ctx context.Context, action string, body []byte) (any, error) {
	h, ok := s.handlers[action]
	if !ok {
		return nil, awsproto.BadRequest("UnknownOperationException", "Unknown operation %s", action)
	}
	if e := s.Gate().Admit(action, action); e != nil {
		return nil, e
	}
	return h(ctx, body)
}

// decode reads a request body; a field this SSM does not implement is an
// error, never silently ignored.
func decode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return awsproto.BadRequest("ValidationException", "request not understood by this SSM: %v", err)
	}
	return nil
}

// Close stops pending deliveries and waits for running commands' workers.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// AddDocument adds (or replaces) a Command document; content is the
// document as JSON or YAML.
func (s *Server) AddDocument(name, content string) error {
	d, err := parseDocument(name, content)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.documents[name] = d
	s.log.Info("document added", "document", name, "parameters", d.order)
	return nil
}

// Documents lists the documents' names.
func (s *Server) Documents() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.documents))
	for n := range s.documents {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// AddInstance registers a managed instance (its agent Online).
func (s *Server) AddInstance(id string, host worldapi.Host) error {
	if !instanceIDPattern.MatchString(id) {
		return fmt.Errorf("ssmsim: instance id %q: want i- and 8 or 17 characters", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.instances[id] != nil {
		return fmt.Errorf("ssmsim: instance %s already registered", id)
	}
	s.instances[id] = &managedInstance{id: id, host: host, online: true, lastPing: time.Now()}
	s.signalLocked()
	return nil
}

// SetOnline sets the instance's agent Online or ConnectionLost. Commands
// for an instance whose agent is not online stay Pending until it comes
// back or their delivery timeout passes.
func (s *Server) SetOnline(id string, online bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	if in == nil {
		return fmt.Errorf("ssmsim: instance %s is not registered", id)
	}
	in.online = online
	if online {
		in.lastPing = time.Now()
	}
	s.signalLocked()
	s.log.Info("instance ping status", "instance", id, "online", online)
	return nil
}

func (s *Server) signalLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) describeInstanceInformation(_ context.Context, body []byte) (any, error) {
	var req struct {
		InstanceInformationFilterList []struct {
			Key      string   `json:"key"`
			ValueSet []string `json:"valueSet"`
		}
		Filters []struct {
			Key    string
			Values []string
		}
		MaxResults *int
		NextToken  string
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	want := map[string][]string{}
	for _, f := range req.InstanceInformationFilterList {
		want[f.Key] = append(want[f.Key], f.ValueSet...)
	}
	for _, f := range req.Filters {
		want[f.Key] = append(want[f.Key], f.Values...)
	}
	for k := range want {
		if k != "InstanceIds" && k != "PingStatus" && k != "ResourceType" && k != "PlatformTypes" {
			return nil, awsproto.BadRequest("InvalidFilterKey", "The filter key %s is not supported by this SSM", k)
		}
	}
	if req.MaxResults != nil && (*req.MaxResults < 5 || *req.MaxResults > 50) {
		return nil, awsproto.BadRequest("ValidationException", "1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value between 5 and 50", *req.MaxResults)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.instances))
	for id := range s.instances {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	list := []wireInstanceInfo{}
	for _, id := range ids {
		in := s.instances[id]
		info := wireInstanceInfo{InstanceID: id, PingStatus: "ConnectionLost", LastPingDateTime: epochOf(in.lastPing),
			AgentVersion: "3.3.1142.0", PlatformType: "Linux", PlatformName: "Amazon Linux", PlatformVersion: "2023",
			ResourceType: "EC2Instance", ComputerName: id + ".local"}
		if in.online {
			info.PingStatus = "Online"
		}
		if !matchAny(want["InstanceIds"], id) || !matchAny(want["PingStatus"], info.PingStatus) ||
			!matchAny(want["ResourceType"], info.ResourceType) || !matchAny(want["PlatformTypes"], info.PlatformType) {
			continue
		}
		list = append(list, info)
	}
	page, next, err := paginate(list, req.MaxResults, 50, req.NextToken)
	if err != nil {
		return nil, err
	}
	return &struct {
		InstanceInformationList []wireInstanceInfo
		NextToken               string `json:",omitempty"`
	}{page, next}, nil
}

func matchAny(want []string, v string) bool {
	if len(want) == 0 {
		return true
	}
	for _, w := range want {
		if w == v {
			return true
		}
	}
	return false
}
