package ec2sim

import (
	"context"
	"maps"
	"net/url"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

// TestRequestBuckets pins the buckets to the EC2 API reference's table
// ("Request throttling for the Amazon EC2 API") and checks every server
// starts with them on.
func TestRequestBuckets(t *testing.T) {
	want := map[string]awsproto.Bucket{
		"CreateVolume": {Size: 100, Refill: 5}, "DeleteVolume": {Size: 100, Refill: 5},
		"CreateSnapshot": {Size: 100, Refill: 5}, "DeleteSnapshot": {Size: 100, Refill: 5},
		"CreateTags": {Size: 100, Refill: 10}, "DeleteTags": {Size: 100, Refill: 10},
		"TerminateInstances": {Size: 100, Refill: 5},
		"AttachVolume":       {Size: 50, Refill: 5}, "DetachVolume": {Size: 50, Refill: 5},
		"ModifyVolume": {Size: 50, Refill: 5}, "StopInstances": {Size: 50, Refill: 5},
		"DescribeVolumes": {Size: 100, Refill: 20}, "DescribeVolumesModifications": {Size: 100, Refill: 20},
		"DescribeSnapshots": {Size: 100, Refill: 20}, "DescribeInstances": {Size: 100, Refill: 20},
		"DescribeInstanceStatus": {Size: 100, Refill: 20}, "DescribeAvailabilityZones": {Size: 100, Refill: 20},
		"DescribeVolumes:unfiltered": {Size: 50, Refill: 10}, "DescribeSnapshots:unfiltered": {Size: 50, Refill: 10},
		"DescribeInstances:unfiltered": {Size: 50, Refill: 10}, "DescribeInstanceStatus:unfiltered": {Size: 50, Refill: 10},
	}
	if got := DefaultLimits(); !maps.Equal(got, want) {
		t.Errorf("DefaultLimits\n got %v\nwant %v", got, want)
	}
	w := newWorld(t)
	if got := w.srv.Gate().Limits(); !maps.Equal(got, want) {
		t.Errorf("a new server's buckets %v", got)
	}
	// Every action the server answers has a bucket.
	for action := range w.srv.handlers {
		if _, ok := want[action]; !ok {
			t.Errorf("%s has no bucket", action)
		}
	}
	for _, c := range []struct {
		action string
		form   url.Values
		want   string
	}{
		{"DescribeVolumes", url.Values{}, "DescribeVolumes:unfiltered"},
		{"DescribeVolumes", url.Values{"VolumeId.1": {"vol-1"}}, "DescribeVolumes:unfiltered"},
		{"DescribeVolumes", url.Values{"Filter.1.Name": {"volume-id"}}, "DescribeVolumes"},
		{"DescribeVolumes", url.Values{"MaxResults": {"5"}}, "DescribeVolumes"},
		{"DescribeVolumes", url.Values{"NextToken": {"x"}}, "DescribeVolumes"},
		{"DescribeInstanceStatus", url.Values{"InstanceId.1": {"i-1"}}, "DescribeInstanceStatus:unfiltered"},
		{"DescribeVolumesModifications", url.Values{}, "DescribeVolumesModifications"},
		{"DescribeAvailabilityZones", url.Values{}, "DescribeAvailabilityZones"},
		{"AttachVolume", url.Values{}, "AttachVolume"},
	} {
		if got := bucketFor(c.action, c.form); got != c.want {
			t.Errorf("%s %v: bucket %s, want %s", c.action, c.form, got, c.want)
		}
	}
}

// TestIDsDrawFromTheUnfilteredBucket: a DescribeVolumes by VolumeIds alone
// is neither filtered nor paginated; the volume-id filter draws from the
// larger bucket.
func TestIDsDrawFromTheUnfilteredBucket(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	w.srv.Gate().SetLimit("DescribeVolumes:unfiltered", awsproto.Bucket{Size: 1, Refill: 0})
	if _, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}}); code(t, err) != "RequestLimitExceeded" {
		t.Errorf("second call by ids: %v, want RequestLimitExceeded", err)
	}
	out, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String("volume-id"), Values: []string{vol}}}})
	if err != nil || len(out.Volumes) != 1 {
		t.Errorf("by the volume-id filter: %v %v", out, err)
	}
}

// TestResourceBuckets: StopInstances and TerminateInstances also draw one
// token per instance from buckets of 1,000 refilled at 20 per second.
func TestResourceBuckets(t *testing.T) {
	w := newWorld(t)
	r := w.srv.resources
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.mu.Lock()
	r.now = func() time.Time { return clock }
	r.mu.Unlock()
	if err := r.take("StopInstances", 1000); err != nil {
		t.Fatalf("a full bucket of 1000: %v", err)
	}
	if err := r.take("StopInstances", 20); err == nil || err.(*awsproto.Error).Code != "RequestLimitExceeded" {
		t.Errorf("20 more at once: %v, want RequestLimitExceeded", err)
	}
	clock = clock.Add(time.Second) // 20 tokens back; a request is all or nothing
	if err := r.take("StopInstances", 21); err == nil {
		t.Error("21 after one second: accepted")
	}
	if err := r.take("StopInstances", 20); err != nil {
		t.Errorf("20 after one second: %v", err)
	}
	if err := r.take("TerminateInstances", 1000); err != nil {
		t.Errorf("TerminateInstances has its own bucket: %v", err)
	}
	w.srv.SetThrottling(false)
	if err := r.take("StopInstances", 5000); err != nil {
		t.Errorf("throttling off: %v", err)
	}
	w.srv.SetThrottling(true)
	if err := r.take("StopInstances", 1000); err != nil {
		t.Errorf("throttling back on starts full: %v", err)
	}
}
