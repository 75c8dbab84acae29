package lambdarun

import (
	"context"
	"errors"
	"fmt"
)

// Pool is n execution environments of one function: up to n invocations
// run at once, each on an idle environment (Lambda's concurrency).
type Pool struct {
	fns  []*Function
	idle chan *Function
}

// StartPool starts n emulators with the same configuration.
func StartPool(ctx context.Context, cfg Config, n int) (*Pool, error) {
	if n < 1 {
		return nil, fmt.Errorf("lambdarun: pool of %d", n)
	}
	p := &Pool{idle: make(chan *Function, n)}
	for range n {
		f, err := Start(ctx, cfg)
		if err != nil {
			_ = p.Stop()
			return nil, err
		}
		p.fns = append(p.fns, f)
		p.idle <- f
	}
	return p, nil
}

// Invoke runs the function on an idle environment, waiting for one.
func (p *Pool) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	select {
	case f := <-p.idle:
		defer func() { p.idle <- f }()
		return f.Invoke(ctx, payload)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Functions returns the pool's environments (for InitDuration and Output).
func (p *Pool) Functions() []*Function { return append([]*Function(nil), p.fns...) }

// Stop stops every environment.
func (p *Pool) Stop() error {
	var errs []error
	for _, f := range p.fns {
		errs = append(errs, f.Stop())
	}
	return errors.Join(errs...)
}
