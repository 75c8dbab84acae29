package cloudtest

import (
	"context"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/tether-ecs/tether/functions/internal/cloud"
)

// Snapshot is an EBS snapshot: pending until the driver completes its
// "snapshot" op (the local world times the same: test/world/ec2sim
// snapshots.go).
type Snapshot struct {
	ID, VolumeID, State string
	Size                int32
	Encrypted           bool
	KMSKeyID            string
	Started             time.Time
	Tags                map[string]string
	Formatted           bool // the source held a filesystem
}

// Snapshots returns copies of the snapshots, oldest first.
func (w *World) Snapshots() []Snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Snapshot
	for _, s := range w.snapshots {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// CreateSnapshot implements cloud.EC2API (EC2 API reference,
// CreateSnapshot: the volume must exist and not be creating; tags given
// must be for resource type snapshot).
func (c *EC2) CreateSnapshot(_ context.Context, in *ec2.CreateSnapshotInput, _ ...func(*ec2.Options)) (out *ec2.CreateSnapshotOutput, err error) {
	w := c.w
	w.wait("EC2:CreateSnapshot", "")
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() { w.note("CreateSnapshot %s %s", aws.ToString(in.VolumeId), outcome(err)) }()
	if err := w.call("EC2:CreateSnapshot"); err != nil {
		return nil, err
	}
	v := w.volumes[aws.ToString(in.VolumeId)]
	switch {
	case v == nil:
		return nil, apiErr("InvalidVolume.NotFound", "The volume '%s' does not exist.", aws.ToString(in.VolumeId))
	case v.State == "creating" || v.State == "deleting":
		return nil, apiErr("IncorrectState", "Volume '%s' is in the '%s' state.", v.ID, v.State)
	}
	tags := map[string]string{}
	for _, ts := range in.TagSpecifications {
		if ts.ResourceType != ec2types.ResourceTypeSnapshot {
			return nil, apiErr("InvalidParameterValue", "'%s' is not a valid taggable resource type for this operation.", ts.ResourceType)
		}
		for _, t := range ts.Tags {
			if err := checkTag(aws.ToString(t.Key), aws.ToString(t.Value)); err != nil {
				return nil, err
			}
			tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
	}
	s := &Snapshot{ID: w.id("snap-"), VolumeID: v.ID, State: "pending", Size: v.Size, Encrypted: v.Encrypted, KMSKeyID: v.KMSKeyID,
		Started: w.now, Tags: tags, Formatted: v.Formatted}
	w.snapshots[s.ID] = s
	return &ec2.CreateSnapshotOutput{SnapshotId: aws.String(s.ID), VolumeId: aws.String(v.ID), State: ec2types.SnapshotStatePending,
		VolumeSize: aws.Int32(s.Size), Encrypted: aws.Bool(s.Encrypted), KmsKeyId: nilIfEmpty(s.KMSKeyID), StartTime: aws.Time(s.Started),
		Tags: cloud.EC2Tags(tags)}, nil
}

// DescribeSnapshots implements cloud.EC2API: by id or by tag filters; the
// account's own (OwnerIds self) only, as every snapshot here is.
func (c *EC2) DescribeSnapshots(_ context.Context, in *ec2.DescribeSnapshotsInput, _ ...func(*ec2.Options)) (*ec2.DescribeSnapshotsOutput, error) {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("EC2:DescribeSnapshots"); err != nil {
		return nil, err
	}
	out := &ec2.DescribeSnapshotsOutput{}
	ids := map[string]bool{}
	for _, id := range in.SnapshotIds {
		if w.snapshots[id] == nil {
			return nil, apiErr("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
		}
		ids[id] = true
	}
	var list []*Snapshot
	for _, s := range w.snapshots {
		if len(ids) > 0 && !ids[s.ID] {
			continue
		}
		ok := true
		for _, f := range in.Filters {
			name := aws.ToString(f.Name)
			if len(name) <= 4 || name[:4] != "tag:" {
				return nil, apiErr("InvalidParameterValue", "The filter '%s' is invalid", name)
			}
			match := false
			for _, want := range f.Values {
				match = match || s.Tags[name[4:]] == want
			}
			ok = ok && match
		}
		if ok {
			list = append(list, s)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	for _, s := range list {
		out.Snapshots = append(out.Snapshots, ec2types.Snapshot{SnapshotId: aws.String(s.ID), VolumeId: aws.String(s.VolumeID),
			State: ec2types.SnapshotState(s.State), VolumeSize: aws.Int32(s.Size), Encrypted: aws.Bool(s.Encrypted),
			KmsKeyId: nilIfEmpty(s.KMSKeyID), StartTime: aws.Time(s.Started), Tags: cloud.EC2Tags(s.Tags), OwnerId: aws.String("111122223333")})
	}
	return out, nil
}

func (w *World) completeSnapshot(id string) {
	if s := w.snapshots[id]; s != nil && s.State == "pending" {
		s.State = "completed"
	}
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

// DeleteSnapshot implements cloud.EC2API.
func (c *EC2) DeleteSnapshot(_ context.Context, in *ec2.DeleteSnapshotInput, _ ...func(*ec2.Options)) (out *ec2.DeleteSnapshotOutput, err error) {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() { w.note("DeleteSnapshot %s %s", aws.ToString(in.SnapshotId), outcome(err)) }()
	if err := w.call("EC2:DeleteSnapshot"); err != nil {
		return nil, err
	}
	if w.snapshots[aws.ToString(in.SnapshotId)] == nil {
		return nil, apiErr("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", aws.ToString(in.SnapshotId))
	}
	delete(w.snapshots, aws.ToString(in.SnapshotId))
	return &ec2.DeleteSnapshotOutput{}, nil
}
