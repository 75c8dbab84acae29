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
	"strconv"
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
	out             string
	dir             string
	handoffs        int
	eventHandoffs   int
	concurrent      int
	instances       int
	hosts           string
	scalingHandoffs int
	hostHandoffs    int
	grows           int
	azMoves         []int
	unrelated       []int
	seed            uint64
	skip            map[string]bool
	timeout         time.Duration
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	var skip string
	fs := flag.NewFlagSet("tetherbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "out", os.Getenv("BENCH_OUT"), "write the figures as JSON here (default $BENCH_OUT; empty: none)")
	fs.StringVar(&o.dir, "dir", "", "keep the worlds' and functions' logs here (default: a new directory under $TMPDIR)")
	fs.IntVar(&o.handoffs, "handoffs", 7, "single handoffs, one after the other (the median is reported)")
	fs.IntVar(&o.eventHandoffs, "event-handoffs", 5, "single handoffs in the world that sends EBS detachVolume events")
	fs.IntVar(&o.scalingHandoffs, "scaling-handoffs", 3, "handoffs at each cluster size of the ECS scaling check")
	fs.IntVar(&o.hostHandoffs, "host-handoffs", 3, "handoffs of each kind in the hosts run (drain, dead host; scale-in one more)")
	fs.IntVar(&o.grows, "grows", 3, "online grows in the grow run (one service each: EBS allows one modification of a volume every 6 hours)")
	fs.IntVar(&o.concurrent, "concurrent", 200, "handoffs at once in the many-handoffs run")
	fs.IntVar(&o.instances, "instances", 20, "instances of the many-handoffs run (half hold the tasks, half take them)")
	fs.StringVar(&o.hosts, "hosts", "auto", "hosts of the many-handoffs run: real, fake, or auto (decided by measuring concurrent container starts)")
	fs.Uint64Var(&o.seed, "seed", 1, "the worlds' seed (latency draws, ids)")
	azmove := fs.String("azmove-sizes", "1,2,4", "volume sizes (GiB) of the azmove run, one move each")
	unrelated := fs.String("unrelated", "10,500", "unrelated running tasks in the cluster at each size of the ECS scaling check, ascending")
	fs.StringVar(&skip, "skip", "", "comma-separated parts to leave out: single, scaling, concurrent, hosts, grow, azmove, agent, functions")
	fs.DurationVar(&o.timeout, "timeout", 50*time.Minute, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.skip = map[string]bool{}
	for _, p := range strings.Split(skip, ",") {
		switch p = strings.TrimSpace(p); p {
		case "":
		case "single", "scaling", "concurrent", "hosts", "grow", "azmove", "agent", "functions":
			o.skip[p] = true
		default:
			return o, fmt.Errorf("-skip %q: want single, scaling, concurrent, hosts, grow, azmove, agent or functions", p)
		}
	}
	for _, f := range strings.Split(*unrelated, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || (len(o.unrelated) > 0 && n <= o.unrelated[len(o.unrelated)-1]) {
			return o, fmt.Errorf("-unrelated %q: want task counts, ascending", *unrelated)
		}
		o.unrelated = append(o.unrelated, n)
	}
	for _, f := range strings.Split(*azmove, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 16384 {
			return o, fmt.Errorf("-azmove-sizes %q: want sizes in GiB, 1 to 16384", *azmove)
		}
		o.azMoves = append(o.azMoves, n)
	}
	switch o.hosts {
	case "auto", string(world.RealHosts), string(world.FakeHosts):
	default:
		return o, fmt.Errorf("-hosts %q: want real, fake or auto", o.hosts)
	}
	if o.handoffs < 1 || o.eventHandoffs < 1 || o.scalingHandoffs < 1 || o.hostHandoffs < 1 || o.grows < 1 || o.concurrent < 1 || o.instances < 2 || o.instances%2 != 0 {
		return o, errors.New("-handoffs, -event-handoffs, -scaling-handoffs, -host-handoffs, -grows and -concurrent must be at least 1, -instances even and at least 2")
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
	needWorld := !o.skip["single"] || !o.skip["concurrent"] || !o.skip["scaling"] || !o.skip["hosts"] || !o.skip["grow"] || !o.skip["azmove"]
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

	// headline: the runs on the strict world without the detachVolume
	// event, whose calls make the per-handoff figures; all: every run.
	var headline, all []bench.RunResult
	var safety bench.Safety
	worlds := 0
	hosts := world.HostKind(o.hosts)
	concurrentPerHost := o.concurrent / (o.instances / 2)

	// The single handoffs come first: they measure the container start
	// the floor counts and judge real hosts for the many-handoffs run.
	floor := bench.NewFloor(bench.ProfileLatency(), 0, "not measured (the single runs were skipped or failed)")
	var singles []bench.SingleResult
	if !o.skip["single"] {
		for _, c := range []bench.SingleConfig{
			{Name: "single", Handoffs: o.handoffs, ConcurrentStarts: concurrentPerHost, ColdInits: true},
			{Name: "single-detach-event", Handoffs: o.eventHandoffs, DetachEvents: true},
		} {
			log.Info("single handoffs, each to a fresh real instance", "run", c.Name, "handoffs", c.Handoffs, "detachEvents", c.DetachEvents)
			single, err := bench.RunSingle(ctx, env, c)
			if err != nil {
				fail(c.Name+" handoffs", err)
			}
			worlds++
			safety.Add(single.Safety)
			singles = append(singles, single)
			all = append(all, single.RunResult)
			if !c.DetachEvents {
				headline = append(headline, single.RunResult)
			}
		}
		var starts []time.Duration
		for _, s := range singles {
			starts = append(starts, s.ContainerStarts...)
		}
		if cs := bench.Median(starts); cs > 0 {
			floor = bench.NewFloor(bench.ProfileLatency(), cs, fmt.Sprintf(
				"median of %d starts of a created busybox container with a local volume (the Docker API call the hosts start task containers with), on the hosts that took the task, between handoffs, in this run's single runs",
				len(starts)))
		}
		for _, s := range singles {
			key, set := "handoff_ratio_1", &rep.Results.HandoffRatio1
			if s.DetachEvents {
				key, set = "handoff_ratio_1_detach_event", &rep.Results.HandoffRatio1DetachEvent
			}
			if len(s.Handoffs) > 0 {
				bench.HandoffRows(rep, key, set, s.RunResult, floor)
			}
		}
		bench.FloorRow(rep, floor)
		rep.Note("floor's container start: %s", floor.ContainerStartHow)
		if s := singles[0]; len(s.Concurrent) > 0 {
			cs := bench.Median(s.ContainerStarts)
			kind, distortion := bench.ChooseHosts(s.ContainerStarts, s.Concurrent)
			rep.Note("hosts for the many-handoffs run: %d container starts at once on one real host (as many as each instance takes in that run) took a median %s, %.2fx one alone (%s); above %.1fx real hosts are judged to distort it (and there %d dockerds would share this machine's %d cores): auto chooses %s hosts",
				len(s.Concurrent), bench.Median(s.Concurrent).Round(time.Millisecond), distortion, cs.Round(time.Millisecond),
				bench.DistortionLimit, o.instances, runtime.NumCPU(), kind)
			if hosts == "auto" {
				hosts = kind
			}
		}
		if singles[0].ColdInits != nil {
			bench.FunctionRows(rep, nil, singles[0].ColdInits)
		}
	}
	if hosts == "auto" {
		hosts = world.FakeHosts
	}

	if !o.skip["scaling"] {
		log.Info("ECS scaling: handoffs with unrelated tasks in the cluster", "unrelated", o.unrelated, "handoffs", o.scalingHandoffs)
		sc, err := bench.RunScaling(ctx, env, bench.ScalingConfig{Handoffs: o.scalingHandoffs, Unrelated: o.unrelated})
		if err != nil {
			fail("ECS scaling", err)
		}
		worlds++
		safety.Add(sc.Safety)
		all = append(all, sc.Runs...)
		bench.ScalingRows(rep, sc, o.unrelated)
		rep.Note("ECS scaling: one service's volume moved back and forth between two tether hosts (fake: calls are counted, not times), %d handoffs at each size, while %d hosts without tether run the unrelated standalone tasks (RunTask, no volume); the same world, first with %d of them, then with %d",
			o.scalingHandoffs, bench.Bystanders, o.unrelated[0], o.unrelated[len(o.unrelated)-1])
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
		worlds++
		safety.Add(conc.Safety)
		if len(conc.Handoffs) > 0 {
			headline = append(headline, conc)
			all = append(all, conc)
			bench.ConcurrentRows(rep, conc, floor, o.instances)
		}
		if hosts == world.FakeHosts {
			rep.Note("many-handoffs run on fake hosts: a fake host reports the replacement RUNNING as soon as its volume is mounted, so each handoff has the real container start measured above (%s) added as its last step",
				floor.ContainerStart.Round(time.Millisecond))
		}
	}
	if !o.skip["hosts"] {
		log.Info("hosts that go away: scale-in through the termination hook, drain, dead host", "handoffs", o.hostHandoffs)
		hr, err := bench.RunHosts(ctx, env, bench.HostsConfig{Handoffs: o.hostHandoffs})
		if err != nil {
			fail("hosts", err)
		}
		worlds++
		safety.Add(hr.Safety)
		for _, run := range []bench.RunResult{hr.ScaleIn, hr.Drain, hr.Dead} {
			if len(run.Handoffs) > 0 {
				all = append(all, run)
			}
		}
		hostsFloor := floor
		if floor.ContainerStart == 0 {
			if cs := bench.Median(hr.ContainerStarts); cs > 0 {
				hostsFloor = bench.NewFloor(bench.ProfileLatency(), cs, fmt.Sprintf(
					"median of %d starts of a created busybox container with a local volume, on the hosts that took the task, between handoffs, in this run's hosts run (the single runs were skipped or failed)",
					len(hr.ContainerStarts)))
				bench.FloorRow(rep, hostsFloor)
				rep.Note("floor's container start: %s", hostsFloor.ContainerStartHow)
			}
		}
		bench.HostsRows(rep, hr, hostsFloor)
		rep.Note("hosts run: one service's volume on real hosts in one world with an Auto Scaling group (%s) that carries tether's termination hook (AutoScalingGroupNames); %d scale-ins (the group's only member holds the task; desired 1 -> 0), %d drains of the instance outside the group (after the group is back to 1) and %d deaths of the instance holding the task (world.KillInstance: no drain, no hook; EC2 shuts it down for the realistic profile's time, then ECS stops its task), each to an instance launched for it, timed from the act to ECS reporting the replacement RUNNING, the mark written before read back on the new host",
			"bench-asg", o.hostHandoffs+1, o.hostHandoffs, o.hostHandoffs)
	}
	if !o.skip["grow"] {
		log.Info("online grow: services updated to a revision asking for a larger size", "grows", o.grows)
		gr, err := bench.RunGrow(ctx, env, bench.GrowConfig{Grows: o.grows, Bound: 2 * time.Minute})
		if err != nil {
			fail("grow", err)
		}
		worlds++
		safety.Add(gr.Safety)
		bench.GrowRows(rep, gr)
		rep.Note("grow run: %d services of one busybox task on one real host, each with its own shared tether volume (xfs: the agent's ext4 grow, resize2fs on the mounted filesystem, needs CAP_SYS_RESOURCE, which some machines' bounding set lacks), updated one at a time to a revision asking for a larger size (maximumPercent 100 / minimumHealthyPercent 0: the new task starts on the same host, the volume still attached); one grow per volume, as EBS allows one modification every 6 hours; a grow not seen within 2 minutes ends the run", o.grows)
	}
	if !o.skip["azmove"] {
		log.Info("AZ moves by snapshot: services drained into the other AZ", "sizesGiB", o.azMoves)
		ar, err := bench.RunAZMove(ctx, env, bench.AZMoveConfig{SizesGiB: o.azMoves, Bound: 4 * time.Minute})
		if err != nil {
			fail("azmove", err)
		}
		worlds++
		safety.Add(ar.Safety)
		bench.AZMoveRows(rep, ar)
		rep.Note("azmove run: two real instances in two AZs; for each size (%v GiB) one service of one busybox task with a shared tether volume (azmove=snapshot, deploy 0/100) runs on one instance (the other DRAINING), a mark is written, then the other is set ACTIVE and the first DRAINING: ECS places the replacement in the other AZ and tether moves the volume there by snapshot; one move at a time, each timed from the drain to the mark read back on the new host; a move not done within 4 minutes ends the run", o.azMoves)
	}
	if len(all) > 0 {
		bench.CallRows(rep, headline, all)
		bench.SafetyRows(rep, safety, worlds)
		rep.Note("handoffs: services of one busybox task (bridge network, no load balancer, so ECS adds no ENI or target-group steps) with a shared tether volume, maximumPercent 100 / minimumHealthyPercent 0 as the seed's MySQL service; timed from the drain call to ECS reporting the replacement RUNNING; the data (a mark written before the drain) is checked on the new host afterwards, outside the time")
		rep.Note("single handoffs: each to a real instance launched for it (never held the volume, so the mount goes through the reconciler's SSM command; a host that held it before mounts it by itself from its binding, about a second sooner)")
		rep.Note("calls per handoff: every EC2, ECS and SSM call tether's functions made (throttled attempts included), from the drain until tether's queues are empty again (each single handoff its own window, the 200 one window), over the runs without the detachVolume event (single and 200); counted from the world's router journal less the bench's own calls in the same windows (the bench's clients count every attempt they send); the sweep's calls in those windows count too")
		rep.Note("every world ran with its request-rate limits on (EC2, ECS, SSM token buckets) and validated every request against its botocore model; the bench's own setup calls are paced below the buckets (and retried), the world's limits are never raised")
		rep.Note("floor: the world's own means on the critical path (realistic profile); ECS stopping the old task, the unmount before the detach, learning that the detach ended, event delivery and reconciler passes are above it, see the phases")
	}

	rep.Note("whole run took %s", time.Since(start).Round(time.Second))
	return rep, errors.Join(errs...)
}
