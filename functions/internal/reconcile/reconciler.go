package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/emf"
	"github.com/tether-ecs/tether/internal/volspec"
)

// Timing holds every wait and deadline of the reconciler; zero fields take
// the defaults (numbers from the field: EBS create ~1.5 s median, attach ~4 s,
// detach ~8 s, stuck attach 90 s).
type Timing struct {
	CreateWait time.Duration // look again after CreateVolume (default 3s)
	AttachWait time.Duration // while an attach another pass made is in progress (default 15s)
	DetachWait time.Duration // the longest wait between looks at a detach (default 20s)
	// DetachPoll: the first look at a detach after DetachVolume; later
	// looks back off by half of the time waited so far, up to DetachWait
	// (default 4s: EBS detaches take about 8 s; the detachVolume event,
	// when EC2 sends it, wakes the key sooner).
	DetachPoll  time.Duration
	CommandWait time.Duration // look again soon after a race or a refusal (default 3s)
	// CommandEventWait: after sending an SSM command, and while it runs,
	// if SSM's status-change event does not wake the key first (default 20s).
	CommandEventWait time.Duration
	HolderWait       time.Duration // while a stopping task still holds the volume (default 30s)
	// GrowPoll: the first look at a volume modification tether asked for
	// (default 5s; later looks back off, up to DetachWait). EBS puts a
	// modification in force when it starts optimizing, seconds after the
	// request for most volumes.
	GrowPoll time.Duration
	// MovePoll: between looks at the snapshot of an AZ move (default 15s;
	// EBS takes minutes for a first snapshot of a large volume).
	MovePoll time.Duration
	// DrainDefer: a live draining instance's event names its volumes, and
	// its tasks' STOPPED events will name those they hold moments later:
	// the drain's own look waits this long, and is dropped if another pass
	// of the key ran meanwhile (default 45s, past ECS's default 30 s
	// stopTimeout).
	DrainDefer time.Duration
	// WholeSweep: how often a process's sweep lists every live task of the
	// cluster (default 5m), which finds a task whose family has no tether
	// volume yet and whose events were lost; between those, a sweep lists
	// only the families its volumes' tags name, when that is cheaper.
	WholeSweep time.Duration
	// SweepMotion: a key whose facts (its volumes' attachments, the live
	// tasks naming it) changed since this process's previous sweep, less
	// than this long ago, is being moved by its events: the sweep leaves it
	// to them once, and looks at it the next time whatever it finds
	// (default 2m, two sweep periods).
	SweepMotion  time.Duration
	BusyWait     time.Duration // after unmount answered "busy" (default 10s)
	ConflictWait time.Duration // while a running task elsewhere holds a shared volume (default 15s)
	ThrottleWait time.Duration // after AWS throttled a pass (default 10s)

	// StuckAttach: an attach still "attaching" this long, whose mount found
	// no device on the host, is undone (unmount, then a plain detach) and
	// tried again with another name (default 90s). Never a force detach.
	StuckAttach time.Duration
	// WaitThreshold: a handoff waiting this long on a live host (its
	// unmount running, refused as busy, or its SSM agent silent) counts in
	// the WaitsPastThreshold metric, once (default 2m).
	WaitThreshold    time.Duration
	ConflictDeadline time.Duration // a task waiting this long for a volume held elsewhere fails (default 90s)
	// WaitDeadline: a task waiting this long (from its creation) for a
	// volume that a live host still holds, or that AWS keeps refusing, is
	// stopped with a reason that says what it waited for (default 75s,
	// within the plugin's 90 s Mount wait, so the reason is tether's).
	WaitDeadline    time.Duration
	CommandDeadline time.Duration // a mount command still running this long fails its tasks (default 3m)
	BurnConfirm     time.Duration // a refused client token counts as spent after this (default 5s)
	CreateSettle    time.Duration // a created volume EC2 does not list after this is gone (default 10s)
	MaxRetryAfter   time.Duration // SQS DelaySeconds cap (default 15m)
	// DetachStuck: a detach still in progress after this, with no live task
	// on the instance, is taken to be held up by a filesystem mounted again
	// (a mount that ran after the unmount): unmount again (default 30s).
	DetachStuck time.Duration
	// StaleDecision: a pass that began longer ago than this takes no step
	// (it hands the key back to be looked at afresh): what it read may no
	// longer be true (default 10s).
	StaleDecision time.Duration
	// AttachReadAge: an attach whose copy of the volume was read longer
	// ago than this reads it again first (default 2s): another process's
	// pass may have attached it meanwhile, and EC2's refusal would cost a
	// write from its mutating bucket.
	AttachReadAge time.Duration
	// Fresh: how long an invocation reuses the tasks its triggers named
	// before reading them again (default 3s).
	Fresh time.Duration
	// OperatorGrace: with an operator's force, an unmount still running
	// this long is forced (default 20s); a silent agent, a refused or
	// failed unmount are forced at once.
	OperatorGrace time.Duration
	// OperatorWindow: how long a chain of passes carries out an operator's
	// release (default 10m); then the ordinary rules alone apply.
	OperatorWindow time.Duration
	// AgentRecheck: after an instance's tether-agent was seen to speak
	// another protocol, nothing is attached or mounted there for this long;
	// then the next mount asks again (default 10m).
	AgentRecheck time.Duration
}

