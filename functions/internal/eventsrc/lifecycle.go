package eventsrc

import (
	"log/slog"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// An EC2 Instance-terminate Lifecycle Action, as the EC2 Auto Scaling User
// Guide shows it ("Amazon EC2 Auto Scaling event reference"): Auto Scaling
// holds the instance in Terminating:Wait for the hook until the action is
// completed or its heartbeat timeout passes.
//
//	{
//	  "version": "0", "id": "468fd2f5-ed3c-4ad4-8d40-0a24ec9e61d2",
//	  "detail-type": "EC2 Instance-terminate Lifecycle Action", "source": "aws.autoscaling",
//	  "account": "123456789012", "time": "2022-03-28T00:12:11Z", "region": "us-west-2",
//	  "resources": ["auto-scaling-group-arn"],
//	  "detail": {
//	    "LifecycleActionToken": "87654321-4321-4321-4321-210987654321",
//	    "AutoScalingGroupName": "my-asg", "LifecycleHookName": "my-lifecycle-hook",
//	    "EC2InstanceId": "i-1234567890abcdef0",
//	    "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
//	    "NotificationMetadata": "additional-info", "Origin": "AutoScalingGroup", "Destination": "EC2"
//	  }
//	}
//
// It names no cluster: the hosts function acts only on its own hook (by name).
const (
	SourceAutoScaling              = "aws.autoscaling"
	DetailTerminateLifecycleAction = "EC2 Instance-terminate Lifecycle Action"
	transitionTerminating          = "autoscaling:EC2_INSTANCE_TERMINATING"
)

// KindHold is the kind of termination holds (Auto Scaling's lifecycle
// action and tether's own hold messages).
const KindHold = "hold"

type lifecycleDetail struct {
	LifecycleActionToken string `json:"LifecycleActionToken"`
	AutoScalingGroupName string `json:"AutoScalingGroupName"`
	LifecycleHookName    string `json:"LifecycleHookName"`
	EC2InstanceID        string `json:"EC2InstanceId"`
	LifecycleTransition  string `json:"LifecycleTransition"`
}

var (
	// hookNamePattern is Auto Scaling's rule for hook names (API reference,
	// PutLifecycleHook: [A-Za-z0-9\-_\/]+, 1 to 255).
	hookNamePattern = regexp.MustCompile(`^[A-Za-z0-9/_-]{1,255}$`)
	// tokenPattern: the action token is a UUID (36 characters).
	tokenPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// validGroupName: Auto Scaling allows 1 to 255 characters of almost any
// kind; tether takes printable ones only (they reach logs and API calls).
func validGroupName(s string) bool {
	if s == "" || len(s) > 255 || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func (d *Decoder) terminateLifecycleAction(env envelope) (Event, error) {
	var det lifecycleDetail
	if err := decodeDetail(env, &det); err != nil {
		return Event{}, err
	}
	if det.LifecycleTransition != transitionTerminating {
		return Event{}, poison(nil, "event %s: lifecycle transition %.80q", env.ID, det.LifecycleTransition)
	}
	started, err := time.Parse(time.RFC3339, env.Time)
	if err != nil {
		return Event{}, poison(err, "event %s: invalid time %.40q", env.ID, env.Time)
	}
	h := reconcile.TerminationHold{Group: det.AutoScalingGroupName, Hook: det.LifecycleHookName,
		InstanceID: det.EC2InstanceID, Token: det.LifecycleActionToken, Started: started}
	if err := checkHold(h); err != nil {
		return Event{}, poison(err, "event %s", env.ID)
	}
	return holdEvent(h), nil
}

func holdEvent(h reconcile.TerminationHold) Event {
	return Event{
		Kind:    KindHold,
		Trigger: h,
		Attrs: []slog.Attr{slog.String("instance", h.InstanceID), slog.String("group", h.Group),
			slog.String("hook", h.Hook), slog.Int("holdPass", h.Passes)},
	}
}
