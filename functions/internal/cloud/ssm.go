package cloud

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/tether-ecs/tether/internal/agentproto"
)

// SSM StatusDetails values that mean the command never reached the agent.
const (
	detailUndeliverable    = "Undeliverable"
	detailDeliveryTimedOut = "Delivery Timed Out"
)

// SendCommand implements Cloud: one document on one instance. A delivery
// timeout keeps "the agent does not answer" short and visible.
func (a *AWS) SendCommand(ctx context.Context, document, instanceID string, params map[string]string) (string, error) {
	p := make(map[string][]string, len(params))
	for k, v := range params {
		p[k] = []string{v}
	}
	if err := a.pace.take(ctx, "SendCommand"); err != nil {
		return "", err
	}
	out, err := a.ssm.SendCommand(ctx, &ssm.SendCommandInput{
		DocumentName:   aws.String(document),
		InstanceIds:    []string{instanceID},
		Parameters:     p,
		TimeoutSeconds: aws.Int32(int32(a.opts.CommandDeliveryTimeout / time.Second)),
		Comment:        aws.String(CommandComment(params[agentproto.ParamVolumeID], params[agentproto.ParamVolumeName])),
	}, ssmRetryer(a.retry.sendCommand))
	a.paced("SendCommand", err)
	if err != nil {
		return "", classify(err, fmt.Sprintf("ssm SendCommand %q to %q", document, instanceID))
	}
	if out.Command == nil || aws.ToString(out.Command.CommandId) == "" {
		return "", fmt.Errorf("ssm SendCommand %q to %q: no command id in the answer", document, instanceID)
	}
	return aws.ToString(out.Command.CommandId), nil
}

// MaxComment is the longest Comment SSM's SendCommand accepts (its model:
// Comment, max 100).
const MaxComment = 100

// CommandComment is the Comment of tether's commands: "tether", the volume
// id and as much of the volume's name as fits in MaxComment (names may be
// 200 characters). SSM returns it with every invocation, so a command's
// key can be found from GetCommandInvocation alone (ParseCommandComment).
func CommandComment(volumeID, name string) string {
	c := "tether " + volumeID + " " + name
	if len(c) > MaxComment {
		c = c[:MaxComment-1] + "~"
	}
	return c
}

// ParseCommandComment reads a CommandComment: the volume id, and the name
// when it was not cut (complete false: only a prefix of it is there).
func ParseCommandComment(comment string) (volumeID, name string, complete bool) {
	rest, ok := strings.CutPrefix(comment, "tether ")
	if !ok {
		return "", "", false
	}
	volumeID, name, _ = strings.Cut(rest, " ")
	if len(comment) == MaxComment && strings.HasSuffix(name, "~") {
		return volumeID, strings.TrimSuffix(name, "~"), false
	}
	return volumeID, name, name != ""
}

// maxFinished bounds the process-lifetime cache of finished commands.
const maxFinished = 4096

// Command implements Cloud. ErrNotFound right after SendCommand is SSM's
// eventual consistency, and for a step of a document of several steps it
// lasts until that step's result reached SSM (InvalidPluginName: SSM does
// not know the step yet); the caller decides how long that may last. A
// finished invocation never changes, so its answer is kept for the process.
func (a *AWS) Command(ctx context.Context, commandID, instanceID, plugin string) (Command, error) {
	k := commandID + "/" + instanceID + "/" + plugin
	if c, ok := a.finished.Get(k); ok {
		return c, nil
	}
	c, err := a.command(ctx, commandID, instanceID, plugin)
	if err == nil && c.Finished() {
		a.finished.Add(k, c)
	}
	return c, err
}

