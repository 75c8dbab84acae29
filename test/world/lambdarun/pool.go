package lambdarun

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Pool is up to n execution environments of one function: up to n
// invocations run at once (Lambda's concurrency). As Lambda does, it makes
// a new environment only when an invocation arrives and every existing one
// is busy ("Lambda execution environment lifecycle", Lambda Developer
// Guide: Init runs for a new environment; a free one is reused), so a
// function invoked one at a time runs in one environment and a burst pays
// cold starts. Free environments are taken oldest-freed first: which free
// environment Lambda picks is not documented, and this is the choice that
// least favours a process's caches.
type Pool struct {
	cfg  Config
	max  int
	slot chan struct{} // one token per invocation that may run (n)
	mu   sync.Mutex
	fns  []*Function
	idle []*Function // free environments, oldest-freed first
	done bool        // stopped: no new environment
}

// StartPool starts the first environment (a function that cannot start
// fails here, not at its first event) and allows up to n.
func StartPool(ctx context.Context, cfg Config, n int) (*Pool, error) {
	if n < 1 {
		return nil, fmt.Errorf("lambdarun: pool of %d", n)
	}
	p := &Pool{cfg: cfg, max: n, slot: make(chan struct{}, n)}
	f, err := Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	p.fns, p.idle = []*Function{f}, []*Function{f}
	return p, nil
}

// Invoke runs the function on a free environment, starting one when none
// is free and fewer than n exist, else waiting for one.
func (p *Pool) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	select {
	case p.slot <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-p.slot }()
	f, err := p.take(ctx)
	if err != nil {
		return nil, err
	}
	defer p.free(f)
	return f.Invoke(ctx, payload)
}

// take returns a free environment or starts one. Holding a slot, the
// caller is one of at most n running invocations, so a new environment
// never makes more than n.
func (p *Pool) take(ctx context.Context) (*Function, error) {
	p.mu.Lock()
	if len(p.idle) > 0 {
		f := p.idle[0]
		p.idle = p.idle[1:]
		p.mu.Unlock()
		return f, nil
	}
	p.mu.Unlock()
	f, err := Start(ctx, p.cfg)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		_ = f.Stop()
		return nil, errors.New("lambdarun: pool stopped")
	}
	p.fns = append(p.fns, f)
	return f, nil
}

func (p *Pool) free(f *Function) {
	p.mu.Lock()
	p.idle = append(p.idle, f)
	p.mu.Unlock()
}

// Functions returns the pool's environments so far (for InitDuration and Output).
func (p *Pool) Functions() []*Function {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Function(nil), p.fns...)
}

// Stop stops every environment.
func (p *Pool) Stop() error {
	p.mu.Lock()
	p.done = true
	fns := append([]*Function(nil), p.fns...)
	p.mu.Unlock()
	var errs []error
	for _, f := range fns {
		errs = append(errs, f.Stop())
	}
	return errors.Join(errs...)
}
