package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/volspec"
)

// retireMoved deletes the old volumes of AZ moves whose driverOpts asked
// for it (azmove-delete-after), each with its move's snapshots, on facts
// the sweep's listing of the cluster's volumes shows (retirable). A volume
// it cannot delete now is logged and left to the next sweep: retiring
// never holds up the sweep's keys.
func (r *Reconciler) retireMoved(ctx context.Context, cluster string, vols []cloud.Volume) {
	byID := make(map[string]cloud.Volume, len(vols))
	for _, v := range vols {
		byID[v.ID] = v
	}
	now := r.now()
	for _, v := range vols {
		if v.Tags[cloud.TagCluster] != cluster || v.Tags[cloud.TagMovedTo] == "" {
			continue // not a moved volume of this cluster: never touched here
		}
		log := r.log.With("cluster", cluster, "volumeId", v.ID, "volume", v.Tags[cloud.TagMovedName], "movedTo", v.Tags[cloud.TagMovedTo])
		inUse, why := retirable(cluster, v, byID, now)
		if why != "" {
			log.Debug("moved volume kept", "why", why)
			continue
		}
		if err := r.retire(ctx, cluster, v, inUse); err != nil {
			log.Error("could not delete the moved volume; the next sweep tries again", "error", err)
		}
	}
}

// ErrNoDeleteAfter: a moved volume whose driverOpts did not ask for its
// deletion (no tether:delete-after): it is kept.
var ErrNoDeleteAfter = errors.New("its driverOpts did not ask for its deletion (azmove-delete-after)")

// MovedDeletableFrom reads when a moved volume's tags let it be deleted
// (tether:moved-at plus tether:delete-after): ErrNoDeleteAfter without
// the delay, an error naming the tag when one is not valid. The volume
// that took its place must also be in use then (retirable).
func MovedDeletableFrom(tags map[string]string) (time.Time, error) {
	raw, ok := tags[cloud.TagDeleteAfter]
	if !ok || tags[cloud.TagMovedTo] == "" {
		return time.Time{}, ErrNoDeleteAfter
	}
	after, err := volspec.ParseAZMoveDeleteAfter(raw)
	if err != nil {
		return time.Time{}, fmt.Errorf("tag %s=%q: %w", cloud.TagDeleteAfter, raw, err)
	}
	at, err := time.Parse(time.RFC3339, tags[cloud.TagMovedAt])
	if err != nil {
		return time.Time{}, fmt.Errorf("tag %s=%q is not an RFC 3339 time", cloud.TagMovedAt, tags[cloud.TagMovedAt])
	}
	return at.Add(after), nil
}

// retirable says why the moved volume old must be kept ("" when it may
// go, with the volume in use that took its place). It may go only when
// all of these hold: it is the cluster's and no longer a key's (tether
// marked it moved: tether:moved-to, empty tether:volume); it carries the
// delay its driverOpts asked for and when it was moved (markMoved), and
// the delay has passed; it is available (attached nowhere); and the volume
// it was moved to exists, was made from it, and is attached (in use) —
// or, when that one moved on in turn, the volume at the end of the chain
// is.
func retirable(cluster string, old cloud.Volume, byID map[string]cloud.Volume, now time.Time) (cloud.Volume, string) {
	if old.Tags[cloud.TagCluster] != cluster || old.Tags[cloud.TagMovedTo] == "" || old.Tags[cloud.TagVolume] != "" {
		return cloud.Volume{}, "not a moved volume of the cluster"
	}
	from, err := MovedDeletableFrom(old.Tags)
	if err != nil {
		return cloud.Volume{}, err.Error()
	}
	if now.Before(from) {
		return cloud.Volume{}, fmt.Sprintf("moved at %s, kept %s: until %s", old.Tags[cloud.TagMovedAt], old.Tags[cloud.TagDeleteAfter], from.Format(time.RFC3339))
	}
	if old.State != cloud.VolumeAvailable || len(old.Attachments) > 0 {
		return cloud.Volume{}, "it is " + old.State + ", not available"
	}
	prev := old
	for range len(byID) { // a chain of moves is at most every volume long
		nv, ok := byID[prev.Tags[cloud.TagMovedTo]]
		switch {
		case !ok:
			return cloud.Volume{}, fmt.Sprintf("the volume it was moved to, %s, is not the cluster's (any more)", prev.Tags[cloud.TagMovedTo])
		case nv.Tags[cloud.TagCluster] != cluster || nv.Tags[cloud.TagMovedFrom] != prev.ID:
			return cloud.Volume{}, fmt.Sprintf("volume %s was not made by its move", nv.ID)
		case nv.State == cloud.VolumeInUse && len(nv.Attachments) > 0:
			return nv, ""
		case nv.Tags[cloud.TagMovedTo] == "":
			return cloud.Volume{}, fmt.Sprintf("the volume it was moved to, %s, is %s, not in use", nv.ID, nv.State)
		}
		prev = nv
	}
	return cloud.Volume{}, "its chain of moves does not end"
}

// retire deletes a retirable moved volume: first its move's snapshots
// (tether:move-of=<its id>, the cluster's), then the volume, so that a
// step that fails is found and taken again by the next sweep; a snapshot
// or volume already gone is no error.
func (r *Reconciler) retire(ctx context.Context, cluster string, old, inUse cloud.Volume) error {
	log := r.log.With("cluster", cluster, "volumeId", old.ID, "volume", old.Tags[cloud.TagMovedName],
		"newVolumeId", inUse.ID, "instance", inUse.Attachments[0].InstanceID)
	snaps, err := r.cloud.SnapshotsTagged(ctx, cloud.TagMoveOf, old.ID)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if s.Tags[cloud.TagCluster] != cluster {
			continue
		}
		if err := r.cloud.DeleteSnapshot(ctx, s.ID); err != nil {
			return err
		}
		log.Info("a moved volume's move snapshot deleted", "snapshot", s.ID)
	}
	err = r.cloud.DeleteVolume(ctx, old.ID)
	if errors.Is(err, cloud.ErrNotFound) {
		log.Info("the moved volume is already gone")
		return nil
	}
	if err != nil {
		return err
	}
	log.Info("moved volume deleted: its delay (azmove-delete-after) passed and the volume that took its place is in use",
		"deleteAfter", old.Tags[cloud.TagDeleteAfter], "movedAt", old.Tags[cloud.TagMovedAt])
	r.emit(cluster, map[string]any{"volume": old.Tags[cloud.TagMovedName], "volumeId": old.ID, "newVolumeId": inUse.ID}, metricCount(MetricMovedVolumesDeleted))
	return nil
}
