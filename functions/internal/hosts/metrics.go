package hosts

// The metrics the host rules emit (EMF, namespace Tether, dimension
// Cluster). template.yaml's alarms and dashboard name them; its test
// checks them against Metrics (with reconcile.Metrics).
const (
	// MetricHoldDuration: ms from a termination lifecycle action's start
	// to tether completing it (volumes off, the instance already gone, a
	// hung host, or the deadline).
	MetricHoldDuration = "HoldDuration"
	// MetricHoldsTimedOut: holds that reached their deadline with the
	// cluster's volumes still attached (completed with CONTINUE; the
	// volumes are left to the dead-host rule).
	MetricHoldsTimedOut = "HoldsTimedOut"
	// MetricHungHostsStopped: instances tether stopped (force) because
	// their ECS agent was disconnected and EC2 reported their status
	// check impaired past the threshold (HungHostAction stop).
	MetricHungHostsStopped = "HungHostsStopped"
	// MetricHungHostsFenced: disconnected instances holding tether volumes
	// that tether leaves fenced (HungHostAction none, or EC2 reports them
	// healthy): a person decides.
	MetricHungHostsFenced = "HungHostsFenced"
	// MetricDeadHostHandoffs: tether volumes found attached to an instance
	// EC2 reports stopped or terminated: each moves without its host.
	MetricDeadHostHandoffs = "DeadHostHandoffs"
)

// Metrics lists every metric name the host rules emit.
var Metrics = []string{MetricHoldDuration, MetricHoldsTimedOut, MetricHungHostsStopped, MetricHungHostsFenced, MetricDeadHostHandoffs}
