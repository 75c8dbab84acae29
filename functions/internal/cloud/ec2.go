package cloud

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// tagQuery is one batched lookup: the volumes of one tether key.
type tagQuery struct{ cluster, name string }

func filter(name string, values ...string) ec2types.Filter {
	return ec2types.Filter{Name: aws.String(name), Values: values}
}

// describe runs one paginated DescribeVolumes.
func (a *AWS) describe(ctx context.Context, filters ...ec2types.Filter) ([]Volume, error) {
	in := &ec2.DescribeVolumesInput{Filters: filters, MaxResults: aws.Int32(500)}
	var out []Volume
	for {
		page, err := a.ec2.DescribeVolumes(ctx, in)
		if err != nil {
			return nil, classify(err, "ec2 DescribeVolumes")
		}
		at := a.opts.Now()
		for _, v := range page.Volumes {
			c := fromEC2Volume(v)
			c.ReadAt = at
			out = append(out, c)
		}
		if aws.ToString(page.NextToken) == "" {
			a.learn(out...)
			return out, nil
		}
		in.NextToken = page.NextToken
	}
}

// describeByTags answers every key of a batch: one DescribeVolumes per
// cluster, with all the batch's names as values of one tag filter.
func (a *AWS) describeByTags(ctx context.Context, keys []tagQuery) (map[tagQuery][]Volume, error) {
	names := map[string][]string{}
	for _, k := range keys {
		names[k.cluster] = append(names[k.cluster], k.name)
	}
	res := make(map[tagQuery][]Volume, len(keys))
	for _, k := range keys {
		res[k] = []Volume{}
	}
	clusters := make([]string, 0, len(names))
	for c := range names {
		clusters = append(clusters, c)
	}
	sort.Strings(clusters)
	for _, c := range clusters {
		vols, err := a.describe(ctx, filter("tag:"+TagCluster, c), filter("tag:"+TagVolume, names[c]...))
		if err != nil {
			return nil, err
		}
		for _, v := range vols {
			k := tagQuery{c, v.Tags[TagVolume]}
			if _, asked := res[k]; asked {
				res[k] = append(res[k], v)
			}
		}
	}
	return res, nil
}

// describeByIDs uses the volume-id filter, not VolumeIds: one unknown id in
// VolumeIds fails the whole request with InvalidVolume.NotFound.
func (a *AWS) describeByIDs(ctx context.Context, ids []string) (map[string]Volume, error) {
	vols, err := a.describe(ctx, filter("volume-id", ids...))
	if err != nil {
		return nil, err
	}
	res := make(map[string]Volume, len(vols))
	for _, v := range vols {
		res[v.ID] = v
	}
	return res, nil
}

// describeFences answers the reads right before DetachVolume by VolumeIds,
// not by filter: EC2 draws such requests from the "unfiltered" bucket
// (50, refilled at 10/s), apart from the filtered reads of every pass (100,
// 20/s), which a mass handoff empties; a detach whose read is throttled
// waits for a retry. One unknown id fails a VolumeIds request as a whole
// (InvalidVolume.NotFound): the ids are then read one by one.
func (a *AWS) describeFences(ctx context.Context, ids []string) (map[string]Volume, error) {
	out, err := a.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: ids})
	err = classify(err, "ec2 DescribeVolumes")
	if errors.Is(err, ErrNotFound) {
		return eachAlone(ctx, ids, a.describeFences)
	}
	if err != nil {
		return nil, err
	}
	at := a.opts.Now()
	res := make(map[string]Volume, len(out.Volumes))
	for _, v := range out.Volumes {
		c := fromEC2Volume(v)
		c.ReadAt = at
		res[c.ID] = c
	}
	return res, nil
}

// eachAlone answers a request by ids that EC2 refused as a whole because
// one id is unknown: one id, none found; several, each read alone.
func eachAlone[V any](ctx context.Context, ids []string, read func(context.Context, []string) (map[string]V, error)) (map[string]V, error) {
	res := map[string]V{}
	if len(ids) == 1 {
		return res, nil
	}
	for _, id := range ids {
		one, err := read(ctx, []string{id})
		if err != nil {
			return nil, err
		}
		maps.Copy(res, one)
	}
	return res, nil
}

