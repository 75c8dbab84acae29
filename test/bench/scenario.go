package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/world"
)

// Profile is the latency profile every handoff run uses.
const Profile = "realistic"

// RunResult is one handoff run: its handoffs, their timelines, the calls
// tether made meanwhile and what its world saw over its life.
type RunResult struct {
	Name         string
	Hosts        world.HostKind
	DetachEvents bool // the world sent EBS detachVolume events
	Handoffs     []Handoff
	Timelines    []Timeline
	// Calls are tether's calls in the handoff windows (from the drain
	// until tether's queues are empty again): the world's journal less the
	// bench's own calls.
	Calls   Calls
	Windows []Span
	// Cut counts windows closed at their bound with tether still busy:
	// its later calls are not counted, so the figures are lower bounds.
	Cut int
	// EC2ByFunction is each function's own EC2Requests metric in the
	// windows; Sweeps the sweep invocations that ended in them.
	EC2ByFunction map[string]float64
	Sweeps        int
	Findings      []Finding // the functions' warnings and errors since the first drain
	Safety        Safety    // the run's world over its whole life
}

// Durations are the handoffs' times, failed ones left out.
func (r RunResult) Durations() []time.Duration {
	var out []time.Duration
	for _, h := range r.Handoffs {
		if h.OK() {
			out = append(out, h.Duration())
		}
	}
	return out
}

// Median is the median handoff time with every failed handoff counted as
// never finishing (slower than any that did); false when half or more
// failed, so the median is not a time.
func (r RunResult) Median() (time.Duration, bool) {
	ds := r.Durations()
	failed := len(r.Handoffs) - len(ds)
	if len(ds) == 0 || failed*2 >= len(r.Handoffs) {
		return 0, false
	}
	never := slices.Max(ds) + time.Hour
	for range failed {
		ds = append(ds, never)
	}
	return Median(ds), true
}

// Failed counts handoffs that did not finish with their data.
func (r RunResult) Failed() int {
	n := 0
	for _, h := range r.Handoffs {
		if !h.OK() {
			n++
		}
	}
	return n
}

// PerHandoff is n over the run's handoffs (0 without any).
func (r RunResult) PerHandoff(n int) float64 {
	if len(r.Handoffs) == 0 {
		return 0
	}
	return float64(n) / float64(len(r.Handoffs))
}

// Env is what a run needs from its caller.
type Env struct {
	Dir         string // logs of each world go here
	Seed        uint64
	AgentBinary string // tether-agent for real hosts (built once)
	Bootstraps  string // native bootstraps (built once)
	Log         *slog.Logger
}

// benchWorld is a running world with the bench's journal of its log and
// the bench's own clients.
type benchWorld struct {
	name  string
	W     *world.World
	J     *Journal
	Fleet *Fleet
	env   Env
	logf  *os.File
}

// startWorld starts a realistic world with tether deployed from
// template.yaml (bootstraps under the emulator), its log in
// dir/name-world.log and its journal.
func (e Env) startWorld(ctx context.Context, name string, o world.Options) (*benchWorld, error) {
	f, err := os.Create(filepath.Join(e.Dir, name+"-world.log"))
	if err != nil {
		return nil, err
	}
	j := NewJournal()
	o.Profile, o.Seed, o.Functions = Profile, e.Seed, world.EmulatedFunctions
	o.AgentBinary, o.Bootstraps = e.AgentBinary, e.Bootstraps
	// As many execution environments as the template reserves: Lambda
	// would scale to them.
	o.Environments = 16
	o.Dir = e.Dir
	o.Logger = slog.New(slog.NewMultiHandler(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}), j.Handler()))
	w, err := world.Start(ctx, o)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &benchWorld{name: name, W: w, J: j, Fleet: NewFleet(w, e.Log), env: e, logf: f}, nil
}

// close saves the functions' output next to the world's log and tears the
// world down.
func (bw *benchWorld) close() {
	for id, out := range bw.W.FunctionOutput() {
		if err := os.WriteFile(filepath.Join(bw.env.Dir, bw.name+"-"+id+".log"), []byte(out), 0o644); err != nil {
			bw.env.Log.Warn("saving function output", "function", id, "err", err)
		}
	}
	if err := bw.W.Close(); err != nil {
		bw.env.Log.Warn("closing a world", "world", bw.name, "err", err)
	}
	bw.logf.Close()
}

