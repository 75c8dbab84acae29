package ecssim

import (
	"fmt"
	"slices"
	"strconv"
)

type attachmentJSON struct {
	ID      string     `json:"id"`
	Type    string     `json:"type"`
	Status  string     `json:"status"`
	Details []keyValue `json:"details"`
}

type networkInterfaceJSON struct {
	AttachmentID       string `json:"attachmentId"`
	PrivateIPv4Address string `json:"privateIpv4Address"`
}

type containerJSON struct {
	ContainerArn      string                 `json:"containerArn"`
	TaskArn           string                 `json:"taskArn"`
	Name              string                 `json:"name"`
	Image             string                 `json:"image"`
	RuntimeID         string                 `json:"runtimeId,omitempty"`
	LastStatus        string                 `json:"lastStatus"`
	ExitCode          *int                   `json:"exitCode,omitempty"`
	Reason            string                 `json:"reason,omitempty"`
	NetworkBindings   []struct{}             `json:"networkBindings"`
	NetworkInterfaces []networkInterfaceJSON `json:"networkInterfaces"`
	HealthStatus      string                 `json:"healthStatus"`
	CPU               string                 `json:"cpu"`
	Memory            string                 `json:"memory,omitempty"`
	MemoryReservation string                 `json:"memoryReservation,omitempty"`
}

type containerOverrideJSON struct {
	Name string `json:"name"`
}

type overridesJSON struct {
	ContainerOverrides            []containerOverrideJSON `json:"containerOverrides"`
	InferenceAcceleratorOverrides []struct{}              `json:"inferenceAcceleratorOverrides"`
}

type taskJSON struct {
	Attachments          []attachmentJSON `json:"attachments"`
	Attributes           []attributeJSON  `json:"attributes"`
	AvailabilityZone     string           `json:"availabilityZone,omitempty"`
	ClusterArn           string           `json:"clusterArn"`
	ContainerInstanceArn string           `json:"containerInstanceArn,omitempty"`
	Containers           []containerJSON  `json:"containers"`
	CPU                  string           `json:"cpu,omitempty"`
	CreatedAt            *epoch           `json:"createdAt,omitempty"`
	DesiredStatus        string           `json:"desiredStatus"`
	EnableExecuteCommand bool             `json:"enableExecuteCommand"`
	ExecutionStoppedAt   *epoch           `json:"executionStoppedAt,omitempty"`
	Group                string           `json:"group"`
	HealthStatus         string           `json:"healthStatus"`
	LastStatus           string           `json:"lastStatus"`
	LaunchType           string           `json:"launchType"`
	Memory               string           `json:"memory,omitempty"`
	Overrides            overridesJSON    `json:"overrides"`
	PullStartedAt        *epoch           `json:"pullStartedAt,omitempty"`
	PullStoppedAt        *epoch           `json:"pullStoppedAt,omitempty"`
	StartedAt            *epoch           `json:"startedAt,omitempty"`
	StartedBy            string           `json:"startedBy,omitempty"`
	StopCode             string           `json:"stopCode,omitempty"`
	StoppedAt            *epoch           `json:"stoppedAt,omitempty"`
	StoppedReason        string           `json:"stoppedReason,omitempty"`
	StoppingAt           *epoch           `json:"stoppingAt,omitempty"`
	Tags                 []tagJSON        `json:"tags"`
	TaskArn              string           `json:"taskArn"`
	TaskDefinitionArn    string           `json:"taskDefinitionArn"`
	Version              int64            `json:"version"`
}

func (t *task) attachments(eniType, region string) []attachmentJSON {
	if !t.awsvpc() {
		return []attachmentJSON{}
	}
	return []attachmentJSON{{
		ID: t.eni.attachmentID, Type: eniType, Status: t.eni.status,
		Details: []keyValue{
			{Name: "subnetId", Value: t.eni.subnet},
			{Name: "networkInterfaceId", Value: t.eni.eniID},
			{Name: "macAddress", Value: t.eni.mac},
			{Name: "privateDnsName", Value: "ip-" + dashed(t.eni.ip) + "." + region + ".compute.internal"},
			{Name: "privateIPv4Address", Value: t.eni.ip},
		},
	}}
}

