package cloud

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

// Elastic Volumes modification states, as EC2 spells them (EC2 API
// reference, VolumeModification: modifying | optimizing | completed |
// failed).
const (
	ModModifying  = "modifying"
	ModOptimizing = "optimizing"
	ModCompleted  = "completed"
	ModFailed     = "failed"
)

// ModifyCooldown is EBS's minimum time between two modifications of one
// volume (EC2 API reference, ModifyVolume: "After modifying a volume, you
// must wait at least six hours and ensure that the volume is in the in-use
// or available state before you can modify the same volume.").
const ModifyCooldown = 6 * time.Hour

// VolumeChange is what ModifyVolume asks for; a zero field is left as it
// is (EC2 then keeps the value, or applies the new type's default IOPS and
// throughput: EC2 API reference, ModifyVolume).
type VolumeChange struct {
	SizeGiB    int32
	Type       string
	IOPS       int32
	Throughput int32
}

// Modification is a volume's latest Elastic Volumes modification.
type Modification struct {
	VolumeID string
	State    string // ModModifying, ModOptimizing, ModCompleted or ModFailed
	// Target is what the modification asked for; Original what it changed.
	TargetSizeGiB, OriginalSizeGiB       int32
	TargetType, OriginalType             string
	TargetIOPS, OriginalIOPS             int32 // 0: the type has none, or EC2 did not say
	TargetThroughput, OriginalThroughput int32
	Progress                             int64 // percent
	StartTime, EndTime                   time.Time
	StatusMessage                        string
}

// InForce reports whether the target size is usable: the EBS guide
// ("Monitor the progress of Amazon EBS volume modifications"): size changes
// "take effect after the volume has transitioned to the Optimizing state".
// From then on the guest's filesystem can be grown.
func (m Modification) InForce() bool { return m.State == ModOptimizing || m.State == ModCompleted }

// Finished reports whether the modification will not change any more (a
// new one may then be asked for, cooldown permitting).
func (m Modification) Finished() bool { return m.State == ModCompleted || m.State == ModFailed }

// NextAllowed is the earliest time EBS's documented cooldown lets the
// volume be modified again (ModifyCooldown after this one started).
func (m Modification) NextAllowed() time.Time {
	if m.StartTime.IsZero() {
		return time.Time{}
	}
	return m.StartTime.Add(ModifyCooldown)
}

// ErrModifyTooSoon: EC2 refused a modification because the volume was
// modified recently (the six-hour cooldown) or one is still in progress.
// Not a fault of the request: it may succeed later, unchanged.
var ErrModifyTooSoon = errors.New("volume modified too recently")

// ModifyTooSoonError is the error ModifyVolume returns for ErrModifyTooSoon
// (errors.As), with when the next modification is allowed, if known.
type ModifyTooSoonError struct {
	VolumeID string
	// InProgress: a modification is still modifying or optimizing.
	InProgress bool
	// NotBefore: the earliest time EBS's documented cooldown allows the next
	// modification (the latest one's start plus ModifyCooldown; EC2 may
	// still refuse then while one is in progress). Zero when unknown.
	NotBefore time.Time
	Err       error // AWS's error
}

