package cloudtest

import (
	"context"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

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

// SendCommand implements cloud.SSMAPI (one instance).
func (c *SSM) SendCommand(_ context.Context, in *ssm.SendCommandInput, _ ...func(*ssm.Options)) (*ssm.SendCommandOutput, error) {
	w := c.w
	w.wait("SSM:SendCommand", aws.ToString(in.DocumentName))
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("SSM:SendCommand"); err != nil {
		return nil, err
	}
	if len(in.InstanceIds) != 1 {
		return nil, apiErr("InvalidParameters", "this fake runs commands on one instance")
	}
	// botocore's ssm model: Comment max 100; TimeoutSeconds 30 to 2592000.
	if n := len(aws.ToString(in.Comment)); n > 100 {
		return nil, apiErr("ValidationException", "1 validation error detected: Value at 'comment' failed to satisfy constraint: Member must have length less than or equal to 100 (got %d)", n)
	}
	if t := in.TimeoutSeconds; t != nil && (*t < 30 || *t > 2592000) {
		return nil, apiErr("ValidationException", "1 validation error detected: Value '%d' at 'timeoutSeconds' failed to satisfy constraint: Member must have value between 30 and 2592000", *t)
	}
	doc := aws.ToString(in.DocumentName)
	declared, ok := documentParams[doc == c.unmountDoc]
	if doc != c.mountDoc && doc != c.unmountDoc || !ok {
		return nil, apiErr("InvalidDocument", "Document with name %s does not exist.", doc)
	}
	// SSM API reference, SendCommand InvalidInstanceId: the agent is not
	// running or not registered, or the instance is shutting down or terminated.
	inst, ok := w.instances[in.InstanceIds[0]]
	if !ok || inst.SSMDown || inst.State == "shutting-down" || inst.State == "terminated" {
		return nil, apiErr("InvalidInstanceId", "Instances [[%s]] not in a valid state for account 111122223333", in.InstanceIds[0])
	}
	params := map[string]string{}
	for k, v := range in.Parameters {
		if !declared[k] {
			return nil, apiErr("InvalidParameters", "document %s does not take parameter %s", doc, k)
		}
		if len(v) != 1 {
			return nil, apiErr("InvalidParameters", "parameter %s takes one value", k)
		}
		params[k] = v[0]
	}
	cmd := &Command{ID: w.commandID(), Document: doc, Instance: inst.ID, Params: params, Requested: w.now, Status: "Pending", Exit: -1,
		Unmount: doc == c.unmountDoc, Comment: aws.ToString(in.Comment)}
	w.commands[cmd.ID] = cmd
	return &ssm.SendCommandOutput{Command: &ssmtypes.Command{CommandId: aws.String(cmd.ID)}}, nil
}

// documentParams are the parameters template.yaml's documents declare
// (agentproto's names), by "is the unmount document".
var documentParams = map[bool]map[string]bool{
	false: {agentproto.ParamVolumeID: true, agentproto.ParamVolumeName: true, agentproto.ParamFSType: true, agentproto.ParamDevice: true,
		agentproto.ParamFormatIfBlank: true, agentproto.ParamSizeGiB: true, agentproto.ParamAttachment: true},
	true: {agentproto.ParamVolumeID: true, agentproto.ParamVolumeName: true, agentproto.ParamForce: true, agentproto.ParamAttachment: true},
}

// GetCommandInvocation implements cloud.SSMAPI.
func (c *SSM) GetCommandInvocation(_ context.Context, in *ssm.GetCommandInvocationInput, _ ...func(*ssm.Options)) (*ssm.GetCommandInvocationOutput, error) {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("SSM:GetCommandInvocation"); err != nil {
		return nil, err
	}
	cmd, ok := w.commands[aws.ToString(in.CommandId)]
	if !ok || cmd.Instance != aws.ToString(in.InstanceId) {
		return nil, apiErr("InvocationDoesNotExist", "")
	}
	details := cmd.Details
	if details == "" {
		details = cmd.Status
	}
	out := &ssm.GetCommandInvocationOutput{
		CommandId: aws.String(cmd.ID), InstanceId: aws.String(cmd.Instance), DocumentName: aws.String(cmd.Document),
		Status: ssmtypes.CommandInvocationStatus(cmd.Status), StatusDetails: aws.String(details), ResponseCode: cmd.Exit,
		Comment: aws.String(cmd.Comment), StandardOutputContent: aws.String(cmd.Output),
	}
	if !cmd.Started.IsZero() { // ISO 8601 with milliseconds, as SSM writes them, by the instance's clock
		skew := w.instances[cmd.Instance].ClockSkew
		out.ExecutionStartDateTime = aws.String(cmd.Started.Add(skew).UTC().Format("2006-01-02T15:04:05.000Z"))
		out.ExecutionEndDateTime = aws.String(cmd.Ended.Add(skew).UTC().Format("2006-01-02T15:04:05.000Z"))
	}
	return out, nil
}

// ListCommands implements cloud.SSMAPI (InstanceId, CommandId; filters DocumentName, InvokedAfter).
func (c *SSM) ListCommands(_ context.Context, in *ssm.ListCommandsInput, _ ...func(*ssm.Options)) (*ssm.ListCommandsOutput, error) {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("SSM:ListCommands"); err != nil {
		return nil, err
	}
	var doc string
	var after time.Time
	for _, f := range in.Filters {
		switch f.Key {
		case ssmtypes.CommandFilterKeyDocumentName:
			doc = aws.ToString(f.Value)
		case ssmtypes.CommandFilterKeyInvokedAfter:
			t, err := time.Parse(time.RFC3339, aws.ToString(f.Value))
			if err != nil {
				return nil, apiErr("InvalidFilterValue", "%s", aws.ToString(f.Value))
			}
			after = t
		default:
			return nil, apiErr("InvalidFilterKey", "%s", f.Key)
		}
	}
	out := &ssm.ListCommandsOutput{}
	ids := make([]string, 0, len(w.commands))
	for id := range w.commands {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		cmd := w.commands[id]
		if (in.InstanceId != nil && cmd.Instance != aws.ToString(in.InstanceId)) || (in.CommandId != nil && cmd.ID != aws.ToString(in.CommandId)) ||
			(doc != "" && cmd.Document != doc) || cmd.Requested.Before(after) {
			continue
		}
		p := map[string][]string{}
		for k, v := range cmd.Params {
			p[k] = []string{v}
		}
		out.Commands = append(out.Commands, ssmtypes.Command{
			CommandId: aws.String(cmd.ID), DocumentName: aws.String(cmd.Document), InstanceIds: []string{cmd.Instance},
			Parameters: p, RequestedDateTime: aws.Time(cmd.Requested), Status: ssmtypes.CommandStatus(cmd.Status),
			Comment: aws.String(cmd.Comment),
		})
	}
	return out, nil
}
