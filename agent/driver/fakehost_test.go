package driver

import (
	"context"
	"fmt"
	"sync"
)

// fakeHost is an in-memory Host: a mount table, bindings, attached devices
// and dockerd's containers. Tests change it through its fields under mu.
type fakeHost struct {
	mu          sync.Mutex
	mounted     map[string]bool           // tether name -> mounted
	wrongDevice map[string]bool           // tether name -> another device is mounted there
	bindings    map[string]string         // tether name -> volume id
	attached    map[string]bool           // volume id -> attached here
	containers  map[string][]ContainerUse // docker name -> running users
	tasks       map[string]string         // task docker name -> tether name
	taskARNs    map[string][]string       // docker name -> tasks whose live containers use it

	containersErr    error // ContainersUsing fails with it
	mountAttachedErr error // MountAttached fails with it (not ErrNotAttached)
	mountLies        bool  // MountAttached says yes and mounts nothing

	// onMountAttached runs (without mu) inside MountAttached; mountCtxErr
	// is the error of MountAttached's context after it ran.
	onMountAttached func()
	mountCtxErr     error

	// onBinding runs (without mu) after the n-th Binding call: the
	// reconciler acting while a Mount waits.
	onBinding func(n int)

	calls      map[string]int
	unmounts   []string
	lockHeld   map[string]bool
	lockAbused bool // a host-changing call ran without the lock
}

func newFakeHost() *fakeHost {
	return &fakeHost{
		mounted:     map[string]bool{},
		wrongDevice: map[string]bool{},
		bindings:    map[string]string{},
		attached:    map[string]bool{},
		containers:  map[string][]ContainerUse{},
		tasks:       map[string]string{},
		taskARNs:    map[string][]string{},
		calls:       map[string]int{},
		lockHeld:    map[string]bool{},
	}
}

func (h *fakeHost) count(call string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[call]
}

func (h *fakeHost) isMounted(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mounted[name]
}

func (h *fakeHost) set(f func(h *fakeHost)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h)
}

func (h *fakeHost) Lock(_ context.Context, name string) (func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls["Lock"]++
	if h.lockHeld[name] {
		// The driver's in-process lock must make this impossible.
		h.lockAbused = true
	}
	h.lockHeld[name] = true
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.lockHeld[name] = false
	}, nil
}

func (h *fakeHost) IsMounted(name string) (string, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls["IsMounted"]++
	if h.mounted[name] {
		return "/dev/loop7", true, nil
	}
	return "", false, nil
}

// MountedVolume: mounted[name], unless wrongDevice[name] (something
// else is mounted there).
func (h *fakeHost) MountedVolume(name string) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls["MountedVolume"]++
	if h.wrongDevice[name] {
		return false, fmt.Errorf("another device is mounted at the volume's mount point: /dev/loop9, not %s's device", h.bindings[name])
	}
	return h.mounted[name], nil
}

func (h *fakeHost) Binding(name string) (string, bool, error) {
	h.mu.Lock()
	h.calls["Binding"]++
	n := h.calls["Binding"]
	id, ok := h.bindings[name]
	hook := h.onBinding
	h.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return id, ok, nil
}

func (h *fakeHost) MountAttached(ctx context.Context, name string) error {
	if h.onMountAttached != nil {
		h.onMountAttached()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mountCtxErr = ctx.Err()
	h.calls["MountAttached"]++
	if !h.lockHeld[name] {
		h.lockAbused = true
	}
	if h.mountAttachedErr != nil {
		return h.mountAttachedErr
	}
	id := h.bindings[name]
	if !h.attached[id] {
		return fmt.Errorf("%w: no /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_%s", ErrNotAttached, id[:3]+id[4:])
	}
	if !h.mountLies {
		h.mounted[name] = true
	}
	return nil
}

func (h *fakeHost) Unmount(_ context.Context, name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls["Unmount"]++
	if !h.lockHeld[name] {
		h.lockAbused = true
	}
	h.mounted[name] = false
	h.unmounts = append(h.unmounts, name)
	return nil
}

func (h *fakeHost) ContainersUsing(_ context.Context, dockerName string) ([]ContainerUse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls["ContainersUsing"]++
	if h.containersErr != nil {
		return nil, h.containersErr
	}
	return append([]ContainerUse(nil), h.containers[dockerName]...), nil
}

func (h *fakeHost) TaskVolumeName(_ context.Context, dockerName string) (string, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls["TaskVolumeName"]++
	name, ok := h.tasks[dockerName]
	return name, ok, nil
}

func (h *fakeHost) TasksUsing(_ context.Context, dockerName string) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls["TasksUsing"]++
	return append([]string(nil), h.taskARNs[dockerName]...), nil
}

var _ Host = (*fakeHost)(nil)
