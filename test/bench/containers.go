package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/world/hosts"
	"github.com/tether-ecs/tether/test/world/hosts/engine"
)

// localVolume is the local-driver volume the container-start measurement
// mounts, so the start it times includes a volume Mount, as the
// replacement's does.
const localVolume = "bench-local"

// ContainerStarts times the start of a created busybox container with a
// local volume on the instance's own dockerd, n times one after the other,
// through the same Docker API call the world's hosts start a task's
// containers with: the last step of a handoff once the volume is mounted.
func ContainerStarts(ctx context.Context, h *hosts.Instance, n int) ([]time.Duration, error) {
	var out []time.Duration
	for range n {
		took, err := timedStarts(ctx, h, 1)
		if err != nil {
			return nil, err
		}
		out = append(out, took...)
	}
	return out, nil
}

// ConcurrentContainerStarts times k container starts issued at once on
// the instance: what many replacements landing on one host would see.
func ConcurrentContainerStarts(ctx context.Context, h *hosts.Instance, k int) ([]time.Duration, error) {
	return timedStarts(ctx, h, k)
}

// timedStarts creates k containers, starts them all at once timing each
// start, and removes them.
func timedStarts(ctx context.Context, h *hosts.Instance, k int) (took []time.Duration, err error) {
	c := engine.New(strings.TrimPrefix(h.Machine().DockerHost(), "unix://"))
	defer c.Close()
	if _, err := c.VolumeCreate(ctx, engine.VolumeCreateRequest{Name: localVolume}); err != nil {
		return nil, fmt.Errorf("bench: %s: create volume: %w", h.InstanceID(), err)
	}
	ids := make([]string, 0, k)
	defer func() {
		for _, id := range ids {
			if rerr := c.ContainerRemove(context.WithoutCancel(ctx), id, true); rerr != nil {
				err = errors.Join(err, fmt.Errorf("bench: %s: remove container: %w", h.InstanceID(), rerr))
			}
		}
	}()
	cfg := engine.ContainerConfig{Image: "busybox", Cmd: []string{"true"},
		HostConfig: engine.HostConfig{NetworkMode: "none", Binds: []string{localVolume + ":/data"}}}
	for range k {
		id, err := c.ContainerCreate(ctx, "", cfg)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: create container: %w", h.InstanceID(), err)
		}
		ids = append(ids, id)
	}
	took = make([]time.Duration, k)
	errs := make([]error, k)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			start := time.Now()
			errs[i] = c.ContainerStart(ctx, id)
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bench: %s: start: %w", h.InstanceID(), err)
	}
	return took, nil
}
