package eventsrc

import (
	"log/slog"
	"regexp"
	"time"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// An ECS Task State Change, as the ECS Developer Guide shows it for an EC2
// task (2018 revision; the old short task ARN format, no launchType):
//
//	{
//	  "version": "0", "id": "9bcdac79-b31f-4d3d-9410-fbd727c29fab",
//	  "detail-type": "ECS Task State Change", "source": "aws.ecs",
//	  "account": "111122223333", "time": "2016-12-06T16:41:06Z", "region": "us-east-1",
//	  "resources": ["arn:aws:ecs:us-east-1:111122223333:task/b99d40b3-5176-4f71-9a52-9dbd6f1cebef"],
//	  "detail": {
//	    "clusterArn": "arn:aws:ecs:us-east-1:111122223333:cluster/default",
//	    "containerInstanceArn": "arn:aws:ecs:us-east-1:111122223333:container-instance/b54a2a04-046f-4331-9d74-3f6d7f6ca315",
//	    "containers": [{"containerArn": "…", "exitCode": 0, "lastStatus": "STOPPED", "name": "xray", "taskArn": "…"}],
//	    "createdAt": "2016-12-06T16:41:05.702Z", "startedAt": "2016-12-06T16:41:06.8Z",
//	    "desiredStatus": "RUNNING", "lastStatus": "RUNNING",
//	    "group": "task-group", "startedBy": "ecs-svc/9223370556150183303",
//	    "updatedAt": "2016-12-06T16:41:06.975Z",
//	    "taskArn": "arn:aws:ecs:us-east-1:111122223333:task/b99d40b3-5176-4f71-9a52-9dbd6f1cebef",
//	    "taskDefinitionArn": "arn:aws:ecs:us-east-1:111122223333:task-definition/xray:2",
//	    "version": 4
//	  }
//	}
//
// Current events use long ARNs (task/<cluster>/<id>) and add launchType,
// attachments, availabilityZone, stopCode and more; Fargate tasks have no
// containerInstanceArn. Timestamps carry 1 to 3 fractional digits.
type taskStateDetail struct {
	ClusterArn           string `json:"clusterArn"`
	TaskArn              string `json:"taskArn"`
	TaskDefinitionArn    string `json:"taskDefinitionArn"`
	ContainerInstanceArn string `json:"containerInstanceArn"`
	LaunchType           string `json:"launchType"` // absent in old events
	LastStatus           string `json:"lastStatus"`
	DesiredStatus        string `json:"desiredStatus"`
	StopCode             string `json:"stopCode"`
	UpdatedAt            string `json:"updatedAt"`
	Version              int64  `json:"version"`
	// The task's state at Version, which the reconciler uses instead of
	// describing the task again.
	CreatedAt        string `json:"createdAt"`
	StartedAt        string `json:"startedAt"`
	StoppedAt        string `json:"stoppedAt"`
	Group            string `json:"group"`
	AvailabilityZone string `json:"availabilityZone"`
}

// groupPattern: ECS's task group (service:NAME, family:NAME or a user's
// group of up to 255 letters, digits, hyphens, underscores and colons).
var groupPattern = regexp.MustCompile(`^[A-Za-z0-9_:.-]{1,255}$`)

// eventTime reads an event's timestamp; zero when absent or unreadable
// (the reconciler then describes the task).
func eventTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// taskStatuses is the ECS task lifecycle; compared exactly.
var taskStatuses = map[string]bool{
	"PROVISIONING": true, "PENDING": true, "ACTIVATING": true, "RUNNING": true,
	"DEACTIVATING": true, "STOPPING": true, "DEPROVISIONING": true, "STOPPED": true, "DELETED": true,
}

// stopCodes ECS documents; anything else is logged as "other".
var stopCodes = map[string]bool{
	"TaskFailedToStart": true, "EssentialContainerExited": true, "UserInitiated": true,
	"ServiceSchedulerInitiated": true, "SpotInterruption": true, "TerminationNotice": true,
}

func (d *Decoder) taskStateChange(env envelope) (Event, error) {
	var det taskStateDetail
	if err := decodeDetail(env, &det); err != nil {
		return Event{}, err
	}
	cluster, ok := clusterFromARN(det.ClusterArn)
	if !ok {
		return Event{}, poison(nil, "event %s: invalid clusterArn %.300q", env.ID, det.ClusterArn)
	}
	if err := d.clusterMatches(env, cluster); err != nil {
		return Event{}, err
	}
	if !checkScopedARN(taskARN, det.TaskArn, cluster) {
		return Event{}, poison(nil, "event %s: invalid taskArn %.300q", env.ID, det.TaskArn)
	}
	switch det.LaunchType {
	case "", "EC2":
	default:
		return Event{}, quiet("event %s: task %s has launch type %.40q, tether serves EC2 tasks", env.ID, det.TaskArn, det.LaunchType)
	}
	if det.ContainerInstanceArn == "" {
		// Fargate (old events have no launchType), or an EC2 task still
		// waiting for capacity: no instance to put a volume on yet; a later
		// event names one.
		return Event{}, quiet("event %s: task %s has no container instance", env.ID, det.TaskArn)
	}
	if !checkScopedARN(containerInstanceARN, det.ContainerInstanceArn, cluster) {
		return Event{}, poison(nil, "event %s: invalid containerInstanceArn %.300q", env.ID, det.ContainerInstanceArn)
	}
	if !validTaskDefinitionARN(det.TaskDefinitionArn) {
		return Event{}, poison(nil, "event %s: invalid taskDefinitionArn %.300q", env.ID, det.TaskDefinitionArn)
	}
	if !taskStatuses[det.LastStatus] {
		return Event{}, poison(nil, "event %s: unknown lastStatus %.40q", env.ID, det.LastStatus)
	}
	if !taskStatuses[det.DesiredStatus] {
		return Event{}, poison(nil, "event %s: unknown desiredStatus %.40q", env.ID, det.DesiredStatus)
	}
	if det.Version < 0 {
		return Event{}, poison(nil, "event %s: negative version %d", env.ID, det.Version)
	}
	group := det.Group
	if group != "" && !groupPattern.MatchString(group) {
		group = "" // not ECS's: the task is described instead
	}
	az := det.AvailabilityZone
	if !availabilityZone.MatchString(az) {
		az = ""
	}

	attrs := []slog.Attr{
		slog.String("task", det.TaskArn),
		slog.String("containerInstance", det.ContainerInstanceArn),
		slog.String("lastStatus", det.LastStatus),
		slog.String("desiredStatus", det.DesiredStatus),
		slog.Int64("version", det.Version),
	}
	if det.StopCode != "" {
		code := det.StopCode
		if !stopCodes[code] {
			code = "other"
		}
		attrs = append(attrs, slog.String("stopCode", code))
	}
	if t, err := time.Parse(time.RFC3339Nano, det.UpdatedAt); err == nil {
		attrs = append(attrs, slog.Time("updatedAt", t))
	}
	return Event{
		Kind: KindTask,
		Trigger: reconcile.TaskChanged{
			Cluster:              cluster,
			TaskArn:              det.TaskArn,
			TaskDefinitionArn:    det.TaskDefinitionArn,
			ContainerInstanceArn: det.ContainerInstanceArn,
			LastStatus:           det.LastStatus,
			DesiredStatus:        det.DesiredStatus,
			Version:              det.Version,
			CreatedAt:            eventTime(det.CreatedAt),
			StartedAt:            eventTime(det.StartedAt),
			StoppedAt:            eventTime(det.StoppedAt),
			Group:                group,
			AZ:                   az,
		},
		Attrs: attrs,
	}, nil
}
