package chaos

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/world"
)

// OpKind names one kind of operation the schedule performs.
type OpKind string

// The operations. Each is something an operator or the cloud does to a
// running cluster; activate, scale-up, recreate, launch, reconnect and
// online undo an earlier drain, scale-down, delete, kill, disconnect or
// offline a few operations later.
const (
	OpDrain        OpKind = "drain"          // container instance DRAINING
	OpActivate     OpKind = "activate"       // and ACTIVE again
	OpStopTask     OpKind = "stop-task"      // StopTask on a service's task
	OpTaskExit     OpKind = "task-exit"      // the task's essential container exits by itself
	OpScaleDown    OpKind = "scale-down"     // desiredCount 1 -> 0
	OpScaleUp      OpKind = "scale-up"       // desiredCount 0 -> 1
	OpDeleteSvc    OpKind = "delete-svc"     // DeleteService (force)
	OpRecreateSvc  OpKind = "recreate-svc"   // CreateService again, same name and volume
	OpKill         OpKind = "kill"           // the EC2 instance dies
	OpLaunch       OpKind = "launch"         // a new instance in the dead one's AZ
	OpAgentRestart OpKind = "agent-restart"  // tether-agent serve restarts
	OpThrottle     OpKind = "throttle"       // a burst of RequestLimitExceeded on one EC2 action
	OpDelayAttach  OpKind = "delay-attach"   // the next attachment of a volume takes seconds
	OpFailCreate   OpKind = "fail-create"    // the next CreateVolume fails asynchronously (KMS)
	OpStickAttach  OpKind = "stick-attach"   // the next attachment of a volume stays "attaching"
	OpDisconnect   OpKind = "ecs-disconnect" // the ECS agent loses its connection (restarts)
	OpReconnect    OpKind = "ecs-reconnect"  // and is back
	OpSSMOffline   OpKind = "ssm-offline"    // the SSM agent stops on a live host (a task there stopping, at times)
	OpSSMOnline    OpKind = "ssm-online"     // and runs again

	// Faults of issue 11 (fence by facts).
	OpStopInstance OpKind = "stop-instance"     // EC2 stops the instance: stopping (containers stop, or not), then stopped
	OpTerminate    OpKind = "terminate-stopped" // the stopped instance is terminated (a new one is launched later)
	OpHang         OpKind = "hang"              // the guest hangs: EC2 says running, agents silent, devices held
	OpResume       OpKind = "resume"            // and comes back (or is terminated by its operator)
	OpDeregister   OpKind = "deregister-force"  // deregister-container-instance --force: its tasks orphaned on the host
	OpOrphansEnd   OpKind = "orphans-end"       // the orphans exit or the instance is terminated
	OpSlowFlush    OpKind = "slow-flush"        // a task stops and its volume's unmount flushes past every timer
	OpFinishFlush  OpKind = "finish-flush"      // and the flush ends
	OpPluginRace   OpKind = "plugin-race"       // a task stops and another starts on the same host while the detach is in flight
	OpRaceEnd      OpKind = "race-end"          // the racing task is stopped
	OpHoldDevice   OpKind = "hold-device"       // a process in another namespace holds a volume's device
	OpReleaseHold  OpKind = "release-device"    // and lets go
	OpRepair       OpKind = "repair-fs"         // an operator repairs a torn superblock from its backups (after a death tore it)

	// Hosts that go away (issue 13, hostsKinds): members of an Auto
	// Scaling group that carries tether's termination hook.
	OpScaleIn       OpKind = "scale-in"       // a member leaves through the hook: terminated only once its volumes are off
	OpSpotInterrupt OpKind = "spot-interrupt" // EC2's two-minute Spot warning, then the member goes
	OpHangMember    OpKind = "hang-member"    // a member hangs (EC2 running, agents silent, status impaired); tether's opt-in stop stops it
	OpLaunchMember  OpKind = "launch-member"  // the group back to its size: Auto Scaling launches a new member

	// Volume changes (issue 12): a service's new task definition revision
	// asks more of its shared volume. Each happens at most once per service
	// and run (EBS allows one modification per volume per six hours).
	OpGrow   OpKind = "grow"    // a revision with a larger driverOpt size: tether grows the volume online
	OpAZMove OpKind = "az-move" // a revision placed in another AZ with azmove=snapshot: tether moves the volume by snapshot
)

