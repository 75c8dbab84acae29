package reconcile_test

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// TestMain fixes rapid's seed unless one is given (-rapid.seed or
// RAPID_SEED), so `make test` is reproducible; RAPID_SEED=0 explores.
func TestMain(m *testing.M) {
	flag.Parse()
	seeded := os.Getenv("RAPID_SEED") != ""
	flag.Visit(func(f *flag.Flag) { seeded = seeded || f.Name == "rapid.seed" })
	if !seeded {
		if err := flag.Set("rapid.seed", "20240501"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

var instances = []string{"i-a", "i-b", "i-c"}

// model is the ECS service side of a property run: one shared-volume
// service (desired count 0 or 1, minimumHealthyPercent 0: the old task is
// told to stop before the new one is placed) and scratch tasks with a
// task-scoped volume.
type model struct {
	h          *harness
	shared     string   // the service's desired-RUNNING task, "" if none
	scratch    []string // desired-RUNNING scratch tasks
	history    []cloudtest.Event
	lostAny    bool
	concurrent bool
	stale      *held // a pass stopped before its step, while the world moves on
}

func newModel(t *rapid.T) *model {
	// Orderings, not deadlines, are what these runs explore: a task waits
	// as long as the random schedule takes (deadlines have tests of their own).
	h := newHarness(t, func(c *reconcile.Config) { c.Timing.WaitDeadline = 24 * time.Hour })
	h.w.BlockedDetachShows(rapid.SampledFrom([]string{"detaching", "busy"}).Draw(t, "blockedDetachShows"))
	for _, id := range instances {
		h.w.AddInstance(id, "us-east-1a")
	}
	return &model{h: h}
}

// releaseStale lets the stale pass, if any, take its step.
func (m *model) releaseStale() {
	if m.stale != nil {
		m.stale.release()
		m.stale = nil
	}
}

func (m *model) place(t *rapid.T, td string) string {
	inst := rapid.SampledFrom(instances).Draw(t, "instance")
	return m.h.w.PlaceTask(td, inst)
}

// deliverFirst delivers event i, remembering it for late redelivery.
func (m *model) deliver(i int, keep bool) {
	ev := m.h.events[i]
	m.history = append(m.history, ev)
	if keep {
		if ev.Kind == "sweep" {
			m.h.sweep()
			return
		}
		m.h.invoke(m.h.trigger(ev))
		return
	}
	m.h.deliverEvent(i)
}

func (m *model) actions() map[string]func(*rapid.T) {
	h := m.h
	acts := map[string]func(*rapid.T){
		"placeShared": func(t *rapid.T) {
			if m.shared != "" {
				t.Skip("service already has its task")
			}
			m.shared = m.place(t, tdShared)
		},
		"handoff": func(t *rapid.T) {
			if m.shared == "" {
				t.Skip("no task to move")
			}
			old := h.w.TaskState(m.shared)
			h.w.StopTask(m.shared, "drain")
			var other []string
			for _, id := range instances {
				if !strings.HasSuffix(old.CI, "/"+strings.TrimPrefix(id, "i-")) {
					other = append(other, id)
				}
			}
			m.shared = h.w.PlaceTask(tdShared, rapid.SampledFrom(other).Draw(t, "to"))
		},
		"stopShared": func(t *rapid.T) {
			if m.shared == "" {
				t.Skip("no task")
			}
			h.w.StopTask(m.shared, "scale in")
			m.shared = ""
		},
		"placeScratch": func(t *rapid.T) {
			if len(m.scratch) >= 2 {
				t.Skip("enough scratch tasks")
			}
			m.scratch = append(m.scratch, m.place(t, tdScratch))
		},
		"stopScratch": func(t *rapid.T) {
			if len(m.scratch) == 0 {
				t.Skip("no scratch task")
			}
			i := rapid.IntRange(0, len(m.scratch)-1).Draw(t, "scratch")
			h.w.StopTask(m.scratch[i], "done")
			m.scratch = append(m.scratch[:i], m.scratch[i+1:]...)
		},
		"deliver": func(t *rapid.T) {
			if len(h.events) == 0 {
				t.Skip("no event")
			}
			m.deliver(rapid.IntRange(0, len(h.events)-1).Draw(t, "event"), false)
		},
		"duplicate": func(t *rapid.T) {
			if len(h.events) == 0 {
				t.Skip("no event")
			}
			m.deliver(rapid.IntRange(0, len(h.events)-1).Draw(t, "event"), true)
		},
		"lose": func(t *rapid.T) {
			if len(h.events) == 0 {
				t.Skip("no event")
			}
			i := rapid.IntRange(0, len(h.events)-1).Draw(t, "event")
			h.events = append(h.events[:i], h.events[i+1:]...)
			m.lostAny = true
		},
		"late": func(t *rapid.T) {
			if len(m.history) == 0 {
				t.Skip("nothing delivered yet")
			}
			ev := m.history[rapid.IntRange(0, len(m.history)-1).Draw(t, "old")]
			if ev.Kind != "sweep" {
				h.invoke(h.trigger(ev))
			}
		},
		"complete": func(t *rapid.T) {
			ops := h.w.Pending()
			if len(ops) == 0 {
				t.Skip("nothing in flight")
			}
			h.w.Advance(time.Duration(rapid.IntRange(0, 5).Draw(t, "seconds")) * time.Second)
			h.w.Complete(ops[rapid.IntRange(0, len(ops)-1).Draw(t, "op")])
		},
		"retry": func(t *rapid.T) {
			if len(h.queue) == 0 {
				t.Skip("no retry queued")
			}
			h.deliverRetry(rapid.IntRange(0, len(h.queue)-1).Draw(t, "retry"))
		},
		// A second pass of a key (a duplicate delivery, the sweep, another
		// function) that decides now and takes its step only later, after
		// any number of other actions: level-triggered passes of one key
		// may always overlap, and must converge whatever the interleaving.
		"stale": func(t *rapid.T) {
			if m.stale != nil {
				t.Skip("a stale pass already waits")
			}
			var tr reconcile.Trigger = reconcile.SweepRequested{Cluster: cluster}
			switch {
			case len(h.queue) > 0 && rapid.Bool().Draw(t, "retry"):
				q := h.queue[rapid.IntRange(0, len(h.queue)-1).Draw(t, "which")]
				tr = reconcile.Retry{Key: q.key, Hint: q.hint}
			case len(h.events) > 0 && rapid.Bool().Draw(t, "event"):
				tr = h.trigger(h.events[rapid.IntRange(0, len(h.events)-1).Draw(t, "which")])
			}
			// Held at the call of a step whose late landing is harmless by
			// design: a detach is refused to a pass older than
			// StaleDecision, and a force detach re-reads the attachment
			// right before (EC2 has no conditional detach, so a detach's
			// own request time is the one window left).
			op := rapid.SampledFrom([]string{"SSM:SendCommand", "EC2:AttachVolume", "EC2:CreateVolume"}).Draw(t, "step")
			hold := h.w.HoldNext(op, "")
			if a := h.invokeHeld(hold, tr); a.stopped() {
				m.stale = a
			} else {
				hold.Release() // not reached: let the next such call through
			}
		},
		"releaseStale": func(t *rapid.T) {
			if m.stale == nil {
				t.Skip("no stale pass")
			}
			m.releaseStale()
		},
		"sweep":   func(*rapid.T) { h.sweep() },
		"await":   func(*rapid.T) { h.w.Advance(time.Second) }, // sorts first: rapid starts from the first action
		"advance": func(t *rapid.T) { h.w.Advance(time.Duration(rapid.IntRange(1, 60).Draw(t, "seconds")) * time.Second) },
		"": func(t *rapid.T) {
			h.w.CompleteOverdue(time.Minute) // agents answer; only the order of answers is random
			h.collect()
			h.noViolations()
		},
	}
	if m.concurrent {
		acts["concurrent"] = func(t *rapid.T) {
			var tr reconcile.Trigger
			switch {
			case len(h.queue) > 0:
				q := h.queue[rapid.IntRange(0, len(h.queue)-1).Draw(t, "retry")]
				tr = reconcile.Retry{Key: q.key, Hint: q.hint}
			case len(h.events) > 0:
				tr = h.trigger(h.events[rapid.IntRange(0, len(h.events)-1).Draw(t, "event")])
			default:
				t.Skip("nothing to deliver twice")
			}
			var wg sync.WaitGroup
			for range 2 {
				wg.Add(1)
				go func() { defer wg.Done(); h.invokeConcurrent(tr) }()
			}
			wg.Wait()
		}
	}
	return acts
}

// drain runs a fair schedule until nothing is left: events, then work in
// flight, then retries in due order, with a sweep every minute of the
// world's clock (the schedule that repairs lost events).
func (m *model) drain(t *rapid.T, sweeps bool) {
	h := m.h
	m.releaseStale()
	lastSweep := h.w.Now()
	quietSweeps := 0
	for step := 0; step < 5000; step++ {
		h.collect()
		h.noViolations()
		if sweeps && h.w.Now().Sub(lastSweep) >= time.Minute {
			lastSweep = h.w.Now()
			h.sweep()
			continue
		}
		switch {
		case len(h.events) > 0:
			m.deliver(0, false)
		case len(h.w.Pending()) > 0:
			h.w.Advance(time.Second)
			h.w.Complete(h.w.Pending()[0])
		case len(h.queue) > 0:
			h.deliverRetry(h.earliestRetry())
		case sweeps && quietSweeps < 2:
			// Quiet: one more sweep finds anything a lost event left behind
			// (a task of a family with no volume yet: once the sweep lists
			// the whole cluster again, Timing.WholeSweep's default 5m).
			quietSweeps++
			h.w.Advance(5 * time.Minute)
			lastSweep = h.w.Now()
			h.sweep()
		default:
			return
		}
	}
	t.Fatalf("did not settle: queue=%v pending=%v events=%v", h.queue, h.w.Pending(), h.events)
}

// checkEnd asserts the end state: every task that should run runs with its
// volume, nothing tether stopped, one volume per key, nothing leaked.
func (m *model) checkEnd(t *rapid.T) {
	h := m.h
	h.noViolations()
	for _, task := range h.w.Tasks() {
		if strings.HasPrefix(task.StoppedReason, "tether:") {
			t.Fatalf("tether stopped %s: %s", task.ARN, task.StoppedReason)
		}
		if task.DesiredStatus == "RUNNING" && task.LastStatus != "RUNNING" {
			t.Fatalf("task %s never started (lastStatus %s)", task.ARN, task.LastStatus)
		}
	}
	vs := h.keyVolumes(volName)
	if len(vs) > 1 {
		t.Fatalf("%d volumes for the shared key", len(vs))
	}
	if m.shared == "" && len(vs) == 1 && (vs[0].Att != nil || vs[0].State != "available") {
		t.Fatalf("shared volume not released after the service stopped: %+v", vs[0])
	}
	if m.shared != "" {
		task := h.w.TaskState(m.shared)
		if len(vs) != 1 || vs[0].Att == nil || !strings.HasSuffix(task.CI, "/"+strings.TrimPrefix(vs[0].Att.Instance, "i-")) {
			t.Fatalf("shared volume not with its task %s: %+v", task.CI, vs)
		}
	}
	live := map[string]bool{}
	for _, s := range m.scratch {
		live["task-"+s[strings.LastIndexByte(s, '/')+1:]+"-scratch"] = true
	}
	for _, v := range h.w.Volumes() {
		if v.Tags["tether:scope"] == "task" && !live[v.Tags["tether:volume"]] {
			t.Fatalf("task-scoped volume of a stopped task left: %+v", v)
		}
	}
	for _, id := range instances {
		in := h.w.InstanceState(id)
		for vid := range in.Mounted {
			if in.State == "running" && !m.mountedByLiveTask(id, vid) {
				t.Fatalf("volume %s still mounted on %s with no live task", vid, id)
			}
		}
	}
	if h.failed != 0 {
		t.Fatalf("%d passes failed", h.failed)
	}
}

func (m *model) mountedByLiveTask(instance, vid string) bool {
	for _, v := range m.h.w.Volumes() {
		if v.ID == vid && v.Att != nil && v.Att.Instance == instance {
			for _, task := range m.h.w.Tasks() {
				if task.LastStatus == "RUNNING" && strings.HasSuffix(task.CI, "/"+strings.TrimPrefix(instance, "i-")) {
					return true
				}
			}
		}
	}
	return false
}

// Every ordering of the handoff's triggers — old task stopped before or
// after the new one is placed, duplicates, lost events repaired by the
// sweep, late events of old task versions, EBS notifications before or
// after, retries interleaved — reaches the same safe end state.
func TestPropertyEveryOrderingConverges(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		m := newModel(rt)
		rt.Repeat(m.actions())
		m.drain(rt, true)
		m.checkEnd(rt)
	})
}

// Two reconcilers working on the same key at once (the same trigger or
// retry delivered twice concurrently) break no rule either.
func TestPropertyConcurrentReconcilersOnOneKey(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		m := newModel(rt)
		m.concurrent = true
		rt.Repeat(m.actions())
		m.drain(rt, true)
		m.checkEnd(rt)
	})
}