func dashed(ip string) string {
	b := []byte(ip)
	for i := range b {
		if b[i] == '.' {
			b[i] = '-'
		}
	}
	return string(b)
}

func (t *task) containersOut() []containerJSON {
	out := make([]containerJSON, 0, len(t.containers))
	for _, c := range t.containers {
		cj := containerJSON{
			ContainerArn: c.arn, TaskArn: t.arn, Name: c.name, Image: c.image, RuntimeID: c.runtimeID,
			LastStatus: c.lastStatus, ExitCode: c.exitCode, Reason: c.reason,
			NetworkBindings: []struct{}{}, NetworkInterfaces: []networkInterfaceJSON{},
			HealthStatus: "UNKNOWN", CPU: strconv.Itoa(int(c.cpu)),
		}
		if c.memory != nil {
			cj.Memory = strconv.Itoa(int(*c.memory))
		}
		if c.memoryRes != nil {
			cj.MemoryReservation = strconv.Itoa(int(*c.memoryRes))
		}
		if t.awsvpc() && t.eni.ip != "" {
			cj.NetworkInterfaces = []networkInterfaceJSON{{AttachmentID: t.eni.attachmentID, PrivateIPv4Address: t.eni.ip}}
		}
		out = append(out, cj)
	}
	return out
}

func (t *task) out(region string) taskJSON {
	o := taskJSON{
		Attachments: t.attachments("ElasticNetworkInterface", region),
		Attributes:  []attributeJSON{{Name: "ecs.cpu-architecture", Value: ptr("x86_64")}},
		ClusterArn:  t.cluster.arn, Containers: t.containersOut(),
		CPU: strconv.Itoa(int(t.cpu)), Memory: strconv.Itoa(int(t.mem)),
		CreatedAt: epochPtr(t.createdAt), DesiredStatus: t.desired,
		ExecutionStoppedAt: epochPtr(t.execStopped), Group: t.group, HealthStatus: "UNKNOWN",
		LastStatus: t.lastStatus, LaunchType: t.launchType, Overrides: t.overrides(),
		PullStartedAt: epochPtr(t.pullStarted), PullStoppedAt: epochPtr(t.pullStopped),
		StartedAt: epochPtr(t.startedAt), StartedBy: t.startedBy, StopCode: t.stopCode,
		StoppedAt: epochPtr(t.stoppedAt), StoppedReason: t.stopReason, StoppingAt: epochPtr(t.stoppingAt),
		Tags: []tagJSON{}, TaskArn: t.arn, TaskDefinitionArn: t.def.arn, Version: t.version,
	}
	if t.instance != nil {
		o.ContainerInstanceArn = t.instance.arn
		o.AvailabilityZone = t.instance.az
	}
	return o
}

func (t *task) overrides() overridesJSON {
	o := overridesJSON{ContainerOverrides: []containerOverrideJSON{}, InferenceAcceleratorOverrides: []struct{}{}}
	for _, c := range t.containers {
		o.ContainerOverrides = append(o.ContainerOverrides, containerOverrideJSON{Name: c.name})
	}
	return o
}

func ptr[T any](v T) *T { return &v }

