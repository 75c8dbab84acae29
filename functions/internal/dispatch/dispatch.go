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

// Config tunes a Dispatcher; zero values take the defaults.
type Config struct {
	// Concurrency bounds Keys and Reconcile calls in flight (default 16:
	// a drain release's end names up to 24 keys, and an invocation of ten
	// such events worked 8 at a time held its queue for 20 s; passes wait on
	// AWS, not on the CPU, and the more run at once, the more of their
	// reads one batched request serves).
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
	defaultConcurrency = 16
	defaultMargin      = 5 * time.Second
	defaultBudget      = 60 * time.Second
)

// Dispatcher is safe for concurrent use; one serves a whole Lambda process.
type Dispatcher struct {
	decoder *eventsrc.Decoder
	rec     Reconciler
	requeue Requeuer
	log     *slog.Logger
	cfg     Config
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
	return &Dispatcher{decoder: decoder, rec: rec, requeue: requeue, log: log, cfg: cfg}
}
