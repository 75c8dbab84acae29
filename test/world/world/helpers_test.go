package world_test

import (
	"bytes"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/boot"
	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/lambdarun"
	"github.com/tether-ecs/tether/test/world/world"
)

// artifacts are built once per test binary and removed by TestMain.
var artifacts struct {
	dir                 string
	agentOnce, bootOnce sync.Once
	agent, bootstraps   string
	agentErr, bootErr   error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if artifacts.dir != "" {
		os.RemoveAll(artifacts.dir)
	}
	os.Exit(code)
}

func artifactsDir() (string, error) {
	if artifacts.dir == "" {
		d, err := os.MkdirTemp("", "world-test-artifacts-")
		if err != nil {
			return "", err
		}
		artifacts.dir = d
	}
	return artifacts.dir, nil
}

// agentBinary is tether-agent, built once.
func agentBinary(t *testing.T) string {
	t.Helper()
	artifacts.agentOnce.Do(func() {
		dir, err := artifactsDir()
		if err != nil {
			artifacts.agentErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		artifacts.agent, artifacts.agentErr = world.BuildAgent(ctx, dir)
	})
	if artifacts.agentErr != nil {
		t.Fatal(artifacts.agentErr)
	}
	return artifacts.agent
}

// bootstraps are the functions' bootstraps, built once; the test needs the
// runtime interface emulator.
func bootstraps(t *testing.T) string {
	t.Helper()
	testenv.RequireCommands(t, "make", "go")
	if _, err := lambdarun.FindRIE(); err != nil {
		testenv.Missing(t, err.Error())
	}
	artifacts.bootOnce.Do(func() {
		dir, err := artifactsDir()
		if err != nil {
			artifacts.bootErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		artifacts.bootstraps = filepath.Join(dir, "functions")
		artifacts.bootErr = world.BuildBootstraps(ctx, artifacts.bootstraps)
	})
	if artifacts.bootErr != nil {
		t.Fatal(artifacts.bootErr)
	}
	return artifacts.bootstraps
}

// requireRealHosts checks what test/world/hosts needs.
func requireRealHosts(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nsenter", "losetup", "dockerd", "busybox", "sleep", "mount", "mkfs.ext4", "blkid")
}

// withFunctions fills in how the functions run for mode.
func withFunctions(t *testing.T, o world.Options, mode world.FunctionsMode) world.Options {
	t.Helper()
	o.Functions = mode
	switch mode {
	case world.EmulatedFunctions:
		o.Bootstraps = bootstraps(t)
	case world.InProcessFunctions:
		o.InProcess = boot.Handler
	}
	return o
}

// ctxT is a context bounded by the test's deadline (or 4 minutes).
func ctxT(t *testing.T) context.Context {
	t.Helper()
	d := 4 * time.Minute
	if dl, ok := t.Deadline(); ok {
		d = min(d, time.Until(dl)-10*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// shell runs a bash script in dir with the given environment (on top of a
// clean PATH and HOME), as a user at a terminal would; it fails the test
// unless the script exits 0 and returns its stdout.
type shell struct {
	t   *testing.T
	dir string
	env map[string]string
}

func newShell(t *testing.T, env map[string]string) *shell {
	t.Helper()
	testenv.RequireCommands(t, "bash", "aws", "jq")
	home := t.TempDir()
	base := map[string]string{"PATH": os.Getenv("PATH"), "HOME": home}
	maps.Copy(base, env)
	return &shell{t: t, dir: t.TempDir(), env: base}
}

func (s *shell) environ() []string {
	out := make([]string, 0, len(s.env))
	for k, v := range s.env {
		out = append(out, k+"="+v)
	}
	return out
}

func (s *shell) run(script string) string {
	s.t.Helper()
	out, stderr, err := s.try(script)
	if err != nil {
		s.t.Fatalf("bash -c %q: %v\nstdout:\n%s\nstderr:\n%s", script, err, out, stderr)
	}
	return out
}

func (s *shell) try(script string) (stdout, stderr string, err error) {
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = s.dir
	cmd.Env = s.environ()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// seedDir holds the seed walkthrough's scripts verbatim (one copy for the
// whole repository).
const seedDir = "../../demo/seed"

// copySeed puts one of the seed's scripts into the shell's directory.
func (s *shell) copySeed(name string, mode os.FileMode) {
	s.t.Helper()
	raw, err := os.ReadFile(filepath.Join(seedDir, name))
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, name), raw, mode); err != nil {
		s.t.Fatal(err)
	}
}

// exports parses `export K=V` lines (get-outputs.sh's output).
func exports(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok && strings.HasPrefix(line, "export ") {
			m[k] = v
		}
	}
	return m
}

// eventually polls cond until it holds or the limit passes, then fails the
// test with what it waited for and the last state seen.
func eventually(t *testing.T, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	for {
		ok, current := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s: %v; last seen: %s", what, ctx.Err(), current)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
