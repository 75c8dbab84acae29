// Package chaos runs tether against a seeded storm: a local AWS world
// (test/world/world) with fake hosts in several AZs and tether's functions
// deployed from template.yaml, many services with tether volumes, and a
// seeded schedule of drains, task stops, scale-downs, service deletions,
// instance deaths and agent restarts, while the world duplicates,
// reorders, delays and drops events and fails or throttles EC2, SSM and ECS
// calls. A watcher checks the invariants on every change it can observe
// (see watch.go); the run ends with the system settled and checked again.
//
// A handoff is a shared volume's attachment moving from one instance to
// another with its data verified by the next task: generation k of the
// volume's history is written by a task on another instance than
// generation k-1's, on top of the verified history. Only completed
// handoffs count.
package chaos

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/tether-ecs/tether/functions/boot"
	"github.com/tether-ecs/tether/test/world/ec2sim"
	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/samlocal"
	"github.com/tether-ecs/tether/test/world/world"
)

// scaledDeadlines runs tether's functions in this process (boot.Handler,
// the mains' wiring) with the deadlines after which tether stops a
// waiting task scaled like the plugin's Mount wait: tether's defaults
// (75 s for a live host, 90 s for a volume a running task holds) are set
// against the real plugin's 90 s, and a fake host's wait is PluginWait,
// so without this the plugin's less precise reason would always come
// first. They are the functions' own settings (TETHER_WAIT_DEADLINE,
// TETHER_CONFLICT_DEADLINE).
func scaledDeadlines(pluginWait time.Duration) samlocal.HandlerFunc {
	scale := func(d time.Duration) string {
		return (time.Duration(float64(d) * float64(pluginWait) / float64(90*time.Second))).Round(time.Millisecond).String()
	}
	set := map[string]string{"TETHER_WAIT_DEADLINE": scale(75 * time.Second), "TETHER_CONFLICT_DEADLINE": scale(90 * time.Second)}
	return func(ctx context.Context, pkg string, getenv func(string) string, awsCfg aws.Config, out io.Writer) (any, error) {
		return boot.Handler(ctx, pkg, func(k string) string {
			if v, ok := set[k]; ok && getenv(k) == "" {
				return v
			}
			return getenv(k)
		}, awsCfg, out)
	}
}

// run is one chaos run in progress.
type run struct {
	cfg     Config
	w       *world.World
	cluster string
	watch   *watcher
	sched   *schedule
	log     io.Writer
	// releases are EC2's releases of terminated instances' volumes, from
	// the world's log.
	releases *releases
}

// Run performs one chaos run and reports it. An error means the run could
// not be carried out (the world did not start, services could not be
// created); broken invariants are in Report.Violations.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	logger := slog.New(slog.DiscardHandler)
	if cfg.WorldLog != nil {
		logger = slog.New(slog.NewJSONHandler(cfg.WorldLog, nil))
	}
	began := time.Now()
	releases := &releases{}
	opts := world.Options{
		Instances: cfg.Instances, AZs: cfg.AZs, Profile: cfg.Profile, TimeScale: timeScale, Seed: cfg.Seed,
		Functions: cfg.Functions, InProcess: scaledDeadlines(cfg.PluginWait), Dir: cfg.Dir, PluginWait: cfg.PluginWait,
		Logger:     slog.New(slog.NewMultiHandler(logger.Handler(), releases)),
		EC2Latency: map[latency.Op]latency.Dist{ec2sim.OpStopInstance: cfg.StopTime},
	}
	if cfg.hostsGoAway() {
		hostsWorld(&opts, cfg)
	}
	w, err := world.Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	defer w.Close()
	members := ""
	if cfg.hostsGoAway() {
		members = fmt.Sprintf(" and %d Spot members of %s with tether's termination hook", cfg.AZs, chaosGroup)
	}
	fmt.Fprintf(progress, "chaos: seed %d, world up in %s (%d instances%s in %d AZs, functions %s)\n",
		cfg.Seed, time.Since(began).Round(time.Millisecond), cfg.Instances, members, cfg.AZs, cfg.Functions)

	r := &run{cfg: cfg, w: w, cluster: w.Options().Cluster, log: progress, releases: releases}
	rep, err := r.do(ctx)
	if cfg.FunctionLog != nil { // also after an interrupted run: what the functions did is the evidence
		out := w.FunctionOutput()
		for _, id := range slices.Sorted(maps.Keys(out)) {
			fmt.Fprintf(cfg.FunctionLog, "=== %s\n%s\n", id, out[id])
		}
	}
	if rep != nil {
		rep.Elapsed = time.Since(began)
	}
	return rep, err
}

