package chaos

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/fakehost"
)

// checkDiskLocked compares what a volume holds with what was verified
// before. Every task writes its generation (its ARN, chained into the
// volume's checksum) when it starts; the history may only grow: a shorter
// or different history is a lost or rolled-back write. A volume is
// formatted once in its life.
func (wt *watcher) checkDiskLocked(id string, ds fakehost.DiskState, on []string) {
	v := wt.volLocked(id)
	if ds.RestoredFrom != "" && v.from == "" {
		wt.linkMoveLocked(v, ds)
	}
	if ds.Formats > v.formats {
		v.note(wt.since(), "formatted (%s), %d formats so far, on %v", ds.FSType, ds.Formats, on)
		v.formats = ds.Formats
		if ds.Formats > 1 {
			wt.violateLocked("reformat", id, "%s (%s) was formatted %d times: the filesystem that held its data was replaced", id, v.name, ds.Formats)
		}
	}
	if len(ds.Writes) < len(v.writes) || !slices.Equal(ds.Writes[:len(v.writes)], v.writes) {
		wt.violateLocked("lost-write", id, "%s (%s) history went from %d generations (last %s) to %d (last %s): a write was lost or rolled back",
			id, v.name, len(v.writes), last(v.writes), len(ds.Writes), last(ds.Writes))
		v.writes, v.writeSeen, v.classified = nil, nil, 1
	}
	if want := chain(ds.Writes); ds.Checksum != want {
		wt.violateLocked("checksum", id, "%s (%s) checksum %.12s does not match its %d generations (%.12s)", id, v.name, ds.Checksum, len(ds.Writes), want)
	}
	now := time.Now()
	for _, arn := range ds.Writes[len(v.writes):] {
		prev := last(v.writes)
		v.writes = append(v.writes, arn)
		v.writeSeen = append(v.writeSeen, now)
		wt.writers[arn] = append(wt.writers[arn], id)
		v.note(wt.since(), "generation %d written by %s on %v (previous %s verified)", len(v.writes), shortTask(arn), on, shortTask(prev))
		if d := wt.deaths[id]; d != nil && d.servedAt.IsZero() && len(on) > 0 && !slices.Contains(on, d.instance) {
			d.servedAt = now
			wt.outcomes["volumes of a dead instance served again elsewhere ("+d.kind+")"]++
		}
	}
	if ds.Unclean > v.unclean {
		if dead := wt.deadHolder(v); dead != "" {
			// The guest it was on died with it mounted (a stop's end).
			v.note(wt.since(), "instance %s died with it mounted", dead)
		} else {
			wt.violateLocked("unclean-detach", id, "%s (%s) was detached while mounted (force) on %v: %d unclean detaches not caused by an instance death",
				id, v.name, orNoneList(v.lastOn), ds.Unclean-v.unclean)
		}
		v.unclean = ds.Unclean
	}
}

// linkMoveLocked: v was made from a snapshot of another volume (the
// world's fact; final checks hold tether's tether:moved-from tag to it).
// Its history must begin with every generation verified on the old volume,
// and goes on from there: the old volume's handoffs are not counted again,
// and the name's data lives in v from now on.
func (wt *watcher) linkMoveLocked(v *volObs, ds fakehost.DiskState) {
	old := wt.volLocked(ds.RestoredFrom)
	v.from, old.movedTo = old.id, v.id
	if v.name == "" {
		v.name = old.name
	}
	if len(ds.Writes) < len(old.writes) || !slices.Equal(ds.Writes[:len(old.writes)], old.writes) {
		wt.violateLocked("move-lost-write", v.id, "%s (%s) was made from %s's snapshot %s with %d generations (last %s), but %d (last %s) were verified on %s: the move lost or replaced a write",
			v.id, v.name, old.id, ds.FromSnapshot, len(ds.Writes), last(ds.Writes), len(old.writes), last(old.writes), old.id)
	} else {
		n := len(old.writes)
		v.writes, v.writeSeen, v.classified = slices.Clone(old.writes), slices.Clone(old.writeSeen[:n]), max(1, min(old.classified, n))
	}
	v.formats = ds.Formats // the old volume's filesystem, not a new one
	if d := wt.deaths[old.id]; d != nil {
		wt.deaths[v.id] = d // served again elsewhere through the new volume
		delete(wt.deaths, old.id)
	}
	if h, ok := wt.byName[v.name]; !ok || h == old.id {
		wt.byName[v.name] = v.id
	}
	v.note(wt.since(), "made from %s's snapshot %s (an AZ move): its %d verified generations carried over", old.id, ds.FromSnapshot, len(old.writes))
	old.note(wt.since(), "moved: %s was made from its snapshot %s", v.id, ds.FromSnapshot)
	wt.outcomes["volumes moved to another AZ by snapshot (history carried over)"]++
}

// movedLocked: vol holds want's data by AZ moves (made from its snapshot,
// or from one of a volume made from it). A volume mounted before the
// watcher read its contents is looked up in the world's disks.
func (wt *watcher) movedLocked(want, vol string) bool {
	v := wt.volLocked(vol)
	if v.from == "" && wt.w != nil {
		if ds, ok := wt.w.Disks().Volume(vol); ok && ds.RestoredFrom != "" {
			wt.linkMoveLocked(v, ds)
		}
	}
	for seen := 0; v.from != "" && seen < 16; seen++ {
		if v.from == want {
			return true
		}
		v = wt.volLocked(v.from)
	}
	return false
}

