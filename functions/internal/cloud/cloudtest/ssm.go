package cloudtest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/internal/agentproto"
)

// SSM is the fake SSM client. Documents are told apart by name: the world
// runs "mount" for MountDocument and "unmount" for UnmountDocument.
type SSM struct {
	w                    *World
	mountDoc, unmountDoc string
}

// SSM returns the world's SSM client with the two document names.
func (w *World) SSM(mountDoc, unmountDoc string) *SSM {
	return &SSM{w: w, mountDoc: mountDoc, unmountDoc: unmountDoc}
}

// SendCommand implements cloud.SSMAPI (one instance), checking what SSM
// checks: the model's limits first, then the document, the instance, and
// the parameters against the document's declarations.
func (c *SSM) SendCommand(_ context.Context, in *ssm.SendCommandInput, _ ...func(*ssm.Options)) (*ssm.SendCommandOutput, error) {
	w := c.w
	w.wait("SSM:SendCommand", aws.ToString(in.DocumentName))
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("SSM:SendCommand"); err != nil {
		return nil, err
	}
	// botocore's ssm model: Comment max 100; TimeoutSeconds 30 to 2592000.
	if n := len(aws.ToString(in.Comment)); n > 100 {
		return nil, apiErr("ValidationException", "1 validation error detected: Value at 'comment' failed to satisfy constraint: Member must have length less than or equal to 100 (got %d)", n)
	}
	if t := in.TimeoutSeconds; t != nil && (*t < 30 || *t > 2592000) {
		return nil, apiErr("ValidationException", "1 validation error detected: Value '%d' at 'timeoutSeconds' failed to satisfy constraint: Member must have value between 30 and 2592000", *t)
	}
	if len(in.InstanceIds) != 1 {
		return nil, apiErr("InvalidParameters", "this fake runs commands on one instance")
	}
	doc := aws.ToString(in.DocumentName)
	if doc != c.mountDoc && doc != c.unmountDoc {
		return nil, apiErr("InvalidDocument", "Document with name %s does not exist.", doc)
	}
	// SSM API reference, SendCommand InvalidInstanceId: the agent is not
	// running or not registered, or the instance is shutting down or terminated.
	inst, ok := w.instances[in.InstanceIds[0]]
	if !ok || inst.SSMDown || inst.State == "shutting-down" || inst.State == "terminated" {
		return nil, apiErr("InvalidInstanceId", "Instances [[%s]] not in a valid state for account 111122223333", in.InstanceIds[0])
	}
	params, err := documentParams[doc == c.unmountDoc].check(doc, in.Parameters)
	if err != nil {
		return nil, err
	}
	cmd := &Command{ID: w.commandID(), Document: doc, Instance: inst.ID, Params: params, Requested: w.now, Status: "Pending", Exit: -1,
		Unmount: doc == c.unmountDoc, Comment: aws.ToString(in.Comment)}
	w.commands[cmd.ID] = cmd
	return &ssm.SendCommandOutput{Command: &ssmtypes.Command{CommandId: aws.String(cmd.ID)}}, nil
}

// docParam is one parameter a document declares: its allowedPattern, and
// whether it has a default (one without is required).
type docParam struct {
	pattern  *regexp.Regexp
	optional bool
}

type docParams map[string]docParam

