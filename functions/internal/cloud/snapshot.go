package cloud

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// Snapshot states (EC2 API reference, Snapshot: pending | completed |
// error | recoverable | recovering).
const (
	SnapshotPending   = "pending"
	SnapshotCompleted = "completed"
	SnapshotError     = "error"
)

// EBSSnapshot is an EBS snapshot as tether sees it.
type EBSSnapshot struct {
	ID         string
	VolumeID   string
	State      string
	Progress   string
	SizeGiB    int32
	Encrypted  bool
	KMSKeyID   string
	StartTime  time.Time
	StateError string // why it failed, when State is error
	Tags       map[string]string
}

// CreateSnapshot implements Cloud: a snapshot of volumeID carrying tags
// from its creation (TagSpecifications), so IAM can require tether's
// cluster tag on it.
func (a *AWS) CreateSnapshot(ctx context.Context, volumeID, description string, tags map[string]string) (EBSSnapshot, error) {
	what := fmt.Sprintf("ec2 CreateSnapshot of %q", volumeID)
	in := &ec2.CreateSnapshotInput{
		VolumeId:    aws.String(volumeID),
		Description: aws.String(description),
		TagSpecifications: []ec2types.TagSpecification{{
			ResourceType: ec2types.ResourceTypeSnapshot,
			Tags:         EC2Tags(tags),
		}},
	}
	if err := a.pace.take(ctx, "CreateSnapshot"); err != nil {
		return EBSSnapshot{}, err
	}
	out, err := a.ec2.CreateSnapshot(ctx, in, ec2Retryer(a.retry.create))
	a.paced("CreateSnapshot", err)
	if err != nil {
		return EBSSnapshot{}, classify(err, what)
	}
	s := EBSSnapshot{ID: aws.ToString(out.SnapshotId), VolumeID: aws.ToString(out.VolumeId), State: string(out.State),
		Progress: aws.ToString(out.Progress), SizeGiB: aws.ToInt32(out.VolumeSize), Encrypted: aws.ToBool(out.Encrypted),
		KMSKeyID: aws.ToString(out.KmsKeyId), StartTime: aws.ToTime(out.StartTime), StateError: aws.ToString(out.StateMessage),
		Tags: fromEC2Tags(out.Tags)}
	if len(s.Tags) == 0 {
		s.Tags = tags
	}
	return s, nil
}

// SnapshotsTagged implements Cloud: the account's own snapshots carrying
// tag key=value, oldest first.
func (a *AWS) SnapshotsTagged(ctx context.Context, key, value string) ([]EBSSnapshot, error) {
	what := fmt.Sprintf("ec2 DescribeSnapshots tagged %s=%s", key, value)
	in := &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"},
		Filters:  []ec2types.Filter{{Name: aws.String("tag:" + key), Values: []string{value}}},
	}
	var out []EBSSnapshot
	p := ec2.NewDescribeSnapshotsPaginator(a.ec2, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, classify(err, what)
		}
		for _, sn := range page.Snapshots {
			out = append(out, fromEC2Snapshot(sn))
		}
	}
	sortSnapshots(out)
	return out, nil
}

func fromEC2Snapshot(sn ec2types.Snapshot) EBSSnapshot {
	return EBSSnapshot{ID: aws.ToString(sn.SnapshotId), VolumeID: aws.ToString(sn.VolumeId), State: string(sn.State),
		Progress: aws.ToString(sn.Progress), SizeGiB: aws.ToInt32(sn.VolumeSize), Encrypted: aws.ToBool(sn.Encrypted),
		KMSKeyID: aws.ToString(sn.KmsKeyId), StartTime: aws.ToTime(sn.StartTime), StateError: aws.ToString(sn.StateMessage),
		Tags: fromEC2Tags(sn.Tags)}
}

func sortSnapshots(s []EBSSnapshot) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && (s[j].StartTime.Before(s[j-1].StartTime) || s[j].StartTime.Equal(s[j-1].StartTime) && s[j].ID < s[j-1].ID); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// DeleteSnapshot implements Cloud. A snapshot already gone is no error.
func (a *AWS) DeleteSnapshot(ctx context.Context, snapshotID string) error {
	what := fmt.Sprintf("ec2 DeleteSnapshot %q", snapshotID)
	if err := a.pace.take(ctx, "DeleteSnapshot"); err != nil {
		return err
	}
	_, err := a.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snapshotID)}, ec2Retryer(a.retry.delete))
	a.paced("DeleteSnapshot", err)
	if err := classify(err, what); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}