// optInKinds are drawn only when CHAOS_KINDS names them: a run of every
// kind leaves them out. None now: the hosts kinds were opt-in until the
// fence of every detach (issue 11) made long runs of them clean.
var optInKinds = []OpKind{}

// hostsKinds bring an Auto Scaling group and tether's HungHostAction stop
// into the world.
var hostsKinds = []OpKind{OpScaleIn, OpSpotInterrupt, OpHangMember}

type kindWeight struct {
	kind   OpKind
	weight int
}

// drawnKinds lists the kinds the schedule draws.
func drawnKinds() []OpKind {
	var out []OpKind
	for _, k := range chosenKinds {
		out = append(out, k.kind)
	}
	return out
}

// weight is the kind's weight in this run (0: not drawn).
func (c *Config) weight(k kindWeight) int {
	if !c.allowed(k.kind) {
		return 0
	}
	if w, ok := c.Weights[k.kind]; ok {
		return w
	}
	return k.weight
}

// chosenKinds are the kinds the schedule draws from, with their weights;
// the undo kinds (activate, scale-up, recreate, launch) follow the others.
var chosenKinds = []kindWeight{
	{OpDrain, 34}, {OpStopTask, 14}, {OpTaskExit, 6}, {OpScaleDown, 6}, {OpDeleteSvc, 3},
	{OpKill, 3}, {OpAgentRestart, 4}, {OpDisconnect, 3}, {OpSSMOffline, 3}, {OpThrottle, 4}, {OpDelayAttach, 4},
	{OpFailCreate, 1}, {OpStickAttach, 1},
	{OpStopInstance, 2}, {OpHang, 2}, {OpDeregister, 1}, {OpSlowFlush, 3}, {OpPluginRace, 3}, {OpHoldDevice, 2},
	{OpScaleIn, 3}, {OpSpotInterrupt, 3}, {OpHangMember, 2},
	{OpGrow, 2}, {OpAZMove, 2},
}

// undoKinds follow the kinds they undo; they are never drawn.
var undoKinds = []OpKind{OpActivate, OpScaleUp, OpRecreateSvc, OpLaunch, OpReconnect, OpSSMOnline,
	OpTerminate, OpResume, OpOrphansEnd, OpFinishFlush, OpRaceEnd, OpReleaseHold, OpRepair, OpLaunchMember}

// AllKinds lists every kind, for CHAOS_KINDS.
func AllKinds() []OpKind {
	out := slices.Clone(undoKinds)
	for _, k := range chosenKinds {
		out = append(out, k.kind)
	}
	slices.Sort(out)
	return out
}

// Config is one chaos run. Zero fields take the defaults (the make chaos
// run); the same Config gives the same schedule of operations and faults.
type Config struct {
	Seed uint64
	// Handoffs: operations stop once this many handoffs have completed
	// (default 1000).
	Handoffs int
	// Instances at start (default 6), spread over AZs zones (default 3).
	Instances, AZs int
	// SharedServices have a shared-scope tether volume and an AZ placement
	// constraint (default 24); every fifth also has a task-scope scratch
	// volume. TaskServices have only a task-scope volume and no constraint
	// (default 4; -1 for none).
	SharedServices, TaskServices int
	// OpInterval is the mean wall time between operations (default 250ms
	// with the instant profile, longer with slower ones: see pace).
	OpInterval time.Duration
	// Kinds restricts the operations drawn (default: every kind). Undo
	// kinds always follow the kinds they undo.
	Kinds []OpKind
	// Weights change the weights operations are drawn with (kind ->
	// weight; 0 leaves the kind out), over chosenKinds' defaults.
	Weights map[OpKind]int
	// NoFaults turns off event, EC2, SSM and ECS fault injection.
	NoFaults bool
	// TearRate is the probability that an instance's death (kill, or the
	// end of a stop) tears the superblock of every volume still mounted
	// there, as a force detach can (default 0.25; -1 for never). An
	// operator repairs a torn volume a few operations later.
	TearRate float64
	// StopTime is how long an EC2 stop stays "stopping" (wall time; the
	// default's median is 1s, its p99 4s).
	StopTime latency.Dist
	// Profile is the world's latency profile (default instant).
	Profile string
	// Functions: how tether's functions run (default in this process,
	// functions/boot.Handler, fed by the world's queues and rules as
	// template.yaml wires them; world.EmulatedFunctions runs the real
	// bootstraps under the Lambda runtime interface emulator).
	Functions world.FunctionsMode
	// PluginWait bounds a fake host's plugin Mount wait, in wall time
	// (default 20s: the real plugin's 90 s, scaled like the world's SQS
	// clock, with room for the SDK's unscaled retry backoff).
	PluginWait time.Duration
	// MaxRun bounds the operations phase in wall time (default 25m).
	MaxRun time.Duration
	// Settle bounds the phase after the operations (default 3m).
	Settle time.Duration
	// KeepGoing: do not stop the operations at the first violation.
	KeepGoing bool
	// Dir is where the world's directory goes (default os.TempDir()).
	Dir string
	// Progress gets one line now and then (nil: none).
	Progress io.Writer
	// WorldLog gets the world's JSON log (nil: discarded).
	WorldLog io.Writer
	// FunctionLog gets what tether's functions wrote, at the end (nil: dropped).
	FunctionLog io.Writer
}

