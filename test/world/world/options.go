package world

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tether-ecs/tether/functions/boot"
	"github.com/tether-ecs/tether/test/world/ec2sim"
	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/hosts"
	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/samlocal"
)

// HostKind says what runs behind each instance.
type HostKind string

const (
	// FakeHosts are fakehost.Host values: fast, in memory (the default).
	FakeHosts HostKind = "fake"
	// RealHosts are test/world/hosts instances: a mount namespace with its
	// own dockerd, busybox, tether-agent and loop devices (root needed).
	RealHosts HostKind = "real"
)

// FunctionsMode says whether and how tether's functions run.
type FunctionsMode string

const (
	// NoFunctions: the template's queues, rules and SSM documents are
	// deployed, the functions are not (their events stay in the queues).
	NoFunctions FunctionsMode = "none"
	// InProcessFunctions: handlers in this process (Options.InProcess).
	InProcessFunctions FunctionsMode = "inprocess"
	// EmulatedFunctions: the real bootstraps under aws-lambda-rie.
	EmulatedFunctions FunctionsMode = "rie"
)

// Options describe a world. The zero value is one fake instance-less world
// with the instant profile and no functions.
type Options struct {
	Instances int    // instances launched at Start (0: none)
	AZs       int    // availability zones, named <region>a, <region>b...; default 1
	Region    string // default us-west-2
	Account   string // default 123456789012
	// Profile: instant (default), realistic, or either scaled
	// ("realistic*0.1"), see latency.Parse. It times EC2 and SSM, ECS's own
	// steps and, unless TimeScale is set, SQS and schedule time.
	Profile string
	// TimeScale multiplies SQS and schedule durations (visibility
	// timeouts, retry delays, the sweep's rate), Auto Scaling's (hook
	// heartbeat and global timeouts, the status-check grace) and EC2's
	// Spot two-minute notice: world time. Default: 0.1 for instant, the
	// profile's factor otherwise (1 for realistic).
	TimeScale float64
	// AutoScalingImpairedGrace is how long Auto Scaling lets an instance's
	// status checks stay impaired before it replaces the instance (world
	// time; default 5 min, the user guide's "waits a few minutes").
	AutoScalingImpairedGrace time.Duration
	// AutoScalingGroups are created (their instances launched and
	// InService) before tether's template is deployed, so that its
	// termination hooks (AutoScalingGroupNames) have their groups, as
	// CloudFormation needs them.
	AutoScalingGroups []AutoScalingGroupOptions
	// DetachEvents makes EC2 send EBS detachVolume events. Off by default:
	// the EBS guide lists the event, but tether must work without it.
	DetachEvents bool
	// EC2Latency overrides EC2's profile for some operations (chaos gives
	// the instant profile instances that take a while to stop:
	// ec2sim.OpStopInstance).
	EC2Latency map[latency.Op]latency.Dist
	Seed       uint64
	Cluster    string   // the cluster tether serves and the seed's ECSClusterName; default "default"
	Clusters   []string // further clusters to create

	// InstanceTags are the tags of the instances launched at Start (an
	// InstanceTagKey that scopes tether to the cluster's instances).
	InstanceTags map[string]string

	Hosts HostKind // default FakeHosts
	// AgentBinary is tether-agent for real hosts; empty: built with
	// `go build` into the world's directory.
	AgentBinary string
	AgentArgs   []string      // extra `tether-agent serve` arguments (real hosts)
	Images      []hosts.Image // loaded into every real host after busybox
	CacheDir    string        // busybox rootfs cache (real hosts); default ~/.cache/tether
	// PluginWait bounds a fake host's plugin Mount wait (default fakehost's).
	PluginWait time.Duration

	Functions FunctionsMode // default NoFunctions
	// Template is the SAM template; default <repository>/template.yaml.
	Template string
	// StackName is the SAM stack's name (documents are <stack>-mount...);
	// default "tether".
	StackName string
	// Parameters override the template's; ClusterName defaults to Cluster.
	Parameters map[string]string
	// Bootstraps holds <package>/bootstrap for EmulatedFunctions; empty:
	// built with functions/Makefile's bootstraps target into the world's
	// directory.
	Bootstraps string
	RIE        string // aws-lambda-rie; found by lambdarun.FindRIE when empty
	// Environments caps execution environments per emulated function
	// (default 2; never more than its reserved concurrency).
	Environments int
	// InProcess builds tether's functions in this process for
	// InProcessFunctions (default boot.Handler, the mains' own wiring).
	InProcess samlocal.HandlerFunc

	// StackOutputs add to or replace the outputs of the seed's stack
	// (rexray-demo).
	StackOutputs map[string]string
	// Dir is the parent of the world's own directory (default os.TempDir()).
	Dir    string
	Logger *slog.Logger // default: discard
}

