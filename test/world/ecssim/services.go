package ecssim

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
)

var serviceNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)

type deploymentConfigurationJSON struct {
	MaximumPercent        *int32 `json:"maximumPercent,omitempty"`
	MinimumHealthyPercent *int32 `json:"minimumHealthyPercent,omitempty"`
}

type serviceEventJSON struct {
	ID        string `json:"id"`
	CreatedAt *epoch `json:"createdAt"`
	Message   string `json:"message"`
}

type deploymentJSON struct {
	ID                   string                    `json:"id"`
	Status               string                    `json:"status"`
	TaskDefinition       string                    `json:"taskDefinition"`
	DesiredCount         int32                     `json:"desiredCount"`
	PendingCount         int32                     `json:"pendingCount"`
	RunningCount         int32                     `json:"runningCount"`
	FailedTasks          int32                     `json:"failedTasks"`
	CreatedAt            *epoch                    `json:"createdAt"`
	UpdatedAt            *epoch                    `json:"updatedAt"`
	LaunchType           string                    `json:"launchType"`
	NetworkConfiguration *networkConfigurationJSON `json:"networkConfiguration,omitempty"`
	RolloutState         string                    `json:"rolloutState"`
	RolloutStateReason   string                    `json:"rolloutStateReason,omitempty"`
}

type serviceJSON struct {
	ServiceArn                    string                      `json:"serviceArn"`
	ServiceName                   string                      `json:"serviceName"`
	ClusterArn                    string                      `json:"clusterArn"`
	LoadBalancers                 []loadBalancerJSON          `json:"loadBalancers"`
	ServiceRegistries             []struct{}                  `json:"serviceRegistries"`
	Status                        string                      `json:"status"`
	DesiredCount                  int32                       `json:"desiredCount"`
	RunningCount                  int32                       `json:"runningCount"`
	PendingCount                  int32                       `json:"pendingCount"`
	LaunchType                    string                      `json:"launchType"`
	TaskDefinition                string                      `json:"taskDefinition"`
	DeploymentConfiguration       deploymentConfigurationJSON `json:"deploymentConfiguration"`
	Deployments                   []deploymentJSON            `json:"deployments"`
	Events                        []serviceEventJSON          `json:"events"`
	CreatedAt                     *epoch                      `json:"createdAt"`
	PlacementConstraints          []placementConstraintJSON   `json:"placementConstraints"`
	PlacementStrategy             []placementStrategyJSON     `json:"placementStrategy"`
	NetworkConfiguration          *networkConfigurationJSON   `json:"networkConfiguration,omitempty"`
	HealthCheckGracePeriodSeconds *int32                      `json:"healthCheckGracePeriodSeconds,omitempty"`
	SchedulingStrategy            string                      `json:"schedulingStrategy"`
	DeploymentController          map[string]string           `json:"deploymentController"`
	CreatedBy                     string                      `json:"createdBy"`
	EnableECSManagedTags          bool                        `json:"enableECSManagedTags"`
	PropagateTags                 string                      `json:"propagateTags"`
	EnableExecuteCommand          bool                        `json:"enableExecuteCommand"`
	Tags                          []tagJSON                   `json:"tags,omitempty"`
}

func (sv *service) deploymentID() string { return "ecs-svc/" + sv.id }

func (s *Server) serviceOut(sv *service, withTags bool) serviceJSON {
	var running, pending int32
	for _, t := range sv.cluster.liveTasks() {
		if t.service != sv || t.desired != statusRunning {
			continue
		}
		if t.lastStatus == statusRunning {
			running++
		} else if t.live() {
			pending++
		}
	}
	rollout := "COMPLETED"
	if running != sv.desired || pending > 0 {
		rollout = "IN_PROGRESS"
	}
	out := serviceJSON{
		ServiceArn: sv.arn, ServiceName: sv.name, ClusterArn: sv.cluster.arn,
		LoadBalancers: nonNil(sv.loadBalancers), ServiceRegistries: []struct{}{}, Status: sv.status,
		DesiredCount: sv.desired, RunningCount: running, PendingCount: pending, LaunchType: "EC2",
		TaskDefinition: sv.def.arn,
		DeploymentConfiguration: deploymentConfigurationJSON{
			MaximumPercent: ptr(sv.maxPercent), MinimumHealthyPercent: ptr(sv.minHealthy),
		},
		Deployments: []deploymentJSON{{
			ID: sv.deploymentID(), Status: "PRIMARY", TaskDefinition: sv.def.arn, DesiredCount: sv.desired,
			PendingCount: pending, RunningCount: running, CreatedAt: epochPtr(sv.deploymentAt),
			UpdatedAt: epochPtr(sv.updatedAt), LaunchType: "EC2", NetworkConfiguration: sv.network,
			RolloutState: rollout,
		}},
		Events: nonNil(sv.events), CreatedAt: epochPtr(sv.createdAt), PlacementConstraints: nonNil(sv.constraints),
		PlacementStrategy: nonNil(sv.strategy), NetworkConfiguration: sv.network,
		HealthCheckGracePeriodSeconds: sv.graceSeconds, SchedulingStrategy: "REPLICA",
		DeploymentController: map[string]string{"type": "ECS"},
		CreatedBy:            "arn:aws:iam::" + s.opts.Account + ":root", PropagateTags: "NONE",
	}
	if withTags {
		out.Tags = nonNil(sv.tags)
	}
	return out
}