// VolumesByKey implements Cloud.
func (a *AWS) VolumesByKey(ctx context.Context, cluster, name string) ([]Volume, error) {
	s := a.sessionOf(ctx)
	if s != nil {
		s.mu.Lock()
		ids, ok := s.byKey[volKey(cluster, name)]
		if !ok && s.volsListed[cluster] {
			ids, ok = nil, true // the cluster listing had none
		}
		if ok {
			vols := s.lookup(ids)
			s.mu.Unlock()
			return vols, nil
		}
		// A volume seen by id with these tags exists: enough to know the
		// key has a volume (only "none" needs the complete tag query).
		var known []Volume
		for _, v := range s.volumes {
			if v.Tags[TagCluster] == cluster && v.Tags[TagVolume] == name {
				known = append(known, v)
			}
		}
		s.mu.Unlock()
		if len(known) > 0 {
			return known, nil
		}
	}
	vols, _, err := a.byTag.Get(ctx, tagQuery{cluster, name})
	if err != nil {
		return nil, err
	}
	if s != nil {
		s.mu.Lock()
		s.remember(vols)
		s.byKey[volKey(cluster, name)] = ids(vols)
		s.mu.Unlock()
	}
	return vols, nil
}

func ids(vols []Volume) []string {
	out := make([]string, len(vols))
	for i, v := range vols {
		out[i] = v.ID
	}
	return out
}

// VolumeByID implements Cloud.
func (a *AWS) VolumeByID(ctx context.Context, id string) (Volume, error) {
	s := a.sessionOf(ctx)
	if s != nil {
		s.mu.Lock()
		v, ok := s.volumes[id]
		gone := s.missing[id]
		s.mu.Unlock()
		if ok {
			return v, nil
		}
		if gone {
			return Volume{}, fmt.Errorf("%w: volume %q", ErrNotFound, id)
		}
	}
	v, ok, err := a.byID.Get(ctx, id)
	if err != nil {
		return Volume{}, err
	}
	if s != nil {
		s.mu.Lock()
		if ok {
			s.remember([]Volume{v})
		} else {
			s.missing[id] = true
		}
		s.mu.Unlock()
	}
	if !ok {
		return Volume{}, fmt.Errorf("%w: volume %q", ErrNotFound, id)
	}
	return v, nil
}

// VolumesByName implements Cloud.
func (a *AWS) VolumesByName(ctx context.Context, name string) ([]Volume, error) {
	vols, err := a.describe(ctx, filter("tag:"+TagName, name))
	if err != nil {
		return nil, err
	}
	if s := a.sessionOf(ctx); s != nil {
		s.mu.Lock()
		s.remember(vols)
		s.mu.Unlock()
	}
	return vols, nil
}

// TetherVolumes lists every volume with a tether:cluster tag, whatever
// the cluster (for operators: `tether volumes` without a cluster).
func (a *AWS) TetherVolumes(ctx context.Context) ([]Volume, error) {
	return a.describe(ctx, filter("tag-key", TagCluster))
}

// ClusterVolumes implements Cloud. The answer also completes the session's
// per-key knowledge: a key absent from it has no volume.
func (a *AWS) ClusterVolumes(ctx context.Context, cluster string) ([]Volume, error) {
	vols, err := a.describe(ctx, filter("tag:"+TagCluster, cluster))
	if err != nil {
		return nil, err
	}
	if s := a.sessionOf(ctx); s != nil {
		s.mu.Lock()
		s.remember(vols)
		for k := range s.byKey {
			if len(k) > len(cluster) && k[:len(cluster)+1] == cluster+"/" {
				delete(s.byKey, k)
			}
		}
		for _, v := range vols {
			k := volKey(cluster, v.Tags[TagVolume])
			s.byKey[k] = append(s.byKey[k], v.ID)
		}
		s.volsListed[cluster] = true
		s.mu.Unlock()
	}
	return vols, nil
}

