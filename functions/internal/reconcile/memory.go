package reconcile

import (
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// memory is what one process remembers between passes: never the basis of
// a decision that changes something (every pass reads AWS first), only
// where to look, what not to read twice, and what to measure. It is lost
// with the process, and a pass without it reaches the same end state.
//
// Lock discipline: every field is guarded by mu and touched only by the
// methods below, each of which holds mu for its whole body and calls
// nothing outside this file while holding it.
type memory struct {
	mu sync.Mutex

	versions  *simplelru.LRU[string, int64]            // task ARN -> newest event version seen
	processed *simplelru.LRU[string, int64]            // task ARN -> newest version whose keys all converged or were handed back
	hints     *simplelru.LRU[Key, hint]                // Retry hints when the caller keeps no invocation
	lastBack  *simplelru.LRU[Key, handBack]            // latest pass that handed a key back, and its hint
	lastOK    *simplelru.LRU[Key, time.Time]           // start of the latest pass of a key that ended without error
	released  *simplelru.LRU[Key, time.Time]           // when a holder let go (handoff start)
	inflight  *simplelru.LRU[string, time.Time]        // step/volume id -> when tether started it
	stillDet  *simplelru.LRU[string, time.Time]        // volume id -> when a look last found its detach going on
	detachEst []time.Duration                          // recent detach durations, each the middle of what the looks allow (ring)
	detachAt  int                                      // next slot of detachEst
	attached  *simplelru.LRU[string, cloud.Attachment] // volume id -> its latest attachment seen or made
	volumeOf  *simplelru.LRU[Key, string]              // key -> volume id last attached or detached
	vanishes  *simplelru.LRU[Key, int]                 // volumes EC2 deleted right after creating them
	mountSent *simplelru.LRU[string, cloud.Attachment] // volume id -> instance and time of the last mount sent
	sent      *simplelru.LRU[string, []sentCommand]    // SSM command id -> the keys and hints of the passes that sent it (several: an unmount of several volumes)
	running   *simplelru.LRU[Key, runningCommand]      // key -> the command this process sent last for it, until its end is seen
	families  *simplelru.LRU[Key, []string]            // key -> task definition families seen using it
	gens      *simplelru.LRU[string, generations]      // "volume id/attachment token" -> mount generations seen (two volumes attached in one millisecond share a token)
	waited    *simplelru.LRU[string, bool]             // waits already counted past the threshold
	releasing *simplelru.LRU[string, bool]             // attachment tokens in a drain's release; true once an unmount carries them (drainrelease.go)
	agents    *simplelru.LRU[string, agentSeen]        // instance id -> its tether-agent, as its last mount said
	drainDue  *simplelru.LRU[drainLook, time.Time]     // a draining instance's deferred look at a key -> when it is due
	swept     *simplelru.LRU[Key, sweepLook]           // what the latest sweep found of a key (sweepmotion.go)
	wholes    *simplelru.LRU[string, wholeRelease]     // draining instance id -> this process's release of all its volumes (drainrelease.go)
	wholeAt   time.Time                                // the sweep's last listing of every live task
	wholeN    int                                      // how many tasks that listing found
}

// generations: what the agent's results said about one attachment.
type generations struct {
	mounted  int64 // highest generation a successful mount reported
	released int64 // highest generation a successful unmount released
}

// maxMemory bounds each of memory's caches.
const maxMemory = 4096

func newLRU[K comparable, V any]() *simplelru.LRU[K, V] {
	l, err := simplelru.NewLRU[K, V](maxMemory, nil)
	if err != nil { // only for a size < 1
		panic(err)
	}
	return l
}

func newMemory() *memory {
	return &memory{
		versions: newLRU[string, int64](), processed: newLRU[string, int64](), hints: newLRU[Key, hint](),
		lastBack: newLRU[Key, handBack](), lastOK: newLRU[Key, time.Time](), released: newLRU[Key, time.Time](), inflight: newLRU[string, time.Time](), stillDet: newLRU[string, time.Time](),
		attached: newLRU[string, cloud.Attachment](), volumeOf: newLRU[Key, string](), vanishes: newLRU[Key, int](),
		mountSent: newLRU[string, cloud.Attachment](), sent: newLRU[string, []sentCommand](), running: newLRU[Key, runningCommand](), families: newLRU[Key, []string](),
		gens: newLRU[string, generations](), waited: newLRU[string, bool](), releasing: newLRU[string, bool](), agents: newLRU[string, agentSeen](),
		drainDue: newLRU[drainLook, time.Time](), swept: newLRU[Key, sweepLook](),
		wholes: newLRU[string, wholeRelease](),
	}
}

// sentCommand is what the pass that sent an SSM command knew: its key, and
// the hint it handed the key back with, for the pass SSM's event wakes.
type sentCommand struct {
	key  Key
	hint hint
}

// Task event versions.

// seeVersion records a task event's version; stale is true when a newer
// one was seen already, duplicate when every key of this version converged.
func (m *memory) seeVersion(task string, v int64) (stale, duplicate bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if seen, ok := m.versions.Get(task); ok && v > 0 && v < seen {
		return true, false
	}
	if done, ok := m.processed.Get(task); ok && v > 0 && v <= done {
		return false, true
	}
	if seen, _ := m.versions.Get(task); v > seen {
		m.versions.Add(task, v)
	}
	return false, false
}

func (m *memory) processedUpTo(task string, v int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, _ := m.processed.Get(task); v > old {
		m.processed.Add(task, v)
	}
}

// Detach durations: EC2 sends no event when a detach ends (the EBS guide's
// detachVolume event is not relied on), so each is known only between the
// last look that found it going on and the first that found it done.

// detachSamples bounds the durations kept.
const detachSamples = 32

func (m *memory) noteStillDetaching(volumeID string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stillDet.Add(volumeID, at)
}

// detachEnded records the detach of volumeID asked at `asked` and seen done
// at `seen`: the middle of what the looks allow.
func (m *memory) detachEnded(volumeID string, asked, seen time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	lo := asked
	if t, ok := m.stillDet.Get(volumeID); ok && t.After(lo) && t.Before(seen) {
		lo = t
	}
	m.stillDet.Remove(volumeID)
	est := lo.Sub(asked) + seen.Sub(lo)/2
	if len(m.detachEst) < detachSamples {
		m.detachEst = append(m.detachEst, est)
	} else {
		m.detachEst[m.detachAt] = est
	}
	m.detachAt = (m.detachAt + 1) % detachSamples
}

// quickDetach: the duration a quarter of recent detaches took at most (ok
// false: fewer than 5 known).
func (m *memory) quickDetach() (time.Duration, bool) {
	looks, ok := m.detachLooks()
	if !ok {
		return 0, false
	}
	return looks[0], true
}

// detachLooks: the durations a quarter, half, three quarters and nine
// tenths of recent detaches took at most (ok false: fewer than 5 known).
func (m *memory) detachLooks() ([]time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.detachEst) < 5 {
		return nil, false
	}
	s := slices.Clone(m.detachEst)
	slices.Sort(s)
	return []time.Duration{s[len(s)/4], s[len(s)/2], s[len(s)*3/4], s[len(s)*9/10]}, true
}

