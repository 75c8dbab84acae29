package eventsrc

import (
	"errors"
	"fmt"
)

// SkipError says an input must be dropped and acknowledged, never retried:
// retrying cannot make a foreign or malformed event actionable.
type SkipError struct {
	// Reason says why, for the log.
	Reason string
	// Quiet marks input that is expected and simply not tether's business
	// (a Fargate task, a task not yet placed): logged at debug level.
	// Everything else is poison: logged as a warning.
	Quiet bool
	// Err is the underlying decode error, if any.
	Err error
}

func (e *SkipError) Error() string {
	kind := "poison"
	if e.Quiet {
		kind = "not tether's"
	}
	if e.Err != nil {
		return fmt.Sprintf("skipped (%s): %s: %v", kind, e.Reason, e.Err)
	}
	return fmt.Sprintf("skipped (%s): %s", kind, e.Reason)
}

func (e *SkipError) Unwrap() error { return e.Err }

// AsSkip reports whether err is (or wraps) a *SkipError, and returns it.
func AsSkip(err error) (*SkipError, bool) {
	var s *SkipError
	if errors.As(err, &s) {
		return s, true
	}
	return nil, false
}

func poison(err error, format string, args ...any) *SkipError {
	return &SkipError{Reason: fmt.Sprintf(format, args...), Err: err}
}

func quiet(format string, args ...any) *SkipError {
	return &SkipError{Reason: fmt.Sprintf(format, args...), Quiet: true}
}
