package ecssim

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// InstanceRegistration is what the ECS agent sends when it starts on an EC2
// instance (RegisterContainerInstance), as the world drives it.
type InstanceRegistration struct {
	Cluster       string // name; the cluster must exist
	EC2InstanceID string
	AZ            string // ecs.availability-zone
	Host          worldapi.Host
	CPU           int32 // registered CPU units (default 2048)
	Memory        int32 // registered MiB (default 3767)
}

// Agent version the world's container instances report.
const (
	agentVersion  = "1.89.2"
	agentHash     = "3ce5a6b2"
	dockerVersion = "DockerVersion: 25.0.8"
)

// RegisterInstance registers a container instance. Its attributes are read
// once from the Host, as the ECS agent computes its capabilities once at
// start: a plugin that starts later is not advertised. It returns the
// container instance ARN.
func (s *Server) RegisterInstance(ctx context.Context, r InstanceRegistration) (string, error) {
	if r.Host == nil || r.EC2InstanceID == "" || r.AZ == "" {
		return "", errors.New("ecssim: RegisterInstance needs Host, EC2InstanceID and AZ")
	}
	attrs, err := r.Host.Attributes(ctx)
	if err != nil {
		return "", fmt.Errorf("ecssim: attributes of %s: %w", r.EC2InstanceID, err)
	}
	if r.CPU == 0 {
		r.CPU = 2048
	}
	if r.Memory == 0 {
		r.Memory = 3767
	}
	s.mu.Lock()
	c, err := s.lookupCluster(r.Cluster)
	if err != nil {
		s.mu.Unlock()
		return "", err
	}
	for _, ci := range c.instances {
		if ci.ec2InstanceID == r.EC2InstanceID && ci.status != statusInactive {
			s.mu.Unlock()
			return "", fmt.Errorf("ecssim: %s is already registered as %s", r.EC2InstanceID, ci.arn)
		}
	}
	now := s.now()
	ci := &instance{
		id: s.newID(32), cluster: c, ec2InstanceID: r.EC2InstanceID, az: r.AZ, host: r.Host,
		status: statusActive, agentConnected: true, registeredAt: now, updatedAt: now,
		cpu: r.CPU, memory: r.Memory, attributes: map[string]string{},
	}
	ci.arn = s.instanceArn(c.name, ci.id)
	attrs["ecs.availability-zone"] = r.AZ
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ci.setAttribute(n, attrs[n])
	}
	c.instances[ci.id] = ci
	c.instanceOrder = append(c.instanceOrder, ci.id)
	s.instanceChangedLocked(ci)
	s.log.Info("container instance registered", "cluster", c.name, "instance", r.EC2InstanceID, "containerInstance", ci.arn, "az", r.AZ)
	s.mu.Unlock()
	s.afterChange()
	return ci.arn, nil
}

func (ci *instance) setAttribute(name, value string) {
	if _, ok := ci.attributes[name]; !ok {
		ci.attrOrder = append(ci.attrOrder, name)
	}
	ci.attributes[name] = value
}

// instanceChangedLocked bumps the version and queues the state change event.
func (s *Server) instanceChangedLocked(ci *instance) {
	ci.version++
	ci.updatedAt = s.now()
	s.pending = append(s.pending, s.instanceEvent(ci))
	s.changedLocked()
}

// KillInstance is the EC2 instance dying under ECS (termination, power
// loss): the agent disconnects, every task on it is STOPPED with the reason
// ECS gives, and the container instance is deregistered (INACTIVE), as ECS
// does for a terminated instance. The Host itself is the world's to kill.
//
// An instance ECS already forgot (deregistered, INACTIVE) has nothing left
// to stop in ECS: its orphaned tasks die with the host, unseen by ECS.
func (s *Server) KillInstance(ec2InstanceID string) error {
	s.mu.Lock()
	ci := s.instanceByEC2(ec2InstanceID)
	if ci == nil {
		known := s.deregisteredByEC2(ec2InstanceID)
		s.mu.Unlock()
		if known {
			return nil
		}
		return fmt.Errorf("ecssim: no registered container instance for %s", ec2InstanceID)
	}
	reason := fmt.Sprintf("Host EC2 (instance %s) terminated.", ec2InstanceID)
	for _, t := range ci.cluster.liveTasks() {
		if t.instance == ci {
			s.stopDeadLocked(t, StopTerminationNotice, reason)
		}
	}
	ci.agentConnected = false
	ci.status = statusInactive
	ci.statusReason = "Instance deregistration forced by the EC2 instance termination"
	s.instanceChangedLocked(ci)
	s.log.Info("container instance killed", "cluster", ci.cluster.name, "instance", ec2InstanceID, "containerInstance", ci.arn)
	s.mu.Unlock()
	s.afterChange()
	return nil
}

