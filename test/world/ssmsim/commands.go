package ssmsim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

type command struct {
	id, document, comment  string
	docVersion             string // as requested ("" when not given)
	doc                    *document
	params                 map[string][]string
	instanceIDs            []string
	targets                []wireTarget
	requested              time.Time
	deliveryTimeout        int // SendCommand TimeoutSeconds
	executionTimeout       int // the step's timeoutSeconds, resolved
	script, plugin         string
	maxConcurrency, maxErr string
	invocations            []*invocation
	seq                    int64
	published              string // the last status published in a command event
}

// expires is ExpiresAfter: "calculated based on the total timeout for the
// overall command" (Command, SSM API reference), the delivery timeout plus
// the execution timeout ("Understanding command timeout values"). Then
// every invocation still Pending or InProgress becomes Delivery Timed Out.
func (c *command) expires() time.Time {
	return c.requested.Add(time.Duration(c.deliveryTimeout+c.executionTimeout) * time.Second)
}

// StatusDetails as Run Command spells them (SSM API reference,
// CommandInvocation.StatusDetails).
const (
	detailPending           = "Pending"
	detailInProgress        = "In Progress"
	detailDeliveryTimedOut  = "Delivery Timed Out"
	detailExecutionTimedOut = "Execution Timed Out"
	detailUndeliverable     = "Undeliverable"
)

type invocation struct {
	cmd             *command
	instanceID      string
	awaitingAgent   bool // held for the node's agent (to deliver it, or to hear its result)
	status, details string
	visibleAt       time.Time
	started, ended  time.Time
	code            int
	stdout, stderr  string
}

func (inv *invocation) done() bool {
	switch inv.status {
	case "Success", "Failed", "TimedOut", "Cancelled":
		return true
	}
	return false
}

// status is the command's overall status from its invocations, as Run
// Command reports it (Command.StatusDetails): ErrorCount counts Failed and
// Execution Timed Out, DeliveryTimedOutCount the undelivered.
func (c *command) status() (status, details string, completed, errs, deliveryTimedOut int) {
	pending, running := 0, 0
	failed, execTimedOut := 0, 0
	for _, inv := range c.invocations {
		switch {
		case inv.status == "Pending":
			pending++
		case inv.status == "InProgress":
			running++
		default:
			completed++
		}
		switch {
		case inv.status == "Failed":
			failed++
			errs++
		case inv.status == "TimedOut" && inv.details == detailDeliveryTimedOut:
			deliveryTimedOut++
		case inv.status == "TimedOut":
			execTimedOut++
			errs++
		}
	}
	switch {
	case pending == len(c.invocations):
		return "Pending", detailPending, completed, errs, deliveryTimedOut
	case pending+running > 0:
		return "InProgress", detailInProgress, completed, errs, deliveryTimedOut
	case failed > 0:
		return "Failed", "Failed", completed, errs, deliveryTimedOut
	case execTimedOut > 0:
		return "TimedOut", detailExecutionTimedOut, completed, errs, deliveryTimedOut
	case deliveryTimedOut > 0:
		return "TimedOut", detailDeliveryTimedOut, completed, errs, deliveryTimedOut
	}
	return "Success", "Success", completed, errs, deliveryTimedOut
}

func (c *command) wire() wireCommand {
	st, det, done, errs, dto := c.status()
	w := wireCommand{CommandId: c.id, DocumentName: c.document, DocumentVersion: c.docVersion, Comment: c.comment,
		ExpiresAfter: epochOf(c.expires()), Parameters: c.params,
		InstanceIds: c.instanceIDs, Targets: c.targets, RequestedDateTime: epochOf(c.requested), Status: st,
		StatusDetails: det, MaxConcurrency: c.maxConcurrency, MaxErrors: c.maxErr, TargetCount: len(c.invocations),
		CompletedCount: done, ErrorCount: errs, DeliveryTimedOutCount: dto, TimeoutSeconds: c.deliveryTimeout}
	if w.Targets == nil {
		w.Targets = []wireTarget{}
	}
	return w
}

