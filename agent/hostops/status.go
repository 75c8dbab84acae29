package hostops

import (
	"context"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/tether-ecs/tether/agent/dockerapi"
	"github.com/tether-ecs/tether/agent/mounts"
	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/internal/volspec"
)

// VolumeStatus is one tether volume on this host.
type VolumeStatus struct {
	Name       string `json:"name"`
	VolumeID   string `json:"volumeId,omitempty"` // the binding
	Generation int64  `json:"generation,omitempty"`
	Released   bool   `json:"released"`
	Attachment string `json:"attachment,omitempty"`
	Mounted    bool   `json:"mounted"`
	Device     string `json:"device,omitempty"`
	Mountpoint string `json:"mountpoint"`
	FSType     string `json:"fstype,omitempty"`
	SizeBytes  int64  `json:"sizeBytes,omitempty"`
	FreeBytes  int64  `json:"freeBytes,omitempty"`
	// Seal is the mount point's state: "mounted", "sealed" (mode 000 and
	// immutable), "mode-000" (the filesystem lacks the flag), "unsealed"
	// (usable by a container: an older agent's, or someone's hand), or
	// "absent".
	Seal  string `json:"seal"`
	Users []User `json:"users"`
	// UsersError says why users could not be listed.
	UsersError string `json:"usersError,omitempty"`
	// Holders is what the kernel shows holding the volume's device
	// (other mount namespaces, stacked devices, exclusive openers) beyond
	// the mount at Mountpoint.
	Holders []agentproto.Holder `json:"holders,omitempty"`
	// Error says what could not be read about this volume (a corrupt
	// binding, an unreadable mount table); the other volumes are listed.
	Error string `json:"error,omitempty"`
}

// UnboundDevice is an EBS volume attached to this host that no binding
// names: attached for a mount that has not come, or left behind.
type UnboundDevice struct {
	VolumeID string `json:"volumeId"`
	Device   string `json:"device"`
}

// HostStatus is what `tether-agent status` reports.
type HostStatus struct {
	Volumes []VolumeStatus  `json:"volumes"`
	Unbound []UnboundDevice `json:"unbound"`
}

// Status reports every tether volume this host knows (each name with a
// binding or a mount point, mounted or not) and the attached EBS devices
// no binding names. What cannot be read about one volume is its Error.
func (h *Host) Status(ctx context.Context) (HostStatus, error) {
	names := map[string]bool{}
	for _, dir := range []string{"volumes", "bindings"} {
		entries, err := os.ReadDir(filepath.Join(h.root, dir))
		if err != nil {
			return HostStatus{}, err
		}
		for _, e := range entries {
			if volspec.ValidateName(e.Name()) == nil {
				names[e.Name()] = true
			}
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)

	var containers []dockerapi.Container
	var usersErr error
	if len(sorted) > 0 {
		containers, usersErr = h.runningContainers(ctx, h.log)
	}
	out := HostStatus{Volumes: make([]VolumeStatus, 0, len(sorted)), Unbound: []UnboundDevice{}}
	bound := map[string]bool{}
	for _, name := range sorted {
		st := h.volumeStatus(name)
		if st.VolumeID != "" {
			bound[st.VolumeID] = true
		}
		if usersErr != nil {
			st.UsersError = usersErr.Error()
		} else if users := h.usersIn(containers, name); users != nil {
			st.Users = users
		}
		out.Volumes = append(out.Volumes, st)
	}
	for _, a := range h.finder.List() {
		if !bound[a.VolumeID] {
			out.Unbound = append(out.Unbound, UnboundDevice{VolumeID: a.VolumeID, Device: a.Path})
		}
	}
	return out, nil
}

// volumeStatus reads one volume; what fails becomes its Error.
func (h *Host) volumeStatus(name string) VolumeStatus {
	st := VolumeStatus{Name: name, Mountpoint: h.Mountpoint(name), Users: []User{}}
	b, ok, err := h.readBinding(name)
	if err != nil {
		st.Error = err.Error()
	} else if ok {
		st.VolumeID, st.Generation, st.Released, st.Attachment = b.VolumeID, b.Generation, b.Released, b.Attachment
	}
	e, mounted, err := mounts.At(st.Mountpoint)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.Seal = sealState(st.Mountpoint, mounted)
	if mounted {
		st.Mounted, st.Device, st.FSType = true, e.Source, e.FSType
		var fs unix.Statfs_t
		if unix.Statfs(st.Mountpoint, &fs) == nil {
			st.SizeBytes = int64(fs.Blocks) * fs.Bsize
			st.FreeBytes = int64(fs.Bavail) * fs.Bsize
		}
		if ns, err := mounts.MountsInEveryNamespace(e.Dev); err == nil {
			self, _ := os.Readlink("/proc/self/ns/mnt")
			for _, m := range ns {
				if m.Namespace == self && m.Mountpoint == st.Mountpoint {
					continue
				}
				st.Holders = append(st.Holders, agentproto.Holder{Kind: "namespace", ID: m.Namespace, Name: m.Mountpoint, PID: m.PID, Command: m.Command, ContainerID: m.ContainerID})
			}
		}
	}
	return st
}

// sealState describes the mount point (see sealMountpoint).
func sealState(mp string, mounted bool) string {
	if mounted {
		return "mounted"
	}
	fd, err := unix.Open(mp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "absent"
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&0o7777 != 0 {
		return "unsealed"
	}
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	switch {
	case noFlags(err):
		return "mode-000"
	case err == nil && flags&fsImmutableFL != 0:
		return "sealed"
	}
	return "unsealed"
}
