package ssmsim

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	deliveryTimeout        int   // SendCommand TimeoutSeconds
	stepTimeouts           []int // each step's timeoutSeconds, resolved
	maxConcurrency, maxErr string
	invocations            []*invocation
	seq                    int64
	published              string // the last status published in a command event
}

// expires is ExpiresAfter: "calculated based on the total timeout for the
// overall command" (Command, SSM API reference), the delivery timeout plus
// the execution timeout ("Understanding command timeout values"), here
// every step's, as the agent gives each step its own. Then every
// invocation still Pending or InProgress becomes Delivery Timed Out.
func (c *command) expires() time.Time {
	total := c.deliveryTimeout
	for _, t := range c.stepTimeouts {
		total += t
	}
	return c.requested.Add(time.Duration(total) * time.Second)
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
	plugins         []*pluginResult // per step, in document order; nil until the step ended
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
		stepTimeouts: res.timeouts, maxConcurrency: orDefault(req.MaxConcurrency, "50"), maxErr: orDefault(req.MaxErrors, "0"), seq: s.seq}
	for _, id := range ids {
		inv := &invocation{cmd: c, instanceID: id, status: "Pending", details: detailPending, plugins: make([]*pluginResult, len(doc.steps)),
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
// while the agent runs the document's steps one by one on the host (see
// steps.go), then the steps' aggregate status once the agent reports it,
// after the profile's completion delay. Each step's result reaches SSM
// when the step ends, if the agent is up. An agent that is down when the
// steps end reports them when it is back, or never: the invocation then
// expires like an undelivered one.
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
	host, platform, mode := in.host, in.platform, in.interpolation()
	s.invocationEventLocked(inv)
	s.mu.Unlock()
	s.log.Info("command running", "command", c.id, "instance", inv.instanceID, "document", c.document, "platform", platform.Type)
	for i, st := range c.doc.steps {
		done := s.snapshotPlugins(inv)
		var r *pluginResult
		switch op, reason := stepOperation(c.doc.steps, i, done, platform.Type); op {
		case opSkip:
			s.log.Info("command step skipped", "command", c.id, "instance", inv.instanceID, "step", st.name, "reason", reason)
			r = skipped(st.name, reason, time.Now())
		default:
			var err error
			r, err = s.runStep(ctx, inv, i, host, platform, mode)
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, worldapi.ErrHostDown) {
				// The host is gone, its agent with it: Run Command never
				// hears back from it.
				s.mu.Lock()
				s.setAgentLocked(in, false)
				s.mu.Unlock()
				s.finish(inv, "Failed", detailUndeliverable)
				return
			}
		}
		s.mu.Lock()
		inv.plugins[i] = r
		r.reported = in.agentUp
		s.mu.Unlock()
	}
	if _, ok := s.awaitAgent(ctx, inv); !ok {
		return
	}
	if !sleep(ctx, s.lat.Sample(latency.SSMCompletion)) {
		return
	}
	s.mu.Lock()
	for _, r := range inv.plugins {
		r.reported = true
	}
	status, details := aggregate(inv.plugins)
	s.mu.Unlock()
	s.finish(inv, status, details)
}

// snapshotPlugins copies the invocation's step results so far.
func (s *Server) snapshotPlugins(inv *invocation) []*pluginResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(inv.plugins)
}

