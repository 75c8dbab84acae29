package ec2sim

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/latency"
)

func (v *volume) xml() xmlVolume {
	out := xmlVolume{
		VolumeID: v.id, Size: v.size, SnapshotID: v.snapshotID, AvailabilityZone: v.az, Status: v.state,
		CreateTime: ts(v.created), Tags: tagSet(v.tags), VolumeType: v.typ, Encrypted: v.encrypted,
		KmsKeyID: v.kmsKey, MultiAttachEnabled: v.multiAttach,
	}
	if v.iops > 0 {
		iops := v.iops
		out.Iops = &iops
	}
	if v.throughput > 0 {
		t := v.throughput
		out.Throughput = &t
	}
	if a := v.att; a != nil {
		out.Attachments.Items = []xmlAttachment{a.xml(v.id)}
	}
	return out
}

func (a *attachment) xml(volumeID string) xmlAttachment {
	return xmlAttachment{VolumeID: volumeID, InstanceID: a.instanceID, Device: a.device, Status: a.state,
		AttachTime: ts(a.at), DeleteOnTermination: a.deleteOnTermination}
}

func (s *Server) createVolume(ctx context.Context, form url.Values) (any, error) {
	az := form.Get("AvailabilityZone")
	if az == "" {
		return nil, errMissing("AvailabilityZone")
	}
	if !s.hasAZ(az) {
		return nil, errInvalidValue("Invalid availability zone: [%s]", az)
	}
	shape := volumeShape{typ: form.Get("VolumeType")}
	if shape.typ == "" {
		shape.typ = "gp2"
	}
	size, hasSize, err := optInt32(form, "Size")
	if err != nil {
		return nil, err
	}
	if shape.iops, shape.hasIops, err = optInt32(form, "Iops"); err != nil {
		return nil, err
	}
	if shape.throughput, shape.hasThroughput, err = optInt32(form, "Throughput"); err != nil {
		return nil, err
	}
	encrypted, _, err := optBool(form, "Encrypted")
	if err != nil {
		return nil, err
	}
	if shape.multiAttach, _, err = optBool(form, "MultiAttachEnabled"); err != nil {
		return nil, err
	}
	keyID := form.Get("KmsKeyId")
	if keyID != "" && !encrypted {
		return nil, awsproto.BadRequest("InvalidParameterDependency", "The parameter KmsKeyId requires the parameter Encrypted to be set.")
	}
	tags, err := tagSpecifications(form, "volume")
	if err != nil {
		return nil, err
	}
	token := form.Get("ClientToken")
	if len(token) > 64 {
		return nil, errInvalidValue("Value (%s) for parameter clientToken is invalid. The client token must be at most 64 ASCII characters.", token)
	}
	snapID := form.Get("SnapshotId")
	if !hasSize && snapID == "" {
		return nil, errMissing("Size")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var snap *snapshot
	if snapID != "" {
		snap = s.snapshots[snapID]
		if snap == nil {
			return nil, errSnapshotNotFound(snapID)
		}
		if snap.state != "completed" {
			return nil, errIncorrectState("Snapshot '%s' is in state '%s'; it must be 'completed'.", snapID, snap.state)
		}
		if !hasSize {
			size = snap.volumeSize
		}
		if size < snap.volumeSize {
			return nil, errInvalidValue("Volume of %dGiB is smaller than snapshot '%s', expect size >= %dGiB", size, snapID, snap.volumeSize)
		}
		if snap.encrypted {
			encrypted = true
			if keyID == "" {
				keyID = snap.kmsKey
			}
		}
	}
	shape.size = size
	iops, throughput, err := shape.resolve()
	if err != nil {
		return nil, err
	}
	var failCause string
	if encrypted {
		key, cause := s.resolveKMSKey(keyID)
		keyID, failCause = key, cause
	}
	fp := fingerprint(az, shape, encrypted, keyID, snapID, tags)
	if token != "" {
		if t := s.tokens[token]; t != nil {
			if t.failed || t.fingerprint != fp {
				return nil, awsproto.BadRequest("IdempotentParameterMismatch",
					"The client token '%s' was already used with different parameters or by a request that failed.", token)
			}
			if v := s.volumes[t.volumeID]; v != nil {
				return &createVolumeResponse{xmlVolume: v.xml()}, nil
			}
			gone := t.last
			gone.Status = "deleted"
			return &createVolumeResponse{xmlVolume: gone}, nil
		}
	}
	if f := s.faults.takeCreateFailure(); f != "" && failCause == "" {
		failCause = f
	}
	v := &volume{
		id: s.newID("vol", func(id string) bool { return s.volumes[id] != nil }), az: az, typ: shape.typ, size: size,
		iops: iops, throughput: throughput, encrypted: encrypted, kmsKey: keyID, snapshotID: snapID,
		state: stateCreating, created: time.Now(), seq: s.nextSeq(), tags: tags, clientToken: token,
		requestID: awsproto.RequestID(ctx), failCause: failCause, multiAttach: shape.multiAttach,
	}
	v.backing = filepath.Join(s.cfg.Dir, v.id+".img")
	if snap == nil {
		got, err := createSparse(v.backing, int64(size)*gib)
		if err != nil {
			return nil, awsproto.Errorf(500, "InternalError", "%v", err)
		}
		s.warnCapped(v.id, int64(size)*gib, got)
	}
	s.volumes[v.id] = v
	if token != "" {
		s.tokens[token] = &clientToken{fingerprint: fp, volumeID: v.id, last: v.xml()}
	}
	s.log.Info("volume creating", "volume", v.id, "az", az, "type", v.typ, "sizeGiB", size, "snapshot", snapID)
	var snapPath string
	if snap != nil {
		snapPath = snap.backing
	}
	s.afterLocked(s.lat.Sample(latency.CreateVolume), func(ctx context.Context) { s.finishCreate(v.id, snapID, snapPath) })
	return &createVolumeResponse{xmlVolume: v.xml()}, nil
}

// afterLocked is after for callers holding s.mu.
func (s *Server) afterLocked(d time.Duration, fn func(ctx context.Context)) {
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if sleep(s.ctx, d) {
			fn(s.ctx)
		}
	}()
}

