package ec2sim

import (
	"context"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/latency"
)

func (m *modification) xml(volumeID string) xmlModification {
	ptr := func(n int32) *int32 {
		if n == 0 {
			return nil
		}
		return &n
	}
	out := xmlModification{
		VolumeID: volumeID, ModificationState: m.state, TargetSize: m.targetSize, TargetIops: ptr(m.targetIops),
		TargetVolumeType: m.targetType, TargetThroughput: ptr(m.targetThrput), OriginalSize: m.origSize,
		OriginalIops: ptr(m.origIops), OriginalVolumeType: m.origType, OriginalThroughput: ptr(m.origThroughput),
		OriginalMultiAttachEnabled: m.origMulti, TargetMultiAttachEnabled: m.targetMulti,
		Progress: m.progress, StartTime: ts(m.start),
	}
	if !m.end.IsZero() {
		out.EndTime = ts(m.end)
	}
	return out
}

// modifyVolume starts an Elastic Volumes change: modifying -> optimizing
// (the new size, type and performance are in force; the backing file has
// grown, and the guest sees it after a rescan) -> completed.
func (s *Server) modifyVolume(ctx context.Context, form url.Values) (any, error) {
	id, err := required(form, "VolumeId")
	if err != nil {
		return nil, err
	}
	size, hasSize, err := optInt32(form, "Size")
	if err != nil {
		return nil, err
	}
	iops, hasIops, err := optInt32(form, "Iops")
	if err != nil {
		return nil, err
	}
	thr, hasThr, err := optInt32(form, "Throughput")
	if err != nil {
		return nil, err
	}
	multi, hasMulti, err := optBool(form, "MultiAttachEnabled")
	if err != nil {
		return nil, err
	}
	typ := form.Get("VolumeType")
	if !hasSize && !hasIops && !hasThr && typ == "" && !hasMulti {
		return nil, errMissing("Size, VolumeType, Iops, Throughput or MultiAttachEnabled")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumes[id]
	if v == nil {
		return nil, errVolumeNotFound(id)
	}
	// EC2 API reference, ModifyVolume: "After modifying a volume, you must
	// wait at least six hours and ensure that the volume is in the in-use
	// or available state before you can modify the same volume."
	if v.state != stateAvailable && v.state != stateInUse {
		return nil, errIncorrectState("Volume '%s' is in the '%s' state.", id, v.state)
	}
	// Modify "only after any previous modification for that volume has
	// finished" (ModifyVolume); EC2's wording as users report it: "Volume
	// vol-… cannot be modified in modification state OPTIMIZING".
	if m := v.mod; m != nil && (m.state == "modifying" || m.state == "optimizing") {
		return nil, awsproto.BadRequest("IncorrectModificationState", "Volume %s cannot be modified in modification state %s", id, strings.ToUpper(m.state))
	}
	// The six-hour rule, counted from the last modification's start (EC2
	// does not say from when; one in progress is refused above in any
	// case). Code and message as EC2 gives
	// them (AWS knowledge center, "resize EBS persistent storage in Amazon
	// EKS"; aws-ebs-csi-driver reports).
	if !v.lastModStart.IsZero() && time.Since(v.lastModStart) < s.cfg.ModifyCooldown {
		return nil, awsproto.BadRequest("VolumeModificationRateExceeded",
			"You've reached the maximum modification rate per volume limit. Wait at least %v between modifications per EBS volume.", s.cfg.ModifyCooldown)
	}
	shape := volumeShape{typ: v.typ, size: v.size, multiAttach: v.multiAttach}
	if hasMulti {
		shape.multiAttach = multi
	}
	if typ != "" {
		shape.typ = typ
	}
	if hasSize {
		// EBS volumes only grow (EBS user guide, "Modify a volume using
		// Amazon EBS Elastic Volumes": "You can't decrease the size of an
		// EBS volume"); EC2 says "New size cannot be smaller than existing
		// size" (InvalidParameterValue, as users report it).
		if size < v.size {
			return nil, errInvalidValue("New size cannot be smaller than existing size")
		}
		shape.size = size
	}
	shape.iops, shape.hasIops = iops, hasIops
	// EC2 API reference, ModifyVolume, Iops: "The existing value is
	// retained if you keep the same volume type. If you change the volume
	// type to io1, io2, or gp3, the default is 3,000."
	if !hasIops {
		switch {
		case shape.typ == v.typ && (v.typ == "io1" || v.typ == "io2" || v.typ == "gp3"):
			shape.iops, shape.hasIops = v.iops, true
		case shape.typ != v.typ && (shape.typ == "io1" || shape.typ == "io2" || shape.typ == "gp3"):
			shape.iops, shape.hasIops = 3000, true
		}
	}
	shape.throughput, shape.hasThroughput = thr, hasThr
	if !hasThr && shape.typ == "gp3" && v.typ == "gp3" {
		shape.throughput, shape.hasThroughput = v.throughput, true
	}
	newIops, newThr, err := shape.resolve()
	if err != nil {
		return nil, err
	}
	if shape.multiAttach != v.multiAttach && v.att != nil {
		// EBS user guide, "Amazon EBS Multi-Attach": Multi-Attach can be
		// turned on or off only while the volume is detached.
		return nil, errIncorrectState("Volume '%s' must be detached to change its Multi-Attach setting.", id)
	}
	if shape.size == v.size && shape.typ == v.typ && newIops == v.iops && newThr == v.throughput && shape.multiAttach == v.multiAttach {
		return nil, errInvalidValue("New size, type, IOPS or throughput must differ from the volume's current configuration.")
	}
	now := time.Now()
	v.mod = &modification{state: "modifying", start: now, origSize: v.size, targetSize: shape.size,
		origType: v.typ, targetType: shape.typ, origIops: v.iops, targetIops: newIops,
		origThroughput: v.throughput, targetThrput: newThr, origMulti: v.multiAttach, targetMulti: shape.multiAttach}
	v.lastModStart = now
	s.log.Info("volume modifying", "volume", id, "fromGiB", v.size, "toGiB", shape.size, "fromType", v.typ, "toType", shape.typ)
	reqID := awsproto.RequestID(ctx)
	mod := v.mod
	s.afterLocked(s.lat.Sample(latency.ModifyVolume), func(context.Context) { s.optimize(v, mod, reqID) })
	return &modifyVolumeResponse{Modification: mod.xml(id)}, nil
}

// optimize puts the modification in force. EBS's guide documents one
// modifyVolume event, with result "optimizing" ("Amazon EventBridge for
// Amazon EBS", EBS volume modification events); reaching "completed" (or
// "failed") sends nothing.
func (s *Server) optimize(v *volume, m *modification, reqID string) {
	got, err := growSparse(v.backing, int64(m.targetSize)*gib)
	s.warnCapped(v.id, int64(m.targetSize)*gib, got)
	if err != nil {
		s.mu.Lock()
		m.state, m.end = "failed", time.Now()
		s.mu.Unlock()
		s.log.Error("growing backing file", "volume", v.id, "err", err)
		return
	}
	s.mu.Lock()
	if v.mod != m || s.volumes[v.id] == nil {
		s.mu.Unlock()
		return
	}
	v.size, v.typ, v.iops, v.throughput, v.multiAttach = m.targetSize, m.targetType, m.targetIops, m.targetThrput, m.targetMulti
	m.state, m.progress = "optimizing", 50
	s.afterLocked(s.lat.Sample(latency.OptimizeVolume), func(context.Context) {
		s.mu.Lock()
		if v.mod != m {
			s.mu.Unlock()
			return
		}
		m.state, m.progress, m.end = "completed", 100, time.Now()
		s.mu.Unlock()
	})
	s.volumeEventLocked(v.id, "modifyVolume", "optimizing", "", reqID)
	s.mu.Unlock()
}

func modificationFilters() map[string]bool {
	return map[string]bool{
		"volume-id": true, "modification-state": true, "target-size": true, "target-volume-type": true,
		"original-size": true, "original-volume-type": true,
	}
}

func (m *modification) field(volumeID string) func(string) []string {
	return func(name string) []string {
		switch name {
		case "volume-id":
			return []string{volumeID}
		case "modification-state":
			return []string{m.state}
		case "target-size":
			return []string{strconv.Itoa(int(m.targetSize))}
		case "target-volume-type":
			return []string{m.targetType}
		case "original-size":
			return []string{strconv.Itoa(int(m.origSize))}
		case "original-volume-type":
			return []string{m.origType}
		}
		return nil
	}
}

func (s *Server) describeVolumesModifications(_ context.Context, form url.Values) (any, error) {
	ids := awsproto.List(form, "VolumeId")
	filters, err := parseFilters(form, modificationFilters())
	if err != nil {
		return nil, err
	}
	if err := modificationPager().check(form, ids); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		v := s.volumes[id]
		if v == nil {
			return nil, errVolumeNotFound(id)
		}
		if v.mod == nil {
			return nil, awsproto.BadRequest("InvalidVolumeModification.NotFound", "Modification for volume '%s' does not exist.", id)
		}
	}
	var vols []*volume
	for _, v := range s.volumes {
		if v.mod == nil || (len(ids) > 0 && !slices.Contains(ids, v.id)) {
			continue
		}
		if matches(filters, nil, v.mod.field(v.id)) {
			vols = append(vols, v)
		}
	}
	sort.Slice(vols, func(i, j int) bool { return vols[i].seq < vols[j].seq })
	start, end, next, err := modificationPager().apply(form, ids, len(vols),
		func(i int) int64 { return vols[i].seq })
	if err != nil {
		return nil, err
	}
	out := &describeModificationsResponse{NextToken: next}
	out.Modifications.Items = []xmlModification{}
	for _, v := range vols[start:end] {
		out.Modifications.Items = append(out.Modifications.Items, v.mod.xml(v.id))
	}
	return out, nil
}

func modificationPager() pager { return pager{minMax: 5, capMax: 500, idParam: "VolumeId"} }
