package ecssim

import (
	"encoding/json"
	"time"

	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Event detail types, in the shape EventBridge delivers (see
// shared/aws-samples/events): timestamps as RFC 3339 with milliseconds,
// long ARNs, attachments typed "eni", attributes as [{name, value}].

// DetailTypeTask and DetailTypeInstance are the detail-types ECS publishes.
const (
	DetailTypeTask     = "ECS Task State Change"
	DetailTypeInstance = "ECS Container Instance State Change"
	Source             = "aws.ecs"
)

type eventContainer struct {
	ContainerArn      string                 `json:"containerArn"`
	ExitCode          *int                   `json:"exitCode,omitempty"`
	LastStatus        string                 `json:"lastStatus"`
	Name              string                 `json:"name"`
	Image             string                 `json:"image"`
	RuntimeID         string                 `json:"runtimeId,omitempty"`
	Reason            string                 `json:"reason,omitempty"`
	TaskArn           string                 `json:"taskArn"`
	NetworkInterfaces []networkInterfaceJSON `json:"networkInterfaces"`
	CPU               string                 `json:"cpu"`
	Memory            string                 `json:"memory,omitempty"`
	MemoryReservation string                 `json:"memoryReservation,omitempty"`
}

// TaskDetail is the detail of an ECS Task State Change event.
type TaskDetail struct {
	Attachments          []attachmentJSON `json:"attachments"`
	Attributes           []attributeJSON  `json:"attributes"`
	AvailabilityZone     string           `json:"availabilityZone,omitempty"`
	ClusterArn           string           `json:"clusterArn"`
	Connectivity         string           `json:"connectivity,omitempty"`
	ConnectivityAt       string           `json:"connectivityAt,omitempty"`
	ContainerInstanceArn string           `json:"containerInstanceArn,omitempty"`
	Containers           []eventContainer `json:"containers"`
	CPU                  string           `json:"cpu,omitempty"`
	CreatedAt            string           `json:"createdAt"`
	DesiredStatus        string           `json:"desiredStatus"`
	EnableExecuteCommand bool             `json:"enableExecuteCommand"`
	ExecutionStoppedAt   string           `json:"executionStoppedAt,omitempty"`
	Group                string           `json:"group"`
	LaunchType           string           `json:"launchType"`
	LastStatus           string           `json:"lastStatus"`
	Memory               string           `json:"memory,omitempty"`
	Overrides            overridesJSON    `json:"overrides"`
	PullStartedAt        string           `json:"pullStartedAt,omitempty"`
	PullStoppedAt        string           `json:"pullStoppedAt,omitempty"`
	StartedAt            string           `json:"startedAt,omitempty"`
	StartedBy            string           `json:"startedBy,omitempty"`
	StoppingAt           string           `json:"stoppingAt,omitempty"`
	StoppedAt            string           `json:"stoppedAt,omitempty"`
	StoppedReason        string           `json:"stoppedReason,omitempty"`
	StopCode             string           `json:"stopCode,omitempty"`
	UpdatedAt            string           `json:"updatedAt"`
	TaskArn              string           `json:"taskArn"`
	TaskDefinitionArn    string           `json:"taskDefinitionArn"`
	Version              int64            `json:"version"`
}

// InstanceDetail is the detail of an ECS Container Instance State Change.
type InstanceDetail struct {
	AgentConnected       bool            `json:"agentConnected"`
	Attributes           []attributeJSON `json:"attributes"`
	ClusterArn           string          `json:"clusterArn"`
	ContainerInstanceArn string          `json:"containerInstanceArn"`
	EC2InstanceID        string          `json:"ec2InstanceId"`
	RegisteredResources  []resourceJSON  `json:"registeredResources"`
	RemainingResources   []resourceJSON  `json:"remainingResources"`
	Status               string          `json:"status"`
	StatusReason         string          `json:"statusReason,omitempty"`
	Version              int64           `json:"version"`
	VersionInfo          versionInfoJSON `json:"versionInfo"`
	RegisteredAt         string          `json:"registeredAt"`
	UpdatedAt            string          `json:"updatedAt"`
}

func (s *Server) envelope(detailType, resource string, at time.Time, detail any) worldapi.Event {
	raw, err := json.Marshal(detail)
	if err != nil { // the detail types always marshal; keep the event anyway
		raw = []byte("{}")
	}
	return worldapi.Event{
		Version: "0", ID: s.newUUID(), DetailType: detailType, Source: Source,
		Account: s.opts.Account, Time: at.UTC().Format(time.RFC3339), Region: s.opts.Region,
		Resources: []string{resource}, Detail: raw,
	}
}

func (s *Server) taskEvent(t *task) worldapi.Event {
	d := TaskDetail{
		Attachments: t.attachments("eni", s.opts.Region),
		Attributes:  []attributeJSON{{Name: "ecs.cpu-architecture", Value: ptr("x86_64")}},
		ClusterArn:  t.cluster.arn, CPU: itoa(t.cpu), Memory: itoa(t.mem),
		CreatedAt: eventTime(t.createdAt), DesiredStatus: t.desired,
		ExecutionStoppedAt: eventTime(t.execStopped), Group: t.group, LaunchType: t.launchType,
		LastStatus: t.lastStatus, Overrides: t.overrides(),
		PullStartedAt: eventTime(t.pullStarted), PullStoppedAt: eventTime(t.pullStopped),
		StartedAt: eventTime(t.startedAt), StartedBy: t.startedBy,
		StoppingAt: eventTime(t.stoppingAt), StoppedAt: eventTime(t.stoppedAt),
		StoppedReason: t.stopReason, StopCode: t.stopCode, UpdatedAt: eventTime(t.updatedAt),
		TaskArn: t.arn, TaskDefinitionArn: t.def.arn, Version: t.version,
	}
	if t.awsvpc() && !t.connectivity.IsZero() {
		d.Connectivity, d.ConnectivityAt = "CONNECTED", eventTime(t.connectivity)
	}
	if t.instance != nil {
		d.ContainerInstanceArn, d.AvailabilityZone = t.instance.arn, t.instance.az
	}
	for _, c := range t.containersOut() {
		d.Containers = append(d.Containers, eventContainer{
			ContainerArn: c.ContainerArn, ExitCode: c.ExitCode, LastStatus: c.LastStatus, Name: c.Name,
			Image: c.Image, RuntimeID: c.RuntimeID, Reason: c.Reason, TaskArn: c.TaskArn,
			NetworkInterfaces: c.NetworkInterfaces, CPU: c.CPU, Memory: c.Memory, MemoryReservation: c.MemoryReservation,
		})
	}
	return s.envelope(DetailTypeTask, t.arn, t.updatedAt, d)
}

func (s *Server) instanceEvent(ci *instance) worldapi.Event {
	o := ci.out()
	d := InstanceDetail{
		AgentConnected: ci.agentConnected, Attributes: o.Attributes, ClusterArn: ci.cluster.arn,
		ContainerInstanceArn: ci.arn, EC2InstanceID: ci.ec2InstanceID,
		RegisteredResources: o.RegisteredResources, RemainingResources: o.RemainingResources,
		Status: ci.status, StatusReason: ci.statusReason, Version: ci.version, VersionInfo: o.VersionInfo,
		RegisteredAt: eventTime(ci.registeredAt), UpdatedAt: eventTime(ci.updatedAt),
	}
	return s.envelope(DetailTypeInstance, ci.arn, ci.updatedAt, d)
}

func itoa(n int32) string {
	b, _ := json.Marshal(n)
	return string(b)
}
