// Package hosts is what tether does about hosts that go away (issue 13),
// around the reconciler core: the function that runs it (functions/hosts)
// gets EC2's instance state changes and Spot interruption warnings, Auto
// Scaling's termination lifecycle actions for tether's hook, and ECS's
// disconnect events, and
//
//   - holds a terminating group instance (hold.go): drains it in ECS, waits
//     (heartbeating the hook, bounded by a deadline, through its own queue:
//     no Lambda sleeps) until EC2 says none of the cluster's volumes is
//     attached to it, then completes the lifecycle action with CONTINUE;
//     on the deadline it continues too, counted and alarmed, and leaves the
//     volumes to the dead-host rule;
//   - drains a Spot Instance in ECS as soon as EC2 warns (spot.go);
//   - watches an instance whose ECS agent disconnected (watch.go): once EC2
//     has reported its status check impaired past a threshold it is hung;
//     with the opt-in it is stopped (EC2 StopInstances, force), which
//     turns it into the fact the force rule needs; otherwise it stays
//     fenced, counted and alarmed, and the reconciler's waiting tasks say
//     so (reconcile's fenced.go);
//   - hands EC2's state changes to the reconciler, which names the keys of
//     the instance's volumes and moves them on EC2's word (the dead-host
//     rule: detach, forced only once EC2 says stopped or terminated).
//
// Nothing here forces a detach; moving volumes is the reconciler's.
package hosts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/dispatch"
	"github.com/tether-ecs/tether/functions/internal/emf"
	"github.com/tether-ecs/tether/functions/internal/eventsrc"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// Reconciler is what the hosts function needs of the reconciler core
// (*reconcile.Reconciler).
type Reconciler interface {
	dispatch.Reconciler
	Invocation(ctx context.Context) context.Context
	HandBackFailed(ctx context.Context, k reconcile.Key)
}

// Cloud is what the host rules read of EC2 and ECS (cloud.Cloud has it).
type Cloud interface {
	Instance(ctx context.Context, id string) (cloud.Instance, error)
	InstanceVolumes(ctx context.Context, cluster, instanceID string) ([]cloud.Volume, error)
	ContainerInstanceOf(ctx context.Context, cluster, ec2InstanceID string) (cloud.ContainerInstance, error)
	ContainerInstance(ctx context.Context, cluster, arn string) (cloud.ContainerInstance, error)
}

// Actions is what the host rules do (cloud.Hosts).
type Actions interface {
	InstanceHealth(ctx context.Context, id string) (cloud.InstanceHealth, error)
	StopInstance(ctx context.Context, id string) error
	DrainContainerInstance(ctx context.Context, cluster, arn string) error
	RecordHeartbeat(ctx context.Context, a cloud.LifecycleAction) error
	CompleteLifecycleAction(ctx context.Context, a cloud.LifecycleAction, result string) error
}

var (
	_ Reconciler = (*reconcile.Reconciler)(nil)
	_ Cloud      = (cloud.Cloud)(nil)
	_ Actions    = (*cloud.Hosts)(nil)
)

// Hung-host actions (TETHER_HUNG_HOST_ACTION).
const (
	HungNone = "none" // fence: leave the volume where it is, alarm, wait for a person
	HungStop = "stop" // stop the instance (force), so EC2 says stopped and the volume can move
)

