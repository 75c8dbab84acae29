// Command tetherbench is `make bench`: tether's handoffs on the local AWS
// world (realistic profile, tether deployed from template.yaml, bootstraps
// under the Lambda runtime interface emulator), the agent's benchmarks and
// the functions' size and cold start, printed as one table and, with -out
// (default $BENCH_OUT), written as JSON.
//
//	go run ./test/cmd/tetherbench -out bench.json
//
// It needs root (loop devices, mount namespaces, dockerd), as make test does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/tether-ecs/tether/test/bench"
	"github.com/tether-ecs/tether/test/world/world"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	out        string
	dir        string
	handoffs   int
	concurrent int
	instances  int
	hosts      string
	seed       uint64
	skip       map[string]bool
	timeout    time.Duration
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	var skip string
	fs := flag.NewFlagSet("tetherbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "out", os.Getenv("BENCH_OUT"), "write the figures as JSON here (default $BENCH_OUT; empty: none)")
	fs.StringVar(&o.dir, "dir", "", "keep the worlds' and functions' logs here (default: a new directory under $TMPDIR)")
	fs.IntVar(&o.handoffs, "handoffs", 7, "single handoffs, one after the other (the median is reported)")
	fs.IntVar(&o.concurrent, "concurrent", 200, "handoffs at once in the many-handoffs run")
	fs.IntVar(&o.instances, "instances", 20, "instances of the many-handoffs run (half hold the tasks, half take them)")
	fs.StringVar(&o.hosts, "hosts", "auto", "hosts of the many-handoffs run: real, fake, or auto (decided by measuring concurrent container starts)")
	fs.Uint64Var(&o.seed, "seed", 1, "the worlds' seed (latency draws, ids)")
	fs.StringVar(&skip, "skip", "", "comma-separated parts to leave out: single, concurrent, agent, functions")
	fs.DurationVar(&o.timeout, "timeout", 38*time.Minute, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.skip = map[string]bool{}
	for _, p := range strings.Split(skip, ",") {
		switch p = strings.TrimSpace(p); p {
		case "":
		case "single", "concurrent", "agent", "functions":
			o.skip[p] = true
		default:
			return o, fmt.Errorf("-skip %q: want single, concurrent, agent or functions", p)
		}
	}
	switch o.hosts {
	case "auto", string(world.RealHosts), string(world.FakeHosts):
	default:
		return o, fmt.Errorf("-hosts %q: want real, fake or auto", o.hosts)
	}
	if o.handoffs < 1 || o.concurrent < 1 || o.instances < 2 || o.instances%2 != 0 {
		return o, errors.New("-handoffs and -concurrent must be at least 1, -instances even and at least 2")
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "tetherbench:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	rep, err := measure(ctx, o, log)
	fmt.Fprintln(stdout)
	rep.Print(stdout)
	if o.out != "" {
		if werr := rep.Results.WriteJSON(o.out); werr != nil {
			err = errors.Join(err, werr)
		} else {
			fmt.Fprintf(stdout, "\nfigures written to %s\n", o.out)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "tetherbench:", err)
		return 1
	}
	return 0
}

// measure runs every part; a part that fails leaves its figures null and
// the others still run.
func measure(ctx context.Context, o options, log *slog.Logger) (*bench.Report, error) {
	rep := &bench.Report{}
	start := time.Now()
	root, err := world.RepoRoot()
	if err != nil {
		return rep, err
	}
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "tetherbench-"); err != nil {
			return rep, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return rep, err
	}
	rep.Note("logs (worlds, functions, go test output) are in %s", dir)
	// The builds are large and rebuilt every run; only the logs stay.
	defer func() {
		for _, sub := range []string{"bin", "bootstraps", "sam-build"} {
			if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
				log.Warn("removing a build", "dir", sub, "err", err)
			}
		}
	}()
	var errs []error
	fail := func(part string, err error) {
		log.Error("part failed", "part", part, "err", err)
		rep.Note("%s failed: %v", part, err)
		errs = append(errs, fmt.Errorf("%s: %w", part, err))
	}

	if !o.skip["functions"] {
		log.Info("building the functions as sam build does (arm64)")
		sizes, err := bench.BootstrapSizes(ctx, root, filepath.Join(dir, "sam-build"))
		if err != nil {
			fail("bootstrap sizes", err)
		}
		bench.FunctionRows(rep, sizes, nil)
	}

	if !o.skip["agent"] {
		// First: they are short and load the machine (mkfs, dd), which the
		// handoffs that follow should not share.
		log.Info("agent benchmarks (go test -bench)")
		logFile, err := os.Create(filepath.Join(dir, "agent-bench.log"))
		if err != nil {
			return rep, err
		}
		fig, err := bench.RunAgentBenchmarks(ctx, root, logFile)
		logFile.Close()
		if err != nil {
			fail("agent benchmarks", err)
		}
		bench.AgentRows(rep, fig)
	}

	env := bench.Env{Dir: dir, Seed: o.seed, Log: log}
	needWorld := !o.skip["single"] || !o.skip["concurrent"]
	if needWorld {
		log.Info("building tether-agent and the native bootstraps")
		if env.AgentBinary, err = world.BuildAgent(ctx, filepath.Join(dir, "bin")); err != nil {
			return rep, errors.Join(append(errs, err)...)
		}
		env.Bootstraps = filepath.Join(dir, "bootstraps")
		if err := world.BuildBootstraps(ctx, env.Bootstraps); err != nil {
			return rep, errors.Join(append(errs, err)...)
		}
	}

	// The single handoffs come first: they measure the container start
	// the floor counts and judge real hosts for the many-handoffs run.
	floor := bench.NewFloor(bench.ProfileLatency(), 0, "not measured (the single run was skipped or failed)")
	var runs []bench.RunResult
	hosts := world.HostKind(o.hosts)
	concurrentPerHost := o.concurrent / (o.instances / 2)
	if !o.skip["single"] {
		log.Info("single handoffs, each to a fresh real instance", "handoffs", o.handoffs)
		single, err := bench.RunSingle(ctx, env, o.handoffs, concurrentPerHost)
		if err != nil {
			fail("single handoffs", err)
		}
		runs = append(runs, single.RunResult)
		cs := bench.Median(single.ContainerStarts)
		if cs > 0 {
			floor = bench.NewFloor(bench.ProfileLatency(), cs, fmt.Sprintf(
				"median of %d starts of a created busybox container with a local volume (the Docker API call the hosts start task containers with), on the hosts that took the task, between handoffs, in this run",
				len(single.ContainerStarts)))
		}
		if len(single.Handoffs) > 0 {
			bench.HandoffRows(rep, single.RunResult, floor)
		}
		rep.Note("floor's container start: %s", floor.ContainerStartHow)
		if len(single.Concurrent) > 0 {
			kind, distortion := bench.ChooseHosts(single.ContainerStarts, single.Concurrent)
			rep.Note("hosts for the many-handoffs run: %d container starts at once on one real host (as many as each instance takes in that run) took a median %s, %.2fx one alone (%s); above %.1fx real hosts are judged to distort it (and there %d dockerds would share this machine's %d cores): auto chooses %s hosts",
				len(single.Concurrent), bench.Median(single.Concurrent).Round(time.Millisecond), distortion, cs.Round(time.Millisecond),
				bench.DistortionLimit, o.instances, runtime.NumCPU(), kind)
			if hosts == "auto" {
				hosts = kind
			}
		}
		if single.ColdInits != nil {
			bench.FunctionRows(rep, nil, single.ColdInits)
		}
	}
	if hosts == "auto" {
		hosts = world.FakeHosts
	}

	if !o.skip["concurrent"] {
		if floor.ContainerStart == 0 && hosts == world.FakeHosts {
			rep.Note("no real container start was measured (single run skipped or failed): the fake hosts' handoffs have none added")
		}
		log.Info("concurrent handoffs", "handoffs", o.concurrent, "instances", o.instances, "hosts", hosts)
		conc, err := bench.RunConcurrent(ctx, env, bench.ConcurrentConfig{Handoffs: o.concurrent, Instances: o.instances, Hosts: hosts, Modeled: floor.ContainerStart})
		if err != nil {
			fail("concurrent handoffs", err)
		}
		if len(conc.Handoffs) > 0 {
			runs = append(runs, conc)
			bench.ConcurrentRows(rep, conc, floor, o.instances)
		}
		if hosts == world.FakeHosts {
			rep.Note("many-handoffs run on fake hosts: a fake host reports the replacement RUNNING as soon as its volume is mounted, so each handoff has the real container start measured above (%s) added as its last step",
				floor.ContainerStart.Round(time.Millisecond))
		}
	}
	if len(runs) > 0 {
		bench.CallRows(rep, runs...)
		rep.Note("handoffs: services of one busybox task (bridge network, no load balancer, so ECS adds no ENI or target-group steps) with a shared tether volume, maximumPercent 100 / minimumHealthyPercent 0 as the seed's MySQL service; timed from the drain call to ECS reporting the replacement RUNNING; the data (a mark written before the drain) is checked on the new host afterwards, outside the time")
		rep.Note("single handoffs: each to a real instance launched for it (never held the volume, so the mount goes through the reconciler's SSM command; a host that held it before mounts it by itself from its binding, about a second sooner)")
		rep.Note("ec2_calls_per_handoff: every EC2 call (throttled ones included) from the drain until tether's queues are empty again (each single handoff its own window, the 200 one window), over all handoffs of all runs; the sweep's calls in those windows count too")
		rep.Note("floor: the world's own means on the critical path (realistic profile); ECS stopping the old task, the unmount before the detach, event delivery and reconciler passes are above it, see the phases")
	}

	rep.Note("whole run took %s", time.Since(start).Round(time.Second))
	return rep, errors.Join(errs...)
}
