// Package world assembles one running local AWS world: a single HTTP
// endpoint on 127.0.0.1 speaking EC2, EC2 Auto Scaling, ECS, SSM, SQS and
// CloudFormation (ec2sim, autoscalingsim, ecssim, ssmsim, eventbus, cfnsim
// behind one awsproto.Router), the
// event bus the simulators publish to, an ECS cluster with N instances
// (each an EC2 instance, an SSM managed instance and an ECS container
// instance over one worldapi.Host: a real test/world/hosts instance or a
// fakehost), the seed walkthrough's CloudFormation stack (rexray-demo) and,
// on request, tether's SAM template deployed with its functions (samlocal).
//
// A World is what tests, the chaos and benchmark suites and tetherworld
// drive: Env gives the variables that point the aws CLI and the SDK at it,
// the control methods (LaunchInstance, KillInstance, StopInstance,
// HangInstance, RestartAgent, DrainInstance, CreateAutoScalingGroup,
// ScaleIn, SpotInterrupt) change it, EC2, ECS, SSM and Bus reach each simulator's
// fault injection, Counts reads the call counters. Close tears everything
// down, also after a failed Start: no host, loop device, mount namespace,
// dockerd, emulator or directory is left behind.
package world

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/world/autoscalingsim"
	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/cfnsim"
	"github.com/tether-ecs/tether/test/world/ec2sim"
	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/fakehost"
	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/samlocal"
	"github.com/tether-ecs/tether/test/world/ssmsim"
)

// World is one running local AWS world.
type World struct {
	opts     Options
	log      *slog.Logger
	dir      string
	endpoint string
	outputs  map[string]string // the seed stack's outputs

	router *awsproto.Router
	srv    *http.Server
	served chan struct{}
	bus    *eventbus.Bus
	ec2    *ec2sim.Server
	ecs    *ecssim.Server
	ssm    *ssmsim.Server
	cfn    *cfnsim.Server
	asg    *autoscalingsim.Server
	disks  *fakehost.Disks
	deploy *samlocal.Deployment

	mu        sync.Mutex
	rng       *rand.Rand
	instances []*Instance
	ecsGone   map[string]bool // instances ECS has been told are terminated
	launched  int             // for round-robin AZs
	closed    bool

	detachMu sync.Mutex
	detaches []DetachAsked
}

// Start builds and starts a world. On error everything it started is torn
// down and the error says what failed.
func Start(ctx context.Context, o Options) (*World, error) {
	if err := o.defaults(); err != nil {
		return nil, fmt.Errorf("world: %w: %w", ErrBadOptions, err)
	}
	w := &World{opts: o, log: o.Logger, rng: rand.New(rand.NewPCG(o.Seed, 0x7e7e7)), disks: fakehost.NewDisks(), ecsGone: map[string]bool{}}
	if err := w.start(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("world: start: %w", err), w.Close())
	}
	w.log.Info("world ready", "endpoint", w.endpoint, "region", o.Region, "azs", o.azs(), "cluster", o.Cluster,
		"instances", len(w.instances), "hosts", o.Hosts, "functions", o.Functions, "profile", o.Profile, "dir", w.dir)
	return w, nil
}

