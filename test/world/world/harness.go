package world

import (
	"bytes"
	"context"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// StartT is Start for tests: the world's logs go to a buffer that is
// printed, with the functions' output and the real hosts' tether-agent
// logs, if the test fails; t.Cleanup closes the world and fails the test
// if anything is left behind. Options.Logger, if set, also gets the logs.
func StartT(t testing.TB, o Options) *World {
	t.Helper()
	logs := &syncBuffer{}
	h := slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})
	if o.Logger != nil {
		o.Logger = slog.New(slog.NewMultiHandler(h, o.Logger.Handler()))
	} else {
		o.Logger = slog.New(h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	w, err := Start(ctx, o)
	if err != nil {
		t.Logf("world log:\n%s", logs.tail(300))
		t.Fatalf("world: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			w.dump(t, logs)
		}
		if err := w.Close(); err != nil {
			t.Errorf("world close: %v", err)
		}
	})
	return w
}

// dump prints what a failed test needs to see.
func (w *World) dump(t testing.TB, logs *syncBuffer) {
	t.Helper()
	t.Logf("world log (last lines):\n%s", logs.tail(400))
	out := w.FunctionOutput()
	for _, id := range slices.Sorted(maps.Keys(out)) {
		t.Logf("function %s output (last lines):\n%s", id, tailLines(out[id], 300))
	}
	agents := w.AgentLogs()
	for _, id := range slices.Sorted(maps.Keys(agents)) {
		if b, err := os.ReadFile(agents[id]); err == nil {
			t.Logf("%s tether-agent log (last lines):\n%s", id, tailLines(string(b), 150))
		}
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return tailLines(b.buf.String(), n)
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