// TestPropertyEC2CallsPerHandoff measures EC2 calls of one handoff (the
// old task told to stop, the new one placed on another instance) until the
// new task runs and until everything is quiet. "orderings": any order of
// the handoff's events, completions and retries; "chaos": also duplicate
// and late events and jumps of the clock (which let the 90 s stuck-attach
// rule fire). No event is lost, so no sweep runs (its calls are not the
// handoff's).
func TestPropertyEC2CallsPerHandoff(t *testing.T) {
	for _, c := range []struct {
		name   string
		drop   []string
		budget float64
	}{
		// Measured 7.4 and 9.2 on the strict fake (no attachVolume event on
		// success, no detachVolume event): 2 writes, 1 DescribeInstances
		// (mapped device names), and DescribeVolumes looks at detaches that
		// here end only when the random schedule says so. With events
		// EC2 does not send, the old core measured 5.2-5.7 and 8. Since
		// every detach reads its attachment again right before
		// DetachVolume (a stale pass once detached a newer attachment):
		// 8.4 and 10.2. Since a pass that only task events asked for
		// reads the key's volume before ECS (a detach in flight then
		// ends it without reading the key's tasks: about three ECS
		// calls), a new task's event that comes while the old task still
		// runs reads it too: 8.6 and 10.6. Since a retry of a wait (no
		// step, or "held") reads the volume before ECS to give way to a
		// handoff that happened meanwhile, those that come here while the
		// old task still holds the volume read it too: 8.9 and 11.1 (the
		// ECS calls, logged, stay 11.0 and 18.0 here; in the 200 run such
		// retries gave way 54 times).
		{"orderings", []string{"duplicate", "late", "advance", "stale", "releaseStale"}, 9.0},
		{"chaos", nil, 11.2},
	} {
		t.Run(c.name, func(t *testing.T) { measureHandoffs(t, c.drop, c.budget) })
	}
}

