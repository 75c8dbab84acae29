// Package fsys decides what to do with a block device that should hold a
// tether volume, and does it: probe for signatures (blkid), make a
// filesystem only on a blank device, check an existing one before a
// read-write mount, and grow it when the device grew.
//
// Every program fsys runs goes through a Runner, so the decision logic is
// tested with scripted commands and exit codes, and with real tools against
// real images.
package fsys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
)

// Result is what one program run produced. A non-zero ExitCode is data,
// not an error: blkid and fsck speak through their exit codes.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// Runner runs a program with argv only (never through a shell). err is set
// only when the program could not be run or was cut short by ctx.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) (Result, error)
}

// ErrToolMissing means a program fsys needs is not installed.
var ErrToolMissing = errors.New("program not found")

// ExecRunner runs programs with os/exec. Stdin is /dev/null, so a tool that
// would ask a question gets no answer. A program is never killed mid-run:
// when ctx ends it gets SIGTERM (mkfs, e2fsck and resize2fs stop at a safe
// point on it) and Run waits for it to exit; SIGKILL could leave a
// half-written filesystem.
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, name string, args ...string) (Result, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %s: %w", ErrToolMissing, name, err)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 0 // wait for the program, however long it takes after SIGTERM
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return res, fmt.Errorf("%s: %w", name, ctx.Err())
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		res.ExitCode = exitErr.ExitCode()
	default:
		return res, fmt.Errorf("run %s: %w", name, err)
	}
	return res, nil
}

// commandError describes a program that failed, with its output.
func commandError(name string, args []string, res Result) error {
	out := strings.TrimSpace(string(res.Stderr))
	if out == "" {
		out = strings.TrimSpace(string(res.Stdout))
	}
	return fmt.Errorf("%s %s: exit %d: %s", name, strings.Join(args, " "), res.ExitCode, out)
}