func (t Timing) withDefaults() Timing {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.CreateWait, 3*time.Second)
	def(&t.AttachWait, 15*time.Second)
	def(&t.DetachWait, 20*time.Second)
	def(&t.DetachPoll, 4*time.Second)
	def(&t.CommandWait, 3*time.Second)
	def(&t.CommandEventWait, 20*time.Second)
	def(&t.HolderWait, 30*time.Second)
	def(&t.DrainDefer, 45*time.Second)
	def(&t.WholeSweep, 5*time.Minute)
	def(&t.SweepMotion, 2*time.Minute)
	def(&t.GrowPoll, 5*time.Second)
	def(&t.MovePoll, 15*time.Second)
	def(&t.BusyWait, 10*time.Second)
	def(&t.ConflictWait, 15*time.Second)
	def(&t.ThrottleWait, 10*time.Second)
	def(&t.StuckAttach, 90*time.Second)
	def(&t.WaitThreshold, 2*time.Minute)
	def(&t.ConflictDeadline, 90*time.Second)
	def(&t.WaitDeadline, 75*time.Second)
	def(&t.CommandDeadline, 3*time.Minute)
	def(&t.BurnConfirm, 5*time.Second)
	def(&t.CreateSettle, 10*time.Second)
	def(&t.MaxRetryAfter, 15*time.Minute)
	def(&t.DetachStuck, 30*time.Second)
	def(&t.StaleDecision, 10*time.Second)
	def(&t.AttachReadAge, 2*time.Second)
	def(&t.Fresh, 3*time.Second)
	def(&t.AgentRecheck, 10*time.Minute)
	def(&t.OperatorGrace, 20*time.Second)
	def(&t.OperatorWindow, 10*time.Minute)
	return t
}

// Config is what New needs.
type Config struct {
	Cloud   cloud.Cloud // required
	Cluster string      // required: the cluster this deployment serves (TETHER_CLUSTER)
	// SSM document names (TETHER_MOUNT_DOCUMENT, TETHER_UNMOUNT_DOCUMENT).
	MountDocument   string       // required
	UnmountDocument string       // required
	Logger          *slog.Logger // default: JSON on stderr
	Metrics         *emf.Writer  // default: none
	Now             func() time.Time
	Timing          Timing
	// MountAttempts bounds mount commands per attachment before the tasks
	// waiting for the volume are stopped with the error (default 3).
	MountAttempts int
	// MaxGenerations bounds CreateVolume client-token generations (default 16).
	MaxGenerations int
	// Defaults fill in what driverOpts leave out (default volspec.Builtin;
	// TETHER_DEFAULT_VOLUME_TYPE, TETHER_DEFAULT_SIZE_GIB, TETHER_KMS_KEY_ID).
	Defaults volspec.Defaults
	// ExtraTags go on every volume tether creates (TETHER_EXTRA_TAGS):
	// cost allocation, SCPs that require tags at creation.
	ExtraTags map[string]string
	// Health reads EC2's status checks for a fenced host's reason (fenced.go).
	Health HealthReader
}