func fingerprint(az string, sh volumeShape, encrypted bool, key, snap string, tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k, v := range tags {
		keys = append(keys, k+"="+v)
	}
	sort.Strings(keys)
	return fmt.Sprintf("%s|%s|%d|%d/%t|%d/%t|%t|%t|%s|%s|%s", az, sh.typ, sh.size, sh.iops, sh.hasIops,
		sh.throughput, sh.hasThroughput, sh.multiAttach, encrypted, key, snap, strings.Join(keys, ","))
}

// finishCreate ends a volume's "creating": available, or, for a create
// that fails asynchronously, gone (its token then answers
// IdempotentParameterMismatch).
func (s *Server) finishCreate(id, snapID, snapPath string) {
	s.mu.Lock()
	v := s.volumes[id]
	if v == nil || v.state != stateCreating {
		s.mu.Unlock()
		return
	}
	cause, backing, size, reqID := v.failCause, v.backing, int64(v.size)*gib, v.requestID
	s.mu.Unlock()
	if cause == "" && snapPath != "" {
		if err := copySparse(snapPath, backing, size); err != nil {
			cause = "snapshot data could not be read: " + err.Error()
		} else if s.cfg.VolumeRestored != nil {
			s.cfg.VolumeRestored(id, snapID)
		}
	}
	s.mu.Lock()
	if cause != "" {
		delete(s.volumes, id)
		if t := s.tokens[v.clientToken]; t != nil && v.clientToken != "" {
			t.failed = true
		}
		s.volumeEventLocked(id, "createVolume", "failed", cause, reqID)
		s.mu.Unlock()
		os.Remove(backing)
		s.log.Warn("volume create failed", "volume", id, "cause", cause)
		return
	}
	v.state = stateAvailable
	s.volumeEventLocked(id, "createVolume", "available", "", reqID)
	s.mu.Unlock()
}

func volumeFilters() map[string]bool {
	return map[string]bool{
		"attachment.instance-id": true, "attachment.status": true, "attachment.device": true,
		"attachment.delete-on-termination": true, "status": true, "availability-zone": true, "volume-id": true,
		"volume-type": true, "size": true, "snapshot-id": true, "encrypted": true, "tag-key": true, "tag-value": true,
		"multi-attach-enabled": true,
	}
}