// Config tunes the host rules; zero durations take the defaults.
type Config struct {
	Cluster string
	// HookName is tether's termination hook (every group's, the template
	// names them alike); lifecycle actions of other hooks are not tether's.
	// "": no group is held.
	HookName string
	// HoldDeadline: how long after its lifecycle action began a hold waits
	// for the volumes to leave (default 10m).
	HoldDeadline time.Duration
	// HoldPoll: between two passes of a hold (default 5s); each pass
	// heartbeats the hook, so the hook's HeartbeatTimeout must be longer.
	HoldPoll time.Duration
	// HungAction: HungNone (default) or HungStop.
	HungAction string
	// HungThreshold: how long EC2 must have reported an instance's status
	// check impaired, its ECS agent disconnected, before tether takes it
	// for hung (default 5m).
	HungThreshold time.Duration
	// WatchPoll: between two looks at a disconnected instance (default 30s).
	WatchPoll time.Duration
	// WatchLimit: how long a disconnected instance EC2 keeps reporting
	// healthy is watched before tether reports it fenced and stops
	// looking (default HungThreshold + 10m).
	WatchLimit time.Duration
	// QueueURL is the hosts queue, where the next pass of a hold or a
	// watch is sent (TETHER_HOSTS_QUEUE_URL).
	QueueURL string
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HoldDeadline, 10*time.Minute)
	def(&c.HoldPoll, 5*time.Second)
	def(&c.HungThreshold, 5*time.Minute)
	def(&c.WatchPoll, 30*time.Second)
	def(&c.WatchLimit, c.HungThreshold+10*time.Minute)
	if c.HungAction == "" {
		c.HungAction = HungNone
	}
	return c
}

// Core is the hosts function's reconciler: the host rules first, the
// reconciler core for everything else. Safe for concurrent use.
type Core struct {
	rec     Reconciler
	cloud   Cloud
	act     Actions
	send    dispatch.SQSSender
	cfg     Config
	log     *slog.Logger
	metrics *emf.Writer
	now     func() time.Time
	counted *lru.Cache[string, bool] // metrics already emitted for an instance and kind (duplicate events)
}

var _ Reconciler = (*Core)(nil)

// New checks cfg and returns a Core. metrics may be nil; now may be nil
// (time.Now).
func New(rec Reconciler, c Cloud, act Actions, send dispatch.SQSSender, cfg Config, log *slog.Logger, metrics *emf.Writer, now func() time.Time) (*Core, error) {
	cfg = cfg.withDefaults()
	var errs []error
	if rec == nil || c == nil || act == nil || send == nil || log == nil {
		errs = append(errs, errors.New("hosts: New needs a reconciler, a cloud, actions, a sender and a logger"))
	}
	if cfg.Cluster == "" {
		errs = append(errs, errors.New("hosts: no cluster"))
	}
	if cfg.QueueURL == "" {
		errs = append(errs, fmt.Errorf("hosts: %s is not set (the hosts queue's URL)", EnvQueueURL))
	}
	if cfg.HungAction != HungNone && cfg.HungAction != HungStop {
		errs = append(errs, fmt.Errorf("hosts: %s=%q: want %s or %s", EnvHungAction, cfg.HungAction, HungNone, HungStop))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	counted, err := lru.New[string, bool](4096)
	if err != nil {
		return nil, err
	}
	return &Core{rec: rec, cloud: c, act: act, send: send, cfg: cfg, log: log, metrics: metrics, now: now, counted: counted}, nil
}

// Keys implements dispatch.Reconciler. The host rules act here (their work
// is per instance, not per volume) and name no keys; EC2's state changes
// go to the reconciler, which names the keys of the instance's volumes.
func (c *Core) Keys(ctx context.Context, t reconcile.Trigger) ([]reconcile.Key, error) {
	switch t := t.(type) {
	case reconcile.TerminationHold:
		return nil, c.hold(ctx, t)
	case reconcile.HostInterrupted:
		return nil, c.interrupted(ctx, t)
	case reconcile.HostWatch:
		return nil, c.watch(ctx, t)
	case reconcile.InstanceChanged:
		if t.Cluster != c.cfg.Cluster || t.AgentConnected || t.EC2InstanceID == "" {
			return nil, nil // the drain function releases volumes of draining instances
		}
		return nil, c.watch(ctx, reconcile.HostWatch{Cluster: t.Cluster, InstanceID: t.EC2InstanceID, Since: c.now()})
	case reconcile.HostChanged:
		keys, err := c.rec.Keys(ctx, t)
		if err == nil && len(keys) > 0 && (t.State == "stopped" || t.State == "terminated") && c.firstTime(t.InstanceID, "dead") {
			c.log.Warn("instance gone with tether volumes attached: they move on EC2's word", "instance", t.InstanceID, "state", t.State, "volumes", len(keys))
			c.emit(map[string]any{"instance": t.InstanceID, "state": t.State}, emf.Metric{Name: MetricDeadHostHandoffs, Value: float64(len(keys)), Unit: emf.Count})
		}
		return keys, err
	}
	return c.rec.Keys(ctx, t)
}

// Reconcile implements dispatch.Reconciler.
func (c *Core) Reconcile(ctx context.Context, k reconcile.Key) (reconcile.Result, error) {
	return c.rec.Reconcile(ctx, k)
}

// Invocation scopes an invocation's caches (reconcile.Reconciler.Invocation).
func (c *Core) Invocation(ctx context.Context) context.Context { return c.rec.Invocation(ctx) }

// HandBackFailed implements the dispatcher's notifier.
func (c *Core) HandBackFailed(ctx context.Context, k reconcile.Key) { c.rec.HandBackFailed(ctx, k) }

// later sends tether's own message (the next pass of a hold or a watch)
// to the hosts queue, delayed by SQS.
func (c *Core) later(ctx context.Context, body []byte, after time.Duration) error {
	_, err := c.send.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl: aws.String(c.cfg.QueueURL), MessageBody: aws.String(string(body)), DelaySeconds: dispatch.DelaySeconds(after),
	})
	if err != nil {
		return fmt.Errorf("hosts: send to the hosts queue: %w", err)
	}
	return nil
}

