package ssmsim

import "github.com/tether-ecs/tether/test/world/awsproto"

// DefaultLimits are SSM's request-rate buckets per account and Region. A
// call past one is answered ThrottlingException "Rate exceeded" with HTTP
// 400 (SSM's model lists ThrottlingException; "An error occurred
// (ThrottlingException) when calling the SendCommand operation: Rate
// exceeded" in boto/botocore#993), which aws-sdk-go-v2 retries as a
// throttle.
//
// AWS publishes no request rates for Run Command's or the document APIs
// ("Systems Manager endpoints and quotas" gives throughput figures only
// for Parameter Store). So these are assumed, in the shape of EC2's
// documented buckets ("Request throttling for the Amazon EC2 API"):
//   - SendCommand: EC2's mutating actions, burst 50 refilled at 5 per
//     second (what tether's own client-side pacer assumes too).
//   - every read (GetCommandInvocation, ListCommands,
//     ListCommandInvocations, DescribeInstanceInformation, ListDocuments,
//     DescribeDocument, GetDocument), each its own bucket: EC2's
//     non-mutating actions, burst 100 refilled at 20 per second.
//
// Raise or lower any of them with Gate().SetLimit; turn them off with
// SetThrottling(false).
func DefaultLimits() map[string]awsproto.Bucket {
	read := awsproto.Bucket{Size: 100, Refill: 20}
	return map[string]awsproto.Bucket{
		"SendCommand":                 {Size: 50, Refill: 5},
		"GetCommandInvocation":        read,
		"ListCommands":                read,
		"ListCommandInvocations":      read,
		"DescribeInstanceInformation": read,
		"ListDocuments":               read,
		"DescribeDocument":            read,
		"GetDocument":                 read,
	}
}