// newTaskLocked creates a task placed on ci and queues its first event.
func (s *Server) newTaskLocked(c *cluster, d *taskDef, ci *instance, sv *service, startedBy, group string, network *networkConfigurationJSON) *task {
	now := s.now()
	t := &task{
		id: s.newID(32), cluster: c, def: d, instance: ci, service: sv,
		startedBy: startedBy, group: group, launchType: "EC2", network: network,
		desired: statusRunning, cpu: d.cpu, mem: d.mem, createdAt: now,
		hasLB: sv != nil && len(sv.loadBalancers) > 0,
	}
	t.arn = s.taskArn(c.name, t.id)
	for _, cd := range d.req.ContainerDefinitions {
		t.containers = append(t.containers, &container{
			arn:  s.containerArn(c.name, t.id, s.newUUID()),
			name: cd.Name, image: cd.Image, lastStatus: statusPending,
			cpu: cd.CPU, memory: cd.Memory, memoryRes: cd.MemoryReservation,
		})
	}
	t.lastStatus = statusPending
	if t.awsvpc() {
		t.lastStatus = statusProvisioning
		t.eni = eni{
			attachmentID: s.newUUID(), eniID: "eni-" + s.newID(17), status: "PRECREATED",
			mac:    fmt.Sprintf("0a:%s:%s:%s:%s:%s", s.newID(2), s.newID(2), s.newID(2), s.newID(2), s.newID(2)),
			ip:     fmt.Sprintf("10.0.%d.%d", s.rng.Intn(256), 4+s.rng.Intn(250)),
			subnet: network.AwsvpcConfiguration.Subnets[0],
		}
		t.due = now.Add(s.opts.Timing.Provision)
	}
	c.tasks[t.id] = t
	c.taskOrder = append(c.taskOrder, t.id)
	c.liveOrder = append(c.liveOrder, t)
	s.taskChangedLocked(t)
	s.instanceChangedLocked(ci)
	s.log.Info("task placed", "cluster", c.name, "task", t.arn, "instance", ci.ec2InstanceID, "group", group)
	return t
}

type runTaskRequest struct {
	Cluster              string                    `json:"cluster"`
	TaskDefinition       string                    `json:"taskDefinition"`
	Count                *int32                    `json:"count"`
	StartedBy            string                    `json:"startedBy"`
	Group                string                    `json:"group"`
	LaunchType           string                    `json:"launchType"`
	NetworkConfiguration *networkConfigurationJSON `json:"networkConfiguration"`
	PlacementConstraints []placementConstraintJSON `json:"placementConstraints"`
	PlacementStrategy    []placementStrategyJSON   `json:"placementStrategy"`
	Tags                 []tagJSON                 `json:"tags"`
	EnableECSManagedTags *bool                     `json:"enableECSManagedTags"`
	PropagateTags        string                    `json:"propagateTags"`
	EnableExecuteCommand *bool                     `json:"enableExecuteCommand"`
	ClientToken          string                    `json:"clientToken"`
	ContainerInstances   []string                  `json:"containerInstances"` // StartTask only
}

// checkNetwork applies ECS's rule tying networkConfiguration to awsvpc.
func checkNetwork(d *taskDef, n *networkConfigurationJSON) error {
	awsvpc := d.req.NetworkMode == "awsvpc"
	switch {
	case awsvpc && (n == nil || n.AwsvpcConfiguration == nil):
		return invalidParameter("Network Configuration must be provided when networkMode 'awsvpc' is specified.")
	case !awsvpc && n != nil:
		return invalidParameter("Network Configuration is not valid for the given networkMode of this task definition.")
	case awsvpc && len(n.AwsvpcConfiguration.Subnets) == 0:
		return invalidParameter("subnets can not be empty.")
	case awsvpc && len(n.AwsvpcConfiguration.Subnets) > 16:
		return invalidParameter("subnets can have at most 16 items.")
	case awsvpc && n.AwsvpcConfiguration.AssignPublicIP == "ENABLED":
		return invalidParameter("Assign public IP is not supported for this launch type.")
	}
	return nil
}

func checkLaunchType(lt string) error {
	if lt != "" && lt != "EC2" {
		return invalidParameter("launchType %s is not supported by the local ECS world (EC2 only)", lt)
	}
	return nil
}

func checkStrategy(ps []placementStrategyJSON) error {
	for _, p := range ps {
		switch {
		case p.Type == "random":
		case p.Type == "spread" && (p.Field == "instanceId" || p.Field == "host" || p.Field == "attribute:ecs.availability-zone"):
		default:
			return invalidParameter("placement strategy %s(%s) is not supported by the local ECS world (spread by AZ/instanceId, random)", p.Type, p.Field)
		}
	}
	return nil
}

// checkPlacement checks what RunTask and CreateService say about where
// tasks go and compiles the constraints.
func checkPlacement(launchType string, strategy []placementStrategyJSON, constraints []placementConstraintJSON) ([]*constraintExpr, bool, error) {
	if err := checkLaunchType(launchType); err != nil {
		return nil, false, err
	}
	if err := checkStrategy(strategy); err != nil {
		return nil, false, err
	}
	return compileConstraints(constraints)
}