// pace is the default mean time between operations: 250ms plus as much
// again per half second that EC2 and SSM take for one handoff in the
// profile, so drains do not come faster than handoffs can finish.
func pace(p latency.Profile) time.Duration {
	m := p.Means()
	floor := m[latency.AttachVolume] + m[latency.DetachVolume] + 2*(m[latency.SSMVisible]+m[latency.SSMDelivery]+m[latency.SSMCompletion])
	return 250*time.Millisecond + time.Duration(float64(250*time.Millisecond)*float64(floor)/float64(500*time.Millisecond))
}

// timeScale is the world's SQS and schedule clock for the instant profile:
// world time is wall time divided by it.
const timeScale = 0.1

func (c *Config) defaults() error {
	var errs []error
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Handoffs, 1000)
	def(&c.Instances, 6)
	def(&c.AZs, 3)
	def(&c.SharedServices, 24)
	def(&c.TaskServices, 4)
	c.TaskServices = max(c.TaskServices, 0)
	if c.Profile == "" {
		c.Profile = "instant"
	}
	profile, err := latency.Parse(c.Profile)
	if err != nil {
		errs = append(errs, err)
	}
	if c.OpInterval == 0 {
		c.OpInterval = pace(profile)
	}
	if c.Functions == "" {
		c.Functions = world.InProcessFunctions
	}
	if c.PluginWait == 0 {
		c.PluginWait = 20 * time.Second
	}
	if c.MaxRun == 0 {
		c.MaxRun = defaultMaxRun
	}
	if c.Settle == 0 {
		c.Settle = 3 * time.Minute
	}
	switch {
	case c.TearRate == 0:
		c.TearRate = 0.25
	case c.TearRate < 0:
		c.TearRate = 0
	case c.TearRate > 1:
		errs = append(errs, fmt.Errorf("TearRate %g: want a probability (0 to 1, -1 for never)", c.TearRate))
	}
	if c.StopTime == (latency.Dist{}) {
		c.StopTime = latency.Dist{Median: time.Second, P99: 4 * time.Second}
	}
	for k, wt := range c.Weights {
		if wt < 0 || !slices.ContainsFunc(chosenKinds, func(ck kindWeight) bool { return ck.kind == k }) {
			errs = append(errs, fmt.Errorf("weight %s=%d: want a drawn kind (%v) and a weight of 0 or more", k, wt, drawnKinds()))
		}
	}
	if c.Handoffs < 1 {
		errs = append(errs, fmt.Errorf("Handoffs %d: want at least 1", c.Handoffs))
	}
	if c.AZs < 1 || c.AZs > 6 {
		errs = append(errs, fmt.Errorf("AZs %d: want 1 to 6", c.AZs))
	}
	if c.Instances < 2*c.AZs {
		errs = append(errs, fmt.Errorf("Instances %d: want at least two per AZ (%d) so a drain has somewhere to go", c.Instances, 2*c.AZs))
	}
	if c.SharedServices < 1 || c.SharedServices > 99 || c.TaskServices < 0 || c.TaskServices > 99 {
		errs = append(errs, fmt.Errorf("SharedServices %d, TaskServices %d: want 1-99 and 0-99", c.SharedServices, c.TaskServices))
	}
	for _, k := range c.Kinds {
		if !slices.Contains(AllKinds(), k) {
			errs = append(errs, fmt.Errorf("unknown operation kind %q (known: %v)", k, AllKinds()))
		}
	}
	if c.Functions == world.NoFunctions {
		errs = append(errs, errors.New("Functions none: chaos needs tether's functions"))
	}
	return errors.Join(errs...)
}

