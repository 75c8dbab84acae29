package eventsrc

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"unicode/utf8"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// An operator's release (`tether release`), sent to the retry queue, which
// the taskstate function reads: the reconciler, not the command, takes the
// step, on the same facts as every other pass. Held to an exact schema like
// the retry message (anyone who may send to the queue may send it; what it
// can ask is bounded by the reconciler's rules: a release where no live
// task needs the volume, a force never under a started task or a container
// that holds the volume):
//
//	{"tether":"release","key":{"cluster":"prod","volume":"rexray-vol"},
//	 "instance":"i-0123456789abcdef0","force":true,"reason":"host wedged","operator":"alice@admin-host"}
//
// "instance", "force", "reason" and "operator" may be absent; a force names
// the instance the operator confirmed.
const releaseValue = "release"

// Bounds of an operator's words in a release message (logged, and in the
// force detach's metric properties).
const (
	MaxReleaseReason   = 256
	MaxReleaseOperator = 128
)

var (
	releaseText = regexp.MustCompile(`^[\x20-\x7e]*$`)
	instanceID  = regexp.MustCompile(`^i-[0-9a-f]{8,17}$`)
)

type releaseMessage struct {
	Tether   string        `json:"tether"`
	Key      reconcile.Key `json:"key"`
	Instance string        `json:"instance,omitempty"`
	Force    bool          `json:"force,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	Operator string        `json:"operator,omitempty"`
}

// EncodeRelease writes an operator's release message. It refuses what
// Decode would refuse.
func EncodeRelease(r reconcile.Release) ([]byte, error) {
	msg := releaseMessage{Tether: releaseValue, Key: r.Key, Instance: r.Instance, Force: r.Force, Reason: r.Reason, Operator: r.Operator}
	if err := checkRelease(msg); err != nil {
		return nil, err
	}
	return json.Marshal(msg)
}

func checkRelease(m releaseMessage) error {
	if err := checkRetry(m.Key, ""); err != nil {
		return err
	}
	if m.Instance != "" && !instanceID.MatchString(m.Instance) {
		return fmt.Errorf("invalid instance id %.40q in release", m.Instance)
	}
	if m.Force && m.Instance == "" {
		return fmt.Errorf("a forced release names the instance the operator confirmed")
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"reason", m.Reason, MaxReleaseReason}, {"operator", m.Operator, MaxReleaseOperator}} {
		if len(f.v) > f.max || !utf8.ValidString(f.v) || !releaseText.MatchString(f.v) {
			return fmt.Errorf("invalid release %s %.80q: want at most %d printable ASCII characters", f.name, f.v, f.max)
		}
	}
	return nil
}

// release decodes an operator's release from its top-level fields, matched
// exactly.
func (d *Decoder) release(fields map[string]json.RawMessage) (Event, error) {
	var msg releaseMessage
	for name, raw := range fields {
		var err error
		switch name {
		case "tether":
			err = json.Unmarshal(raw, &msg.Tether)
		case "key":
			err = decodeRetryKey(raw, &msg.Key)
		case "instance":
			err = json.Unmarshal(raw, &msg.Instance)
		case "force":
			err = json.Unmarshal(raw, &msg.Force)
		case "reason":
			err = json.Unmarshal(raw, &msg.Reason)
		case "operator":
			err = json.Unmarshal(raw, &msg.Operator)
		default:
			return Event{}, poison(nil, "release message: unknown field %.80q", name)
		}
		if err != nil {
			return Event{}, poison(err, "release message: bad field %q", name)
		}
	}
	if _, ok := fields["key"]; !ok {
		return Event{}, poison(nil, "release message without a key")
	}
	if err := checkRelease(msg); err != nil {
		return Event{}, poison(err, "release message")
	}
	if msg.Key.Cluster != d.cluster {
		return Event{}, poison(nil, "release message for cluster %q, this deployment serves %q", msg.Key.Cluster, d.cluster)
	}
	attrs := []slog.Attr{slog.String("cluster", msg.Key.Cluster), slog.String("volume", msg.Key.Volume),
		slog.Bool("force", msg.Force), slog.String("operator", msg.Operator)}
	if msg.Instance != "" {
		attrs = append(attrs, slog.String("instance", msg.Instance))
	}
	return Event{
		Kind:    KindRelease,
		Trigger: reconcile.Release{Key: msg.Key, Instance: msg.Instance, Force: msg.Force, Reason: msg.Reason, Operator: msg.Operator},
		Attrs:   attrs,
	}, nil
}
