package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/world"
)

// Instance states in the schedule's model.
const (
	instActive      = "active"
	instDraining    = "draining"
	instDead        = "dead"
	instStopped     = "stopped"        // stopping or stopped: terminated a few operations later
	instHung        = "hung"           // EC2 says running; the guest and its agents are silent
	instOrphaned    = "orphaned"       // deregistered with force: its containers run on, unseen by ECS
	instOrphansGone = "orphans-exited" // and they exited: terminated a few operations later
)

type instModel struct {
	id, az, arn, state string
	member             bool          // of the Auto Scaling group (the opt-in kinds)
	disconnected       bool          // ECS agent
	offline            bool          // SSM agent
	stopped            chan struct{} // closed once a stop has ended (stopped, or failed)
}

// serving: ECS may place tasks there and the schedule may act on it as on
// a healthy instance.
func (in *instModel) serving() bool { return in.state == instActive || in.state == instDraining }

// clean: active with both agents connected, for faults that need a
// healthy host to start from.
func (in *instModel) clean() bool { return in.state == instActive && !in.disconnected && !in.offline }

type svcModel struct {
	def     *serviceDef
	desired int32
	exists  bool
}

// undoOp is an operation that undoes an earlier one once the schedule has
// drawn due operations.
type undoOp struct {
	due    int       // after this many operations
	at     time.Time // or, when set, at this wall time
	kind   OpKind
	target string // instance id, AZ (launch) or service name
}

func (u undoOp) isDue(n int, now time.Time) bool {
	if !u.at.IsZero() {
		return !now.Before(u.at)
	}
	return u.due <= n
}

// schedule draws and performs the operations. Its choices depend only on
// the seed and on its own model of what it did (instances drained, killed,
// services scaled or deleted), so a seed always gives the same sequence;
// only which task an operation meets depends on how the world got there.
type schedule struct {
	cfg   Config
	w     *world.World
	ecs   ecsAPI
	asg   *autoscaling.Client // the opt-in kinds' scale-ins
	watch *watcher
	rng   *rand.Rand
	// undoRng: the draws of undo operations (see runDue).
	undoRng *rand.Rand
	inst    []*instModel
	svc     []*svcModel
	undo    []undoOp
	// requeued: undo operations that could not happen yet, for the next step
	requeued []undoOp
	n        int
	stuckAt  int // the last stick-attach
	done     map[OpKind]int
	skipped  map[OpKind]int
	failed   map[OpKind]int
	log      io.Writer
	events   *slog.Logger // every operation, in the world's log
	history  []opRecord   // every operation performed, for the report

	async    sync.WaitGroup // operations still under way (an EC2 stop)
	asyncMu  sync.Mutex
	finished []deathNote // stops that ended, for the next step
	dying    int         // deaths under way: no other death meanwhile (the superblock tear is per death)
	races    map[string]*race
	orphans  map[string][]string // instance -> the tasks its forced deregistration orphaned
	changes  volumeChanges       // grows and AZ moves asked for
}

// opRecord is one operation performed.
type opRecord struct {
	n      int
	at     time.Duration // since the watcher began
	kind   OpKind
	target string
	err    error
}

func newSchedule(cfg Config, w *world.World, api ecsAPI, watch *watcher, services []*serviceDef, log io.Writer) *schedule {
	s := &schedule{cfg: cfg, w: w, ecs: api, watch: watch, rng: rand.New(rand.NewPCG(cfg.Seed, 0xc4a05)), undoRng: rand.New(rand.NewPCG(cfg.Seed, 0x0dd0)),
		done: map[OpKind]int{}, skipped: map[OpKind]int{}, failed: map[OpKind]int{}, log: log,
		events: slog.New(slog.DiscardHandler), races: map[string]*race{}, orphans: map[string][]string{}}
	if cfg.WorldLog != nil {
		s.events = slog.New(slog.NewJSONHandler(cfg.WorldLog, nil)).With("component", "chaos")
	}
	s.asg = autoscaling.NewFromConfig(w.AWSConfig())
	for _, in := range w.Instances() {
		s.inst = append(s.inst, &instModel{id: in.ID, az: in.AZ, arn: in.ContainerInstanceArn, state: instActive, member: s.isMember(in.ID)})
	}
	for _, d := range services {
		s.svc = append(s.svc, &svcModel{def: d, desired: 1, exists: true})
	}
	return s
}

// pause is the wait before the next operation: exponential, mean OpInterval.
func (s *schedule) pause() time.Duration {
	return time.Duration(s.rng.ExpFloat64() * float64(s.cfg.OpInterval))
}

