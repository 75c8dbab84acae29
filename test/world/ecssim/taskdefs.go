package ecssim

import (
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var (
	familyPattern        = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)
	containerNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)
	volumeNamePattern    = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)
)

type portMappingJSON struct {
	ContainerPort int32  `json:"containerPort"`
	HostPort      int32  `json:"hostPort"`
	Protocol      string `json:"protocol"`
	Name          string `json:"name,omitempty"`
	AppProtocol   string `json:"appProtocol,omitempty"`
}

type mountPointJSON struct {
	SourceVolume  string `json:"sourceVolume"`
	ContainerPath string `json:"containerPath"`
	ReadOnly      bool   `json:"readOnly"`
}

type volumeFromJSON struct {
	SourceContainer string `json:"sourceContainer"`
	ReadOnly        bool   `json:"readOnly"`
}

type logConfigurationJSON struct {
	LogDriver string            `json:"logDriver"`
	Options   map[string]string `json:"options,omitempty"`
}

type healthCheckJSON struct {
	Command     []string `json:"command"`
	Interval    *int32   `json:"interval,omitempty"`
	Timeout     *int32   `json:"timeout,omitempty"`
	Retries     *int32   `json:"retries,omitempty"`
	StartPeriod *int32   `json:"startPeriod,omitempty"`
}

type ulimitJSON struct {
	Name      string `json:"name"`
	SoftLimit int32  `json:"softLimit"`
	HardLimit int32  `json:"hardLimit"`
}

type containerDefinitionJSON struct {
	Name                   string                `json:"name"`
	Image                  string                `json:"image"`
	CPU                    int32                 `json:"cpu"`
	Memory                 *int32                `json:"memory,omitempty"`
	MemoryReservation      *int32                `json:"memoryReservation,omitempty"`
	Links                  []string              `json:"links,omitempty"`
	PortMappings           []portMappingJSON     `json:"portMappings"`
	Essential              *bool                 `json:"essential"`
	EntryPoint             []string              `json:"entryPoint,omitempty"`
	Command                []string              `json:"command,omitempty"`
	Environment            []keyValue            `json:"environment"`
	MountPoints            []mountPointJSON      `json:"mountPoints"`
	VolumesFrom            []volumeFromJSON      `json:"volumesFrom"`
	StartTimeout           *int32                `json:"startTimeout,omitempty"`
	StopTimeout            *int32                `json:"stopTimeout,omitempty"`
	Hostname               string                `json:"hostname,omitempty"`
	User                   string                `json:"user,omitempty"`
	WorkingDirectory       string                `json:"workingDirectory,omitempty"`
	Privileged             *bool                 `json:"privileged,omitempty"`
	ReadonlyRootFilesystem *bool                 `json:"readonlyRootFilesystem,omitempty"`
	DockerLabels           map[string]string     `json:"dockerLabels,omitempty"`
	Ulimits                []ulimitJSON          `json:"ulimits,omitempty"`
	LogConfiguration       *logConfigurationJSON `json:"logConfiguration,omitempty"`
	HealthCheck            *healthCheckJSON      `json:"healthCheck,omitempty"`
	SystemControls         []keyValue            `json:"systemControls"`
}

