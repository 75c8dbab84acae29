package driver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/tether-ecs/tether/internal/volspec"
)

// Per-replica volumes (driverOpt replicas=true). The task definition names
// the shared Docker volume NAME; the reconciler gives each replica task its
// own EBS volume NAME-<N> and mounts it under that name on the task's
// instance (`tether-agent mount --name NAME-<N>`). The driver maps the
// Docker name NAME to the one replica of NAME mounted on this host, as the
// kernel's mount table says. One replica of a name per instance: a second
// one mounted here is ambiguous, and the driver refuses rather than guess
// (the README asks for a distinctInstance placement constraint).

// errReplicaAmbiguous: several replicas of one name are mounted here.
var errReplicaAmbiguous = errors.New("a replicated volume serves one task per instance (place its tasks with a distinctInstance constraint)")

// replicated reports whether the Docker volume dockerName was created with
// replicas=true (its record says so).
func (d *Driver) replicated(dockerName string) bool {
	rec, ok, err := d.readRecord(dockerName)
	if err != nil || !ok {
		return false
	}
	o, err := volspec.ParseDriverOpts(rec.DriverOpts)
	return err == nil && o.Replicas
}

// resolveReplica finds the replica of base mounted on this host; ok false
// when none is (yet).
func (d *Driver) resolveReplica(base string) (name string, ok bool, err error) {
	entries, err := os.ReadDir(filepath.Join(d.root, "volumes"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("volume %q: listing mount points: %w", base, err)
	}
	var found []string
	for _, e := range entries {
		b, _, isReplica := volspec.ParseReplicaName(e.Name())
		if !isReplica || b != base {
			continue
		}
		_, mounted, err := d.host.IsMounted(e.Name())
		if err != nil {
			return "", false, fmt.Errorf("volume %q: reading the mount table: %w", e.Name(), err)
		}
		if mounted {
			found = append(found, e.Name())
		}
	}
	switch len(found) {
	case 0:
		return "", false, nil
	case 1:
		return found[0], true, nil
	}
	slices.Sort(found)
	return "", false, fmt.Errorf("volume %q: %v: %w", base, found, errReplicaAmbiguous)
}

// replicaName maps a replicated Docker name: the replica a container here
// already uses (remembered), else the one mounted here.
func (d *Driver) replicaName(dockerName string) (name string, ok bool, err error) {
	if name, ok := d.cachedTetherName(dockerName); ok {
		if _, mounted, err := d.host.IsMounted(name); err == nil && mounted {
			return name, true, nil
		}
	}
	if name, ok, err = d.resolveReplica(dockerName); err != nil || !ok {
		return "", false, err
	}
	d.mu.Lock()
	d.aliases[dockerName] = name
	d.mu.Unlock()
	return name, true, nil
}

// writeReplicaFile puts the replica's ordinal in volspec.ReplicaFile at the
// root of its filesystem once (the name of a volume never changes its
// ordinal), so the container can read which replica it is.
func (d *Driver) writeReplicaFile(name string) error {
	_, n, ok := volspec.ParseReplicaName(name)
	if !ok {
		return nil
	}
	path := filepath.Join(d.MountPath(name), volspec.ReplicaFile)
	want := strconv.Itoa(n) + "\n"
	if b, err := os.ReadFile(path); err == nil && string(b) == want {
		return nil
	}
	// A temporary file of its own: two containers' Mounts may write at once.
	f, err := os.CreateTemp(filepath.Dir(path), volspec.ReplicaFile+".*")
	if err != nil {
		return err
	}
	_, err = f.WriteString(want)
	if err == nil {
		err = f.Chmod(0o444)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