// serviceEventLocked records a message in DescribeServices' events (newest
// first, 100 kept, as ECS does).
func (s *Server) serviceEventLocked(sv *service, format string, args ...any) {
	ev := serviceEventJSON{ID: s.newUUID(), CreatedAt: epochPtr(s.now()), Message: fmt.Sprintf("(service %s) ", sv.name) + fmt.Sprintf(format, args...)}
	sv.events = append([]serviceEventJSON{ev}, sv.events...)
	if len(sv.events) > 100 {
		sv.events = sv.events[:100]
	}
}

type createServiceRequest struct {
	Cluster                       string                       `json:"cluster"`
	ServiceName                   string                       `json:"serviceName"`
	TaskDefinition                string                       `json:"taskDefinition"`
	LoadBalancers                 []loadBalancerJSON           `json:"loadBalancers"`
	DesiredCount                  *int32                       `json:"desiredCount"`
	ClientToken                   string                       `json:"clientToken"`
	LaunchType                    string                       `json:"launchType"`
	Role                          string                       `json:"role"`
	DeploymentConfiguration       *deploymentConfigurationJSON `json:"deploymentConfiguration"`
	PlacementConstraints          []placementConstraintJSON    `json:"placementConstraints"`
	PlacementStrategy             []placementStrategyJSON      `json:"placementStrategy"`
	NetworkConfiguration          *networkConfigurationJSON    `json:"networkConfiguration"`
	HealthCheckGracePeriodSeconds *int32                       `json:"healthCheckGracePeriodSeconds"`
	SchedulingStrategy            string                       `json:"schedulingStrategy"`
	Tags                          []tagJSON                    `json:"tags"`
	EnableECSManagedTags          *bool                        `json:"enableECSManagedTags"`
	PropagateTags                 string                       `json:"propagateTags"`
	EnableExecuteCommand          *bool                        `json:"enableExecuteCommand"`
}

func checkDeploymentConfig(dc *deploymentConfigurationJSON, minHealthy, maxPercent *int32) error {
	if dc == nil {
		return nil
	}
	if dc.MaximumPercent != nil {
		*maxPercent = *dc.MaximumPercent
	}
	if dc.MinimumHealthyPercent != nil {
		*minHealthy = *dc.MinimumHealthyPercent
	}
	if *minHealthy < 0 || *minHealthy > 100 {
		return invalidParameter("minimumHealthyPercent must be between 0 and 100.")
	}
	if *maxPercent < 100 {
		// ECS lets a replica service go under 100 only with daemon or
		// external deployments; tether's services never do.
		return invalidParameter("maximumPercent must be at least 100.")
	}
	return nil
}

func checkLoadBalancers(d *taskDef, lbs []loadBalancerJSON) error {
	for _, lb := range lbs {
		if lb.TargetGroupArn == "" && lb.LoadBalancerName == "" {
			return invalidParameter("loadBalancers need a targetGroupArn or a loadBalancerName.")
		}
		i := slices.IndexFunc(d.req.ContainerDefinitions, func(c containerDefinitionJSON) bool { return c.Name == lb.ContainerName })
		if i < 0 {
			return invalidParameter("The container %s does not exist in the task definition.", lb.ContainerName)
		}
		if !slices.ContainsFunc(d.req.ContainerDefinitions[i].PortMappings, func(p portMappingJSON) bool { return p.ContainerPort == lb.ContainerPort }) {
			return invalidParameter("The container %s did not have a container port %d defined.", lb.ContainerName, lb.ContainerPort)
		}
	}
	return nil
}