// Reconciler converges tether volumes. Safe for concurrent use.
type Reconciler struct {
	cloud                 cloud.Cloud
	cluster               string
	mountDoc, unmountDoc  string
	log                   *slog.Logger
	metrics               *emf.Writer
	now                   func() time.Time
	t                     Timing
	mountAttempts, maxGen int
	defaults              volspec.Defaults
	extraTags             map[string]string
	health                HealthReader

	mem *memory  // what this process remembers (memory.go)
	dev *devices // device names per instance (devices.go)
}

// New checks cfg and returns a Reconciler.
func New(cfg Config) (*Reconciler, error) {
	var missing []error
	if cfg.Cloud == nil {
		missing = append(missing, errors.New("Cloud"))
	}
	if cfg.Cluster == "" {
		missing = append(missing, errors.New("Cluster (TETHER_CLUSTER)"))
	}
	if cfg.MountDocument == "" {
		missing = append(missing, errors.New("MountDocument (TETHER_MOUNT_DOCUMENT)"))
	}
	if cfg.UnmountDocument == "" {
		missing = append(missing, errors.New("UnmountDocument (TETHER_UNMOUNT_DOCUMENT)"))
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("reconcile: config lacks %w", errors.Join(missing...))
	}
	if cfg.Defaults == (volspec.Defaults{}) {
		cfg.Defaults = volspec.Builtin()
	}
	if err := cfg.Defaults.Validate(); err != nil {
		return nil, fmt.Errorf("reconcile: default volume (TETHER_DEFAULT_VOLUME_TYPE, TETHER_DEFAULT_SIZE_GIB, TETHER_KMS_KEY_ID): %w", err)
	}
	if err := checkExtraTags(cfg.ExtraTags); err != nil {
		return nil, fmt.Errorf("reconcile: %s: %w", EnvExtraTags, err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MountAttempts <= 0 {
		cfg.MountAttempts = 3
	}
	if cfg.MaxGenerations <= 0 {
		cfg.MaxGenerations = 16
	}
	return &Reconciler{
		cloud: cfg.Cloud, cluster: cfg.Cluster, mountDoc: cfg.MountDocument, unmountDoc: cfg.UnmountDocument,
		log: cfg.Logger, metrics: cfg.Metrics, now: cfg.Now, t: cfg.Timing.withDefaults(),
		mountAttempts: cfg.MountAttempts, maxGen: cfg.MaxGenerations,
		defaults: cfg.Defaults, extraTags: maps.Clone(cfg.ExtraTags), health: cfg.Health,
		mem: newMemory(), dev: newDevices(),
	}, nil
}

// Environment variables NewFromEnv reads.
const (
	EnvCluster          = "TETHER_CLUSTER"
	EnvMountDocument    = "TETHER_MOUNT_DOCUMENT"
	EnvUnmountDocument  = "TETHER_UNMOUNT_DOCUMENT"
	EnvWaitDeadline     = "TETHER_WAIT_DEADLINE"       // optional Go duration, e.g. 75s
	EnvConflictDeadline = "TETHER_CONFLICT_DEADLINE"   // optional Go duration
	EnvDefaultType      = "TETHER_DEFAULT_VOLUME_TYPE" // optional: gp3, gp2, st1, sc1, standard
	EnvDefaultSize      = "TETHER_DEFAULT_SIZE_GIB"    // optional: GiB
	EnvKMSKeyID         = "TETHER_KMS_KEY_ID"          // optional: the default KMS key ("": the account's)
	EnvExtraTags        = "TETHER_EXTRA_TAGS"          // optional: JSON object of tags for every volume tether creates
)

// NewFromEnv builds the AWS clients from awsCfg (in a Lambda main,
// config.LoadDefaultConfig: region, credentials and AWS_ENDPOINT_URL; in the
// local world, the world's endpoint) and a Reconciler configured from the
// environment, logging JSON to logs and metrics (EMF) to metrics.
func NewFromEnv(ctx context.Context, getenv func(string) string, awsCfg aws.Config, logs, metrics io.Writer) (*Reconciler, error) {
	var err error
	var t Timing
	for _, d := range []struct {
		env string
		dst *time.Duration
	}{{EnvWaitDeadline, &t.WaitDeadline}, {EnvConflictDeadline, &t.ConflictDeadline}} {
		if v := getenv(d.env); v != "" {
			if *d.dst, err = time.ParseDuration(v); err != nil || *d.dst <= 0 {
				return nil, fmt.Errorf("reconcile: %s=%q: want a positive duration such as 2m", d.env, v)
			}
		}
	}
	defaults := volspec.Builtin()
	if v := getenv(EnvDefaultType); v != "" {
		defaults.VolumeType = v
	}
	if v := getenv(EnvDefaultSize); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("reconcile: %s=%q: want a positive number of GiB", EnvDefaultSize, v)
		}
		defaults.SizeGiB = int32(n)
	}
	defaults.KMSKeyID = getenv(EnvKMSKeyID)
	var extra map[string]string
	if v := getenv(EnvExtraTags); v != "" {
		if err := json.Unmarshal([]byte(v), &extra); err != nil {
			return nil, fmt.Errorf("reconcile: %s: want a JSON object of string values: %w", EnvExtraTags, err)
		}
	}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	return New(Config{
		Defaults:        defaults,
		ExtraTags:       extra,
		Cloud:           cloud.New(awsCfg, cloud.Options{}),
		Cluster:         getenv(EnvCluster),
		MountDocument:   getenv(EnvMountDocument),
		UnmountDocument: getenv(EnvUnmountDocument),
		Logger:          log,
		Metrics:         emf.New(metrics, "Tether", nil),
		Timing:          t,
		Health:          cloud.NewHosts(awsCfg, cloud.Options{}),
	})
}

