package ssmsim

import (
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Run Command sends its events to EventBridge with source aws.ssm (Systems
// Manager user guide, "Amazon EventBridge event examples for Systems
// Manager", Run Command). Per invocation, "EC2 Command Invocation
// Status-change Notification" with the instance's ARN in resources:
//
//	"detail": {
//	  "command-id": "e8d3c0e4-71f7-4491-898f-c9b35bee5f3b",
//	  "document-name": "AWS-RunPowerShellScript",
//	  "instance-id": "i-9bb89e2b",
//	  "requested-date-time": "2016-07-10T21:51:30.049Z",
//	  "status": "Success"
//	}
//
// and per command, "EC2 Command Status-change Notification" with every
// target instance's ARN in resources:
//
//	"detail": {
//	  "command-id": "e8d3c0e4-71f7-4491-898f-c9b35bee5f3b",
//	  "document-name": "AWS-RunPowerShellScript",
//	  "expire-after": "2016-07-14T22:01:30.049Z",
//	  "parameters": {"executionTimeout": ["3600"], "commands": ["date"]},
//	  "requested-date-time": "2016-07-10T21:51:30.049Z",
//	  "status": "Success"
//	}
//
// Statuses are the API's Status values (Success, Failed, TimedOut,
// Cancelled, InProgress), one event per change after Pending.
const (
	sourceSSM              = "aws.ssm"
	detailInvocationChange = "EC2 Command Invocation Status-change Notification"
	detailCommandChange    = "EC2 Command Status-change Notification"
)

// CommandNotification is the detail of an "EC2 Command Status-change
// Notification".
type CommandNotification struct {
	CommandID         string              `json:"command-id"`
	DocumentName      string              `json:"document-name"`
	ExpireAfter       string              `json:"expire-after"`
	Parameters        map[string][]string `json:"parameters"`
	RequestedDateTime string              `json:"requested-date-time"`
	Status            string              `json:"status"`
}

// InvocationNotification is the detail of an "EC2 Command Invocation
// Status-change Notification".
type InvocationNotification struct {
	CommandID         string `json:"command-id"`
	DocumentName      string `json:"document-name"`
	InstanceID        string `json:"instance-id"`
	RequestedDateTime string `json:"requested-date-time"`
	Status            string `json:"status"`
}

// invocationEventLocked publishes inv's current status, then its command's
// if that changed too. The caller holds s.mu and has just changed the
// status, so events leave in the order of the changes, and a function
// woken by one reads that status or a later one. Publisher.Publish only
// queues.
func (s *Server) invocationEventLocked(inv *invocation) {
	if s.cfg.Publisher == nil {
		return
	}
	c := inv.cmd
	s.publish(detailInvocationChange, []string{s.instanceARN(inv.instanceID)}, InvocationNotification{
		CommandID: c.id, DocumentName: c.document, InstanceID: inv.instanceID,
		RequestedDateTime: isoOf(c.requested), Status: inv.status,
	})
	status, _, _, _, _ := c.status()
	if status == "Pending" || status == c.published {
		return
	}
	c.published = status
	arns := make([]string, 0, len(c.instanceIDs))
	for _, id := range c.instanceIDs {
		arns = append(arns, s.instanceARN(id))
	}
	s.publish(detailCommandChange, arns, CommandNotification{
		CommandID: c.id, DocumentName: c.document, ExpireAfter: isoOf(c.expires()), Parameters: c.params,
		RequestedDateTime: isoOf(c.requested), Status: status,
	})
}

func (s *Server) instanceARN(id string) string {
	return "arn:aws:ec2:" + s.cfg.Region + ":" + s.cfg.Account + ":instance/" + id
}

func (s *Server) publish(detailType string, resources []string, detail any) {
	ev, err := worldapi.NewEvent(sourceSSM, s.cfg.Account, s.cfg.Region, detailType, resources, detail)
	if err != nil {
		s.log.Error("encoding event detail", "detailType", detailType, "err", err)
		return
	}
	s.cfg.Publisher.Publish(ev)
}
