package cloud

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// session holds what one invocation has learnt from AWS, so no question is
// asked twice: volumes until tether writes to them, instances, tasks and
// container instances. It is dropped with the invocation: the next one
// reads fresh state (the reconciler is level-triggered).
type session struct {
	flight singleflight.Group
	stats  *Stats

	mu         sync.Mutex
	born       time.Time           // when the answers below began to be kept
	volumes    map[string]Volume   // by id
	missing    map[string]bool     // ids EC2 does not know
	byKey      map[string][]string // cluster/name -> ids (complete answers)
	volsListed map[string]bool     // cluster -> ClusterVolumes done (byKey complete for it)
	byInstance map[string][]string // cluster/instance -> ids
	instances  map[string]Instance
	live       map[string][]Task   // cluster -> desired RUNNING tasks
	listed     map[string][]string // TaskQuery listing -> task ARNs
	tasks      map[string]Task     // task ARN -> as described
	cis        map[string]ContainerInstance
	services   map[string]Service // cluster/name

	// A sweep's whole-cluster listing, across resets (see wholeAgain):
	// what listing the cluster again costs in calls, and how many family
	// lookups (that a whole listing serves) the current and the previous
	// window of MaxAge had.
	wholeCost   map[string]int
	spared      map[string]int
	sparedAfore map[string]int
}

type sessionKey struct{}

// NewSession returns ctx carrying a fresh cache for one invocation. Calls
// made with a context without a session are never cached (only task
// definitions are, for the process lifetime: revisions are immutable).
func NewSession(ctx context.Context) context.Context {
	s := &session{stats: NewStats(), wholeCost: map[string]int{}, spared: map[string]int{}, sparedAfore: map[string]int{}}
	s.reset()
	return context.WithValue(ctx, sessionKey{}, s)
}

// reset drops every answer kept (not the counters).
func (s *session) reset() {
	s.sparedAfore, s.spared = s.spared, map[string]int{}
	s.volumes = map[string]Volume{}
	s.missing = map[string]bool{}
	s.byKey = map[string][]string{}
	s.volsListed = map[string]bool{}
	s.byInstance = map[string][]string{}
	s.instances = map[string]Instance{}
	s.live = map[string][]Task{}
	s.listed = map[string][]string{}
	s.tasks = map[string]Task{}
	s.cis = map[string]ContainerInstance{}
	s.services = map[string]Service{}
	s.born = time.Time{}
}

// sessionOf returns ctx's session (nil without one), after dropping its
// answers if they are older than MaxAge: an invocation that runs long (a
// sweep of many keys, a batch slowed by throttling) must not decide with
// what it read a minute ago. Within MaxAge, concurrent passes share reads.
func (a *AWS) sessionOf(ctx context.Context) *session {
	s := sessionFrom(ctx)
	if s == nil {
		return nil
	}
	now := a.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.born.IsZero() && now.Sub(s.born) > a.opts.MaxAge {
		s.reset()
	}
	if s.born.IsZero() {
		s.born = now
	}
	return s
}

// wholeAgain: a family's live tasks are to be read by listing the whole
// cluster again, as the invocation did before its answers aged out (a
// sweep), because the previous window of MaxAge looked up more families
// than a whole listing costs calls (in a large cluster with few tether
// tasks it does not, and each family is listed on its own). Callers hold
// s.mu.
func (s *session) wholeAgain(cluster string) bool {
	_, listed := s.live[cluster]
	cost := s.wholeCost[cluster]
	return !listed && cost > 0 && s.sparedAfore[cluster] > cost
}

// Uncached returns ctx without its session: calls made with it read AWS
// afresh (and what they read is not kept). For the one read right before
// a step that must not act on anything older.
func Uncached(ctx context.Context) context.Context {
	return context.WithValue(ctx, sessionKey{}, (*session)(nil))
}

// SessionStats returns the counters of the session's AWS requests (nil
// without a session).
func SessionStats(ctx context.Context) *Stats {
	if s := sessionFrom(ctx); s != nil {
		return s.stats
	}
	return nil
}

func sessionFrom(ctx context.Context) *session {
	s, _ := ctx.Value(sessionKey{}).(*session)
	return s
}

func volKey(cluster, name string) string { return cluster + "/" + name }

// remember stores volumes seen in an answer.
func (s *session) remember(vols []Volume) {
	for _, v := range vols {
		s.volumes[v.ID] = v
		delete(s.missing, v.ID)
	}
}

func (s *session) lookup(ids []string) []Volume {
	out := make([]Volume, 0, len(ids))
	for _, id := range ids {
		if v, ok := s.volumes[id]; ok {
			out = append(out, v)
		}
	}
	return out
}

// forget drops everything a write to volume v may have changed.
func (s *session) forget(v Volume) {
	delete(s.volumes, v.ID)
	delete(s.missing, v.ID)
	if c := v.Tags[TagCluster]; c != "" {
		delete(s.byKey, volKey(c, v.Tags[TagVolume]))
		delete(s.volsListed, c)
	} else {
		s.byKey = map[string][]string{}
		s.volsListed = map[string]bool{}
	}
	s.byInstance = map[string][]string{}
}

// mapped adds a device name tether just attached to the instance it keeps,
// so the invocation's other keys avoid it without reading the instance again.
func (s *session) mapped(instanceID, device string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.instances[instanceID]; ok {
		in.Devices = append(append([]string(nil), in.Devices...), device)
		s.instances[instanceID] = in
	}
}

// forgetVolumeID drops what a write to a volume known only by id changed.
func (s *session) forgetVolumeID(id, instanceID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.volumes[id]; ok {
		s.forget(v)
	} else {
		s.forget(Volume{ID: id})
	}
	if instanceID != "" {
		delete(s.instances, instanceID)
	}
}
