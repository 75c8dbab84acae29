package ecssim

import (
	"regexp"
	"slices"
)

var clusterNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)

type clusterJSON struct {
	ClusterArn                        string     `json:"clusterArn"`
	ClusterName                       string     `json:"clusterName"`
	Status                            string     `json:"status"`
	RegisteredContainerInstancesCount int32      `json:"registeredContainerInstancesCount"`
	RunningTasksCount                 int32      `json:"runningTasksCount"`
	PendingTasksCount                 int32      `json:"pendingTasksCount"`
	ActiveServicesCount               int32      `json:"activeServicesCount"`
	Statistics                        []keyValue `json:"statistics"`
	Tags                              []tagJSON  `json:"tags"`
	Settings                          []keyValue `json:"settings"`
	CapacityProviders                 []string   `json:"capacityProviders"`
	DefaultCapacityProviderStrategy   []struct{} `json:"defaultCapacityProviderStrategy"`
}

func (s *Server) clusterOut(c *cluster) clusterJSON {
	out := clusterJSON{
		ClusterArn: c.arn, ClusterName: c.name, Status: c.status,
		Statistics: []keyValue{}, Tags: nonNil(c.tags), Settings: c.settings,
		CapacityProviders: []string{}, DefaultCapacityProviderStrategy: []struct{}{},
	}
	for _, ci := range c.instances {
		if ci.status != statusInactive {
			out.RegisteredContainerInstancesCount++
		}
	}
	for _, t := range c.liveTasks() {
		switch t.lastStatus {
		case statusRunning:
			out.RunningTasksCount++
		case statusProvisioning, statusPending, statusActivating:
			out.PendingTasksCount++
		}
	}
	for _, sv := range c.services {
		if sv.status == statusActive {
			out.ActiveServicesCount++
		}
	}
	return out
}

type createClusterRequest struct {
	ClusterName string     `json:"clusterName"`
	Tags        []tagJSON  `json:"tags"`
	Settings    []keyValue `json:"settings"`
}

func (s *Server) createCluster(req createClusterRequest) (any, error) {
	if req.ClusterName == "" {
		req.ClusterName = "default"
	}
	if !clusterNamePattern.MatchString(req.ClusterName) {
		return nil, invalidParameter("Cluster name can have up to 255 characters: letters (uppercase and lowercase), numbers, underscores, and hyphens.")
	}
	for _, st := range req.Settings {
		if st.Name != "containerInsights" || !slices.Contains([]string{"enabled", "disabled", "enhanced"}, st.Value) {
			return nil, invalidParameter("Invalid cluster setting %s=%s.", st.Name, st.Value)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clusters[req.ClusterName]
	if c == nil || c.status != statusActive {
		c = &cluster{
			name: req.ClusterName, arn: s.clusterArn(req.ClusterName), status: statusActive,
			createdAt: s.now(), tags: req.Tags,
			instances: map[string]*instance{}, services: map[string]*service{}, tasks: map[string]*task{},
		}
		if c.settings = req.Settings; c.settings == nil {
			c.settings = []keyValue{{Name: "containerInsights", Value: "disabled"}}
		}
		if s.clusters[req.ClusterName] == nil {
			s.order = append(s.order, req.ClusterName)
		}
		s.clusters[req.ClusterName] = c
		s.changedLocked()
	}
	return map[string]any{"cluster": s.clusterOut(c)}, nil
}

func (s *Server) listClusters(req paging) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	arns := []string{}
	for _, name := range s.order {
		if c := s.clusters[name]; c.status == statusActive {
			arns = append(arns, c.arn)
		}
	}
	return listPage("clusterArns", arns, req, 100, 100)
}

type describeClustersRequest struct {
	Clusters []string `json:"clusters"`
	Include  []string `json:"include"`
}

func (s *Server) describeClusters(req describeClustersRequest) (any, error) {
	if err := checkInclude(req.Include, "ATTACHMENTS", "CONFIGURATIONS", "SETTINGS", "STATISTICS", "TAGS"); err != nil {
		return nil, err
	}
	if len(req.Clusters) == 0 {
		req.Clusters = []string{"default"}
	}
	if len(req.Clusters) > 100 {
		return nil, invalidParameter("Clusters cannot have more than 100 elements")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []clusterJSON{}
	failures := []failureJSON{}
	for _, ref := range req.Clusters {
		name, ok := s.clusterName(ref)
		c := s.clusters[name]
		if !ok || c == nil {
			failures = append(failures, failureJSON{Arn: s.clusterArnFor(ref), Reason: "MISSING"})
			continue
		}
		out = append(out, s.clusterOut(c))
	}
	return map[string]any{"clusters": out, "failures": failures}, nil
}

func (s *Server) clusterArnFor(ref string) string {
	if name, ok := s.clusterName(ref); ok {
		return s.clusterArn(name)
	}
	return ref
}
