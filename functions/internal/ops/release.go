package ops

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/eventsrc"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// ReleaseResult is `tether release`'s answer.
type ReleaseResult struct {
	Volume   string `json:"volume"`
	VolumeID string `json:"volumeId"`
	Cluster  string `json:"cluster"`
	Instance string `json:"instance,omitempty"` // the instance it was released from
	Force    bool   `json:"force"`
	// Outcome: released (no longer attached there), not-attached (nothing
	// to do), sent (not watched: --wait 0), refused (a check said no),
	// waiting (the wait ran out; tether goes on).
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail"`
	Sent    time.Time `json:"sentAt,omitzero"`
	Seconds float64   `json:"seconds,omitempty"` // from the message sent to the detach seen
	// Forced: with --force, no unmount succeeded on the instance before the
	// volume left it (tether force-detached it).
	Forced bool `json:"forced,omitempty"`
}

// release: `tether release VOLUME [--force]`. It sends tether's own
// message to the retry queue: the reconciler takes the step (unmount
// through SSM, then detach; with --force, a force detach of a host that
// does not let go), on the same facts as every pass; this command checks
// them first, and watches.
func (c *cmd) release(ctx context.Context, args []string) error {
	var co common
	fs := c.verbFlags("release", &co)
	force := fs.Bool("force", false, "force-detach if the host does not let go (after confirmation)")
	yes := fs.Bool("yes", false, "confirm --force without asking (for scripts)")
	reason := fs.String("reason", "", "why (logged by the reconciler)")
	wait := fs.Duration("wait", waitDefault, "how long to watch the release (0: send it and return)")
	queueURL := fs.String("queue-url", c.io.Getenv(EnvRetryQueueURL), "tether's retry queue (default $"+EnvRetryQueueURL+", else the stack's RetryQueueUrl output)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("release: want one VOLUME")
	}
	if err := co.check(false); err != nil {
		return err
	}
	if *wait < 0 || *wait > maxWait {
		return usageErr("--wait %s: want 0 to %s", *wait, maxWait)
	}
	if len(*reason) > eventsrc.MaxReleaseReason {
		return usageErr("--reason: at most %d characters", eventsrc.MaxReleaseReason)
	}
	key, vol, err := c.resolveVolume(ctx, pos[0], &co)
	if err != nil {
		return err
	}
	if vol == nil {
		vols, err := c.deps.Cloud.VolumesByKey(ctx, key.Cluster, key.Volume)
		if err != nil {
			return err
		}
		if len(vols) == 0 {
			return notFound("tether volume %s of cluster %s has no EBS volume", key.Volume, key.Cluster)
		}
		sortPrimary(vols)
		vol = &vols[0]
	}
	res := ReleaseResult{Volume: key.Volume, VolumeID: vol.ID, Cluster: key.Cluster, Force: *force}
	if len(vol.Attachments) == 0 {
		res.Outcome, res.Detail = "not-attached", fmt.Sprintf("%s is %s and attached nowhere: nothing to release", vol.ID, vol.State)
		return c.releaseDone(res, nil)
	}
	a := vol.Attachments[0]
	res.Instance = a.InstanceID
	f, err := c.gather(ctx, key, co, vol)
	if err != nil {
		return err
	}
	if err := c.releaseChecks(f, a, *force); err != nil {
		res.Outcome, res.Detail = "refused", err.Error()
		return c.releaseDone(res, err)
	}
	if *force && !*yes {
		if err := c.confirmForce(*vol, a); err != nil {
			return err
		}
	}
	qurl, err := c.retryQueue(ctx, co, *queueURL)
	if err != nil {
		return err
	}
	body, err := eventsrc.EncodeRelease(reconcile.Release{Key: key, Instance: a.InstanceID, Force: *force,
		Reason: cmp.Or(*reason, "tether release"), Operator: printable(c.deps.Operator, eventsrc.MaxReleaseOperator)})
	if err != nil {
		return err
	}
	res.Sent = c.deps.Now()
	if _, err := c.deps.Queue.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(qurl), MessageBody: aws.String(string(body))}); err != nil {
		return fmt.Errorf("sending the release to %s: %w", qurl, err)
	}
	c.progress("release of %s (%s) from %s sent to tether%s", key.Volume, vol.ID, a.InstanceID, map[bool]string{true: " with --force", false: ""}[*force])
	if *wait == 0 {
		res.Outcome, res.Detail = "sent", "not watched (--wait 0): `tether explain "+vol.ID+"` shows where it is"
		return c.releaseDone(res, nil)
	}
	return c.releaseDone(c.watchRelease(ctx, key, co, *vol, a, res, *wait))
}