// step performs the undo operations that are due, then one drawn
// operation.
func (s *schedule) step(ctx context.Context) {
	s.n++
	s.collectDeaths()
	s.adopt()
	s.runDue(ctx)
	total := 0
	for _, k := range chosenKinds {
		total += s.cfg.weight(k)
	}
	if total == 0 {
		return
	}
	for range 4 { // a kind without a candidate now: draw again
		x := s.rng.IntN(total)
		var kind OpKind
		for _, k := range chosenKinds {
			w := s.cfg.weight(k)
			if x < w {
				kind = k.kind
				break
			}
			x -= w
		}
		if target, op := s.choose(ctx, kind); op != nil {
			s.perform(ctx, kind, target, op)
			return
		}
		s.skipped[kind]++
	}
}

// runDue performs the undo operations that are due (by operations or by
// wall time); the run calls it between operations too, so faults of a
// few seconds end on time.
func (s *schedule) runDue(ctx context.Context) {
	// Undos that come by wall time fall between operations as timing has
	// it: what they draw comes from a stream of their own, so the
	// operations' draws stay the seed's whatever the timing.
	drawn := s.rng
	s.rng = s.undoRng
	defer func() { s.rng = drawn }()
	s.collectDeaths()
	now := time.Now()
	pending, later := s.undo, []undoOp(nil)
	s.undo = nil // undos queue undos of their own (a terminate's launch)
	for _, u := range pending {
		if !u.isDue(s.n, now) {
			later = append(later, u)
			continue
		}
		s.perform(ctx, u.kind, u.target, func() error { return s.doUndo(ctx, u) })
	}
	s.undo = append(append(later, s.undo...), s.requeued...)
	s.requeued = nil
}

// laterAfter queues an undo operation d of wall time from now.
func (s *schedule) laterAfter(kind OpKind, target string, d time.Duration) {
	s.undo = append(s.undo, undoOp{at: time.Now().Add(d), kind: kind, target: target})
}

func (s *schedule) perform(ctx context.Context, kind OpKind, target string, op func() error) {
	err := op()
	if errors.Is(err, errNotYet) {
		s.skipped[kind]++
		return
	}
	s.history = append(s.history, opRecord{n: s.n, at: s.watch.since(), kind: kind, target: target, err: err})
	if err != nil {
		s.failed[kind]++
		s.events.Warn("chaos operation failed", "n", s.n, "kind", kind, "target", target, "err", err)
		fmt.Fprintf(s.log, "operation %s %s failed: %v\n", kind, target, err)
		return
	}
	s.events.Info("chaos operation", "n", s.n, "kind", kind, "target", target)
	s.done[kind]++
}

// instances sums up the model's instances by state.
func (s *schedule) instances() string {
	n := map[string]int{}
	for _, in := range s.inst {
		n[in.state]++
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		if k != instDead {
			out = append(out, fmt.Sprintf("%s %d", k, n[k]))
		}
	}
	return strings.Join(out, ", ")
}

// historyBefore lists the last operations before the report's first
// violation (none without one).
func (s *schedule) historyBefore(rep *Report) []string {
	if len(rep.Violations) == 0 {
		return nil
	}
	at := rep.Violations[0].At
	var out []string
	for _, o := range s.history {
		if o.at > at {
			break
		}
		line := fmt.Sprintf("%5d  %9s  %-17s %s", o.n, o.at.Round(time.Millisecond), o.kind, o.target)
		if o.err != nil {
			line += "  (failed: " + o.err.Error() + ")"
		}
		out = append(out, line)
	}
	if len(out) > 40 {
		out = out[len(out)-40:]
	}
	return out
}

// note logs a detail of an operation under way.
func (s *schedule) note(kind OpKind, target, msg string, args ...any) {
	s.events.Info("chaos "+msg, append([]any{"n", s.n, "kind", kind, "target", target}, args...)...)
}

// later queues an undo operation after 1+lo..hi more operations.
func (s *schedule) later(kind OpKind, target string, lo, hi int) {
	s.undo = append(s.undo, undoOp{due: s.n + lo + s.rng.IntN(hi-lo+1), kind: kind, target: target})
}