// runStep runs step i on the host: its script, with the parameters as the
// node's agent hands them over and the variables the agent sets for every
// script (AWS_SSM_INSTANCE_ID, AWS_SSM_REGION_NAME, AWS_SSM_PLATFORM_NAME,
// AWS_SSM_PLATFORM_VERSION: amazon-ssm-agent executers.go
// prepareEnvironment), within the step's execution timeout. Only
// worldapi.ErrHostDown is returned as an error; every other outcome is the
// step's result.
func (s *Server) runStep(ctx context.Context, inv *invocation, i int, host worldapi.Host, platform Platform, mode interpolation) (*pluginResult, error) {
	c := inv.cmd
	st := c.doc.steps[i]
	r := &pluginResult{name: st.name, started: time.Now()}
	defer func() { r.ended = time.Now() }()
	if st.action == actionPowerShell {
		// The world's hosts are Linux machines without PowerShell (as the
		// ECS-optimized AMIs are): a PowerShell step that runs fails.
		r.code, r.stderr = 1, "ssmsim: this world's hosts cannot run aws:runPowerShellScript (no PowerShell)"
		applyExitRules(st, r)
		return r, nil
	}
	runner, ok := host.(worldapi.ScriptEnvRunner)
	if host == nil || !ok {
		return nil, worldapi.ErrHostDown
	}
	script, env := c.doc.stepScript(st, c.params, mode)
	env["AWS_SSM_INSTANCE_ID"], env["AWS_SSM_REGION_NAME"] = inv.instanceID, s.cfg.Region
	env["AWS_SSM_PLATFORM_NAME"], env["AWS_SSM_PLATFORM_VERSION"] = platform.Name, platform.Version
	r.script, r.env, r.ran = script, env, true
	timeout := time.Duration(c.stepTimeouts[i]) * time.Second
	runCtx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	res, err := runner.RunShellScriptEnv(runCtx, script, env, timeout)
	cancel()
	if errors.Is(err, worldapi.ErrHostDown) {
		return nil, err
	}
	r.stdout, r.stderr, r.code = res.Stdout, res.Stderr, res.ExitCode
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		// The agent kills the script at the step's timeout: exit 137,
		// TimedOut (executers.go, pluginutil.GetStatus).
		r.code = exitStoppedByAgent
	default:
		r.code, r.stderr = 1, r.stderr+err.Error()
	}
	applyExitRules(st, r)
	return r, nil
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
			s.finish(inv, "TimedOut", detailDeliveryTimedOut)
			return nil, false
		}
	}
}

func (s *Server) finish(inv *invocation, status, details string) {
	s.mu.Lock()
	inv.status, inv.details = status, details
	inv.ended = time.Now()
	s.invocationEventLocked(inv)
	var codes []string
	for _, r := range inv.plugins {
		if r != nil {
			codes = append(codes, fmt.Sprintf("%s=%d", r.name, r.code))
		}
	}
	s.mu.Unlock()
	s.log.Info("command finished", "command", inv.cmd.id, "instance", inv.instanceID, "status", status,
		"details", details, "steps", codes)
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
	steps := inv.cmd.doc.steps
	if len(steps) == 1 {
		if req.PluginName != "" && req.PluginName != steps[0].name {
			return nil, awsproto.BadRequest("InvalidPluginName", "")
		}
		return inv.wireOne(), nil
	}
	// "If the document contains more than one step, you must specify the
	// name of the step" (GetCommandInvocation, PluginName); without it SSM
	// answers InvalidPluginName, with no message ("An error occurred
	// (InvalidPluginName) when calling the GetCommandInvocation operation:"
	// for a document of Windows and Linux steps, awslabs/amazon-eks-ami#541;
	// boto/boto3#1811). A step SSM has no result for yet is unknown too
	// (pluginResult.reported).
	i := slices.IndexFunc(steps, func(st docStep) bool { return st.name == req.PluginName })
	if req.PluginName == "" || i < 0 || inv.plugins[i] == nil || !inv.plugins[i].reported {
		return nil, awsproto.BadRequest("InvalidPluginName", "")
	}
	return inv.wirePlugin(inv.plugins[i]), nil
}

// wireOne is GetCommandInvocation's answer for a document of one step:
// the invocation's status with its step's code and output.
// StandardOutputContent and StandardErrorContent stay empty until the
// command has finished ("If the command hasn't finished running, then this
// string is empty"), then hold the first 24,000 and 8,000 characters
// (GetCommandInvocation).
func (inv *invocation) wireOne() *wireGetInvocation {
	out := inv.wireBase(inv.cmd.doc.steps[0].name)
	out.ResponseCode, out.Status, out.StatusDetails = -1, inv.status, inv.details
	out.ExecutionStartDateTime, out.ExecutionEndDateTime = isoOf(inv.started), isoOf(inv.ended)
	if r := inv.plugins[0]; r != nil && inv.done() {
		out.ResponseCode = r.code
		out.StandardOutputContent, out.StandardErrorContent = truncate(r.stdout, maxStdout), truncate(r.stderr, maxStderr)
	}
	return out.withElapsed(inv.started, inv.ended)
}

