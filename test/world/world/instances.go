package world

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/world/ec2sim"
	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/fakehost"
	"github.com/tether-ecs/tether/test/world/hosts"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Instance is one EC2 instance of the world and the ECS container instance
// it runs.
type Instance struct {
	ID                   string // i-...
	AZ                   string
	Cluster              string
	ContainerInstanceArn string
	Host                 worldapi.Host // *hosts.Instance or *fakehost.Host
	Spot                 bool          // a Spot Instance (SpotInterrupt may reclaim it)
}

// LaunchOptions describe one instance.
type LaunchOptions struct {
	// AZ is one of the world's zones; default: the next in turn.
	AZ string
	// Cluster it registers with; default the world's cluster.
	Cluster string
	// NoPlugin: tether-agent does not serve, so the instance does not
	// advertise ecs.capability.docker-plugin.tether (a host without tether).
	NoPlugin bool
	// Spot launches a Spot Instance (EC2 InstanceLifecycle "spot").
	Spot bool
	// Tags are the EC2 instance's tags (an Auto Scaling group's
	// aws:autoscaling:groupName and propagated tags).
	Tags map[string]string
}

// ErrNoInstance: the world has no instance with that id.
var ErrNoInstance = errors.New("no such instance")

func (w *World) launchInitial(ctx context.Context) error {
	// Hosts boot concurrently (a real one starts a dockerd); they register
	// with EC2, SSM and ECS in order, so ids and ARNs follow the seed.
	n := w.opts.Instances
	specs := make([]launchSpec, n)
	for i := range specs {
		specs[i] = w.nextSpec(LaunchOptions{Tags: w.opts.InstanceTags})
	}
	made := make([]worldapi.Host, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range specs {
		wg.Go(func() { made[i], errs[i] = w.boot(ctx, specs[i]) })
	}
	wg.Wait()
	err := errors.Join(errs...)
	for i, h := range made {
		if h == nil {
			continue
		}
		if err != nil {
			// Hosts that did boot are closed with the world.
			w.mu.Lock()
			w.instances = append(w.instances, &Instance{ID: specs[i].id, AZ: specs[i].az, Cluster: specs[i].cluster, Host: h})
			w.mu.Unlock()
			continue
		}
		if _, rerr := w.register(ctx, specs[i], h); rerr != nil {
			err = rerr
		}
	}
	return err
}

// LaunchInstance starts one more instance and registers it everywhere:
// EC2 (running, in its AZ), SSM (managed, online) and then ECS, once
// tether-agent serves, as the ECS agent registers after it
// (Before=ecs.service).
func (w *World) LaunchInstance(ctx context.Context, o LaunchOptions) (*Instance, error) {
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return nil, errors.New("world: launch: the world is closed")
	}
	if o.AZ != "" && !slices.Contains(w.opts.azs(), o.AZ) {
		return nil, fmt.Errorf("world: launch: AZ %q is not one of %v", o.AZ, w.opts.azs())
	}
	spec := w.nextSpec(o)
	h, err := w.boot(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("world: launch %s: %w", spec.id, err)
	}
	return w.register(ctx, spec, h)
}

type launchSpec struct {
	id, az, cluster string
	noPlugin, spot  bool
	tags            map[string]string
}

func (w *World) nextSpec(o LaunchOptions) launchSpec {
	w.mu.Lock()
	defer w.mu.Unlock()
	azs := w.opts.azs()
	s := launchSpec{id: fmt.Sprintf("i-0%016x", w.rng.Uint64()), az: o.AZ, cluster: o.Cluster, noPlugin: o.NoPlugin, spot: o.Spot, tags: o.Tags}
	if s.az == "" {
		s.az = azs[w.launched%len(azs)]
	}
	if s.cluster == "" {
		s.cluster = w.opts.Cluster
	}
	w.launched++
	return s
}

// boot starts the guest.
func (w *World) boot(ctx context.Context, s launchSpec) (worldapi.Host, error) {
	log := w.log.With("component", "host")
	if w.opts.Hosts == FakeHosts {
		return fakehost.New(fakehost.Options{InstanceID: s.id, AZ: s.az, Disks: w.disks, Seed: int64(w.opts.Seed),
			PluginWait: w.opts.PluginWait, NoPlugin: s.noPlugin, Logger: log}), nil
	}
	agent := w.opts.AgentBinary
	if s.noPlugin {
		agent = ""
	}
	in, err := hosts.Launch(ctx, hosts.Config{InstanceID: s.id, AvailabilityZone: s.az, AgentBinary: agent,
		AgentArgs: w.opts.AgentArgs, Images: w.opts.Images, Dir: w.dir, CacheDir: w.opts.CacheDir, Logger: log})
	if err != nil {
		return nil, err
	}
	return in, nil
}

