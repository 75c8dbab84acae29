package eventsrc

import (
	"log/slog"
	"regexp"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// An ECS Container Instance State Change, as the ECS Developer Guide shows it
// (trimmed; attributes are name-only capabilities or name/value pairs):
//
//	{
//	  "version": "0", "id": "8952ba83-7be2-4ab5-9c32-6687532d15a2",
//	  "detail-type": "ECS Container Instance State Change", "source": "aws.ecs",
//	  "account": "111122223333", "time": "2016-12-06T16:41:06Z", "region": "us-east-1",
//	  "resources": ["arn:aws:ecs:us-east-1:111122223333:container-instance/b54a2a04-046f-4331-9d74-3f6d7f6ca315"],
//	  "detail": {
//	    "agentConnected": true,
//	    "attributes": [{"name": "com.amazonaws.ecs.capability.logging-driver.syslog"}, …],
//	    "clusterArn": "arn:aws:ecs:us-east-1:111122223333:cluster/default",
//	    "containerInstanceArn": "arn:aws:ecs:us-east-1:111122223333:container-instance/b54a2a04-046f-4331-9d74-3f6d7f6ca315",
//	    "ec2InstanceId": "i-f3a8506b",
//	    "registeredResources": […], "remainingResources": […],
//	    "status": "ACTIVE", "version": 14801,
//	    "versionInfo": {"agentHash": "aebcbca", "agentVersion": "1.13.0", "dockerVersion": "DockerVersion: 1.11.2"},
//	    "updatedAt": "2016-12-06T16:41:06.991Z"
//	  }
//	}
//
// aws-lambda-go's events.ECSContainerInstanceEvent is not used: its attribute
// type (ECSContainerInstanceEventAttribute, v1.55.1) has only Name and drops
// Value, which tether needs for ecs.availability-zone. A first registration
// may carry "attributes": [].
type instanceStateDetail struct {
	ClusterArn           string      `json:"clusterArn"`
	ContainerInstanceArn string      `json:"containerInstanceArn"`
	EC2InstanceID        string      `json:"ec2InstanceId"`
	Status               string      `json:"status"`
	AgentConnected       *bool       `json:"agentConnected"`
	Attributes           []attribute `json:"attributes"`
	Version              int64       `json:"version"`
	RemainingResources   []resource  `json:"remainingResources"`
}

// resource is one of a container instance's resources; tether reads the
// INTEGER ones (CPU, MEMORY).
type resource struct {
	Name         string `json:"name"`
	Type         string `json:"type"`
	IntegerValue int64  `json:"integerValue"`
}

// remaining returns the instance's free CPU and memory as the event names
// them (zero for either when absent or not a non-negative INTEGER).
func remaining(rs []resource) (cpu, mem int64) {
	for _, r := range rs {
		if r.Type != "INTEGER" || r.IntegerValue < 0 {
			continue
		}
		switch r.Name {
		case "CPU":
			cpu = r.IntegerValue
		case "MEMORY":
			mem = r.IntegerValue
		}
	}
	return cpu, mem
}

type attribute struct {
	Name  string `json:"name"`
	Value string `json:"value"` // "" for name-only capability attributes
}

// instanceStatuses are a container instance's states; compared exactly.
var instanceStatuses = map[string]bool{
	"REGISTERING": true, "REGISTRATION_FAILED": true, "ACTIVE": true,
	"DRAINING": true, "DEREGISTERING": true, "INACTIVE": true,
}

// Attributes worth logging. The ECS agent registers the plugin capability
// under the short prefix today; old agents used "com.amazonaws.".
const (
	attrAvailabilityZone = "ecs.availability-zone"
	attrTetherPlugin     = "ecs.capability.docker-plugin.tether"
	attrLegacyPrefix     = "com.amazonaws."
)

var availabilityZone = regexp.MustCompile(`^[a-z]{2}(-[a-z0-9]+){1,4}-[0-9][a-z]$`)

// externalInstanceID is an ECS Anywhere (SSM managed) instance: no EBS there.
var externalInstanceID = regexp.MustCompile(`^mi-[0-9a-f]{8,17}$`)

func (d *Decoder) instanceStateChange(env envelope) (Event, error) {
	var det instanceStateDetail
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
	if !checkScopedARN(containerInstanceARN, det.ContainerInstanceArn, cluster) {
		return Event{}, poison(nil, "event %s: invalid containerInstanceArn %.300q", env.ID, det.ContainerInstanceArn)
	}
	if externalInstanceID.MatchString(det.EC2InstanceID) {
		return Event{}, quiet("event %s: container instance %s is external (%s), not EC2", env.ID, det.ContainerInstanceArn, det.EC2InstanceID)
	}
	if !ec2InstanceID.MatchString(det.EC2InstanceID) {
		return Event{}, poison(nil, "event %s: invalid ec2InstanceId %.80q", env.ID, det.EC2InstanceID)
	}
	if !instanceStatuses[det.Status] {
		return Event{}, poison(nil, "event %s: unknown container instance status %.40q", env.ID, det.Status)
	}
	if det.AgentConnected == nil {
		return Event{}, poison(nil, "event %s: no agentConnected", env.ID)
	}
	if det.Version < 0 {
		return Event{}, poison(nil, "event %s: negative version %d", env.ID, det.Version)
	}

	attrs := []slog.Attr{
		slog.String("containerInstance", det.ContainerInstanceArn),
		slog.String("instance", det.EC2InstanceID),
		slog.String("status", det.Status),
		slog.Bool("agentConnected", *det.AgentConnected),
		slog.Int64("version", det.Version),
	}
	// Registration events list the capabilities; a host that registered
	// without the tether plugin never gets tether tasks (the ECS agent
	// computes capabilities once, at start), which is worth seeing in logs.
	if len(det.Attributes) > 0 {
		plugin := false
		for _, a := range det.Attributes {
			switch {
			case a.Name == attrTetherPlugin || a.Name == attrLegacyPrefix+attrTetherPlugin:
				plugin = true
			case a.Name == attrAvailabilityZone && availabilityZone.MatchString(a.Value):
				attrs = append(attrs, slog.String("az", a.Value))
			}
		}
		attrs = append(attrs, slog.Bool("tetherPlugin", plugin))
	}
	cpu, mem := remaining(det.RemainingResources)
	return Event{
		Kind: KindInstance,
		Trigger: reconcile.InstanceChanged{
			Cluster:              cluster,
			ContainerInstanceArn: det.ContainerInstanceArn,
			EC2InstanceID:        det.EC2InstanceID,
			Status:               det.Status,
			AgentConnected:       *det.AgentConnected,
			Version:              det.Version,
			RemainingCPU:         cpu,
			RemainingMemory:      mem,
		},
		Attrs: attrs,
	}, nil
}