// invocation is what one Lambda invocation learnt from its triggers.
type invocation struct {
	mu           sync.Mutex
	hints        map[Key]hint
	events       map[Key][]string
	named        map[string]bool       // task ARNs triggers named (their state is read fresh once)
	versions     map[string]*taskNote  // task events of this invocation and their keys
	tasks        map[string]cloud.Task // those tasks, once described
	readAt       time.Time             // when (zero: not yet); read again after Timing.Fresh
	volumeEvents map[Key]VolumeChanged // the latest EBS notification per key
	releases     map[Key]Release       // operator releases asked for in this invocation
	// origins: the kinds of trigger that named each key in this
	// invocation (see pass.deferDrain and pass.awaitCommand).
	origins map[Key]origin
	// drainedFrom: the live draining instance whose event named each
	// key (see pass.deferDrain).
	drainedFrom map[Key]string
	// drained: the live draining instances the invocation's events named,
	// with their volumes (see ReleaseDrained).
	drained map[string]drainedInstance
	// commands: a document's commands on an instance, listed once for the
	// invocation's passes (see pass.releaseUnderWay).
	commands map[commandsQuery][]cloud.Command
}

type commandsQuery struct {
	document, instance string
	since              time.Time
}

// commandsOn lists doc's commands on an instance since a time, once per
// invocation: the drain's looks at one instance's volumes come back
// together, and one listing answers them all.
func (inv *invocation) commandsOn(ctx context.Context, c cloud.Cloud, doc, instance string, since time.Time) ([]cloud.Command, error) {
	q := commandsQuery{document: doc, instance: instance, since: since.Truncate(time.Minute)}
	inv.mu.Lock()
	cmds, ok := inv.commands[q]
	inv.mu.Unlock()
	if ok {
		return cmds, nil
	}
	cmds, err := c.Commands(ctx, doc, instance, q.since)
	if err != nil {
		return nil, err
	}
	inv.mu.Lock()
	inv.commands[q] = cmds
	inv.mu.Unlock()
	return cmds, nil
}

type invocationKey struct{}
type eventIDKey struct{}

// Invocation returns ctx carrying one invocation's caches: the AWS answers
// it already has (cloud.NewSession), the hints of Retry triggers and the
// tasks and event ids the triggers named. Call it once per Lambda
// invocation and use the result for every Keys and Reconcile of that
// invocation. Without it each call works alone: still correct, only slower
// (and Retry hints are then lost).
func (r *Reconciler) Invocation(ctx context.Context) context.Context {
	ctx = cloud.NewSession(ctx)
	return context.WithValue(ctx, invocationKey{}, &invocation{
		hints: map[Key]hint{}, events: map[Key][]string{}, named: map[string]bool{}, tasks: map[string]cloud.Task{},
		versions: map[string]*taskNote{}, volumeEvents: map[Key]VolumeChanged{},
		origins: map[Key]origin{}, releases: map[Key]Release{}, drainedFrom: map[Key]string{}, drained: map[string]drainedInstance{},
		commands: map[commandsQuery][]cloud.Command{},
	})
}