// register makes the booted guest an EC2, SSM and ECS instance. The world
// owns the host from here: a failure leaves it for Close.
func (w *World) register(ctx context.Context, s launchSpec, h worldapi.Host) (*Instance, error) {
	in := &Instance{ID: s.id, AZ: s.az, Cluster: s.cluster, Host: h, Spot: s.spot}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, errors.Join(errors.New("world: closed"), h.Close())
	}
	w.instances = append(w.instances, in)
	w.mu.Unlock()
	if err := w.ec2.AddInstance(ec2sim.InstanceSpec{ID: s.id, AZ: s.az, Host: h, Spot: s.spot, Tags: s.tags}); err != nil {
		return nil, fmt.Errorf("world: ec2 instance %s: %w", s.id, err)
	}
	if err := w.ssm.AddInstance(s.id, h); err != nil {
		return nil, fmt.Errorf("world: ssm instance %s: %w", s.id, err)
	}
	arn, err := w.ecs.RegisterInstance(ctx, ecssim.InstanceRegistration{Cluster: s.cluster, EC2InstanceID: s.id, AZ: s.az, Host: h})
	if err != nil {
		return nil, fmt.Errorf("world: ecs registration of %s: %w", s.id, err)
	}
	w.mu.Lock()
	in.ContainerInstanceArn = arn
	w.mu.Unlock()
	w.log.Info("instance launched", "instance", s.id, "az", s.az, "cluster", s.cluster, "containerInstance", arn, "plugin", !s.noPlugin, "spot", s.spot)
	return in, nil
}

// Instances lists the world's instances in launch order (killed ones too).
func (w *World) Instances() []Instance {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Instance, len(w.instances))
	for i, in := range w.instances {
		out[i] = *in
	}
	return out
}

// Instance returns one instance by EC2 instance id.
func (w *World) Instance(id string) (Instance, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, in := range w.instances {
		if in.ID == id {
			return *in, nil
		}
	}
	return Instance{}, fmt.Errorf("world: %s: %w", id, ErrNoInstance)
}

// RealHost returns the instance's real host (false for a fake one).
func (w *World) RealHost(id string) (*hosts.Instance, bool) {
	in, err := w.Instance(id)
	if err != nil {
		return nil, false
	}
	h, ok := in.Host.(*hosts.Instance)
	return h, ok
}

// FakeHost returns the instance's fake host (false for a real one).
func (w *World) FakeHost(id string) (*fakehost.Host, bool) {
	in, err := w.Instance(id)
	if err != nil {
		return nil, false
	}
	h, ok := in.Host.(*fakehost.Host)
	return h, ok
}

// KillInstance ends an instance abruptly, as a power loss or termination:
// the host dies (its processes and devices go), its SSM and ECS agents stop
// answering, EC2 terminates it (shutting-down for the profile's time, then
// its volumes detach; DeleteOnTermination ones are deleted) and ECS loses
// it (tasks STOPPED, container instance INACTIVE). It returns once EC2 has
// released the volumes and ECS knows.
func (w *World) KillInstance(ctx context.Context, id string) error {
	in, err := w.Instance(id)
	if err != nil {
		return err
	}
	var errs []error
	if err := in.Host.Kill(); err != nil {
		errs = append(errs, fmt.Errorf("host: %w", err))
	}
	if err := w.ssm.SetOnline(id, false); err != nil {
		errs = append(errs, fmt.Errorf("ssm: %w", err))
	}
	if err := w.ecs.DisconnectAgent(id); err != nil {
		w.log.Warn("ecs agent disconnect", "instance", id, "err", err)
	}
	if err := w.ec2.TerminateInstance(ctx, id); err != nil {
		errs = append(errs, fmt.Errorf("ec2: %w", err))
	}
	if err := w.terminatedInECS(id); err != nil {
		errs = append(errs, fmt.Errorf("ecs: %w", err))
	}
	w.log.Info("instance killed", "instance", id, "az", in.AZ)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("world: kill %s: %w", id, err)
	}
	return nil
}

// StopInstance stops the instance as EC2's StopInstances does (force ends
// the stopping at once) and returns once EC2 says stopped: its volumes stay
// attached, its guest is gone, its SSM and ECS agents are disconnected.
func (w *World) StopInstance(ctx context.Context, id string, force bool) error {
	if _, err := w.Instance(id); err != nil {
		return err
	}
	if err := w.ec2.StopInstance(ctx, id, force); err != nil {
		return fmt.Errorf("world: stop %s: %w", id, err)
	}
	w.agentsGone(id)
	return nil
}