// InstanceVolumes implements Cloud.
func (a *AWS) InstanceVolumes(ctx context.Context, cluster, instanceID string) ([]Volume, error) {
	s := a.sessionOf(ctx)
	k := volKey(cluster, instanceID)
	if s != nil {
		s.mu.Lock()
		ids, ok := s.byInstance[k]
		vols := s.lookup(ids)
		s.mu.Unlock()
		if ok && len(vols) == len(ids) {
			return vols, nil
		}
	}
	vols, err := a.describe(ctx, filter("attachment.instance-id", instanceID), filter("tag:"+TagCluster, cluster))
	if err != nil {
		return nil, err
	}
	if s != nil {
		s.mu.Lock()
		s.remember(vols)
		s.byInstance[k] = ids(vols)
		s.mu.Unlock()
	}
	return vols, nil
}

// Instance implements Cloud. Concurrent reads of one process (passes
// attaching to several instances at once) go out as one DescribeInstances.
func (a *AWS) Instance(ctx context.Context, id string) (Instance, error) {
	s := a.sessionOf(ctx)
	if s != nil {
		s.mu.Lock()
		in, ok := s.instances[id]
		s.mu.Unlock()
		if ok {
			return in, nil
		}
	}
	in, ok, err := a.instancesByID.Get(ctx, id)
	if err != nil {
		return Instance{}, err
	}
	if !ok {
		return Instance{}, fmt.Errorf("%w: instance %q", ErrNotFound, id)
	}
	if s != nil {
		s.mu.Lock()
		s.instances[id] = in
		s.mu.Unlock()
	}
	return in, nil
}

// describeInstances reads instances by id. EC2 refuses the whole request
// when one id is unknown (InvalidInstanceID.NotFound): each is then asked
// alone, and an unknown one is left out of the answer.
func (a *AWS) describeInstances(ctx context.Context, ids []string) (map[string]Instance, error) {
	out, err := a.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids})
	if err != nil && isInstanceNotFound(err) {
		return eachAlone(ctx, ids, a.describeInstances)
	}
	if err != nil {
		return nil, classify(err, fmt.Sprintf("ec2 DescribeInstances %q", ids))
	}
	res := map[string]Instance{}
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			in := Instance{ID: aws.ToString(i.InstanceId)}
			if i.State != nil {
				in.State = string(i.State.Name)
			}
			if i.Placement != nil {
				in.AZ = aws.ToString(i.Placement.AvailabilityZone)
			}
			for _, m := range i.BlockDeviceMappings {
				in.Devices = append(in.Devices, aws.ToString(m.DeviceName))
			}
			res[in.ID] = in
		}
	}
	return res, nil
}

// CreateVolume implements Cloud. EC2's synchronous refusals of the request
// itself (bad parameter combinations, unknown snapshot or key) are
// ErrInvalidRequest: retrying cannot help.
func (a *AWS) CreateVolume(ctx context.Context, req CreateVolumeRequest) (Volume, error) {
	in := &ec2.CreateVolumeInput{
		AvailabilityZone: aws.String(req.AZ),
		ClientToken:      aws.String(req.Token),
		Encrypted:        aws.Bool(req.Encrypted),
		Size:             aws.Int32(req.SizeGiB),
		VolumeType:       ec2types.VolumeType(req.Type),
		TagSpecifications: []ec2types.TagSpecification{{
			ResourceType: ec2types.ResourceTypeVolume,
			Tags:         EC2Tags(req.Tags),
		}},
	}
	if req.IOPS > 0 {
		in.Iops = aws.Int32(req.IOPS)
	}
	if req.Throughput > 0 {
		in.Throughput = aws.Int32(req.Throughput)
	}
	if req.KMSKeyID != "" {
		in.KmsKeyId = aws.String(req.KMSKeyID)
	}
	if req.SnapshotID != "" {
		in.SnapshotId = aws.String(req.SnapshotID)
	}
	if err := a.pace.take(ctx, "CreateVolume"); err != nil {
		return Volume{}, err
	}
	out, err := a.ec2.CreateVolume(ctx, in, ec2Retryer(a.retry.create))
	a.paced("CreateVolume", err)
	if s := a.sessionOf(ctx); s != nil {
		s.mu.Lock()
		s.forget(Volume{Tags: req.Tags})
		s.mu.Unlock()
	}
	if err != nil {
		what := fmt.Sprintf("ec2 CreateVolume %q in %q", req.Tags[TagVolume], req.AZ)
		if isInvalidCreate(err) {
			return Volume{}, fmt.Errorf("%w: %s: %w", ErrInvalidRequest, what, err)
		}
		return Volume{}, classify(err, what)
	}
	v := Volume{
		ID: aws.ToString(out.VolumeId), AZ: aws.ToString(out.AvailabilityZone), State: string(out.State),
		SizeGiB: aws.ToInt32(out.Size), Type: string(out.VolumeType), IOPS: aws.ToInt32(out.Iops), Throughput: aws.ToInt32(out.Throughput), Encrypted: aws.ToBool(out.Encrypted),
		KMSKeyID: aws.ToString(out.KmsKeyId), CreateTime: aws.ToTime(out.CreateTime), Tags: fromEC2Tags(out.Tags),
	}
	if len(v.Tags) == 0 {
		v.Tags = req.Tags
	}
	a.learn(v)
	return v, nil
}

