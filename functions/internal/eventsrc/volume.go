package eventsrc

import (
	"log/slog"
	"regexp"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/internal/volspec"
)

// An EBS Volume Notification, as the EBS User Guide shows it (the account in
// AWS's own sample is a placeholder; attach events may also name the KMS key
// and the instance in resources):
//
//	{
//	  "version": "0", "id": "01234567-0123-0123-0123-012345678901",
//	  "detail-type": "EBS Volume Notification", "source": "aws.ec2",
//	  "account": "012345678901", "time": "yyyy-mm-ddThh:mm:ssZ", "region": "us-east-1",
//	  "resources": ["arn:aws:ec2:us-east-1:012345678901:volume/vol-01234567"],
//	  "detail": {
//	    "result": "available", "cause": "", "event": "createVolume",
//	    "request-id": "01234567-0123-0123-0123-0123456789ab"
//	  }
//	}
//
// The event carries no tags, so nothing here says which cluster the volume
// belongs to: the reconciler's Keys looks at the volume's tether tags.
type volumeDetail struct {
	Event  string `json:"event"`
	Result string `json:"result"`
	Cause  string `json:"cause"`
}

// volumeEvents are the EBS volume events EC2 sends; compared exactly.
var volumeEvents = map[string]bool{
	"createVolume": true, "deleteVolume": true, "attachVolume": true,
	"reattachVolume": true, "detachVolume": true, "modifyVolume": true,
}

var (
	resultPattern  = regexp.MustCompile(`^[a-zA-Z-]{0,40}$`)
	ec2InstanceARN = regexp.MustCompile(`^arn:aws[a-z-]{0,20}:ec2:[a-z0-9-]{1,32}:[0-9a-z]{0,12}:instance/(i-[0-9a-f]{8,17})$`)
)

// maxCause bounds the free-text cause kept for logs.
const maxCause = 512

func (d *Decoder) volumeNotification(env envelope) (Event, error) {
	var det volumeDetail
	if err := decodeDetail(env, &det); err != nil {
		return Event{}, err
	}
	if !volumeEvents[det.Event] {
		return Event{}, poison(nil, "event %s: unknown EBS volume event %.40q", env.ID, det.Event)
	}
	if !resultPattern.MatchString(det.Result) {
		return Event{}, poison(nil, "event %s: invalid result %.40q", env.ID, det.Result)
	}
	volumeID := ""
	instanceID := ""
	for _, r := range env.Resources {
		if m := volumeARN.FindStringSubmatch(r); m != nil {
			if volumeID != "" {
				return Event{}, poison(nil, "event %s: more than one volume in resources", env.ID)
			}
			if err := volspec.ValidateVolumeID(m[1]); err != nil {
				return Event{}, poison(err, "event %s: invalid volume in resources", env.ID)
			}
			volumeID = m[1]
		}
		if m := ec2InstanceARN.FindStringSubmatch(r); m != nil {
			instanceID = m[1]
		}
	}
	if volumeID == "" {
		return Event{}, poison(nil, "event %s: no volume ARN in resources", env.ID)
	}
	cause := det.Cause
	if len(cause) > maxCause {
		cause = cause[:maxCause]
	}
	attrs := []slog.Attr{
		slog.String("volumeId", volumeID),
		slog.String("event", det.Event),
		slog.String("result", det.Result),
	}
	if instanceID != "" {
		attrs = append(attrs, slog.String("instance", instanceID))
	}
	if cause != "" {
		attrs = append(attrs, slog.String("cause", cause))
	}
	return Event{
		Kind:    KindVolume,
		Trigger: reconcile.VolumeChanged{VolumeID: volumeID, Event: det.Event, Result: det.Result, Cause: cause},
		Attrs:   attrs,
	}, nil
}
