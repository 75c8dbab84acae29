package cloud

import (
	"context"
	"sort"
	"sync"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// Stats counts AWS requests (every attempt, retries included), throttled
// answers and other errors, per "service:Operation".
type Stats struct {
	mu        sync.Mutex
	calls     map[string]int
	throttles map[string]int
	errors    map[string]int
}

// NewStats returns empty counters.
func NewStats() *Stats {
	return &Stats{calls: map[string]int{}, throttles: map[string]int{}, errors: map[string]int{}}
}

func (s *Stats) record(op string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	switch {
	case err == nil:
	case isThrottle(err):
		s.throttles[op]++
	default:
		s.errors[op]++
	}
}

// Snapshot is a copy of the counters.
type Snapshot struct {
	Calls, Throttles, Errors map[string]int
}

// Total sums a counter over operations whose service is svc ("" = all).
func (s Snapshot) Total(m map[string]int, svc string) int {
	n := 0
	for op, c := range m {
		if svc == "" || len(op) > len(svc) && op[:len(svc)] == svc && op[len(svc)] == ':' {
			n += c
		}
	}
	return n
}

// Ops lists the operations seen, sorted.
func (s Snapshot) Ops() []string {
	ops := make([]string, 0, len(s.Calls))
	for op := range s.Calls {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	return ops
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := func(m map[string]int) map[string]int {
		out := make(map[string]int, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	return Snapshot{Calls: cp(s.calls), Throttles: cp(s.throttles), Errors: cp(s.errors)}
}

type statsKey struct{}

// WithStats makes every AWS request made with ctx also count into st (e.g.
// one reconcile pass), besides the Cloud's own counters.
func WithStats(ctx context.Context, st *Stats) context.Context {
	return context.WithValue(ctx, statsKey{}, st)
}

// countRequests is a Finalize middleware placed after the SDK's retry step,
// so it sees every attempt, and every throttled answer the retryer absorbs.
func countRequests(global *Stats) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("TetherCountRequests",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleFinalize(ctx, in)
				op := awsmiddleware.GetServiceID(ctx) + ":" + awsmiddleware.GetOperationName(ctx)
				global.record(op, err)
				if st, ok := ctx.Value(statsKey{}).(*Stats); ok && st != global {
					st.record(op, err)
				}
				if sess := sessionFrom(ctx); sess != nil {
					sess.stats.record(op, err)
				}
				return out, md, err
			}), middleware.After)
	}
}
