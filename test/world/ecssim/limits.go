package ecssim

import "github.com/tether-ecs/tether/test/world/awsproto"

// ECS throttles every API action per account and Region with token buckets
// ("Request throttling for the Amazon ECS API", ECS API Reference and
// Developer Guide): a bucket's maximum capacity is the burst, its refill
// rate the sustained rate, and a call past them is answered
// ThrottlingException "Rate exceeded" with HTTP 400 (the page's own
// example: "Status Code: 400; Error Code: ThrottlingException").
// aws-sdk-go-v2 retries it as a throttle (retry.DefaultThrottleErrorCodes).
//
// The figures, and where each comes from:
//   - reads: the page's worked example gives cluster read actions
//     (DescribeClusters) a bucket of 50 refilled at 20 per second;
//     DescribeTasks and DescribeContainerInstances are about 20 per second
//     sustained (aws-solutions/workload-discovery-on-aws#355, quoting the
//     page). Every read here gets 50 / 20, each its own bucket.
//   - RegisterTaskDefinition: burst 20, sustained 1 per second
//     (aws-actions/amazon-ecs-deploy-task-definition#502, quoting the page);
//     DeregisterTaskDefinition is assumed to share those figures.
//   - RunTask: 20 per second burst and sustained, as the Fargate throttling
//     quotas page gives it ("The rate quota for calls to the Amazon ECS
//     RunTask API is 20 calls per second"); StartTask and StopTask are
//     assumed the same.
//   - everything else that changes state (clusters, services, container
//     instances, attributes): the page's table could not be read in full
//     here, so these are assumptions, chosen low: burst 20, 5 per second;
//     cluster create/delete as task definitions, 20 / 1.
//
// Raise any of them with Options.Limits or Gate().SetLimit; turn them off
// with SetThrottling(false).
func DefaultLimits() map[string]awsproto.Bucket {
	read := awsproto.Bucket{Size: 50, Refill: 20}
	taskDefWrite := awsproto.Bucket{Size: 20, Refill: 1}
	taskWrite := awsproto.Bucket{Size: 20, Refill: 20}
	write := awsproto.Bucket{Size: 20, Refill: 5}
	return map[string]awsproto.Bucket{
		"ListClusters":               read,
		"DescribeClusters":           read,
		"DescribeTaskDefinition":     read,
		"DescribeServices":           read,
		"ListServices":               read,
		"ListTasks":                  read,
		"DescribeTasks":              read,
		"ListContainerInstances":     read,
		"DescribeContainerInstances": read,
		"ListAttributes":             read,

		"CreateCluster":            taskDefWrite,
		"RegisterTaskDefinition":   taskDefWrite,
		"DeregisterTaskDefinition": taskDefWrite,

		"RunTask":   taskWrite,
		"StartTask": taskWrite,
		"StopTask":  taskWrite,

		"CreateService":                 write,
		"UpdateService":                 write,
		"DeleteService":                 write,
		"UpdateContainerInstancesState": write,
		"DeregisterContainerInstance":   write,
		"PutAttributes":                 write,
	}
}