// quiesce waits, at most bound, until the bus has delivered every event
// and tether's queues hold no message (none visible, in flight or
// delayed), all at once: the calls of a handoff's trailing retries are
// then counted, and setup's are not. Dead-letter queues are left out. It
// says whether it got there.
func (bw *benchWorld) quiesce(ctx context.Context, bound time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for {
		if bw.W.Bus().Settle(ctx) != nil {
			return false
		}
		idle := true
		for id, q := range bw.W.Deployment().Queues {
			if strings.Contains(id, "DeadLetter") {
				continue
			}
			if st := q.Stats(); st.Visible+st.InFlight+st.Delayed > 0 {
				idle = false
				if q.WaitEmpty(ctx) != nil {
					return false
				}
			}
		}
		// A queue found empty may have been fed while another was
		// waited for: only a pass that waited for nothing is quiet.
		if idle {
			return true
		}
	}
}

// busyQueues says which of tether's queues hold messages, and how (for
// the warning of a window cut at its bound).
func (bw *benchWorld) busyQueues() []string {
	var out []string
	for id, q := range bw.W.Deployment().Queues {
		if st := q.Stats(); st.Visible+st.InFlight+st.Delayed > 0 {
			out = append(out, fmt.Sprintf("%s: %d visible, %d in flight, %d delayed", id, st.Visible, st.InFlight, st.Delayed))
		}
	}
	sort.Strings(out)
	return out
}

// window is one counted stretch: tether's calls from open to close.
type window struct {
	w     Window
	start time.Time
}

func (bw *benchWorld) openWindow() window {
	return window{w: OpenWindow(bw.W.Router(), bw.Fleet.Meter), start: time.Now()}
}

// closeWindow waits for tether to go quiet (at most bound), then adds the
// window's calls to res.
func (bw *benchWorld) closeWindow(ctx context.Context, win window, bound time.Duration, res *RunResult) error {
	if !bw.quiesce(ctx, bound) {
		bw.env.Log.Warn("tether's queues still busy after the handoffs; counting the calls so far", "world", bw.name, "bound", bound, "busy", bw.busyQueues())
		res.Cut++
	}
	calls, err := win.w.Close()
	res.Calls.Add(calls)
	res.Windows = append(res.Windows, Span{From: win.start, To: time.Now()})
	return err
}

// finish fills what a run reads from its world at the end: timelines,
// the functions' metrics, findings and sweeps in the windows.
func (bw *benchWorld) finish(res *RunResult) {
	res.Timelines = timelines(bw.W, bw.J, res.Handoffs)
	lines := ParseFunctionOutput(bw.W.FunctionOutput())
	res.EC2ByFunction = MetricSums(lines, metricEC2Requests, res.Windows)
	res.Sweeps = Invocations(lines, sweepFunction, res.Windows)
	if len(res.Handoffs) > 0 {
		res.Findings = FunctionFindings(lines, res.Handoffs[0].Drained)
	}
}

// safety reads the world's safety figures over its life so far.
func (bw *benchWorld) safety() Safety {
	return worldSafety(bw.W, bw.J, ParseFunctionOutput(bw.W.FunctionOutput()))
}

// sweepsEnded counts the sweep invocations that have ended so far.
func (bw *benchWorld) sweepsEnded() int {
	return Invocations(ParseFunctionOutput(bw.W.FunctionOutput()), sweepFunction, nil)
}

// metricEC2Requests is tether's per-pass count of its EC2 calls (EMF).
const metricEC2Requests = "EC2Requests"

// sweepFunction is the template's scheduled function.
const sweepFunction = "SweepFunction"

func newToken() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// timelines reads every handoff's marks from the world's journal.
func timelines(w *world.World, j *Journal, hs []Handoff) []Timeline {
	cmdVolume := map[string]string{}
	for _, inv := range w.SSM().Invocations() {
		if v := inv.Parameters["VolumeId"]; len(v) > 0 {
			cmdVolume[inv.CommandID] = v[0]
		}
	}
	docs := Documents{Mount: w.Deployment().Documents["MountDocument"], Unmount: w.Deployment().Documents["UnmountDocument"]}
	var since time.Time
	for _, h := range hs {
		if since.IsZero() || h.Drained.Before(since) {
			since = h.Drained
		}
	}
	entries := j.Entries(since)
	out := make([]Timeline, len(hs))
	for i, h := range hs {
		out[i] = BuildTimeline(h, entries, cmdVolume, docs)
	}
	return out
}