func (a *AWS) command(ctx context.Context, commandID, instanceID, plugin string) (Command, error) {
	in := &ssm.GetCommandInvocationInput{CommandId: aws.String(commandID), InstanceId: aws.String(instanceID)}
	if plugin != "" {
		in.PluginName = aws.String(plugin)
	}
	out, err := a.ssm.GetCommandInvocation(ctx, in)
	if err != nil {
		return Command{}, classify(err, fmt.Sprintf("ssm GetCommandInvocation %q on %q", commandID, instanceID))
	}
	c := Command{
		ID: commandID, InstanceID: instanceID, Document: aws.ToString(out.DocumentName),
		ExitCode: int(out.ResponseCode), Detail: aws.ToString(out.StatusDetails),
		Started: isoTime(out.ExecutionStartDateTime), Ended: isoTime(out.ExecutionEndDateTime),
		Output: aws.ToString(out.StandardOutputContent), Comment: aws.ToString(out.Comment),
	}
	switch {
	case c.Detail == detailUndeliverable || c.Detail == detailDeliveryTimedOut:
		c.Status = CommandUnreachable
	case out.Status == ssmtypes.CommandInvocationStatusSuccess:
		c.Status, c.ExitCode = CommandSucceeded, 0
	case out.Status == ssmtypes.CommandInvocationStatusFailed:
		c.Status = CommandFailed
	case out.Status == ssmtypes.CommandInvocationStatusTimedOut,
		out.Status == ssmtypes.CommandInvocationStatusCancelled:
		c.Status, c.ExitCode = CommandFailed, -1
	default: // Pending, InProgress, Delayed, Cancelling
		c.Status = CommandPending
	}
	if c.Detail == "" {
		c.Detail = string(out.Status)
	}
	return c, nil
}

// isoTime reads SSM's ISO 8601 execution times ("2024-07-07T10:00:00.123Z");
// zero when absent or unreadable (callers treat zero as unknown).
func isoTime(s *string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, aws.ToString(s))
	if err != nil {
		return time.Time{}
	}
	return t
}

// Commands implements Cloud.
func (a *AWS) Commands(ctx context.Context, document, instanceID string, after time.Time) ([]Command, error) {
	in := &ssm.ListCommandsInput{
		InstanceId: aws.String(instanceID),
		Filters: []ssmtypes.CommandFilter{
			{Key: ssmtypes.CommandFilterKeyDocumentName, Value: aws.String(document)},
			{Key: ssmtypes.CommandFilterKeyInvokedAfter, Value: aws.String(after.UTC().Format(time.RFC3339))},
		},
		MaxResults: aws.Int32(50),
	}
	out, err := a.listCommands(ctx, in, instanceID)
	if err != nil {
		return nil, classify(err, fmt.Sprintf("ssm ListCommands %q on %q", document, instanceID))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Requested.After(out[j].Requested) })
	return out, nil
}

// CommandByID implements Cloud: one ListCommands by command id, for its
// document and parameters (GetCommandInvocation has neither).
func (a *AWS) CommandByID(ctx context.Context, commandID, instanceID string) (Command, error) {
	out, err := a.listCommands(ctx, &ssm.ListCommandsInput{CommandId: aws.String(commandID)}, instanceID)
	if err != nil {
		return Command{}, classify(err, fmt.Sprintf("ssm ListCommands %q", commandID))
	}
	if len(out) == 0 {
		return Command{}, fmt.Errorf("%w: ssm command %q", ErrNotFound, commandID)
	}
	return out[0], nil
}

// listCommands pages through ListCommands; Status is the command's summary.
func (a *AWS) listCommands(ctx context.Context, in *ssm.ListCommandsInput, instanceID string) ([]Command, error) {
	var out []Command
	for {
		page, err := a.ssm.ListCommands(ctx, in)
		if err != nil {
			return nil, err
		}
		for _, c := range page.Commands {
			cmd := Command{
				ID: aws.ToString(c.CommandId), Document: aws.ToString(c.DocumentName), InstanceID: instanceID,
				Requested: aws.ToTime(c.RequestedDateTime), ExitCode: -1, Detail: string(c.Status),
				Params: map[string]string{}, Comment: aws.ToString(c.Comment),
			}
			for k, v := range c.Parameters {
				if len(v) > 0 {
					cmd.Params[k] = v[0]
				}
			}
			switch c.Status {
			case ssmtypes.CommandStatusSuccess:
				cmd.Status, cmd.ExitCode = CommandSucceeded, 0
			case ssmtypes.CommandStatusFailed, ssmtypes.CommandStatusTimedOut, ssmtypes.CommandStatusCancelled:
				cmd.Status = CommandFailed // details (unreachable? exit code?) from Command
			default:
				cmd.Status = CommandPending
			}
			out = append(out, cmd)
		}
		if aws.ToString(page.NextToken) == "" {
			return out, nil
		}
		in.NextToken = page.NextToken
	}
}