func (s *Server) sendCommand(_ context.Context, body []byte) (any, error) {
	var req struct {
		DocumentName    string
		DocumentVersion string
		InstanceIds     []string
		Targets         []wireTarget
		Parameters      map[string][]string
		TimeoutSeconds  *int
		Comment         string
		MaxConcurrency  string
		MaxErrors       string
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.DocumentName == "" {
		return nil, awsproto.BadRequest("ValidationException", "1 validation error detected: Value null at 'documentName' failed to satisfy constraint: Member must not be null")
	}
	switch req.DocumentVersion {
	case "", "$DEFAULT", "$LATEST", "1":
	default:
		return nil, awsproto.BadRequest("InvalidDocumentVersion", "Document %s has no version %s", req.DocumentName, req.DocumentVersion)
	}
	ids := req.InstanceIds
	if len(req.Targets) > 0 {
		if len(ids) > 0 {
			return nil, awsproto.BadRequest("ValidationException", "InstanceIds and Targets cannot be used together")
		}
		for _, t := range req.Targets {
			// "Key=instanceids" in the aws CLI's own send-command example:
			// SSM reads the key without case.
			if !strings.EqualFold(t.Key, "InstanceIds") {
				return nil, awsproto.BadRequest("ValidationException", "target key %q is not supported by this SSM (InstanceIds only)", t.Key)
			}
			ids = append(ids, t.Values...)
		}
	}
	if len(ids) == 0 {
		return nil, awsproto.BadRequest("ValidationException", "InstanceIds or Targets must be given")
	}
	if len(ids) > 50 {
		return nil, awsproto.BadRequest("ValidationException", "1 validation error detected: Value at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to 50")
	}
	timeout := 3600
	if req.TimeoutSeconds != nil {
		timeout = *req.TimeoutSeconds
		if timeout < 30 || timeout > 2592000 {
			return nil, awsproto.BadRequest("ValidationException", "1 validation error detected: Value '%d' at 'timeoutSeconds' failed to satisfy constraint: Member must have value between 30 and 2592000", timeout)
		}
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if !instanceIDPattern.MatchString(id) {
			return nil, awsproto.BadRequest("InvalidInstanceId", "Instance id %s is not valid", id)
		}
		if seen[id] {
			return nil, awsproto.BadRequest("DuplicateInstanceId", "Instance id %s appears more than once", id)
		}
		seen[id] = true
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	doc := s.documents[req.DocumentName]
	if doc == nil {
		return nil, awsproto.BadRequest("InvalidDocument", "Document with name %s does not exist.", req.DocumentName)
	}
	now := time.Now()
	for _, id := range ids {
		// InvalidInstanceId: the node is not registered with SSM, or "SSM
		// Agent isn't running" (SendCommand's errors, SSM API reference):
		// SSM knows that once it shows the node ConnectionLost.
		in := s.instances[id]
		if in == nil || s.pingStatusLocked(in, now) != "Online" {
			return nil, awsproto.BadRequest("InvalidInstanceId", "Instances [[%s]] not in a valid state for account %s", id, s.cfg.Account)
		}
		// "The document doesn't support the platform type of the given
		// managed node IDs." (UnsupportedPlatformType)
		if !slices.Contains(doc.platforms(), in.platform.Type) {
			return nil, awsproto.BadRequest("UnsupportedPlatformType", "The document %s does not support the platform type %s of instance %s.", doc.name, in.platform.Type, id)
		}
	}
	res, err := doc.resolve(req.Parameters)
	if err != nil {
		return nil, awsproto.BadRequest("InvalidParameters", "%v", err)
	}
	s.seq++
	c := &command{id: s.newCommandID(), document: doc.name, docVersion: req.DocumentVersion, doc: doc, comment: req.Comment,
		params: res.params, instanceIDs: ids, targets: req.Targets, requested: now, deliveryTimeout: timeout,
		executionTimeout: res.timeout, script: res.script, plugin: doc.step.name,
		maxConcurrency: orDefault(req.MaxConcurrency, "50"), maxErr: orDefault(req.MaxErrors, "0"), seq: s.seq}
	for _, id := range ids {
		inv := &invocation{cmd: c, instanceID: id, status: "Pending", details: detailPending, code: -1,
			visibleAt: c.requested.Add(max(s.lat.Sample(latency.SSMVisible), s.cfg.Invisible))}
		c.invocations = append(c.invocations, inv)
		if !s.closed {
			s.wg.Add(1)
			go s.run(inv)
		}
	}
	s.commands[c.id] = c
	s.log.Info("command sent", "command", c.id, "document", c.document, "instances", ids)
	return &struct{ Command wireCommand }{c.wire()}, nil
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

func (s *Server) newCommandID() string {
	a, b := s.rng.Uint64(), s.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", a>>32, (a>>16)&0xffff, a&0xfff, (b>>48)&0x3fff|0x8000, b&0xffffffffffff)
}

// run delivers one invocation and runs it: Pending until the node's agent
// runs (or the command expires: TimedOut, Delivery Timed Out), InProgress
// while the host runs the script, then Success or Failed with the exit
// code once the agent reports it, after the profile's completion delay. An
// agent that is down when the script ends reports it when it is back, or
// never: the invocation then expires like an undelivered one.
func (s *Server) run(inv *invocation) {
	defer s.wg.Done()
	ctx := s.ctx
	if !sleep(ctx, s.lat.Sample(latency.SSMDelivery)) {
		return
	}
	c := inv.cmd
	in, ok := s.awaitAgent(ctx, inv)
	if !ok {
		return
	}
	s.mu.Lock()
	inv.status, inv.details, inv.started = "InProgress", detailInProgress, time.Now()
	host, skip := in.host, c.doc.skipReason(in.platform.Type)
	s.invocationEventLocked(inv)
	s.mu.Unlock()
	if skip != "" {
		// The agent skips the step and reports success (amazon-ssm-agent:
		// a skipped plugin's status is Skipped, code 0, its output the
		// reason; Run Command shows Success).
		s.log.Info("command step skipped", "command", c.id, "instance", inv.instanceID, "document", c.document, "reason", skip)
		s.finish(inv, "Success", "Success", 0, skip, "")
		return
	}
	s.log.Info("command running", "command", c.id, "instance", inv.instanceID, "document", c.document)
	execTimeout := time.Duration(c.executionTimeout) * time.Second
	runCtx, cancel := context.WithTimeout(ctx, execTimeout+5*time.Second)
	res, err := worldapi.CommandResult{}, error(nil)
	if host == nil {
		err = worldapi.ErrHostDown
	} else {
		res, err = host.RunShellScript(runCtx, c.script, execTimeout)
	}
	cancel()
	if ctx.Err() != nil {
		return
	}
	if errors.Is(err, worldapi.ErrHostDown) {
		// The host is gone, its agent with it: Run Command never hears
		// back from it.
		s.mu.Lock()
		s.setAgentLocked(in, false)
		s.mu.Unlock()
		s.finish(inv, "Failed", detailUndeliverable, -1, "", "")
		return
	}
	if _, ok := s.awaitAgent(ctx, inv); !ok {
		return
	}
	if !sleep(ctx, s.lat.Sample(latency.SSMCompletion)) {
		return
	}
	switch {
	case err == nil && res.ExitCode == 0:
		s.finish(inv, "Success", "Success", 0, res.Stdout, res.Stderr)
	case err == nil:
		s.finish(inv, "Failed", "Failed", res.ExitCode, res.Stdout, res.Stderr)
	case errors.Is(err, context.DeadlineExceeded):
		s.finish(inv, "TimedOut", detailExecutionTimedOut, -1, res.Stdout, res.Stderr)
	default:
		s.finish(inv, "Failed", "Failed", -1, res.Stdout, res.Stderr+err.Error())
	}
}

// awaitAgent waits until the invocation's node has its agent running; at
// the command's expiry it ends the invocation Delivery Timed Out and
// answers false (as it does when the server closes).
func (s *Server) awaitAgent(ctx context.Context, inv *invocation) (*managedInstance, bool) {
	defer func() {
		s.mu.Lock()
		inv.awaitingAgent = false
		s.mu.Unlock()
	}()
	for {
		s.mu.Lock()
		in, changed := s.instances[inv.instanceID], s.changed
		up, expires := in.agentUp, inv.cmd.expires()
		inv.awaitingAgent = !up
		s.mu.Unlock()
		if up {
			return in, true
		}
		t := time.NewTimer(time.Until(expires))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false
		case <-changed:
			t.Stop()
		case <-t.C:
			s.finish(inv, "TimedOut", detailDeliveryTimedOut, -1, "", "")
			return nil, false
		}
	}
}

func (s *Server) finish(inv *invocation, status, details string, code int, stdout, stderr string) {
	s.mu.Lock()
	inv.status, inv.details, inv.code, inv.stdout, inv.stderr = status, details, code, stdout, stderr
	inv.ended = time.Now()
	s.invocationEventLocked(inv)
	s.mu.Unlock()
	s.log.Info("command finished", "command", inv.cmd.id, "instance", inv.instanceID, "status", status,
		"details", details, "exitCode", code)
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Server) getCommandInvocation(_ context.Context, body []byte) (any, error) {
	var req struct{ CommandId, InstanceId, PluginName string }
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if !commandIDPattern.MatchString(req.CommandId) {
		return nil, awsproto.BadRequest("InvalidCommandId", "Command id %q is not valid", req.CommandId)
	}
	if !instanceIDPattern.MatchString(req.InstanceId) {
		return nil, awsproto.BadRequest("InvalidInstanceId", "Instance id %q is not valid", req.InstanceId)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	inv := s.findInvocation(req.CommandId, req.InstanceId)
	if inv == nil || time.Now().Before(inv.visibleAt) {
		return nil, awsproto.BadRequest("InvocationDoesNotExist", "An error occurred (InvocationDoesNotExist)")
	}
	if req.PluginName != "" && req.PluginName != inv.cmd.plugin {
		return nil, awsproto.BadRequest("InvalidPluginName", "Plugin %s is not part of document %s", req.PluginName, inv.cmd.document)
	}
	// StandardOutputContent and StandardErrorContent stay empty until the
	// command has finished ("If the command hasn't finished running, then
	// this string is empty"), then hold the first 24,000 and 8,000
	// characters (GetCommandInvocation).
	stdout, stderr := "", ""
	if inv.done() {
		stdout, stderr = truncate(inv.stdout, maxStdout), truncate(inv.stderr, maxStderr)
	}
	out := &wireGetInvocation{CommandId: inv.cmd.id, InstanceId: inv.instanceID, Comment: inv.cmd.comment,
		DocumentName: inv.cmd.document, DocumentVersion: inv.cmd.docVersion, PluginName: inv.cmd.plugin, ResponseCode: inv.code,
		ExecutionStartDateTime: isoOf(inv.started), ExecutionEndDateTime: isoOf(inv.ended), Status: inv.status,
		StatusDetails: inv.details, StandardOutputContent: stdout, StandardErrorContent: stderr}
	if !inv.started.IsZero() && !inv.ended.IsZero() {
		d := inv.ended.Sub(inv.started)
		out.ExecutionElapsedTime = fmt.Sprintf("PT%.3fS", d.Seconds())
	}
	return out, nil
}

func (s *Server) findInvocation(commandID, instanceID string) *invocation {
	c := s.commands[commandID]
	if c == nil {
		return nil
	}
	for _, inv := range c.invocations {
		if inv.instanceID == instanceID {
			return inv
		}
	}
	return nil
}

type commandFilter struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// filterCommands applies ListCommands/ListCommandInvocations filters to a
// command (status is the command's or the invocation's).
func filterMatch(filters []commandFilter, c *command, status, details string) (bool, error) {
	for _, f := range filters {
		switch f.Key {
		case "InvokedAfter", "InvokedBefore":
			t, err := time.Parse(time.RFC3339, f.Value)
			if err != nil {
				return false, awsproto.BadRequest("ValidationException", "filter %s: %q is not a timestamp like 2024-07-07T00:00:00Z", f.Key, f.Value)
			}
			if (f.Key == "InvokedAfter" && c.requested.Before(t)) || (f.Key == "InvokedBefore" && !c.requested.Before(t)) {
				return false, nil
			}
		case "DocumentName":
			if c.document != f.Value {
				return false, nil
			}
		case "Status":
			if f.Value != status && f.Value != details {
				return false, nil
			}
		case "ExecutionStage":
			executing := status == "Pending" || status == "InProgress"
			if (f.Value == "Executing") != executing {
				return false, nil
			}
		default:
			return false, awsproto.BadRequest("InvalidFilterKey", "The filter key %s is not valid", f.Key)
		}
	}
	return true, nil
}

func (s *Server) sortedCommands() []*command {
	all := make([]*command, 0, len(s.commands))
	for _, c := range s.commands {
		all = append(all, c)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seq > all[j].seq }) // newest first
	return all
}

type listRequest struct {
	CommandId  string
	InstanceId string
	MaxResults *int
	NextToken  string
	Filters    []commandFilter
	Details    bool
}

func (r listRequest) check() error {
	if r.CommandId != "" && !commandIDPattern.MatchString(r.CommandId) {
		return awsproto.BadRequest("InvalidCommandId", "Command id %q is not valid", r.CommandId)
	}
	if r.InstanceId != "" && !instanceIDPattern.MatchString(r.InstanceId) {
		return awsproto.BadRequest("InvalidInstanceId", "Instance id %q is not valid", r.InstanceId)
	}
	if r.MaxResults != nil && (*r.MaxResults < 1 || *r.MaxResults > 50) {
		return awsproto.BadRequest("ValidationException", "1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 50", *r.MaxResults)
	}
	return nil
}

func (s *Server) listCommands(_ context.Context, body []byte) (any, error) {
	var req listRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.Details {
		return nil, awsproto.BadRequest("ValidationException", "ListCommands has no Details parameter")
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.CommandId != "" && s.commands[req.CommandId] == nil {
		return nil, awsproto.BadRequest("InvalidCommandId", "Command %s does not exist", req.CommandId)
	}
	list := []wireCommand{}
	for _, c := range s.sortedCommands() {
		if req.CommandId != "" && c.id != req.CommandId {
			continue
		}
		if req.InstanceId != "" && s.findInvocation(c.id, req.InstanceId) == nil {
			continue
		}
		w := c.wire()
		ok, err := filterMatch(req.Filters, c, w.Status, w.StatusDetails)
		if err != nil {
			return nil, err
		}
		if ok {
			list = append(list, w)
		}
	}
	page, next, err := paginate(list, req.MaxResults, 50, req.NextToken)
	if err != nil {
		return nil, err
	}
	return &struct {
		Commands  []wireCommand
		NextToken string `json:",omitempty"`
	}{page, next}, nil
}

func (s *Server) listCommandInvocations(_ context.Context, body []byte) (any, error) {
	var req listRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.CommandId != "" && s.commands[req.CommandId] == nil {
		return nil, awsproto.BadRequest("InvalidCommandId", "Command %s does not exist", req.CommandId)
	}
	now := time.Now()
	list := []wireInvocation{}
	for _, c := range s.sortedCommands() {
		if req.CommandId != "" && c.id != req.CommandId {
			continue
		}
		for _, inv := range c.invocations {
			if (req.InstanceId != "" && inv.instanceID != req.InstanceId) || now.Before(inv.visibleAt) {
				continue
			}
			ok, err := filterMatch(req.Filters, c, inv.status, inv.details)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			w := wireInvocation{CommandId: c.id, InstanceId: inv.instanceID, Comment: c.comment, DocumentName: c.document,
				DocumentVersion: c.docVersion, RequestedDateTime: epochOf(c.requested), Status: inv.status,
				StatusDetails: inv.details, CommandPlugins: []wirePlugin{}}
			if req.Details {
				w.CommandPlugins = append(w.CommandPlugins, wirePlugin{Name: c.plugin, Status: pluginStatus(inv.status),
					StatusDetails: inv.details, ResponseCode: inv.code, ResponseStartDateTime: epochOf(inv.started),
					ResponseFinishDateTime: epochOf(inv.ended), Output: pluginOutput(inv.stdout, inv.stderr)})
			}
			list = append(list, w)
		}
	}
	page, next, err := paginate(list, req.MaxResults, 50, req.NextToken)
	if err != nil {
		return nil, err
	}
	return &struct {
		CommandInvocations []wireInvocation
		NextToken          string `json:",omitempty"`
	}{page, next}, nil
}

func pluginStatus(s string) string {
	if s == "Delayed" || s == "Cancelling" {
		return "InProgress"
	}
	return s
}

// Invocation is a test's view of one command on one instance.
type Invocation struct {
	CommandID, InstanceID, Document string
	Status, StatusDetails           string
	ExitCode                        int
	Stdout, Stderr                  string
	Script                          string
	Parameters                      map[string][]string
	// AwaitingAgent: held because the node's agent is stopped, either
	// before delivery or with a result the agent has yet to report.
	AwaitingAgent bool
}

// Invocations lists every invocation so far, oldest command first.
func (s *Server) Invocations() []Invocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmds := s.sortedCommands()
	var out []Invocation
	for i := len(cmds) - 1; i >= 0; i-- {
		c := cmds[i]
		for _, inv := range c.invocations {
			out = append(out, Invocation{CommandID: c.id, InstanceID: inv.instanceID, Document: c.document,
				Status: inv.status, StatusDetails: inv.details, ExitCode: inv.code, Stdout: inv.stdout,
				Stderr: inv.stderr, Script: c.script, Parameters: c.params, AwaitingAgent: inv.awaitingAgent})
		}
	}
	return out
}