// releaseChecks: the facts the reconciler releases on. A live task on the
// instance uses the volume: tether never detaches under it (a release of
// a volume a task there still wants would be undone at once). With
// --force, an unmount that answered that a container holds the volume
// refuses it (the host answers: it is not wedged).
func (c *cmd) releaseChecks(f *facts, a cloud.Attachment, force bool) error {
	for _, t := range f.tasks {
		if t.Live() && f.instanceOfTask(t) == a.InstanceID {
			return refused("task %s (%s, desired %s) on %s uses %s: tether never detaches a volume a live task there uses; stop the task first (aws ecs stop-task) or drain the instance",
				cloud.TaskID(t.ARN), t.LastStatus, t.DesiredStatus, a.InstanceID, f.key.Volume)
		}
	}
	if u := f.unmount; force && u != nil && u.Status == cloud.CommandFailed {
		if hs := busyContainers(u); len(hs) > 0 {
			return refused("the unmount on %s answered that containers hold %s (%s): the host answers, so a force is refused; stop them first",
				a.InstanceID, f.key.Volume, holderNames(hs))
		}
	}
	return nil
}

// confirmForce asks the operator to type the volume id.
func (c *cmd) confirmForce(v cloud.Volume, a cloud.Attachment) error {
	if !c.deps.Terminal {
		return &exitError{ExitNotConfirmed, "--force needs a confirmation: run it on a terminal, or add --yes"}
	}
	fmt.Fprintf(c.io.Stderr, "Force-release %s (%s) from %s?\n", v.ID, v.Tags[cloud.TagVolume], a.InstanceID)
	fmt.Fprintf(c.io.Stderr, "tether unmounts it there first. If the host does not let go (its SSM agent is silent, its unmount\n"+
		"fails, or runs on past 20 s), EC2 force-detaches it, and whatever the host had not flushed is lost.\n"+
		"Refused while a task on %s uses the volume or a container there holds it.\n", a.InstanceID)
	fmt.Fprintf(c.io.Stderr, "Type the volume id (%s) to confirm: ", v.ID)
	line, err := bufio.NewReader(c.io.Stdin).ReadString('\n')
	if strings.TrimSpace(line) != v.ID {
		if err != nil && line == "" {
			return &exitError{ExitNotConfirmed, "not confirmed: " + err.Error()}
		}
		return &exitError{ExitNotConfirmed, "not confirmed: the answer was not " + v.ID}
	}
	return nil
}

// retryQueue: the queue URL given, else the stack's RetryQueueUrl output.
func (c *cmd) retryQueue(ctx context.Context, co common, given string) (string, error) {
	if given != "" {
		if u, err := url.Parse(given); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return "", usageErr("invalid queue URL %q", given)
		}
		return given, nil
	}
	out, err := c.deps.Stacks.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(co.stack)})
	if err != nil {
		return "", fmt.Errorf("finding tether's retry queue in stack %s (give --queue-url or set $%s): %w", co.stack, EnvRetryQueueURL, err)
	}
	for _, s := range out.Stacks {
		for _, o := range s.Outputs {
			if aws.ToString(o.OutputKey) == "RetryQueueUrl" && aws.ToString(o.OutputValue) != "" {
				return aws.ToString(o.OutputValue), nil
			}
		}
	}
	return "", fmt.Errorf("stack %s has no RetryQueueUrl output: give --queue-url or set $%s", co.stack, EnvRetryQueueURL)
}

