package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// token names an attachment for the agent (agentproto.AttachmentToken): a
// command's result counts only for the attachment it was sent for.
func token(a cloud.Attachment) string {
	return agentproto.AttachmentToken(a.InstanceID, a.AttachTime.UnixMilli())
}

// pluginOf names the step of tether's document that runs tether-agent for
// a step of the reconciler (GetCommandInvocation's PluginName).
func pluginOf(step string) string {
	switch step {
	case stepMount:
		return agentproto.StepMount
	case stepUnmount:
		return agentproto.StepUnmount
	}
	return ""
}

// result is what the agent said on a finished command: its JSON line.
type result struct {
	out    agentproto.Output
	parsed bool
}

func parseResult(c cloud.Command) result {
	out, ok := agentproto.ParseOutput(c.Output)
	return result{out: out, parsed: ok}
}

// message is the agent's own words for a failure (or SSM's detail).
func (r result) message(c cloud.Command) string {
	if r.parsed && r.out.Error != nil && r.out.Error.Message != "" {
		return r.out.Error.Message
	}
	return fmt.Sprintf("exit %d, %s", c.ExitCode, c.Detail)
}

// lastCommand finds the newest command of doc for the volume on the
// attachment: the one the hint names, else the newest SSM lists for the
// attachment (only then is ListCommands called). Its invocation is read
// (GetCommandInvocation: status, exit code, the agent's output).
func (p *pass) lastCommand(ctx context.Context, doc, step, volumeID string, a cloud.Attachment) (cloud.Command, bool, error) {
	h := p.hint
	if h.Step == step && h.Volume == volumeID && h.Instance == a.InstanceID && h.Command != "" && !fromMS(h.At).Before(a.AttachTime.Truncate(time.Second)) {
		c, err := p.r.cloud.Command(ctx, h.Command, a.InstanceID, pluginOf(step))
		switch {
		case err == nil:
			c.Requested = fromMS(h.At)
			c, _ = c.ForVolume(volumeID)
			return c, true, nil
		case errors.Is(err, cloud.ErrNotFound) && p.now.Sub(fromMS(h.At)) < 30*time.Second:
			// SSM's answers lag its SendCommand by moments.
			return cloud.Command{ID: h.Command, Status: cloud.CommandPending, Requested: fromMS(h.At)}, true, nil
		case !errors.Is(err, cloud.ErrNotFound):
			return cloud.Command{}, false, err
		}
	}
	list, err := p.commandsFor(ctx, doc, volumeID, a)
	if err != nil || len(list) == 0 {
		return cloud.Command{}, false, err
	}
	c := list[0]
	d, err := p.r.cloud.Command(ctx, c.ID, a.InstanceID, pluginOf(step))
	if err != nil && !errors.Is(err, cloud.ErrNotFound) {
		return cloud.Command{}, false, err
	}
	if err == nil {
		d.Requested, d.Params = c.Requested, c.Params
		c, _ = d.ForVolume(volumeID)
	}
	return c, true, nil
}

