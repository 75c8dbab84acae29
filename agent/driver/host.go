package driver

import (
	"context"
	"errors"
)

// ErrNotAttached is what Host.MountAttached returns (wrapped, with what it
// looked for) when the device of the bound EBS volume is not on this host.
var ErrNotAttached = errors.New("EBS volume not attached to this instance")

// Host is what the driver needs from the machine: the kernel's mount table,
// the bindings and mounts that `tether-agent mount` shares with it, and
// dockerd's view of containers. agent/hostops implements it; tests use fakes.
//
// Names are tether names (the directory under <root>/volumes) except where a
// method says dockerName. Methods that change the host (MountAttached,
// Unmount) are called with the volume's Lock held and do not take it.
type Host interface {
	// Lock takes the per-volume lock <root>/locks/NAME (flock, shared with
	// the mount and unmount commands) until unlock is called; it waits at
	// most until ctx ends.
	Lock(ctx context.Context, name string) (unlock func(), err error)

	// IsMounted reports whether a filesystem is mounted at
	// <root>/volumes/NAME (the kernel's mount table, not a file), and from
	// which device.
	IsMounted(name string) (device string, mounted bool, err error)

	// MountedVolume reports whether the bound volume's device is what is
	// mounted at <root>/volumes/NAME (device numbers compared); an error
	// when something else is mounted there.
	MountedVolume(name string) (bool, error)

	// Binding is the EBS volume id last mounted under NAME
	// (<root>/bindings/NAME); ok is false when there is none.
	Binding(name string) (volumeID string, ok bool, err error)

	// MountAttached mounts the bound volume at <root>/volumes/NAME if its
	// device is attached to this host (after the same checks as the mount
	// command: identity, fsck, never a format). It returns an error wrapping
	// ErrNotAttached, saying which device it looked for, when the device is
	// not there or the unmount command released the volume (only the
	// reconciler's next mount may mount it again), and nil when the volume
	// is already mounted.
	MountAttached(ctx context.Context, name string) error

	// Unmount flushes and unmounts <root>/volumes/NAME; the device stays
	// attached. It does not ask dockerd whether containers use the volume:
	// the driver has decided that.
	Unmount(ctx context.Context, name string) error

	// ContainersUsing lists the containers that have the Docker volume
	// dockerName mounted now (running or paused), from dockerd's container
	// list (never inspect: dockerd holds a container's lock while it calls
	// the plugin, so inspecting that container would wait for this call).
	ContainersUsing(ctx context.Context, dockerName string) ([]ContainerUse, error)

	// TaskVolumeName maps an ECS task-scoped Docker volume name
	// (ecs-<family>-<revision>-<volume>-<hex>) to the tether name the
	// reconciler mounts it under (task-<task id>-<volume>), through the
	// com.amazonaws.ecs.task-arn label of a container (in any state) that
	// uses dockerName; from dockerd's container list, for the same reason.
	// ok is false when no such container exists: the name is then not a
	// task volume (or not yet used) and is its own tether name.
	TaskVolumeName(ctx context.Context, dockerName string) (name string, ok bool, err error)

	// TasksUsing lists the ECS task ARNs (com.amazonaws.ecs.task-arn) of
	// the containers that use the Docker volume dockerName and have not
	// ended (created, running, paused, restarting), from dockerd's
	// container list. Nil when dockerd cannot be reached.
	TasksUsing(ctx context.Context, dockerName string) ([]string, error)
}

// ContainerUse is one container that has a volume mounted.
type ContainerUse struct {
	ContainerID string
	// Mounts is how many of the container's mount points use the volume
	// (docker run -v v:/a -v v:/b mounts it twice, each with its own
	// plugin Mount).
	Mounts int
}