func (r *run) do(ctx context.Context) (*Report, error) {
	cfg := r.cfg
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5e7))
	azs := make([]string, cfg.AZs)
	for i := range azs {
		azs[i] = r.w.Options().Region + string(rune('a'+i))
	}
	services := planServices(rng, cfg, azs)
	faults := planFaults(rng)
	api := ecs.NewFromConfig(r.w.AWSConfig())
	for _, s := range services {
		if err := retrying(ctx, "register "+s.name, func(ctx context.Context) error { return s.register(ctx, api) }); err != nil {
			return nil, err
		}
	}
	r.watch = newWatcher(r.w, r.cluster, r.w.Deployment().Documents["MountDocument"], services, r.log)
	r.releases.watch(r.watch)
	if err := r.watch.tap(r.w.Bus()); err != nil {
		return nil, err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); r.watch.run(wctx) }()
	defer func() { stopWatch(); <-watchDone }()

	for _, s := range services {
		if err := retrying(ctx, "create "+s.name, func(ctx context.Context) error { return s.create(ctx, api, r.cluster, 1) }); err != nil {
			return nil, err
		}
	}
	r.sched = newSchedule(cfg, r.w, api, r.watch, services, r.log)
	if err := r.waitStarted(ctx); err != nil {
		return nil, err
	}
	if !cfg.NoFaults {
		if err := faults.apply(r.w, true); err != nil {
			return nil, err
		}
	}
	opsBegan := time.Now()
	fmt.Fprintf(r.log, "chaos: %d services running; operations begin (target %d handoffs)\n", len(services), cfg.Handoffs)
	r.operate(ctx)
	opsTook := time.Since(opsBegan)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("chaos: interrupted after %d handoffs (%d violations): %w", r.watch.Handoffs(), r.watch.violationCount(), ctx.Err())
	}

	if err := faults.apply(r.w, false); err != nil {
		return nil, err
	}
	r.sched.restore(ctx)
	fmt.Fprintf(r.log, "chaos: operations done after %s (%d handoffs); faults off, settling\n", opsTook.Round(time.Second), r.watch.Handoffs())
	settled, why := r.settle(ctx)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("chaos: interrupted while settling: %w", ctx.Err())
	}
	if !settled {
		r.watch.violate("settle", "", "the cluster did not settle within %s: %s", cfg.Settle, why)
	}
	rep := r.report(faults)
	rep.OpsPhase, rep.Settled = opsTook, settled
	r.finalChecks(ctx, rep)
	wanted := map[string]bool{}
	for _, m := range r.sched.svc {
		if vd, ok := m.def.sharedVolume(); ok && m.exists && m.desired > 0 {
			wanted[vd.name] = true
		}
	}
	r.watch.fill(rep, wanted)
	rep.History = r.sched.historyBefore(rep)
	return rep, nil
}

// waitStarted waits until every service runs its first task (no faults yet).
func (r *run) waitStarted(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	err := r.w.ECS().WaitFor(ctx, r.cluster, "every service RUNNING", func(sn ecssim.Snapshot) bool {
		return servicesOff(sn, r.sched.svc) == ""
	})
	if err != nil {
		return fmt.Errorf("chaos: services did not start: %w", err)
	}
	return nil
}

// operate performs operations until the handoffs are done, a violation is
// seen (unless KeepGoing) or the time is up.
func (r *run) operate(ctx context.Context) {
	deadline := time.Now().Add(r.cfg.MaxRun)
	nextProgress := time.Now().Add(15 * time.Second)
	began := time.Now()
	for {
		switch {
		case ctx.Err() != nil:
			return
		case r.watch.Handoffs() >= r.cfg.Handoffs:
			return
		case r.watch.violationCount() > 0 && !r.cfg.KeepGoing:
			fmt.Fprintln(r.log, "chaos: violation seen; operations stop")
			return
		case time.Now().After(deadline):
			r.watch.violate("budget", "", "only %d of %d handoffs completed within %s", r.watch.Handoffs(), r.cfg.Handoffs, r.cfg.MaxRun)
			return
		}
		if time.Now().After(nextProgress) {
			nextProgress = time.Now().Add(15 * time.Second)
			fmt.Fprintf(r.log, "chaos: %6s  operations %5d  handoffs %5d  violations %d  instances %s  waiting %d\n",
				time.Since(began).Round(time.Second), r.sched.n, r.watch.Handoffs(), r.watch.violationCount(), r.sched.instances(), r.watch.waiting())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.sched.pause()):
		}
		r.sched.runDue(ctx)
		r.backpressure(ctx)
		r.sched.step(ctx)
	}
}

// backpressure holds the next operation, for at most a few seconds, while
// more than a quarter of the services wait for their volume: drains that
// come faster than handoffs can finish only stop tasks that are still
// waiting, and the run makes no handoffs. The schedule's draws do not
// depend on it; only its timing does.
func (r *run) backpressure(ctx context.Context) {
	limit := max(3, len(r.sched.svc)/4)
	deadline := time.Now().Add(5 * time.Second)
	for r.watch.waiting() > limit && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		r.sched.runDue(ctx) // a fault that holds the waiting tasks ends on time
	}
}
