// Package testenv checks a test's prerequisites (root, binaries, kernel
// features). Outside CI a missing prerequisite skips the test with the
// reason; in CI (CI=true) it fails it, so a green run never hides a test
// that did not run.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing fails (in CI) or skips the test with why.
func Missing(t testing.TB, why string) {
	t.Helper()
	if InCI() {
		t.Fatalf("prerequisite missing in CI: %s", why)
	}
	t.Skipf("prerequisite missing: %s", why)
}

// RequireRoot needs uid 0 (loop devices, mounts, namespaces, dockerd).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "must run as root")
	}
}

// RequireCommands needs every named program on PATH.
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			Missing(t, n+" not on PATH")
		}
	}
}

// Short reports whether only fast tests should run (go test -short); used
// by slow suites to shrink, never to skip in CI.
func Short() bool { return testing.Short() && !InCI() }