// SingleConfig describes a run of single handoffs.
type SingleConfig struct {
	Name     string
	Handoffs int
	// DetachEvents: the world sends EBS detachVolume events.
	DetachEvents bool
	// ConcurrentStarts: after the handoffs, time this many container
	// starts at once on one host (0: none).
	ConcurrentStarts int
	// ColdInits: measure the functions' cold init after the handoffs.
	ColdInits bool
}

// SingleResult is the single-handoff run and what was measured with it.
type SingleResult struct {
	RunResult
	ContainerStarts []time.Duration            // real container starts on the run's hosts
	Concurrent      []time.Duration            // k starts at once on one host
	ColdInits       map[string][]time.Duration // by function
}

// RunSingle moves one service's volume c.Handoffs times, one handoff at a
// time, each time to a real instance launched for it (one that never held
// the volume, so the mount goes through the reconciler's SSM command: the
// general case), on the realistic profile. It measures real container
// starts on each new host after its handoff and, as c asks, concurrent
// starts on one host (to judge real hosts for the 200 run) and the
// functions' cold init.
func RunSingle(ctx context.Context, e Env, c SingleConfig) (res SingleResult, err error) {
	res.RunResult = RunResult{Name: c.Name, Hosts: world.RealHosts, DetachEvents: c.DetachEvents, Calls: NewCalls()}
	bw, err := e.startWorld(ctx, c.Name, world.Options{Instances: 1, Hosts: world.RealHosts, DetachEvents: c.DetachEvents})
	if err != nil {
		return res, err
	}
	defer bw.close()
	defer func() { bw.finish(&res.RunResult); res.Safety = bw.safety() }()
	w, fleet := bw.W, bw.Fleet
	svcs, err := fleet.CreateServices(ctx, c.Name, 1, 1, 3*time.Minute)
	if err != nil {
		return res, err
	}
	s := svcs[0]
	e.Log.Info("service running", "run", c.Name, "service", s.Name, "volumeId", s.VolumeID, "instance", s.Instance)
	for i := range c.Handoffs {
		// The next host: launched, its container path warmed once (a host
		// in service has started containers before), nothing in flight.
		in, err := w.LaunchInstance(ctx, world.LaunchOptions{})
		if err != nil {
			return res, err
		}
		host, _ := w.RealHost(in.ID)
		if _, err := ContainerStarts(ctx, host, 1); err != nil {
			return res, err
		}
		token := newToken()
		if err := fleet.WriteMark(ctx, s, token); err != nil {
			return res, err
		}
		if !bw.quiesce(ctx, time.Minute) {
			e.Log.Warn("tether's queues still busy a minute before the handoff", "run", c.Name)
		}
		from := s.Instance
		win := bw.openWindow()
		hctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
		hs, err := fleet.Drain(hctx, svcs, from)
		cancel()
		if err != nil {
			return res, err
		}
		if err := bw.closeWindow(ctx, win, time.Minute, &res.RunResult); err != nil {
			return res, err
		}
		h := &hs[0]
		fleet.Verify(ctx, h, token)
		res.Handoffs = append(res.Handoffs, *h)
		e.Log.Info("handoff", "run", c.Name, "n", i+1, "from", from, "to", h.NewInstance, "took", h.Duration().Round(time.Millisecond), "ok", h.OK(), "failure", h.Failure)
		if !h.OK() {
			break
		}
		// The container start the floor counts, on the host that just
		// took the task, in the same run.
		starts, err := ContainerStarts(ctx, host, 3)
		if err != nil {
			return res, err
		}
		res.ContainerStarts = append(res.ContainerStarts, starts...)
	}

	// Many containers starting at once on one real host, to judge whether
	// real hosts would distort the 200-handoff run.
	if c.ConcurrentStarts > 0 {
		host, _ := w.RealHost(s.Instance)
		if res.Concurrent, err = ConcurrentContainerStarts(ctx, host, c.ConcurrentStarts); err != nil {
			return res, err
		}
	}
	if c.ColdInits {
		if res.ColdInits, err = ColdInits(ctx, w.Options().Bootstraps, w.Deployment().Functions, w.Options().Region, 3, e.Log); err != nil {
			return res, err
		}
	}
	return res, nil
}

