package hosts_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/hosts"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

func requirePrereqs(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nsenter", "losetup", "dockerd", "busybox", "sleep", "mount")
}

func testenvCommands(t *testing.T, names ...string) {
	t.Helper()
	testenv.RequireCommands(t, names...)
}

// launch starts an instance that t.Cleanup closes (logs shown on failure).
func launch(t *testing.T, id, agent string) *hosts.Instance {
	t.Helper()
	return launchWith(t, id, agent)
}

// launchWith is launch with extra `tether-agent serve` arguments.
func launchWith(t *testing.T, id, agent string, agentArgs ...string) *hosts.Instance {
	t.Helper()
	in, err := hosts.Launch(context.Background(), hosts.Config{
		InstanceID:       id,
		AvailabilityZone: "us-east-1a",
		AgentBinary:      agent,
		AgentArgs:        agentArgs,
		Dir:              t.TempDir(),
	})
	if err != nil {
		t.Fatalf("launch %s: %v", id, err)
	}
	t.Cleanup(func() {
		if t.Failed() && agent != "" {
			if b, err := os.ReadFile(in.AgentLog()); err == nil {
				t.Logf("%s tether-agent log:\n%s", id, b)
			}
		}
		if err := in.Close(); err != nil {
			t.Errorf("close %s: %v", id, err)
		}
	})
	return in
}

var agentBuild struct {
	once sync.Once
	path string
	err  error
}

// tetherAgent builds agent/cmd/tether-agent once per test binary.
func tetherAgent(t *testing.T) string {
	t.Helper()
	agentBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "hosts-agent-")
		if err != nil {
			agentBuild.err = err
			return
		}
		agentBuild.path = filepath.Join(dir, "tether-agent")
		cmd := exec.Command("go", "build", "-o", agentBuild.path, "github.com/tether-ecs/tether/agent/cmd/tether-agent")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentBuild.err = fmt.Errorf("go build tether-agent: %v: %s", err, out)
		}
	})
	if agentBuild.err != nil {
		testenv.Missing(t, agentBuild.err.Error())
	}
	return agentBuild.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if agentBuild.path != "" {
		os.RemoveAll(filepath.Dir(agentBuild.path))
	}
	os.Exit(code)
}

// reports records a task's updates.
type reports struct {
	mu      sync.Mutex
	updates []worldapi.TaskUpdate
	changed chan struct{}
}

func newReports() *reports { return &reports{changed: make(chan struct{}, 1)} }

func (r *reports) add(u worldapi.TaskUpdate) {
	r.mu.Lock()
	r.updates = append(r.updates, u)
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *reports) last() (worldapi.TaskUpdate, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.updates) == 0 {
		return worldapi.TaskUpdate{}, false
	}
	return r.updates[len(r.updates)-1], true
}

func (r *reports) statuses() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, u := range r.updates {
		s = append(s, u.Status)
	}
	return s
}

// waitStatus waits (bounded) until the last report has status.
func (r *reports) waitStatus(t *testing.T, status string, limit time.Duration) worldapi.TaskUpdate {
	t.Helper()
	deadline := time.After(limit)
	for {
		if u, ok := r.last(); ok && u.Status == status {
			return u
		}
		select {
		case <-r.changed:
		case <-deadline:
			u, _ := r.last()
			t.Fatalf("task not %s within %s; reports so far %v, last %+v", status, limit, r.statuses(), u)
		}
	}
}

// eventually polls cond (bounded), saying what it waits for.
func eventually(t *testing.T, what string, limit time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, current := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; current: %s", limit, what, current)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sh runs a script in the instance and fails the test unless it exits 0.
func sh(t *testing.T, in *hosts.Instance, script string) string {
	t.Helper()
	res, err := in.RunShellScript(context.Background(), script, 2*time.Minute)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("on %s: %q: exit %d, err %v\nstdout: %s\nstderr: %s", in.InstanceID(), script, res.ExitCode, err, res.Stdout, res.Stderr)
	}
	return strings.TrimSpace(res.Stdout)
}

// sparseFile makes a volume's backing file, named after the volume as
// tether-agent requires of loop devices.
func sparseFile(t *testing.T, volumeID string, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), volumeID+".img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}
