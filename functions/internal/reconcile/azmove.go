package reconcile

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/volspec"
)

// stepMove: a move of the key's volume to another availability zone by
// snapshot, which the chain watches until the snapshot is complete.
const stepMove = "azmove"

// moveAZ moves an available shared volume to the AZ its task was placed
// in (driverOpt azmove=snapshot): a snapshot tagged with the move (one per
// volume and AZ: every pass finds the same), then, once it is complete, a
// volume made from it there carrying the key's tags (type, IOPS,
// throughput, encryption and key carried over; the client token is the
// snapshot's, so a repeated create makes no second volume). The old
// volume is then retagged as moved (settleMoves) and kept; only with
// azmove-delete-after does a later sweep delete it, on the facts it reads
// then (retire.go). Each step is a fact another pass reads back.
func (p *pass) moveAZ(ctx context.Context, w want, v cloud.Volume, t need) (Result, error) {
	az := t.az()
	log := p.log.With("volumeId", v.ID, "fromAZ", v.AZ, "toAZ", az, "task", t.task.ARN)
	// Its steps delete snapshots that do not fit the volume as this pass
	// read it; a pass slower than another that finished the move since
	// would delete the snapshot the new volume came from.
	if err := p.moveUnchanged(ctx, v); err != nil {
		return Result{}, err
	}
	snaps, err := p.r.cloud.SnapshotsTagged(ctx, cloud.TagMoveOf, v.ID)
	if err != nil {
		return Result{}, err
	}
	var snap *cloud.EBSSnapshot
	for i, s := range snaps {
		if s.Tags[cloud.TagMoveTo] != az || s.State == cloud.SnapshotError || s.Tags[cloud.TagCluster] != p.key.Cluster {
			continue
		}
		if snap == nil {
			snap = &snaps[i] // the oldest: the one every pass uses
			continue
		}
		// Two passes (in two processes) each snapshotted the volume (EC2's
		// CreateSnapshot takes no client token): the move keeps the oldest,
		// and the others, tether's own and of no use, go.
		if err := p.r.cloud.DeleteSnapshot(ctx, s.ID); err != nil {
			return Result{}, err
		}
		log.Info("a second snapshot for the same move deleted", "snapshot", s.ID, "kept", snap.ID)
	}
	h := hint{Step: stepMove, Volume: v.ID, At: ms(p.now), Since: p.hint.Since}
	if p.hint.Step == stepMove && p.hint.Volume == v.ID {
		h.At = p.hint.At
	}
	if snap != nil && (snap.Tags[cloud.TagMoving] == "" || snap.Tags[cloud.TagMoving] != v.Tags[cloud.TagMoving]) {
		// The volume was attached (or detached) since this snapshot began,
		// or it is a snapshot without the move's mark: it may miss writes.
		if err := p.r.cloud.DeleteSnapshot(ctx, snap.ID); err != nil {
			return Result{}, err
		}
		log.Warn("the move's snapshot is older than the volume's last use: deleted; the move starts again", "snapshot", snap.ID)
		return p.retry(p.r.t.CommandWait, h, "moving %s to %s: stale snapshot %s deleted", v.ID, az, snap.ID), nil
	}
	if snap == nil {
		for _, s := range snaps {
			if s.Tags[cloud.TagMoveTo] == az && s.State == cloud.SnapshotError {
				reason := fmt.Sprintf("moving volume %s (%s) from %s to %s: its snapshot %s failed: %s", p.key.Volume, v.ID, v.AZ, az, s.ID, s.StateError)
				log.Error("the move's snapshot failed", "snapshot", s.ID, "error", s.StateError)
				if err := p.failNeeders(ctx, onInstance(w.needers, t.instance()), reasonAZMove, reason); err != nil {
					return Result{}, err
				}
				return done("azmove snapshot failed"), nil
			}
		}
		if err := p.fresh("snapshot"); err != nil {
			return Result{}, err
		}
		mark := v.Tags[cloud.TagMoving]
		if mark == "" {
			// The mark first: a pass that attaches the volume from now on
			// clears it, and the snapshot below, which carries it, is then
			// known to be stale.
			mark = strconv.FormatInt(p.now.UnixNano(), 10)
			if err := p.r.cloud.TagVolume(ctx, v.ID, map[string]string{cloud.TagMoving: mark}); err != nil {
				return Result{}, err
			}
		}
		tags := map[string]string{
			cloud.TagName: p.key.Volume, cloud.TagCluster: p.key.Cluster, cloud.TagVolume: p.key.Volume,
			cloud.TagMoveOf: v.ID, cloud.TagMoveTo: az, cloud.TagMoving: mark,
		}
		if d := p.moveDeleteAfter(t); d != "" {
			tags[cloud.TagDeleteAfter] = d // for settleMoves, should the pass that marks the old volume not be this one
		}
		s, err := p.r.cloud.CreateSnapshot(ctx, v.ID, fmt.Sprintf("tether: %s moves from %s to %s", p.key.Volume, v.AZ, az), tags)
		if err != nil {
			return p.refused(ctx, w, err, "snapshot for the AZ move")
		}
		// Another pass (another process's, or one that decided on an older
		// listing) may have snapshotted first: the oldest is the move's, and
		// a later one deletes itself, here or at the next look.
		again, err := p.r.cloud.SnapshotsTagged(ctx, cloud.TagMoveOf, v.ID)
		if err != nil {
			return Result{}, err
		}
		for _, o := range again {
			if o.ID != s.ID && o.Tags[cloud.TagMoveTo] == az && o.State != cloud.SnapshotError &&
				(o.StartTime.Before(s.StartTime) || o.StartTime.Equal(s.StartTime) && o.ID < s.ID) {
				if err := p.r.cloud.DeleteSnapshot(ctx, s.ID); err != nil {
					return Result{}, err
				}
				log.Info("another pass snapshotted the volume first: this snapshot deleted", "snapshot", s.ID, "kept", o.ID)
				return p.retry(p.r.t.CommandWait, h, "moving %s to %s: snapshot %s %s", v.ID, az, o.ID, o.State), nil
			}
		}
		// A pass that read the volume before the mark may have attached it
		// since: read it again, past every cache.
		cur, err := p.r.cloud.VolumeByID(cloud.Uncached(ctx), v.ID)
		if err != nil && !errors.Is(err, cloud.ErrNotFound) {
			return Result{}, err
		}
		if err != nil || cur.State != cloud.VolumeAvailable || cur.Tags[cloud.TagMoving] != mark {
			if err := p.r.cloud.DeleteSnapshot(ctx, s.ID); err != nil {
				return Result{}, err
			}
			log.Info("the volume was taken into use while it was snapshotted: snapshot deleted", "snapshot", s.ID, "state", cur.State)
			return p.retry(p.r.t.CommandWait, h, "moving %s to %s: the volume is in use again", v.ID, az), nil
		}
		log.Info("moving the volume to the task's availability zone: snapshot started", "snapshot", s.ID)
		// The next look comes soon: a pass that snapshotted meanwhile made
		// a second snapshot, which that look deletes before the move goes on.
		return p.retry(min(p.r.t.MovePoll, p.r.t.CommandWait), h, "moving %s to %s: snapshot %s %s", v.ID, az, s.ID, s.State), nil
	}
	if snap.State != cloud.SnapshotCompleted {
		return p.retry(p.r.t.MovePoll, h, "moving %s to %s: snapshot %s %s %s", v.ID, az, snap.ID, snap.State, snap.Progress), nil
	}
	if err := p.fresh("create"); err != nil {
		return Result{}, err
	}
	tags := maps.Clone(v.Tags)
	delete(tags, cloud.TagBlank) // made from a snapshot: never granted a format
	delete(tags, cloud.TagMoving)
	tags[cloud.TagMovedFrom] = v.ID
	req := cloud.CreateVolumeRequest{
		AZ: az, SizeGiB: max(v.SizeGiB, snap.SizeGiB), Type: v.Type, Encrypted: v.Encrypted, KMSKeyID: v.KMSKeyID,
		SnapshotID: snap.ID, Tags: tags,
	}
	if v.Type == "io1" || v.Type == "io2" || v.Type == "gp3" {
		req.IOPS = v.IOPS
	}
	if v.Type == "gp3" {
		req.Throughput = v.Throughput
	}
	// The token is the snapshot's: a repeated create makes no second
	// volume. One whose create EBS failed (the token is then refused, or
	// answers with the deleted volume) is followed by the next attempt's.
	var nv cloud.Volume
	for attempt := 1; ; attempt++ {
		req.Token = "tether-move-" + snap.ID
		if attempt > 1 {
			req.Token += "-" + strconv.Itoa(attempt)
		}
		nv, err = p.r.cloud.CreateVolume(ctx, req)
		failed := errors.Is(err, cloud.ErrTokenMismatch) || err == nil && (nv.State == cloud.VolumeDeleted || nv.State == cloud.VolumeError)
		if !failed || attempt == maxMoveCreates {
			break
		}
		log.Warn("an earlier volume of this move failed in EBS; trying the next client token", "token", req.Token, "error", err)
	}
	if err != nil {
		return p.refused(ctx, w, err, "volume for the AZ move")
	}
	// The old volume is marked moved only once the new one is available
	// (settleMoves): a create EBS fails must leave the key its volume.
	log.Info("moving the volume to the task's availability zone: new volume made from the snapshot", "snapshot", snap.ID, "newVolumeId", nv.ID)
	return p.retry(p.r.t.CreateWait, hint{Step: stepCreate, Volume: nv.ID, At: ms(p.now), Since: p.hint.Since},
		"moved %s to %s as %s (from %s); creating", v.ID, az, nv.ID, snap.ID), nil
}

