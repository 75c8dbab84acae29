package ecssim

import (
	"time"

	"github.com/tether-ecs/tether/test/world/worldapi"
)

// The in-memory model. Every field is guarded by Server.mu.

type cluster struct {
	name, arn string
	status    string
	createdAt time.Time
	tags      []tagJSON
	settings  []keyValue

	instances     map[string]*instance // by container instance id
	instanceOrder []string
	services      map[string]*service // by name (ACTIVE, DRAINING, and INACTIVE ones)
	serviceOrder  []string
	tasks         map[string]*task // by task id
	taskOrder     []string
	liveOrder     []*task // tasks not yet STOPPED, in creation order (compacted lazily)
}

// liveTasks returns the tasks not yet STOPPED, oldest first. Everything the
// scheduler does concerns only these, so its work does not grow with the
// STOPPED tasks ECS keeps listing.
func (c *cluster) liveTasks() []*task {
	// A fresh slice each time: callers iterate it while stopping tasks.
	live := make([]*task, 0, len(c.liveOrder))
	for _, t := range c.liveOrder {
		if t.live() {
			live = append(live, t)
		}
	}
	c.liveOrder = live
	return live
}

type instance struct {
	id, arn        string
	cluster        *cluster
	ec2InstanceID  string
	az             string
	host           worldapi.Host
	status         string // ACTIVE, DRAINING, INACTIVE
	statusReason   string
	agentConnected bool
	version        int64
	registeredAt   time.Time
	updatedAt      time.Time
	cpu, memory    int32
	attributes     map[string]string // agent-registered and custom (PutAttributes)
	attrOrder      []string
}

type taskDef struct {
	arn        string
	family     string
	revision   int32
	status     string // ACTIVE, INACTIVE
	req        registerTaskDefinitionRequest
	registered time.Time
	deregAt    time.Time
	cpu, mem   int32    // what placement reserves
	requires   []string // requiresAttributes
	constraint []*constraintExpr
}

type service struct {
	name, arn      string
	id             string // deployment id digits: startedBy is ecs-svc/<id>
	cluster        *cluster
	def            *taskDef
	status         string // ACTIVE, DRAINING, INACTIVE
	desired        int32
	minHealthy     int32
	maxPercent     int32
	launchType     string
	loadBalancers  []loadBalancerJSON
	network        *networkConfigurationJSON
	constraints    []placementConstraintJSON
	compiled       []*constraintExpr
	distinct       bool
	strategy       []placementStrategyJSON
	graceSeconds   *int32
	tags           []tagJSON
	createdAt      time.Time
	updatedAt      time.Time
	deploymentAt   time.Time
	events         []serviceEventJSON
	failures       int       // consecutive tasks that failed to start
	nextLaunch     time.Time // backoff after failures
	lastPlaceError string    // last "unable to place" message, to log it once
}

type task struct {
	id, arn      string
	cluster      *cluster
	def          *taskDef
	instance     *instance
	service      *service // nil for RunTask/StartTask
	startedBy    string
	group        string
	launchType   string
	network      *networkConfigurationJSON
	lastStatus   string
	desired      string
	version      int64
	stopCode     string
	stopReason   string
	containers   []*container
	eni          eni
	hasLB        bool
	cpu, mem     int32
	everRunning  bool
	orphaned     bool // STOPPED in ECS by a forced deregistration; its containers were never stopped
	createdAt    time.Time
	updatedAt    time.Time
	pullStarted  time.Time
	pullStopped  time.Time
	startedAt    time.Time
	stoppingAt   time.Time
	stoppedAt    time.Time
	execStopped  time.Time
	connectivity time.Time

	// Driving the host: one call in flight at a time.
	due          time.Time // when the current timed step may proceed
	hostStarting bool      // StartTask issued, not yet returned
	hostStarted  bool      // StartTask returned without error
	hostStopping bool      // StopTask issued
	hostStopped  bool      // the host reported STOPPED (or never ran it)
}

type container struct {
	arn, name, image string
	runtimeID        string
	lastStatus       string
	exitCode         *int
	reason           string
	cpu              int32
	memory           *int32
	memoryRes        *int32
}

type eni struct {
	attachmentID, eniID, mac, ip, subnet string
	status                               string // PRECREATED, ATTACHED, DETACHED, DELETED
}

// Task lifecycle states (lastStatus and desiredStatus values).
const (
	statusProvisioning   = "PROVISIONING"
	statusPending        = "PENDING"
	statusActivating     = "ACTIVATING"
	statusRunning        = "RUNNING"
	statusDeactivating   = "DEACTIVATING"
	statusStopping       = "STOPPING"
	statusDeprovisioning = "DEPROVISIONING"
	statusStopped        = "STOPPED"
)

// Container instance and service states.
const (
	statusActive   = "ACTIVE"
	statusDraining = "DRAINING"
	statusInactive = "INACTIVE"
)

// Stop codes as ECS reports them.
const (
	StopTaskFailedToStart         = "TaskFailedToStart"
	StopEssentialContainerExited  = "EssentialContainerExited"
	StopUserInitiated             = "UserInitiated"
	StopServiceSchedulerInitiated = "ServiceSchedulerInitiated"
	StopTerminationNotice         = "TerminationNotice"
)

func (t *task) live() bool { return t.lastStatus != statusStopped }

func (t *task) awsvpc() bool { return t.def.req.NetworkMode == "awsvpc" }
