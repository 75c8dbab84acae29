package ec2sim

import (
	"context"
	"sync"
)

// stateChange is one instance state change for Config.InstanceStateChanged.
type stateChange struct{ instanceID, state string }

// notifier hands state changes to Config.InstanceStateChanged in the order
// they happened, on one goroutine and outside s.mu, so the hook may call
// into other simulators (and back into this one).
type notifier struct {
	mu    sync.Mutex
	queue []stateChange
	wake  chan struct{}
}

func newNotifier() *notifier { return &notifier{wake: make(chan struct{}, 1)} }

// push queues a change; the caller holds s.mu, which orders the pushes.
func (n *notifier) push(c stateChange) {
	n.mu.Lock()
	n.queue = append(n.queue, c)
	n.mu.Unlock()
	nudge(n.wake)
}

// run delivers queued changes to hook until ctx ends.
func (n *notifier) run(ctx context.Context, hook func(instanceID, state string)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		}
		n.mu.Lock()
		batch := n.queue
		n.queue = nil
		n.mu.Unlock()
		for _, c := range batch {
			if hook != nil {
				hook(c.instanceID, c.state)
			}
		}
	}
}