func (c *Config) allowed(k OpKind) bool {
	if slices.Contains(optInKinds, k) {
		return slices.Contains(c.Kinds, k)
	}
	return len(c.Kinds) == 0 || slices.Contains(c.Kinds, k)
}

// hostsGoAway: the run draws issue 13's kinds, so its world has the Auto
// Scaling group they act on.
func (c *Config) hostsGoAway() bool {
	return slices.ContainsFunc(hostsKinds, c.allowed)
}

// Environment variables ConfigFromEnv reads (make chaos passes them on).
const (
	EnvSeed     = "CHAOS_SEED"       // a number; "random" or empty: drawn and printed
	EnvHandoffs = "CHAOS_HANDOFFS"   // handoffs to complete (default 1000)
	EnvKinds    = "CHAOS_KINDS"      // comma-separated operation kinds, or -kind,... for all but those (default all but the opt-in scale-in, spot-interrupt, hang-member)
	EnvFaults   = "CHAOS_FAULTS"     // "off": no fault injection
	EnvInterval = "CHAOS_INTERVAL"   // mean time between operations, e.g. 250ms
	EnvProfile  = "CHAOS_PROFILE"    // the world's latency profile (default instant)
	EnvKeep     = "CHAOS_KEEP_GOING" // "1": operations go on after a violation
	// EnvShape: instances,AZs,shared-scope services,task-scope services
	// (default 6,3,24,4); smaller shapes help minimise a failing seed.
	EnvShape = "CHAOS_SHAPE"
	// EnvMaxRun bounds the operations phase (default 25m).
	EnvMaxRun = "CHAOS_MAX_RUN"
	// EnvWeights: kind=weight,... over the default weights (e.g.
	// hang=10,drain=0), to aim a run at one fault.
	EnvWeights = "CHAOS_WEIGHTS"
	// EnvTearRate: the probability that a death tears mounted volumes'
	// superblocks (default 0.25; 0 for never).
	EnvTearRate = "CHAOS_TEAR_RATE"
)

const defaultShape = "6,3,24,4"

// defaultMaxRun bounds the operations of make chaos's 1,000 handoffs.
const defaultMaxRun = 25 * time.Minute

func (c Config) shape() string {
	return fmt.Sprintf("%d,%d,%d,%d", c.Instances, c.AZs, c.SharedServices, c.TaskServices)
}

// ConfigFromEnv reads a Config from CHAOS_* variables; a missing seed is
// drawn at random (the report prints it).
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var c Config
	var errs []error
	switch s := getenv(EnvSeed); s {
	case "", "random":
		c.Seed = rand.Uint64() % 1_000_000_000
	default:
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number", EnvSeed, s))
		}
		c.Seed = v
	}
	if s := getenv(EnvHandoffs); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number of at least 1", EnvHandoffs, s))
		}
		c.Handoffs = v
	}
	if s := getenv(EnvKinds); s != "" {
		c.Kinds = parseKinds(s)
	}
	switch s := getenv(EnvFaults); s {
	case "", "on":
	case "off":
		c.NoFaults = true
	default:
		errs = append(errs, fmt.Errorf("%s=%q: want on or off", EnvFaults, s))
	}
	if s := getenv(EnvInterval); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive duration such as 250ms", EnvInterval, s))
		}
		c.OpInterval = d
	}
	if s := getenv(EnvWeights); s != "" {
		c.Weights = map[OpKind]int{}
		for _, kv := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			n, err := strconv.Atoi(v)
			if !ok || err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want kind=weight,... such as hang=10,drain=0", EnvWeights, s))
				break
			}
			c.Weights[OpKind(k)] = n
		}
	}
	if s := getenv(EnvTearRate); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v < 0 || v > 1 {
			errs = append(errs, fmt.Errorf("%s=%q: want a probability from 0 to 1", EnvTearRate, s))
		}
		c.TearRate = v
		if v == 0 {
			c.TearRate = -1 // never, not the default
		}
	}
	c.Profile = getenv(EnvProfile)
	c.KeepGoing = getenv(EnvKeep) == "1"
	if s := getenv(EnvMaxRun); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive duration such as 5m", EnvMaxRun, s))
		}
		c.MaxRun = d
	}
	if s := getenv(EnvShape); s != "" {
		var n [4]int
		parts := strings.Split(s, ",")
		ok := len(parts) == 4
		for i := 0; ok && i < 4; i++ {
			v, err := strconv.Atoi(strings.TrimSpace(parts[i]))
			n[i], ok = v, err == nil && v >= 0
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%s=%q: want instances,AZs,shared services,task services such as %s", EnvShape, s, defaultShape))
		}
		c.Instances, c.AZs, c.SharedServices, c.TaskServices = n[0], n[1], n[2], n[3]
		if c.TaskServices == 0 {
			c.TaskServices = -1 // none, not the default
		}
	}
	return c, errors.Join(errs...)
}

