package cloud

import (
	"context"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/tether-ecs/tether/functions/internal/batch"
)

// Options tune the seam; zero values take the defaults.
type Options struct {
	// MaxAttempts per AWS call, retries included (default 5).
	MaxAttempts int
	// MaxBackoff between attempts (default 5s): a Lambda pass gives up
	// early and hands the key back instead of sleeping.
	MaxBackoff time.Duration
	// Backoff replaces the SDK's jittered exponential backoff (tests).
	Backoff retry.BackoffDelayer
	// RetryMode: adaptive (default: client-side rate limiting once
	// throttled) or standard (tests that count attempts without waiting).
	RetryMode aws.RetryMode
	// BatchWindow is how long a DescribeVolumes waits for concurrent
	// lookups to join it (default 20ms; negative: no batching).
	BatchWindow time.Duration
	// BatchMax caps the keys of one batched DescribeVolumes (default 200,
	// EC2's limit of values per filter).
	BatchMax int
	// CommandDeliveryTimeout: an SSM command not started within it ends
	// "Delivery Timed Out" (default 60s; SSM's minimum is 30s).
	CommandDeliveryTimeout time.Duration
	// Stats receives the request counters (default: a new one).
	Stats *Stats
	// MaxAge bounds how long an invocation's session keeps AWS's answers
	// (default 3s): passes started later read afresh.
	MaxAge time.Duration
	// Now is the clock sessions are aged and writes paced by (default time.Now).
	Now func() time.Time
	// Limits pace writes per action on the client side (see pacer). New
	// uses DocumentedLimits when it is nil; NewWithClients paces only
	// what it is given.
	Limits map[string]Limit
	// MaxPaceWait: a write that would wait longer for its token is refused
	// as ErrThrottled without calling AWS (default 3s).
	MaxPaceWait time.Duration
}