// Requests returns the AWS requests made so far with ctx's invocation, per
// "service:Operation" (nil without one).
func (r *Reconciler) Requests(ctx context.Context) map[string]int {
	if st := cloud.SessionStats(ctx); st != nil {
		return st.Snapshot().Calls
	}
	return nil
}

// WithEventID tags ctx with the id of the event a trigger came from; Keys
// records it so that every log line of the keys' passes names the event.
func WithEventID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, eventIDKey{}, id)
}

func invocationFrom(ctx context.Context) *invocation {
	inv, _ := ctx.Value(invocationKey{}).(*invocation)
	return inv
}

// seen keeps a task's state from an event of this invocation (the newest
// version wins). Callers hold inv.mu.
func (inv *invocation) seen(t cloud.Task) {
	if old, ok := inv.tasks[t.ARN]; !ok || t.Version >= old.Version {
		inv.tasks[t.ARN] = t
	}
}

// origin is a set of the kinds of trigger that named a key.
type origin uint8

const (
	byDrain origin = 1 << iota // a live draining instance's event
	byTask                     // an ECS task event
	byRetry                    // a retry of tether's own
	byOther                    // anything else
)

// noteOrigin remembers that a trigger of kind o named k.
func (inv *invocation) noteOrigin(k Key, o origin) {
	if inv == nil {
		return
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.origins[k] |= o
}

// namedOnlyBy: every trigger that named k in this invocation was of kind o.
// namedBy reports whether a trigger of kind o named k in this invocation.
func (inv *invocation) namedBy(k Key, o origin) bool {
	if inv == nil {
		return false
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.origins[k]&o != 0
}

func (inv *invocation) namedOnlyBy(k Key, o origin) bool {
	if inv == nil {
		return false
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.origins[k] == o
}

func (inv *invocation) isDrainOnly(k Key) bool { return inv.namedOnlyBy(k, byDrain) }
func (inv *invocation) isRetryOnly(k Key) bool { return inv.namedOnlyBy(k, byRetry) }
func (inv *invocation) isTaskOnly(k Key) bool  { return inv.namedOnlyBy(k, byTask) }

// noteDrained remembers the live draining instance whose event named k.
func (inv *invocation) noteDrained(k Key, instance string) {
	if inv == nil {
		return
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.drainedFrom[k] = instance
}

func (inv *invocation) drainedInstance(k Key) string {
	if inv == nil {
		return ""
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.drainedFrom[k]
}

func (inv *invocation) note(ctx context.Context, k Key) {
	id, _ := ctx.Value(eventIDKey{}).(string)
	if inv == nil || id == "" {
		return
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for _, e := range inv.events[k] {
		if e == id {
			return
		}
	}
	inv.events[k] = append(inv.events[k], id)
}

// checkExtraTags refuses tags EC2 or tether would: keys in EC2's reserved
// aws: prefix, tether's own keys (tether:*, Name), and EC2's lengths (key
// 1-128, value 0-256 characters; EC2 User Guide, "Tag restrictions"). At
// most 40, so tether's own tags fit under EC2's 50 per resource.
func checkExtraTags(tags map[string]string) error {
	if len(tags) > 40 {
		return fmt.Errorf("%d tags: at most 40 (EC2 allows 50 per volume and tether writes up to 8)", len(tags))
	}
	for k, v := range tags {
		lk := strings.ToLower(k)
		switch {
		case k == "" || len([]rune(k)) > 128:
			return fmt.Errorf("tag key %q: want 1 to 128 characters", k)
		case len([]rune(v)) > 256:
			return fmt.Errorf("tag %q: value longer than 256 characters", k)
		case strings.HasPrefix(lk, "aws:"):
			return fmt.Errorf("tag key %q: the aws: prefix is reserved by AWS", k)
		case strings.HasPrefix(lk, "tether:") || k == cloud.TagName:
			return fmt.Errorf("tag key %q: tether sets this tag itself", k)
		}
	}
	return nil
}