func compileConstraints(pcs []placementConstraintJSON) (exprs []*constraintExpr, distinct bool, err error) {
	if len(pcs) > 10 {
		return nil, false, invalidParameter("Too many placement constraints: at most 10.")
	}
	for _, pc := range pcs {
		switch pc.Type {
		case "distinctInstance":
			if pc.Expression != "" {
				return nil, false, invalidParameter("distinctInstance takes no expression.")
			}
			distinct = true
		case "memberOf":
			e, perr := parseConstraint(pc.Expression)
			if perr != nil {
				return nil, false, invalidParameter("Invalid placement constraint expression %q: %v", pc.Expression, perr)
			}
			exprs = append(exprs, e)
		default:
			return nil, false, invalidParameter("Invalid placement constraint type %q.", pc.Type)
		}
	}
	return exprs, distinct, nil
}

func (s *Server) runTask(req runTaskRequest) (any, error) {
	if req.ContainerInstances != nil {
		return nil, invalidParameter("parameter containerInstances is not supported by RunTask")
	}
	return s.launch(req, false)
}

func (s *Server) startTask(req runTaskRequest) (any, error) {
	if req.Count != nil || req.LaunchType != "" || req.PlacementConstraints != nil || req.PlacementStrategy != nil || req.ClientToken != "" {
		return nil, invalidParameter("StartTask takes containerInstances, not count, launchType or placement")
	}
	if len(req.ContainerInstances) == 0 || len(req.ContainerInstances) > 10 {
		return nil, invalidParameter("containerInstances must have between 1 and 10 elements.")
	}
	return s.launch(req, true)
}

// launch serves RunTask (placement by the scheduler) and StartTask (on the
// named container instances, constraints not applied, as ECS does).
func (s *Server) launch(req runTaskRequest, explicit bool) (any, error) {
	count := int32(1)
	if req.Count != nil {
		count = *req.Count
	}
	if count < 1 || count > 10 {
		return nil, invalidParameter("Count must be between 1 and 10.")
	}
	if len(req.StartedBy) > 128 {
		return nil, invalidParameter("startedBy can be up to 128 characters.")
	}
	exprs, distinct, err := checkPlacement(req.LaunchType, req.PlacementStrategy, req.PlacementConstraints)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookupCluster(req.Cluster)
	if err != nil {
		return nil, err
	}
	d, err := s.launchableTaskDef(req.TaskDefinition, req.NetworkConfiguration)
	if err != nil {
		return nil, err
	}
	group := req.Group
	if group == "" {
		group = "family:" + d.family
	}
	tasks, failures := []taskJSON{}, []failureJSON{}
	if explicit {
		for _, ref := range req.ContainerInstances {
			ci := c.findInstance(s, ref)
			if ci == nil || ci.status == statusInactive {
				failures = append(failures, s.missing("container-instance", c.name, ref))
				continue
			}
			p := placement{def: &taskDef{cpu: d.cpu, mem: d.mem, requires: d.requires}}
			if why := p.check(ci); why != "" {
				failures = append(failures, failureJSON{Arn: ci.arn, Reason: why})
				continue
			}
			tasks = append(tasks, s.newTaskLocked(c, d, ci, nil, req.StartedBy, group, req.NetworkConfiguration).out(s.opts.Region))
		}
		return map[string]any{"tasks": tasks, "failures": failures}, nil
	}
	if len(c.instances) == 0 {
		return nil, invalidParameter("No Container Instances were found in your cluster.")
	}
	p := placement{def: d, constraints: exprs, distinct: distinct, group: group}
	for range count {
		ci, why := s.choose(c, p)
		if ci == nil {
			failures = append(failures, why...)
			break
		}
		tasks = append(tasks, s.newTaskLocked(c, d, ci, nil, req.StartedBy, group, req.NetworkConfiguration).out(s.opts.Region))
	}
	return map[string]any{"tasks": tasks, "failures": failures}, nil
}

