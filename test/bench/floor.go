package bench

import (
	"fmt"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/ec2sim"
	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/ssmsim"
)

// Floor is the sum of the world's own latencies on a handoff's critical
// path: the detach, the attach, one SSM command (the mount: delivery and
// completion) and the replacement's container start. Everything a handoff
// takes above it is tether's overhead (event delivery, queue delays, the
// unmount's SSM round trip before the detach, learning that the detach
// ended, reconciler passes) or ECS's own steps, which the phase breakdown
// shows separately. tether sends the mount command as soon as
// AttachVolume returns (the agent waits for the device), so the command's
// delivery may overlap the attach: a handoff can take a little less than
// the floor.
type Floor struct {
	Detach         time.Duration // profile mean of DetachVolume
	Attach         time.Duration // profile mean of AttachVolume
	SSMCommand     time.Duration // profile means of SSMDelivery + SSMCompletion
	ContainerStart time.Duration // measured: the profile has no container start
	// ContainerStartHow says how ContainerStart was measured.
	ContainerStartHow string
}

// NewFloor takes the profile's means and the measured container start.
func NewFloor(p latency.Profile, containerStart time.Duration, how string) Floor {
	m := p.Means()
	return Floor{
		Detach:            m[latency.DetachVolume],
		Attach:            m[latency.AttachVolume],
		SSMCommand:        m[latency.SSMDelivery] + m[latency.SSMCompletion],
		ContainerStart:    containerStart,
		ContainerStartHow: how,
	}
}

// Total is the floor.
func (f Floor) Total() time.Duration { return f.Detach + f.Attach + f.SSMCommand + f.ContainerStart }

// Parts prints the floor's parts and their sum.
func (f Floor) Parts() string {
	return fmt.Sprintf("detach %s + attach %s + SSM command %s + container start %s = %s",
		secs(f.Detach), secs(f.Attach), secs(f.SSMCommand), secs(f.ContainerStart), secs(f.Total()))
}

// Ratio is d over the floor (0 when the floor is 0).
func (f Floor) Ratio(d time.Duration) float64 {
	if f.Total() <= 0 {
		return 0
	}
	return float64(d) / float64(f.Total())
}

// Limits are the request-rate buckets a batch of simultaneous handoffs
// must get through: one DetachVolume, one AttachVolume and one SendCommand
// (the mount) each.
type Limits struct {
	Detach, Attach, SendCommand awsproto.Bucket
}

// String lists the buckets.
func (l Limits) String() string {
	b := func(name string, b awsproto.Bucket) string {
		return fmt.Sprintf("%s %g + %g/s", name, b.Size, b.Refill)
	}
	return strings.Join([]string{b("DetachVolume", l.Detach), b("AttachVolume", l.Attach), b("SendCommand", l.SendCommand)}, ", ")
}

// DefaultLimits are the world's documented buckets (ec2sim, ssmsim).
func DefaultLimits() Limits {
	ec2, ssm := ec2sim.DefaultLimits(), ssmsim.DefaultLimits()
	return Limits{Detach: ec2["DetachVolume"], Attach: ec2["AttachVolume"], SendCommand: ssm["SendCommand"]}
}

// BucketBound is the floor of n handoffs released at the same moment
// under the request-rate limits: each takes the floor's steps in order,
// and each step's API call waits for a token of its bucket (full at the
// start, served first come first served). It returns every handoff's
// finish time from the release, earliest first. Nothing can do better
// without fewer calls: EC2 has no batched attach or detach, and each mount
// command carries its own volume's parameters. Left out, so the bound is
// a floor, not an estimate: the unmount's SendCommand (commands could be
// batched per instance) and the reads (ECS's DescribeTasks takes 100
// tasks, EC2's DescribeVolumes many volumes, each from a bucket of its
// own of 50 or 100 refilled at 20/s).
func BucketBound(f Floor, l Limits, n int) []time.Duration {
	detach, attach, send := newBucket(l.Detach), newBucket(l.Attach), newBucket(l.SendCommand)
	out := make([]time.Duration, n)
	for i := range out {
		t := detach.take(0) + f.Detach
		t = attach.take(t) + f.Attach
		t = send.take(t) + f.SSMCommand
		out[i] = t + f.ContainerStart
	}
	return out
}

// bucket is a token bucket served in order of requests; with every
// handoff taking the same steps, requests arrive in order.
type bucket struct {
	size, refill float64 // tokens, tokens per second
	tokens       float64
	at           time.Duration // when tokens was counted
}

func newBucket(b awsproto.Bucket) *bucket {
	return &bucket{size: b.Size, refill: b.Refill, tokens: b.Size}
}

// take returns when a request made at t gets its token.
func (b *bucket) take(t time.Duration) time.Duration {
	if b.size <= 0 || b.refill <= 0 {
		return t
	}
	if t < b.at {
		t = b.at
	}
	b.tokens = min(b.size, b.tokens+(t-b.at).Seconds()*b.refill)
	b.at = t
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) / b.refill * float64(time.Second))
		t += wait
		b.tokens, b.at = 1, t
	}
	b.tokens--
	return t
}
