// Package batch merges lookups from concurrent callers into one request, as
// ebs-csi does for DescribeVolumes.
package batch

import (
	"context"
	"sync"
	"time"
)

// Batcher merges lookups from concurrent callers into one request, as
// ebs-csi does for DescribeVolumes: the first caller opens a batch, waits
// for the window (or until the batch is full), and runs one request for
// every key that joined; each caller gets its own key's answer.
type Batcher[K comparable, V any] struct {
	max int
	// Wait is the window: it returns when the window is over, the batch is
	// full, or ctx ends. Tests replace it to hold a batch open.
	Wait func(ctx context.Context, full <-chan struct{})
	run  func(ctx context.Context, keys []K) (map[K]V, error)

	mu   sync.Mutex
	open *batch[K, V]
}

type batch[K comparable, V any] struct {
	keys []K
	seen map[K]bool
	full chan struct{} // closed when max keys joined
	done chan struct{} // closed when results are in
	res  map[K]V
	err  error
}

// New returns a Batcher whose batches wait window for more keys (none
// when window <= 0), hold at most max keys, and are answered by run.
func New[K comparable, V any](window time.Duration, max int, run func(context.Context, []K) (map[K]V, error)) *Batcher[K, V] {
	return &Batcher[K, V]{
		max: max,
		run: run,
		Wait: func(ctx context.Context, full <-chan struct{}) {
			if window <= 0 {
				return
			}
			t := time.NewTimer(window)
			defer t.Stop()
			select {
			case <-t.C:
			case <-full:
			case <-ctx.Done():
			}
		},
	}
}

// Get returns key's answer (ok false when the request did not return it).
func (b *Batcher[K, V]) Get(ctx context.Context, key K) (V, bool, error) {
	got, err := b.GetAll(ctx, []K{key})
	v, ok := got[key]
	return v, ok, err
}

// GetAll returns the answers for keys (those the requests returned). Every
// key joins the open batch first (a full one closes and the next key opens
// another), then this caller leads the batches it opened and waits for the
// others: one caller's keys never split into requests because of it.
func (b *Batcher[K, V]) GetAll(ctx context.Context, keys []K) (map[K]V, error) {
	b.mu.Lock()
	joined := make([]*batch[K, V], 0, 1)
	var led []*batch[K, V]
	in := make(map[K]*batch[K, V], len(keys)) // the batch each key joined
	for _, key := range keys {
		if in[key] != nil {
			continue
		}
		if b.open == nil {
			b.open = &batch[K, V]{seen: map[K]bool{}, full: make(chan struct{}), done: make(chan struct{})}
			led = append(led, b.open)
		}
		p := b.open
		if !p.seen[key] {
			p.seen[key] = true
			p.keys = append(p.keys, key)
			if len(p.keys) >= b.max {
				b.open = nil
				close(p.full)
			}
		}
		in[key] = p
		if len(joined) == 0 || joined[len(joined)-1] != p {
			joined = append(joined, p)
		}
	}
	b.mu.Unlock()

	for _, p := range led {
		b.Wait(ctx, p.full)
		b.mu.Lock()
		if b.open == p {
			b.open = nil
		}
		b.mu.Unlock()
		p.res, p.err = b.run(ctx, p.keys)
		close(p.done)
	}

	out := make(map[K]V, len(keys))
	for _, p := range joined {
		select {
		case <-p.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if p.err != nil {
			return nil, p.err
		}
	}
	for key, p := range in {
		if v, ok := p.res[key]; ok {
			out[key] = v
		}
	}
	return out, nil
}

// Joined is how many keys the open batch holds (0 when none is open): a
// fact tests wait for before they let a window end.
func (b *Batcher[K, V]) Joined() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open == nil {
		return 0
	}
	return len(b.open.keys)
}
