// Package dispatch runs the reconciler for what a Lambda invocation brings:
// an SQS batch (answered with a partial batch response) or one event handed
// over directly (the sweep schedule). It decodes each message
// (eventsrc), asks the reconciler which keys the triggers touch, reconciles
// every key once per invocation with bounded concurrency, hands keys that
// cannot converge yet back to SQS with a delay, and finishes before the
// Lambda deadline.
//
// Outcomes per message:
//   - decoded, every key done or handed back: acknowledged;
//   - foreign, malformed or hostile (eventsrc.SkipError): logged, acknowledged;
//   - any other error, or work cut short by the deadline: reported in
//     batchItemFailures, so SQS delivers it again after the visibility
//     timeout (and to the dead-letter queue after maxReceiveCount).
package dispatch

import (
	"context"
	"log/slog"
	"time"

	"github.com/tether-ecs/tether/functions/internal/batch"
	"github.com/tether-ecs/tether/functions/internal/eventsrc"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// Reconciler is what dispatch needs of the reconciler core.
type Reconciler interface {
	// Keys says which keys a trigger touches.
	Keys(ctx context.Context, t reconcile.Trigger) ([]reconcile.Key, error)
	// Reconcile takes the next safe step for one key.
	Reconcile(ctx context.Context, k reconcile.Key) (reconcile.Result, error)
}

// Requeuer hands a key back for a later pass.
type Requeuer interface {
	Requeue(ctx context.Context, key reconcile.Key, hint string, after time.Duration) error
}

// BundleRequeuer hands several keys back in one message, all with one
// delay (SQSRequeuer): their next passes then share an invocation, and its
// reads (one DescribeVolumes for every detach they poll, say).
type BundleRequeuer interface {
	Requeuer
	RequeueBundle(ctx context.Context, items []reconcile.Retry, after time.Duration) error
}

// Config tunes a Dispatcher; zero values take the defaults.
type Config struct {
	// BundleWindow: how long a key handed back waits for others of its
	// invocation to join its message (default 100ms; negative: one message
	// per key). Only with a BundleRequeuer.
	BundleWindow time.Duration
	// BundleMax bounds the keys that wait together (default 100; they go
	// out in messages of eventsrc.MaxBundle).
	BundleMax int
	// Concurrency bounds Keys and Reconcile calls in flight (default 8).
	Concurrency int
	// Margin is how long before the Lambda deadline dispatch stops starting
	// work and cancels what runs; it answers by half the margin before the
	// deadline even if a call ignores its context (default 5s).
	Margin time.Duration
	// Budget bounds an invocation whose context has no deadline (local
	// runs, tests) (default 60s).
	Budget time.Duration
}

const (
	defaultBundleWindow = 100 * time.Millisecond
	defaultBundleMax    = 100
	defaultConcurrency  = 8
	defaultMargin       = 5 * time.Second
	defaultBudget       = 60 * time.Second
)

// Dispatcher is safe for concurrent use; one serves a whole Lambda process.
type Dispatcher struct {
	decoder *eventsrc.Decoder
	rec     Reconciler
	requeue Requeuer
	log     *slog.Logger
	cfg     Config
	// bundles gathers the keys handed back at about the same time (nil
	// without a BundleRequeuer or with a negative BundleWindow).
	bundles *batch.Batcher[handBack, error]
}

// New returns a Dispatcher. log gets one JSON line per message, per key and
// per invocation.
func New(decoder *eventsrc.Decoder, rec Reconciler, requeue Requeuer, log *slog.Logger, cfg Config) *Dispatcher {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = defaultConcurrency
	}
	if cfg.Margin <= 0 {
		cfg.Margin = defaultMargin
	}
	if cfg.Budget <= 0 {
		cfg.Budget = defaultBudget
	}
	if cfg.BundleWindow == 0 {
		cfg.BundleWindow = defaultBundleWindow
	}
	if cfg.BundleMax <= 0 {
		cfg.BundleMax = defaultBundleMax
	}
	d := &Dispatcher{decoder: decoder, rec: rec, requeue: requeue, log: log, cfg: cfg}
	if br, ok := requeue.(BundleRequeuer); ok && cfg.BundleWindow > 0 {
		d.bundles = batch.New(cfg.BundleWindow, cfg.BundleMax, func(ctx context.Context, hbs []handBack) (map[handBack]error, error) {
			return sendBundles(ctx, br, hbs), nil
		})
	}
	return d
}
