package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/fakehost"
)

// The faults of issue 11: hosts that stop, hang or are forgotten by ECS
// while they live, flushes that outlast every timer, the plugin racing a
// detach, devices held outside tether, superblocks torn by a death. Each
// draws its target and its length from the schedule's seed and is logged
// (chaos operation lines in the world's log).

// chooseSSMDown: the SSM agent stops on a live host for a while (up to
// tens of operations: past tether's waits); at times a task there stops
// first, so that the unmount it needs cannot be delivered.
func (s *schedule) chooseSSMDown(ctx context.Context) (string, func() error) {
	in := s.pickInstance(func(in *instModel) bool { return in.serving() && !in.offline })
	if in == nil {
		return "", nil
	}
	stopOne := s.rng.IntN(2) == 0
	back := s.wallBetween(time.Second, 12*time.Second)
	return in.id, func() error {
		if stopOne {
			s.stopTaskOn(ctx, OpSSMOffline, in.id)
		}
		if err := s.w.SSM().StopAgent(in.id); err != nil {
			return err
		}
		in.offline = true
		s.laterAfter(OpSSMOnline, in.id, back)
		return nil
	}
}

// chooseFault picks the target of one of issue 11's faults.
func (s *schedule) chooseFault(ctx context.Context, kind OpKind) (string, func() error) {
	switch kind {
	case OpScaleIn, OpSpotInterrupt, OpHangMember:
		return s.chooseHostGoes(ctx, kind)
	case OpStopInstance:
		in := s.pickInstance(func(in *instModel) bool { return in.clean() && s.inAZ(in.az, instActive) >= 2 })
		if in == nil || s.dying > 0 {
			return "", nil
		}
		graceful, tear := s.rng.IntN(2) == 0, s.drawTear()
		return in.id, func() error {
			in.state, in.stopped = instStopped, make(chan struct{})
			s.later(OpTerminate, in.id, 4, 12)
			s.dying++
			s.async.Add(1)
			go func() { // a stop takes EC2's stopping time; the schedule goes on
				defer s.async.Done()
				defer close(in.stopped)
				if err := s.stopInstance(ctx, in, graceful, tear); err != nil {
					s.note(kind, in.id, "stop failed", "err", err)
					fmt.Fprintf(s.log, "operation %s %s failed: %v\n", kind, in.id, err)
				}
			}()
			return nil
		}
	case OpHang:
		in := s.pickInstance(func(in *instModel) bool { return in.clean() && s.inAZ(in.az, instActive) >= 2 })
		if in == nil {
			return "", nil
		}
		stopOne := s.rng.IntN(10) < 7
		back := s.wallBetween(3*time.Second, 20*time.Second)
		return in.id, func() error {
			if stopOne {
				s.stopTaskOn(ctx, kind, in.id)
			}
			if err := s.w.HangInstance(ctx, in.id, 2*time.Second); err != nil {
				return err
			}
			in.state = instHung
			s.laterAfter(OpResume, in.id, back)
			return nil
		}
	case OpDeregister:
		in := s.pickInstance(func(in *instModel) bool { return in.clean() && s.inAZ(in.az, instActive) >= 2 })
		if in == nil {
			return "", nil
		}
		return in.id, func() error { return s.deregister(ctx, in) }
	case OpSlowFlush, OpPluginRace, OpHoldDevice:
		sv, task, h := s.pickServedTask()
		if sv == nil {
			return "", nil
		}
		vd, _ := sv.def.sharedVolume()
		switch kind {
		case OpSlowFlush:
			back := s.wallBetween(2*time.Second, 30*time.Second) // past tether's waits at times
			return vd.name + " on " + task.EC2InstanceID, func() error {
				vol, ok := s.watch.volumeOf(vd.name)
				if !ok {
					return errNotYet
				}
				h.SlowFlush(vol)
				s.laterAfter(OpFinishFlush, task.EC2InstanceID+" "+vol, back)
				return s.stopTaskArn(ctx, task.Arn, "chaos: slow-flush")
			}
		case OpPluginRace:
			// Armed until race-end: the replacement may land on the same
			// host (no unmount there), and a later unmount of the volume
			// there races as well.
			back := s.wallBetween(3*time.Second, 15*time.Second)
			return vd.name + " on " + task.EC2InstanceID, func() error {
				vol, ok := s.watch.volumeOf(vd.name)
				if !ok {
					return errNotYet
				}
				if s.races[task.EC2InstanceID] != nil {
					return errNotYet // one race per host at a time
				}
				s.armRace(ctx, h, task, sv, vol)
				s.laterAfter(OpRaceEnd, task.EC2InstanceID, back)
				return s.stopTaskArn(ctx, task.Arn, "chaos: plugin-race")
			}
		case OpHoldDevice:
			back, stop := s.wallBetween(time.Second, 12*time.Second), s.rng.IntN(2) == 0
			return vd.name + " on " + task.EC2InstanceID, func() error {
				vol, ok := s.watch.volumeOf(vd.name)
				if !ok {
					return errNotYet
				}
				h.HoldDevice(vol, agentproto.Holder{Kind: "namespace", Name: "/mnt/backup", PID: 4000 + s.n, Command: "backup"})
				s.laterAfter(OpReleaseHold, task.EC2InstanceID+" "+vol, back)
				if stop {
					return s.stopTaskArn(ctx, task.Arn, "chaos: hold-device")
				}
				return nil
			}
		}
	}
	return "", nil
}

