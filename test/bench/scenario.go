package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/world"
)

// Profile is the latency profile every handoff run uses.
const Profile = "realistic"

// RunResult is one handoff run: its handoffs, their timelines and the
// EC2 and SSM calls tether made meanwhile.
type RunResult struct {
	Name      string
	Hosts     world.HostKind
	Handoffs  []Handoff
	Timelines []Timeline
	EC2Calls  int            // every EC2 call in the handoff windows, throttled ones included
	Calls     map[string]int // ec2:Action -> calls in the windows
	Throttled map[string]int // ec2:Action, ssm:Action -> refused by a rate limit in the windows
	Findings  []Finding      // the functions' warnings and errors since the first drain
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

// ThrottledTotal is every throttled call in the windows.
func (r RunResult) ThrottledTotal() int {
	n := 0
	for _, v := range r.Throttled {
		n += v
	}
	return n
}

// Env is what a run needs from its caller.
type Env struct {
	Dir         string // logs of each world go here
	Seed        uint64
	AgentBinary string // tether-agent for real hosts (built once)
	Bootstraps  string // native bootstraps (built once)
	Log         *slog.Logger
}

// startWorld starts a realistic world with tether deployed from
// template.yaml (bootstraps under the emulator), its log in dir/name.log
// and its journal.
func (e Env) startWorld(ctx context.Context, name string, o world.Options) (*world.World, *Journal, func() error, error) {
	f, err := os.Create(filepath.Join(e.Dir, name+"-world.log"))
	if err != nil {
		return nil, nil, nil, err
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
		return nil, nil, nil, err
	}
	closeAll := func() error {
		for id, out := range w.FunctionOutput() {
			if werr := os.WriteFile(filepath.Join(e.Dir, name+"-"+id+".log"), []byte(out), 0o644); werr != nil {
				e.Log.Warn("saving function output", "function", id, "err", werr)
			}
		}
		err := w.Close()
		f.Close()
		return err
	}
	return w, j, closeAll, nil
}

// counts is a snapshot of the world's counters.
func diffCounts(before, after world.Counts) (ec2 int, calls, throttled map[string]int) {
	calls, throttled = map[string]int{}, map[string]int{}
	for k, v := range after.Calls {
		if strings.HasPrefix(k, "ec2:") && v > before.Calls[k] {
			calls[k] = v - before.Calls[k]
			ec2 += v - before.Calls[k]
		}
	}
	for k, v := range after.Throttled {
		if v > before.Throttled[k] {
			throttled[k] = v - before.Throttled[k]
		}
	}
	return ec2, calls, throttled
}

func addTo(dst, src map[string]int) {
	for k, v := range src {
		dst[k] += v
	}
}

// quiesce waits, at most bound, until the bus has delivered every event
// and tether's queues hold no message (none visible, in flight or
// delayed): the calls of a handoff's trailing retries are then counted.
// Dead-letter queues are left out. It says whether it got there.
func quiesce(ctx context.Context, w *world.World, bound time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	if w.Bus().Settle(ctx) != nil {
		return false
	}
	for id, q := range w.Deployment().Queues {
		if strings.Contains(id, "DeadLetter") {
			continue
		}
		if q.WaitEmpty(ctx) != nil {
			return false
		}
	}
	return true
}

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

// SingleResult is the single-handoff run and what was measured with it.
type SingleResult struct {
	RunResult
	ContainerStarts []time.Duration            // real container starts on the run's hosts
	Concurrent      []time.Duration            // k starts at once on one host
	ColdInits       map[string][]time.Duration // by function
}

// RunSingle moves one service's volume n times, one handoff at a time,
// each time to a real instance launched for it (one that never held the
// volume, so the mount goes through the reconciler's SSM command: the
// general case), on the realistic profile. It measures real container
// starts on each new host after its handoff, k concurrent starts on one
// host (to judge real hosts for the 200 run) and, at the end, the
// functions' cold init.
func RunSingle(ctx context.Context, e Env, n, k int) (SingleResult, error) {
	res := SingleResult{RunResult: RunResult{Name: "single", Hosts: world.RealHosts, Calls: map[string]int{}, Throttled: map[string]int{}}}
	w, j, closeWorld, err := e.startWorld(ctx, "single", world.Options{Instances: 1, Hosts: world.RealHosts})
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := closeWorld(); cerr != nil {
			e.Log.Warn("closing the single-handoff world", "err", cerr)
		}
	}()
	fleet := NewFleet(w, e.Log)
	svcs, err := fleet.CreateServices(ctx, "single", 1, 1, 3*time.Minute)
	if err != nil {
		return res, err
	}
	s := svcs[0]
	e.Log.Info("service running", "service", s.Name, "volumeId", s.VolumeID, "instance", s.Instance)
	for i := range n {
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
		if err := w.Bus().Settle(ctx); err != nil {
			return res, err
		}
		token := newToken()
		if err := fleet.WriteMark(ctx, s, token); err != nil {
			return res, err
		}
		from := s.Instance
		before := w.Counts()
		hctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
		hs, err := fleet.Drain(hctx, svcs, from)
		cancel()
		if err != nil {
			return res, err
		}
		h := &hs[0]
		if h.Failure == "" {
			if verr := fleet.VerifyMark(ctx, *h, token); verr != nil {
				h.Failure = "data: " + verr.Error()
			} else {
				h.Verified = true
			}
		}
		res.Handoffs = append(res.Handoffs, *h)
		e.Log.Info("handoff", "n", i+1, "from", from, "to", h.NewInstance, "took", h.Duration().Round(time.Millisecond), "ok", h.OK(), "failure", h.Failure)
		if !quiesce(ctx, w, time.Minute) {
			e.Log.Warn("tether's queues still busy a minute after the handoff; counting calls so far")
		}
		ec2, calls, throttled := diffCounts(before, w.Counts())
		res.EC2Calls += ec2
		addTo(res.Calls, calls)
		addTo(res.Throttled, throttled)
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
	res.Timelines = timelines(w, j, res.Handoffs)
	if len(res.Handoffs) > 0 {
		res.Findings = FunctionFindings(w.FunctionOutput(), res.Handoffs[0].Drained)
	}

	// Many containers starting at once on one real host, to judge whether
	// real hosts would distort the 200-handoff run.
	if k > 0 {
		host, _ := w.RealHost(s.Instance)
		if res.Concurrent, err = ConcurrentContainerStarts(ctx, host, k); err != nil {
			return res, err
		}
	}
	if res.ColdInits, err = ColdInits(ctx, w.Options().Bootstraps, w.Deployment().Functions, w.Options().Region, 3, e.Log); err != nil {
		return res, err
	}
	return res, nil
}

// setupBatch is how many services the many-handoffs run starts at once
// before the drain: the steady state it moves is set up gently (the
// reconciler's device-name choice does not cope with 20 concurrent
// attaches to one instance), the drain itself is not.
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
// spread over them, adds as many empty instances, lets EC2's and SSM's
// token buckets fill again (an account at rest), then drains the first
// half at once: every service's volume moves under the documented
// throttling.
func RunConcurrent(ctx context.Context, e Env, c ConcurrentConfig) (RunResult, error) {
	res := RunResult{Name: "concurrent", Hosts: c.Hosts, Calls: map[string]int{}, Throttled: map[string]int{}}
	half := c.Instances / 2
	w, j, closeWorld, err := e.startWorld(ctx, "concurrent", world.Options{Instances: half, Hosts: c.Hosts})
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := closeWorld(); cerr != nil {
			e.Log.Warn("closing the concurrent world", "err", cerr)
		}
	}()
	fleet := NewFleet(w, e.Log)
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
	for _, err := range errs {
		if err != nil {
			return res, err
		}
	}
	if err := w.Bus().Settle(ctx); err != nil {
		return res, err
	}
	// Full buckets: the fullest one (50 tokens at 5/s) needs 10 s.
	if err := sleep(ctx, 12*time.Second); err != nil {
		return res, err
	}
	tokens := map[string]string{}
	for _, s := range svcs {
		tokens[s.Name] = newToken()
		if err := fleet.WriteMark(ctx, s, tokens[s.Name]); err != nil {
			return res, err
		}
	}
	before := w.Counts()
	hctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	hs, err := fleet.Drain(hctx, svcs, holders...)
	cancel()
	if err != nil {
		return res, err
	}
	if !quiesce(ctx, w, 2*time.Minute) {
		e.Log.Warn("tether's queues still busy two minutes after the handoffs; counting calls so far")
	}
	after := w.Counts()
	res.EC2Calls, res.Calls, res.Throttled = diffCounts(before, after)
	for i := range hs {
		h := &hs[i]
		if c.Hosts == world.FakeHosts {
			h.Modeled = c.Modeled
		}
		if h.Failure != "" {
			continue
		}
		if verr := fleet.VerifyMark(ctx, *h, tokens[h.Service]); verr != nil {
			h.Failure = "data: " + verr.Error()
		} else {
			h.Verified = true
		}
	}
	res.Handoffs = hs
	res.Timelines = timelines(w, j, hs)
	if len(hs) > 0 {
		res.Findings = FunctionFindings(w.FunctionOutput(), hs[0].Drained)
	}
	return res, nil
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