// firstTime reports whether this process has not yet counted kind for the
// instance (events arrive twice; metrics should not).
func (c *Core) firstTime(instance, kind string) bool {
	k := instance + "/" + kind
	if _, seen := c.counted.Get(k); seen {
		return false
	}
	c.counted.Add(k, true)
	return true
}

func (c *Core) emit(props map[string]any, ms ...emf.Metric) {
	if c.metrics == nil {
		return
	}
	if err := c.metrics.Emit(map[string]string{"Cluster": c.cfg.Cluster}, props, ms...); err != nil {
		c.log.Warn("could not write metrics", "error", err)
	}
}

// notTethers is a trigger the host rules drop: acknowledged, never retried.
func notTethers(format string, args ...any) error {
	return &eventsrc.SkipError{Reason: fmt.Sprintf(format, args...), Quiet: true}
}

// attachedTo keeps the volumes still attached to instance (in any state
// but detached).
func attachedTo(vols []cloud.Volume, instance string) []cloud.Volume {
	var out []cloud.Volume
	for _, v := range vols {
		for _, a := range v.Attachments {
			if a.InstanceID == instance && a.State != cloud.AttachDetached {
				out = append(out, v)
				break
			}
		}
	}
	return out
}

func volumeIDs(vols []cloud.Volume) []string {
	out := make([]string, len(vols))
	for i, v := range vols {
		out[i] = v.ID
	}
	return out
}

// containerInstance reads the instance's container instance afresh
// (status and agent); ok false when the cluster has none.
func (c *Core) containerInstance(ctx context.Context, instance string) (cloud.ContainerInstance, bool, error) {
	ci, err := c.cloud.ContainerInstanceOf(ctx, c.cfg.Cluster, instance)
	if errors.Is(err, cloud.ErrNotFound) {
		return cloud.ContainerInstance{}, false, nil
	}
	if err != nil {
		return cloud.ContainerInstance{}, false, err
	}
	if ci.Status == "" { // the process knew where it was, not its state
		if ci, err = c.cloud.ContainerInstance(ctx, c.cfg.Cluster, ci.ARN); errors.Is(err, cloud.ErrNotFound) {
			return cloud.ContainerInstance{}, false, nil
		} else if err != nil {
			return cloud.ContainerInstance{}, false, err
		}
	}
	return ci, !ci.Gone(), nil
}