// undoFault performs the undo operations of issue 11's faults.
func (s *schedule) undoFault(ctx context.Context, u undoOp) error {
	in := s.instanceModel(u.target)
	switch u.kind {
	case OpTerminate:
		if in == nil || in.state != instStopped {
			return nil
		}
		select {
		case <-in.stopped:
		default: // still stopping
			s.requeued = append(s.requeued, undoOp{due: s.n + 1, kind: u.kind, target: u.target})
			return errNotYet
		}
		return s.terminate(ctx, u, in)
	case OpResume:
		if in == nil || in.state != instHung {
			return nil
		}
		if st, err := s.w.EC2().InstanceState(in.id); err == nil && st != "running" {
			// tether's hung watch stopped it (HungHostAction stop, with
			// the opt-in kinds): its operator terminates it.
			return s.terminate(ctx, u, in)
		}
		if s.rng.IntN(10) < 3 {
			// Its operator terminates the wedged instance instead.
			return s.terminate(ctx, u, in)
		}
		if err := s.w.ResumeInstance(in.id); err != nil {
			return err
		}
		in.state, in.offline, in.disconnected = instActive, false, false
		return nil
	case OpOrphansEnd:
		if in == nil || in.state != instOrphaned && in.state != instOrphansGone {
			return nil
		}
		if in.state == instOrphaned && s.rng.IntN(2) == 0 {
			// The orphaned containers exit first; the instance, which ECS
			// no longer knows, is terminated a few operations later.
			if h, ok := s.w.FakeHost(in.id); ok {
				for _, arn := range s.orphans[in.id] {
					if err := h.StopTask(ctx, arn); err != nil {
						s.note(u.kind, in.id, "orphan not stopped", "task", arn, "err", err)
					}
				}
			}
			delete(s.orphans, in.id)
			s.requeued = append(s.requeued, undoOp{at: time.Now().Add(s.wallBetween(time.Second, 6*time.Second)), kind: OpOrphansEnd, target: in.id})
			in.state = instOrphansGone
			return nil
		}
		return s.terminate(ctx, u, in)
	case OpFinishFlush, OpReleaseHold:
		inst, vol, _ := cut(u.target)
		h, ok := s.w.FakeHost(inst)
		if !ok {
			return nil
		}
		if u.kind == OpFinishFlush {
			h.FinishFlush(vol)
		} else {
			h.ReleaseDevice(vol)
		}
		return nil
	case OpRaceEnd:
		r := s.races[u.target]
		delete(s.races, u.target)
		if r == nil {
			return nil
		}
		return r.end(ctx, s)
	case OpLaunchMember:
		return s.launchMember(ctx)
	case OpRepair:
		if s.w.Disks().RepairSuperblock(u.target) {
			s.watch.repaired(u.target)
		}
		return nil
	}
	return fmt.Errorf("unknown undo operation %s", u.kind)
}

// cut splits "instance volume".
func cut(target string) (string, string, bool) {
	for i := range len(target) {
		if target[i] == ' ' {
			return target[:i], target[i+1:], true
		}
	}
	return target, "", false
}

// wallBetween draws a fault's length in wall time: faults that hold a
// host or a volume last seconds, not operations, so that they do not
// stretch when the operations slow down (backpressure) and slow them more.
func (s *schedule) wallBetween(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1))
}

// drawTear: does the next death tear the superblocks of what it leaves
// mounted?
func (s *schedule) drawTear() bool { return s.rng.Float64() < s.cfg.TearRate }

// die kills the instance (its host dies at once, EC2 terminates it, ECS
// forgets it), tearing what it leaves mounted when tear says so; the
// volumes torn are repaired by their operator a few operations later.
func (s *schedule) die(ctx context.Context, kind OpKind, in *instModel, tear bool) error {
	s.dying++
	defer func() { s.dying-- }()
	torn, err := s.watch.kill(ctx, in.id, tear)
	s.tornBy(kind, in.id, torn)
	return err
}

