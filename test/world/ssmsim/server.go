// Package ssmsim is the local world's AWS Systems Manager: Run Command over
// SSM's JSON 1.1 protocol (X-Amz-Target AmazonSSM.*), so aws-sdk-go-v2 and
// the aws CLI work against it unchanged. Documents are AWS's (the
// AWS-RunShellScript a user reaches for), the project's SAM template's
// (LoadTemplate) or a test's (AddDocument); ListDocuments, DescribeDocument
// and GetDocument show them. SendCommand validates parameters against each
// document's allowedPattern and fills in defaults; the node's SSM Agent
// then runs the document's steps in order as amazon-ssm-agent does
// (steps.go): skips those its platform or their precondition rules out,
// runs each aws:runShellScript step on the host (worldapi.ScriptEnvRunner)
// with ENV_VAR parameters as SSM_<Name> variables, and reports each step's
// result (GetCommandInvocation by PluginName, ListCommandInvocations'
// CommandPlugins), with Run Command's statuses, its delivery and
// completion delays from a latency profile, its EventBridge events, and
// its request-rate limits. Each managed instance has a platform, an agent
// version and an agent that can stop while the host lives (StopAgent).
package ssmsim

import (
	"bytes"
	"context"
	"encoding/json"
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
	// status an invocation takes after Pending, one "EC2 Command
	// Status-change Notification" per status its command takes.
	Publisher worldapi.Publisher
	// ConnectionLostAfter is how long after an instance's SSM agent stops
	// SSM shows it ConnectionLost and refuses commands for it
	// (InvalidInstanceId); commands sent before then wait, Pending, for the
	// agent. AWS publishes no figure (the agent's health ping is periodic);
	// 0 means at once.
	ConnectionLostAfter time.Duration
	// Invisible is the shortest time after SendCommand during which
	// GetCommandInvocation answers InvocationDoesNotExist ("The Run Command
	// API follows an eventual consistency model", GetCommandInvocation);
	// the profile's SSMVisible may make it longer. Default
	// DefaultInvisible; negative: no floor.
	Invisible time.Duration
}

// DefaultInvisible is Config.Invisible's default: a short window, so a
// caller that reads an invocation right after sending it meets SSM's
// eventual consistency in every profile.
const DefaultInvisible = 100 * time.Millisecond

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

	started time.Time

	mu        sync.Mutex
	closed    bool
	rng       *rand.Rand
	seq       int64
	documents map[string]*document
	instances map[string]*managedInstance
	commands  map[string]*command
	changed   chan struct{} // closed and replaced when an instance's ping status changes
}

// New makes a Server with AWS's documents, none of the account's, and no
// instances.
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
	switch {
	case cfg.Invisible == 0:
		cfg.Invisible = DefaultInvisible
	case cfg.Invisible < 0:
		cfg.Invisible = 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, log: cfg.Logger.With("service", "ssm"), lat: latency.NewSampler(cfg.Profile, cfg.Seed),
		Controls: awsproto.ControlsOf(awsproto.NewGate(awsproto.GateConfig{Limits: DefaultLimits(), Seed: cfg.Seed + 1,
			Throttle: func() *awsproto.Error { return awsproto.BadRequest("ThrottlingException", "Rate exceeded") }})),
		ctx: ctx, cancel: cancel, rng: rand.New(rand.NewPCG(cfg.Seed, 0x55a)),
		documents: map[string]*document{}, instances: map[string]*managedInstance{}, commands: map[string]*command{},
		changed: make(chan struct{}), started: time.Now(),
	}
	s.handlers = map[string]func(context.Context, []byte) (any, error){
		"SendCommand":                 s.sendCommand,
		"GetCommandInvocation":        s.getCommandInvocation,
		"ListCommands":                s.listCommands,
		"ListCommandInvocations":      s.listCommandInvocations,
		"DescribeInstanceInformation": s.describeInstanceInformation,
		"ListDocuments":               s.listDocuments,
		"DescribeDocument":            s.describeDocument,
		"GetDocument":                 s.getDocument,
	}
	if err := s.addManagedDocuments(); err != nil { // the package's own files: TestAWSRunShellScript covers them
		s.log.Error("AWS documents not loaded", "err", err)
	}
	return s
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

// AddDocument adds (or replaces) a Command document of the account, as
// CreateDocument (or CloudFormation's AWS::SSM::Document) would: the name
// must not start with a prefix AWS keeps; content is JSON or YAML.
func (s *Server) AddDocument(name, content string) error {
	if err := checkAccountDocumentName(name); err != nil {
		return err
	}
	d, err := parseDocument(name, content)
	if err != nil {
		return err
	}
	d.owner, d.created = s.cfg.Account, time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.documents[name] = d
	s.log.Info("document added", "document", name, "parameters", d.order)
	return nil
}

// Documents lists the names of the account's documents (not AWS's).
func (s *Server) Documents() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.documents))
	for n, d := range s.documents {
		if d.owner != ownerAmazon {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
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
	now := time.Now()
	list := []wireInstanceInfo{}
	for _, id := range ids {
		in := s.instances[id]
		info := wireInstanceInfo{InstanceID: id, PingStatus: s.pingStatusLocked(in, now), LastPingDateTime: epochOf(in.lastPing(now)),
			AgentVersion: in.agentVersion, PlatformType: in.platform.Type, PlatformName: in.platform.Name, PlatformVersion: in.platform.Version,
			ResourceType: "EC2Instance", ComputerName: id + ".local"}
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
