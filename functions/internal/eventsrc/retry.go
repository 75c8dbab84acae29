package eventsrc

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"unicode/utf8"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/internal/volspec"
)

// tether's own retry message: a key handed back to SQS with a delay because
// it could not converge yet. It is the one input tether writes itself, so it
// is held to an exact schema (no unknown fields, every value validated):
//
//	{"tether":"retry","key":{"cluster":"prod","volume":"rexray-vol"},"hint":"cmd-0a1b2c3d"}
//
// "hint" may be absent or empty.
const (
	retryMarker = "tether"
	retryValue  = "retry"
)

// MaxHintLength bounds a retry hint (an SSM command id, a volume state...).
const MaxHintLength = 1024

var hintPattern = regexp.MustCompile(`^[\x20-\x7e]*$`)

type retryMessage struct {
	Tether string        `json:"tether"`
	Key    reconcile.Key `json:"key"`
	Hint   string        `json:"hint,omitempty"`
}

// EncodeRetry writes the retry message for key. It refuses what Decode would
// refuse, so tether never sends itself poison.
func EncodeRetry(key reconcile.Key, hint string) ([]byte, error) {
	if err := checkRetry(key, hint); err != nil {
		return nil, err
	}
	return json.Marshal(retryMessage{Tether: retryValue, Key: key, Hint: hint})
}

func checkRetry(key reconcile.Key, hint string) error {
	if !clusterNamePattern.MatchString(key.Cluster) {
		return fmt.Errorf("invalid cluster name %.300q in retry key", key.Cluster)
	}
	if err := volspec.ValidateName(key.Volume); err != nil {
		return fmt.Errorf("retry key: %w", err)
	}
	if len(hint) > MaxHintLength || !utf8.ValidString(hint) || !hintPattern.MatchString(hint) {
		return fmt.Errorf("invalid retry hint %.80q: want at most %d printable ASCII characters", hint, MaxHintLength)
	}
	return nil
}

// retry decodes tether's retry message from its top-level fields. Field
// names are matched exactly (encoding/json alone would accept "TETHER").
func (d *Decoder) retry(fields map[string]json.RawMessage) (Event, error) {
	var msg retryMessage
	for name, raw := range fields {
		var err error
		switch name {
		case "tether":
			err = json.Unmarshal(raw, &msg.Tether)
		case "key":
			err = decodeRetryKey(raw, &msg.Key)
		case "hint":
			err = json.Unmarshal(raw, &msg.Hint)
		default:
			return Event{}, poison(nil, "retry message: unknown field %.80q", name)
		}
		if err != nil {
			return Event{}, poison(err, "retry message: bad field %q", name)
		}
	}
	if msg.Tether != retryValue {
		return Event{}, poison(nil, "tether message of unknown type %.80q", msg.Tether)
	}
	if _, ok := fields["key"]; !ok {
		return Event{}, poison(nil, "retry message without a key")
	}
	if err := checkRetry(msg.Key, msg.Hint); err != nil {
		return Event{}, poison(err, "retry message")
	}
	if msg.Key.Cluster != d.cluster {
		return Event{}, poison(nil, "retry message for cluster %q, this deployment serves %q", msg.Key.Cluster, d.cluster)
	}
	attrs := []slog.Attr{slog.String("cluster", msg.Key.Cluster), slog.String("volume", msg.Key.Volume)}
	if msg.Hint != "" {
		attrs = append(attrs, slog.String("hint", msg.Hint))
	}
	return Event{
		Kind:    KindRetry,
		Trigger: reconcile.Retry{Key: msg.Key, Hint: msg.Hint},
		Attrs:   attrs,
	}, nil
}

func decodeRetryKey(raw json.RawMessage, key *reconcile.Key) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return err
	}
	if fields == nil {
		return fmt.Errorf("key is null")
	}
	for name, v := range fields {
		var err error
		switch name {
		case "cluster":
			err = json.Unmarshal(v, &key.Cluster)
		case "volume":
			err = json.Unmarshal(v, &key.Volume)
		default:
			return fmt.Errorf("unknown key field %.80q", name)
		}
		if err != nil {
			return fmt.Errorf("key field %q: %w", name, err)
		}
	}
	return nil
}
