package ec2sim

import (
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

// EC2's request-rate limits, from the EC2 API reference (developer guide),
// "Request throttling for the Amazon EC2 API": each action has a token
// bucket per account and Region; each request takes one token; an empty
// bucket answers RequestLimitExceeded.
//
// Request token buckets (maximum capacity / refill per second):
//   - non-mutating actions (Describe*): 100 / 20;
//   - "unfiltered and unpaginated non-mutating actions", DescribeInstances,
//     DescribeInstanceStatus, DescribeSnapshots and DescribeVolumes
//     requested with neither a filter nor pagination: 50 / 10. Ids are
//     neither (the page names only filters and pagination), so a
//     DescribeVolumes by VolumeIds alone draws from the small bucket;
//   - mutating actions (AttachVolume, DetachVolume, ModifyVolume,
//     StopInstances): 50 / 5;
//   - uncategorized actions with their own buckets: CreateVolume,
//     DeleteVolume, CreateSnapshot, DeleteSnapshot and TerminateInstances
//     100 / 5; CreateTags and DeleteTags 100 / 10.
//
// Resource token buckets, drawn per instance a request affects:
// StopInstances and TerminateInstances 1000 / 20 each.

// DefaultLimits are the request token buckets, by bucket name (the action,
// or the action plus ":unfiltered").
func DefaultLimits() map[string]awsproto.Bucket {
	nonMutating := awsproto.Bucket{Size: 100, Refill: 20}
	unfiltered := awsproto.Bucket{Size: 50, Refill: 10}
	mutating := awsproto.Bucket{Size: 50, Refill: 5}
	m := map[string]awsproto.Bucket{
		"CreateVolume":       {Size: 100, Refill: 5},
		"DeleteVolume":       {Size: 100, Refill: 5},
		"CreateSnapshot":     {Size: 100, Refill: 5},
		"DeleteSnapshot":     {Size: 100, Refill: 5},
		"CreateTags":         {Size: 100, Refill: 10},
		"DeleteTags":         {Size: 100, Refill: 10},
		"TerminateInstances": {Size: 100, Refill: 5},
		"AttachVolume":       mutating,
		"DetachVolume":       mutating,
		"ModifyVolume":       mutating,
		"StopInstances":      mutating,
	}
	for _, d := range []string{"DescribeVolumes", "DescribeVolumesModifications", "DescribeSnapshots",
		"DescribeInstances", "DescribeInstanceStatus", "DescribeAvailabilityZones"} {
		m[d] = nonMutating
	}
	for d := range unfilteredActions {
		m[d+unfilteredSuffix] = unfiltered
	}
	return m
}

const unfilteredSuffix = ":unfiltered"

// unfilteredActions are the actions with the smaller bucket for requests
// without a filter or pagination.
var unfilteredActions = map[string]bool{
	"DescribeInstances": true, "DescribeInstanceStatus": true, "DescribeSnapshots": true, "DescribeVolumes": true,
}

// bucketFor picks the bucket a call draws from.
func bucketFor(name string, form url.Values) string {
	if !unfilteredActions[name] {
		return name
	}
	for k := range form {
		top, _, _ := strings.Cut(k, ".")
		switch top {
		case "Filter", "MaxResults", "NextToken":
			return name
		}
	}
	return name + unfilteredSuffix
}

// DefaultResourceLimits are the resource token buckets: tokens per
// instance a request affects.
func DefaultResourceLimits() map[string]awsproto.Bucket {
	return map[string]awsproto.Bucket{
		"StopInstances":      {Size: 1000, Refill: 20},
		"TerminateInstances": {Size: 1000, Refill: 20},
	}
}

// resourceBuckets meter StopInstances and TerminateInstances by instance.
type resourceBuckets struct {
	mu      sync.Mutex
	enabled bool
	limits  map[string]*rate.Limiter
	now     func() time.Time // the clock the buckets refill by
}

func newResourceBuckets() *resourceBuckets {
	r := &resourceBuckets{enabled: true, now: time.Now}
	r.reset()
	return r
}

func (r *resourceBuckets) reset() {
	r.limits = map[string]*rate.Limiter{}
	for a, b := range DefaultResourceLimits() {
		r.limits[a] = rate.NewLimiter(rate.Limit(b.Refill), int(b.Size))
	}
}

// take draws n tokens for action, all or none.
func (r *resourceBuckets) take(action string, n int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.limits[action]
	if !r.enabled || l == nil || l.AllowN(r.now(), n) {
		return nil
	}
	return awsproto.Throttled()
}

// SetThrottling turns EC2's request-rate limits (request and resource
// buckets) on, full, or off; scripted faults still apply.
func (s *Server) SetThrottling(on bool) {
	s.Controls.SetThrottling(on)
	s.resources.mu.Lock()
	defer s.resources.mu.Unlock()
	s.resources.enabled = on
	s.resources.reset()
}
