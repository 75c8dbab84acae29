package hosts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"syscall"
	"time"

	"github.com/tether-ecs/tether/test/world/worldapi"
)

// ErrScriptTimeout is returned (with the partial result) by RunShellScript
// when the script outlives its timeout; it also matches
// context.DeadlineExceeded.
var ErrScriptTimeout = fmt.Errorf("script timed out: %w", context.DeadlineExceeded)

// RunShellScript runs script with /bin/sh -c inside the instance, as root,
// with the instance's PATH (tether-agent's directory first), the way SSM's
// aws:runShellScript does. A non-zero exit is a result, not an error; on
// timeout the script's process group is killed and the error wraps
// ErrScriptTimeout (ExitCode -1).
func (in *Instance) RunShellScript(ctx context.Context, script string, timeout time.Duration) (worldapi.CommandResult, error) {
	return in.RunShellScriptEnv(ctx, script, nil, timeout)
}

var _ worldapi.ScriptEnvRunner = (*Instance)(nil)

// RunShellScriptEnv is RunShellScript with env added to the instance's
// environment (worldapi.ScriptEnvRunner).
func (in *Instance) RunShellScriptEnv(ctx context.Context, script string, env map[string]string, timeout time.Duration) (worldapi.CommandResult, error) {
	if err := in.alive(); err != nil {
		return worldapi.CommandResult{}, err
	}
	if timeout <= 0 {
		timeout = time.Hour // SSM's default executionTimeout
	}
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := in.m.Command(context.Background(), "/bin/sh", "-c", script)
	cmd.Env = in.env()
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	cmd.Dir = "/"
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	res := worldapi.CommandResult{Started: time.Now().UTC()}
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("instance %s: run script: %w", in.cfg.InstanceID, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-runCtx.Done():
		// The whole group: the script's children (tether-agent mount) too.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		res.Ended = time.Now().UTC()
		res.Stdout, res.Stderr, res.ExitCode = stdout.String(), stderr.String(), -1
		if ctx.Err() != nil {
			return res, fmt.Errorf("instance %s: script: %w", in.cfg.InstanceID, ctx.Err())
		}
		return res, fmt.Errorf("instance %s: after %s: %w", in.cfg.InstanceID, timeout, ErrScriptTimeout)
	}
	res.Ended = time.Now().UTC()
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	if err := in.alive(); err != nil {
		return res, err // the instance died under the script
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
		if res.ExitCode < 0 { // killed by a signal: the shell's convention
			if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				res.ExitCode = 128 + int(ws.Signal())
			}
		}
	default:
		return res, fmt.Errorf("instance %s: run script: %w", in.cfg.InstanceID, err)
	}
	return res, nil
}
