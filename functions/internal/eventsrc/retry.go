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
// "hint" may be absent or empty. Keys one invocation hands back together,
// with the same delay, travel in one message (a bundle), so that their next
// passes run in one invocation and share its reads:
//
//	{"tether":"retry","keys":[{"key":{"cluster":"prod","volume":"a"},"hint":"…"},{"key":{…}}]}
//
// A bundle holds 2 to MaxBundle distinct keys, never "key" or "hint" beside.
const (
	retryMarker = "tether"
	retryValue  = "retry"
)

// MaxHintLength bounds a retry hint (an SSM command id, a volume state...).
const MaxHintLength = 1024

var hintPattern = regexp.MustCompile(`^[\x20-\x7e]*$`)

// MaxBundle bounds the keys of one retry message: an invocation that gets
// a few bundles (SQS hands Lambda up to 10 messages) stays short.
const MaxBundle = 10

type retryMessage struct {
	Tether string        `json:"tether"`
	Key    reconcile.Key `json:"key"`
	Hint   string        `json:"hint,omitempty"`
}

type retryBundle struct {
	Tether string      `json:"tether"`
	Keys   []retryItem `json:"keys"`
}

type retryItem struct {
	Key  reconcile.Key `json:"key"`
	Hint string        `json:"hint,omitempty"`
}

// EncodeRetries writes one retry message for items: the single form for
// one, a bundle for 2 to MaxBundle distinct keys. It refuses what Decode
// would refuse.
func EncodeRetries(items []reconcile.Retry) ([]byte, error) {
	switch {
	case len(items) == 1:
		return EncodeRetry(items[0].Key, items[0].Hint)
	case len(items) == 0 || len(items) > MaxBundle:
		return nil, fmt.Errorf("a retry bundle holds 2 to %d keys, not %d", MaxBundle, len(items))
	}
	b := retryBundle{Tether: retryValue, Keys: make([]retryItem, len(items))}
	seen := make(map[reconcile.Key]bool, len(items))
	for i, it := range items {
		if err := checkRetry(it.Key, it.Hint); err != nil {
			return nil, err
		}
		if seen[it.Key] {
			return nil, fmt.Errorf("retry bundle names %s/%s twice", it.Key.Cluster, it.Key.Volume)
		}
		seen[it.Key] = true
		b.Keys[i] = retryItem(it)
	}
	return json.Marshal(b)
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
	if _, ok := fields["keys"]; ok {
		return d.retryBundle(fields)
	}
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

// retryBundle decodes a bundle: every key as strictly as a single retry's.
func (d *Decoder) retryBundle(fields map[string]json.RawMessage) (Event, error) {
	var tether string
	var raws []json.RawMessage
	for name, raw := range fields {
		var err error
		switch name {
		case "tether":
			err = json.Unmarshal(raw, &tether)
		case "keys":
			err = json.Unmarshal(raw, &raws)
		default:
			return Event{}, poison(nil, "retry bundle: unknown field %.80q", name)
		}
		if err != nil {
			return Event{}, poison(err, "retry bundle: bad field %q", name)
		}
	}
	if tether != retryValue {
		return Event{}, poison(nil, "tether message of unknown type %.80q", tether)
	}
	if len(raws) < 2 || len(raws) > MaxBundle {
		return Event{}, poison(nil, "retry bundle of %d keys: want 2 to %d", len(raws), MaxBundle)
	}
	items := make([]reconcile.Retry, 0, len(raws))
	seen := make(map[reconcile.Key]bool, len(raws))
	for i, raw := range raws {
		it, err := decodeRetryItem(raw)
		if err != nil {
			return Event{}, poison(err, "retry bundle: key %d", i)
		}
		if err := checkRetry(it.Key, it.Hint); err != nil {
			return Event{}, poison(err, "retry bundle: key %d", i)
		}
		if it.Key.Cluster != d.cluster {
			return Event{}, poison(nil, "retry bundle for cluster %q, this deployment serves %q", it.Key.Cluster, d.cluster)
		}
		if seen[it.Key] {
			return Event{}, poison(nil, "retry bundle names volume %q twice", it.Key.Volume)
		}
		seen[it.Key] = true
		items = append(items, it)
	}
	return Event{
		Kind:    KindRetry,
		Trigger: reconcile.Retries{Items: items},
		Attrs:   []slog.Attr{slog.String("cluster", d.cluster), slog.Int("keys", len(items))},
	}, nil
}

func decodeRetryItem(raw json.RawMessage) (reconcile.Retry, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return reconcile.Retry{}, err
	}
	if fields == nil {
		return reconcile.Retry{}, fmt.Errorf("key entry is null")
	}
	var it reconcile.Retry
	if _, ok := fields["key"]; !ok {
		return reconcile.Retry{}, fmt.Errorf("entry without a key")
	}
	for name, v := range fields {
		var err error
		switch name {
		case "key":
			err = decodeRetryKey(v, &it.Key)
		case "hint":
			err = json.Unmarshal(v, &it.Hint)
		default:
			return reconcile.Retry{}, fmt.Errorf("unknown entry field %.80q", name)
		}
		if err != nil {
			return reconcile.Retry{}, fmt.Errorf("entry field %q: %w", name, err)
		}
	}
	return it, nil
}
