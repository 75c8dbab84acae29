package driver

import (
	"context"
	"fmt"
	"time"

	"github.com/tether-ecs/tether/agent/plugin"
)

var _ plugin.Holders = (*Driver)(nil)

// Holders answers plugin.HolderMethod for the unmount command: the mount
// IDs dockerd got a Mount answer for and has not unmounted (a container
// that is starting counts from the moment its Mount is answered, before
// dockerd shows it running), the adopted uses, and the Mounts in progress.
//
// It does not take the volume's lock: the asking command holds the host's
// flock on the volume, so no Mount or Unmount can change the counts while
// it asks, and waiting for the lock here would wait for the asker. A volume
// not touched since this process started is counted as a rebuild would,
// without keeping the result (only a holder of the lock may).
func (d *Driver) Holders(ctx context.Context, req plugin.HoldersRequest) (plugin.HoldersResponse, error) {
	if err := validName(req.Name); err != nil {
		return plugin.HoldersResponse{}, err
	}
	resp := plugin.HoldersResponse{Holders: []string{}, Since: d.started.UTC().Format(time.RFC3339Nano)}
	d.mu.Lock()
	st, ok := d.volumes[req.Name]
	resp.Pending = d.pending[req.Name]
	dockerName := req.Name
	for alias, name := range d.aliases {
		if name == req.Name {
			dockerName = alias
		}
	}
	d.mu.Unlock()
	log := d.log.With("volume", req.Name, "dockerVolume", dockerName)
	if id, bound, err := d.host.Binding(req.Name); err == nil && bound {
		log = log.With("volumeId", id)
	}
	if ok {
		resp.Holders, resp.Adopted = st.holders()
		log.Info("holders counted", "mountIds", resp.Holders, "adopted", resp.Adopted, "pending", resp.Pending)
		return resp, nil
	}
	_, adopted, err := d.usesAtStart(ctx, req.Name, dockerName)
	if err != nil {
		return plugin.HoldersResponse{}, fmt.Errorf("tether: %w", err)
	}
	resp.Adopted = adopted
	log.Info("holders counted as a rebuild would (volume not touched since the agent started)", "mountIds", resp.Holders, "adopted", adopted, "pending", resp.Pending)
	return resp, nil
}