func (w *World) start(ctx context.Context) error {
	o := &w.opts
	parent := o.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "tetherworld-")
	if err != nil {
		return err
	}
	w.dir = dir
	profile, _ := latency.Parse(o.Profile)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	w.endpoint = "http://" + ln.Addr().String()
	w.router = awsproto.NewRouter()
	w.bus = eventbus.New(eventbus.Options{Region: o.Region, Account: o.Account, Seed: int64(o.Seed), TimeScale: o.timeScale(),
		QueueURLBase: w.endpoint, Logger: w.log})
	w.ec2, err = ec2sim.New(ec2sim.Config{Region: o.Region, Account: o.Account, AZs: o.azs(), Profile: o.ec2Profile(profile), Seed: o.Seed,
		Dir: filepath.Join(dir, "ebs"), Publisher: w.bus, Logger: w.log, DetachEvents: o.DetachEvents,
		InstanceStateChanged: w.onInstanceState, SnapshotCopied: w.disks.Snapshot, VolumeRestored: w.disks.Restore})
	if err != nil {
		ln.Close()
		return err
	}
	w.ssm = ssmsim.New(ssmsim.Config{Region: o.Region, Account: o.Account, Profile: profile, Seed: o.Seed, Publisher: w.bus, Logger: w.log})
	w.ecs = ecssim.New(ecssim.Options{Region: o.Region, Account: o.Account, Seed: int64(o.Seed), Publisher: w.bus,
		Timing: o.ecsTiming(), Logger: w.log})
	w.cfn = cfnsim.New(cfnsim.Config{Region: o.Region, Account: o.Account, Logger: w.log})
	w.outputs = w.seedOutputs()
	w.asg, err = autoscalingsim.New(autoscalingsim.Config{Region: o.Region, Account: o.Account, AZs: o.azs(),
		Subnets: map[string]string{o.azs()[0]: w.outputs["SubnetId"]}, EC2: w.ec2, Launcher: autoscalingsim.LauncherFunc(w.launchForGroup),
		Publisher: w.bus, Logger: w.log, Seed: o.Seed, TimeScale: o.timeScale(), ImpairedGrace: o.AutoScalingImpairedGrace})
	if err != nil {
		ln.Close()
		return err
	}
	w.router.HandleEC2(w.serveEC2) // ec2sim's handler, its detaches observed (DetachesAsked)
	w.asg.Register(w.router)
	w.ecs.Register(w.router)
	w.ssm.Register(w.router)
	w.cfn.Register(w.router)
	w.bus.RegisterSQS(w.router)
	// Requests' X-Amzn-Trace-Id reach the SQS API, which keeps it with the
	// messages sent (Lambda's recursive loop detection follows it).
	w.srv = &http.Server{Handler: eventbus.CarryTraceHeader(w.router), ReadHeaderTimeout: 10 * time.Second}
	w.served = make(chan struct{})
	go func() {
		defer close(w.served)
		if err := w.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			w.log.Error("endpoint stopped", "err", err)
		}
	}()

	for _, c := range append([]string{o.Cluster}, o.Clusters...) {
		if err := w.CreateCluster(ctx, c); err != nil {
			return err
		}
	}
	w.cfn.AddStack(SeedStack, w.outputs)
	if err := w.writeAWSConfig(); err != nil {
		return err
	}
	if o.Hosts == RealHosts && o.AgentBinary == "" {
		if o.AgentBinary, err = BuildAgent(ctx, filepath.Join(dir, "bin")); err != nil {
			return err
		}
	}
	if err := w.launchInitial(ctx); err != nil {
		return err
	}
	for _, g := range o.AutoScalingGroups {
		if err := w.CreateAutoScalingGroup(ctx, g); err != nil {
			return err
		}
	}
	return w.deployTemplate(ctx)
}

// CreateCluster creates an ECS cluster (idempotent, as ECS is).
func (w *World) CreateCluster(ctx context.Context, name string) error {
	body := fmt.Sprintf(`{"clusterName":%q}`, name)
	if _, err := w.ecs.Handle(ctx, "CreateCluster", []byte(body)); err != nil {
		return fmt.Errorf("create cluster %s: %w", name, err)
	}
	return nil
}

