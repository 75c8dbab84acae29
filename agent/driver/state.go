package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/tether-ecs/tether/internal/volspec"
)

// Who uses a volume, and how that survives a restart of the agent.
//
// dockerd passes an ID with every Mount and the same ID with its Unmount.
// The ID is random per container mount point (moby daemon/volume/mounts,
// MountPoint.Setup: stringid.GenerateRandomID), reused for repeated Mounts
// of a running container (docker cp), and kept only in dockerd's own
// container config: the API (container inspect, list) never shows it. So
// while the agent runs it counts uses by ID exactly, and after a restart it
// cannot learn the IDs already handed out. Instead, the first time a volume
// is touched after a start (or at Restore), its users are rebuilt from what
// cannot lie: the kernel's mount table (is it mounted?) and dockerd's
// running containers (how many mount points of running or paused
// containers use it?). Each such mount point becomes one adopted use.
//
// An Unmount whose ID the agent has seen releases that ID. An Unmount whose
// ID it has never seen is a mount from before the restart: it releases one
// adopted use. With no adopted use left, it is a stray (a duplicate, or a
// mount that failed) and changes nothing. Mounts made after the restart are
// counted by ID as usual, and a repeated Mount of an adopted ID (docker cp
// of a running container) is counted by that ID and released by the first
// Unmount of it, leaving the adopted use for the container's final Unmount.
//
// Before the last use is released for good (Unmount, flush), dockerd's list
// is asked once more: it still shows the stopping container as running (it
// unmounts volumes before it marks the container stopped, and its list is a
// snapshot taken after), so more than one container there means the count
// was short (a container that was still starting during a restart); the
// filesystem then stays mounted and the others are adopted. When that
// question cannot be answered the filesystem also stays mounted: a mount
// left behind is unmounted by the reconciler before it detaches, a
// filesystem pulled from under a running container is lost data.
type users struct {
	byID    map[string]int // mount ID -> Mounts not yet unmounted
	adopted int            // uses found at rebuild, IDs unknowable
}

// How an Unmount's ID was matched.
const (
	releasedKnown   = "known mount ID"
	releasedAdopted = "mount ID from before the restart, matched to an adopted use"
	releasedNothing = "unknown mount ID and no adopted use left: nothing released"
)

func (u *users) total() int {
	n := u.adopted
	for _, c := range u.byID {
		n += c
	}
	return n
}

func (u *users) add(id string) {
	if u.byID == nil {
		u.byID = map[string]int{}
	}
	u.byID[id]++
}

func (u *users) release(id string) string {
	if c, ok := u.byID[id]; ok {
		if c <= 1 {
			delete(u.byID, id)
		} else {
			u.byID[id] = c - 1
		}
		return releasedKnown
	}
	if u.adopted > 0 {
		u.adopted--
		return releasedAdopted
	}
	return releasedNothing
}

// volumeState is what the driver knows of one tether volume. It changes
// only under that volume's lock; mu also lets Holders read it without the
// lock (which the asking unmount command holds).
type volumeState struct {
	mu sync.Mutex
	u  users
}

// addUse counts a Mount of id and returns the uses now.
func (s *volumeState) addUse(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.u.add(id)
	return s.u.total()
}

// releaseUse releases an Unmount of id: how it matched, and the uses left.
func (s *volumeState) releaseUse(id string) (how string, left int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	how = s.u.release(id)
	return how, s.u.total()
}

// adopt changes the adopted uses by n and returns the uses now.
func (s *volumeState) adopt(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.u.adopted += n
	return s.u.total()
}

func (s *volumeState) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.u.total()
}

// holders are the mount IDs in use (sorted) and the adopted uses.
func (s *volumeState) holders() ([]string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.u.byID))
	for id := range s.u.byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, s.u.adopted
}

// lockVolume serialises work on one tether volume: first among the
// driver's own goroutines, then with the mount and unmount commands
// through the host's flock.
func (d *Driver) lockVolume(ctx context.Context, name string) (unlock func(), err error) {
	d.mu.Lock()
	ch, ok := d.locks[name]
	if !ok {
		ch = make(chan struct{}, 1)
		d.locks[name] = ch
	}
	d.mu.Unlock()
	select {
	case ch <- struct{}{}: // free: taken even when ctx has just ended
	default:
		select {
		case ch <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the lock of volume %q: %w", name, ctx.Err())
		}
	}
	hostUnlock, err := d.host.Lock(ctx, name)
	if err != nil {
		<-ch
		return nil, fmt.Errorf("locking volume %q: %w", name, err)
	}
	return func() {
		hostUnlock()
		<-ch
	}, nil
}