// maxMoveCreates bounds the client tokens one move tries in one pass.
const maxMoveCreates = 5

// refused weighs an AWS error of a move's step: a refusal that retrying
// cannot help fails the waiting tasks with AWS's reason; the rest goes back
// to the caller (retried).
func (p *pass) refused(ctx context.Context, w want, err error, what string) (Result, error) {
	if !errors.Is(err, cloud.ErrInvalidRequest) && !errors.Is(err, cloud.ErrNotFound) {
		return Result{}, err
	}
	reason := fmt.Sprintf("moving volume %s to another availability zone: AWS refused the %s: %v", p.key.Volume, what, err)
	p.log.Error("AWS refused a step of the AZ move", "error", err)
	if err := p.failNeeders(ctx, w.needers, reasonAZMove, reason); err != nil {
		return Result{}, err
	}
	return done("azmove refused"), nil
}

// markMoved retags a moved volume: no longer the key's (empty
// tether:volume; its name in tether:moved-name), with the volume that took
// its place. With a deleteAfter (driverOpt azmove-delete-after, a valid Go
// duration) it also records when it was moved and that delay: the facts
// the sweep's retirement needs (retire.go). Shared volumes may only be
// retagged within the cluster (template.yaml RetagOwnVolumes).
func (p *pass) markMoved(ctx context.Context, old cloud.Volume, to, deleteAfter string) error {
	if err := p.fresh("retag"); err != nil {
		return err
	}
	tags := map[string]string{cloud.TagVolume: "", cloud.TagMovedTo: to, cloud.TagMovedName: p.key.Volume, cloud.TagMoving: ""}
	if deleteAfter != "" {
		tags[cloud.TagMovedAt] = p.now.UTC().Format(time.RFC3339)
		tags[cloud.TagDeleteAfter] = deleteAfter
	}
	err := p.r.cloud.TagVolume(ctx, old.ID, tags)
	if err == nil {
		if deleteAfter != "" {
			p.log.Info("the moved volume is kept, tagged as moved; the sweep deletes it once the new one has been in use past the delay",
				"volumeId", old.ID, "movedTo", to, "deleteAfter", deleteAfter)
		} else {
			p.log.Info("the moved volume is kept, tagged as moved", "volumeId", old.ID, "movedTo", to)
		}
	}
	return err
}