// StopInstance is the EC2 instance stopping (a stop, or the stop of a Spot
// interruption): "When you stop a container instance, the tasks that are
// running on it are transitioned to the STOPPED status" ("Amazon ECS
// events"), and its agent disconnects; the container instance stays
// registered ("stopped container instances ... aren't automatically
// deregistered", DeregisterContainerInstance), so ECS places nothing there
// until StartInstance. ECS does not document the stop code; the world uses
// TerminationNotice with the reason "Host EC2 (instance <id>) stopped.".
func (s *Server) StopInstance(ec2InstanceID string) error {
	s.mu.Lock()
	ci := s.instanceByEC2(ec2InstanceID)
	if ci == nil {
		s.mu.Unlock()
		return fmt.Errorf("ecssim: no registered container instance for %s", ec2InstanceID)
	}
	reason := fmt.Sprintf("Host EC2 (instance %s) stopped.", ec2InstanceID)
	for _, t := range ci.cluster.liveTasks() {
		if t.instance == ci {
			s.stopDeadLocked(t, StopTerminationNotice, reason)
		}
	}
	if ci.agentConnected {
		ci.agentConnected = false
		s.instanceChangedLocked(ci)
	}
	s.log.Info("container instance stopped", "cluster", ci.cluster.name, "instance", ec2InstanceID, "containerInstance", ci.arn)
	s.mu.Unlock()
	s.afterChange()
	return nil
}

// StartInstance is a stopped instance starting again: its agent
// reconnects (the container instance was never deregistered).
func (s *Server) StartInstance(ec2InstanceID string) error {
	return s.setAgentConnected(ec2InstanceID, true)
}

// DisconnectAgent is the ECS agent losing its connection while the
// instance lives on: ECS keeps the tasks as they were and places nothing
// new there until ReconnectAgent.
func (s *Server) DisconnectAgent(ec2InstanceID string) error {
	return s.setAgentConnected(ec2InstanceID, false)
}

// ReconnectAgent undoes DisconnectAgent.
func (s *Server) ReconnectAgent(ec2InstanceID string) error {
	return s.setAgentConnected(ec2InstanceID, true)
}

func (s *Server) setAgentConnected(ec2InstanceID string, connected bool) error {
	s.mu.Lock()
	ci := s.instanceByEC2(ec2InstanceID)
	if ci == nil || ci.status == statusInactive {
		s.mu.Unlock()
		return fmt.Errorf("ecssim: no registered container instance for %s", ec2InstanceID)
	}
	if ci.agentConnected != connected {
		ci.agentConnected = connected
		s.instanceChangedLocked(ci)
	}
	s.mu.Unlock()
	s.afterChange()
	return nil
}

// deregisteredByEC2 reports whether ECS has an INACTIVE container instance
// for the EC2 instance.
func (s *Server) deregisteredByEC2(ec2InstanceID string) bool {
	for _, name := range s.order {
		c := s.clusters[name]
		for _, id := range c.instanceOrder {
			if ci := c.instances[id]; ci.ec2InstanceID == ec2InstanceID && ci.status == statusInactive {
				return true
			}
		}
	}
	return false
}

func (s *Server) instanceByEC2(ec2InstanceID string) *instance {
	for _, name := range s.order {
		c := s.clusters[name]
		for _, id := range c.instanceOrder {
			if ci := c.instances[id]; ci.ec2InstanceID == ec2InstanceID && ci.status != statusInactive {
				return ci
			}
		}
	}
	return nil
}

// remaining is registered minus what live tasks reserve.
func (ci *instance) remaining() (cpu, mem int32, running, pending int32) {
	cpu, mem = ci.cpu, ci.memory
	for _, t := range ci.cluster.liveTasks() {
		if t.instance != ci {
			continue
		}
		cpu -= t.cpu
		mem -= t.mem
		if t.lastStatus == statusRunning {
			running++
		} else {
			pending++
		}
	}
	return cpu, mem, running, pending
}

func resources(cpu, mem int32) []resourceJSON {
	return []resourceJSON{
		{Name: "CPU", Type: "INTEGER", IntegerValue: cpu},
		{Name: "MEMORY", Type: "INTEGER", IntegerValue: mem},
		{Name: "PORTS", Type: "STRINGSET", StringSetValue: []string{"22", "2375", "2376", "51678", "51679"}},
		{Name: "PORTS_UDP", Type: "STRINGSET", StringSetValue: []string{}},
	}
}