// ReplayCommand is the command line that runs the same schedule again,
// stopping after handoffs handoffs.
func (c Config) ReplayCommand(handoffs int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s=%d %s=%d", EnvSeed, c.Seed, EnvHandoffs, max(handoffs, 1))
	if len(c.Kinds) > 0 {
		fmt.Fprintf(&b, " %s=%s", EnvKinds, formatKinds(c.Kinds))
	}
	if c.NoFaults {
		fmt.Fprintf(&b, " %s=off", EnvFaults)
	}
	if len(c.Weights) > 0 {
		var ws []string
		for _, k := range slices.Sorted(maps.Keys(c.Weights)) {
			ws = append(ws, fmt.Sprintf("%s=%d", k, c.Weights[k]))
		}
		fmt.Fprintf(&b, " %s=%s", EnvWeights, strings.Join(ws, ","))
	}
	switch {
	case c.TearRate < 0:
		fmt.Fprintf(&b, " %s=0", EnvTearRate)
	case c.TearRate != 0 && c.TearRate != 0.25:
		fmt.Fprintf(&b, " %s=%g", EnvTearRate, c.TearRate)
	}
	if c.MaxRun != 0 && c.MaxRun != defaultMaxRun {
		fmt.Fprintf(&b, " %s=%s", EnvMaxRun, c.MaxRun)
	}
	if p, err := latency.Parse(c.Profile); c.OpInterval != 0 && (err != nil || c.OpInterval != pace(p)) {
		fmt.Fprintf(&b, " %s=%s", EnvInterval, c.OpInterval)
	}
	if c.Profile != "" && c.Profile != "instant" {
		fmt.Fprintf(&b, " %s=%s", EnvProfile, c.Profile)
	}
	if sh := c.shape(); sh != defaultShape && sh != "0,0,0,0" {
		fmt.Fprintf(&b, " %s=%s", EnvShape, sh)
	}
	b.WriteString(" make chaos")
	return b.String()
}

// parseKinds reads CHAOS_KINDS: "drain,kill" (only those) or
// "-stick-attach" (every kind but those).
func parseKinds(s string) []OpKind {
	var in, out []OpKind
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if rest, ok := strings.CutPrefix(k, "-"); ok {
			out = append(out, OpKind(rest))
		} else if k != "" {
			in = append(in, OpKind(k))
		}
	}
	if len(out) == 0 {
		return in
	}
	for _, k := range AllKinds() {
		if !slices.Contains(out, k) && !slices.Contains(optInKinds, k) {
			in = append(in, k)
		}
	}
	return in
}

// formatKinds writes kinds the short way: the list, or the kinds left out
// when that is shorter.
func formatKinds(kinds []OpKind) string {
	var in, out []string
	for _, k := range AllKinds() {
		switch {
		case slices.Contains(kinds, k):
			in = append(in, string(k))
		case !slices.Contains(optInKinds, k): // the short form leaves them out anyway
			out = append(out, "-"+string(k))
		}
	}
	for _, k := range kinds {
		if !slices.Contains(AllKinds(), k) {
			in = append(in, string(k)) // unknown: defaults() reports it
			out = nil
		}
	}
	// The short form leaves the opt-in kinds out: a list that names one
	// is written in full.
	if out != nil && len(out) < len(in) && !slices.ContainsFunc(kinds, func(k OpKind) bool { return slices.Contains(optInKinds, k) }) {
		return strings.Join(out, ",")
	}
	return strings.Join(in, ",")
}
