package batch

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Concurrent callers of one batch get one request and each its own
// answer. The window is held open until every distinct key has joined (a
// fact the test reads from the open batch, not a timer); a duplicate key
// that comes after the window closed asks again, so at most one more
// request is allowed, for it alone.
func TestBatcherMergesConcurrentLookups(t *testing.T) {
	var mu sync.Mutex
	var requests [][]string
	b := New(0, 100, func(_ context.Context, keys []string) (map[string]int, error) {
		mu.Lock()
		requests = append(requests, append([]string(nil), keys...))
		mu.Unlock()
		out := map[string]int{}
		for _, k := range keys {
			if k != "missing" {
				out[k] = len(k)
			}
		}
		return out, nil
	})
	release := make(chan struct{})
	b.Wait = func(ctx context.Context, _ <-chan struct{}) {
		select {
		case <-release:
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
		wg.Go(func() {
			v, ok, err := b.Get(context.Background(), k)
			if err != nil {
				t.Error(err)
			}
			answers[i] = answer{v, ok}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b.mu.Lock()
		n := 0
		if b.open != nil {
			n = len(b.open.keys)
		}
		b.mu.Unlock()
		if n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for the 5 distinct keys to join; %d did", n)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if len(requests) == 0 || len(requests[0]) != 5 {
		t.Fatalf("first request %v, want the 5 distinct keys", requests)
	}
	if len(requests) > 2 || len(requests) == 2 && (len(requests[1]) != 1 || requests[1][0] != "bb") {
		t.Fatalf("requests %v: want one for every key, and at most one more for a late duplicate", requests)
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
	b := New(0, 100, func(_ context.Context, keys []string) (map[string]bool, error) {
		runs.Add(1)
		return map[string]bool{keys[0]: true}, nil
	})
	for _, k := range []string{"x", "y"} {
		if v, ok, err := b.Get(context.Background(), k); err != nil || !ok || !v {
			t.Fatalf("%s: %v %v %v", k, v, ok, err)
		}
	}
	if runs.Load() != 2 {
		t.Fatalf("runs %d", runs.Load())
	}
}

// One caller's keys join the open batch together: more than a batch holds
// make full batches and one more, each one request, and the caller gets
// every answer.
func TestBatcherTakesOneCallersKeysInFullBatches(t *testing.T) {
	var requests [][]string
	b := New(0, 2, func(_ context.Context, keys []string) (map[string]int, error) {
		requests = append(requests, append([]string(nil), keys...))
		out := map[string]int{}
		for _, k := range keys {
			out[k] = len(k)
		}
		return out, nil
	})
	got, err := b.GetAll(context.Background(), []string{"a", "bb", "ccc", "bb", "dddd", "eeeee"})
	if err != nil {
		t.Fatal(err)
	}
	if len(requests) != 3 || len(requests[0]) != 2 || len(requests[1]) != 2 || len(requests[2]) != 1 {
		t.Fatalf("requests %v, want two full batches and one of the last key", requests)
	}
	for _, k := range []string{"a", "bb", "ccc", "dddd", "eeeee"} {
		if got[k] != len(k) {
			t.Fatalf("answers %v: %q missing", got, k)
		}
	}
}