type versionInfoJSON struct {
	AgentVersion  string `json:"agentVersion"`
	AgentHash     string `json:"agentHash"`
	DockerVersion string `json:"dockerVersion"`
}

type instanceJSON struct {
	ContainerInstanceArn string          `json:"containerInstanceArn"`
	EC2InstanceID        string          `json:"ec2InstanceId"`
	Version              int64           `json:"version"`
	VersionInfo          versionInfoJSON `json:"versionInfo"`
	RemainingResources   []resourceJSON  `json:"remainingResources"`
	RegisteredResources  []resourceJSON  `json:"registeredResources"`
	Status               string          `json:"status"`
	StatusReason         string          `json:"statusReason,omitempty"`
	AgentConnected       bool            `json:"agentConnected"`
	RunningTasksCount    int32           `json:"runningTasksCount"`
	PendingTasksCount    int32           `json:"pendingTasksCount"`
	Attributes           []attributeJSON `json:"attributes"`
	RegisteredAt         *epoch          `json:"registeredAt,omitempty"`
	Attachments          []struct{}      `json:"attachments"`
	Tags                 []tagJSON       `json:"tags"`
}

func (ci *instance) attributeList() []attributeJSON {
	out := make([]attributeJSON, 0, len(ci.attrOrder))
	for _, n := range ci.attrOrder {
		a := attributeJSON{Name: n}
		if v := ci.attributes[n]; v != "" {
			a.Value = &v
		}
		out = append(out, a)
	}
	return out
}

func (ci *instance) out() instanceJSON {
	cpu, mem, running, pending := ci.remaining()
	return instanceJSON{
		ContainerInstanceArn: ci.arn, EC2InstanceID: ci.ec2InstanceID, Version: ci.version,
		VersionInfo:        versionInfoJSON{AgentVersion: agentVersion, AgentHash: agentHash, DockerVersion: dockerVersion},
		RemainingResources: resources(cpu, mem), RegisteredResources: resources(ci.cpu, ci.memory),
		Status: ci.status, StatusReason: ci.statusReason, AgentConnected: ci.agentConnected,
		RunningTasksCount: running, PendingTasksCount: pending,
		Attributes: ci.attributeList(), RegisteredAt: epochPtr(ci.registeredAt),
		Attachments: []struct{}{}, Tags: []tagJSON{},
	}
}

type listContainerInstancesRequest struct {
	Cluster string `json:"cluster"`
	Filter  string `json:"filter"`
	Status  string `json:"status"`
	paging
}