// HangInstance makes the instance hang as a host does when its kernel
// locks up: EC2 still says running, its SSM and ECS agents stop answering,
// its guest releases no device, and EC2's instance status check reports
// impaired impairAfter from now.
func (w *World) HangInstance(ctx context.Context, id string, impairAfter time.Duration) error {
	if _, err := w.Instance(id); err != nil {
		return err
	}
	if err := w.ec2.HangInstance(id, impairAfter); err != nil {
		return fmt.Errorf("world: hang %s: %w", id, err)
	}
	w.agentsGone(id)
	w.log.Info("instance hung", "instance", id, "impairedAfter", impairAfter)
	return nil
}

// ResumeInstance ends a hang: the guest answers again, EC2's status checks
// pass, its SSM agent polls again (delivering what waited for it) and its
// ECS agent reconnects.
func (w *World) ResumeInstance(id string) error {
	if _, err := w.Instance(id); err != nil {
		return err
	}
	if err := w.ec2.RestoreInstanceStatus(id); err != nil {
		return fmt.Errorf("world: resume %s: %w", id, err)
	}
	if err := w.ssm.StartAgent(id); err != nil {
		return fmt.Errorf("world: resume %s: %w", id, err)
	}
	if err := w.ecs.ReconnectAgent(id); err != nil {
		return fmt.Errorf("world: resume %s: %w", id, err)
	}
	w.log.Info("instance resumed", "instance", id)
	return nil
}

// onInstanceState keeps SSM, ECS and Auto Scaling in step with EC2,
// whoever changed the instance (a control method, a StopInstances or
// TerminateInstances call, a Spot interruption, Auto Scaling): a stopped
// instance's agents are disconnected and ECS stops its tasks ("When you
// stop or terminate a container instance, the tasks that are running on
// it are transitioned to the STOPPED status", ECS Developer Guide, "Amazon
// ECS task state change events"; the world never starts it again), a
// terminated one's container instance is deregistered.
func (w *World) onInstanceState(id, state string) {
	if w.asg != nil {
		// Auto Scaling's health checks: a member that leaves running is
		// replaced at once.
		defer w.asg.InstanceStateChanged(id, state)
	}
	switch state {
	case "stopped":
		w.agentsGone(id)
		if err := w.ecs.StopInstance(id); err != nil {
			w.log.Debug("ecs: stopped instance", "instance", id, "err", err)
		}
	case "terminated":
		w.agentsGone(id)
		if err := w.terminatedInECS(id); err != nil {
			w.log.Warn("ecs: terminated instance", "instance", id, "err", err)
		}
	}
}

// agentsGone marks the instance's SSM agent offline and its ECS agent
// disconnected (idempotent).
func (w *World) agentsGone(id string) {
	if err := w.ssm.SetOnline(id, false); err != nil {
		w.log.Warn("ssm offline", "instance", id, "err", err)
	}
	if err := w.ecs.DisconnectAgent(id); err != nil {
		w.log.Debug("ecs agent disconnect", "instance", id, "err", err)
	}
}

// terminatedInECS tells ECS the instance is terminated, once.
func (w *World) terminatedInECS(id string) error {
	w.mu.Lock()
	done := w.ecsGone[id]
	w.ecsGone[id] = true
	w.mu.Unlock()
	if done {
		return nil
	}
	return w.ecs.KillInstance(id)
}

// RestartAgent restarts tether-agent serve on the instance, as systemd
// would (the ECS agent's registered attributes do not change).
func (w *World) RestartAgent(ctx context.Context, id string) error {
	in, err := w.Instance(id)
	if err != nil {
		return err
	}
	if err := in.Host.RestartAgent(ctx); err != nil {
		return fmt.Errorf("world: restart agent on %s: %w", id, err)
	}
	w.log.Info("tether-agent restarted", "instance", id)
	return nil
}

// DrainInstance sets the instance's container instance DRAINING, as the
// seed's drain-instance.sh does with update-container-instances-state.
func (w *World) DrainInstance(ctx context.Context, id string) error {
	in, err := w.Instance(id)
	if err != nil {
		return err
	}
	body := fmt.Sprintf(`{"cluster":%q,"containerInstances":[%q],"status":"DRAINING"}`, in.Cluster, in.ContainerInstanceArn)
	if _, err := w.ecs.Handle(ctx, "UpdateContainerInstancesState", []byte(body)); err != nil {
		return fmt.Errorf("world: drain %s: %w", id, err)
	}
	w.log.Info("instance draining", "instance", id, "containerInstance", in.ContainerInstanceArn)
	return nil
}

// AgentLogs returns the path of each real host's tether-agent log, by
// instance id.
func (w *World) AgentLogs() map[string]string {
	out := map[string]string{}
	for _, in := range w.Instances() {
		if h, ok := in.Host.(*hosts.Instance); ok {
			out[in.ID] = h.AgentLog()
		}
	}
	return out
}
