package sandbox

import (
	"context"
	"testing"
)

// Test helpers, in pairs with the error-returning calls (as moby's
// internal/testutil/daemon does): each fails the test with the machine's id
// in the message and registers its own cleanup.

// NewT is New for tests: the machine is closed by t.Cleanup, and a failed
// Close fails the test.
func NewT(t testing.TB, o Options) *Machine {
	t.Helper()
	m, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("machine %s: %v", o.ID, err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("machine %s: %v", o.ID, err)
		}
	})
	return m
}

// StartDockerdT is StartDockerd for tests.
func (m *Machine) StartDockerdT(t testing.TB, o DockerdOptions) {
	t.Helper()
	if err := m.StartDockerd(context.Background(), o); err != nil {
		t.Fatalf("machine %s: %v", m.id, err)
	}
}

// ImportBusyboxT builds (or reuses) the busybox rootfs and imports it as
// "busybox:latest".
func (m *Machine) ImportBusyboxT(t testing.TB) {
	t.Helper()
	tarPath, err := BusyboxRootfs(context.Background(), "")
	if err != nil {
		t.Fatalf("machine %s: %v", m.id, err)
	}
	if err := m.ImportImage(context.Background(), tarPath, "busybox"); err != nil {
		t.Fatalf("machine %s: %v", m.id, err)
	}
}

// AttachLoopT is AttachLoop for tests; the loop goes with the machine.
func (m *Machine) AttachLoopT(t testing.TB, backingFile, volumeID string) string {
	t.Helper()
	dev, err := m.AttachLoop(context.Background(), backingFile, volumeID, "")
	if err != nil {
		t.Fatalf("machine %s: %v", m.id, err)
	}
	return dev
}