func (s *Server) listContainerInstances(req listContainerInstancesRequest) (any, error) {
	match, err := parseInstanceFilter(req.Filter)
	if err != nil {
		return nil, err
	}
	switch req.Status {
	case "", statusActive, statusDraining, statusInactive, "REGISTERING", "DEREGISTERING", "REGISTRATION_FAILED":
	default:
		return nil, invalidParameter("Invalid status %s.", req.Status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookupCluster(req.Cluster)
	if err != nil {
		return nil, err
	}
	arns := []string{}
	for _, id := range c.instanceOrder {
		ci := c.instances[id]
		if ((req.Status == "" && ci.status != statusInactive) || ci.status == req.Status) && match(ci) {
			arns = append(arns, ci.arn)
		}
	}
	return listPage("containerInstanceArns", arns, req.paging, 100, 100)
}

type describeContainerInstancesRequest struct {
	Cluster            string   `json:"cluster"`
	ContainerInstances []string `json:"containerInstances"`
	Include            []string `json:"include"`
}

func (s *Server) describeContainerInstances(req describeContainerInstancesRequest) (any, error) {
	if len(req.ContainerInstances) == 0 || len(req.ContainerInstances) > 100 {
		return nil, invalidParameter("containerInstances must have between 1 and 100 elements.")
	}
	if err := checkInclude(req.Include, "TAGS", "CONTAINER_INSTANCE_HEALTH"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookupCluster(req.Cluster)
	if err != nil {
		return nil, err
	}
	out, failures := describeEach(s, c, "container-instance", req.ContainerInstances,
		func(ref string) *instance { return c.findInstance(s, ref) }, (*instance).out)
	return map[string]any{"containerInstances": out, "failures": failures}, nil
}

// refArn spells a reference as the long ARN ECS echoes in failures.
func (s *Server) refArn(resource, clusterName, ref string) string {
	if _, id, ok := s.resourceID(resource, ref); ok && !strings.HasPrefix(ref, "arn:") {
		return s.arn(resource + "/" + clusterName + "/" + id)
	}
	return ref
}

type updateInstancesStateRequest struct {
	Cluster            string   `json:"cluster"`
	ContainerInstances []string `json:"containerInstances"`
	Status             string   `json:"status"`
}

func (s *Server) updateContainerInstancesState(req updateInstancesStateRequest) (any, error) {
	if req.Status != statusActive && req.Status != statusDraining {
		return nil, invalidParameter("Container instance status must be ACTIVE or DRAINING.")
	}
	if len(req.ContainerInstances) == 0 || len(req.ContainerInstances) > 10 {
		return nil, invalidParameter("containerInstances must have between 1 and 10 elements.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookupCluster(req.Cluster)
	if err != nil {
		return nil, err
	}
	out, failures := []instanceJSON{}, []failureJSON{}
	for _, ref := range req.ContainerInstances {
		ci := c.findInstance(s, ref)
		if ci == nil || ci.status == statusInactive {
			failures = append(failures, s.missing("container-instance", c.name, ref))
			continue
		}
		if ci.status != req.Status {
			ci.status = req.Status
			s.instanceChangedLocked(ci)
			s.log.Info("container instance state changed", "cluster", c.name, "instance", ci.ec2InstanceID, "containerInstance", ci.arn, "status", ci.status)
		}
		out = append(out, ci.out())
	}
	return map[string]any{"containerInstances": out, "failures": failures}, nil
}

type deregisterInstanceRequest struct {
	Cluster           string `json:"cluster"`
	ContainerInstance string `json:"containerInstance"`
	Force             *bool  `json:"force"`
}

// Stop code and reason of a task orphaned by a forced deregistration. ECS's
// guides say such tasks are stopped in ECS ("This stops all tasks on the
// instance", "Amazon ECS events") while their containers keep running on the
// host, "no longer monitored or accounted for by Amazon ECS"
// (DeregisterContainerInstance, force); they do not give the stop code or
// reason, so these are the world's words.
const (
	stopCodeOrphaned   = StopUserInitiated
	stopReasonOrphaned = "Container instance deregistered with force: the task is orphaned on its host"
)

// deregisterContainerInstance is DeregisterContainerInstance. Without force
// ECS refuses while tasks run there ("the API won't let you succeed unless
// you have done so or use the force flag", ECS agent maintainers,
// aws/amazon-ecs-agent#125; the message is moto's). With force, every task
// there is STOPPED in ECS at once (one Task State Change each) but nothing
// is asked of the host: its containers keep running, orphaned; a service
// replaces its tasks elsewhere. The container instance becomes INACTIVE with
// its agent disconnected (one Container Instance State Change).
func (s *Server) deregisterContainerInstance(req deregisterInstanceRequest) (any, error) {
	if req.ContainerInstance == "" {
		return nil, invalidParameter("containerInstance can not be blank.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookupCluster(req.Cluster)
	if err != nil {
		return nil, err
	}
	ci := c.findInstance(s, req.ContainerInstance)
	if ci == nil || ci.status == statusInactive {
		return nil, invalidParameter("Container instance %s not found.", req.ContainerInstance)
	}
	var running []*task
	for _, t := range c.liveTasks() {
		if t.instance == ci {
			running = append(running, t)
		}
	}
	force := req.Force != nil && *req.Force
	if len(running) > 0 && !force {
		return nil, invalidParameter("Found running tasks on the instance.")
	}
	for _, t := range running {
		t.orphaned = true
		s.stopDeadLocked(t, stopCodeOrphaned, stopReasonOrphaned)
	}
	ci.status, ci.agentConnected = statusInactive, false
	s.instanceChangedLocked(ci)
	s.log.Info("container instance deregistered", "cluster", c.name, "instance", ci.ec2InstanceID,
		"containerInstance", ci.arn, "force", force, "orphanedTasks", len(running))
	return map[string]any{"containerInstance": ci.out()}, nil
}

var attributeNamePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_./-]{0,127}$`)
var attributeValuePattern = regexp.MustCompile(`^[a-zA-Z0-9_.@:/-]([a-zA-Z0-9_.@:/ -]{0,126}[a-zA-Z0-9_.@:/-])?$`)

type putAttributesRequest struct {
	Cluster    string          `json:"cluster"`
	Attributes []attributeJSON `json:"attributes"`
}

func (s *Server) putAttributes(req putAttributesRequest) (any, error) {
	if len(req.Attributes) == 0 {
		return nil, invalidParameter("Attributes cannot be empty.")
	}
	if len(req.Attributes) > 10 {
		return nil, awsproto.BadRequest(codeAttributeLimit, "You can specify up to 10 attributes per call.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookupCluster(req.Cluster)
	if err != nil {
		return nil, err
	}
	targets := make([]*instance, len(req.Attributes))
	for i, a := range req.Attributes {
		if !attributeNamePattern.MatchString(a.Name) {
			return nil, invalidParameter("Invalid attribute name %q.", a.Name)
		}
		if a.Value != nil && !attributeValuePattern.MatchString(*a.Value) {
			return nil, invalidParameter("Invalid attribute value %q.", *a.Value)
		}
		if a.TargetType != "" && a.TargetType != "container-instance" {
			return nil, invalidParameter("Invalid target type %s.", a.TargetType)
		}
		if targets[i] = c.findInstance(s, a.TargetID); targets[i] == nil || targets[i].status == statusInactive {
			return nil, awsproto.BadRequest(codeTargetNotFound, "Could not find %s.", a.TargetID)
		}
	}
	out := make([]attributeJSON, len(req.Attributes))
	touched := []*instance{}
	for i, a := range req.Attributes {
		ci := targets[i]
		v := ""
		if a.Value != nil {
			v = *a.Value
		}
		ci.setAttribute(a.Name, v)
		out[i] = attributeJSON{Name: a.Name, Value: a.Value, TargetType: "container-instance", TargetID: ci.arn}
		if !slices.Contains(touched, ci) {
			touched = append(touched, ci)
		}
	}
	for _, ci := range touched {
		s.instanceChangedLocked(ci)
	}
	return map[string]any{"attributes": out}, nil
}

type listAttributesRequest struct {
	Cluster        string `json:"cluster"`
	TargetType     string `json:"targetType"`
	AttributeName  string `json:"attributeName"`
	AttributeValue string `json:"attributeValue"`
	paging
}

func (s *Server) listAttributes(req listAttributesRequest) (any, error) {
	if req.TargetType != "container-instance" {
		return nil, invalidParameter("targetType must be container-instance.")
	}
	if req.AttributeValue != "" && req.AttributeName == "" {
		return nil, invalidParameter("attributeValue can be specified only with attributeName.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookupCluster(req.Cluster)
	if err != nil {
		return nil, err
	}
	all := []attributeJSON{}
	for _, id := range c.instanceOrder {
		ci := c.instances[id]
		if ci.status == statusInactive {
			continue
		}
		for _, a := range ci.attributeList() {
			if req.AttributeName != "" && a.Name != req.AttributeName {
				continue
			}
			if req.AttributeValue != "" && (a.Value == nil || *a.Value != req.AttributeValue) {
				continue
			}
			a.TargetType, a.TargetID = "container-instance", ci.arn
			all = append(all, a)
		}
	}
	return listPage("attributes", all, req.paging, 100, 100)
}

// parseInstanceFilter reads the part of the cluster query language the
// world serves in ListContainerInstances' filter: "ec2InstanceId == ID"
// and "ec2InstanceId in [ID, ...]" (Amazon ECS Developer Guide, "Create
// expressions to define container instances": subject ec2InstanceId,
// operators ==, !=, in, !in, =~, !~). Any other expression is refused,
// which is stricter than ECS, never kinder.
func parseInstanceFilter(f string) (func(*instance) bool, error) {
	f = strings.TrimSpace(f)
	if f == "" {
		return func(*instance) bool { return true }, nil
	}
	subject, rest, ok := strings.Cut(f, " ")
	if !ok || subject != "ec2InstanceId" {
		return nil, invalidParameter("filter %q: the local ECS world serves only ec2InstanceId == ID and ec2InstanceId in [ID, ...]", f)
	}
	rest = strings.TrimSpace(rest)
	var ids []string
	switch {
	case strings.HasPrefix(rest, "=="):
		ids = []string{strings.TrimSpace(strings.TrimPrefix(rest, "=="))}
	case strings.HasPrefix(rest, "in ") && strings.HasSuffix(rest, "]"):
		list := strings.TrimSpace(strings.TrimPrefix(rest, "in "))
		if !strings.HasPrefix(list, "[") {
			return nil, invalidParameter("filter %q: want ec2InstanceId in [ID, ...]", f)
		}
		for _, id := range strings.Split(list[1:len(list)-1], ",") {
			ids = append(ids, strings.TrimSpace(id))
		}
	default:
		return nil, invalidParameter("filter %q: the local ECS world serves only ec2InstanceId == ID and ec2InstanceId in [ID, ...]", f)
	}
	for _, id := range ids {
		if id == "" || strings.ContainsAny(id, " []") {
			return nil, invalidParameter("filter %q: %q is not an instance id", f, id)
		}
	}
	return func(ci *instance) bool { return slices.Contains(ids, ci.ec2InstanceID) }, nil
}
