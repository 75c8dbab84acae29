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

	"github.com/tether-ecs/tether/functions/internal/batch"
	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/internal/volspec"
)

// SSM StatusDetails values that mean the command never reached the agent.
const (
	detailUndeliverable    = "Undeliverable"
	detailDeliveryTimedOut = "Delivery Timed Out"
)

// SendCommand implements Cloud: one document on one instance. A delivery
// timeout keeps "the agent does not answer" short and visible.
func (a *AWS) SendCommand(ctx context.Context, document, instanceID string, params map[string]string, next string) (string, error) {
	return a.sendCommand(ctx, document, instanceID, params, commentOf(params, next))
}

func (a *AWS) sendCommand(ctx context.Context, document, instanceID string, params map[string]string, comment string) (string, error) {
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
		Comment:        aws.String(comment),
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

// SendUnmount implements Cloud: concurrent unmounts of one instance's
// volumes become one command. SSM's SendCommand bucket is the one a mass
// handoff meets first (one unmount and one mount per volume), and a drained
// host's volumes are released together.
func (a *AWS) SendUnmount(ctx context.Context, document, instanceID string, u Unmount) (string, error) {
	k := document + "/" + instanceID
	a.unmountsMu.Lock()
	b, ok := a.unmounts.Get(k)
	if !ok {
		window := max(a.opts.BatchWindow, 0)
		b = batch.New(window, agentproto.MaxBatch, func(ctx context.Context, us []Unmount) (map[Unmount]string, error) {
			return a.sendUnmounts(ctx, document, instanceID, us, false)
		})
		if a.unmountWait != nil {
			b.Wait = a.unmountWait
		}
		a.unmounts.Add(k, b)
	}
	a.unmountsMu.Unlock()
	id, ok, err := b.Get(ctx, u)
	if err == nil && !ok {
		err = fmt.Errorf("ssm SendCommand %q to %q: no command for %s", document, instanceID, u.VolumeID)
	}
	return id, err
}

// SendUnmounts implements Cloud: a drain's release, its comment
// ReleaseComment however many volumes it carries.
func (a *AWS) SendUnmounts(ctx context.Context, document, instanceID string, us []Unmount) (string, error) {
	if len(us) == 0 || len(us) > agentproto.MaxBatch {
		return "", fmt.Errorf("ssm SendCommand %q to %q: %d volumes in one unmount, want 1 to %d", document, instanceID, len(us), agentproto.MaxBatch)
	}
	ids, err := a.sendUnmounts(ctx, document, instanceID, us, true)
	if err != nil {
		return "", err
	}
	return ids[us[0]], nil
}

// sendUnmounts sends one unmount command for us, all on one instance. One
// volume is sent as ever (its comment names it and the task it serves);
// several are lists (agentproto.ListSep), with BatchComment and the tasks
// they serve in ReleasedFor.
func (a *AWS) sendUnmounts(ctx context.Context, document, instanceID string, us []Unmount, release bool) (map[Unmount]string, error) {
	params := map[string]string{agentproto.ParamForce: "false"}
	next := ""
	if len(us) == 1 && !release {
		u := us[0]
		params[agentproto.ParamVolumeID], params[agentproto.ParamVolumeName], next = u.VolumeID, u.Name, u.Next
		if u.Attachment != "" {
			params[agentproto.ParamAttachment] = u.Attachment
		}
	} else {
		var ids, names, atts, nexts []string
		for _, u := range us {
			ids, names, atts, nexts = append(ids, u.VolumeID), append(names, u.Name), append(atts, u.Attachment), append(nexts, volspec.TaskID(u.Next))
		}
		params[agentproto.ParamVolumeID], params[agentproto.ParamVolumeName] = agentproto.JoinList(ids), agentproto.JoinList(names)
		params[agentproto.ParamAttachment], params[agentproto.ParamReleasedFor] = agentproto.JoinList(atts), agentproto.JoinList(nexts)
	}
	comment := commentOf(params, next)
	if release {
		comment = ReleaseComment(len(us))
	}
	id, err := a.sendCommand(ctx, document, instanceID, params, comment)
	if err != nil {
		return nil, err
	}
	out := make(map[Unmount]string, len(us))
	for _, u := range us {
		out[u] = id
	}
	return out, nil
}

// BatchComment is the Comment of an unmount of several volumes: too many
// to name in SSM's 100 characters, so its parameters name them
// (CommandByID), and ReleasedFor the tasks they are released for.
func BatchComment(n int) string { return fmt.Sprintf("tether batch of %d volumes", n) }

// ReleaseComment is the Comment of a drain's release (SendUnmounts): an
// unmount of an instance's volumes sent once no task was meant to run
// there any more.
func ReleaseComment(n int) string { return fmt.Sprintf("tether drain release of %d volumes", n) }

// IsBatchComment reports whether comment is a BatchComment or a
// ReleaseComment: its parameters name its volumes, and its agent printed a
// line for each.
func IsBatchComment(comment string) bool {
	var n int
	if _, err := fmt.Sscanf(comment, "tether batch of %d volumes", &n); err == nil && n > 1 && comment == BatchComment(n) {
		return true
	}
	return IsReleaseComment(comment)
}

// IsReleaseComment reports whether comment is a ReleaseComment.
func IsReleaseComment(comment string) bool {
	var n int
	_, err := fmt.Sscanf(comment, "tether drain release of %d volumes", &n)
	return err == nil && n > 0 && comment == ReleaseComment(n)
}

// commentOf is a command's Comment: CommandComment, or BatchComment for a
// list of volumes.
func commentOf(params map[string]string, next string) string {
	if ids := agentproto.SplitList(params[agentproto.ParamVolumeID]); len(ids) > 1 {
		return BatchComment(len(ids))
	}
	return CommandComment(params[agentproto.ParamVolumeID], params[agentproto.ParamVolumeName], next)
}

// MaxComment is the longest Comment SSM's SendCommand accepts (its model:
// Comment, max 100).
const MaxComment = 100

// CommandComment is the Comment of tether's commands: "tether", the volume
// id, as much of the volume's name as fits in MaxComment (names may be 200
// characters), and, when the command's step serves a task next (an unmount
// that releases the volume for a task elsewhere), ">" and that task's id.
// SSM returns it with every invocation, so whichever process sees the
// command's end finds its key, and the task it serves, without reading
// ECS (ParseCommandComment). The task id is kept whole; the name is cut.
func CommandComment(volumeID, name, next string) string {
	tail := ""
	if next != "" {
		tail = " >" + next
	}
	c := "tether " + volumeID + " " + name
	if len(c)+len(tail) > MaxComment {
		c = c[:MaxComment-len(tail)-1] + "~"
	}
	return c + tail
}

// ParseCommandComment reads a CommandComment: the volume id, the name when
// it was not cut (complete false: only a prefix of it is there), and the
// task the command serves next ("" when none).
func ParseCommandComment(comment string) (volumeID, name string, complete bool, next string) {
	rest, ok := strings.CutPrefix(comment, "tether ")
	if !ok {
		return "", "", false, ""
	}
	fields := strings.Split(rest, " ")
	if len(fields) > 3 || len(fields) == 3 && !strings.HasPrefix(fields[2], ">") {
		return "", "", false, "" // names hold no spaces: not tether's
	}
	volumeID = fields[0]
	if len(fields) > 1 {
		name = fields[1]
	}
	if len(fields) == 3 {
		next = strings.TrimPrefix(fields[2], ">")
	}
	if strings.HasSuffix(name, "~") {
		return volumeID, strings.TrimSuffix(name, "~"), false, next
	}
	return volumeID, name, name != "", next
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

// agentSteps are the steps of tether's documents that run tether-agent;
// the documents' other steps only refuse non-Linux platforms.
var agentSteps = map[string]bool{agentproto.StepMount: true, agentproto.StepUnmount: true, agentproto.StepStatus: true}

// command reads one invocation of one of tether's documents, which have
// several steps (template.yaml): its status from ListCommandInvocations
// (GetCommandInvocation of a document of several plugins needs a
// PluginName and answers InvalidPluginName until that step has a result,
// forever when it never ran: SSM API reference, GetCommandInvocation), the
// agent step's exit code from its CommandPlugin (plugin, when given, names
// it; else the one of agentproto's step names), and, once it ended, the
// step's full standard output from GetCommandInvocation with its name (a
// CommandPlugin's Output is cut at 2,500 characters and mixes in stderr,
// where the agent logs).
func (a *AWS) command(ctx context.Context, commandID, instanceID, plugin string) (Command, error) {
	what := fmt.Sprintf("ssm ListCommandInvocations %q on %q", commandID, instanceID)
	out, err := a.ssm.ListCommandInvocations(ctx, &ssm.ListCommandInvocationsInput{
		CommandId: aws.String(commandID), InstanceId: aws.String(instanceID), Details: true,
	})
	if err != nil {
		return Command{}, classify(err, what)
	}
	if len(out.CommandInvocations) == 0 {
		return Command{}, fmt.Errorf("%w: %s: not listed yet", ErrNotFound, what)
	}
	inv := out.CommandInvocations[0]
	c := Command{
		ID: commandID, InstanceID: instanceID, Document: aws.ToString(inv.DocumentName),
		ExitCode: -1, Detail: aws.ToString(inv.StatusDetails), Comment: aws.ToString(inv.Comment),
	}
	var step, failed *ssmtypes.CommandPlugin
	for i, p := range inv.CommandPlugins {
		if name := aws.ToString(p.Name); name == plugin || plugin == "" && agentSteps[name] {
			step = &inv.CommandPlugins[i]
		} else if failed == nil && p.Status == ssmtypes.CommandPluginStatusFailed {
			failed = &inv.CommandPlugins[i]
		}
	}
	switch {
	case c.Detail == detailUndeliverable || c.Detail == detailDeliveryTimedOut:
		c.Status = CommandUnreachable
	case inv.Status == ssmtypes.CommandInvocationStatusSuccess:
		c.Status = CommandSucceeded
	case inv.Status == ssmtypes.CommandInvocationStatusFailed,
		inv.Status == ssmtypes.CommandInvocationStatusTimedOut,
		inv.Status == ssmtypes.CommandInvocationStatusCancelled:
		c.Status = CommandFailed
	default: // Pending, InProgress, Delayed, Cancelling
		c.Status = CommandPending
	}
	if c.Detail == "" {
		c.Detail = string(inv.Status)
	}
	if step != nil {
		c.Started, c.Ended = aws.ToTime(step.ResponseStartDateTime), aws.ToTime(step.ResponseFinishDateTime)
	}
	if !c.Finished() || c.Status == CommandUnreachable {
		return c, nil
	}
	switch {
	case step != nil:
		c.ExitCode = int(step.ResponseCode)
		g, err := a.ssm.GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{
			CommandId: aws.String(commandID), InstanceId: aws.String(instanceID), PluginName: step.Name,
		})
		switch {
		case err == nil:
			c.Output = aws.ToString(g.StandardOutputContent)
		case apiCode(err) != codeSSMInvalidPlugin:
			return Command{}, classify(err, fmt.Sprintf("ssm GetCommandInvocation %q on %q, step %s", commandID, instanceID, aws.ToString(step.Name)))
		}
	case failed != nil:
		// The platform check refused the node (not Linux): the agent never ran.
		c.ExitCode = int(failed.ResponseCode)
		c.Detail = fmt.Sprintf("step %s failed: %s", aws.ToString(failed.Name), strings.TrimSpace(aws.ToString(failed.Output)))
	}
	if c.Status == CommandSucceeded {
		// Success means the agent said so: SSM reports a document whose every
		// step was skipped (an unsupported platform) as Success too.
		if _, ok := agentproto.ParseOutput(c.Output); step == nil || !ok {
			c.Status, c.ExitCode = CommandFailed, agentproto.ExitFailed
			c.Detail = "SSM reports success, but tether-agent's step did not run or printed no result"
		} else {
			c.ExitCode = 0
		}
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

// DocumentCommands lists a document's commands on any instance requested
// after a time, newest first, at most max of them (for operators: which
// volume moved when). Each command names its one instance (tether's
// commands target one).
func (a *AWS) DocumentCommands(ctx context.Context, document string, after time.Time, max int) ([]Command, error) {
	in := &ssm.ListCommandsInput{
		Filters: []ssmtypes.CommandFilter{
			{Key: ssmtypes.CommandFilterKeyDocumentName, Value: aws.String(document)},
			{Key: ssmtypes.CommandFilterKeyInvokedAfter, Value: aws.String(after.UTC().Format(time.RFC3339))},
		},
		MaxResults: aws.Int32(50),
	}
	var out []Command
	for len(out) < max {
		page, err := a.ssm.ListCommands(ctx, in)
		if err != nil {
			return nil, classify(err, fmt.Sprintf("ssm ListCommands %q", document))
		}
		for _, c := range page.Commands {
			cmd := fromListed(c, "")
			if len(c.InstanceIds) == 1 {
				cmd.InstanceID = c.InstanceIds[0]
			}
			out = append(out, cmd)
		}
		if aws.ToString(page.NextToken) == "" {
			break
		}
		in.NextToken = page.NextToken
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Requested.After(out[j].Requested) })
	if len(out) > max {
		out = out[:max]
	}
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
			out = append(out, fromListed(c, instanceID))
		}
		if aws.ToString(page.NextToken) == "" {
			return out, nil
		}
		in.NextToken = page.NextToken
	}
}

// fromListed reads one command of a ListCommands answer; Status is the
// command's summary.
func fromListed(c ssmtypes.Command, instanceID string) Command {
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
	return cmd
}