// moveDeleteAfter is the needer's azmove-delete-after as its tag spells it
// ("": the old volume is kept).
func (p *pass) moveDeleteAfter(t need) string {
	opts, err := volspec.ParseDriverOptsWith(t.spec.DriverOpts, p.r.defaults)
	if err != nil || opts.AZMoveDeleteAfter == 0 {
		return ""
	}
	return opts.AZMoveDeleteAfter.String()
}

// movedDeleteAfter is the delay a move of old to the AZ az started with:
// its snapshot's tag ("" when none or not valid: the old volume is kept).
// For a move another pass left unmarked, whose needer this pass may not
// know.
func (p *pass) movedDeleteAfter(ctx context.Context, old, az string) (string, error) {
	snaps, err := p.r.cloud.SnapshotsTagged(ctx, cloud.TagMoveOf, old)
	if err != nil {
		return "", err
	}
	for _, s := range snaps {
		if s.Tags[cloud.TagCluster] != p.key.Cluster || s.Tags[cloud.TagMoveTo] != az || s.State == cloud.SnapshotError {
			continue
		}
		if d, err := volspec.ParseAZMoveDeleteAfter(s.Tags[cloud.TagDeleteAfter]); err == nil {
			return d.String(), nil
		}
	}
	return "", nil
}