// commandsFor lists doc's commands for the volume on the attachment's
// instance since it began (and sent for it, when they name one), newest first.
func (p *pass) commandsFor(ctx context.Context, doc, volumeID string, a cloud.Attachment) ([]cloud.Command, error) {
	all, err := p.r.cloud.Commands(ctx, doc, a.InstanceID, a.AttachTime.Add(-time.Second))
	if err != nil {
		return nil, err
	}
	tok := token(a)
	var out []cloud.Command
	for _, c := range all {
		c, ok := c.ForVolume(volumeID)
		if !ok {
			continue
		}
		if at := c.Params[agentproto.ParamAttachment]; at != "" && !a.AttachTime.IsZero() && at != tok {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// Stopping waiting tasks, with a reason, and the deadlines that lead there.

// Reason classes of the tasks tether stops (the TasksStopped metric's
// ReasonClass dimension).
const (
	reasonInvalidVolume = "invalid-volume"    // driverOpts or name refused
	reasonWrongAZ       = "wrong-az"          // volume and task in different AZs
	reasonAZMove        = "az-move"           // a move to the task's AZ failed (driverOpt azmove)
	reasonCreate        = "create-refused"    // EC2 refused or deleted the volume
	reasonMissing       = "missing-volume"    // autoprovision false and no volume
	reasonMultiAttach   = "multi-attach"      // an io2 Multi-Attach volume
	reasonHeld          = "held-elsewhere"    // a running task elsewhere holds it
	reasonDeploy        = "deployment-config" // the service keeps the old task during a deploy
	reasonLiveHost      = "live-host-waits"   // the host that holds it does not let go yet
	reasonSSM           = "ssm-unregistered"  // InvalidInstanceId, undeliverable commands
	reasonAttachLimit   = "attachment-limit"  // AttachmentLimitExceeded
	reasonUnsupported   = "unsupported"       // UnsupportedOperation
	reasonRefused       = "aws-refused"       // another refusal
	reasonMountTimeout  = "mount-timeout"     // a mount that did not finish
	reasonVolumeError   = "volume-error"      // EC2 says error
	reasonStuckAttach   = "stuck-attach"      // an attach that never ended
	reasonProtocol      = "agent-protocol"    // the instance's tether-agent speaks another protocol
	reasonAdopt         = "needs-adoption"    // a volume with the name exists that tether does not own
)

// agentReason is the class of a task stopped for what the agent answered.
func agentReason(code int) string { return "agent-" + string(agentproto.ClassOf(code)) }

// waitOrStop: the waiting tasks wait for what reason names; each one
// waiting longer than Timing.WaitDeadline (from its creation: a fact ECS
// keeps, whichever process looks) is stopped with the reason, before the
// plugin's own Mount wait gives up with a less precise one. The key comes
// back after retry while some still wait; the volume is never touched.
func (p *pass) waitOrStop(ctx context.Context, waiting []need, class, reason string, retry time.Duration, h hint) (Result, error) {
	if len(waiting) == 0 {
		// Nobody waits: the next task that needs the volume, the step's
		// own event, or the sweep names the key again.
		p.log.Info("nothing waits for the volume; leaving it until an event or the sweep", "why", reason)
		return done("nothing waits: " + reason), nil
	}
	var late []cloud.Task
	for _, n := range waiting {
		if p.now.Sub(n.task.CreatedAt) >= p.r.t.WaitDeadline {
			late = append(late, n.task)
		}
	}
	if len(late) > 0 {
		if err := p.failTasks(ctx, late, class, reason); err != nil {
			return Result{}, err
		}
		if len(late) == len(waiting) {
			return done("waiting tasks stopped: " + reason), nil
		}
	}
	return p.retry(retry, h, "%s", reason), nil
}

// refusal: AWS refused a step for a reason no retry of the same step now
// fixes by itself. Permanent ones (UnsupportedOperation) stop the waiting
// tasks at once; the others are retried until Timing.WaitDeadline.
func (p *pass) refusal(ctx context.Context, waiting []need, step string, err error) (Result, error) {
	class, fix, permanent := reasonRefused, "see the error", false
	switch {
	case errors.Is(err, cloud.ErrUnreachable):
		class, fix = reasonSSM, "the instance is not registered with SSM (InvalidInstanceId): start its SSM agent and give its role AmazonSSMManagedInstanceCore"
	case errors.Is(err, cloud.ErrAttachmentLimit):
		class, fix = reasonAttachLimit, "the instance has no free EBS attachment slot (AttachmentLimitExceeded): place the task on an instance with one"
	case errors.Is(err, cloud.ErrUnsupported):
		class, fix, permanent = reasonUnsupported, "EC2 does not support this for the instance or volume (UnsupportedOperation)", true
	}
	reason := fmt.Sprintf("%s of volume %s refused: %s (%v)", step, p.key.Volume, fix, err)
	p.log.Error("AWS refused a step", "step", step, "class", class, "error", err)
	if permanent {
		var ts []cloud.Task
		for _, n := range waiting {
			ts = append(ts, n.task)
		}
		if err := p.failTasks(ctx, ts, class, reason); err != nil {
			return Result{}, err
		}
		return done(step + " refused: " + class), nil
	}
	return p.waitOrStop(ctx, waiting, class, reason, p.r.t.CommandWait*5, p.hint)
}

// waitedPast counts a wait on a live host in WaitsPastThreshold once it
// lasts Timing.WaitThreshold.
func (p *pass) waitedPast(what string, since time.Time, props map[string]any) {
	if since.IsZero() || p.now.Sub(since) < p.r.t.WaitThreshold {
		return
	}
	if !p.r.mem.firstWait(what + "@" + strconv.FormatInt(ms(since), 10)) {
		return
	}
	props["volume"], props["waited"] = p.key.Volume, p.now.Sub(since).String()
	p.log.Warn("handoff waits past the threshold", "what", what, "since", since)
	p.r.emit(p.key.Cluster, props, metricCount(MetricWaitsPastThreshold))
}