func (s *Server) createService(req createServiceRequest) (any, error) {
	if !serviceNamePattern.MatchString(req.ServiceName) {
		return nil, invalidParameter("Service name can have up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens.")
	}
	if req.SchedulingStrategy != "" && req.SchedulingStrategy != "REPLICA" {
		return nil, invalidParameter("schedulingStrategy %s is not supported by the local ECS world", req.SchedulingStrategy)
	}
	if req.DesiredCount == nil {
		return nil, invalidParameter("desiredCount is required for services with schedulingStrategy REPLICA.")
	}
	if *req.DesiredCount < 0 {
		return nil, invalidParameter("desiredCount must be 0 or more.")
	}
	minHealthy, maxPercent := int32(100), int32(200)
	if err := checkDeploymentConfig(req.DeploymentConfiguration, &minHealthy, &maxPercent); err != nil {
		return nil, err
	}
	exprs, distinct, err := checkPlacement(req.LaunchType, req.PlacementStrategy, req.PlacementConstraints)
	if err != nil {
		return nil, err
	}
	if req.HealthCheckGracePeriodSeconds != nil && len(req.LoadBalancers) == 0 {
		return nil, invalidParameter("Health check grace period is only valid for services configured to use load balancers")
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
	if err := checkLoadBalancers(d, req.LoadBalancers); err != nil {
		return nil, err
	}
	if old := c.services[req.ServiceName]; old != nil && old.status != statusInactive {
		return nil, invalidParameter("Creation of service was not idempotent.")
	}
	now := s.now()
	sv := &service{
		name: req.ServiceName, arn: s.serviceArn(c.name, req.ServiceName), cluster: c, def: d,
		status: statusActive, desired: *req.DesiredCount, minHealthy: minHealthy, maxPercent: maxPercent,
		launchType: "EC2", loadBalancers: req.LoadBalancers, network: req.NetworkConfiguration,
		constraints: req.PlacementConstraints, compiled: exprs, distinct: distinct,
		strategy: req.PlacementStrategy, graceSeconds: req.HealthCheckGracePeriodSeconds,
		tags: req.Tags, createdAt: now, updatedAt: now, deploymentAt: now,
	}
	s.newDeploymentLocked(sv)
	if c.services[sv.name] == nil {
		c.serviceOrder = append(c.serviceOrder, sv.name)
	}
	c.services[sv.name] = sv
	s.changedLocked()
	s.log.Info("service created", "cluster", c.name, "service", sv.name, "taskDefinition", d.arn, "desiredCount", sv.desired)
	return map[string]any{"service": s.serviceOut(sv, false)}, nil
}

// newDeploymentLocked starts a deployment: tasks started before it are
// replaced within the service's min/max percent.
func (s *Server) newDeploymentLocked(sv *service) {
	var id int64
	for id < 1e18 {
		id = s.rng.Int63()
	}
	sv.id = strconv.FormatInt(id, 10)
	sv.deploymentAt = s.now()
	sv.failures, sv.nextLaunch = 0, sv.deploymentAt
}

type updateServiceRequest struct {
	Cluster                       string                       `json:"cluster"`
	Service                       string                       `json:"service"`
	DesiredCount                  *int32                       `json:"desiredCount"`
	TaskDefinition                string                       `json:"taskDefinition"`
	DeploymentConfiguration       *deploymentConfigurationJSON `json:"deploymentConfiguration"`
	NetworkConfiguration          *networkConfigurationJSON    `json:"networkConfiguration"`
	PlacementConstraints          []placementConstraintJSON    `json:"placementConstraints"`
	HealthCheckGracePeriodSeconds *int32                       `json:"healthCheckGracePeriodSeconds"`
	ForceNewDeployment            *bool                        `json:"forceNewDeployment"`
}

func (s *Server) updateService(req updateServiceRequest) (any, error) {
	if req.DesiredCount != nil && *req.DesiredCount < 0 {
		return nil, invalidParameter("desiredCount must be 0 or more.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookupCluster(req.Cluster)
	if err != nil {
		return nil, err
	}
	sv, err := c.activeService(s, req.Service)
	if err != nil {
		return nil, err
	}
	minHealthy, maxPercent := sv.minHealthy, sv.maxPercent
	if err := checkDeploymentConfig(req.DeploymentConfiguration, &minHealthy, &maxPercent); err != nil {
		return nil, err
	}
	def, network := sv.def, sv.network
	if req.TaskDefinition != "" {
		if def, err = s.activeTaskDef(req.TaskDefinition); err != nil {
			return nil, err
		}
	}
	if req.NetworkConfiguration != nil {
		network = req.NetworkConfiguration
	}
	if err := checkNetwork(def, network); err != nil {
		return nil, err
	}
	if err := checkLoadBalancers(def, sv.loadBalancers); err != nil {
		return nil, err
	}
	var exprs []*constraintExpr
	distinct := sv.distinct
	if req.PlacementConstraints != nil {
		if exprs, distinct, err = compileConstraints(req.PlacementConstraints); err != nil {
			return nil, err
		}
	}
	if req.HealthCheckGracePeriodSeconds != nil && len(sv.loadBalancers) == 0 {
		return nil, invalidParameter("Health check grace period is only valid for services configured to use load balancers")
	}
	redeploy := def != sv.def || req.NetworkConfiguration != nil || req.PlacementConstraints != nil || (req.ForceNewDeployment != nil && *req.ForceNewDeployment)
	sv.def, sv.network, sv.minHealthy, sv.maxPercent = def, network, minHealthy, maxPercent
	if req.PlacementConstraints != nil {
		sv.constraints, sv.compiled, sv.distinct = req.PlacementConstraints, exprs, distinct
	}
	if req.HealthCheckGracePeriodSeconds != nil {
		sv.graceSeconds = req.HealthCheckGracePeriodSeconds
	}
	if req.DesiredCount != nil {
		sv.desired = *req.DesiredCount
	}
	if redeploy {
		s.newDeploymentLocked(sv)
	}
	sv.updatedAt = s.now()
	s.changedLocked()
	s.log.Info("service updated", "cluster", c.name, "service", sv.name, "taskDefinition", sv.def.arn, "desiredCount", sv.desired, "redeploy", redeploy)
	return map[string]any{"service": s.serviceOut(sv, false)}, nil
}

type deleteServiceRequest struct {
	Cluster string `json:"cluster"`
	Service string `json:"service"`
	Force   *bool  `json:"force"`
}

func (s *Server) deleteService(req deleteServiceRequest) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookupCluster(req.Cluster)
	if err != nil {
		return nil, err
	}
	sv, err := c.activeService(s, req.Service)
	if err != nil {
		return nil, err
	}
	force := req.Force != nil && *req.Force
	if sv.desired > 0 && !force {
		return nil, invalidParameter("The service cannot be stopped while it is scaled above 0.")
	}
	sv.desired = 0
	sv.status = statusDraining
	sv.updatedAt = s.now()
	s.changedLocked()
	s.log.Info("service deleted", "cluster", c.name, "service", sv.name, "force", force)
	return map[string]any{"service": s.serviceOut(sv, false)}, nil
}

type describeServicesRequest struct {
	Cluster  string   `json:"cluster"`
	Services []string `json:"services"`
	Include  []string `json:"include"`
}

func (s *Server) describeServices(req describeServicesRequest) (any, error) {
	if len(req.Services) == 0 || len(req.Services) > 10 {
		return nil, invalidParameter("services must have between 1 and 10 elements.")
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
	tags := slices.Contains(req.Include, "TAGS")
	out, failures := describeEach(s, c, "service", req.Services,
		func(ref string) *service { return c.findService(s, ref) },
		func(sv *service) serviceJSON { return s.serviceOut(sv, tags) })
	return map[string]any{"services": out, "failures": failures}, nil
}

type listServicesRequest struct {
	Cluster            string `json:"cluster"`
	LaunchType         string `json:"launchType"`
	SchedulingStrategy string `json:"schedulingStrategy"`
	paging
}

func (s *Server) listServices(req listServicesRequest) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.lookupCluster(req.Cluster)
	if err != nil {
		return nil, err
	}
	arns := []string{}
	for _, name := range c.serviceOrder {
		sv := c.services[name]
		switch {
		case sv.status == statusInactive:
		case req.LaunchType != "" && req.LaunchType != sv.launchType:
		case req.SchedulingStrategy != "" && req.SchedulingStrategy != "REPLICA":
		default:
			arns = append(arns, sv.arn)
		}
	}
	return listPage("serviceArns", arns, req.paging, 10, 100)
}
