// Package cfnsim is the local world's AWS CloudFormation: just enough for
// the stacks the world defines to be found the way the seed's
// get-outputs.sh finds them (aws cloudformation wait stack-exists,
// wait stack-create-complete, describe-stacks --query Outputs), over the
// awsQuery protocol (API version 2010-05-15).
package cfnsim

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

const (
	apiVersion = "2010-05-15"
	xmlns      = "http://cloudformation.amazonaws.com/doc/2010-05-15/"
)

// Config sets up a Server.
type Config struct {
	Region  string // default us-west-2
	Account string // default 123456789012
	Logger  *slog.Logger
}

type stack struct {
	name, id string
	created  time.Time
	outputs  map[string]string
	seq      int
}

// Server holds the world's stacks, all CREATE_COMPLETE.
type Server struct {
	cfg      Config
	log      *slog.Logger
	handlers map[string]func(ctx context.Context, form url.Values) (any, error)

	mu     sync.Mutex
	stacks map[string]*stack // by name
	seq    int
}

// New makes an empty Server.
func New(cfg Config) *Server {
	if cfg.Region == "" {
		cfg.Region = "us-west-2"
	}
	if cfg.Account == "" {
		cfg.Account = "123456789012"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("service", "cloudformation"), stacks: map[string]*stack{}}
	s.handlers = map[string]func(context.Context, url.Values) (any, error){
		"DescribeStacks": s.describeStacks,
		"DeleteStack":    s.deleteStack,
	}
	return s
}

// Register puts the server on the router's CloudFormation endpoint.
func (s *Server) Register(r *awsproto.Router) {
	r.HandleQuery("cloudformation", apiVersion, xmlns, s.Handle)
}

// Handle answers one awsQuery call.
func (s *Server) Handle(ctx context.Context, action string, form url.Values) (any, error) {
	h, ok := s.handlers[action]
	if !ok {
		return nil, awsproto.BadRequest("InvalidAction", "The action %s is not valid for this web service.", action)
	}
	for k := range form {
		switch k {
		case "Action", "Version", "StackName", "NextToken":
		default:
			return nil, awsproto.BadRequest("ValidationError", "Unsupported parameter %s", k)
		}
	}
	return h(ctx, form)
}

// AddStack defines a stack in CREATE_COMPLETE with these outputs and
// returns its id (an ARN). Defining it again replaces its outputs.
func (s *Server) AddStack(name string, outputs map[string]string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.stacks[name]; st != nil {
		st.outputs = copyMap(outputs)
		return st.id
	}
	s.seq++
	st := &stack{name: name, created: time.Now().UTC(), outputs: copyMap(outputs), seq: s.seq,
		id: fmt.Sprintf("arn:aws:cloudformation:%s:%s:stack/%s/%08x-0000-4000-8000-%012x", s.cfg.Region, s.cfg.Account, name, s.seq, s.seq)}
	s.stacks[name] = st
	s.log.Info("stack defined", "stack", name, "outputs", len(outputs))
	return st.id
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

type xmlOutput struct {
	OutputKey   string `xml:"OutputKey"`
	OutputValue string `xml:"OutputValue"`
}

type xmlStack struct {
	StackID           string      `xml:"StackId"`
	StackName         string      `xml:"StackName"`
	CreationTime      string      `xml:"CreationTime"`
	StackStatus       string      `xml:"StackStatus"`
	DisableRollback   bool        `xml:"DisableRollback"`
	NotificationARNs  struct{}    `xml:"NotificationARNs"`
	Capabilities      struct{}    `xml:"Capabilities"`
	Outputs           []xmlOutput `xml:"Outputs>member"`
	Tags              struct{}    `xml:"Tags"`
	EnableTermination bool        `xml:"EnableTerminationProtection"`
	DriftInformation  struct {
		StackDriftStatus string `xml:"StackDriftStatus"`
	} `xml:"DriftInformation"`
}

type describeStacksResult struct {
	Stacks []xmlStack `xml:"Stacks>member"`
}

func (st *stack) xml() xmlStack {
	x := xmlStack{StackID: st.id, StackName: st.name, CreationTime: st.created.Format("2006-01-02T15:04:05.000Z"),
		StackStatus: "CREATE_COMPLETE"}
	x.DriftInformation.StackDriftStatus = "NOT_CHECKED"
	keys := make([]string, 0, len(st.outputs))
	for k := range st.outputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		x.Outputs = append(x.Outputs, xmlOutput{OutputKey: k, OutputValue: st.outputs[k]})
	}
	return x
}

// find looks a stack up by name or by id. Caller holds s.mu.
func (s *Server) find(nameOrID string) *stack {
	if st := s.stacks[nameOrID]; st != nil {
		return st
	}
	if strings.HasPrefix(nameOrID, "arn:") {
		for _, st := range s.stacks {
			if st.id == nameOrID {
				return st
			}
		}
	}
	return nil
}

func (s *Server) describeStacks(_ context.Context, form url.Values) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &describeStacksResult{Stacks: []xmlStack{}}
	if name := form.Get("StackName"); name != "" {
		st := s.find(name)
		if st == nil {
			return nil, awsproto.BadRequest("ValidationError", "Stack with id %s does not exist", name)
		}
		out.Stacks = append(out.Stacks, st.xml())
		return out, nil
	}
	all := make([]*stack, 0, len(s.stacks))
	for _, st := range s.stacks {
		all = append(all, st)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seq < all[j].seq })
	for _, st := range all {
		out.Stacks = append(out.Stacks, st.xml())
	}
	return out, nil
}

// deleteStack removes the stack at once (CloudFormation would pass through
// DELETE_IN_PROGRESS); like CloudFormation, deleting a stack that does not
// exist succeeds.
func (s *Server) deleteStack(_ context.Context, form url.Values) (any, error) {
	name := form.Get("StackName")
	if name == "" {
		return nil, awsproto.BadRequest("ValidationError", "1 validation error detected: Value null at 'stackName' failed to satisfy constraint: Member must not be null")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.find(name); st != nil {
		delete(s.stacks, st.name)
		s.log.Info("stack deleted", "stack", st.name)
	}
	return nil, nil
}