// isInvalidCreate: CreateVolume refused for its parameters.
func isInvalidCreate(err error) bool {
	switch apiCode(err) {
	case codeInvalidParameter, "InvalidParameterCombination", "InvalidParameter",
		"InvalidSnapshot.NotFound", "InvalidZone.NotFound", "InvalidKMSKey.Id", "KMSKeyNotAccessibleFault":
		return true
	}
	return false
}

// AttachVolume implements Cloud. InvalidParameterValue on attach is about
// the device name (not one of EC2's, in use, or poisoned by an earlier force
// detach): ErrDeviceName tells the caller to pick another. The session keeps
// the instance (its state and mapped names) and adds the name taken, so the
// invocation's other keys need not read it again.
func (a *AWS) AttachVolume(ctx context.Context, volumeID, instanceID, device string) (Attachment, error) {
	if err := a.pace.take(ctx, "AttachVolume"); err != nil {
		return Attachment{}, err
	}
	out, err := a.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{
		VolumeId: aws.String(volumeID), InstanceId: aws.String(instanceID), Device: aws.String(device),
	}, ec2Retryer(a.retry.attach))
	a.paced("AttachVolume", err)
	if s := a.sessionOf(ctx); s != nil {
		s.forgetVolumeID(volumeID, "")
		if err == nil {
			s.mapped(instanceID, device)
		}
	}
	if err == nil {
		at := Attachment{InstanceID: instanceID, Device: device, State: AttachAttaching}
		if out != nil {
			at.AttachTime = aws.ToTime(out.AttachTime)
			if out.State != "" {
				at.State = string(out.State)
			}
		}
		return at, nil
	}
	what := fmt.Sprintf("ec2 AttachVolume %q to %q as %q", volumeID, instanceID, device)
	if isInvalidParameterValue(err) {
		return Attachment{}, fmt.Errorf("%w: %s: %w", ErrDeviceName, what, err)
	}
	return Attachment{}, classify(err, what)
}

// DetachVolume implements Cloud. The instance and the device are always
// named, and (with an attach time) the attachment is read again first, so a
// detach can only ever undo the attachment the caller checked.
func (a *AWS) DetachVolume(ctx context.Context, volumeID string, att Attachment, force bool) error {
	what := fmt.Sprintf("ec2 DetachVolume %q from %q as %q (force=%t)", volumeID, att.InstanceID, att.Device, force)
	if err := a.pace.take(ctx, "DetachVolume"); err != nil {
		return err
	}
	if !att.AttachTime.IsZero() {
		// Read right before the request, past every cache (after the
		// pacer's wait): DetachVolume names the instance, not the
		// attachment, and a newer one may have taken the old one's place.
		// Concurrent detaches of the process share the read (fences): each
		// joins a request sent after it asked, so none reads older news.
		v, found, err := a.fences.Get(ctx, volumeID)
		if err != nil {
			return fmt.Errorf("%s: the read before it: %w", what, err)
		}
		if !found {
			return fmt.Errorf("%w: %s: no such volume", ErrNotFound, what)
		}
		same, detaching := false, false
		for _, c := range v.Attachments {
			if c.InstanceID == att.InstanceID && c.AttachTime.Equal(att.AttachTime) && (att.Device == "" || c.Device == att.Device) {
				same, detaching = true, c.State == AttachDetaching
			}
		}
		if !same {
			return fmt.Errorf("%w: %s", ErrAttachmentChanged, what)
		}
		if detaching && !force {
			// Another pass's detach of this attachment is under way (two
			// processes judged it at once): asking again changes nothing.
			return fmt.Errorf("%w: %s: already detaching", ErrIncorrectState, what)
		}
	}
	in := &ec2.DetachVolumeInput{VolumeId: aws.String(volumeID), InstanceId: aws.String(att.InstanceID), Force: aws.Bool(force)}
	if att.Device != "" {
		// EC2 refuses (InvalidAttachment.NotFound) when the volume is not
		// attached as this device: a fence for the attachment judged, also
		// for the SDK's retries of this request.
		in.Device = aws.String(att.Device)
	}
	_, err := a.ec2.DetachVolume(ctx, in, ec2Retryer(a.retry.detach))
	a.paced("DetachVolume", err)
	if s := a.sessionOf(ctx); s != nil {
		s.forgetVolumeID(volumeID, "")
	}
	return classify(err, what)
}

