package cloudtest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/internal/volspec"
)

// EC2 is the fake EC2 client.
type EC2 struct{ w *World }

// EC2 returns the world's EC2 client.
func (w *World) EC2() *EC2 { return &EC2{w} }

func (v *Volume) toEC2() ec2types.Volume {
	out := ec2types.Volume{
		VolumeId: aws.String(v.ID), AvailabilityZone: aws.String(v.AZ), State: ec2types.VolumeState(v.State),
		Size: aws.Int32(v.Size), VolumeType: ec2types.VolumeType(v.Type), Encrypted: aws.Bool(v.Encrypted),
		CreateTime: aws.Time(v.Created), MultiAttachEnabled: aws.Bool(v.MultiAttach),
	}
	if v.KMSKeyID != "" {
		out.KmsKeyId = aws.String(v.KMSKeyID)
	}
	if v.IOPS > 0 {
		out.Iops = aws.Int32(v.IOPS)
	}
	if v.Throughput > 0 {
		out.Throughput = aws.Int32(v.Throughput)
	}
	keys := make([]string, 0, len(v.Tags))
	for k := range v.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out.Tags = append(out.Tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(v.Tags[k])})
	}
	if a := v.Att; a != nil {
		out.Attachments = []ec2types.VolumeAttachment{{
			VolumeId: aws.String(v.ID), InstanceId: aws.String(a.Instance), Device: aws.String(a.Device),
			State: ec2types.VolumeAttachmentState(a.State), AttachTime: aws.Time(a.Time),
		}}
	}
	return out
}

// field is what a DescribeVolumes filter compares (EC2 API reference,
// DescribeVolumes: the filters below and tag:<key>); ok is false for a
// filter EC2 does not have.
func (v *Volume) field(name string) (values []string, ok bool) {
	if key, isTag := strings.CutPrefix(name, "tag:"); isTag {
		if val, has := v.Tags[key]; has {
			return []string{val}, true
		}
		return nil, true
	}
	switch name {
	case "volume-id":
		return []string{v.ID}, true
	case "status":
		return []string{v.State}, true
	case "availability-zone":
		return []string{v.AZ}, true
	case "volume-type":
		return []string{v.Type}, true
	case "size":
		return []string{strconv.Itoa(int(v.Size))}, true
	case "encrypted":
		return []string{strconv.FormatBool(v.Encrypted)}, true
	case "multi-attach-enabled":
		return []string{strconv.FormatBool(v.MultiAttach)}, true
	case "tag-key", "tag-value":
		for k, val := range v.Tags {
			if name == "tag-key" {
				values = append(values, k)
			} else {
				values = append(values, val)
			}
		}
		return values, true
	case "attachment.instance-id", "attachment.status", "attachment.device":
		if v.Att == nil {
			return nil, true
		}
		return []string{map[string]string{"attachment.instance-id": v.Att.Instance, "attachment.status": v.Att.State,
			"attachment.device": v.Att.Device}[name]}, true
	}
	return nil, false
}

// volumeFilter is one DescribeVolumes filter, its values compiled.
type volumeFilter struct {
	name   string
	values []*regexp.Regexp
}

// parseFilters refuses a filter EC2 does not have, or one without values.
func parseFilters(filters []ec2types.Filter) ([]volumeFilter, error) {
	var out []volumeFilter
	probe := &Volume{}
	for _, f := range filters {
		name := aws.ToString(f.Name)
		if _, ok := probe.field(name); !ok {
			return nil, apiErr("InvalidParameterValue", "The filter '%s' is invalid", name)
		}
		if len(f.Values) == 0 {
			return nil, apiErr("InvalidParameterValue", "The filter '%s' has no values", name)
		}
		vf := volumeFilter{name: name}
		for _, val := range f.Values {
			vf.values = append(vf.values, wildcard(val))
		}
		out = append(out, vf)
	}
	return out, nil
}

// matches: every filter matches (AND), each when any of its values matches
// any of the volume's (OR).
func (v *Volume) matches(filters []volumeFilter) bool {
	for _, f := range filters {
		have, _ := v.field(f.name)
		hit := false
		for _, re := range f.values {
			for _, h := range have {
				hit = hit || re.MatchString(h)
			}
		}
		if !hit {
			return false
		}
	}
	return true
}