// SeedStack is the CloudFormation stack the seed walkthrough's
// get-outputs.sh reads.
const SeedStack = "rexray-demo"

func (o *Options) defaults() error {
	var errs []error
	if o.Instances < 0 {
		errs = append(errs, fmt.Errorf("Instances %d: want 0 or more", o.Instances))
	}
	if o.AZs == 0 {
		o.AZs = 1
	}
	if o.AZs < 1 || o.AZs > 6 {
		errs = append(errs, fmt.Errorf("AZs %d: want 1 to 6", o.AZs))
	}
	if o.Region == "" {
		o.Region = "us-west-2"
	}
	if !regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]$`).MatchString(o.Region) {
		errs = append(errs, fmt.Errorf("Region %q is not a region name", o.Region))
	}
	if o.Account == "" {
		o.Account = "123456789012"
	}
	if !regexp.MustCompile(`^[0-9]{12}$`).MatchString(o.Account) {
		errs = append(errs, fmt.Errorf("Account %q: want 12 digits", o.Account))
	}
	if o.Profile == "" {
		o.Profile = "instant"
	}
	if _, err := latency.Parse(o.Profile); err != nil {
		errs = append(errs, err)
	}
	if o.Cluster == "" {
		o.Cluster = "default"
	}
	switch o.Hosts {
	case "":
		o.Hosts = FakeHosts
	case FakeHosts, RealHosts:
	default:
		errs = append(errs, fmt.Errorf("Hosts %q: want fake or real", o.Hosts))
	}
	switch o.Functions {
	case "":
		o.Functions = NoFunctions
	case NoFunctions, EmulatedFunctions:
	case InProcessFunctions:
		if o.InProcess == nil {
			o.InProcess = boot.Handler
		}
	default:
		errs = append(errs, fmt.Errorf("Functions %q: want none, inprocess or rie", o.Functions))
	}
	if o.StackName == "" {
		o.StackName = "tether"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.AutoScalingImpairedGrace < 0 {
		errs = append(errs, fmt.Errorf("AutoScalingImpairedGrace %v: want 0 (default) or more", o.AutoScalingImpairedGrace))
	}
	return errors.Join(errs...)
}

// ErrBadOptions marks a Start refused for its Options.
var ErrBadOptions = errors.New("bad options")

// profileScale is the factor of a scaled profile name ("realistic*0.1"),
// 1 when unscaled.
func profileScale(name string) float64 {
	if _, f, ok := strings.Cut(name, "*"); ok {
		if v, err := strconv.ParseFloat(f, 64); err == nil && v > 0 {
			return v
		}
	}
	return 1
}

func (o *Options) instant() bool { return strings.HasPrefix(o.Profile, "instant") }

// timeScale is SQS and schedule time.
func (o *Options) timeScale() float64 {
	switch {
	case o.TimeScale > 0:
		return o.TimeScale
	case o.instant():
		return 0.1
	}
	return profileScale(o.Profile)
}

// ecsTiming is how long ECS's own steps take.
func (o *Options) ecsTiming() ecssim.Timing {
	if o.instant() {
		return ecssim.Timing{}
	}
	t, f := ecssim.RealisticTiming(), profileScale(o.Profile)
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) * f) }
	t.Provision, t.Activate, t.Deactivate, t.Deprovision = scale(t.Provision), scale(t.Activate), scale(t.Deactivate), scale(t.Deprovision)
	return t
}

// azs are the zone names: us-west-2a, us-west-2b, ...
func (o *Options) azs() []string {
	out := make([]string, o.AZs)
	for i := range out {
		out[i] = o.Region + string(rune('a'+i))
	}
	return out
}

// ec2Profile is EC2's profile: the world's, plus (unless instant) the
// instance stop and termination times, scaled like the rest.
func (o *Options) ec2Profile(p latency.Profile) latency.Profile {
	out := latency.Profile{Name: p.Name, Dists: maps.Clone(p.Dists)}
	if !o.instant() {
		f := profileScale(o.Profile)
		scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) * f) }
		for op, d := range ec2sim.RealisticInstanceDists() {
			if _, ok := out.Dists[op]; !ok {
				out.Dists[op] = latency.Dist{Median: scale(d.Median), P99: scale(d.P99), Max: scale(d.Max)}
			}
		}
	}
	maps.Copy(out.Dists, o.EC2Latency)
	return out
}
