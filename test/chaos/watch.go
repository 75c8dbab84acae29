package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/fakehost"
	"github.com/tether-ecs/tether/test/world/world"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// watcher observes the world while the run goes on and checks the
// invariants on every change it can see: ECS task state changes and EBS
// notifications through a fault-free rule of its own on the event bus,
// and every fake host's devices, mounts and tasks, and every attached
// volume's contents, polled every few milliseconds.
type watcher struct {
	w        *world.World
	cluster  string
	mountDoc string
	byDef    map[string]*serviceDef // task definition ARN -> service
	start    time.Time
	progress io.Writer

	killMu sync.Mutex // held while an instance is killed: its unclean detaches are the kill's

	mu          sync.Mutex
	tasks       map[string]*taskObs
	vols        map[string]*volObs
	byName      map[string]string // shared tether name -> the one volume id that holds its data
	ciInstance  map[string]string // container instance ARN -> EC2 instance id
	forced      map[string]int    // instance -> forced unmounts seen
	recent      map[string]time.Time
	pending     map[string]time.Time // task ARN -> when its RUNNING must show as a write
	writers     map[string][]string  // task ARN -> volume ids it wrote to
	handoffs    int
	durations   []time.Duration // wall time per completed handoff (when both ends were seen)
	violations  []Violation
	reported    map[string]bool
	lastSSMScan time.Time
	kick        chan struct{}

	// Facts read from the world as they accrue (the index of the next).
	detachSeen, mkfsSeen, recursionSeen int
	down                                map[string]bool      // instances whose guest is gone
	deaths                              map[string]*deathRec // volume -> the last death that held it
	outcomes                            map[string]int       // what happened that is no violation
	held                                map[string]bool      // instances leaving through tether's termination hook
	rel                                 *releases            // EC2's releases of terminated instances' volumes
	relSeen                             int
}

// deathRec is an instance's death with a volume on it, and when the volume
// was served again elsewhere.
type deathRec struct {
	instance, kind string
	at, servedAt   time.Time
	torn           bool
}

// taskObs is what the watcher knows of one task.
type taskObs struct {
	arn, service, instance string
	def                    *serviceDef
	version                int64
	lastStatus, desired    string
	stopCode, reason       string
	seenAt                 time.Time // its first event: placed (PROVISIONING/PENDING)
	runningAt, stoppedAt   time.Time
	verified               bool
}

// volObs is what the watcher knows of one EBS volume.
type volObs struct {
	id, name   string
	writes     []string // verified history: every later view must extend it
	writeSeen  []time.Time
	classified int // writes[:classified] are classified as handoff or not
	unclean    int // unclean detaches accounted for (instance deaths)
	formats    int
	story      []string
	lastOn     []string // the instances the last poll that saw its device saw it on
	// from: the volume whose snapshot this one was made from (an AZ
	// move), its history continued here; movedTo: the volume made from
	// this one's snapshot, which holds the name's data from then on.
	from, movedTo string
}

// Violation is one broken invariant.
type Violation struct {
	At       time.Duration // since the run began (wall)
	Handoffs int           // handoffs completed when it was seen
	Kind     string
	Detail   string
	Volume   string // volume id, when one is concerned
}

func (v Violation) String() string {
	return fmt.Sprintf("[%s after %d handoffs] %s: %s", v.At.Round(time.Millisecond), v.Handoffs, v.Kind, v.Detail)
}

func newWatcher(w *world.World, cluster, mountDoc string, services []*serviceDef, progress io.Writer) *watcher {
	wt := &watcher{
		w: w, cluster: cluster, mountDoc: mountDoc, byDef: map[string]*serviceDef{}, start: time.Now(), progress: progress,
		tasks: map[string]*taskObs{}, vols: map[string]*volObs{}, byName: map[string]string{}, ciInstance: map[string]string{},
		forced: map[string]int{}, recent: map[string]time.Time{}, pending: map[string]time.Time{}, writers: map[string][]string{},
		reported: map[string]bool{}, kick: make(chan struct{}, 1),
		down: map[string]bool{}, deaths: map[string]*deathRec{}, outcomes: map[string]int{}, held: map[string]bool{},
	}
	for _, s := range services {
		wt.byDef[s.taskDef] = s
	}
	return wt
}