func (e *ModifyTooSoonError) Error() string {
	when := "when is unknown"
	if !e.NotBefore.IsZero() {
		when = "not before " + e.NotBefore.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("%v: ec2 ModifyVolume %q: %s: %v", ErrModifyTooSoon, e.VolumeID, when, e.Err)
}

func (e *ModifyTooSoonError) Unwrap() []error { return []error{ErrModifyTooSoon, e.Err} }

// EC2's ModifyVolume refusals tether tells apart.
const (
	// codeModifyRate: the six-hour rule. EC2 answers "You've reached the
	// maximum modification rate per volume limit. Wait at least 6 hours
	// between modifications per EBS volume." (AWS knowledge center, "resize
	// EBS persistent storage in Amazon EKS"; aws-ebs-csi-driver reports),
	// without saying when.
	codeModifyRate = "VolumeModificationRateExceeded"
	// codeModificationState: a modification is still in progress ("Volume
	// vol-… cannot be modified in modification state OPTIMIZING", as
	// reported by users; EC2 API reference, ModifyVolume: modify "only
	// after any previous modification for that volume has finished").
	codeModificationState = "IncorrectModificationState"
	// codeModificationNotFound: DescribeVolumesModifications of a volume
	// never modified ("Modification for volume 'vol-…' does not exist.",
	// as aws-ebs-csi-driver handles it).
	codeModificationNotFound = "InvalidVolumeModification.NotFound"
)

// ModifyVolume implements Cloud: one Elastic Volumes modification. A
// refusal under the cooldown or while one is in progress is a
// *ModifyTooSoonError (ErrModifyTooSoon); a shrink or a change EBS does not
// allow (sizes, IOPS and throughput per type, a change that changes
// nothing) is ErrInvalidRequest carrying AWS's message: retrying cannot
// help, a person must change the task definition.
func (a *AWS) ModifyVolume(ctx context.Context, volumeID string, c VolumeChange) (Modification, error) {
	what := fmt.Sprintf("ec2 ModifyVolume %q", volumeID)
	in := &ec2.ModifyVolumeInput{VolumeId: aws.String(volumeID)}
	if c.SizeGiB > 0 {
		in.Size = aws.Int32(c.SizeGiB)
	}
	if c.Type != "" {
		in.VolumeType = ec2types.VolumeType(c.Type)
	}
	if c.IOPS > 0 {
		in.Iops = aws.Int32(c.IOPS)
	}
	if c.Throughput > 0 {
		in.Throughput = aws.Int32(c.Throughput)
	}
	if in.Size == nil && in.VolumeType == "" && in.Iops == nil && in.Throughput == nil {
		return Modification{}, fmt.Errorf("%w: %s: nothing to change", ErrInvalidRequest, what)
	}
	if err := a.pace.take(ctx, "ModifyVolume"); err != nil {
		return Modification{}, err
	}
	out, err := a.ec2.ModifyVolume(ctx, in, ec2Retryer(a.retry.modify))
	a.paced("ModifyVolume", err)
	if s := a.sessionOf(ctx); s != nil {
		s.forgetVolumeID(volumeID, "")
	}
	if err == nil {
		if out == nil || out.VolumeModification == nil {
			return Modification{VolumeID: volumeID, State: ModModifying}, nil
		}
		return fromEC2Modification(*out.VolumeModification), nil
	}
	switch code := apiCode(err); {
	case code == codeModifyRate || code == codeModificationState:
		e := &ModifyTooSoonError{VolumeID: volumeID, InProgress: code == codeModificationState, Err: err}
		// When: EC2's answer does not say; the latest modification's start
		// does (best effort: a failed lookup leaves it unknown).
		if m, merr := a.VolumeModification(ctx, volumeID); merr == nil {
			e.NotBefore = m.NextAllowed()
			e.InProgress = e.InProgress || !m.Finished()
		}
		return Modification{}, e
	case isInvalidModify(err):
		return Modification{}, fmt.Errorf("%w: %s: %s: %w", ErrInvalidRequest, what, apiMessage(err), err)
	}
	return Modification{}, classify(err, what)
}

// isInvalidModify: ModifyVolume refused for its parameters (a smaller size,
// a size, IOPS or throughput the type does not allow, no change at all).
func isInvalidModify(err error) bool {
	switch apiCode(err) {
	case codeInvalidParameter, "InvalidParameterCombination", "InvalidParameter", "MissingParameter":
		return true
	}
	return false
}

func apiMessage(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorMessage()
	}
	return err.Error()
}

// VolumeModification implements Cloud: the volume's latest modification
// (DescribeVolumesModifications). ErrNotFound when EC2 knows no
// modification of it, or does not know the volume.
func (a *AWS) VolumeModification(ctx context.Context, volumeID string) (Modification, error) {
	what := fmt.Sprintf("ec2 DescribeVolumesModifications %q", volumeID)
	in := &ec2.DescribeVolumesModificationsInput{VolumeIds: []string{volumeID}}
	var latest Modification
	found := false
	for {
		out, err := a.ec2.DescribeVolumesModifications(ctx, in)
		if apiCode(err) == codeModificationNotFound {
			return Modification{}, fmt.Errorf("%w: %s: never modified: %w", ErrNotFound, what, err)
		}
		if err != nil {
			return Modification{}, classify(err, what)
		}
		for _, m := range out.VolumesModifications {
			// A volume never modified may be answered with an empty entry
			// (EC2 API reference, DescribeVolumesModifications: "certain
			// elements of the returned VolumeModification objects are null").
			if aws.ToString(m.VolumeId) != volumeID || m.ModificationState == "" {
				continue
			}
			if got := fromEC2Modification(m); !found || got.StartTime.After(latest.StartTime) {
				latest, found = got, true
			}
		}
		if aws.ToString(out.NextToken) == "" {
			break
		}
		in.NextToken = out.NextToken
	}
	if !found {
		return Modification{}, fmt.Errorf("%w: %s: never modified", ErrNotFound, what)
	}
	return latest, nil
}

func fromEC2Modification(m ec2types.VolumeModification) Modification {
	return Modification{
		VolumeID: aws.ToString(m.VolumeId), State: string(m.ModificationState),
		TargetSizeGiB: aws.ToInt32(m.TargetSize), OriginalSizeGiB: aws.ToInt32(m.OriginalSize),
		TargetType: string(m.TargetVolumeType), OriginalType: string(m.OriginalVolumeType),
		TargetIOPS: aws.ToInt32(m.TargetIops), OriginalIOPS: aws.ToInt32(m.OriginalIops),
		TargetThroughput: aws.ToInt32(m.TargetThroughput), OriginalThroughput: aws.ToInt32(m.OriginalThroughput),
		Progress: aws.ToInt64(m.Progress), StartTime: aws.ToTime(m.StartTime), EndTime: aws.ToTime(m.EndTime),
		StatusMessage: aws.ToString(m.StatusMessage),
	}
}
