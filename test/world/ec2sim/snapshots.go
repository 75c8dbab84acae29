package ec2sim

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/latency"
)

func (sn *snapshot) xml(owner string) xmlSnapshot {
	out := xmlSnapshot{SnapshotID: sn.id, VolumeID: sn.volumeID, Status: sn.state, StartTime: ts(sn.started),
		Progress: "0%", OwnerID: owner, VolumeSize: sn.volumeSize, Description: sn.description,
		Encrypted: sn.encrypted, KmsKeyID: sn.kmsKey, Tags: tagSet(sn.tags), StorageTier: "standard"}
	if sn.state == "completed" {
		out.Progress, out.CompletionAt = "100%", ts(sn.completed)
	}
	return out
}

// createSnapshot copies the volume's bytes at the time of the call (a
// point-in-time snapshot, sparse), then reports pending until the
// profile's CreateSnapshot time has passed.
func (s *Server) createSnapshot(_ context.Context, form url.Values) (any, error) {
	volID, err := required(form, "VolumeId")
	if err != nil {
		return nil, err
	}
	tags, err := tagSpecifications(form, "snapshot")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	v := s.volumes[volID]
	if v == nil {
		s.mu.Unlock()
		return nil, errVolumeNotFound(volID)
	}
	if v.state == stateCreating || v.state == stateDeleting {
		s.mu.Unlock()
		return nil, errIncorrectState("Volume '%s' is in the '%s' state.", volID, v.state)
	}
	sn := &snapshot{id: s.newID("snap", func(id string) bool { return s.snapshots[id] != nil }), volumeID: volID,
		state: "pending", description: form.Get("Description"), volumeSize: v.size, encrypted: v.encrypted,
		kmsKey: v.kmsKey, started: time.Now(), seq: s.nextSeq(), tags: tags}
	sn.backing = filepath.Join(s.cfg.Dir, sn.id+".snap")
	src := v.backing
	s.snapshots[sn.id] = sn
	s.mu.Unlock()

	if err := copySparse(src, sn.backing, int64(sn.volumeSize)*gib); err != nil {
		s.mu.Lock()
		delete(s.snapshots, sn.id)
		s.mu.Unlock()
		return nil, awsproto.Errorf(500, "InternalError", "snapshot of %s: %v", volID, err)
	}
	if s.cfg.SnapshotCopied != nil {
		s.cfg.SnapshotCopied(sn.id, volID)
	}
	s.log.Info("snapshot pending", "snapshot", sn.id, "volume", volID)
	s.after(s.lat.Sample(latency.CreateSnapshot), func(context.Context) {
		s.mu.Lock()
		if s.snapshots[sn.id] != sn || sn.state != "pending" {
			s.mu.Unlock()
			return
		}
		sn.state, sn.completed = "completed", time.Now()
		s.snapshotEventLocked(*sn, "succeeded", "")
		s.mu.Unlock()
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	return &createSnapshotResponse{xmlSnapshot: sn.xml(s.cfg.Account)}, nil
}

func snapshotFilters() map[string]bool {
	return map[string]bool{
		"snapshot-id": true, "volume-id": true, "status": true, "owner-id": true, "description": true,
		"volume-size": true, "encrypted": true, "tag-key": true, "tag-value": true,
	}
}

func (s *Server) describeSnapshots(_ context.Context, form url.Values) (any, error) {
	ids := awsproto.List(form, "SnapshotId")
	filters, err := parseFilters(form, snapshotFilters())
	if err != nil {
		return nil, err
	}
	if err := snapshotPager().check(form, ids); err != nil {
		return nil, err
	}
	for _, o := range awsproto.List(form, "Owner") {
		if o != "self" && o != s.cfg.Account {
			// Only this account's snapshots exist here: public or shared
			// ones (amazon, other ids) would be an empty answer.
			return nil, errInvalidValue("Owner %q: this EC2 holds only the account's own snapshots (self or %s)", o, s.cfg.Account)
		}
	}
	if len(awsproto.List(form, "RestorableBy")) > 0 {
		return nil, errInvalidValue("RestorableBy is not supported by this EC2")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if s.snapshots[id] == nil {
			return nil, errSnapshotNotFound(id)
		}
	}
	var snaps []*snapshot
	for _, sn := range s.snapshots {
		if len(ids) > 0 && !slices.Contains(ids, sn.id) {
			continue
		}
		x := sn.xml(s.cfg.Account)
		field := func(name string) []string {
			switch name {
			case "snapshot-id":
				return []string{x.SnapshotID}
			case "volume-id":
				return []string{x.VolumeID}
			case "status":
				return []string{x.Status}
			case "owner-id":
				return []string{x.OwnerID}
			case "description":
				return []string{x.Description}
			case "volume-size":
				return []string{itoa(x.VolumeSize)}
			case "encrypted":
				return []string{btoa(x.Encrypted)}
			}
			return nil
		}
		if matches(filters, sn.tags, field) {
			snaps = append(snaps, sn)
		}
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].seq < snaps[j].seq })
	start, end, next, err := snapshotPager().apply(form, ids, len(snaps),
		func(i int) int64 { return snaps[i].seq })
	if err != nil {
		return nil, err
	}
	out := &describeSnapshotsResponse{NextToken: next}
	out.Snapshots.Items = []xmlSnapshot{}
	for _, sn := range snaps[start:end] {
		out.Snapshots.Items = append(out.Snapshots.Items, sn.xml(s.cfg.Account))
	}
	return out, nil
}

func (s *Server) deleteSnapshot(_ context.Context, form url.Values) (any, error) {
	id, err := required(form, "SnapshotId")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	sn := s.snapshots[id]
	if sn == nil {
		s.mu.Unlock()
		return nil, errSnapshotNotFound(id)
	}
	delete(s.snapshots, id)
	s.mu.Unlock()
	if err := os.Remove(sn.backing); err != nil && !os.IsNotExist(err) {
		s.log.Warn("removing snapshot file", "snapshot", id, "err", err)
	}
	return &returnResponse{Return: true}, nil
}

func snapshotPager() pager { return pager{minMax: 5, capMax: 1000, idParam: "SnapshotId"} }
