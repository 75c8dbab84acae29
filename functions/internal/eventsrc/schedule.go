package eventsrc

import (
	"log/slog"
	"regexp"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// A Scheduled Event, as EventBridge sends it for a rate(...) rule (EventBridge
// User Guide):
//
//	{
//	  "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
//	  "detail-type": "Scheduled Event", "source": "aws.events",
//	  "account": "123456789012", "time": "2015-10-08T16:53:06Z", "region": "us-east-1",
//	  "resources": ["arn:aws:events:us-east-1:123456789012:rule/my-scheduled-rule"],
//	  "detail": {}
//	}
//
// It names no cluster: a sweep is always of the cluster this deployment serves.

var ruleARN = regexp.MustCompile(`^arn:aws[a-z-]{0,20}:events:[a-z0-9-]{1,32}:[0-9]{12}:rule/([a-zA-Z0-9._/-]{1,128})$`)

func (d *Decoder) scheduledEvent(env envelope) (Event, error) {
	var det map[string]any
	if err := decodeDetail(env, &det); err != nil {
		return Event{}, err
	}
	attrs := []slog.Attr{slog.String("cluster", d.cluster)}
	for _, r := range env.Resources {
		if m := ruleARN.FindStringSubmatch(r); m != nil {
			attrs = append(attrs, slog.String("rule", m[1]))
		}
	}
	return Event{
		Kind:    KindSchedule,
		Trigger: reconcile.SweepRequested{Cluster: d.cluster},
		Attrs:   attrs,
	}, nil
}