// stateLocked returns the volume's state, rebuilding it on first touch.
// dockerName is the Docker name the caller came with. The volume's lock
// must be held.
func (d *Driver) stateLocked(ctx context.Context, log *slog.Logger, name, dockerName string) (*volumeState, error) {
	d.mu.Lock()
	st, ok := d.volumes[name]
	d.mu.Unlock()
	if ok {
		return st, nil
	}
	mounted, adopted, err := d.usesAtStart(ctx, name, dockerName)
	if err != nil && !errors.Is(err, errContainersUnknown) {
		return nil, err
	}
	if err != nil {
		// Counted short; the check before the last unmount corrects it.
		log.Error("mounted volume found, but dockerd cannot say which containers use it; they will be found before it is unmounted",
			"error", err.Error())
	}
	if mounted {
		log.Info("volume state rebuilt from the mount table and dockerd", "mounted", true, "adoptedMounts", adopted)
	}
	st = &volumeState{u: users{adopted: adopted}}
	d.mu.Lock()
	d.volumes[name] = st
	d.mu.Unlock()
	return st, nil
}

// errContainersUnknown marks a rebuild that found the volume mounted but
// could not ask dockerd who uses it.
var errContainersUnknown = errors.New("dockerd cannot say which containers use the volume")

// usesAtStart is what a rebuild adopts: nothing when the volume is not
// mounted, else the mount points of dockerd's running containers that use
// it (see users). It changes nothing.
func (d *Driver) usesAtStart(ctx context.Context, name, dockerName string) (mounted bool, adopted int, err error) {
	_, mounted, err = d.host.IsMounted(name)
	if err != nil {
		return false, 0, fmt.Errorf("volume %q: reading the mount table: %w", name, err)
	}
	if !mounted {
		return false, 0, nil
	}
	uses, err := d.host.ContainersUsing(ctx, dockerName)
	if err != nil {
		return true, 0, fmt.Errorf("volume %q: %w: %w", name, errContainersUnknown, err)
	}
	for _, u := range uses {
		adopted += u.Mounts
	}
	return true, adopted, nil
}

// taskVolumePrefix starts every Docker name the ECS agent gives a
// task-scoped volume; other names are their own tether names, without
// asking dockerd (which keeps container starts of shared volumes cheap).
const taskVolumePrefix = "ecs-"

// tetherName maps a Docker volume name to the tether volume behind it.
func (d *Driver) tetherName(ctx context.Context, dockerName string) (string, error) {
	if !strings.HasPrefix(dockerName, taskVolumePrefix) {
		if d.replicated(dockerName) {
			if name, ok, err := d.replicaName(dockerName); err != nil || ok {
				return name, err
			}
		}
		return dockerName, nil
	}
	if name, ok := d.cachedTetherName(dockerName); ok {
		return name, nil
	}
	name, ok, err := d.host.TaskVolumeName(ctx, dockerName)
	if err != nil {
		return "", fmt.Errorf("docker volume %q: finding its ECS task: %w", dockerName, err)
	}
	if !ok {
		// No container with an ECS task label uses it (yet): not mapped,
		// and not remembered, so that a later call can map it.
		return dockerName, nil
	}
	if err := volspec.ValidateName(name); err != nil {
		return "", fmt.Errorf("docker volume %q: its task volume name: %w", dockerName, err)
	}
	d.mu.Lock()
	d.aliases[dockerName] = name
	d.mu.Unlock()
	d.log.Info("task-scoped docker volume mapped", "dockerVolume", dockerName, "volume", name)
	return name, nil
}

// cachedTetherName maps without asking dockerd: what Get, Path and Remove
// use, so that they stay cheap.
func (d *Driver) cachedTetherName(dockerName string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name, ok := d.aliases[dockerName]
	return name, ok
}

// Restore rebuilds, for every recorded volume mounted on this host, who
// uses it (see users). It is optional: a volume not restored here is
// rebuilt the first time dockerd asks about it. Errors are logged and
// skipped; it returns how many volumes it restored.
func (d *Driver) Restore(ctx context.Context) int {
	recs, err := d.listRecords()
	if err != nil {
		d.log.Error("restore: listing plugin records", "error", err.Error())
		return 0
	}
	n := 0
	for _, rec := range recs {
		log := d.log.With("dockerVolume", rec.Name)
		name, err := d.tetherName(ctx, rec.Name)
		if err != nil {
			log.Error("restore: skipping volume", "error", err.Error())
			continue
		}
		log = log.With("volume", name)
		unlock, err := d.lockVolume(ctx, name)
		if err != nil {
			log.Error("restore: skipping volume", "error", err.Error())
			continue
		}
		_, err = d.stateLocked(ctx, log, name, rec.Name)
		unlock()
		if err != nil {
			log.Error("restore: skipping volume", "error", err.Error())
			continue
		}
		n++
	}
	return n
}