func (v *volume) field(name string) []string {
	switch name {
	case "status":
		return []string{v.state}
	case "availability-zone":
		return []string{v.az}
	case "volume-id":
		return []string{v.id}
	case "volume-type":
		return []string{v.typ}
	case "size":
		return []string{strconv.Itoa(int(v.size))}
	case "snapshot-id":
		return []string{v.snapshotID}
	case "encrypted":
		return []string{strconv.FormatBool(v.encrypted)}
	case "multi-attach-enabled":
		return []string{strconv.FormatBool(v.multiAttach)}
	}
	if v.att == nil {
		return nil
	}
	switch name {
	case "attachment.instance-id":
		return []string{v.att.instanceID}
	case "attachment.status":
		return []string{v.att.state}
	case "attachment.device":
		return []string{v.att.device}
	case "attachment.delete-on-termination":
		return []string{strconv.FormatBool(v.att.deleteOnTermination)}
	}
	return nil
}

func (s *Server) describeVolumes(_ context.Context, form url.Values) (any, error) {
	ids := awsproto.List(form, "VolumeId")
	filters, err := parseFilters(form, volumeFilters())
	if err != nil {
		return nil, err
	}
	if err := volumePager().check(form, ids); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if s.volumes[id] == nil {
			return nil, errVolumeNotFound(id)
		}
	}
	var vols []*volume
	for _, v := range s.volumes {
		if len(ids) > 0 && !slices.Contains(ids, v.id) {
			continue
		}
		if matches(filters, v.tags, v.field) {
			vols = append(vols, v)
		}
	}
	sort.Slice(vols, func(i, j int) bool { return vols[i].seq < vols[j].seq })
	start, end, next, err := volumePager().apply(form, ids, len(vols),
		func(i int) int64 { return vols[i].seq })
	if err != nil {
		return nil, err
	}
	out := &describeVolumesResponse{NextToken: next}
	out.Volumes.Items = []xmlVolume{}
	for _, v := range vols[start:end] {
		out.Volumes.Items = append(out.Volumes.Items, v.xml())
	}
	return out, nil
}

func (s *Server) deleteVolume(ctx context.Context, form url.Values) (any, error) {
	id, err := required(form, "VolumeId")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumes[id]
	if v == nil {
		return nil, errVolumeNotFound(id)
	}
	switch v.state {
	case stateInUse:
		return nil, errVolumeInUse("Volume %s is currently attached to %s", id, v.att.instanceID)
	case stateDeleting:
		return &returnResponse{Return: true}, nil
	case stateCreating:
		return nil, errIncorrectState("The volume '%s' is 'creating'.", id)
	}
	v.state = stateDeleting
	s.log.Info("volume deleting", "volume", id)
	reqID := awsproto.RequestID(ctx)
	s.afterLocked(s.lat.Sample(latency.DeleteVolume), func(context.Context) { s.finishDelete(id, reqID) })
	return &returnResponse{Return: true}, nil
}

func (s *Server) finishDelete(id, reqID string) {
	s.mu.Lock()
	v := s.volumes[id]
	if v == nil || v.state != stateDeleting {
		s.mu.Unlock()
		return
	}
	delete(s.volumes, id)
	if t := s.tokens[v.clientToken]; t != nil && v.clientToken != "" {
		t.last = v.xml()
	}
	s.volumeEventLocked(id, "deleteVolume", "deleted", "", reqID)
	s.mu.Unlock()
	if err := os.Remove(v.backing); err != nil && !os.IsNotExist(err) {
		s.log.Warn("removing backing file", "volume", id, "err", err)
	}
}

// warnCapped logs a backing file smaller than its volume (see backing.go).
func (s *Server) warnCapped(volumeID string, want, got int64) {
	if got < want {
		s.log.Warn("backing file capped by the file system: the guest sees a smaller device than EC2 reports",
			"volume", volumeID, "sizeBytes", want, "backingBytes", got)
	}
}

func volumePager() pager { return pager{minMax: 5, capMax: 500, idParam: "volumeSet"} }