// addDef makes a new task definition revision known, before its service
// is updated to it.
func (wt *watcher) addDef(d *serviceDef) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	wt.byDef[d.taskDef] = d
}

// tap puts the watcher's rule on the bus: every ECS and EC2 event,
// delivered without the faults tether's rules get.
func (wt *watcher) tap(bus *eventbus.Bus) error {
	return bus.PutRule("chaos-watch", `{"source":["aws.ecs","aws.ec2"]}`, eventbus.FuncTarget{Name: "chaos-watch", Fn: func(_ context.Context, e worldapi.Event) error {
		wt.onEvent(e)
		return nil
	}})
}

// run polls until ctx ends.
func (wt *watcher) run(ctx context.Context) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-wt.kick:
		}
		wt.poll()
	}
}

type taskDetail struct {
	TaskArn              string `json:"taskArn"`
	LastStatus           string `json:"lastStatus"`
	DesiredStatus        string `json:"desiredStatus"`
	ContainerInstanceArn string `json:"containerInstanceArn"`
	TaskDefinitionArn    string `json:"taskDefinitionArn"`
	Group                string `json:"group"`
	StoppedReason        string `json:"stoppedReason"`
	StopCode             string `json:"stopCode"`
	Version              int64  `json:"version"`
}

func (wt *watcher) onEvent(e worldapi.Event) {
	switch {
	case e.Source == "aws.ecs" && e.DetailType == "ECS Task State Change":
		var d taskDetail
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			wt.violate("world", "", "undecodable ECS task event: %v", err)
			return
		}
		wt.onTask(d)
	case e.Source == "aws.ec2" && e.DetailType == "EBS Volume Notification" && len(e.Resources) > 0:
		var d struct{ Event, Result, Cause string }
		_ = json.Unmarshal(e.Detail, &d)
		id := e.Resources[0][strings.LastIndexByte(e.Resources[0], '/')+1:]
		wt.mu.Lock()
		v := wt.volLocked(id)
		v.note(wt.since(), "ebs %s %s %s", d.Event, d.Result, d.Cause)
		wt.recent[id] = time.Now()
		wt.mu.Unlock()
	}
	select {
	case wt.kick <- struct{}{}:
	default:
	}
}

func (wt *watcher) onTask(d taskDetail) {
	now := time.Now()
	wt.mu.Lock()
	defer wt.mu.Unlock()
	t := wt.tasks[d.TaskArn]
	if t == nil {
		service, _ := strings.CutPrefix(d.Group, "service:") // a standalone task (a race's) has family:NAME
		if !strings.HasPrefix(d.Group, "service:") {
			service = ""
		}
		t = &taskObs{arn: d.TaskArn, service: service, def: wt.byDef[d.TaskDefinitionArn], seenAt: now}
		wt.tasks[d.TaskArn] = t
	}
	if d.Version <= t.version {
		return // a late or repeated event: the watcher's own delivery is at least once, unordered
	}
	t.version, t.lastStatus, t.desired, t.stopCode, t.reason = d.Version, d.LastStatus, d.DesiredStatus, d.StopCode, d.StoppedReason
	if t.instance == "" && d.ContainerInstanceArn != "" {
		t.instance = wt.instanceOfLocked(d.ContainerInstanceArn)
	}
	if d.LastStatus == "RUNNING" && t.runningAt.IsZero() {
		t.runningAt = now
		if t.def != nil && len(t.def.volumes) > 0 {
			wt.pending[t.arn] = now.Add(10 * time.Second)
		}
	}
	if d.LastStatus == "STOPPED" && t.stoppedAt.IsZero() {
		t.stoppedAt = now
	}
}

func (wt *watcher) instanceOfLocked(ciArn string) string {
	if id, ok := wt.ciInstance[ciArn]; ok {
		return id
	}
	for _, in := range wt.w.Instances() {
		if in.ContainerInstanceArn != "" {
			wt.ciInstance[in.ContainerInstanceArn] = in.ID
		}
	}
	return wt.ciInstance[ciArn]
}