type stopTaskRequest struct {
	Cluster string `json:"cluster"`
	Task    string `json:"task"`
	Reason  string `json:"reason"`
}

func (s *Server) stopTask(req stopTaskRequest) (any, error) {
	if len(req.Reason) > 255 {
		return nil, invalidParameter("reason can be up to 255 characters.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookupCluster(req.Cluster)
	if err != nil {
		return nil, err
	}
	t := c.findTask(s, req.Task)
	if t == nil {
		return nil, invalidParameter("The referenced task was not found.")
	}
	reason := req.Reason
	if reason == "" {
		reason = "Task stopped by user"
	}
	s.requestStopLocked(t, StopUserInitiated, reason)
	return map[string]any{"task": t.out(s.opts.Region)}, nil
}

type listTasksRequest struct {
	Cluster           string `json:"cluster"`
	ContainerInstance string `json:"containerInstance"`
	Family            string `json:"family"`
	ServiceName       string `json:"serviceName"`
	StartedBy         string `json:"startedBy"`
	DesiredStatus     string `json:"desiredStatus"`
	LaunchType        string `json:"launchType"`
	paging
}

func (s *Server) listTasks(req listTasksRequest) (any, error) {
	// "When you specify startedBy as the filter, it must be the only filter
	// that you use." (ListTasks, ECS API Reference). desiredStatus and
	// launchType count as filters here too: the stricter reading.
	if req.StartedBy != "" && (req.ContainerInstance != "" || req.Family != "" || req.ServiceName != "" ||
		req.DesiredStatus != "" || req.LaunchType != "") {
		return nil, invalidParameter("startedBy must be the only filter of ListTasks.")
	}
	if req.DesiredStatus == "" {
		req.DesiredStatus = statusRunning
	}
	if !slices.Contains([]string{statusRunning, statusPending, statusStopped}, req.DesiredStatus) {
		return nil, invalidParameter("Invalid desiredStatus %s.", req.DesiredStatus)
	}
	if req.LaunchType != "" && req.LaunchType != "EC2" && req.LaunchType != "FARGATE" && req.LaunchType != "EXTERNAL" {
		return nil, invalidParameter("Invalid launchType %s.", req.LaunchType)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookupCluster(req.Cluster)
	if err != nil {
		return nil, err
	}
	var ci *instance
	if req.ContainerInstance != "" {
		if ci = c.findInstance(s, req.ContainerInstance); ci == nil {
			return nil, invalidParameter("Container instance can not be found.")
		}
	}
	var sv *service
	if req.ServiceName != "" {
		if sv = c.findService(s, req.ServiceName); sv == nil {
			return nil, serviceNotFound()
		}
	}
	arns := []string{}
	for _, id := range c.taskOrder {
		t := c.tasks[id]
		// ECS never sets a desired status of PENDING: that filter finds nothing.
		switch {
		case t.desired != req.DesiredStatus:
		case ci != nil && t.instance != ci:
		case sv != nil && t.service != sv:
		case req.Family != "" && t.def.family != req.Family:
		case req.StartedBy != "" && t.startedBy != req.StartedBy:
		case req.LaunchType != "" && t.launchType != req.LaunchType:
		default:
			arns = append(arns, t.arn)
		}
	}
	return listPage("taskArns", arns, req.paging, 100, 100)
}

type describeTasksRequest struct {
	Cluster string   `json:"cluster"`
	Tasks   []string `json:"tasks"`
	Include []string `json:"include"`
}

func (s *Server) describeTasks(req describeTasksRequest) (any, error) {
	if len(req.Tasks) == 0 {
		return nil, invalidParameter("Tasks cannot be empty.")
	}
	if len(req.Tasks) > 100 {
		return nil, invalidParameter("Tasks cannot have more than 100 elements.")
	}
	if err := checkInclude(req.Include, "TAGS"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookupCluster(req.Cluster)
	if err != nil {
		return nil, err
	}
	out, failures := describeEach(s, c, "task", req.Tasks,
		func(ref string) *task { return c.findTask(s, ref) },
		func(t *task) taskJSON { return t.out(s.opts.Region) })
	return map[string]any{"tasks": out, "failures": failures}, nil
}
