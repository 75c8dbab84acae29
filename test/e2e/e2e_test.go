// Package e2e replays the seed walkthrough the way `make demo` does
// (test/demo: the seed's snippets verbatim in one shell with the real aws
// CLI, get-outputs.sh and drain-instance.sh included, then the seed's
// cleanup) against a world of two real instances in one AZ with tether's
// functions deployed from template.yaml as real bootstraps under the
// Lambda runtime interface emulator, and checks that the task's data
// follows it on the same EBS volume.
//
// TestSeedWalkthroughBusybox runs in `make test`. TestSeedWalkthroughMariaDB
// is `make demo` itself (the mysql image, the seed's SQL with the mariadb
// client) with the instant profile; it runs only with TETHER_E2E_MARIADB=1
// because its first run builds the image with debootstrap.
package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-ecs/tether/test/demo"
	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/lambdarun"
	"github.com/tether-ecs/tether/test/world/world"
)

// built are tether-agent and the bootstraps, built once for the package.
var built struct {
	once              sync.Once
	dir               string
	agent, bootstraps string
	err               error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// requireWorld checks what a world of real instances with emulated
// functions and the seed's scripts need.
func requireWorld(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "go", "make", "bash", "aws", "jq", "nsenter", "losetup", "dockerd", "docker",
		"busybox", "mount", "mkfs.ext4", "blkid")
	if _, err := lambdarun.FindRIE(); err != nil {
		testenv.Missing(t, err.Error())
	}
}

// artifacts builds tether-agent and the functions' bootstraps once.
func artifacts(t *testing.T) (agent, bootstraps string) {
	t.Helper()
	built.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if built.dir, built.err = os.MkdirTemp("", "tether-e2e-"); built.err != nil {
			return
		}
		if built.agent, built.err = world.BuildAgent(ctx, built.dir); built.err != nil {
			return
		}
		built.bootstraps = filepath.Join(built.dir, "functions")
		built.err = world.BuildBootstraps(ctx, built.bootstraps)
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.agent, built.bootstraps
}

// startWorld starts the walkthrough's world: two real instances in one
// AZ, the instant profile, template.yaml's functions as bootstraps under
// the emulator. After the world's own teardown the test fails if a loop
// device, mount or process of it is left.
func startWorld(t *testing.T, o world.Options) *world.World {
	t.Helper()
	o.Instances, o.AZs, o.Hosts = 2, 1, world.RealHosts
	o.AgentBinary, o.Bootstraps = artifacts(t)
	o.Functions = world.EmulatedFunctions
	o.Dir = t.TempDir()
	t.Cleanup(func() {
		// Runs after the world's Close (cleanups run last-registered first).
		if left := demo.Leftovers(o.Dir); len(left) > 0 {
			t.Errorf("the world left behind:\n%s", strings.Join(left, "\n"))
		}
	})
	return world.StartT(t, o)
}

// ctxFor bounds a test's waits by its deadline.
func ctxFor(t *testing.T) context.Context {
	t.Helper()
	d := 4 * time.Minute
	if dl, ok := t.Deadline(); ok {
		d = min(d, time.Until(dl)-15*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// logWriter sends what the walkthrough shows to the test's log, line by
// line (seen with -v or when the test fails).
type logWriter struct {
	t       *testing.T
	mu      sync.Mutex
	partial string
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial += string(b)
	for {
		i := strings.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		w.t.Log(w.partial[:i])
		w.partial = w.partial[i+1:]
	}
}
