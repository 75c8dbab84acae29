// Package latency says how long the local AWS world takes to do things:
// each simulated operation (CreateVolume, AttachVolume, an SSM command's
// delivery...) draws its duration from a distribution of a Profile, with
// jitter from a seeded random source so a run can be replayed.
//
// Two profiles are built in: Instant (tests: everything happens at once)
// and Realistic (demo and benchmarks: the medians and tails AWS shows).
// Scaled derives quicker or slower variants ("realistic*0.1").
package latency

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Op names a simulated operation whose duration a Profile draws.
type Op string

// The operations the simulators time. Durations are from the API call to
// the state change a client can observe.
const (
	CreateVolume   Op = "CreateVolume"   // creating -> available
	DeleteVolume   Op = "DeleteVolume"   // deleting -> gone
	AttachVolume   Op = "AttachVolume"   // attaching -> attached (device in the guest)
	DetachVolume   Op = "DetachVolume"   // detaching -> detached (when the guest let go)
	ModifyVolume   Op = "ModifyVolume"   // modifying -> optimizing (new size usable)
	OptimizeVolume Op = "OptimizeVolume" // optimizing -> completed
	CreateSnapshot Op = "CreateSnapshot" // pending -> completed

	// SSMVisible: SendCommand -> GetCommandInvocation stops answering
	// InvocationDoesNotExist (a documented race: aws/aws-sdk#86).
	SSMVisible Op = "SSMVisible"
	// SSMDelivery: Pending -> InProgress (the agent picks the message up).
	SSMDelivery Op = "SSMDelivery"
	// SSMCompletion: the script ended -> Success/Failed visible to callers.
	SSMCompletion Op = "SSMCompletion"
)

// Ops lists every Op in a stable order.
func Ops() []Op {
	return []Op{CreateVolume, DeleteVolume, AttachVolume, DetachVolume, ModifyVolume,
		OptimizeVolume, CreateSnapshot, SSMVisible, SSMDelivery, SSMCompletion}
}

// Dist is a log-normal distribution given by its median and 99th
// percentile, the two figures operators publish. A zero Dist is "instant".
// Samples are capped at Max (0: 3 x P99) so one unlucky draw cannot stall
// a demo for an hour; the real long tail is shown by fault injection.
type Dist struct {
	Median time.Duration
	P99    time.Duration
	Max    time.Duration
}

// z99 is the standard normal quantile of 0.99.
const z99 = 2.3263478740408408

func (d Dist) sigma() float64 {
	if d.Median <= 0 || d.P99 <= d.Median {
		return 0
	}
	return math.Log(float64(d.P99)/float64(d.Median)) / z99
}

// Mean is the distribution's expected value, median * exp(sigma^2/2)
// (ignoring the cap, which moves it by well under 1%).
func (d Dist) Mean() time.Duration {
	s := d.sigma()
	return time.Duration(float64(d.Median) * math.Exp(s*s/2))
}

func (d Dist) sample(r *rand.Rand) time.Duration {
	if d.Median <= 0 {
		return 0
	}
	v := time.Duration(float64(d.Median) * math.Exp(d.sigma()*r.NormFloat64()))
	limit := d.Max
	if limit <= 0 {
		limit = 3 * max(d.P99, d.Median)
	}
	return min(v, limit)
}

func (d Dist) scaled(f float64) Dist {
	return Dist{
		Median: time.Duration(float64(d.Median) * f),
		P99:    time.Duration(float64(d.P99) * f),
		Max:    time.Duration(float64(d.Max) * f),
	}
}

// Profile is a named set of distributions, one per Op (a missing Op is
// instant).
type Profile struct {
	Name  string
	Dists map[Op]Dist
}

// Instant is the tests' profile: every operation completes at once (the
// state machines still pass through their intermediate states, on other
// goroutines).
func Instant() Profile { return Profile{Name: "instant", Dists: map[Op]Dist{}} }

