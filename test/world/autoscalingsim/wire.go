package autoscalingsim

import "time"

// XML shapes of Auto Scaling's results (awsQuery: the member names of
// botocore's model, lists as <member>, timestamps ISO 8601 with
// milliseconds). The Router wraps each in <ActionResult> and adds
// <ResponseMetadata>.

const isoTime = "2006-01-02T15:04:05.000Z"

func ts(t time.Time) string { return t.UTC().Format(isoTime) }

type xmlLaunchTemplate struct {
	LaunchTemplateID   string `xml:"LaunchTemplateId"`
	LaunchTemplateName string `xml:"LaunchTemplateName"`
	Version            string `xml:"Version"`
}

type xmlInstance struct {
	InstanceID           string             `xml:"InstanceId"`
	InstanceType         string             `xml:"InstanceType"`
	AvailabilityZone     string             `xml:"AvailabilityZone"`
	LifecycleState       string             `xml:"LifecycleState"`
	HealthStatus         string             `xml:"HealthStatus"`
	LaunchTemplate       *xmlLaunchTemplate `xml:"LaunchTemplate,omitempty"`
	ProtectedFromScaleIn bool               `xml:"ProtectedFromScaleIn"`
}

type xmlTag struct {
	ResourceID        string `xml:"ResourceId"`
	ResourceType      string `xml:"ResourceType"`
	Key               string `xml:"Key"`
	Value             string `xml:"Value"`
	PropagateAtLaunch bool   `xml:"PropagateAtLaunch"`
}

type xmlGroup struct {
	AutoScalingGroupName             string            `xml:"AutoScalingGroupName"`
	AutoScalingGroupARN              string            `xml:"AutoScalingGroupARN"`
	LaunchTemplate                   xmlLaunchTemplate `xml:"LaunchTemplate"`
	MinSize                          int               `xml:"MinSize"`
	MaxSize                          int               `xml:"MaxSize"`
	DesiredCapacity                  int               `xml:"DesiredCapacity"`
	DefaultCooldown                  int               `xml:"DefaultCooldown"`
	AvailabilityZones                []string          `xml:"AvailabilityZones>member"`
	LoadBalancerNames                struct{}          `xml:"LoadBalancerNames"`
	TargetGroupARNs                  struct{}          `xml:"TargetGroupARNs"`
	HealthCheckType                  string            `xml:"HealthCheckType"`
	HealthCheckGracePeriod           int               `xml:"HealthCheckGracePeriod"`
	Instances                        *xmlInstances     `xml:"Instances,omitempty"`
	CreatedTime                      string            `xml:"CreatedTime"`
	SuspendedProcesses               struct{}          `xml:"SuspendedProcesses"`
	EnabledMetrics                   struct{}          `xml:"EnabledMetrics"`
	Tags                             []xmlTag          `xml:"Tags>member"`
	TerminationPolicies              []string          `xml:"TerminationPolicies>member"`
	NewInstancesProtectedFromScaleIn bool              `xml:"NewInstancesProtectedFromScaleIn"`
	ServiceLinkedRoleARN             string            `xml:"ServiceLinkedRoleARN"`
	CapacityRebalance                bool              `xml:"CapacityRebalance"`
}

type xmlInstances struct {
	Members []xmlInstance `xml:"member"`
}

type describeGroupsResult struct {
	Groups    []xmlGroup `xml:"AutoScalingGroups>member"`
	NextToken string     `xml:"NextToken,omitempty"`
}

type xmlInstanceDetails struct {
	InstanceID           string             `xml:"InstanceId"`
	InstanceType         string             `xml:"InstanceType"`
	AutoScalingGroupName string             `xml:"AutoScalingGroupName"`
	AvailabilityZone     string             `xml:"AvailabilityZone"`
	LifecycleState       string             `xml:"LifecycleState"`
	HealthStatus         string             `xml:"HealthStatus"`
	LaunchTemplate       *xmlLaunchTemplate `xml:"LaunchTemplate,omitempty"`
	ProtectedFromScaleIn bool               `xml:"ProtectedFromScaleIn"`
}

type describeInstancesResult struct {
	Instances []xmlInstanceDetails `xml:"AutoScalingInstances>member"`
	NextToken string               `xml:"NextToken,omitempty"`
}

type xmlHook struct {
	LifecycleHookName    string `xml:"LifecycleHookName"`
	AutoScalingGroupName string `xml:"AutoScalingGroupName"`
	LifecycleTransition  string `xml:"LifecycleTransition"`
	RoleARN              string `xml:"RoleARN,omitempty"`
	NotificationMetadata string `xml:"NotificationMetadata,omitempty"`
	HeartbeatTimeout     int    `xml:"HeartbeatTimeout"`
	GlobalTimeout        int    `xml:"GlobalTimeout"`
	DefaultResult        string `xml:"DefaultResult"`
}

type describeHooksResult struct {
	Hooks []xmlHook `xml:"LifecycleHooks>member"`
}

type describeHookTypesResult struct {
	Types []string `xml:"LifecycleHookTypes>member"`
}

type xmlActivity struct {
	ActivityID           string `xml:"ActivityId"`
	AutoScalingGroupName string `xml:"AutoScalingGroupName"`
	Description          string `xml:"Description"`
	Cause                string `xml:"Cause"`
	StartTime            string `xml:"StartTime"`
	StatusCode           string `xml:"StatusCode"`
	Progress             int    `xml:"Progress"`
	Details              string `xml:"Details"`
	AutoScalingGroupARN  string `xml:"AutoScalingGroupARN"`
}

type activityResult struct {
	Activity xmlActivity `xml:"Activity"`
}

// empty is a result with nothing in it (<XxxResult/>), for actions whose
// model output is an empty structure.
type empty struct{}