// terminate ends an instance that stopped, hung or was forgotten by ECS,
// and launches its replacement a few operations later; while another
// death is under way (a stop), it waits for the next step.
func (s *schedule) terminate(ctx context.Context, u undoOp, in *instModel) error {
	if s.dying > 0 {
		s.requeued = append(s.requeued, undoOp{due: s.n + 1, kind: u.kind, target: u.target})
		return errNotYet
	}
	tear := s.drawTear()
	in.state = instDead
	s.later(OpLaunch, in.az, 1, 4)
	return s.die(ctx, u.kind, in, tear)
}

func (s *schedule) tornBy(kind OpKind, inst string, torn []string) {
	for _, vol := range torn {
		s.note(kind, inst, "superblock torn by the death", "volume", vol)
		s.laterAfter(OpRepair, vol, s.wallBetween(time.Second, 6*time.Second))
	}
}

// stopInstance stops the instance as EC2 does, through stopping; a
// graceful stop has its containers stopped as the OS shuts down (the ECS
// agent goes first, so ECS places nothing more there). Once EC2 says
// stopped, ECS stops what still ran there ("When you stop a container
// instance, the tasks that are running on it are transitioned to the
// STOPPED status", Amazon ECS events; the world leaves that to its
// callers). The death at the end of stopping tears what is still
// mounted when tear says so. Runs on its own goroutine: nothing of the
// schedule's model but what is passed.
func (s *schedule) stopInstance(ctx context.Context, in *instModel, graceful, tear bool) error {
	if graceful {
		if err := s.w.ECS().DisconnectAgent(in.id); err != nil {
			return err
		}
		for _, t := range s.w.ECS().Snapshot(s.watch.cluster).Tasks {
			if t.EC2InstanceID == in.id && t.LastStatus != "STOPPED" && t.DesiredStatus == "RUNNING" {
				if err := s.stopTaskArn(ctx, t.Arn, "chaos: the instance is stopping (its OS stops the containers)"); err != nil {
					s.note(OpStopInstance, in.id, "task not stopped", "task", t.Arn, "err", err)
				}
			}
		}
	}
	torn, err := s.watch.stop(ctx, in.id, tear)
	s.deathDone(OpStopInstance, in.id, torn)
	if err != nil {
		return err
	}
	return s.w.ECS().StopInstance(in.id)
}

// deathDone is the end of a stop, reported from its goroutine.
func (s *schedule) deathDone(kind OpKind, inst string, torn []string) {
	s.asyncMu.Lock()
	defer s.asyncMu.Unlock()
	s.finished = append(s.finished, deathNote{kind: kind, inst: inst, torn: torn})
}

// deathNote is a death that ended off the schedule's goroutine.
type deathNote struct {
	kind OpKind
	inst string
	torn []string
}

// collectDeaths takes in the stops that ended since the last step.
func (s *schedule) collectDeaths() {
	s.asyncMu.Lock()
	done := s.finished
	s.finished = nil
	s.asyncMu.Unlock()
	for _, d := range done {
		s.dying--
		s.tornBy(d.kind, d.inst, d.torn)
	}
}

// deregister deregisters the instance's container instance with force:
// ECS stops its tasks (orphaned: their containers run on), and the
// instance is INACTIVE. The orphans exit or the instance is terminated a
// few operations later.
func (s *schedule) deregister(ctx context.Context, in *instModel) error {
	var orphans []string
	for _, t := range s.w.ECS().Snapshot(s.watch.cluster).Tasks {
		if t.EC2InstanceID == in.id && t.LastStatus != "STOPPED" {
			orphans = append(orphans, t.Arn)
		}
	}
	if len(orphans) == 0 {
		return errNotYet
	}
	err := retrying(ctx, "deregister "+in.id, func(ctx context.Context) error {
		_, err := s.ecs.DeregisterContainerInstance(ctx, &ecs.DeregisterContainerInstanceInput{
			Cluster: aws.String(s.watch.cluster), ContainerInstance: aws.String(in.arn), Force: aws.Bool(true)})
		return err
	})
	if err != nil {
		return err
	}
	in.state = instOrphaned
	s.orphans[in.id] = orphans
	s.note(OpDeregister, in.id, "tasks orphaned", "tasks", len(orphans))
	s.laterAfter(OpOrphansEnd, in.id, s.wallBetween(2*time.Second, 15*time.Second))
	return nil
}

// pickServedTask picks a shared-volume service whose task runs on a clean
// instance, with that task and the instance's fake host.
func (s *schedule) pickServedTask() (*svcModel, *ecssim.TaskInfo, *fakehost.Host) {
	sn := s.w.ECS().Snapshot(s.watch.cluster)
	type cand struct {
		sv *svcModel
		t  ecssim.TaskInfo
	}
	var cs []cand
	for _, m := range s.svc {
		if _, ok := m.def.sharedVolume(); !ok || !m.exists || m.desired == 0 {
			continue
		}
		for _, t := range sn.ServiceTasks(m.def.name) {
			if in := s.instanceModel(t.EC2InstanceID); t.LastStatus == "RUNNING" && t.DesiredStatus == "RUNNING" && in != nil && in.clean() {
				cs = append(cs, cand{m, t})
			}
		}
	}
	if len(cs) == 0 {
		return nil, nil, nil
	}
	c := cs[s.rng.IntN(len(cs))]
	h, ok := s.w.FakeHost(c.t.EC2InstanceID)
	if !ok {
		return nil, nil, nil
	}
	return c.sv, &c.t, h
}

