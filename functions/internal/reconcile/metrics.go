package reconcile

// The metrics the reconciler emits (EMF, namespace Tether, dimension
// Cluster; TasksStopped also by ReasonClass). template.yaml's alarms and
// dashboard name them; its test checks them against Metrics.
const (
	MetricPasses             = "Passes"             // one per pass
	MetricEC2Requests        = "EC2Requests"        // EC2 calls of a pass
	MetricThrottles          = "Throttles"          // throttled AWS calls of a pass
	MetricRetries            = "Retries"            // passes that handed their key back
	MetricFailures           = "Failures"           // passes that failed, tasks tether stopped
	MetricTasksStopped       = "TasksStopped"       // tasks tether stopped, by ReasonClass
	MetricAttachDuration     = "AttachDuration"     // ms, AttachVolume to attached
	MetricDetachDuration     = "DetachDuration"     // ms, DetachVolume to detached
	MetricMountDuration      = "MountDuration"      // ms, mount command sent to mounted
	MetricHandoffDuration    = "HandoffDuration"    // ms, the holder let go to the volume mounted for the next task
	MetricForceDetaches      = "ForceDetaches"      // every force detach
	MetricForcedDetachesLive = "ForcedDetachesLive" // force detaches of a host EC2 did not say was stopped or terminated (an operator's): should stay 0
	MetricForcedDetachesGone = "ForcedDetachesGone" // force detaches of a stopped or terminated host
	MetricMkfsGrants         = "MkfsGrants"         // mount commands sent with the format grant
	MetricFormats            = "Formats"            // first formats reported by the agent
	MetricWaitsPastThreshold = "WaitsPastThreshold" // waits for a live host longer than the threshold
	// MetricVolumeModifications: ModifyVolume calls for a task definition's
	// larger size, or other type, IOPS or throughput.
	MetricVolumeModifications = "VolumeModifications"
	// MetricMovedVolumesDeleted: old volumes of AZ moves the sweep deleted
	// (driverOpt azmove-delete-after, retire.go).
	MetricMovedVolumesDeleted = "MovedVolumesDeleted"
)

// Metrics lists every metric name the reconciler emits.
var Metrics = []string{
	MetricPasses, MetricEC2Requests, MetricThrottles, MetricRetries, MetricFailures, MetricTasksStopped,
	MetricAttachDuration, MetricDetachDuration, MetricMountDuration, MetricHandoffDuration,
	MetricForceDetaches, MetricForcedDetachesLive, MetricForcedDetachesGone, MetricMkfsGrants, MetricFormats,
	MetricWaitsPastThreshold, MetricVolumeModifications, MetricMovedVolumesDeleted,
}
