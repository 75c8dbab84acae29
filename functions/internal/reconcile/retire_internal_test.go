package reconcile

import (
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
)

// retirable lets a moved volume go only on all its facts; each missing
// or contrary one keeps it, and says which.
func TestRetirableNeedsEveryFact(t *testing.T) {
	now := time.Date(2026, 1, 3, 4, 0, 0, 0, time.UTC)
	old := cloud.Volume{ID: "vol-old", State: cloud.VolumeAvailable, Tags: map[string]string{
		cloud.TagCluster: "c", cloud.TagScope: cloud.ScopeShared, cloud.TagVolume: "", cloud.TagMovedName: "pgdata",
		cloud.TagMovedTo: "vol-new", cloud.TagMovedAt: "2026-01-02T03:00:00Z", cloud.TagDeleteAfter: "24h0m0s"}}
	inUse := cloud.Volume{ID: "vol-new", State: cloud.VolumeInUse, Attachments: []cloud.Attachment{{InstanceID: "i-b", State: cloud.AttachAttached}},
		Tags: map[string]string{cloud.TagCluster: "c", cloud.TagVolume: "pgdata", cloud.TagMovedFrom: "vol-old"}}
	tagged := func(v cloud.Volume, kv ...string) cloud.Volume {
		v.Tags = maps.Clone(v.Tags)
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "-" {
				delete(v.Tags, kv[i])
			} else {
				v.Tags[kv[i]] = kv[i+1]
			}
		}
		return v
	}
	released := inUse
	released.State, released.Attachments = cloud.VolumeAvailable, nil
	attachedOld := old
	attachedOld.State, attachedOld.Attachments = cloud.VolumeInUse, []cloud.Attachment{{InstanceID: "i-a", State: cloud.AttachAttached}}
	// A chain: old -> mid (moved on) -> last (in use).
	mid := tagged(released, cloud.TagVolume, "", cloud.TagMovedTo, "vol-last")
	last := tagged(inUse, cloud.TagMovedFrom, "vol-new")
	last.ID = "vol-last"
	lastReleased := tagged(released, cloud.TagMovedFrom, "vol-new")
	lastReleased.ID = "vol-last"
	for _, c := range []struct {
		what string
		old  cloud.Volume
		vols []cloud.Volume
		now  time.Time
		keep string // "" : retired
	}{
		{"every fact holds", old, []cloud.Volume{inUse}, now, ""},
		{"exactly at the delay", old, []cloud.Volume{inUse}, time.Date(2026, 1, 3, 3, 0, 0, 0, time.UTC), ""},
		{"a second before the delay", old, []cloud.Volume{inUse}, time.Date(2026, 1, 3, 2, 59, 59, 0, time.UTC), "until 2026-01-03T03:00:00Z"},
		{"another cluster's", tagged(old, cloud.TagCluster, "other"), []cloud.Volume{inUse}, now, "not a moved volume of the cluster"},
		{"not moved", tagged(old, cloud.TagMovedTo, "-"), []cloud.Volume{inUse}, now, "not a moved volume"},
		{"still a key's", tagged(old, cloud.TagVolume, "pgdata"), []cloud.Volume{inUse}, now, "not a moved volume"},
		{"no delay asked", tagged(old, cloud.TagDeleteAfter, "-"), []cloud.Volume{inUse}, now, "did not ask"},
		{"a delay below the bound (edited)", tagged(old, cloud.TagDeleteAfter, "1s"), []cloud.Volume{inUse}, now, "tether:delete-after"},
		{"no moved-at", tagged(old, cloud.TagMovedAt, "-"), []cloud.Volume{inUse}, now, "tether:moved-at"},
		{"the old one attached", attachedOld, []cloud.Volume{inUse}, now, "not available"},
		{"the new one gone", old, nil, now, "not the cluster's"},
		{"the new one released", old, []cloud.Volume{released}, now, "not in use"},
		{"the new one not made from it", old, []cloud.Volume{tagged(inUse, cloud.TagMovedFrom, "vol-else")}, now, "not made by its move"},
		{"the new one another cluster's", old, []cloud.Volume{tagged(inUse, cloud.TagCluster, "other")}, now, "not made by its move"},
		{"a chain ending in use", old, []cloud.Volume{mid, last}, now, ""},
		{"a chain ending released", old, []cloud.Volume{mid, lastReleased}, now, "not in use"},
		{"a chain whose end is gone", old, []cloud.Volume{mid}, now, "not the cluster's"},
	} {
		byID := map[string]cloud.Volume{c.old.ID: c.old}
		for _, v := range c.vols {
			byID[v.ID] = v
		}
		got, why := retirable("c", c.old, byID, c.now)
		switch {
		case c.keep == "" && why != "":
			t.Errorf("%s: kept (%s), want it retired", c.what, why)
		case c.keep == "" && got.State != cloud.VolumeInUse:
			t.Errorf("%s: retired for %+v, want a volume in use", c.what, got)
		case c.keep != "" && !strings.Contains(why, c.keep):
			t.Errorf("%s: why %q, want it kept saying %q", c.what, why, c.keep)
		}
	}
	if _, err := MovedDeletableFrom(map[string]string{cloud.TagMovedAt: "2026-01-02T03:00:00Z"}); !errors.Is(err, ErrNoDeleteAfter) {
		t.Errorf("MovedDeletableFrom without the delay: %v, want ErrNoDeleteAfter", err)
	}
	if from, err := MovedDeletableFrom(old.Tags); err != nil || !from.Equal(time.Date(2026, 1, 3, 3, 0, 0, 0, time.UTC)) {
		t.Errorf("MovedDeletableFrom = %s, %v", from, err)
	}
}
