// Package eventsrc decodes what reaches tether's functions into
// reconcile.Trigger values: EventBridge events (ECS task and container
// instance state changes, EBS volume notifications, SSM command status
// changes, the sweep schedule) and tether's own retry messages.
//
// The EventBridge envelope is decoded once; Decode routes on source and
// detail-type, and each event kind has its own file with a real sample, the
// detail fields tether reads and one converter to one trigger. Anything tether
// must not act on (foreign, malformed or hostile input) is a *SkipError: the
// caller logs it and acknowledges the message, so it is never retried.
package eventsrc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// Sources and detail types tether routes, exactly as AWS spells them.
const (
	SourceECS    = "aws.ecs"
	SourceEC2    = "aws.ec2"
	SourceEvents = "aws.events"
	SourceSSM    = "aws.ssm"

	DetailTaskStateChange     = "ECS Task State Change"
	DetailInstanceStateChange = "ECS Container Instance State Change"
	DetailVolumeNotification  = "EBS Volume Notification"
	DetailScheduledEvent      = "Scheduled Event"
	DetailCommandInvocation   = "EC2 Command Invocation Status-change Notification"
)

// Kinds of decoded input, used in logs.
const (
	KindTask     = "task"
	KindInstance = "instance"
	KindVolume   = "volume"
	KindSchedule = "schedule"
	KindRetry    = "retry"
	KindRelease  = "release"
	KindCommand  = "command"
)

// MaxMessageBytes bounds what Decode reads: EventBridge events are at most
// 256 KiB, and so are SQS messages.
const MaxMessageBytes = 256 << 10

// Event is one decoded input.
type Event struct {
	ID      string // EventBridge event id ("" for tether's retry messages)
	Kind    string // KindTask, KindInstance, ...
	Trigger reconcile.Trigger
	// Attrs are the ids worth putting on every log line about this event
	// (task, container instance, EC2 instance, volume).
	Attrs []slog.Attr
}

// envelope is EventBridge's wrapper, the same for every event.
type envelope struct {
	Version    string          `json:"version"`
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account"`
	Time       string          `json:"time"`
	Region     string          `json:"region"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

// clusterNamePattern is ECS's rule for cluster names.
var clusterNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)

// eventIDPattern bounds what an event id may put in a log line.
var eventIDPattern = regexp.MustCompile(`^[a-zA-Z0-9-]{1,64}$`)

// Decoder decodes events for one cluster; events about other clusters are
// skipped.
type Decoder struct {
	cluster string
}

// NewDecoder returns a decoder for the cluster named cluster (a name, not an
// ARN, as TETHER_CLUSTER gives it).
func NewDecoder(cluster string) (*Decoder, error) {
	if !clusterNamePattern.MatchString(cluster) {
		return nil, fmt.Errorf("invalid cluster name %q: want 1 to 255 letters, digits, '-' or '_'", cluster)
	}
	return &Decoder{cluster: cluster}, nil
}

// Cluster is the name of the cluster the decoder serves.
func (d *Decoder) Cluster() string { return d.cluster }

// Decode turns one message body (an EventBridge event, or a tether retry
// message) into an Event. Input tether must not act on gives a *SkipError.
func (d *Decoder) Decode(body []byte) (Event, error) {
	if len(body) > MaxMessageBytes {
		return Event{}, poison(nil, "message of %d bytes is larger than %d", len(body), MaxMessageBytes)
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return Event{}, poison(nil, "not a JSON object")
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil {
		return Event{}, poison(err, "malformed JSON")
	}
	if raw, ok := probe[retryMarker]; ok {
		var kind string
		if err := json.Unmarshal(raw, &kind); err != nil {
			return Event{}, poison(err, "tether message: bad field %q", retryMarker)
		}
		switch kind {
		case releaseValue:
			return d.release(probe)
		case holdValue, watchValue:
			return d.hostMessage(kind, probe)
		default:
			return d.retry(probe)
		}
	}

	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return Event{}, poison(err, "malformed EventBridge envelope")
	}
	if !eventIDPattern.MatchString(env.ID) {
		return Event{}, poison(nil, "EventBridge envelope without a valid id (%.80q)", env.ID)
	}
	if len(env.Detail) == 0 || bytes.Equal(env.Detail, []byte("null")) {
		return Event{}, poison(nil, "event %s (%.80q / %.80q) has no detail", env.ID, env.Source, env.DetailType)
	}

	var ev Event
	var err error
	switch env.Source {
	case SourceECS:
		switch env.DetailType {
		case DetailTaskStateChange:
			ev, err = d.taskStateChange(env)
		case DetailInstanceStateChange:
			ev, err = d.instanceStateChange(env)
		default:
			err = poison(nil, "unhandled %s detail-type %.80q", env.Source, env.DetailType)
		}
	case SourceEC2:
		switch env.DetailType {
		case DetailVolumeNotification:
			ev, err = d.volumeNotification(env)
		case DetailInstanceStateNotification:
			ev, err = d.ec2StateChange(env)
		case DetailSpotInterruptionWarning:
			ev, err = d.spotInterruptionWarning(env)
		default:
			err = poison(nil, "unhandled %s detail-type %.80q", env.Source, env.DetailType)
		}
	case SourceSSM:
		switch env.DetailType {
		case DetailCommandInvocation:
			ev, err = d.commandInvocationChange(env)
		default:
			err = poison(nil, "unhandled %s detail-type %.80q", env.Source, env.DetailType)
		}
	case SourceAutoScaling:
		switch env.DetailType {
		case DetailTerminateLifecycleAction:
			ev, err = d.terminateLifecycleAction(env)
		default:
			err = poison(nil, "unhandled %s detail-type %.80q", env.Source, env.DetailType)
		}
	case SourceEvents:
		switch env.DetailType {
		case DetailScheduledEvent:
			ev, err = d.scheduledEvent(env)
		default:
			err = poison(nil, "unhandled %s detail-type %.80q", env.Source, env.DetailType)
		}
	default:
		err = poison(nil, "unhandled source %.80q (detail-type %.80q)", env.Source, env.DetailType)
	}
	if err != nil {
		return Event{}, err
	}
	ev.ID = env.ID
	return ev, nil
}

// decodeDetail reads an AWS event's detail. AWS adds fields over the years,
// so unknown fields are ignored here (unlike in tether's own messages).
func decodeDetail(env envelope, v any) error {
	if err := json.Unmarshal(env.Detail, v); err != nil {
		return poison(err, "event %s: malformed %s detail", env.ID, env.DetailType)
	}
	return nil
}

// clusterMatches checks an event's cluster against the one served.
func (d *Decoder) clusterMatches(env envelope, cluster string) error {
	if cluster != d.cluster {
		return poison(nil, "event %s is for cluster %q, this deployment serves %q", env.ID, cluster, d.cluster)
	}
	return nil
}
