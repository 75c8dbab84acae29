package eventsrc

import (
	"log/slog"
	"regexp"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// An EC2 Command Invocation Status-change Notification, as the Systems
// Manager User Guide shows it (one per status an invocation takes; tether's
// rule lets through only the final ones of its own documents):
//
//	{
//	  "version": "0", "id": "4780e1b8-f56b-4de5-95f2-95db273d1602",
//	  "detail-type": "EC2 Command Invocation Status-change Notification",
//	  "source": "aws.ssm", "account": "123456789012",
//	  "time": "2016-07-10T21:51:32Z", "region": "us-east-1",
//	  "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
//	  "detail": {
//	    "command-id": "e8d3c0e4-71f7-4491-898f-c9b35bee5f3b",
//	    "document-name": "AWS-RunPowerShellScript",
//	    "instance-id": "i-9bb89e2b",
//	    "requested-date-time": "2016-07-10T21:51:30.049Z",
//	    "status": "Success"
//	  }
//	}
//
// Like EBS's, it names no cluster and no volume: the reconciler's Keys
// finds the key from the command.
type commandDetail struct {
	CommandID    string `json:"command-id"`
	DocumentName string `json:"document-name"`
	InstanceID   string `json:"instance-id"`
	Status       string `json:"status"`
}

var (
	// SSM command ids are UUIDs (fixed length 36).
	commandIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	// SSM's rule for document names (an ARN form is allowed too).
	documentNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_.:/-]{3,128}$`)
)

// invocationStatuses are the statuses of a command invocation; compared exactly.
var invocationStatuses = map[string]bool{
	"Pending": true, "InProgress": true, "Delayed": true, "Success": true,
	"Cancelled": true, "TimedOut": true, "Failed": true, "Cancelling": true,
}

func (d *Decoder) commandInvocationChange(env envelope) (Event, error) {
	var det commandDetail
	if err := decodeDetail(env, &det); err != nil {
		return Event{}, err
	}
	switch {
	case !commandIDPattern.MatchString(det.CommandID):
		return Event{}, poison(nil, "event %s: invalid command-id %.60q", env.ID, det.CommandID)
	case !ec2InstanceID.MatchString(det.InstanceID):
		// Hybrid managed nodes (mi-...) never run tether's documents.
		return Event{}, poison(nil, "event %s: invalid instance-id %.40q", env.ID, det.InstanceID)
	case !documentNamePattern.MatchString(det.DocumentName):
		return Event{}, poison(nil, "event %s: invalid document-name %.140q", env.ID, det.DocumentName)
	case !invocationStatuses[det.Status]:
		return Event{}, poison(nil, "event %s: unknown status %.40q", env.ID, det.Status)
	}
	return Event{
		Kind: KindCommand,
		Trigger: reconcile.CommandChanged{CommandID: det.CommandID, InstanceID: det.InstanceID,
			Document: det.DocumentName, Status: det.Status},
		Attrs: []slog.Attr{
			slog.String("command", det.CommandID),
			slog.String("instance", det.InstanceID),
			slog.String("document", det.DocumentName),
			slog.String("status", det.Status),
		},
	}, nil
}
