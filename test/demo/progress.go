package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Progress prints a walkthrough so a person can follow it: each step, and
// for each wait what it waits for, what it sees change, and how long it has
// waited so far.
type Progress struct {
	Out io.Writer
	// Every is how often a wait says it is still waiting; default 10s.
	Every time.Duration
	// Poll is how often a wait looks; default 500ms.
	Poll time.Duration
}

// ErrWaitTimeout is wrapped by Wait when its limit passes first.
var ErrWaitTimeout = errors.New("gave up waiting")

// Check reports whether a wait is over and, for the person watching, the
// state it sees now. An error ends the wait: a check returns one only for
// what waiting longer cannot fix.
type Check func(ctx context.Context) (done bool, state string, err error)

// Step announces a step.
func (p Progress) Step(format string, args ...any) {
	fmt.Fprintf(p.Out, "\n==> "+format+"\n", args...)
}

// Say prints one indented line.
func (p Progress) Say(format string, args ...any) {
	fmt.Fprintf(p.Out, "    "+format+"\n", args...)
}

// Wait polls check until it is done, at most limit. It prints what it
// waits for, each new state with the time it appeared, and every Every
// that it is still waiting. It returns how long it waited; on timeout the
// error wraps ErrWaitTimeout and names the last state seen.
func (p Progress) Wait(ctx context.Context, what string, limit time.Duration, check Check) (time.Duration, error) {
	every, poll := p.Every, p.Poll
	if every <= 0 {
		every = 10 * time.Second
	}
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	fmt.Fprintf(p.Out, "    … waiting for %s (at most %s)\n", what, limit)
	last, lastSaid := "", start
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		done, state, err := check(ctx)
		waited := time.Since(start)
		if state != "" && state != last {
			fmt.Fprintf(p.Out, "      [%4.1fs] %s\n", waited.Seconds(), state)
			last, lastSaid = state, time.Now()
		}
		if err != nil && ctx.Err() == nil {
			return waited, fmt.Errorf("waiting for %s: %w", what, err)
		}
		if done && err == nil {
			fmt.Fprintf(p.Out, "    ✓ %s after %.1fs\n", what, waited.Seconds())
			return waited, nil
		}
		if time.Since(lastSaid) >= every {
			fmt.Fprintf(p.Out, "    … waiting for %s (%s)\n", what, waited.Round(time.Second))
			lastSaid = time.Now()
		}
		select {
		case <-ctx.Done():
			waited = time.Since(start)
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return waited, fmt.Errorf("%w for %s after %s; last seen: %s", ErrWaitTimeout, what, waited.Round(time.Second), orNothing(last))
			}
			return waited, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

func orNothing(s string) string {
	if s == "" {
		return "nothing yet"
	}
	return s
}
