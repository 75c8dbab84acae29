package eventsrc

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// tether's own messages for hosts that go away, sent by the hosts function
// to its own queue with a delay (no Lambda waits): the next pass of a
// termination hold, and the next look at an instance whose ECS agent
// disconnected. Held to an exact schema, like the retry message:
//
//	{"tether":"hold","hold":{"group":"my-asg","hook":"tether-prod","instance":"i-0123456789abcdef0",
//	  "token":"87654321-4321-4321-4321-210987654321","started":"2026-12-06T10:00:00Z","passes":3}}
//	{"tether":"watch","watch":{"cluster":"prod","instance":"i-0123456789abcdef0","since":"2026-12-06T10:00:00Z"}}
const (
	holdValue  = "hold"
	watchValue = "watch"
)

// KindWatch is the kind of hung-host watches (the ECS agent disconnected).
const KindWatch = "watch"

type holdBody struct {
	Group    string    `json:"group"`
	Hook     string    `json:"hook"`
	Instance string    `json:"instance"`
	Token    string    `json:"token,omitempty"`
	Started  time.Time `json:"started"`
	Passes   int       `json:"passes"`
}

type watchBody struct {
	Cluster  string    `json:"cluster"`
	Instance string    `json:"instance"`
	Since    time.Time `json:"since"`
}

// maxHoldPasses bounds a hold message's pass count (a chain is bounded by
// its deadline long before).
const maxHoldPasses = 1_000_000

func checkHold(h reconcile.TerminationHold) error {
	switch {
	case !validGroupName(h.Group):
		return fmt.Errorf("invalid Auto Scaling group name %.300q", h.Group)
	case !hookNamePattern.MatchString(h.Hook):
		return fmt.Errorf("invalid lifecycle hook name %.300q", h.Hook)
	case !ec2InstanceID.MatchString(h.InstanceID):
		return fmt.Errorf("invalid instance id %.80q", h.InstanceID)
	case h.Token != "" && !tokenPattern.MatchString(h.Token):
		return fmt.Errorf("invalid lifecycle action token %.80q", h.Token)
	case h.Started.IsZero():
		return fmt.Errorf("no start time")
	case h.Passes < 0 || h.Passes > maxHoldPasses:
		return fmt.Errorf("pass count %d", h.Passes)
	}
	return nil
}

func checkWatch(w reconcile.HostWatch) error {
	switch {
	case !clusterNamePattern.MatchString(w.Cluster):
		return fmt.Errorf("invalid cluster name %.300q", w.Cluster)
	case !ec2InstanceID.MatchString(w.InstanceID):
		return fmt.Errorf("invalid instance id %.80q", w.InstanceID)
	case w.Since.IsZero():
		return fmt.Errorf("no start time")
	}
	return nil
}

// EncodeHold writes the next pass of a termination hold. It refuses what
// Decode would refuse.
func EncodeHold(h reconcile.TerminationHold) ([]byte, error) {
	if err := checkHold(h); err != nil {
		return nil, fmt.Errorf("hold message: %w", err)
	}
	return json.Marshal(struct {
		Tether string   `json:"tether"`
		Hold   holdBody `json:"hold"`
	}{holdValue, holdBody{Group: h.Group, Hook: h.Hook, Instance: h.InstanceID, Token: h.Token, Started: h.Started.UTC(), Passes: h.Passes}})
}

// EncodeWatch writes the next look at an instance whose agent disconnected.
func EncodeWatch(w reconcile.HostWatch) ([]byte, error) {
	if err := checkWatch(w); err != nil {
		return nil, fmt.Errorf("watch message: %w", err)
	}
	return json.Marshal(struct {
		Tether string    `json:"tether"`
		Watch  watchBody `json:"watch"`
	}{watchValue, watchBody{Cluster: w.Cluster, Instance: w.InstanceID, Since: w.Since.UTC()}})
}

// strictFields decodes a JSON object into `into` after checking that its
// field names are exactly among names (encoding/json alone would take
// "Group" for "group").
func strictFields(raw json.RawMessage, into any, names ...string) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return err
	}
	if fields == nil {
		return fmt.Errorf("null")
	}
	for name := range fields {
		if !slices.Contains(names, name) {
			return fmt.Errorf("unknown field %.80q", name)
		}
	}
	return json.Unmarshal(raw, into)
}

// hostMessage decodes a hold or watch message from its top-level fields.
func (d *Decoder) hostMessage(kind string, fields map[string]json.RawMessage) (Event, error) {
	for name := range fields {
		if name != retryMarker && name != kind {
			return Event{}, poison(nil, "%s message: unknown field %.80q", kind, name)
		}
	}
	body, ok := fields[kind]
	if !ok {
		return Event{}, poison(nil, "%s message without its %q field", kind, kind)
	}
	switch kind {
	case holdValue:
		var b holdBody
		if err := strictFields(body, &b, "group", "hook", "instance", "token", "started", "passes"); err != nil {
			return Event{}, poison(err, "hold message")
		}
		h := reconcile.TerminationHold{Group: b.Group, Hook: b.Hook, InstanceID: b.Instance, Token: b.Token, Started: b.Started, Passes: b.Passes}
		if err := checkHold(h); err != nil {
			return Event{}, poison(err, "hold message")
		}
		return holdEvent(h), nil
	default:
		var b watchBody
		if err := strictFields(body, &b, "cluster", "instance", "since"); err != nil {
			return Event{}, poison(err, "watch message")
		}
		w := reconcile.HostWatch{Cluster: b.Cluster, InstanceID: b.Instance, Since: b.Since}
		if err := checkWatch(w); err != nil {
			return Event{}, poison(err, "watch message")
		}
		if w.Cluster != d.cluster {
			return Event{}, poison(nil, "watch message for cluster %q, this deployment serves %q", w.Cluster, d.cluster)
		}
		return Event{Kind: KindWatch, Trigger: w,
			Attrs: []slog.Attr{slog.String("cluster", w.Cluster), slog.String("instance", w.InstanceID)}}, nil
	}
}