// setupBatch is how many services the many-handoffs run starts at once
// before the drain: the steady state it moves is set up gently, the drain
// itself is not.
const setupBatch = 20

// ConcurrentConfig describes the many-handoffs run.
type ConcurrentConfig struct {
	Handoffs  int            // services moved at once (200)
	Instances int            // instances in all (20): half hold the tasks, half take them
	Hosts     world.HostKind // real or fake
	// Modeled is added to every handoff on fake hosts: the real container
	// start measured in the single run.
	Modeled time.Duration
}

// RunConcurrent starts c.Instances/2 instances with c.Handoffs services
// spread over them, adds as many empty instances, lets the request-rate
// buckets fill again (an account at rest), then drains the first half at
// once: every service's volume moves under the documented throttling.
func RunConcurrent(ctx context.Context, e Env, c ConcurrentConfig) (res RunResult, err error) {
	res = RunResult{Name: "concurrent", Hosts: c.Hosts, Calls: NewCalls()}
	half := c.Instances / 2
	bw, err := e.startWorld(ctx, "concurrent", world.Options{Instances: half, Hosts: c.Hosts})
	if err != nil {
		return res, err
	}
	defer bw.close()
	defer func() { bw.finish(&res); res.Safety = bw.safety() }()
	w, fleet := bw.W, bw.Fleet
	svcs, err := fleet.CreateServices(ctx, "fleet", c.Handoffs, setupBatch, 4*time.Minute)
	if err != nil {
		return res, err
	}
	var holders []string
	for _, in := range w.Instances() {
		holders = append(holders, in.ID)
	}
	var wg sync.WaitGroup
	errs := make([]error, c.Instances-half)
	for i := range errs {
		wg.Go(func() { _, errs[i] = w.LaunchInstance(ctx, world.LaunchOptions{}) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	tokens := map[string]string{}
	for _, s := range svcs {
		tokens[s.Name] = newToken()
		if err := fleet.WriteMark(ctx, s, tokens[s.Name]); err != nil {
			return res, err
		}
	}
	if !bw.quiesce(ctx, 2*time.Minute) {
		e.Log.Warn("tether's queues still busy two minutes after the setup", "run", res.Name)
	}
	// Full buckets: the slowest to refill (EC2's mutating actions and
	// SendCommand, 50 at 5/s) need 10 s.
	if err := sleep(ctx, fullBuckets()); err != nil {
		return res, err
	}
	win := bw.openWindow()
	hctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	hs, err := fleet.Drain(hctx, svcs, holders...)
	cancel()
	if err != nil {
		return res, err
	}
	// 200 keys' trailing retries (throttled reads back off) take a while.
	if err := bw.closeWindow(ctx, win, 4*time.Minute, &res); err != nil {
		return res, err
	}
	for i := range hs {
		h := &hs[i]
		if c.Hosts == world.FakeHosts {
			h.Modeled = c.Modeled
		}
		fleet.Verify(ctx, h, tokens[h.Service])
	}
	res.Handoffs = hs
	return res, nil
}

// fullBuckets is how long the handoffs' request-rate buckets (EC2's
// attach and detach, SSM's SendCommand) take to fill from empty, plus a
// margin.
func fullBuckets() time.Duration {
	l := DefaultLimits()
	var longest time.Duration
	for _, b := range []struct{ size, refill float64 }{{l.Detach.Size, l.Detach.Refill}, {l.Attach.Size, l.Attach.Refill}, {l.SendCommand.Size, l.SendCommand.Refill}} {
		if b.refill > 0 {
			longest = max(longest, time.Duration(b.size/b.refill*float64(time.Second)))
		}
	}
	return longest + 2*time.Second
}

// ScalingConfig describes the ECS scaling check: single handoffs of one
// service in a cluster that also runs unrelated tasks, first Unrelated[0]
// of them, then more, in one world.
type ScalingConfig struct {
	Handoffs  int   // per cluster size
	Unrelated []int // unrelated running tasks, ascending (10, 500)
}

// ScalingResult is one run per cluster size, and what one sweep at rest
// (no handoff in flight) called at each size.
type ScalingResult struct {
	Runs       []RunResult
	IdleSweeps []Calls
	Safety     Safety
}

// Bystanders are the scaling world's hosts without tether, where the
// unrelated tasks run (ECS places no tether task there).
const Bystanders = 3

// RunScaling checks that a handoff's ECS calls do not grow with the
// cluster: on fake hosts (the calls, not the times, are measured), one
// service's volume moves between two tether hosts, one handoff at a time,
// while bystander hosts run unrelated tasks; then more unrelated tasks
// start and the same handoffs are measured again.
func RunScaling(ctx context.Context, e Env, c ScalingConfig) (res ScalingResult, err error) {
	bw, err := e.startWorld(ctx, "scaling", world.Options{Instances: 2, Hosts: world.FakeHosts})
	if err != nil {
		return res, err
	}
	defer bw.close()
	defer func() {
		for i := range res.Runs {
			bw.finish(&res.Runs[i])
		}
		res.Safety = bw.safety()
	}()
	w, fleet := bw.W, bw.Fleet
	for range Bystanders {
		if _, err := w.LaunchInstance(ctx, world.LaunchOptions{NoPlugin: true}); err != nil {
			return res, err
		}
	}
	svcs, err := fleet.CreateServices(ctx, "scale", 1, 1, 3*time.Minute)
	if err != nil {
		return res, err
	}
	s := svcs[0]
	running := 0
	for _, n := range c.Unrelated {
		if err := fleet.RunUnrelated(ctx, n-running, n, 4*time.Minute); err != nil {
			return res, err
		}
		running = n
		run := RunResult{Name: fmt.Sprintf("unrelated-%d", n), Hosts: world.FakeHosts, Calls: NewCalls()}
		idle, err := bw.idleSweep(ctx)
		if err != nil {
			return res, err
		}
		res.IdleSweeps = append(res.IdleSweeps, idle)
		for i := range c.Handoffs {
			if !bw.quiesce(ctx, time.Minute) {
				e.Log.Warn("tether's queues still busy a minute before the handoff", "run", run.Name)
			}
			from := s.Instance
			win := bw.openWindow()
			hctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
			hs, err := fleet.Drain(hctx, svcs, from)
			cancel()
			if err != nil {
				return res, err
			}
			if err := bw.closeWindow(ctx, win, time.Minute, &run); err != nil {
				return res, err
			}
			h := &hs[0]
			fleet.Verify(ctx, h, "")
			run.Handoffs = append(run.Handoffs, *h)
			e.Log.Info("handoff", "run", run.Name, "n", i+1, "from", from, "to", h.NewInstance, "took", h.Duration().Round(time.Millisecond), "ok", h.OK(), "failure", h.Failure)
			if !h.OK() {
				break
			}
			// The drained host takes the next handoff (outside the window).
			if err := fleet.SetState(ctx, "ACTIVE", from); err != nil {
				return res, err
			}
		}
		res.Runs = append(res.Runs, run)
	}
	return res, nil
}

// idleSweep counts tether's calls over one sweep with nothing in flight:
// from a quiet moment until the next sweep invocation has ended and
// tether is quiet again.
func (bw *benchWorld) idleSweep(ctx context.Context) (Calls, error) {
	if !bw.quiesce(ctx, time.Minute) {
		bw.env.Log.Warn("tether's queues still busy before the idle sweep", "world", bw.name)
	}
	win := bw.openWindow()
	before := bw.sweepsEnded()
	// The schedule fires every minute (template.yaml); wait a little more.
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for bw.sweepsEnded() == before {
		if err := sleep(wctx, time.Second); err != nil {
			return Calls{}, fmt.Errorf("bench: no sweep ended within 90 s: %w", err)
		}
	}
	var run RunResult
	run.Calls = NewCalls()
	err := bw.closeWindow(ctx, win, time.Minute, &run)
	return run.Calls, err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ProfileLatency is the runs' latency profile.
func ProfileLatency() latency.Profile { return latency.Realistic() }