// documentParams are the parameters template.yaml's documents declare
// (agentproto's names, the template's allowedPatterns and defaults), by
// "is the unmount document". TestDocumentParamsAreTheTemplates holds them
// to template.yaml.
var documentParams = map[bool]docParams{
	false: {
		agentproto.ParamVolumeID:      {pattern: regexp.MustCompile(`^vol-[0-9a-f]{8,17}$`)},
		agentproto.ParamVolumeName:    {pattern: regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_-]|\.[A-Za-z0-9_-]){0,199}\.?$`)},
		agentproto.ParamFSType:        {pattern: regexp.MustCompile(`^(ext4|xfs)$`), optional: true},
		agentproto.ParamDevice:        {pattern: regexp.MustCompile(`^(/dev/(sd[b-z]|xvd[b-z]|xvd[a-c][a-z]|xvdd[a-x]))?$`), optional: true},
		agentproto.ParamFormatIfBlank: {pattern: regexp.MustCompile(`^(true|false)$`), optional: true},
		agentproto.ParamSizeGiB: {pattern: regexp.MustCompile(`^(0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-6])$`),
			optional: true},
		agentproto.ParamAttachment: {pattern: regexp.MustCompile(`^([A-Za-z0-9._:-]{1,64})?$`), optional: true},
		agentproto.ParamDevSuid:    {pattern: regexp.MustCompile(`^(true|false)$`), optional: true},
		agentproto.ParamFormatOwner: {pattern: regexp.MustCompile(`^((0|[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-6])(:(0|[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-6]))?)?$`),
			optional: true},
	},
	true: {
		agentproto.ParamVolumeID:    {pattern: regexp.MustCompile(`^vol-[0-9a-f]{8,17}(,vol-[0-9a-f]{8,17}){0,23}$`)},
		agentproto.ParamVolumeName:  {pattern: regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_-]|\.[A-Za-z0-9_-])*\.?(,[A-Za-z0-9]([A-Za-z0-9_-]|\.[A-Za-z0-9_-])*\.?){0,23}$`)},
		agentproto.ParamForce:       {pattern: regexp.MustCompile(`^(true|false)$`), optional: true},
		agentproto.ParamAttachment:  {pattern: regexp.MustCompile(`^[A-Za-z0-9._:-]*(,[A-Za-z0-9._:-]*){0,23}$`), optional: true},
		agentproto.ParamReleasedFor: {pattern: regexp.MustCompile(`^[0-9a-f-]*(,[0-9a-f-]*){0,23}$`), optional: true},
	},
}

// check refuses parameters the document does not declare, values outside
// their allowedPattern and missing required ones, as SSM does
// (InvalidParameters, SendCommand in the SSM API reference).
func (d docParams) check(doc string, given map[string][]string) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range given {
		p, ok := d[k]
		if !ok {
			return nil, apiErr("InvalidParameters", "document %s does not take parameter %s", doc, k)
		}
		if len(v) != 1 {
			return nil, apiErr("InvalidParameters", "parameter %s takes one value", k)
		}
		if !p.pattern.MatchString(v[0]) {
			return nil, apiErr("InvalidParameters", "Parameter %q value %q does not match the allowed pattern %s", k, v[0], p.pattern)
		}
		out[k] = v[0]
	}
	for k, p := range d {
		if _, ok := given[k]; !ok && !p.optional {
			return nil, apiErr("InvalidParameters", "document %s requires parameter %s", doc, k)
		}
	}
	return out, nil
}

// commandIDPattern is the model's CommandId (36 characters) as SSM makes
// them: a UUID.
var commandIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Steps of template.yaml's documents: two that refuse non-Linux nodes
// (skipped on Linux: Success, exit 0, no output), then the one that runs
// tether-agent.
var refuseSteps = []string{"refuseWindows", "refuseMacOS"}

// agentStep names the step of a command's document that runs the agent.
func agentStep(cmd *Command) string {
	if cmd.Unmount {
		return agentproto.StepUnmount
	}
	return agentproto.StepMount
}

// invocation finds a command's invocation on an instance as SSM shows it:
// InvocationDoesNotExist right after SendCommand ("The Run Command API
// follows an eventual consistency model", GetCommandInvocation, SSM API
// reference; aws/aws-sdk#86): here it appears once the world's clock has
// moved on or the agent has run it. The caller holds w.mu.
func (w *World) invocation(commandID, instanceID string) (*Command, error) {
	if !commandIDPattern.MatchString(commandID) {
		return nil, apiErr("InvalidCommandId", "Command id %q is not valid", commandID)
	}
	cmd, ok := w.commands[commandID]
	if !ok || cmd.Instance != instanceID || (cmd.Status == "Pending" && !w.now.After(cmd.Requested)) {
		return nil, apiErr("InvocationDoesNotExist", "")
	}
	return cmd, nil
}

// stepReported: SSM has the agent step's result once the command ended
// on the node (never for one that was not delivered).
func stepReported(cmd *Command) bool {
	return cmd.Status != "Pending" && !cmd.Started.IsZero()
}

func (w *World) isoTime(instance string, t time.Time) *string {
	// ISO 8601 with milliseconds, as SSM writes them, by the instance's clock.
	return aws.String(t.Add(w.instances[instance].ClockSkew).UTC().Format("2006-01-02T15:04:05.000Z"))
}