// Sweeps.

// wholeSweepDue: the sweep at `now` lists every live task of the cluster
// (none in the last `every`); n is how many the last such listing found.
func (m *memory) wholeSweepDue(now time.Time, every time.Duration) (n int, due bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.wholeN, m.wholeAt.IsZero() || now.Sub(m.wholeAt) >= every
}

func (m *memory) sweptWhole(now time.Time, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.wholeAt, m.wholeN = now, n
}

// Hints and chains of retries.

func (m *memory) keepHint(k Key, h hint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.hints.Get(k); !ok || h.At >= old.At {
		m.hints.Add(k, h)
	}
}

func (m *memory) takeHint(k Key) hint {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, _ := m.hints.Get(k)
	m.hints.Remove(k)
	return h
}

// handBack: a pass that handed its key back: when it began, and the hint
// its retry carries.
type handBack struct {
	at   time.Time
	hint hint
}

func (m *memory) handedBack(k Key, at time.Time, h hint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if last, _ := m.lastBack.Get(k); at.After(last.at) {
		m.lastBack.Add(k, handBack{at: at, hint: h})
	}
}

// lastHandBack: the latest pass of k that handed it back (ok false: none known).
func (m *memory) lastHandBack(k Key) (handBack, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastBack.Get(k)
}

// passEnded records that a pass of k that began at `at` ended without error
// (converged or handed back).
func (m *memory) passEnded(k Key, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if last, _ := m.lastOK.Get(k); at.After(last) {
		m.lastOK.Add(k, at)
	}
}

// lastPass: when the latest pass of k that ended without error began.
func (m *memory) lastPass(k Key) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastOK.Get(k)
}

