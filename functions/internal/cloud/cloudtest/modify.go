package cloudtest

import (
	"context"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// Modification is a volume's Elastic Volumes modification: modifying until
// the driver completes a "modify" op (the new size, type and performance
// are then in force: optimizing, with EBS's modifyVolume event), then
// optimizing until it completes an "optimize" op (completed). The local
// world (test/world/ec2sim modify.go) times the same states.
type Modification struct {
	State                                string // modifying, optimizing, completed
	Start, End                           time.Time
	OriginalSize, TargetSize             int32
	OriginalType, TargetType             string
	OriginalIOPS, TargetIOPS             int32
	OriginalThroughput, TargetThroughput int32
	targetMulti                          bool
}

// modifyCooldown: EC2 API reference, ModifyVolume: "After modifying a
// volume, you must wait at least six hours ... before you can modify the
// same volume."
const modifyCooldown = 6 * time.Hour

// ModifyVolume implements cloud.EC2API with EBS's rules: the volume
// available or in use; no modification in progress (IncorrectModificationState)
// and none started within six hours (VolumeModificationRateExceeded, with
// the message EC2 gives); never smaller; the new shape within the type's
// limits (rules.go); something must change.
func (c *EC2) ModifyVolume(_ context.Context, in *ec2.ModifyVolumeInput, _ ...func(*ec2.Options)) (out *ec2.ModifyVolumeOutput, err error) {
	w := c.w
	w.wait("EC2:ModifyVolume", "")
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() { w.note("ModifyVolume %s %s", aws.ToString(in.VolumeId), outcome(err)) }()
	if err := w.call("EC2:ModifyVolume"); err != nil {
		return nil, err
	}
	id := aws.ToString(in.VolumeId)
	if id == "" {
		return nil, apiErr("MissingParameter", "The request must contain the parameter VolumeId")
	}
	if in.Size == nil && in.VolumeType == "" && in.Iops == nil && in.Throughput == nil && in.MultiAttachEnabled == nil {
		return nil, apiErr("MissingParameter", "The request must contain at least one of the parameters Size, VolumeType, Iops, Throughput or MultiAttachEnabled")
	}
	v := w.volumes[id]
	if v == nil {
		return nil, apiErr("InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
	}
	if v.State != "available" && v.State != "in-use" {
		return nil, apiErr("IncorrectState", "Volume '%s' is in the '%s' state.", id, v.State)
	}
	if m := v.Mod; m != nil && (m.State == "modifying" || m.State == "optimizing") {
		return nil, apiErr("IncorrectModificationState", "Volume %s cannot be modified in modification state %s", id, strings.ToUpper(m.State))
	}
	if m := v.Mod; m != nil && w.now.Sub(m.Start) < modifyCooldown {
		return nil, apiErr("VolumeModificationRateExceeded",
			"You've reached the maximum modification rate per volume limit. Wait at least 6 hours between modifications per EBS volume.")
	}
	if in.MultiAttachEnabled != nil && aws.ToBool(in.MultiAttachEnabled) != v.MultiAttach {
		// EBS user guide, "Amazon EBS Multi-Attach": only while detached.
		if v.Att != nil {
			return nil, apiErr("IncorrectState", "Volume '%s' must be detached to change its Multi-Attach setting.", id)
		}
	}
	shape := volumeShape{typ: v.Type, size: v.Size, multiAttach: v.MultiAttach, iops: in.Iops, throughput: in.Throughput}
	if in.MultiAttachEnabled != nil {
		shape.multiAttach = aws.ToBool(in.MultiAttachEnabled)
	}
	if in.VolumeType != "" {
		shape.typ = string(in.VolumeType)
	}
	if in.Size != nil {
		// EC2 answers a shrink with InvalidParameterValue ("New size
		// cannot be smaller than existing size"): EBS volumes only grow
		// (EBS user guide, "Modify a volume using Amazon EBS Elastic Volumes").
		if *in.Size < v.Size {
			return nil, apiErr("InvalidParameterValue", "New size cannot be smaller than existing size")
		}
		shape.size = *in.Size
	}
	// EC2 API reference, ModifyVolume, Iops and Throughput: the existing
	// value is kept for the same type; a change to io1, io2 or gp3 gets
	// 3,000 IOPS (gp3 125 MiB/s) by default.
	if shape.iops == nil && shape.typ == v.Type && v.IOPS > 0 && (v.Type == "io1" || v.Type == "io2" || v.Type == "gp3") {
		shape.iops = aws.Int32(v.IOPS)
	}
	if shape.iops == nil && shape.typ != v.Type && (shape.typ == "io1" || shape.typ == "io2") {
		shape.iops = aws.Int32(3000)
	}
	if shape.throughput == nil && shape.typ == "gp3" && v.Type == "gp3" && v.Throughput > 0 {
		shape.throughput = aws.Int32(v.Throughput)
	}
	iops, throughput, err := shape.resolve()
	if err != nil {
		return nil, err
	}
	if shape.size == v.Size && shape.typ == v.Type && iops == v.IOPS && throughput == v.Throughput && shape.multiAttach == v.MultiAttach {
		return nil, apiErr("InvalidParameterValue", "New size, type, IOPS or throughput must differ from the volume's current configuration.")
	}
	v.Mod = &Modification{State: "modifying", Start: w.now, OriginalSize: v.Size, TargetSize: shape.size,
		OriginalType: v.Type, TargetType: shape.typ, OriginalIOPS: v.IOPS, TargetIOPS: iops,
		OriginalThroughput: v.Throughput, TargetThroughput: throughput}
	v.Mod.targetMulti = shape.multiAttach
	return &ec2.ModifyVolumeOutput{VolumeModification: v.Mod.toEC2(id)}, nil
}

func (m *Modification) toEC2(id string) *ec2types.VolumeModification {
	num := func(n int32) *int32 {
		if n == 0 {
			return nil
		}
		return aws.Int32(n)
	}
	progress := map[string]int64{"modifying": 0, "optimizing": 50, "completed": 100}[m.State]
	out := &ec2types.VolumeModification{
		VolumeId: aws.String(id), ModificationState: ec2types.VolumeModificationState(m.State), StartTime: aws.Time(m.Start),
		OriginalSize: aws.Int32(m.OriginalSize), TargetSize: aws.Int32(m.TargetSize),
		OriginalVolumeType: ec2types.VolumeType(m.OriginalType), TargetVolumeType: ec2types.VolumeType(m.TargetType),
		OriginalIops: num(m.OriginalIOPS), TargetIops: num(m.TargetIOPS),
		OriginalThroughput: num(m.OriginalThroughput), TargetThroughput: num(m.TargetThroughput), Progress: aws.Int64(progress),
	}
	if !m.End.IsZero() {
		out.EndTime = aws.Time(m.End)
	}
	return out
}

// DescribeVolumesModifications implements cloud.EC2API (VolumeIds only):
// each volume's latest modification; InvalidVolumeModification.NotFound
// for a volume never modified, as the local world answers.
func (c *EC2) DescribeVolumesModifications(_ context.Context, in *ec2.DescribeVolumesModificationsInput, _ ...func(*ec2.Options)) (*ec2.DescribeVolumesModificationsOutput, error) {
	w := c.w
	w.wait("EC2:DescribeVolumesModifications", "")
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("EC2:DescribeVolumesModifications"); err != nil {
		return nil, err
	}
	if len(in.Filters) > 0 || in.MaxResults != nil || in.NextToken != nil {
		return nil, apiErr("InvalidParameterValue", "cloudtest: DescribeVolumesModifications takes VolumeIds only")
	}
	out := &ec2.DescribeVolumesModificationsOutput{}
	for _, id := range in.VolumeIds {
		v := w.volumes[id]
		if v == nil {
			return nil, apiErr("InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
		}
		if v.Mod == nil {
			return nil, apiErr("InvalidVolumeModification.NotFound", "Modification for volume '%s' does not exist.", id)
		}
		out.VolumesModifications = append(out.VolumesModifications, *v.Mod.toEC2(id))
	}
	return out, nil
}

// completeModify puts a modification in force (modifying -> optimizing):
// the volume takes its new size, type and performance; EBS sends its one
// modifyVolume event ("Amazon EventBridge for Amazon EBS": result
// optimizing).
func (w *World) completeModify(id string) {
	v := w.volumes[id]
	if v == nil || v.Mod == nil || v.Mod.State != "modifying" {
		return
	}
	m := v.Mod
	v.Size, v.Type, v.IOPS, v.Throughput, v.MultiAttach = m.TargetSize, m.TargetType, m.TargetIOPS, m.TargetThroughput, m.targetMulti
	m.State = "optimizing"
	w.events = append(w.events, Event{Kind: "volume", Volume: id, Action: "modifyVolume", Result: "optimizing"})
}

// completeOptimize ends a modification (optimizing -> completed); EBS sends
// no event for it.
func (w *World) completeOptimize(id string) {
	if v := w.volumes[id]; v != nil && v.Mod != nil && v.Mod.State == "optimizing" {
		v.Mod.State, v.Mod.End = "completed", w.now
	}
}

// growLocked is tether-agent's online grow as the guest sees it: the
// filesystem spans the volume's size in force after a mount. It reports
// whether it grew and the filesystem's size in bytes.
func (v *Volume) growLocked() (grown bool, bytes int64) {
	if v.FSGiB > 0 && v.FSGiB < v.Size {
		grown = true
	}
	v.FSGiB = v.Size
	return grown, int64(v.FSGiB) << 30
}