// wirePlugin is GetCommandInvocation's answer for one step: "The status of
// this invocation plugin", its code and output (GetCommandInvocation).
func (inv *invocation) wirePlugin(r *pluginResult) *wireGetInvocation {
	out := inv.wireBase(r.name)
	out.ResponseCode, out.Status, out.StatusDetails = r.code, r.status, r.details
	out.ExecutionStartDateTime, out.ExecutionEndDateTime = isoOf(r.started), isoOf(r.ended)
	out.StandardOutputContent, out.StandardErrorContent = truncate(r.stdout, maxStdout), truncate(r.stderr, maxStderr)
	return out.withElapsed(r.started, r.ended)
}

func (inv *invocation) wireBase(plugin string) *wireGetInvocation {
	c := inv.cmd
	return &wireGetInvocation{CommandId: c.id, InstanceId: inv.instanceID, Comment: c.comment,
		DocumentName: c.document, DocumentVersion: c.docVersion, PluginName: plugin}
}

func (w *wireGetInvocation) withElapsed(started, ended time.Time) *wireGetInvocation {
	if !started.IsZero() && !ended.IsZero() {
		w.ExecutionElapsedTime = fmt.Sprintf("PT%.3fS", ended.Sub(started).Seconds())
	}
	return w
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
				w.CommandPlugins = inv.wirePlugins()
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

// wirePlugins is ListCommandInvocations' CommandPlugins with Details: a
// document's one plugin from the start, with the invocation's status; the
// plugins of a document of several as SSM hears of them, each when its
// step ended (pluginResult.reported), in the document's order. "The
// PluginName is the Name attribute of the CommandPlugin object in the
// CommandPlugins list" (GetCommandInvocation).
func (inv *invocation) wirePlugins() []wirePlugin {
	out := []wirePlugin{}
	if len(inv.plugins) == 1 {
		p := wirePlugin{Name: inv.cmd.doc.steps[0].name, Status: pluginStatus(inv.status), StatusDetails: inv.details, ResponseCode: -1,
			ResponseStartDateTime: epochOf(inv.started), ResponseFinishDateTime: epochOf(inv.ended)}
		if r := inv.plugins[0]; r != nil && inv.done() {
			p.ResponseCode, p.Output = r.code, r.output
		}
		return append(out, p)
	}
	for _, r := range inv.plugins {
		if r != nil && r.reported {
			out = append(out, wirePlugin{Name: r.name, Status: r.status, StatusDetails: r.details, ResponseCode: r.code,
				ResponseStartDateTime: epochOf(r.started), ResponseFinishDateTime: epochOf(r.ended), Output: r.output})
		}
	}
	return out
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
	Parameters                      map[string][]string
	// Steps are the results of the document's steps that have ended, in
	// order (skipped ones included).
	Steps []Step
	// AwaitingAgent: held because the node's agent is stopped, either
	// before delivery or with a result the agent has yet to report.
	AwaitingAgent bool
}

// Step is a test's view of one step's result on one instance.
type Step struct {
	Name, Status, StatusDetails string
	ExitCode                    int
	Stdout, Stderr              string
	Output                      string // CommandPlugin.Output: the skip reason of a skipped step
	// Ran: the host ran Script with Env (the parameters' SSM_<Name>
	// variables and the agent's AWS_SSM_* ones); false for a skipped step.
	Ran      bool
	Script   string
	Env      map[string]string
	Reported bool // SSM has the result (GetCommandInvocation knows the step)
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
			v := Invocation{CommandID: c.id, InstanceID: inv.instanceID, Document: c.document, Status: inv.status,
				StatusDetails: inv.details, Parameters: c.params, AwaitingAgent: inv.awaitingAgent}
			for _, r := range inv.plugins {
				if r != nil {
					v.Steps = append(v.Steps, Step{Name: r.name, Status: r.status, StatusDetails: r.details, ExitCode: r.code,
						Stdout: r.stdout, Stderr: r.stderr, Output: r.output, Ran: r.ran, Script: r.script, Env: maps.Clone(r.env),
						Reported: r.reported})
				}
			}
			out = append(out, v)
		}
	}
	return out
}
