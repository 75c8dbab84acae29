package cloud

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

// Concurrent callers of one batch get one request and each its own answer;
// the batch closes when full, so the test does not depend on timing.
func TestBatcherMergesConcurrentLookups(t *testing.T) {
	var runs atomic.Int32
	var got []string
	b := newBatcher(0, 5, func(_ context.Context, keys []string) (map[string]int, error) {
		runs.Add(1)
		got = append([]string(nil), keys...)
		out := map[string]int{}
		for i, k := range keys {
			if k != "missing" {
				out[k] = len(k) + i*0
			}
		}
		return out, nil
	})
	// Hold the window open until the batch is full.
	b.wait = func(ctx context.Context, full <-chan struct{}) {
		select {
		case <-full:
		case <-ctx.Done():
		}
	}
	keys := []string{"a", "bb", "ccc", "bb", "missing", "dddd"}
	type answer struct {
		v  int
		ok bool
	}
	answers := make([]answer, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, ok, err := b.get(context.Background(), k)
			if err != nil {
				t.Error(err)
			}
			answers[i] = answer{v, ok}
		}()
	}
	wg.Wait()
	if runs.Load() != 1 {
		t.Fatalf("want one request for %d concurrent lookups, got %d", len(keys), runs.Load())
	}
	if len(got) != 5 {
		t.Fatalf("want the 5 distinct keys in the request, got %v", got)
	}
	for i, k := range keys {
		want := answer{len(k), k != "missing"}
		if k == "missing" {
			want.v = 0
		}
		if answers[i] != want {
			t.Errorf("%s: got %+v want %+v", k, answers[i], want)
		}
	}
}

func TestBatcherWithoutWindowAsksAtOnce(t *testing.T) {
	var runs atomic.Int32
	b := newBatcher(0, 100, func(_ context.Context, keys []string) (map[string]bool, error) {
		runs.Add(1)
		return map[string]bool{keys[0]: true}, nil
	})
	for _, k := range []string{"x", "y"} {
		if v, ok, err := b.get(context.Background(), k); err != nil || !ok || !v {
			t.Fatalf("%s: %v %v %v", k, v, ok, err)
		}
	}
	if runs.Load() != 2 {
		t.Fatalf("runs %d", runs.Load())
	}
}