// DescribeVolumes implements cloud.EC2API: VolumeIds or filters (values
// with EC2's wildcards), pages of MaxResults (5 or more; over 500 means
// 500, as the EC2 API reference says) with NextToken; neither MaxResults
// nor NextToken together with VolumeIds.
func (c *EC2) DescribeVolumes(_ context.Context, in *ec2.DescribeVolumesInput, _ ...func(*ec2.Options)) (*ec2.DescribeVolumesOutput, error) {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("EC2:DescribeVolumes"); err != nil {
		return nil, err
	}
	filters, err := parseFilters(in.Filters)
	if err != nil {
		return nil, err
	}
	if len(in.VolumeIds) > 0 && (in.MaxResults != nil || in.NextToken != nil) {
		return nil, apiErr("InvalidParameterCombination", "The parameter volumeSet cannot be used with the parameter maxResults")
	}
	for _, id := range in.VolumeIds {
		if _, ok := w.volumes[id]; !ok {
			return nil, apiErr("InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
		}
	}
	var found []ec2types.Volume
	for _, v := range w.sortedVolumesLocked() {
		if (len(in.VolumeIds) == 0 || contains(in.VolumeIds, v.ID)) && v.matches(filters) {
			found = append(found, v.toEC2())
		}
	}
	limit := len(found)
	if in.MaxResults != nil {
		n := aws.ToInt32(in.MaxResults)
		if n < 5 {
			return nil, apiErr("InvalidParameterValue", "Value ( %d ) for parameter maxResults is invalid. Expecting a value greater than 4.", n)
		}
		limit = int(min(n, 500))
	}
	from := 0
	if in.NextToken != nil {
		if _, err := fmt.Sscanf(aws.ToString(in.NextToken), "page-%d", &from); err != nil || from < 0 || from > len(found) {
			return nil, apiErr("InvalidPaginationToken", "Invalid pagination token %q", aws.ToString(in.NextToken))
		}
	}
	to := min(len(found), from+limit)
	out := &ec2.DescribeVolumesOutput{Volumes: found[from:to]}
	if to < len(found) {
		out.NextToken = aws.String(fmt.Sprintf("page-%d", to))
	}
	return out, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// CreateVolume implements cloud.EC2API with EBS's per-type rules
// (rules.go) and ClientToken idempotency: a token replays its first
// answer; a different request, or a create that failed asynchronously,
// gets IdempotentParameterMismatch.
func (c *EC2) CreateVolume(_ context.Context, in *ec2.CreateVolumeInput, _ ...func(*ec2.Options)) (out *ec2.CreateVolumeOutput, err error) {
	w := c.w
	w.wait("EC2:CreateVolume", "")
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() { w.note("CreateVolume %s %s", aws.ToString(in.ClientToken), outcome(err)) }()
	if err := w.call("EC2:CreateVolume"); err != nil {
		return nil, err
	}
	az := aws.ToString(in.AvailabilityZone)
	if az == "" {
		return nil, apiErr("MissingParameter", "The request must contain the parameter AvailabilityZone")
	}
	if in.Size == nil && in.SnapshotId == nil {
		return nil, apiErr("MissingParameter", "The request must contain the parameter Size")
	}
	if id := aws.ToString(in.SnapshotId); id != "" {
		// EC2 API reference, CreateVolume, SnapshotId; a snapshot still
		// pending cannot be restored (ec2sim does the same).
		sn := w.snapshots[id]
		switch {
		case sn == nil:
			return nil, apiErr("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
		case sn.State != "completed":
			return nil, apiErr("IncorrectState", "Snapshot '%s' is in state '%s'; it must be 'completed'.", id, sn.State)
		case in.Size != nil && *in.Size < sn.Size:
			return nil, apiErr("InvalidParameterValue", "Volume of %dGiB is smaller than snapshot '%s', expect size >= %dGiB", *in.Size, id, sn.Size)
		case in.Size == nil:
			in.Size = aws.Int32(sn.Size)
		}
	}
	// EC2 API reference, CreateVolume, KmsKeyId: "If KmsKeyId is
	// specified, the encrypted state must be true."
	if aws.ToString(in.KmsKeyId) != "" && !aws.ToBool(in.Encrypted) {
		return nil, apiErr("InvalidParameterDependency", "The parameter KmsKeyId requires the parameter Encrypted to be set.")
	}
	tags := map[string]string{}
	for _, ts := range in.TagSpecifications {
		if ts.ResourceType != ec2types.ResourceTypeVolume {
			return nil, apiErr("InvalidParameterValue", "'%s' is not a valid taggable resource type for this operation.", ts.ResourceType)
		}
		for _, t := range ts.Tags {
			if err := checkTag(aws.ToString(t.Key), aws.ToString(t.Value)); err != nil {
				return nil, err
			}
			tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
	}
	if len(tags) > maxTags {
		return nil, apiErr("TagLimitExceeded", "The maximum number of tags per resource is %d.", maxTags)
	}
	tok := aws.ToString(in.ClientToken)
	if len(tok) > 64 {
		return nil, apiErr("InvalidParameterValue", "Value (%s) for parameter clientToken is invalid. The client token must be at most 64 ASCII characters.", tok)
	}
	shape := volumeShape{typ: string(in.VolumeType), size: aws.ToInt32(in.Size), iops: in.Iops, throughput: in.Throughput,
		multiAttach: aws.ToBool(in.MultiAttachEnabled)}
	if shape.typ == "" {
		shape.typ = "gp2" // EC2 API reference, CreateVolume, VolumeType: "Default: gp2"
	}
	iops, throughput, err := shape.resolve()
	if err != nil {
		return nil, err
	}
	params := fmt.Sprintf("%s|%s|%d|%s|%s|%t|%t|%s|%s|%v", az, shape.typ, shape.size, fmtPtr(in.Iops), fmtPtr(in.Throughput), shape.multiAttach,
		aws.ToBool(in.Encrypted), aws.ToString(in.KmsKeyId), aws.ToString(in.SnapshotId), tags)
	if t, ok := w.tokens[tok]; ok && tok != "" {
		if t.failed || t.params != params {
			return nil, apiErr("IdempotentParameterMismatch", "The client token you have provided is associated with a resource that is already deleted or the request parameters differ.")
		}
		return createOutput(w.volumes[t.volume], t.volume, in), nil
	}
	v := &Volume{
		ID: w.id("vol-"), AZ: az, State: "creating", Size: shape.size, Type: shape.typ, IOPS: iops, Throughput: throughput,
		Encrypted: aws.ToBool(in.Encrypted), KMSKeyID: aws.ToString(in.KmsKeyId), Created: w.now, Tags: tags, token: tok,
		Formatted: aws.ToString(in.SnapshotId) != "", MultiAttach: shape.multiAttach,
	}
	v.vanishes = v.KMSKeyID != "" && w.badKMSKeys[v.KMSKeyID]
	if w.failCreates > 0 {
		w.failCreates--
		v.vanishes = true
	}
	w.volumes[v.ID] = v
	if tok != "" {
		w.tokens[tok] = &token{params: params, volume: v.ID}
	}
	w.checkKeysLocked()
	return createOutput(v, v.ID, in), nil
}

// fmtPtr spells an optional number for the idempotency fingerprint.
func fmtPtr(p *int32) string {
	if p == nil {
		return "-"
	}
	return strconv.Itoa(int(*p))
}

func createOutput(v *Volume, id string, in *ec2.CreateVolumeInput) *ec2.CreateVolumeOutput {
	out := &ec2.CreateVolumeOutput{VolumeId: aws.String(id), State: ec2types.VolumeStateCreating,
		AvailabilityZone: in.AvailabilityZone, Size: in.Size, VolumeType: in.VolumeType, Encrypted: in.Encrypted, KmsKeyId: in.KmsKeyId}
	if v != nil {
		out.CreateTime = aws.Time(v.Created)
	}
	for _, ts := range in.TagSpecifications {
		out.Tags = append(out.Tags, ts.Tags...)
	}
	return out
}

// AttachVolume implements cloud.EC2API.
func (c *EC2) AttachVolume(_ context.Context, in *ec2.AttachVolumeInput, _ ...func(*ec2.Options)) (out *ec2.AttachVolumeOutput, err error) {
	w := c.w
	w.wait("EC2:AttachVolume", "")
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() {
		w.note("AttachVolume %s %s %s %s", aws.ToString(in.VolumeId), aws.ToString(in.InstanceId), aws.ToString(in.Device), outcome(err))
	}()
	if err := w.call("EC2:AttachVolume"); err != nil {
		return nil, err
	}
	vid, iid, dev := aws.ToString(in.VolumeId), aws.ToString(in.InstanceId), aws.ToString(in.Device)
	// EC2 User Guide, "Device names on Linux instances" (volspec's set).
	if err := volspec.ValidateDeviceName(dev); err != nil {
		return nil, apiErr("InvalidParameterValue", "Value (%s) for parameter device is invalid. %s is not a valid EBS device name.", dev, dev)
	}
	v, ok := w.volumes[vid]
	if !ok {
		return nil, apiErr("InvalidVolume.NotFound", "The volume '%s' does not exist.", vid)
	}
	inst, ok := w.instances[iid]
	if !ok {
		return nil, apiErr("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", iid)
	}
	// EC2 API reference, AttachVolume: "to a running or stopped instance".
	// A pending one answers IncorrectState, the others (stopping,
	// shutting-down, terminated) IncorrectInstanceState.
	switch inst.State {
	case "running", "stopped":
	case "pending":
		return nil, apiErr("IncorrectState", "Instance '%s' is not 'running'.", iid)
	default:
		return nil, apiErr("IncorrectInstanceState", "Instance '%s' is not 'running'.", iid)
	}
	if code := w.refuseAttach[iid]; code != "" {
		return nil, apiErr(code, "The instance '%s' does not support this attachment.", iid)
	}
	if v.Att != nil {
		return nil, apiErr("VolumeInUse", "%s is already attached to an instance", vid)
	}
	if v.State != "available" {
		return nil, apiErr("IncorrectState", "The volume '%s' is not 'available'.", vid)
	}
	if v.AZ != inst.AZ {
		return nil, apiErr("InvalidVolume.ZoneMismatch", "The volume '%s' is not in the same availability zone as instance '%s'", vid, iid)
	}
	if w.poisonNext[iid] > 0 {
		w.poisonNext[iid]--
		inst.Poisoned[dev] = true
	}
	if inst.Poisoned[dev] {
		return nil, apiErr("InvalidParameterValue", "Invalid value '%s' for unixDevice. Attachment point %s is already in use", dev, dev)
	}
	attached := 1 // the root volume
	for _, o := range w.volumes {
		if o.Att != nil && o.Att.Instance == iid {
			attached++
			if o.Att.Device == dev {
				return nil, apiErr("InvalidParameterValue", "Invalid value '%s' for unixDevice. Attachment point %s is already in use", dev, dev)
			}
		}
	}
	// EC2 User Guide, "Amazon EBS volume limits for Amazon EC2 instances":
	// most Nitro instances take 28 attachments, shared with ENIs.
	limit := inst.AttachLimit
	if limit == 0 {
		limit = 28
	}
	if attached >= limit {
		return nil, apiErr("AttachmentLimitExceeded", "You have reached the maximum number of attachments for instance %s.", iid)
	}
	v.State = "in-use"
	v.Att = &Attachment{Instance: iid, Device: dev, State: "attaching", Time: w.now}
	if w.stickNext[iid] {
		delete(w.stickNext, iid)
		w.stuck[iid+"/"+dev] = true
	}
	return &ec2.AttachVolumeOutput{VolumeId: in.VolumeId, InstanceId: in.InstanceId, Device: in.Device,
		State: ec2types.VolumeAttachmentStateAttaching, AttachTime: aws.Time(w.now)}, nil
}

// DetachVolume implements cloud.EC2API. Detaching a volume that a running
// container on the instance uses is recorded as a violation.
func (c *EC2) DetachVolume(_ context.Context, in *ec2.DetachVolumeInput, _ ...func(*ec2.Options)) (out *ec2.DetachVolumeOutput, err error) {
	w := c.w
	w.wait("EC2:DetachVolume", "")
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() {
		w.note("DetachVolume %s %s force=%t %s", aws.ToString(in.VolumeId), aws.ToString(in.InstanceId), aws.ToBool(in.Force), outcome(err))
	}()
	if err := w.call("EC2:DetachVolume"); err != nil {
		return nil, err
	}
	vid, iid := aws.ToString(in.VolumeId), aws.ToString(in.InstanceId)
	v, ok := w.volumes[vid]
	if !ok {
		return nil, apiErr("InvalidVolume.NotFound", "The volume '%s' does not exist.", vid)
	}
	if iid != "" && w.instances[iid] == nil {
		return nil, apiErr("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", iid)
	}
	// A volume attached nowhere is IncorrectState, whether or not an
	// instance is named (real answers: "Volume 'vol-…' is in the
	// 'available' state." in aws-ebs-csi-driver#1801 and
	// hashicorp/terraform#9023, both with InstanceId); one attached to
	// another instance is InvalidAttachment.NotFound.
	if v.Att == nil {
		return nil, apiErr("IncorrectState", "Volume '%s' is in the '%s' state.", vid, v.State)
	}
	// Naming a device the volume is not attached as is refused the same way
	// (the local world's ec2sim does the same).
	if iid != "" && v.Att.Instance != iid || in.Device != nil && aws.ToString(in.Device) != v.Att.Device {
		return nil, apiErr("InvalidAttachment.NotFound", "Volume %s can not be detached from %s because it is not attached", vid, iid)
	}
	// An instance on its way to stopped or terminated (or not yet running)
	// keeps its volumes, forced or not. Real answer (hashicorp/terraform#18965):
	// "IncorrectInstanceState: Unable to detach volume 'vol-x' from instance
	// 'i-old'. The instance is not in a state in which volumes can be detached."
	switch st := w.instances[v.Att.Instance].State; st {
	case "pending", "stopping", "shutting-down":
		return nil, apiErr("IncorrectInstanceState", "Unable to detach volume '%s' from instance '%s'. The instance is not in a state in which volumes can be detached.",
			vid, v.Att.Instance)
	}
	if v.Att.State == "detaching" || v.Att.State == "busy" {
		if aws.ToBool(in.Force) {
			v.Att.Force, v.Att.State = true, "detaching"
			return &ec2.DetachVolumeOutput{VolumeId: in.VolumeId, State: ec2types.VolumeAttachmentStateDetaching}, nil
		}
		return nil, apiErr("IncorrectState", "Volume '%s' is in the 'detaching' state.", vid)
	}
	if users := w.usersLocked(v.Att.Instance, vid); len(users) > 0 {
		w.violate("DetachVolume %s from %s (force=%t) while running task %s uses it", vid, v.Att.Instance, aws.ToBool(in.Force), users[0])
	}
	if inst := w.instances[v.Att.Instance]; aws.ToBool(in.Force) && inst.State != "stopped" && inst.State != "terminated" && !w.liveForceOK {
		w.violate("force detach of %s from live instance %s (%s)", vid, inst.ID, inst.State)
	}
	if _, mounted := w.instances[v.Att.Instance].Mounted[vid]; mounted && !aws.ToBool(in.Force) {
		// EC2 waits (busy) for the guest; tether asked while the kernel
		// still held the device.
		w.whileMounted = append(w.whileMounted, fmt.Sprintf("%s from %s", vid, v.Att.Instance))
	}
	v.Att.State = "detaching"
	v.Att.Force = aws.ToBool(in.Force)
	return &ec2.DetachVolumeOutput{VolumeId: in.VolumeId, State: ec2types.VolumeAttachmentStateDetaching}, nil
}

// DeleteVolume implements cloud.EC2API.
func (c *EC2) DeleteVolume(_ context.Context, in *ec2.DeleteVolumeInput, _ ...func(*ec2.Options)) (out *ec2.DeleteVolumeOutput, err error) {
	w := c.w
	w.wait("EC2:DeleteVolume", "")
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() { w.note("DeleteVolume %s %s", aws.ToString(in.VolumeId), outcome(err)) }()
	if err := w.call("EC2:DeleteVolume"); err != nil {
		return nil, err
	}
	vid := aws.ToString(in.VolumeId)
	v, ok := w.volumes[vid]
	if !ok {
		return nil, apiErr("InvalidVolume.NotFound", "The volume '%s' does not exist.", vid)
	}
	if v.Att != nil {
		return nil, apiErr("VolumeInUse", "Volume %s is currently attached to %s", vid, v.Att.Instance)
	}
	if v.State != "available" {
		return nil, apiErr("IncorrectState", "The volume '%s' is '%s'", vid, v.State)
	}
	v.State = "deleting"
	return &ec2.DeleteVolumeOutput{}, nil
}

// CreateTags implements cloud.EC2API (volumes only): all or nothing, with
// EC2's tag restrictions.
func (c *EC2) CreateTags(_ context.Context, in *ec2.CreateTagsInput, _ ...func(*ec2.Options)) (*ec2.CreateTagsOutput, error) {
	w := c.w
	w.wait("EC2:CreateTags", "")
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("EC2:CreateTags"); err != nil {
		return nil, err
	}
	if len(in.Resources) == 0 {
		return nil, apiErr("MissingParameter", "The request must contain the parameter ResourceId")
	}
	if len(in.Tags) == 0 {
		return nil, apiErr("MissingParameter", "The request must contain the parameter Tag")
	}
	for _, t := range in.Tags {
		if err := checkTag(aws.ToString(t.Key), aws.ToString(t.Value)); err != nil {
			return nil, err
		}
	}
	for _, id := range in.Resources {
		v, ok := w.volumes[id]
		if !ok {
			return nil, apiErr("InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
		}
		n := len(v.Tags)
		for _, t := range in.Tags {
			if _, has := v.Tags[aws.ToString(t.Key)]; !has {
				n++
			}
		}
		if n > maxTags {
			return nil, apiErr("TagLimitExceeded", "The maximum number of tags per resource is %d.", maxTags)
		}
	}
	for _, id := range in.Resources {
		v := w.volumes[id]
		if v.Tags == nil {
			v.Tags = map[string]string{}
		}
		for _, t := range in.Tags {
			v.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
	}
	w.checkKeysLocked()
	return &ec2.CreateTagsOutput{}, nil
}

// DescribeInstances implements cloud.EC2API (InstanceIds only).
func (c *EC2) DescribeInstances(_ context.Context, in *ec2.DescribeInstancesInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	w := c.w
	w.wait("EC2:DescribeInstances", "")
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.call("EC2:DescribeInstances"); err != nil {
		return nil, err
	}
	if len(in.Filters) > 0 {
		return nil, apiErr("InvalidParameterValue", "filters are not supported by this fake")
	}
	res := ec2types.Reservation{}
	for _, id := range in.InstanceIds {
		inst, ok := w.instances[id]
		if !ok {
			return nil, apiErr("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
		out := ec2types.Instance{InstanceId: aws.String(id), State: &ec2types.InstanceState{Name: ec2types.InstanceStateName(inst.State)},
			Placement: &ec2types.Placement{AvailabilityZone: aws.String(inst.AZ)}}
		out.BlockDeviceMappings = append(out.BlockDeviceMappings, ec2types.InstanceBlockDeviceMapping{DeviceName: aws.String("/dev/xvda")})
		for _, v := range w.sortedVolumesLocked() { // attaching and detaching ones are mapped too
			if v.Att != nil && v.Att.Instance == id {
				out.BlockDeviceMappings = append(out.BlockDeviceMappings, ec2types.InstanceBlockDeviceMapping{DeviceName: aws.String(v.Att.Device)})
			}
		}
		res.Instances = append(res.Instances, out)
	}
	return &ec2.DescribeInstancesOutput{Reservations: []ec2types.Reservation{res}}, nil
}

func (w *World) sortedVolumesLocked() []*Volume {
	out := make([]*Volume, 0, len(w.volumes))
	for _, v := range w.volumes {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var apiErr *smithy.GenericAPIError
	if errors.As(err, &apiErr) {
		return apiErr.Code
	}
	return err.Error()
}