// GetCommandInvocation implements cloud.SSMAPI. tether's documents have
// several steps, so a PluginName is required, and a step's result is there
// only once it ended: InvalidPluginName otherwise (SSM API reference:
// "PluginName ... Required for commands that run multiple plugins";
// amazon-eks-ami#541, grapl#902 for the answers).
func (c *SSM) GetCommandInvocation(_ context.Context, in *ssm.GetCommandInvocationInput, _ ...func(*ssm.Options)) (*ssm.GetCommandInvocationOutput, error) {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("SSM:GetCommandInvocation"); err != nil {
		return nil, err
	}
	cmd, err := w.invocation(aws.ToString(in.CommandId), aws.ToString(in.InstanceId))
	if err != nil {
		return nil, err
	}
	plugin := aws.ToString(in.PluginName)
	known := plugin == agentStep(cmd) || slices.Contains(refuseSteps, plugin)
	if !known || !stepReported(cmd) {
		return nil, apiErr("InvalidPluginName", "")
	}
	out := &ssm.GetCommandInvocationOutput{
		CommandId: aws.String(cmd.ID), InstanceId: aws.String(cmd.Instance), DocumentName: aws.String(cmd.Document),
		Comment: aws.String(cmd.Comment), PluginName: aws.String(plugin),
		Status: ssmtypes.CommandInvocationStatusSuccess, StatusDetails: aws.String("Success"),
		StandardOutputContent: aws.String(""),
	}
	if plugin == agentStep(cmd) {
		out.Status, out.StatusDetails = ssmtypes.CommandInvocationStatus(cmd.Status), aws.String(cmd.Status)
		out.ResponseCode, out.StandardOutputContent = cmd.Exit, aws.String(cmd.Output)
		out.ExecutionStartDateTime, out.ExecutionEndDateTime = w.isoTime(cmd.Instance, cmd.Started), w.isoTime(cmd.Instance, cmd.Ended)
	}
	return out, nil
}

// ListCommandInvocations implements cloud.SSMAPI for one command on one
// instance: the invocation's status, and with Details its steps as SSM has
// heard of them (none before the agent step ended; the two refuse steps,
// skipped on Linux, and the agent step after).
func (c *SSM) ListCommandInvocations(_ context.Context, in *ssm.ListCommandInvocationsInput, _ ...func(*ssm.Options)) (*ssm.ListCommandInvocationsOutput, error) {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("SSM:ListCommandInvocations"); err != nil {
		return nil, err
	}
	if in.CommandId == nil || in.InstanceId == nil {
		return nil, apiErr("ValidationException", "this fake lists the invocation of one command on one instance")
	}
	cmd, err := w.invocation(aws.ToString(in.CommandId), aws.ToString(in.InstanceId))
	var apiError smithy.APIError
	if errors.As(err, &apiError) && apiError.ErrorCode() == "InvocationDoesNotExist" {
		return &ssm.ListCommandInvocationsOutput{}, nil // not listed yet
	}
	if err != nil {
		return nil, err
	}
	details := cmd.Details
	if details == "" {
		details = cmd.Status
	}
	inv := ssmtypes.CommandInvocation{
		CommandId: aws.String(cmd.ID), InstanceId: aws.String(cmd.Instance), DocumentName: aws.String(cmd.Document),
		Comment: aws.String(cmd.Comment), Status: ssmtypes.CommandInvocationStatus(cmd.Status), StatusDetails: aws.String(details),
		RequestedDateTime: aws.Time(cmd.Requested),
	}
	if in.Details && stepReported(cmd) {
		for _, name := range refuseSteps {
			inv.CommandPlugins = append(inv.CommandPlugins, ssmtypes.CommandPlugin{
				Name: aws.String(name), Status: ssmtypes.CommandPluginStatusSuccess, StatusDetails: aws.String("Success"),
				Output: aws.String("Step execution skipped due to unsatisfied preconditions. Step name: " + name),
			})
		}
		output := cmd.Output
		if len(output) > 2500 { // CommandPlugin.Output: the first 2,500 characters
			output = output[:2500]
		}
		inv.CommandPlugins = append(inv.CommandPlugins, ssmtypes.CommandPlugin{
			Name: aws.String(agentStep(cmd)), Status: ssmtypes.CommandPluginStatus(cmd.Status), StatusDetails: aws.String(details),
			ResponseCode: cmd.Exit, Output: aws.String(output),
			ResponseStartDateTime:  aws.Time(cmd.Started.Add(w.instances[cmd.Instance].ClockSkew)),
			ResponseFinishDateTime: aws.Time(cmd.Ended.Add(w.instances[cmd.Instance].ClockSkew)),
		})
	}
	return &ssm.ListCommandInvocationsOutput{CommandInvocations: []ssmtypes.CommandInvocation{inv}}, nil
}