// DeleteVolume implements Cloud.
func (a *AWS) DeleteVolume(ctx context.Context, volumeID string) error {
	if err := a.pace.take(ctx, "DeleteVolume"); err != nil {
		return err
	}
	_, err := a.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(volumeID)}, ec2Retryer(a.retry.delete))
	a.paced("DeleteVolume", err)
	if s := a.sessionOf(ctx); s != nil {
		s.forgetVolumeID(volumeID, "")
	}
	return classify(err, fmt.Sprintf("ec2 DeleteVolume %q", volumeID))
}

// TagVolume implements Cloud.
func (a *AWS) TagVolume(ctx context.Context, volumeID string, tags map[string]string) error {
	if err := a.pace.take(ctx, "CreateTags"); err != nil {
		return err
	}
	_, err := a.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{volumeID}, Tags: EC2Tags(tags)}, ec2Retryer(a.retry.tags))
	a.paced("CreateTags", err)
	if s := a.sessionOf(ctx); s != nil {
		s.forgetVolumeID(volumeID, "")
	}
	if err == nil {
		if v, ok := a.ident.Get(volumeID); ok {
			v.Tags = maps.Clone(v.Tags)
			maps.Copy(v.Tags, tags)
			a.ident.Add(volumeID, v)
		}
	}
	return classify(err, fmt.Sprintf("ec2 CreateTags %q", volumeID))
}

func fromEC2Volume(v ec2types.Volume) Volume {
	out := Volume{
		ID: aws.ToString(v.VolumeId), AZ: aws.ToString(v.AvailabilityZone), State: string(v.State),
		SizeGiB: aws.ToInt32(v.Size), Type: string(v.VolumeType), IOPS: aws.ToInt32(v.Iops), Throughput: aws.ToInt32(v.Throughput), Encrypted: aws.ToBool(v.Encrypted),
		KMSKeyID: aws.ToString(v.KmsKeyId), CreateTime: aws.ToTime(v.CreateTime), Tags: fromEC2Tags(v.Tags),
		MultiAttach: aws.ToBool(v.MultiAttachEnabled),
	}
	for _, at := range v.Attachments {
		if at.State == ec2types.VolumeAttachmentStateDetached {
			continue
		}
		out.Attachments = append(out.Attachments, Attachment{
			InstanceID: aws.ToString(at.InstanceId), Device: aws.ToString(at.Device),
			State: string(at.State), AttachTime: aws.ToTime(at.AttachTime),
		})
	}
	return out
}

// EC2Tags turns a tag map into EC2's tag list, sorted by key (requests
// and answers are then the same for the same tags; the fake uses it too).
func EC2Tags(m map[string]string) []ec2types.Tag {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]ec2types.Tag, 0, len(m))
	for _, k := range keys {
		out = append(out, ec2types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

func fromEC2Tags(tags []ec2types.Tag) map[string]string {
	out := make(map[string]string, len(tags))
	for _, t := range tags {
		out[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return out
}

// paced tells the pacer about AWS's answer to a paced call.
func (a *AWS) paced(action string, err error) {
	if isThrottle(err) {
		a.pace.throttled(action)
	}
}

// IsDone reports whether a detach or delete error means there was nothing
// (left) to do: the attachment or volume is already gone, or EC2 says the
// state no longer allows it (already detaching or detached).
func IsDone(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrIncorrectState)
}