func (wt *watcher) volLocked(id string) *volObs {
	v := wt.vols[id]
	if v == nil {
		v = &volObs{id: id, classified: 1}
		wt.vols[id] = v
	}
	return v
}

func (wt *watcher) since() time.Duration { return time.Since(wt.start) }

// note keeps a short history of the volume for violation reports.
func (v *volObs) note(at time.Duration, format string, args ...any) {
	if len(v.story) >= 400 {
		v.story = append(v.story[:100], v.story[200:]...)
	}
	v.story = append(v.story, fmt.Sprintf("%9s  ", at.Round(time.Millisecond))+fmt.Sprintf(format, args...))
}

// violate records a broken invariant (volume: the volume id concerned, if
// any, whose history the report prints).
func (wt *watcher) violate(kind, volume, format string, args ...any) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	wt.violateLocked(kind, volume, format, args...)
}

func (wt *watcher) violateLocked(kind, volume, format string, args ...any) {
	v := Violation{At: wt.since(), Handoffs: wt.handoffs, Kind: kind, Detail: fmt.Sprintf(format, args...), Volume: volume}
	if wt.reported[kind+"|"+v.Detail] {
		return // the same condition, seen again by a later poll
	}
	wt.reported[kind+"|"+v.Detail] = true
	wt.violations = append(wt.violations, v)
	if wt.progress != nil {
		fmt.Fprintf(wt.progress, "VIOLATION %s\n", v)
	}
}

// hostView is one poll of one fake host.
type hostView struct {
	id string
	st fakehost.State
}

// poll looks at every live fake host and every recently attached volume.
func (wt *watcher) poll() {
	var views []hostView
	var gone []string
	for _, in := range wt.w.Instances() {
		h, ok := wt.w.FakeHost(in.ID)
		if !ok {
			continue
		}
		if st := h.State(); !st.Down {
			views = append(views, hostView{in.ID, st})
		} else {
			gone = append(gone, in.ID)
		}
	}
	detaches := wt.w.DetachesAsked(wt.detachSeen)
	mkfs := wt.w.Disks().Mkfs()
	dropped, chain := wt.w.RecursiveInvocationsDropped(), wt.w.LongestChain()
	var rels []released
	if wt.rel != nil {
		rels = wt.rel.since(wt.relSeen) // relSeen: written by poll only
	}
	now := time.Now()
	wt.mu.Lock()
	for _, id := range gone {
		wt.down[id] = true
	}
	wt.checkReleasesLocked(rels)
	wt.checkDetachesLocked(detaches)
	wt.checkMkfsLocked(mkfs)
	wt.checkRecursionLocked(dropped, chain)
	attachedTo := map[string][]string{}
	for _, hv := range views {
		for vol := range hv.st.Devices {
			attachedTo[vol] = append(attachedTo[vol], hv.id)
			wt.recent[vol] = now
		}
		for name, vol := range hv.st.Mounts {
			v := wt.volLocked(vol)
			if v.name == "" {
				v.name = name
				v.note(wt.since(), "mounted as %s on %s", name, hv.id)
			} else if v.name != name {
				wt.violateLocked("name", vol, "%s is mounted as %s on %s but was %s before", vol, name, hv.id, v.name)
			}
		}
		if n := hv.st.ForcedUnmount; n > wt.forced[hv.id] {
			wt.violateLocked("forced-unmount", "", "tether-agent unmount --force went past a running container on %s (%d times)", hv.id, n-wt.forced[hv.id])
			wt.forced[hv.id] = n
		}
		wt.checkRunningMountsLocked(hv)
	}
	for vol, on := range attachedTo {
		if len(on) > 1 && wt.stillOnAll(vol, on) {
			wt.violateLocked("double-attach", vol, "%s is attached to %d instances at once: %v", vol, len(on), on)
		}
		wt.volLocked(vol).lastOn = on
	}
	var ids []string
	for vol, at := range wt.recent {
		if now.Sub(at) > 3*time.Second {
			delete(wt.recent, vol)
			continue
		}
		ids = append(ids, vol)
	}
	wt.mu.Unlock()

	wt.killMu.Lock()
	disks := make(map[string]fakehost.DiskState, len(ids))
	for _, id := range ids {
		if ds, ok := wt.w.Disks().Volume(id); ok {
			disks[id] = ds
		}
	}
	// Guests that died since the hosts were looked at above: a guest is
	// down before EC2 says stopped, and tether forces only after, so an
	// unclean detach read just now has its death in this list (chaos seed
	// 20261209 saw one between the two looks).
	var downNow []string
	for _, in := range wt.w.Instances() {
		if h, ok := wt.w.FakeHost(in.ID); ok && h.State().Down {
			downNow = append(downNow, in.ID)
		}
	}
	wt.mu.Lock()
	for _, id := range downNow {
		wt.down[id] = true
	}
	for id, ds := range disks {
		wt.checkDiskLocked(id, ds, attachedTo[id])
	}
	wt.mu.Unlock()
	wt.killMu.Unlock()

	wt.resolveNames()
	wt.mu.Lock()
	wt.classifyLocked()
	wt.verifyRunningLocked(now)
	wt.mu.Unlock()
}

