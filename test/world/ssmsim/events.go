package ssmsim

import (
	"encoding/json"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Run Command sends its events to EventBridge with source aws.ssm (Systems
// Manager user guide, "Monitoring Systems Manager events with Amazon
// EventBridge"). Per invocation, "EC2 Command Invocation Status-change
// Notification" with the instance's ARN in resources:
//
//	"detail": {
//	  "command-id": "e8d3c0e4-71f7-4491-898f-c9b35bee5f3b",
//	  "document-name": "AWS-RunPowerShellScript",
//	  "instance-id": "i-9bb89e2b",
//	  "requested-date-time": "2016-07-10T21:51:30.049Z",
//	  "status": "Success"
//	}
const (
	sourceSSM              = "aws.ssm"
	detailInvocationChange = "EC2 Command Invocation Status-change Notification"
)

// InvocationNotification is the detail of an "EC2 Command Invocation
// Status-change Notification".
type InvocationNotification struct {
	CommandID         string `json:"command-id"`
	DocumentName      string `json:"document-name"`
	InstanceID        string `json:"instance-id"`
	RequestedDateTime string `json:"requested-date-time"`
	Status            string `json:"status"`
}

// invocationEventLocked publishes inv's current status. The caller holds
// s.mu and has just changed the status, so an invocation's events leave in
// the order of its changes, and a function woken by one reads that status
// or a later one. Publisher.Publish only queues.
func (s *Server) invocationEventLocked(inv *invocation) {
	if s.cfg.Publisher == nil {
		return
	}
	detail, err := json.Marshal(InvocationNotification{
		CommandID: inv.cmd.id, DocumentName: inv.cmd.document, InstanceID: inv.instanceID,
		RequestedDateTime: isoOf(inv.cmd.requested), Status: inv.status,
	})
	if err != nil {
		s.log.Error("encoding event detail", "detailType", detailInvocationChange, "err", err)
		return
	}
	s.cfg.Publisher.Publish(worldapi.Event{
		Version:    "0",
		ID:         awsproto.NewRequestID(),
		DetailType: detailInvocationChange,
		Source:     sourceSSM,
		Account:    s.cfg.Account,
		Time:       time.Now().UTC().Format(time.RFC3339),
		Region:     s.cfg.Region,
		Resources:  []string{"arn:aws:ec2:" + s.cfg.Region + ":" + s.cfg.Account + ":instance/" + inv.instanceID},
		Detail:     detail,
	})
}
