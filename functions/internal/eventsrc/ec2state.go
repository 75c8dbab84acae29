package eventsrc

import (
	"log/slog"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// An EC2 Instance State-change Notification, as the EC2 User Guide shows it
// ("State change events for your instances"):
//
//	{
//	  "id": "7bf73129-1428-4cd3-a780-95db273d1602",
//	  "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
//	  "account": "123456789012", "time": "2021-11-11T21:29:54Z", "region": "us-east-1",
//	  "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
//	  "detail": {"instance-id": "i-abcd1111", "state": "pending"}
//	}
//
// It carries no tags and no cluster: every instance of the account and
// Region comes in, and the reconciler keeps those with the cluster's
// volumes attached.
const DetailInstanceStateNotification = "EC2 Instance State-change Notification"

// KindHost is the kind of EC2's instance events (state changes, Spot
// interruption warnings).
const KindHost = "host"

type ec2StateDetail struct {
	InstanceID string `json:"instance-id"`
	State      string `json:"state"`
}

// ec2States are EC2's instance states; compared exactly.
var ec2States = map[string]bool{
	"pending": true, "running": true, "stopping": true, "stopped": true, "shutting-down": true, "terminated": true,
}

func (d *Decoder) ec2StateChange(env envelope) (Event, error) {
	var det ec2StateDetail
	if err := decodeDetail(env, &det); err != nil {
		return Event{}, err
	}
	if !ec2InstanceID.MatchString(det.InstanceID) {
		return Event{}, poison(nil, "event %s: invalid instance-id %.80q", env.ID, det.InstanceID)
	}
	if !ec2States[det.State] {
		return Event{}, poison(nil, "event %s: unknown instance state %.40q", env.ID, det.State)
	}
	if det.State == "pending" || det.State == "running" {
		return Event{}, quiet("event %s: instance %s is %s: nothing leaves it", env.ID, det.InstanceID, det.State)
	}
	return Event{
		Kind:    KindHost,
		Trigger: reconcile.HostChanged{InstanceID: det.InstanceID, State: det.State},
		Attrs:   []slog.Attr{slog.String("instance", det.InstanceID), slog.String("state", det.State)},
	}, nil
}