// ListCommands implements cloud.SSMAPI: InstanceId, CommandId (an
// unknown one is InvalidCommandId), the filters of the model's
// CommandFilterKey enum (InvokedAfter, InvokedBefore, DocumentName,
// Status, ExecutionStage), MaxResults 1 to 50 (default 50) and NextToken.
func (c *SSM) ListCommands(_ context.Context, in *ssm.ListCommandsInput, _ ...func(*ssm.Options)) (*ssm.ListCommandsOutput, error) {
	w := c.w
	doc := ""
	for _, f := range in.Filters {
		if f.Key == ssmtypes.CommandFilterKeyDocumentName {
			doc = aws.ToString(f.Value)
		}
	}
	w.wait("SSM:ListCommands", doc)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("SSM:ListCommands"); err != nil {
		return nil, err
	}
	// botocore's ssm model: MaxResults 1 to 50, CommandFilterKey's enum.
	if n := in.MaxResults; n != nil && (*n < 1 || *n > 50) {
		return nil, apiErr("ValidationException", "1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 50", *n)
	}
	match := []func(*Command) bool{}
	for _, f := range in.Filters {
		val := aws.ToString(f.Value)
		switch f.Key {
		case ssmtypes.CommandFilterKeyInvokedAfter, ssmtypes.CommandFilterKeyInvokedBefore:
			t, err := time.Parse(time.RFC3339, val)
			if err != nil {
				return nil, apiErr("ValidationException", "filter %s: %q is not a timestamp like 2024-07-07T00:00:00Z", f.Key, val)
			}
			after := f.Key == ssmtypes.CommandFilterKeyInvokedAfter
			match = append(match, func(c *Command) bool { return c.Requested.Before(t) != after })
		case ssmtypes.CommandFilterKeyDocumentName:
			match = append(match, func(c *Command) bool { return c.Document == val })
		case ssmtypes.CommandFilterKeyStatus:
			match = append(match, func(c *Command) bool { return c.Status == val })
		case ssmtypes.CommandFilterKeyExecutionStage:
			match = append(match, func(c *Command) bool { return (c.Status == "Pending") == (val == "Executing") })
		default:
			return nil, apiErr("ValidationException", "1 validation error detected: Value '%s' at 'filters.1.member.key' failed to satisfy constraint: Member must satisfy enum value set: [DocumentName, ExecutionStage, InvokedAfter, InvokedBefore, Status]", f.Key)
		}
	}
	if id := aws.ToString(in.CommandId); in.CommandId != nil && (!commandIDPattern.MatchString(id) || w.commands[id] == nil) {
		return nil, apiErr("InvalidCommandId", "Command %s does not exist", id)
	}
	var found []ssmtypes.Command
	ids := make([]string, 0, len(w.commands))
	for id := range w.commands {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		cmd := w.commands[id]
		if (in.InstanceId != nil && cmd.Instance != aws.ToString(in.InstanceId)) || (in.CommandId != nil && cmd.ID != aws.ToString(in.CommandId)) {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && m(cmd)
		}
		if !ok {
			continue
		}
		p := map[string][]string{}
		for k, v := range cmd.Params {
			p[k] = []string{v}
		}
		found = append(found, ssmtypes.Command{
			CommandId: aws.String(cmd.ID), DocumentName: aws.String(cmd.Document), InstanceIds: []string{cmd.Instance},
			Parameters: p, RequestedDateTime: aws.Time(cmd.Requested), Status: ssmtypes.CommandStatus(cmd.Status),
			Comment: aws.String(cmd.Comment),
		})
	}
	limit := 50
	if in.MaxResults != nil {
		limit = int(*in.MaxResults)
	}
	from := 0
	if in.NextToken != nil {
		if _, err := fmt.Sscanf(aws.ToString(in.NextToken), "page-%d", &from); err != nil || from < 0 || from > len(found) {
			return nil, apiErr("InvalidNextToken", "The specified token isn't valid.")
		}
	}
	to := min(len(found), from+limit)
	out := &ssm.ListCommandsOutput{Commands: found[from:to]}
	if to < len(found) {
		out.NextToken = aws.String(fmt.Sprintf("page-%d", to))
	}
	return out, nil
}