// handBackFailed forgets that a chain of retries exists for k, and that the
// task events that named it were processed.
func (m *memory) handBackFailed(k Key, tasks []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastBack.Remove(k)
	for _, dl := range m.drainDue.Keys() {
		if dl.key == k {
			m.drainDue.Remove(dl) // its look may not have been queued
		}
	}
	for _, t := range tasks {
		m.processed.Remove(t)
	}
}

// Handoffs, durations.

func (m *memory) noteReleased(k Key, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.released.Get(k); !ok {
		m.released.Add(k, at)
	}
}

func (m *memory) releasedAt(k Key) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.released.Get(k)
}

func (m *memory) forgetReleased(k Key) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.released.Remove(k)
}

func (m *memory) startInflight(volumeID, step string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.inflight.Get(step + "/" + volumeID); !ok {
		m.inflight.Add(step+"/"+volumeID, at)
	}
}

func (m *memory) takeInflight(volumeID, step string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.inflight.Get(step + "/" + volumeID)
	m.inflight.Remove(step + "/" + volumeID)
	return t, ok
}

// Attachments.

// noteAttachment remembers a's volume's latest attachment (and, when its
// key is known, which volume the key has).
func (m *memory) noteAttachment(k Key, volumeID string, a cloud.Attachment) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k != (Key{}) {
		m.volumeOf.Add(k, volumeID)
	}
	if old, ok := m.attached.Get(volumeID); !ok || !a.AttachTime.Before(old.AttachTime) {
		m.attached.Add(volumeID, a)
	}
}

func (m *memory) attachmentOf(volumeID string) (cloud.Attachment, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.attached.Get(volumeID)
}

// attachedOn lists the device names of attachments this process knows on instance.
func (m *memory) attachedOn(instance, exceptVolume string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, vid := range m.attached.Keys() {
		a, _ := m.attached.Peek(vid)
		if vid != exceptVolume && a.InstanceID == instance && a.State != cloud.AttachDetached && a.Device != "" {
			out = append(out, a.Device)
		}
	}
	return out
}

func (m *memory) knownVolumeOf(k Key) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.volumeOf.Get(k)
}

// vanish counts volumes of a key EC2 deleted right after creating them:
// the most of the hint's count and this process's, plus this one.
func (m *memory) vanish(k Key, fromHint int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, _ := m.vanishes.Get(k)
	n := max(fromHint, old) + 1
	m.vanishes.Add(k, n)
	return n
}

func (m *memory) createdFine(k Key) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vanishes.Remove(k)
}

// Commands.

func (m *memory) noteMountSent(volumeID, instance string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mountSent.Add(volumeID, cloud.Attachment{InstanceID: instance, AttachTime: at})
}

func (m *memory) mountSentAfter(volumeID, instance string, t time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.mountSent.Get(volumeID)
	return ok && s.InstanceID == instance && !s.AttachTime.Before(t)
}

// runningCommand: a command this process sent for a key whose end it has
// not seen; passes of the key that task events ask for meanwhile leave it
// to the command's own event and chain (see pass.awaitCommand). skipped:
// when such a pass last ended unread, so the command's end is looked at in
// full.
type runningCommand struct {
	id      string
	step    string
	at      time.Time
	skipped time.Time
}

func (m *memory) noteSent(commandID string, k Key, h hint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, _ := m.sent.Get(commandID)
	s = slices.DeleteFunc(slices.Clone(s), func(c sentCommand) bool { return c.key == k })
	m.sent.Add(commandID, append(s, sentCommand{key: k, hint: h}))
	m.running.Add(k, runningCommand{id: commandID, step: h.Step, at: fromMS(h.At)})
}

// commandEnded: the command's end is seen; skipped reports whether a pass
// of its key ended unread while it ran.
func (m *memory) commandEnded(k Key, commandID string) (skipped bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.running.Get(k); ok && c.id == commandID {
		m.running.Remove(k)
		return !c.skipped.IsZero()
	}
	return false
}

// awaitRunning: k's last command from this process runs (sent after
// since, its end not seen), and a pass at `at` may leave it to the
// command's chain; the command then owes a full look at its end.
func (m *memory) awaitRunning(k Key, since, at time.Time) (runningCommand, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.running.Get(k)
	if !ok || c.at.Before(since) {
		return runningCommand{}, false
	}
	c.skipped = at
	m.running.Add(k, c)
	return c, true
}

// lookedInFull: a pass of k that began at `at` read everything and ended:
// a command sent before it, skipped by no pass since, needs no full look
// at its end, and later passes read for themselves.
func (m *memory) lookedInFull(k Key, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.running.Get(k); ok && c.at.Before(at) && c.skipped.Before(at) {
		m.running.Remove(k)
	}
}