// Realistic is the demo and benchmark profile. Sources:
//   - CreateVolume: aws-ebs-csi-driver pkg/cloud notes volume creation
//     median ~1.5 s, p99 ~4 s.
//   - AttachVolume ~3.7-4.1 s mean and DetachVolume ~8 s mean: a week of
//     Kubernetes CI on AWS (figures quoted in ebs-csi's design notes); the
//     medians and p99s below give means of ~3.8 s and ~8.0 s.
//   - ModifyVolume: the EBS user guide says a modification reaches
//     "optimizing" (new size usable) within seconds to minutes, and
//     optimizing can take hours; the sim uses tens of seconds.
//   - CreateSnapshot: incremental snapshots of small volumes complete in
//     tens of seconds to minutes (EBS user guide); shortened here.
//   - DeleteVolume: deleting is short (seconds) in practice.
//   - SSM: the agent long-polls its message endpoint (amazon-ssm-agent#80),
//     so delivery is prompt once the message is queued; the observed
//     round trip of a trivial aws:runShellScript is about 1-2 s, and
//     GetCommandInvocation answers InvocationDoesNotExist for a moment
//     after SendCommand (aws/aws-sdk#86).
func Realistic() Profile {
	return Profile{Name: "realistic", Dists: map[Op]Dist{
		CreateVolume:   {Median: 1500 * time.Millisecond, P99: 4 * time.Second},
		DeleteVolume:   {Median: 1 * time.Second, P99: 3 * time.Second},
		AttachVolume:   {Median: 3500 * time.Millisecond, P99: 8 * time.Second},
		DetachVolume:   {Median: 7200 * time.Millisecond, P99: 20 * time.Second},
		ModifyVolume:   {Median: 10 * time.Second, P99: 40 * time.Second},
		OptimizeVolume: {Median: 30 * time.Second, P99: 2 * time.Minute},
		CreateSnapshot: {Median: 20 * time.Second, P99: 90 * time.Second},
		SSMVisible:     {Median: 200 * time.Millisecond, P99: 1 * time.Second},
		SSMDelivery:    {Median: 600 * time.Millisecond, P99: 2 * time.Second},
		SSMCompletion:  {Median: 300 * time.Millisecond, P99: 1 * time.Second},
	}}
}

// Scaled returns p with every duration multiplied by f (f > 0), named
// "<name>*<f>": realistic*0.1 keeps the shape of the waits at a tenth of
// the time.
func (p Profile) Scaled(f float64) Profile {
	out := Profile{Name: p.Name + "*" + strconv.FormatFloat(f, 'g', -1, 64), Dists: map[Op]Dist{}}
	for op, d := range p.Dists {
		out.Dists[op] = d.scaled(f)
	}
	return out
}

// Parse reads a profile name: "instant", "realistic", or either followed
// by "*F" with a positive scale factor ("realistic*0.1").
func Parse(s string) (Profile, error) {
	name, factor, scaled := strings.Cut(strings.TrimSpace(s), "*")
	var p Profile
	switch name {
	case "instant":
		p = Instant()
	case "realistic":
		p = Realistic()
	default:
		return Profile{}, fmt.Errorf("latency profile %q: want instant or realistic, optionally *FACTOR", s)
	}
	if !scaled {
		return p, nil
	}
	f, err := strconv.ParseFloat(factor, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return Profile{}, fmt.Errorf("latency profile %q: scale factor must be a positive number", s)
	}
	return p.Scaled(f), nil
}

// Mean is op's expected duration in this profile.
func (p Profile) Mean(op Op) time.Duration { return p.Dists[op].Mean() }

// Means lists every Op's expected duration (benchmarks compute their floor,
// detach + attach + SSM commands + container start, from these).
func (p Profile) Means() map[Op]time.Duration {
	out := make(map[Op]time.Duration, len(p.Dists))
	for _, op := range Ops() {
		out[op] = p.Mean(op)
	}
	return out
}

// String lists the profile's medians, for logs.
func (p Profile) String() string {
	ops := make([]string, 0, len(p.Dists))
	for op, d := range p.Dists {
		ops = append(ops, fmt.Sprintf("%s=%v/%v", op, d.Median, d.P99))
	}
	sort.Strings(ops)
	return p.Name + "{" + strings.Join(ops, " ") + "}"
}

// Sampler draws durations from a profile with a seeded random source; safe
// for concurrent use. The same seed and the same sequence of calls give the
// same durations.
type Sampler struct {
	mu      sync.Mutex
	profile Profile
	rng     *rand.Rand
}

// NewSampler returns a sampler over p seeded with seed.
func NewSampler(p Profile, seed uint64) *Sampler {
	return &Sampler{profile: p, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Sample draws one duration for op (0 if the profile has none).
func (s *Sampler) Sample(op Op) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.profile.Dists[op].sample(s.rng)
}

// Profile returns the sampler's profile.
func (s *Sampler) Profile() Profile { return s.profile }