// watchRelease looks at the release until the volume left the instance,
// a check refuses it, or the wait runs out, saying what it waits for.
func (c *cmd) watchRelease(ctx context.Context, key reconcile.Key, co common, v cloud.Volume, a cloud.Attachment, res ReleaseResult, wait time.Duration) (ReleaseResult, error) {
	deadline := res.Sent.Add(wait)
	_, unmountDoc := co.documents()
	said, saidAt := "", time.Time{}
	for {
		cur, err := c.deps.Cloud.VolumeByID(ctx, v.ID)
		if errors.Is(err, cloud.ErrNotFound) {
			res.Outcome, res.Detail = "released", v.ID+" no longer exists"
			return res, nil
		}
		if err != nil {
			return res, err
		}
		if !stillAttached(cur, a) {
			res.Outcome, res.Seconds = "released", c.deps.Now().Sub(res.Sent).Round(100*time.Millisecond).Seconds()
			res.Detail = fmt.Sprintf("%s left %s", v.ID, a.InstanceID)
			if len(cur.Attachments) > 0 {
				res.Detail += "; now " + cur.Attachments[0].State + " to " + cur.Attachments[0].InstanceID
			}
			if res.Force {
				u, err := c.newest(ctx, unmountDoc, agentproto.StepUnmount, v.ID, a.InstanceID, res.Sent.Add(-time.Minute), token(a))
				if err != nil {
					return res, err
				}
				res.Forced = u == nil || u.Status != cloud.CommandSucceeded
				if res.Forced {
					res.Detail += " (force-detached: the host did not unmount it)"
				}
			}
			return res, nil
		}
		now := c.deps.Now()
		if said == "" || now.Sub(saidAt) >= progressEvery {
			f, err := c.gather(ctx, key, co, &cur)
			if err != nil {
				return res, err
			}
			if err := c.releaseChecks(f, a, false); err != nil {
				res.Outcome, res.Detail = "refused", err.Error()
				return res, err
			}
			// Only an unmount asked for after this release says what holds
			// the volume now: one the reconciler sent just before it (its
			// own retry, while a container still held it) may have answered
			// before the holder let go.
			if u := f.unmount; u != nil && u.Status == cloud.CommandFailed && !u.Requested.Before(res.Sent) {
				if hs := busyContainers(u); len(hs) > 0 {
					err := refused("the unmount on %s answers that containers hold %s (%s): tether does not detach under them%s; stop them, then release again",
						a.InstanceID, key.Volume, holderNames(hs), map[bool]string{true: " and refuses the force", false: ""}[res.Force])
					res.Outcome, res.Detail = "refused", err.Error()
					return res, err
				}
			}
			x := explain(f)
			msg := cmp.Or(x.WaitingFor, "tether to take the next step")
			if msg != said || now.Sub(saidAt) >= progressEvery {
				c.progress("waiting for %s", msg)
				said, saidAt = msg, now
			}
		}
		if !now.Before(deadline) {
			err := &exitError{ExitNotFinished, fmt.Sprintf("still waiting after %s for %s; tether goes on (`tether explain %s`)", wait, said, v.ID)}
			res.Outcome, res.Detail = "waiting", said
			return res, err
		}
		if err := c.deps.Sleep(ctx, min(pollEvery, deadline.Sub(now))); err != nil {
			return res, err
		}
	}
}

// stillAttached: the attachment a is still there (same instance, same
// attach time).
func stillAttached(v cloud.Volume, a cloud.Attachment) bool {
	for _, cur := range v.Attachments {
		if cur.InstanceID == a.InstanceID && cur.AttachTime.Equal(a.AttachTime) {
			return true
		}
	}
	return false
}

// releaseDone prints the result and returns err (its exit code).
func (c *cmd) releaseDone(res ReleaseResult, err error) error {
	if c.json {
		if perr := c.printJSON(res); perr != nil {
			return perr
		}
	} else if err == nil {
		line := fmt.Sprintf("%s: %s", res.Outcome, res.Detail)
		if res.Seconds > 0 {
			line += fmt.Sprintf(" (%.1fs after the release was sent)", res.Seconds)
		}
		fmt.Fprintln(c.io.Stdout, line)
	}
	return err
}

// printable keeps what a release message accepts of s: printable ASCII,
// at most n characters.
func printable(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e && b.Len() < n {
			b.WriteRune(r)
		}
	}
	return b.String()
}