func measureHandoffs(t *testing.T, drop []string, budget float64) {
	var toRunning, toQuiet []int
	ecsCalls := 0
	byOp := map[string]int{}
	byTrigger := map[string]int{}
	rapid.Check(t, func(rt *rapid.T) {
		m := newModel(rt)
		h := m.h
		m.shared = h.w.PlaceTask(tdShared, "i-a")
		m.drain(rt, false)
		before := h.w.EC2Calls()
		beforeOps := h.w.Calls()
		h.cost = map[string]int{}
		defer func() {
			for k, n := range h.cost {
				byTrigger[k] += n
			}
		}()
		h.w.StopTask(m.shared, "drain")
		m.shared = h.w.PlaceTask(tdShared, "i-b")
		acts := m.actions()
		for _, k := range append([]string{"placeShared", "handoff", "stopShared", "placeScratch", "stopScratch", "lose", "sweep"}, drop...) {
			delete(acts, k)
		}
		running := -1
		acts[""] = func(t *rapid.T) {
			h.w.CompleteOverdue(time.Minute)
			h.collect()
			h.noViolations()
			if running < 0 && h.w.TaskState(m.shared).LastStatus == "RUNNING" {
				running = h.w.EC2Calls() - before
			}
		}
		rt.Repeat(acts)
		m.drain(rt, false)
		if running < 0 {
			running = h.w.EC2Calls() - before
		}
		m.checkEnd(rt)
		toRunning = append(toRunning, running)
		toQuiet = append(toQuiet, h.w.EC2Calls()-before)
		for op, n := range h.w.Calls() {
			if strings.HasPrefix(op, "EC2:") {
				byOp[strings.TrimPrefix(op, "EC2:")] += n - beforeOps[op]
			}
			if strings.HasPrefix(op, "ECS:") {
				ecsCalls += n - beforeOps[op]
			}
		}
	})
	mean := func(xs []int) float64 {
		s := 0
		for _, x := range xs {
			s += x
		}
		return float64(s) / float64(len(xs))
	}
	sort.Ints(toRunning)
	sort.Ints(toQuiet)
	t.Logf("EC2 calls per handoff over %d runs: until the new task runs mean %.2f (min %d, median %d, max %d); until quiet mean %.2f (max %d); by operation %v",
		len(toRunning), mean(toRunning), toRunning[0], toRunning[len(toRunning)/2], toRunning[len(toRunning)-1], mean(toQuiet), toQuiet[len(toQuiet)-1], byOp)
	t.Logf("by trigger: %v; ECS calls per handoff (not budgeted here) %.2f", byTrigger, float64(ecsCalls)/float64(len(toQuiet)))
	if m := mean(toQuiet); m > budget {
		t.Errorf("mean EC2 calls per handoff %.2f, budget %.1f", m, budget)
	}
}
