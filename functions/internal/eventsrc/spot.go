package eventsrc

import (
	"log/slog"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// An EC2 Spot Instance Interruption Warning, as the EC2 User Guide shows it
// ("Spot Instance interruption notices"), two minutes before EC2 stops,
// terminates or hibernates the instance:
//
//	{
//	  "version": "0", "id": "12345678-1234-1234-1234-123456789012",
//	  "detail-type": "EC2 Spot Instance Interruption Warning", "source": "aws.ec2",
//	  "account": "123456789012", "time": "yyyy-mm-ddThh:mm:ssZ", "region": "us-east-2",
//	  "resources": ["arn:aws:ec2:us-east-2a:instance/i-1234567890abcdef0"],
//	  "detail": {"instance-id": "i-1234567890abcdef0", "instance-action": "action"}
//	}
//
// (The resource ARN names the zone and no account, as the guide says.) Auto
// Scaling's termination hook fires for a Spot Instance only once EC2 has
// interrupted it, so the warning is tether's one chance to move its volumes
// while the host still answers.
const DetailSpotInterruptionWarning = "EC2 Spot Instance Interruption Warning"

type spotWarningDetail struct {
	InstanceID     string `json:"instance-id"`
	InstanceAction string `json:"instance-action"`
}

var spotActions = map[string]bool{"terminate": true, "stop": true, "hibernate": true}

func (d *Decoder) spotInterruptionWarning(env envelope) (Event, error) {
	var det spotWarningDetail
	if err := decodeDetail(env, &det); err != nil {
		return Event{}, err
	}
	if !ec2InstanceID.MatchString(det.InstanceID) {
		return Event{}, poison(nil, "event %s: invalid instance-id %.80q", env.ID, det.InstanceID)
	}
	if !spotActions[det.InstanceAction] {
		return Event{}, poison(nil, "event %s: unknown instance-action %.40q", env.ID, det.InstanceAction)
	}
	return Event{
		Kind:    KindHost,
		Trigger: reconcile.HostInterrupted{InstanceID: det.InstanceID, Action: det.InstanceAction},
		Attrs:   []slog.Attr{slog.String("instance", det.InstanceID), slog.String("spotAction", det.InstanceAction)},
	}, nil
}