type dockerVolumeConfigurationJSON struct {
	Scope         string            `json:"scope,omitempty"`
	Autoprovision *bool             `json:"autoprovision,omitempty"`
	Driver        string            `json:"driver,omitempty"`
	DriverOpts    map[string]string `json:"driverOpts,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
}

type hostVolumeJSON struct {
	SourcePath string `json:"sourcePath,omitempty"`
}

type volumeJSON struct {
	Name                      string                         `json:"name"`
	Host                      *hostVolumeJSON                `json:"host,omitempty"`
	DockerVolumeConfiguration *dockerVolumeConfigurationJSON `json:"dockerVolumeConfiguration,omitempty"`
}

type registerTaskDefinitionRequest struct {
	Family                  string                    `json:"family"`
	TaskRoleArn             string                    `json:"taskRoleArn,omitempty"`
	ExecutionRoleArn        string                    `json:"executionRoleArn,omitempty"`
	NetworkMode             string                    `json:"networkMode,omitempty"`
	ContainerDefinitions    []containerDefinitionJSON `json:"containerDefinitions"`
	Volumes                 []volumeJSON              `json:"volumes"`
	PlacementConstraints    []placementConstraintJSON `json:"placementConstraints"`
	RequiresCompatibilities []string                  `json:"requiresCompatibilities,omitempty"`
	CPU                     string                    `json:"cpu,omitempty"`
	Memory                  string                    `json:"memory,omitempty"`
	Tags                    []tagJSON                 `json:"tags,omitempty"`
	PidMode                 string                    `json:"pidMode,omitempty"`
	IpcMode                 string                    `json:"ipcMode,omitempty"`
}

type nameJSON struct {
	Name string `json:"name"`
}

type taskDefinitionJSON struct {
	TaskDefinitionArn       string                    `json:"taskDefinitionArn"`
	ContainerDefinitions    []containerDefinitionJSON `json:"containerDefinitions"`
	Family                  string                    `json:"family"`
	TaskRoleArn             string                    `json:"taskRoleArn,omitempty"`
	ExecutionRoleArn        string                    `json:"executionRoleArn,omitempty"`
	NetworkMode             string                    `json:"networkMode,omitempty"`
	Revision                int32                     `json:"revision"`
	Volumes                 []volumeJSON              `json:"volumes"`
	Status                  string                    `json:"status"`
	RequiresAttributes      []nameJSON                `json:"requiresAttributes"`
	PlacementConstraints    []placementConstraintJSON `json:"placementConstraints"`
	Compatibilities         []string                  `json:"compatibilities"`
	RequiresCompatibilities []string                  `json:"requiresCompatibilities,omitempty"`
	CPU                     string                    `json:"cpu,omitempty"`
	Memory                  string                    `json:"memory,omitempty"`
	PidMode                 string                    `json:"pidMode,omitempty"`
	IpcMode                 string                    `json:"ipcMode,omitempty"`
	RegisteredAt            *epoch                    `json:"registeredAt,omitempty"`
	DeregisteredAt          *epoch                    `json:"deregisteredAt,omitempty"`
	RegisteredBy            string                    `json:"registeredBy"`
}

func (s *Server) taskDefOut(d *taskDef) taskDefinitionJSON {
	r := d.req
	out := taskDefinitionJSON{
		TaskDefinitionArn: d.arn, ContainerDefinitions: r.ContainerDefinitions, Family: d.family,
		TaskRoleArn: r.TaskRoleArn, ExecutionRoleArn: r.ExecutionRoleArn, NetworkMode: r.NetworkMode,
		Revision: d.revision, Volumes: r.Volumes, Status: d.status,
		RequiresAttributes: []nameJSON{}, PlacementConstraints: r.PlacementConstraints,
		Compatibilities: []string{"EC2"}, RequiresCompatibilities: r.RequiresCompatibilities,
		CPU: r.CPU, Memory: r.Memory, PidMode: r.PidMode, IpcMode: r.IpcMode,
		RegisteredAt: epochPtr(d.registered), DeregisteredAt: epochPtr(d.deregAt),
	}
	out.RegisteredBy = "arn:aws:iam::" + s.opts.Account + ":root"
	if out.NetworkMode == "" {
		out.NetworkMode = "bridge" // ECS's default on Linux, shown back
	}
	for _, n := range d.requires {
		out.RequiresAttributes = append(out.RequiresAttributes, nameJSON{Name: n})
	}
	return out
}

// Capability attributes ECS derives from a task definition. The world
// enforces these two at placement; others real ECS adds (docker-remote-api
// versions, logging drivers) are not required of hosts.
const (
	attrTaskENI         = "ecs.capability.task-eni"
	attrDockerPluginPfx = "ecs.capability.docker-plugin."
)

func (s *Server) registerTaskDefinition(req registerTaskDefinitionRequest) (any, error) {
	d, err := s.validateTaskDef(&req)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	revs := s.taskDefs[req.Family]
	d.revision = int32(len(revs) + 1)
	d.arn = s.taskDefArn(d.family, d.revision)
	d.status = statusActive
	d.registered = s.now()
	s.taskDefs[req.Family] = append(revs, d)
	s.log.Info("task definition registered", "taskDefinition", d.arn)
	return map[string]any{"taskDefinition": s.taskDefOut(d), "tags": nonNil(req.Tags)}, nil
}

// validateTaskDef checks a registration as ECS's control plane does and
// fills in the defaults ECS shows back.
func (s *Server) validateTaskDef(req *registerTaskDefinitionRequest) (*taskDef, error) {
	if !familyPattern.MatchString(req.Family) {
		return nil, clientError("Family contains invalid characters: up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed.")
	}
	if len(req.ContainerDefinitions) == 0 {
		return nil, clientError("Container list cannot be empty.")
	}
	for _, c := range req.RequiresCompatibilities {
		switch c {
		case "EC2":
		case "FARGATE", "EXTERNAL", "MANAGED_INSTANCES":
			return nil, invalidParameter("requiresCompatibilities %s is not supported by the local ECS world (EC2 only)", c)
		default:
			return nil, clientError("Invalid compatibility %s.", c)
		}
	}
	switch req.NetworkMode {
	case "", "bridge", "host", "awsvpc", "none":
	default:
		return nil, clientError("Invalid networkMode %s.", req.NetworkMode)
	}
	if req.PidMode != "" || req.IpcMode != "" {
		return nil, invalidParameter("pidMode and ipcMode are not supported by the local ECS world")
	}
	d := &taskDef{family: req.Family}
	var err error
	if d.cpu, err = parseCPU(req.CPU); err != nil {
		return nil, err
	}
	if d.mem, err = parseMemory(req.Memory); err != nil {
		return nil, err
	}
	req.Volumes = nonNil(req.Volumes)
	volumes := map[string]bool{}
	for i := range req.Volumes {
		v := &req.Volumes[i]
		if err := validateVolume(v, volumes); err != nil {
			return nil, err
		}
		if dv := v.DockerVolumeConfiguration; dv != nil && dv.Driver != "local" {
			if n := attrDockerPluginPfx + dv.Driver; !slices.Contains(d.requires, n) {
				d.requires = append(d.requires, n)
			}
		}
	}
	if req.NetworkMode == "awsvpc" {
		d.requires = append(d.requires, attrTaskENI)
	}
	names := map[string]bool{}
	var sumCPU, sumMem int32
	essential := false
	for i := range req.ContainerDefinitions {
		c := &req.ContainerDefinitions[i]
		if err := validateContainer(c, req.NetworkMode, volumes, req.Memory != ""); err != nil {
			return nil, err
		}
		if names[c.Name] {
			return nil, clientError("Duplicate container name %s.", c.Name)
		}
		names[c.Name] = true
		essential = essential || *c.Essential
		sumCPU += c.CPU
		switch {
		case c.MemoryReservation != nil:
			sumMem += *c.MemoryReservation
		case c.Memory != nil:
			sumMem += *c.Memory
		}
	}
	if !essential {
		return nil, clientError("Task definition does not have any essential container.")
	}
	if d.cpu == 0 {
		d.cpu = sumCPU
	}
	if d.mem == 0 {
		d.mem = sumMem
	}
	req.PlacementConstraints = nonNil(req.PlacementConstraints)
	if len(req.PlacementConstraints) > 10 {
		return nil, clientError("Too many placement constraints: at most 10.")
	}
	for _, pc := range req.PlacementConstraints {
		if pc.Type != "memberOf" {
			return nil, clientError("Invalid placement constraint type %q for a task definition: only memberOf.", pc.Type)
		}
		expr, err := parseConstraint(pc.Expression)
		if err != nil {
			return nil, clientError("Invalid placement constraint expression %q: %v", pc.Expression, err)
		}
		d.constraint = append(d.constraint, expr)
	}
	d.req = *req
	return d, nil
}

func validateVolume(v *volumeJSON, seen map[string]bool) error {
	if !volumeNamePattern.MatchString(v.Name) {
		return clientError("Volume name %q is invalid: up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed.", v.Name)
	}
	if seen[v.Name] {
		return clientError("Duplicate volume name %s.", v.Name)
	}
	seen[v.Name] = true
	dv := v.DockerVolumeConfiguration
	if dv == nil {
		return nil
	}
	if v.Host != nil {
		return clientError("Volume %s: host and dockerVolumeConfiguration cannot both be set.", v.Name)
	}
	if dv.Scope == "" {
		dv.Scope = "task"
	}
	if dv.Scope != "task" && dv.Scope != "shared" {
		return clientError("Invalid scope %q for volume %s: task or shared.", dv.Scope, v.Name)
	}
	if dv.Driver == "" {
		return clientError("volume.dockerVolumeConfiguration.driver should not be null or empty.")
	}
	// ECS's control plane refuses an explicit autoprovision=false on a task
	// scoped volume (with this odd message), and accepts autoprovision=true,
	// which the ECS agent then refuses when it starts the task.
	if dv.Scope == "task" && dv.Autoprovision != nil && !*dv.Autoprovision {
		return clientError("When 'scope' parameter is 'task', 'autoprovision' must either not be specified or set to 'True'.")
	}
	if dv.Scope == "shared" && dv.Autoprovision == nil {
		f := false
		dv.Autoprovision = &f
	}
	return nil
}

func validateContainer(c *containerDefinitionJSON, networkMode string, volumes map[string]bool, taskMemory bool) error {
	if c.Name == "" {
		return clientError("Container.name should not be null or empty.")
	}
	if !containerNamePattern.MatchString(c.Name) {
		return clientError("Container name %q is invalid.", c.Name)
	}
	if c.Image == "" {
		return clientError("Container.image should not be null or empty.")
	}
	if !taskMemory && c.Memory == nil && c.MemoryReservation == nil {
		return clientError("Invalid setting for container '%s'. At least one of 'memory' or 'memoryReservation' must be specified.", c.Name)
	}
	if c.Memory != nil && c.MemoryReservation != nil && *c.MemoryReservation > *c.Memory {
		return clientError("Invalid setting for container '%s'. 'memoryReservation' must be smaller than 'memory'.", c.Name)
	}
	if c.Essential == nil {
		t := true
		c.Essential = &t
	}
	for i := range c.PortMappings {
		pm := &c.PortMappings[i]
		if pm.Protocol == "" {
			pm.Protocol = "tcp"
		}
		if pm.Protocol != "tcp" && pm.Protocol != "udp" {
			return clientError("Invalid protocol %s in container %s.", pm.Protocol, c.Name)
		}
		if pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
			return clientError("Invalid containerPort %d in container %s.", pm.ContainerPort, c.Name)
		}
		if networkMode == "awsvpc" || networkMode == "host" {
			if pm.HostPort != 0 && pm.HostPort != pm.ContainerPort {
				return clientError("When networkMode=%s, the host ports and container ports in port mappings must match.", networkMode)
			}
			pm.HostPort = pm.ContainerPort
		}
	}
	c.PortMappings = nonNil(c.PortMappings)
	for _, mp := range c.MountPoints {
		if !volumes[mp.SourceVolume] {
			return clientError("Unknown volume '%s'.", mp.SourceVolume)
		}
		if mp.ContainerPath == "" {
			return clientError("Container %s: mountPoints.containerPath should not be null or empty.", c.Name)
		}
	}
	c.MountPoints, c.Environment = nonNil(c.MountPoints), nonNil(c.Environment)
	c.VolumesFrom, c.SystemControls = nonNil(c.VolumesFrom), nonNil(c.SystemControls)
	if lc := c.LogConfiguration; lc != nil && lc.LogDriver == "" {
		return clientError("Container %s: logConfiguration.logDriver should not be null or empty.", c.Name)
	}
	return nil
}

// parseCPU reads a task-level cpu: units ("512") or vCPUs ("1 vCPU").
func parseCPU(v string) (int32, error) { return parseSize(v, "cpu", "vcpu", 128, 196608) }

// parseMemory reads a task-level memory: MiB ("512") or GB ("1 GB").
func parseMemory(v string) (int32, error) { return parseSize(v, "memory", "gb", 6, math.MaxInt32) }

// parseSize reads a task-level size: whole units within [least, most], or
// a positive number of 1024-unit ones ("1 vCPU", "0.5 GB"); "" is 0.
func parseSize(v, setting, bigUnit string, least, most int64) (int32, error) {
	if v == "" {
		return 0, nil
	}
	s := strings.ToLower(strings.TrimSpace(v))
	if n, ok := strings.CutSuffix(s, bigUnit); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		if err != nil || f <= 0 {
			return 0, clientError("Invalid '%s' setting for task: %s.", setting, v)
		}
		return int32(f * 1024), nil
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n < least || n > most {
		return 0, clientError("Invalid '%s' setting for task: %s.", setting, v)
	}
	return int32(n), nil
}

type taskDefRequest struct {
	TaskDefinition string   `json:"taskDefinition"`
	Include        []string `json:"include,omitempty"`
}

// findTaskDef resolves family, family:revision or an ARN. With only a
// family, the latest ACTIVE revision.
func (s *Server) findTaskDef(ref string) (*taskDef, error) {
	family, rev, err := s.taskDefRef(ref)
	if err != nil {
		return nil, err
	}
	revs := s.taskDefs[family]
	if rev == 0 {
		for i := len(revs) - 1; i >= 0; i-- {
			if revs[i].status == statusActive {
				return revs[i], nil
			}
		}
		return nil, clientError("Unable to describe task definition.")
	}
	if int(rev) > len(revs) {
		return nil, clientError("Unable to describe task definition.")
	}
	return revs[rev-1], nil
}

func (s *Server) describeTaskDefinition(req taskDefRequest) (any, error) {
	if err := checkInclude(req.Include, "TAGS"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.findTaskDef(req.TaskDefinition)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"taskDefinition": s.taskDefOut(d)}
	if slices.Contains(req.Include, "TAGS") {
		out["tags"] = nonNil(d.req.Tags)
	}
	return out, nil
}

func (s *Server) deregisterTaskDefinition(req taskDefRequest) (any, error) {
	if len(req.Include) > 0 {
		return nil, invalidParameter("parameter include is not supported by DeregisterTaskDefinition")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, rev, err := s.taskDefRef(req.TaskDefinition); err != nil {
		return nil, err
	} else if rev == 0 {
		return nil, clientError("Revision is missing.")
	}
	d, err := s.findTaskDef(req.TaskDefinition)
	if err != nil {
		return nil, err
	}
	if d.status == statusActive {
		d.status = statusInactive
		d.deregAt = s.now()
	}
	return map[string]any{"taskDefinition": s.taskDefOut(d)}, nil
}
