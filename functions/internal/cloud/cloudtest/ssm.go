package cloudtest

import (
	"context"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
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
	doc := aws.ToString(in.DocumentName)
	if doc != c.mountDoc && doc != c.unmountDoc {
		return nil, apiErr("InvalidDocument", "document %s does not exist", doc)
	}
	inst, ok := w.instances[in.InstanceIds[0]]
	if !ok {
		return nil, apiErr("InvalidInstanceId", "Instances [[%s]] not in a valid state for account", in.InstanceIds[0])
	}
	params := map[string]string{}
	for k, v := range in.Parameters {
		if len(v) > 0 {
			params[k] = v[0]
		}
	}
	cmd := &Command{ID: w.commandID(), Document: doc, Instance: inst.ID, Params: params, Requested: w.now, Status: "Pending", Exit: -1, Unmount: doc == c.unmountDoc}
	w.commands[cmd.ID] = cmd
	return &ssm.SendCommandOutput{Command: &ssmtypes.Command{CommandId: aws.String(cmd.ID)}}, nil
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
	}
	if !cmd.Started.IsZero() { // ISO 8601 with milliseconds, as SSM writes them
		out.ExecutionStartDateTime = aws.String(cmd.Started.UTC().Format("2006-01-02T15:04:05.000Z"))
		out.ExecutionEndDateTime = aws.String(cmd.Ended.UTC().Format("2006-01-02T15:04:05.000Z"))
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
		})
	}
	return out, nil
}