func (o Options) withDefaults() Options {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.BatchWindow == 0 {
		o.BatchWindow = 20 * time.Millisecond
	}
	if o.BatchMax <= 0 {
		o.BatchMax = 200
	}
	if o.CommandDeliveryTimeout < 30*time.Second {
		o.CommandDeliveryTimeout = 60 * time.Second
	}
	if o.Stats == nil {
		o.Stats = NewStats()
	}
	if o.RetryMode == "" {
		o.RetryMode = aws.RetryModeAdaptive
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 3 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxPaceWait <= 0 {
		o.MaxPaceWait = 3 * time.Second
	}
	return o
}

// AWS implements Cloud over the narrow SDK interfaces.
type AWS struct {
	ec2   EC2API
	ecs   ECSAPI
	ssm   SSMAPI
	opts  Options
	retry *retryers
	pace  *pacer

	byTag *batch.Batcher[tagQuery, []Volume]
	byID  *batch.Batcher[string, Volume]
	// fences merges the reads DetachVolume makes right before its request
	// (never from a session: each is a request sent after its caller asked).
	fences *batch.Batcher[string, Volume]
	// tasksByID and cisByARN merge concurrent DescribeTasks and
	// DescribeContainerInstances of one cluster (ECS takes 100 of each).
	tasksByID *batch.Batcher[clusterRef, Task]
	cisByARN  *batch.Batcher[clusterRef, ContainerInstance]
	// instancesByID merges concurrent DescribeInstances by instance id.
	instancesByID *batch.Batcher[string, Instance]
	// unmounts merges concurrent unmounts of one instance's volumes into
	// one SendCommand: "document/instance id" -> its batcher.
	unmounts    *lru.Cache[string, *batch.Batcher[Unmount, string]]
	unmountsMu  sync.Mutex
	unmountWait func(ctx context.Context, full <-chan struct{}) // tests hold the window open

	// Process-lifetime answers that never change, each bounded (LRU).
	taskDefs *lru.Cache[string, TaskDefinition]    // immutable revisions
	ident    *lru.Cache[string, Volume]            // volume id -> what never changes about it
	finished *lru.Cache[string, Command]           // "command id/instance id" -> its final answer
	ciOfEC2  *lru.Cache[string, ContainerInstance] // "cluster/i-…" -> its registration (ARN, AZ)
	stopped  *lru.Cache[string, Task]              // task ARN -> its final state (a STOPPED task never changes)
	// ciHome: which EC2 instance and AZ a container instance is (never
	// changes); its Status is left empty (unknown).
	ciHome *lru.Cache[string, ContainerInstance]
	// recentCIs: container instances as last described, with when; the
	// process's invocations share them while they are younger than MaxAge,
	// the bound a session's answers keep to (so a drain's many events read
	// a host's state once, not once per invocation).
	recentCIs *lru.Cache[string, answered[ContainerInstance]]
	// taskHome: what never changes about a task (definition, container
	// instance, creation, group); its statuses are left empty (unknown).
	taskHome *lru.Cache[string, Task]
}

var _ Cloud = (*AWS)(nil)

// New builds the SDK clients from cfg. The endpoint comes from cfg:
// config.LoadDefaultConfig reads AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_EC2
// etc.), so the same binary talks to the local world or to AWS.
func New(cfg aws.Config, o Options) *AWS {
	if o.Limits == nil {
		o.Limits = DocumentedLimits()
	}
	o = o.withDefaults()
	count := countRequests(o.Stats)
	return NewWithClients(
		ec2.NewFromConfig(cfg, func(eo *ec2.Options) { eo.APIOptions = append(eo.APIOptions, count); eo.Retryer = newRetryer(o, false) }),
		ecs.NewFromConfig(cfg, func(eo *ecs.Options) { eo.APIOptions = append(eo.APIOptions, count); eo.Retryer = newRetryer(o, false) }),
		ssm.NewFromConfig(cfg, func(so *ssm.Options) { so.APIOptions = append(so.APIOptions, count); so.Retryer = newRetryer(o, false) }),
		o)
}

// NewWithClients wraps given clients (real ones, or fakes in tests).
func NewWithClients(e EC2API, c ECSAPI, s SSMAPI, o Options) *AWS {
	o = o.withDefaults()
	a := &AWS{ec2: e, ecs: c, ssm: s, opts: o, retry: newRetryers(o), pace: newPacer(o.Limits, o.Now, o.MaxPaceWait),
		taskDefs: newLRU[string, TaskDefinition](maxTaskDefs), ident: newLRU[string, Volume](maxIdentities),
		finished: newLRU[string, Command](maxFinished), ciOfEC2: newLRU[string, ContainerInstance](maxIdentities),
		stopped: newLRU[string, Task](maxIdentities), ciHome: newLRU[string, ContainerInstance](maxIdentities),
		recentCIs: newLRU[string, answered[ContainerInstance]](maxIdentities),
		taskHome:  newLRU[string, Task](maxIdentities)}
	window := o.BatchWindow
	if window < 0 {
		window = 0
	}
	a.byTag = batch.New(window, o.BatchMax, a.describeByTags)
	a.byID = batch.New(window, o.BatchMax, a.describeByIDs)
	a.fences = batch.New(window, min(o.BatchMax, fenceMax), a.describeFences)
	a.instancesByID = batch.New(window, o.BatchMax, a.describeInstances)
	a.tasksByID = batch.New(window, min(o.BatchMax, ecsDescribeMax), a.describeTaskRefs)
	a.cisByARN = batch.New(window, min(o.BatchMax, ecsDescribeMax), a.describeCIRefs)
	a.unmounts = newLRU[string, *batch.Batcher[Unmount, string]](maxIdentities)
	return a
}

// answered is an answer and when AWS gave it.
type answered[T any] struct {
	v  T
	at time.Time
}

// recent returns c's answer for k if it is younger than MaxAge.
func recent[K comparable, T any](a *AWS, c *lru.Cache[K, answered[T]], k K) (T, bool) {
	if e, ok := c.Get(k); ok && a.opts.Now().Sub(e.at) <= a.opts.MaxAge {
		return e.v, true
	}
	var zero T
	return zero, false
}

// Stats returns the process-wide request counters.
func (a *AWS) Stats() *Stats { return a.opts.Stats }

// fenceMax bounds the ids of one read before DetachVolume (a VolumeIds
// request answers every id it names, unpaged: keep it small).
const fenceMax = 100

// maxIdentities bounds the process-lifetime volume identity cache.
const maxIdentities = 8192

// newLRU is the one bounded cache type of the seam.
func newLRU[K comparable, V any](size int) *lru.Cache[K, V] {
	c, err := lru.New[K, V](size)
	if err != nil { // only for a size < 1
		panic(err)
	}
	return c
}

// learn keeps the identity of volumes seen in an answer.
func (a *AWS) learn(vols ...Volume) {
	for _, v := range vols {
		if v.ID == "" {
			continue
		}
		tags := make(map[string]string, len(v.Tags))
		for k, t := range v.Tags {
			tags[k] = t
		}
		a.ident.Add(v.ID, Volume{ID: v.ID, AZ: v.AZ, CreateTime: v.CreateTime, SizeGiB: v.SizeGiB, Type: v.Type,
			IOPS: v.IOPS, Throughput: v.Throughput, Encrypted: v.Encrypted, KMSKeyID: v.KMSKeyID, Tags: tags, MultiAttach: v.MultiAttach})
	}
}

// KnownVolume implements Cloud.
func (a *AWS) KnownVolume(id string) (Volume, bool) { return a.ident.Get(id) }