// sentCommandOf: the keys this process sent the command for, with their
// passes' hints (several for an unmount of several volumes).
func (m *memory) sentCommandOf(commandID string) []sentCommand {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, _ := m.sent.Get(commandID)
	return s
}

// noteMounted and noteReleasedGen record what the agent's results said about
// an attachment's mount generations.
func (m *memory) noteMounted(token string, gen int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, _ := m.gens.Get(token)
	g.mounted = max(g.mounted, gen)
	m.gens.Add(token, g)
}

func (m *memory) noteReleasedGen(token string, gen int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, _ := m.gens.Get(token)
	g.released = max(g.released, gen)
	m.gens.Add(token, g)
}

func (m *memory) generationsOf(token string) generations {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, _ := m.gens.Get(token)
	return g
}

// Families.

// noteFamilies adds task definition families that use k's volume; it
// reports whether any was new.
func (m *memory) noteFamilies(k Key, fams ...string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, _ := m.families.Get(k)
	out := slices.Clone(old)
	for _, f := range fams {
		if f != "" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	m.families.Add(k, out)
	return len(out) != len(old)
}

func (m *memory) familiesOf(k Key) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, _ := m.families.Get(k)
	return slices.Clone(f)
}

// startRelease reports whether the attachment is not yet in a drain's
// release command of this process, and counts it in from now; forgetRelease
// takes it out again (the release was not sent). releaseSent records that
// an unmount carries it (this process's release, or one it found on the
// instance); releaseCarries reports that.
func (m *memory) startRelease(token string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.releasing.Get(token); ok {
		return false
	}
	m.releasing.Add(token, false)
	return true
}

func (m *memory) forgetRelease(token string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.releasing.Remove(token)
}

func (m *memory) releaseSent(token string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.releasing.Add(token, true)
}

func (m *memory) releaseCarries(token string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	sent, _ := m.releasing.Get(token)
	return sent
}

// firstWait reports whether the wait named by what is counted for the
// first time (a metric fires once per wait).
func (m *memory) firstWait(what string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.waited.Get(what); ok {
		return false
	}
	m.waited.Add(what, true)
	return true
}

// Agents.

// noteAgent remembers what inst's agent said at at; it reports whether
// that differs from what was known (worth a log line).
func (m *memory) noteAgent(inst string, a agentproto.Agent, at time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.agents.Get(inst)
	if ok && at.Before(old.at) {
		return false
	}
	m.agents.Add(inst, agentSeen{agent: a, at: at})
	return !ok || old.agent != a
}

func (m *memory) agentOf(inst string) (agentproto.Agent, time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.agents.Get(inst)
	return s.agent, s.at, ok
}

// Draining instances' deferred looks.

// drainLook names one deferred look: a key, on a draining instance.
type drainLook struct {
	key      Key
	instance string
}

// drainLookDue: this process has a deferred look at k on inst queued, due
// after now.
func (m *memory) drainLookDue(k Key, inst string, now time.Time) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	due, ok := m.drainDue.Get(drainLook{k, inst})
	return due, ok && due.After(now)
}

func (m *memory) drainLookQueued(k Key, inst string, due time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drainDue.Add(drainLook{k, inst}, due)
}

// Sweeps' looks at keys.

// sweepLook is what a sweep found of a key: its facts, when, and whether
// it left the key to its events then.
type sweepLook struct {
	facts string
	at    time.Time
	left  bool
}

// sweepLeaves records the facts a sweep at now found of k, and reports
// whether the sweep leaves k to its events: they changed since this
// process's previous sweep, less than within ago, and that sweep did not
// leave it already.
func (m *memory) sweepLeaves(k Key, facts string, now time.Time, within time.Duration) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	prev, ok := m.swept.Get(k)
	leave := ok && !prev.left && prev.facts != facts && now.Sub(prev.at) < within
	m.swept.Add(k, sweepLook{facts: facts, at: now, left: leave})
	return leave
}

// Draining instances whose volumes this process's release carries.

func (m *memory) noteWholeRelease(instance string, w wholeRelease) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.wholes.Add(instance, w)
}

// laterInWholeRelease reports whether t is a later event of a drain whose
// volumes this process's release carries (see wholeRelease), and keeps it
// as that drain's newest.
func (m *memory) laterInWholeRelease(instance string, t InstanceChanged, now time.Time, within time.Duration) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.wholes.Get(instance)
	if !ok || !w.sameDrain(t, now, within) {
		return false
	}
	w.event = t
	m.wholes.Add(instance, w)
	return true
}