func (s *schedule) instanceModel(id string) *instModel {
	for _, in := range s.inst {
		if in.id == id {
			return in
		}
	}
	return nil
}

// stopTaskOn stops one running task with a shared volume on the instance,
// if it has one, and waits (bounded) for ECS to say STOPPED: the fault
// that follows meets a volume waiting to leave.
func (s *schedule) stopTaskOn(ctx context.Context, kind OpKind, inst string) {
	var arn string
	for _, t := range s.w.ECS().Snapshot(s.watch.cluster).Tasks {
		d := s.watch.byDef[t.TaskDefinitionArn]
		if t.EC2InstanceID != inst || t.LastStatus != "RUNNING" || t.DesiredStatus != "RUNNING" || d == nil {
			continue
		}
		if _, ok := d.sharedVolume(); ok {
			arn = t.Arn
			break
		}
	}
	if arn == "" {
		return
	}
	if err := s.stopTaskArn(ctx, arn, "chaos: "+string(kind)); err != nil {
		s.note(kind, inst, "task not stopped", "task", arn, "err", err)
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_ = s.w.ECS().WaitFor(wctx, s.watch.cluster, "task STOPPED", func(sn ecssim.Snapshot) bool {
		t, ok := sn.Task(arn)
		return !ok || t.LastStatus == "STOPPED"
	})
	s.note(kind, inst, "task stopped first", "task", arn)
}

func (s *schedule) stopTaskArn(ctx context.Context, arn, reason string) error {
	return retrying(ctx, "stop task", func(ctx context.Context) error {
		_, err := s.ecs.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(s.watch.cluster), Task: aws.String(arn), Reason: aws.String(reason)})
		return err
	})
}

// race is one armed plugin race: when the unmount of vol on the host
// succeeds, a task of the service's family is started there (ECS
// StartTask on that container instance) while the reconciler's detach is
// in flight.
type race struct {
	mu      sync.Mutex
	host    *fakehost.Host
	inst    string
	vol     string
	fired   bool
	started string // the racing task, once ECS started it
	done    chan struct{}
}

func (s *schedule) armRace(ctx context.Context, h *fakehost.Host, task *ecssim.TaskInfo, sv *svcModel, vol string) {
	r := &race{host: h, inst: task.EC2InstanceID, vol: vol, done: make(chan struct{})}
	s.races[r.inst] = r
	ciArn, cluster, def := task.ContainerInstanceArn, s.watch.cluster, sv.def.taskDef
	s.watch.count("plugin races armed")
	h.OnUnmount(func(volumeID, name string) {
		r.mu.Lock()
		if r.fired || volumeID != r.vol {
			r.mu.Unlock()
			return
		}
		r.fired = true
		r.mu.Unlock()
		// Before the unmount answers: the container is starting when the
		// reconciler hears that the volume was released.
		defer close(r.done)
		var arn string
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := retrying(sctx, "start racing task", func(ctx context.Context) error {
			out, err := s.ecs.StartTask(ctx, &ecs.StartTaskInput{Cluster: aws.String(cluster), TaskDefinition: aws.String(def),
				ContainerInstances: []string{ciArn}, StartedBy: aws.String("chaos-race")})
			if err == nil && len(out.Tasks) > 0 {
				arn = aws.ToString(out.Tasks[0].TaskArn)
			}
			if err == nil && len(out.Failures) > 0 {
				err = fmt.Errorf("%s: %s", aws.ToString(out.Failures[0].Arn), aws.ToString(out.Failures[0].Reason))
			}
			return err
		})
		r.mu.Lock()
		r.started = arn
		r.mu.Unlock()
		s.watch.raceStarted(r.inst, r.vol, arn, err)
	})
}

// end stops the racing task (if it started) and disarms the hook.
func (r *race) end(ctx context.Context, s *schedule) error {
	r.host.OnUnmount(nil)
	r.mu.Lock()
	fired := r.fired
	r.mu.Unlock()
	if fired {
		select {
		case <-r.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	arn := r.started
	r.mu.Unlock()
	if arn == "" {
		return nil
	}
	err := s.stopTaskArn(ctx, arn, "chaos: race-end")
	var nf interface{ ErrorCode() string }
	if errors.As(err, &nf) && nf.ErrorCode() == "InvalidParameterException" {
		return nil // already stopped
	}
	return err
}