// choose picks the operation's target (named for the log) and returns
// the operation; nil when none fits now.
func (s *schedule) choose(ctx context.Context, kind OpKind) (string, func() error) {
	switch kind {
	case OpDrain:
		in := s.pickInstance(func(in *instModel) bool { return in.state == instActive && s.inAZ(in.az, instActive) >= 2 })
		if in == nil {
			return "", nil
		}
		return in.id, func() error {
			if err := s.w.DrainInstance(ctx, in.id); err != nil {
				return err
			}
			in.state = instDraining
			s.later(OpActivate, in.id, 4, 16)
			return nil
		}
	case OpKill:
		in := s.pickInstance(func(in *instModel) bool {
			return in.serving() && s.inAZ(in.az, instActive) >= 1+b2i(in.state == instActive) && s.inAZ(in.az, "") >= 2
		})
		if in == nil || s.dying > 0 {
			return "", nil
		}
		return in.id, func() error {
			in.state = instDead
			s.later(OpLaunch, in.az, 2, 6)
			return s.die(ctx, kind, in, s.drawTear())
		}
	case OpAgentRestart:
		in := s.pickInstance(func(in *instModel) bool { return in.state != instDead && in.state != instStopped })
		if in == nil {
			return "", nil
		}
		return in.id, func() error { return s.w.RestartAgent(ctx, in.id) }
	case OpDisconnect:
		in := s.pickInstance(func(in *instModel) bool { return in.serving() && !in.disconnected })
		if in == nil {
			return "", nil
		}
		return in.id, func() error {
			if err := s.w.ECS().DisconnectAgent(in.id); err != nil {
				return err
			}
			in.disconnected = true
			s.later(OpReconnect, in.id, 1, 4)
			return nil
		}
	case OpSSMOffline:
		return s.chooseSSMDown(ctx)
	case OpStopTask, OpTaskExit:
		sv := s.pickService(func(m *svcModel) bool { return m.exists && m.desired > 0 })
		if sv == nil {
			return "", nil
		}
		return sv.def.name, func() error { return s.stopTask(ctx, sv, kind == OpTaskExit) }
	case OpScaleDown:
		sv := s.pickService(func(m *svcModel) bool { return m.exists && m.desired > 0 })
		if sv == nil {
			return "", nil
		}
		return sv.def.name, func() error {
			if err := s.scale(ctx, sv, 0); err != nil {
				return err
			}
			s.later(OpScaleUp, sv.def.name, 4, 12)
			return nil
		}
	case OpDeleteSvc:
		deleted := 0
		for _, m := range s.svc {
			if !m.exists {
				deleted++
			}
		}
		sv := s.pickService(func(m *svcModel) bool { return m.exists })
		if sv == nil || deleted >= 3 {
			return "", nil
		}
		return sv.def.name, func() error {
			err := retrying(ctx, "delete service "+sv.def.name, func(ctx context.Context) error {
				_, err := s.ecs.DeleteService(ctx, &ecs.DeleteServiceInput{Cluster: aws.String(s.watch.cluster), Service: aws.String(sv.def.name), Force: aws.Bool(true)})
				return err
			})
			if err != nil {
				return err
			}
			sv.exists, sv.desired = false, 0
			s.later(OpRecreateSvc, sv.def.name, 6, 16)
			return nil
		}
	case OpThrottle:
		actions := []string{"AttachVolume", "DetachVolume", "DescribeVolumes", "CreateVolume", "DeleteVolume"}
		a, n := actions[s.rng.IntN(len(actions))], 1+s.rng.IntN(10)
		return fmt.Sprintf("%s x%d", a, n), func() error { s.w.EC2().ThrottleNext(a, n); return nil }
	case OpFailCreate:
		return "next CreateVolume", func() error {
			s.w.EC2().FailNextCreates(1, "Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state")
			return nil
		}
	case OpDelayAttach, OpStickAttach:
		// A stuck attachment holds its service for tether's 90 s (wall)
		// before it is forced: one now and then.
		if kind == OpStickAttach && s.stuckAt > 0 && s.n-s.stuckAt < 300 {
			return "", nil
		}
		sv := s.pickService(func(m *svcModel) bool { _, ok := m.def.sharedVolume(); return ok })
		if sv == nil {
			return "", nil
		}
		d := time.Duration(200+s.rng.IntN(2800)) * time.Millisecond
		vd, _ := sv.def.sharedVolume()
		return vd.name, func() error {
			id, ok := s.watch.volumeOf(vd.name)
			if !ok {
				return errNotYet
			}
			if kind == OpStickAttach {
				s.stuckAt = s.n
				return s.w.EC2().StickAttach(id)
			}
			return s.w.EC2().DelayAttach(id, d)
		}
	case OpGrow, OpAZMove:
		return s.chooseVolumeChange(ctx, kind)
	}
	return s.chooseFault(ctx, kind)
}

// errNotYet: the operation's target does not exist yet (a volume not
// created); counted as skipped.
var errNotYet = errors.New("target not there yet")

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// inAZ counts the instances of an AZ in a state ("" for every serving
// one: active or draining).
func (s *schedule) inAZ(az, state string) int {
	n := 0
	for _, in := range s.inst {
		if in.az == az && (in.state == state || state == "" && in.serving()) {
			n++
		}
	}
	return n
}