// deadHolder names the instance, among those the volume was last seen on,
// whose guest is gone ("" if none).
func (wt *watcher) deadHolder(v *volObs) string {
	for _, in := range v.lastOn {
		if wt.down[in] {
			return in
		}
	}
	return ""
}

func orNoneList(s []string) any {
	if len(s) == 0 {
		return "no instance seen"
	}
	return s
}

// chain is fakehost's checksum: sha256 over the previous sum and each
// generation.
func chain(writes []string) string {
	sum := ""
	for _, w := range writes {
		h := sha256.Sum256([]byte(sum + "\n" + w))
		sum = hex.EncodeToString(h[:])
	}
	return sum
}

func last(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return s[len(s)-1]
}

func shortTask(arn string) string {
	if arn == "none" || arn == "" {
		return "none"
	}
	id := arn[strings.LastIndexByte(arn, '/')+1:]
	if len(id) > 8 {
		id = id[:8]
	}
	return id
}

// classifyLocked counts handoffs: a shared volume's generation k written by
// a task on another instance than generation k-1's is a completed handoff
// (the volume's attachment moved, and the new task started on the verified
// history). Its duration runs from the old task's STOPPED (or the new
// task's placement, if later: a volume nobody needed did not wait) to the
// new task's RUNNING, as the watcher saw them.
func (wt *watcher) classifyLocked() {
	for _, v := range wt.vols {
		if v.name == "" || strings.HasPrefix(v.name, "task-") || v.movedTo != "" {
			continue // a moved volume's history goes on in the volume made from it
		}
		if len(v.writes) > 0 {
			if holder, ok := wt.byName[v.name]; !ok {
				wt.byName[v.name] = v.id
			} else if holder != v.id {
				wt.violateLocked("split-data", v.id, "shared volume %s has data on two EBS volumes: %s and %s", v.name, holder, v.id)
			}
		}
		for k := v.classified; k < len(v.writes); k++ {
			prev, cur := wt.tasks[v.writes[k-1]], wt.tasks[v.writes[k]]
			if prev == nil || cur == nil || prev.instance == "" || cur.instance == "" {
				break // not known yet
			}
			if prev.instance != cur.instance {
				if prev.stoppedAt.IsZero() && time.Since(v.writeSeen[k]) < 30*time.Second {
					break // its STOPPED has not been seen yet
				}
				wt.handoffs++
				end := v.writeSeen[k]
				if !cur.runningAt.IsZero() && cur.runningAt.Before(end) {
					end = cur.runningAt
				}
				if !prev.stoppedAt.IsZero() {
					begin := prev.stoppedAt
					if cur.seenAt.After(begin) {
						begin = cur.seenAt
					}
					wt.durations = append(wt.durations, max(end.Sub(begin), 0))
				}
				v.note(wt.since(), "handoff %d: %s on %s -> %s on %s", wt.handoffs, shortTask(prev.arn), prev.instance, shortTask(cur.arn), cur.instance)
			}
			v.classified = k + 1
		}
	}
}

// verifyRunningLocked: a task that ECS says is RUNNING started with each of
// its tether volumes mounted: each holds the task's generation.
func (wt *watcher) verifyRunningLocked(now time.Time) {
	for arn, deadline := range wt.pending {
		t := wt.tasks[arn]
		missing := ""
		for _, vd := range t.def.volumes {
			name := vd.tetherName(arn)
			found := false
			for _, id := range wt.writers[arn] {
				if v := wt.vols[id]; v != nil && v.name == name {
					found = true
				}
			}
			if !found {
				missing = name
				break
			}
		}
		switch {
		case missing == "":
			t.verified = true
			delete(wt.pending, arn)
		case now.After(deadline):
			delete(wt.pending, arn)
			wt.violateLocked("no-data", wt.byName[missing], "task %s is RUNNING on %s but volume %s holds no generation of it: its container started without the volume's data",
				arn, t.instance, missing)
		}
	}
}

// resolveNames names volumes the watcher saw written but never saw mounted
// (a short-lived task), from the mount commands tether sent through SSM.
func (wt *watcher) resolveNames() {
	wt.mu.Lock()
	unnamed := 0
	for _, v := range wt.vols {
		if v.name == "" && len(v.writes) > 0 {
			unnamed++
		}
	}
	if unnamed == 0 || time.Since(wt.lastSSMScan) < 200*time.Millisecond {
		wt.mu.Unlock()
		return
	}
	wt.lastSSMScan = time.Now()
	wt.mu.Unlock()
	names := map[string]string{}
	for _, inv := range wt.w.SSM().Invocations() {
		if inv.Document != wt.mountDoc {
			continue
		}
		id, name := first(inv.Parameters["VolumeId"]), first(inv.Parameters["VolumeName"])
		if id != "" && name != "" {
			names[id] = name
		}
	}
	wt.mu.Lock()
	defer wt.mu.Unlock()
	for id, name := range names {
		if v := wt.vols[id]; v != nil && v.name == "" {
			v.name = name
			v.note(wt.since(), "named %s (from tether's mount commands)", name)
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
