package reconcile

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tether-ecs/tether/functions/internal/cloud"
)

// A sweep leaves the keys its events are moving.
//
// The sweep repairs what lost or failed events left behind. In a mass
// handoff it meets hundreds of keys in the middle of theirs: their volumes
// wait for their unmount's end or for a DetachVolume token, their new
// tasks' events are queued. A pass of each would do the step their own
// chains are about to do (and each such step's end costs another pass),
// spending ECS, EC2 and SSM reads and the mutating buckets their chains
// need. So a key whose facts changed since this process's previous sweep
// (Timing.SweepMotion ago at most) is left to its events once; the next
// sweep looks at it whatever it finds. A key moved by events that were
// lost is repaired one sweep later than without this; a process without
// a previous sweep (a new execution environment) looks at every key.
// Which keys a sweep looks at is never a decision that changes anything:
// every pass reads AWS first.

// sweepFacts are what a sweep read of each key: its volumes' states and
// attachments, and the live tasks naming it.
type sweepFacts map[Key][]string

func newSweepFacts(cluster string, vols []cloud.Volume) sweepFacts {
	f := sweepFacts{}
	for _, v := range vols {
		if v.Tags[cloud.TagCluster] != cluster {
			continue
		}
		k := Key{Cluster: cluster, Volume: v.Tags[cloud.TagVolume]}
		fact := "volume " + v.ID + " " + v.State
		for _, a := range v.Attachments {
			fact += fmt.Sprintf(" %s/%s/%s/%d", a.InstanceID, a.Device, a.State, a.AttachTime.UnixMilli())
		}
		f[k] = append(f[k], fact)
	}
	return f
}

func (f sweepFacts) task(k Key, t cloud.Task) {
	f[k] = append(f[k], "task "+t.ARN+" "+t.LastStatus)
}

func (f sweepFacts) of(k Key) string {
	facts := slices.Clone(f[k])
	slices.Sort(facts)
	return strings.Join(slices.Compact(facts), "; ")
}

// sweepMoving returns the keys the sweep looks at now: all but those whose
// facts changed since this process's previous sweep (see above).
func (r *Reconciler) sweepMoving(keys []Key, facts sweepFacts) []Key {
	now := r.now()
	var look []Key
	var left []string
	for _, k := range keys {
		if r.mem.sweepLeaves(k, facts.of(k), now, r.t.SweepMotion) {
			left = append(left, k.Volume)
			continue
		}
		look = append(look, k)
	}
	if len(left) > 0 {
		r.log.Info("sweep: keys moved since the previous sweep are left to their events this time",
			"cluster", r.cluster, "keys", len(left), "first", left[:min(len(left), 10)])
	}
	return look
}
