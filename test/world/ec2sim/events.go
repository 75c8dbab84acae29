package ec2sim

import (
	"encoding/json"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// EBS sends its events to EventBridge with source aws.ec2 (EBS user guide,
// "Amazon EventBridge for Amazon EBS"): detail-type "EBS Volume
// Notification" with detail {event, result, cause, request-id} and the
// volume's ARN in resources; "EBS Snapshot Notification" for snapshots.

const (
	detailVolume   = "EBS Volume Notification"
	detailSnapshot = "EBS Snapshot Notification"
)

// VolumeNotification is the detail of an "EBS Volume Notification".
type VolumeNotification struct {
	Event     string `json:"event"`  // createVolume, deleteVolume, attachVolume, detachVolume, modifyVolume
	Result    string `json:"result"` // available, deleted, attached, detached, failed, optimizing, completed
	Cause     string `json:"cause"`
	RequestID string `json:"request-id"`
}

type snapshotNotification struct {
	Event      string `json:"event"`
	Result     string `json:"result"`
	Cause      string `json:"cause"`
	RequestID  string `json:"request-id"`
	SnapshotID string `json:"snapshot_id"`
	Source     string `json:"source"`
	StartTime  string `json:"startTime"`
	EndTime    string `json:"endTime"`
}

func (s *Server) publish(detailType string, resources []string, detail any) {
	if s.cfg.Publisher == nil {
		return
	}
	raw, err := json.Marshal(detail)
	if err != nil {
		s.log.Error("encoding event detail", "detailType", detailType, "err", err)
		return
	}
	s.cfg.Publisher.Publish(worldapi.Event{
		Version:    "0",
		ID:         awsproto.NewRequestID(),
		DetailType: detailType,
		Source:     "aws.ec2",
		Account:    s.cfg.Account,
		Time:       time.Now().UTC().Format(time.RFC3339),
		Region:     s.cfg.Region,
		Resources:  resources,
		Detail:     raw,
	})
}

// volumeEventLocked sends one EBS Volume Notification. The caller holds
// s.mu and has just made the change the event reports, so events leave in
// the order of the changes (an attach never overtakes the create it
// follows). Publisher.Publish only queues, so holding the lock is cheap.
func (s *Server) volumeEventLocked(volumeID, event, result, cause, requestID string) {
	s.log.Info("ebs event", "volume", volumeID, "event", event, "result", result, "cause", cause)
	s.publish(detailVolume, []string{s.arn("volume", volumeID)},
		VolumeNotification{Event: event, Result: result, Cause: cause, RequestID: requestID})
}

// snapshotEventLocked is volumeEventLocked for snapshots.
func (s *Server) snapshotEventLocked(sn snapshot, result, cause string) {
	arn := "arn:aws:ec2:" + s.cfg.Region + "::snapshot/" + sn.id
	s.publish(detailSnapshot, []string{arn}, snapshotNotification{
		Event: "createSnapshot", Result: result, Cause: cause, SnapshotID: arn,
		Source:    "arn:aws:ec2:" + s.cfg.Region + "::volume/" + sn.volumeID,
		StartTime: sn.started.UTC().Format(time.RFC3339), EndTime: sn.completed.UTC().Format(time.RFC3339),
	})
}