// Close tears the world down: functions, simulators, hosts (dockerd,
// containers, loop devices, namespaces), the endpoint, the world's
// directory. Idempotent.
func (w *World) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	instances := append([]*Instance(nil), w.instances...)
	w.mu.Unlock()
	start := time.Now()
	var errs []error
	add := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	if w.deploy != nil {
		add("functions", w.deploy.Stop())
	}
	if w.asg != nil { // first: no launch or termination starts after this
		add("autoscaling", w.asg.Close())
	}
	if w.ecs != nil {
		add("ecs", w.ecs.Close())
	}
	if w.ssm != nil {
		add("ssm", w.ssm.Close())
	}
	if w.ec2 != nil {
		add("ec2", w.ec2.Close())
	}
	var wg sync.WaitGroup
	hostErrs := make([]error, len(instances))
	for i, in := range instances {
		wg.Go(func() {
			if err := in.Host.Close(); err != nil {
				hostErrs[i] = fmt.Errorf("host %s: %w", in.ID, err)
			}
		})
	}
	wg.Wait()
	errs = append(errs, hostErrs...)
	if w.bus != nil {
		add("eventbus", w.bus.Close())
	}
	if w.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := w.srv.Shutdown(ctx); err != nil {
			add("endpoint", w.srv.Close())
		}
		cancel()
		<-w.served
	}
	if w.dir != "" {
		add("directory", os.RemoveAll(w.dir))
	}
	err := errors.Join(errs...)
	w.log.Info("world closed", "took", time.Since(start).Round(time.Millisecond), "err", err)
	return err
}

// Endpoint is the world's AWS endpoint, http://127.0.0.1:PORT.
func (w *World) Endpoint() string { return w.endpoint }

// Dir is the world's own directory (removed by Close).
func (w *World) Dir() string { return w.dir }

// Options returns the options in force (defaults filled in).
func (w *World) Options() Options { return w.opts }

// EC2 is the world's EC2 (fault injection: FailNext, StickAttach...).
func (w *World) EC2() *ec2sim.Server { return w.ec2 }

// ECS is the world's ECS (Snapshot, WaitFor, DisconnectAgent...).
func (w *World) ECS() *ecssim.Server { return w.ecs }

// SSM is the world's Systems Manager (Invocations, SetOnline...).
func (w *World) SSM() *ssmsim.Server { return w.ssm }

// AutoScaling is the world's EC2 Auto Scaling (Group, Instance, Actions,
// FailNext...).
func (w *World) AutoScaling() *autoscalingsim.Server { return w.asg }

// CloudFormation is the world's CloudFormation (AddStack).
func (w *World) CloudFormation() *cfnsim.Server { return w.cfn }

// Bus is the world's EventBridge and SQS (SetFaults, Settle, Queue...).
func (w *World) Bus() *eventbus.Bus { return w.bus }

// RecursiveInvocationsDropped is Lambda's metric of that name over every
// function of the world: invocations its recursive loop detection stopped
// (eventbus.RecursionLimit). Zero when no chain of SQS messages and
// invocations ran past the limit in a function without RecursiveLoop: Allow.
func (w *World) RecursiveInvocationsDropped() int { return w.bus.RecursiveInvocationsDropped() }

// LongestChain is the most invocations one chain of SQS messages and
// function invocations reached (how close a run came to
// eventbus.RecursionLimit).
func (w *World) LongestChain() int { return w.bus.LongestChain() }

// Router is the endpoint's router (Journal of every call).
func (w *World) Router() *awsproto.Router { return w.router }

// Disks is what fake hosts' volumes hold (data follows a volume).
func (w *World) Disks() *fakehost.Disks { return w.disks }

// Deployment is tether's deployed template (nil before Start deployed it).
func (w *World) Deployment() *samlocal.Deployment { return w.deploy }

// Counts are the world's call counters.
type Counts struct {
	Calls     map[string]int // "service:Action" -> calls the endpoint answered
	Errors    map[string]int // error code -> answers with it
	Throttled map[string]int // "ec2:Action", "ecs:Action", "ssm:Action" -> refused by a rate limit
	Injected  map[string]int // "ec2:Action", "ecs:Action", "ssm:Action" -> answered by a scripted fault
}

// Counts returns the call counters so far.
func (w *World) Counts() Counts {
	c := Counts{Throttled: map[string]int{}, Injected: map[string]int{}}
	c.Calls, c.Errors = w.router.Counts()
	for svc, g := range map[string]awsproto.GateCounts{"ec2": w.ec2.Counts(), "ecs": w.ecs.Counts(), "ssm": w.ssm.Counts(), "autoscaling": w.asg.Counts()} {
		for a, n := range g.Throttled {
			c.Throttled[svc+":"+a] = n
		}
		for a, n := range g.Injected {
			c.Injected[svc+":"+a] = n
		}
	}
	return c
}
