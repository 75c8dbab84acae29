package hostops

import (
	"context"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/tether-ecs/tether/agent/dockerapi"
	"github.com/tether-ecs/tether/agent/mounts"
	"github.com/tether-ecs/tether/internal/volspec"
)

// VolumeStatus is one tether volume on this host.
type VolumeStatus struct {
	Name       string `json:"name"`
	VolumeID   string `json:"volumeId,omitempty"` // the binding
	Mounted    bool   `json:"mounted"`
	Device     string `json:"device,omitempty"`
	Mountpoint string `json:"mountpoint"`
	FSType     string `json:"fstype,omitempty"`
	SizeBytes  int64  `json:"sizeBytes,omitempty"`
	FreeBytes  int64  `json:"freeBytes,omitempty"`
	Users      []User `json:"users"`
	// UsersError says why users could not be listed.
	UsersError string `json:"usersError,omitempty"`
}

// Status reports every tether volume this host knows: each name with a
// binding or a mount point, mounted or not.
func (h *Host) Status(ctx context.Context) ([]VolumeStatus, error) {
	names := map[string]bool{}
	for _, dir := range []string{"volumes", "bindings"} {
		entries, err := os.ReadDir(filepath.Join(h.root, dir))
		if err != nil {
			return nil, err
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
	out := make([]VolumeStatus, 0, len(sorted))
	for _, name := range sorted {
		st := VolumeStatus{Name: name, Mountpoint: h.Mountpoint(name), Users: []User{}}
		id, _, err := h.Binding(name)
		if err != nil {
			return nil, err
		}
		st.VolumeID = id
		e, mounted, err := mounts.At(st.Mountpoint)
		if err != nil {
			return nil, err
		}
		if mounted {
			st.Mounted, st.Device, st.FSType = true, e.Source, e.FSType
			var fs unix.Statfs_t
			if unix.Statfs(st.Mountpoint, &fs) == nil {
				st.SizeBytes = int64(fs.Blocks) * fs.Bsize
				st.FreeBytes = int64(fs.Bavail) * fs.Bsize
			}
		}
		if usersErr != nil {
			st.UsersError = usersErr.Error()
		} else if users := h.usersIn(containers, name); users != nil {
			st.Users = users
		}
		out = append(out, st)
	}
	return out, nil
}