func (s *schedule) pickInstance(ok func(*instModel) bool) *instModel {
	var c []*instModel
	for _, in := range s.inst {
		if ok(in) {
			c = append(c, in)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[s.rng.IntN(len(c))]
}

func (s *schedule) pickService(ok func(*svcModel) bool) *svcModel {
	var c []*svcModel
	for _, m := range s.svc {
		if ok(m) {
			c = append(c, m)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[s.rng.IntN(len(c))]
}

func (s *schedule) service(name string) *svcModel {
	for _, m := range s.svc {
		if m.def.name == name {
			return m
		}
	}
	return nil
}

func (s *schedule) scale(ctx context.Context, sv *svcModel, desired int32) error {
	err := retrying(ctx, "scale "+sv.def.name, func(ctx context.Context) error {
		_, err := s.ecs.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(s.watch.cluster), Service: aws.String(sv.def.name), DesiredCount: aws.Int32(desired)})
		return err
	})
	if err == nil {
		sv.desired = desired
	}
	return err
}

// stopTask stops the service's live task: through ECS (an operator's
// StopTask) or by its container exiting.
func (s *schedule) stopTask(ctx context.Context, sv *svcModel, exit bool) error {
	var target *ecssim.TaskInfo
	for _, t := range s.w.ECS().Snapshot(s.watch.cluster).ServiceTasks(sv.def.name) {
		if t.DesiredStatus == "RUNNING" && (!exit || t.LastStatus == "RUNNING") {
			target = &t
		}
	}
	if target == nil {
		return errNotYet
	}
	if exit {
		h, ok := s.w.FakeHost(target.EC2InstanceID)
		if !ok {
			return errNotYet
		}
		return h.ExitTask(target.Arn, 1)
	}
	return retrying(ctx, "stop task", func(ctx context.Context) error {
		_, err := s.ecs.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(s.watch.cluster), Task: aws.String(target.Arn), Reason: aws.String("chaos: stop-task")})
		return err
	})
}

// doUndo performs an undo operation; one that cannot happen yet (a
// service still draining) is queued again.
func (s *schedule) doUndo(ctx context.Context, u undoOp) error {
	switch u.kind {
	case OpActivate:
		for _, in := range s.inst {
			if in.id != u.target || in.state != instDraining {
				continue
			}
			err := retrying(ctx, "activate "+in.id, func(ctx context.Context) error {
				_, err := s.ecs.UpdateContainerInstancesState(ctx, &ecs.UpdateContainerInstancesStateInput{
					Cluster: aws.String(s.watch.cluster), ContainerInstances: []string{in.arn}, Status: types.ContainerInstanceStatusActive})
				return err
			})
			if err == nil {
				in.state = instActive
			}
			return err
		}
		return nil // killed meanwhile
	case OpReconnect, OpSSMOnline:
		for _, in := range s.inst {
			if in.id != u.target || !in.serving() {
				continue // gone, or another fault's undo brings it back
			}
			if u.kind == OpReconnect {
				in.disconnected = false
				return s.w.ECS().ReconnectAgent(in.id)
			}
			in.offline = false
			return s.w.SSM().StartAgent(in.id)
		}
		return nil
	case OpLaunch:
		in, err := s.w.LaunchInstance(ctx, world.LaunchOptions{AZ: u.target})
		if err != nil {
			return err
		}
		s.inst = append(s.inst, &instModel{id: in.ID, az: in.AZ, arn: in.ContainerInstanceArn, state: instActive})
		return nil
	case OpScaleUp:
		if sv := s.service(u.target); sv != nil && sv.exists {
			return s.scale(ctx, sv, 1)
		}
		return nil
	case OpRecreateSvc:
		sv := s.service(u.target)
		err := sv.def.create(ctx, s.ecs, s.watch.cluster, 1)
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "InvalidParameterException" {
			// The deleted service is still DRAINING its task.
			s.requeued = append(s.requeued, undoOp{due: s.n + 1, kind: u.kind, target: u.target})
			return nil
		}
		if err == nil {
			sv.exists, sv.desired = true, 1
		}
		return err
	}
	return s.undoFault(ctx, u)
}

// restore undoes every pending drain, kill and scale-down at once (deleted
// services stay deleted), so the cluster can settle at full strength.
func (s *schedule) restore(ctx context.Context) {
	pending := s.undo
	s.undo = nil
	s.async.Wait() // a stop under way ends first: its terminate is among the undos
	s.collectDeaths()
	pending = append(pending, s.undo...)
	s.undo = nil
	for len(pending) > 0 {
		for _, u := range pending {
			if u.kind == OpRecreateSvc {
				continue
			}
			s.perform(ctx, u.kind, u.target, func() error { return s.doUndo(ctx, u) })
		}
		// Undos queue more (a terminate, its launch; a requeued one).
		pending, s.undo, s.requeued = append(s.undo, s.requeued...), nil, nil
		pending = slices.DeleteFunc(pending, func(u undoOp) bool { return u.kind == OpRecreateSvc })
		s.async.Wait()
		s.collectDeaths()
		pending = append(pending, s.undo...)
		s.undo = nil
	}
}
