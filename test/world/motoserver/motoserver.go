// Package motoserver runs moto's server mode (python3 -m moto.server) on a
// free loopback port, for contract tests that hold a simulator to what moto
// answers.
package motoserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/tether-ecs/tether/test/testenv"
)

// ErrMissing means python3 or its moto module (with the server extra) is
// not installed.
var ErrMissing = errors.New("python3 module moto (server mode) is not installed")

// Server is one running moto.
type Server struct {
	URL  string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	log  *bytes.Buffer // read only once the process has exited
}

// StartWithError starts moto and waits (bounded by ctx and by a minute)
// until it answers; on failure nothing is left running and the error
// carries moto's output.
func StartWithError(ctx context.Context) (*Server, error) {
	if err := exec.CommandContext(ctx, "python3", "-c", "import moto.server").Run(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMissing, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), done: make(chan struct{}), log: &bytes.Buffer{}}
	s.cmd = exec.Command("python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // moto's workers die with it
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	if err := s.waitReady(ctx, time.Minute); err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("moto on %s: %w\n%s", s.URL, err, s.log.String())
	}
	return s, nil
}

// waitReady polls moto's own API until it answers, the process exits or
// the wait runs out.
func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/moto-api/", nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			return nil
		}
		select {
		case <-s.done:
			return errors.New("moto exited before it answered")
		case <-ctx.Done():
			return fmt.Errorf("waiting for GET /moto-api/ to answer: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop ends moto's process group: SIGTERM, then SIGKILL after 5 s.
func (s *Server) Stop() error {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	if err := syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill moto (pid %d): %w", s.cmd.Process.Pid, err)
	}
	<-s.done
	return nil
}

// Start starts moto for the test and returns its URL; it is stopped when
// the test ends. Without python3 or moto the test is skipped outside CI and
// fails in CI (testenv).
func Start(t testing.TB) string {
	t.Helper()
	testenv.RequireCommands(t, "python3")
	s, err := StartWithError(context.Background())
	switch {
	case errors.Is(err, ErrMissing):
		testenv.Missing(t, err.Error())
	case err != nil:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s.URL
}