// checkRunningMountsLocked: a task whose containers run on a host has
// every tether volume it uses mounted there, from the one EBS volume that
// holds that name's data.
func (wt *watcher) checkRunningMountsLocked(hv hostView) {
	for arn, status := range hv.st.Tasks {
		t := wt.tasks[arn]
		if status != "RUNNING" || t == nil || t.def == nil {
			continue
		}
		for _, vd := range t.def.volumes {
			name := vd.tetherName(arn)
			vol, ok := hv.st.Mounts[name]
			if !ok {
				wt.violateLocked("unmounted-under-task", "", "task %s runs on %s but its volume %s is not mounted there", arn, hv.id, name)
				continue
			}
			if want, known := wt.byName[name]; known && vd.shared && want != vol && !wt.movedLocked(want, vol) {
				wt.violateLocked("split-data", vol, "task %s on %s has %s mounted from %s, but %s holds that volume's data", arn, hv.id, name, vol, want)
			}
		}
	}
}

// kill ends an instance. The volumes mounted on it when it dies are
// detached uncleanly by the death itself, not by tether: their unclean
// detaches are accounted for here. With tear, the death tears the
// superblock of what it leaves mounted; the volumes torn are returned.
func (wt *watcher) kill(ctx context.Context, id string, tear bool) ([]string, error) {
	wt.killMu.Lock()
	defer wt.killMu.Unlock()
	on := wt.volumesOn(id)
	wt.w.Disks().TearOnForceDetach(tear)
	err := wt.w.KillInstance(ctx, id)
	wt.w.Disks().TearOnForceDetach(false)
	return wt.died(id, "kill", on), err
}

// stop stops an instance through EC2's stopping (the guest dies at its
// end, taking what is still mounted with it uncleanly, torn with tear).
// The watcher goes on meanwhile: an unclean detach of a volume last seen
// on an instance whose guest is gone is that death's.
func (wt *watcher) stop(ctx context.Context, id string, tear bool) ([]string, error) {
	on := wt.volumesOn(id)
	wt.w.Disks().TearOnForceDetach(tear)
	err := wt.w.StopInstance(ctx, id, false)
	wt.w.Disks().TearOnForceDetach(false)
	wt.killMu.Lock()
	defer wt.killMu.Unlock()
	return wt.died(id, "stop", append(on, wt.volumesOn(id)...)), err
}

// volumesOn lists the volumes whose device is on the instance's guest or
// mounted there.
func (wt *watcher) volumesOn(id string) []string {
	var on []string
	if h, ok := wt.w.FakeHost(id); ok {
		st := h.State()
		for vol := range st.Devices {
			on = append(on, vol)
		}
		for _, vol := range st.Mounts {
			on = append(on, vol)
		}
	}
	return on
}

