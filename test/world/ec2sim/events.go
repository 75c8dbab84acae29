package ec2sim

import (
	"time"

	"github.com/tether-ecs/tether/test/world/worldapi"
)

// EC2 sends its events to EventBridge with source aws.ec2. Only the events
// AWS documents are sent, in the shapes its samples show:
//   - "EBS Volume Notification" (EBS user guide, "Amazon EventBridge for
//     Amazon EBS"), detail {event, result, cause, request-id}, resources
//     [the volume's ARN]: createVolume (available, or failed with the
//     cause), deleteVolume (deleted), modifyVolume (optimizing), and
//     attachVolume / reattachVolume only when an attach fails, with the KMS
//     key's ARN as resources[1] and an empty request-id. A successful
//     attach sends nothing. detachVolume (detached) is sent only when
//     Config.DetachEvents is set: the guide lists it, but its sample could
//     not be checked here, and tether must work without it.
//   - "EBS Snapshot Notification" for createSnapshot.
//   - "EC2 Instance State-change Notification" (EC2 user guide, "State
//     change events for your instances"), detail {instance-id, state},
//     resources [the instance's ARN], for every state an instance enters.

const (
	detailVolume   = "EBS Volume Notification"
	detailSnapshot = "EBS Snapshot Notification"
	detailInstance = "EC2 Instance State-change Notification"
)

// VolumeNotification is the detail of an "EBS Volume Notification".
type VolumeNotification struct {
	Event     string `json:"event"`  // createVolume, deleteVolume, attachVolume, reattachVolume, detachVolume, modifyVolume
	Result    string `json:"result"` // available, deleted, failed, optimizing, detached
	Cause     string `json:"cause"`
	RequestID string `json:"request-id"`
}

// InstanceStateChange is the detail of an "EC2 Instance State-change
// Notification".
type InstanceStateChange struct {
	InstanceID string `json:"instance-id"`
	State      string `json:"state"` // pending, running, stopping, stopped, shutting-down, terminated
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
	ev, err := worldapi.NewEvent("aws.ec2", s.cfg.Account, s.cfg.Region, detailType, resources, detail)
	if err != nil {
		s.log.Error("encoding event detail", "detailType", detailType, "err", err)
		return
	}
	s.cfg.Publisher.Publish(ev)
}

// volumeEventLocked sends one EBS Volume Notification. The caller holds
// s.mu and has just made the change the event reports, so events leave in
// the order of the changes (a delete never overtakes the create it
// follows). Publisher.Publish only queues, so holding the lock is cheap.
func (s *Server) volumeEventLocked(volumeID, event, result, cause, requestID string) {
	s.log.Info("ebs event", "volume", volumeID, "event", event, "result", result, "cause", cause)
	s.publish(detailVolume, []string{s.arn("volume", volumeID)},
		VolumeNotification{Event: event, Result: result, Cause: cause, RequestID: requestID})
}

// attachFailedEventLocked is the documented attachVolume / reattachVolume
// failure: the volume's key is unusable. resources[1] is the key's ARN and
// request-id is empty, as in the guide's samples. Caller holds s.mu.
func (s *Server) attachFailedEventLocked(volumeID, event, keyARN, cause string) {
	s.log.Info("ebs event", "volume", volumeID, "event", event, "result", "failed", "cause", cause)
	s.publish(detailVolume, []string{s.arn("volume", volumeID), keyARN},
		VolumeNotification{Event: event, Result: "failed", Cause: cause})
}

// instanceEventLocked sends one EC2 Instance State-change Notification and
// queues the change for Config.InstanceStateChanged. Caller holds s.mu.
func (s *Server) instanceEventLocked(in *instance) {
	s.log.Info("instance state", "instance", in.id, "state", in.state)
	s.publish(detailInstance, []string{s.arn("instance", in.id)}, InstanceStateChange{InstanceID: in.id, State: in.state})
	s.notes.push(stateChange{instanceID: in.id, state: in.state})
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