// settleMoves finishes what a move left between its steps: a live volume
// made for the key by a move whose old volume still carries the key's tags
// (the pass that made it stopped before retagging). It returns the key's
// volumes without the old ones.
func (p *pass) settleMoves(ctx context.Context, live []cloud.Volume) ([]cloud.Volume, error) {
	moved := map[string]cloud.Volume{}
	for _, v := range live {
		if from := v.Tags[cloud.TagMovedFrom]; from != "" {
			moved[from] = v
		}
	}
	if len(moved) == 0 {
		return live, nil
	}
	var out []cloud.Volume
	for _, v := range live {
		if from := v.Tags[cloud.TagMovedFrom]; from != "" && v.State == cloud.VolumeError {
			continue // a copy EBS failed to make: the old volume stays the key's
		}
		to, ok := moved[v.ID]
		if ok && to.State == cloud.VolumeError {
			ok = false
		}
		if !ok || len(v.Attachments) > 0 {
			out = append(out, v) // an attached old volume is released first, as any other
			continue
		}
		if to.State == cloud.VolumeCreating {
			continue // the new volume is the key's once EBS made it; not marked moved before
		}
		deleteAfter, err := p.movedDeleteAfter(ctx, v.ID, to.AZ)
		if err != nil {
			return nil, err
		}
		if err := p.markMoved(ctx, v, to.ID, deleteAfter); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// azMove reports whether the needer's driverOpts ask for moves by snapshot.
func (p *pass) azMove(t need) bool {
	opts, err := volspec.ParseDriverOptsWith(t.spec.DriverOpts, p.r.defaults)
	return err == nil && opts.AZMove == volspec.AZMoveSnapshot
}

// abandonMove: the volume is about to be attached or detached while an AZ
// move of it had begun (its mark): the move's snapshots may miss what is
// written from now on, so they go, and the mark with them, before the
// step. The move starts again from a new snapshot when the volume is free
// and a task in another AZ still wants it.
func (p *pass) abandonMove(ctx context.Context, v cloud.Volume, why string) error {
	if v.Tags[cloud.TagMoving] == "" {
		return nil
	}
	if err := p.moveUnchanged(ctx, v); err != nil {
		return err
	}
	snaps, err := p.r.cloud.SnapshotsTagged(ctx, cloud.TagMoveOf, v.ID)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if s.Tags[cloud.TagCluster] != p.key.Cluster {
			continue
		}
		if err := p.r.cloud.DeleteSnapshot(ctx, s.ID); err != nil && !errors.Is(err, cloud.ErrNotFound) {
			return err
		}
		p.log.Info("an AZ move's snapshot deleted: the volume is "+why, "volumeId", v.ID, "snapshot", s.ID)
	}
	return p.r.cloud.TagVolume(ctx, v.ID, map[string]string{cloud.TagMoving: ""})
}

// moveUnchanged: the volume, read again past every cache, is still the
// key's and in the move state this pass read (the same mark, not moved).
// A pass may act up to Timing.StaleDecision after its reads, and another
// pass may meanwhile have made the new volume and marked this one moved:
// attaching this one then would serve the key from two volumes, and
// abandoning its move would delete the snapshot the new one came from.
// errStale sends the pass back to look again.
func (p *pass) moveUnchanged(ctx context.Context, v cloud.Volume) error {
	cur, err := p.r.cloud.VolumeByID(cloud.Uncached(ctx), v.ID)
	if errors.Is(err, cloud.ErrNotFound) {
		return fmt.Errorf("%w: volume %s is gone", errStale, v.ID)
	}
	if err != nil {
		return err
	}
	if !p.tagsNameKey(cur) || cur.Tags[cloud.TagMovedTo] != "" || cur.Tags[cloud.TagMoving] != v.Tags[cloud.TagMoving] {
		return fmt.Errorf("%w: volume %s's move to another AZ went on since this pass read it", errStale, v.ID)
	}
	return nil
}

// markOldOfMove: before a volume an AZ move made is first attached (EBS
// made it: it is available), the old volume is marked moved, if no pass
// did yet; from then on the key's passes may decide from ECS alone and
// never list its volumes again.
func (p *pass) markOldOfMove(ctx context.Context, nv cloud.Volume) error {
	from := nv.Tags[cloud.TagMovedFrom]
	if from == "" {
		return nil
	}
	old, err := p.r.cloud.VolumeByID(ctx, from)
	if errors.Is(err, cloud.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !p.tagsNameKey(old) || len(old.Attachments) > 0 {
		return nil // marked already, not the key's, or released first as any other
	}
	deleteAfter, err := p.movedDeleteAfter(ctx, old.ID, nv.AZ)
	if err != nil {
		return err
	}
	return p.markMoved(ctx, old, nv.ID, deleteAfter)
}