// died accounts for an instance's death: the unclean detaches of the
// volumes it held, their torn superblocks, and (for the outcomes) that
// each must be served again elsewhere.
func (wt *watcher) died(id, kind string, on []string) []string {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	wt.down[id] = true
	var torn []string
	seen := map[string]bool{}
	for _, vol := range on {
		if seen[vol] {
			continue
		}
		seen[vol] = true
		v := wt.volLocked(vol)
		ds, ok := wt.w.Disks().Volume(vol)
		if ok && ds.Unclean > v.unclean {
			v.note(wt.since(), "instance %s died (%s) with it mounted", id, kind)
			v.unclean = ds.Unclean
		}
		d := &deathRec{instance: id, kind: kind, at: time.Now(), torn: ok && ds.Torn}
		if d.torn {
			torn = append(torn, vol)
			v.note(wt.since(), "superblock torn by the death of %s", id)
			wt.outcomes["superblocks torn by a death"]++
		}
		if !strings.HasPrefix(v.name, "task-") {
			wt.deaths[vol] = d
			wt.outcomes["volumes on a dying instance ("+kind+")"]++
		}
	}
	return torn
}

// repaired notes an operator's repair of a torn superblock.
func (wt *watcher) repaired(vol string) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	wt.volLocked(vol).note(wt.since(), "superblock repaired by its operator")
	wt.outcomes["torn superblocks repaired by an operator"]++
}

// count adds one to an outcome.
func (wt *watcher) count(outcome string) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	wt.outcomes[outcome]++
}

// raceStarted notes a task started on a host while its volume's detach is
// in flight (the plugin racing the reconciler).
func (wt *watcher) raceStarted(inst, vol, arn string, err error) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	v := wt.volLocked(vol)
	if err != nil {
		v.note(wt.since(), "racing task not started on %s: %v", inst, err)
		wt.outcomes["plugin races: task not started"]++
		return
	}
	v.note(wt.since(), "racing task %s started on %s as the unmount answered", shortTask(arn), inst)
	wt.outcomes["plugin races: task started during a detach"]++
}

// neverRan: the watcher saw the task but never RUNNING.
func (wt *watcher) neverRan(arn string) bool {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	t := wt.tasks[arn]
	return t != nil && t.runningAt.IsZero()
}

// volumeOf returns the EBS volume that holds a shared volume's data.
func (wt *watcher) volumeOf(name string) (string, bool) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	id, ok := wt.byName[name]
	return id, ok
}

// Handoffs is the number of completed handoffs so far.
func (wt *watcher) Handoffs() int {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	return wt.handoffs
}

func (wt *watcher) violationCount() int {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	return len(wt.violations)
}

// nameOf is the tether name a volume was mounted under ("?" if unknown).
func (wt *watcher) nameOf(vol string) string {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	if v := wt.vols[vol]; v != nil && v.name != "" {
		return v.name
	}
	return "?"
}

// stillOnAll confirms a volume seen on several hosts: the hosts were read
// one after the other, so a detach from the first and an attach to the
// last may both have happened in between. Read again, last host first:
// the first host still holding the device after the last one showed it
// means both held it at the same moment.
func (wt *watcher) stillOnAll(vol string, on []string) bool {
	for i := len(on) - 1; i >= 0; i-- {
		h, ok := wt.w.FakeHost(on[i])
		if !ok {
			return false
		}
		st := h.State()
		if _, attached := st.Devices[vol]; st.Down || !attached {
			return false
		}
	}
	return true
}

// waiting counts the services whose newest task is placed but not yet
// RUNNING (it waits for its volumes).
func (wt *watcher) waiting() int {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	newest := map[string]*taskObs{}
	for _, t := range wt.tasks {
		if t.service == "" || t.desired != "RUNNING" {
			continue
		}
		if n := newest[t.service]; n == nil || t.seenAt.After(n.seenAt) {
			newest[t.service] = t
		}
	}
	n := 0
	for _, t := range newest {
		if t.runningAt.IsZero() && t.stoppedAt.IsZero() {
			n++
		}
	}
	return n
}
