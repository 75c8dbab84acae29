package hostops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tether-ecs/tether/agent/dockerapi"
	"github.com/tether-ecs/tether/agent/plugin"
)

// PluginHolders asks the running plugin (tether-agent serve) who holds a
// tether volume (plugin.HolderMethod).
type PluginHolders interface {
	Holders(ctx context.Context, name string) (plugin.HoldersResponse, error)
}

// PluginSocket is PluginHolders for the plugin serving on this unix socket.
type PluginSocket string

// Holders asks the plugin on the socket.
func (s PluginSocket) Holders(ctx context.Context, name string) (plugin.HoldersResponse, error) {
	return plugin.AskHolders(ctx, string(s), name)
}

// errNoPlugin is the answer when the Host was given no plugin to ask.
var errNoPlugin = errors.New("no plugin socket configured")

// holding is who may still need a mounted volume, as the unmount command
// judges it, holding the volume's lock (so no plugin Mount can be answered
// meanwhile).
type holding struct {
	users    []User   // containers that hold the volume or may
	mountIDs []string // the plugin's answered Mounts not yet unmounted
	adopted  int      // the plugin's uses from before its start
	pending  int      // the plugin's Mounts in progress
	asked    bool     // the plugin answered; else users is every container that can still start
}

func (hd holding) busy() bool {
	return len(hd.users) > 0 || len(hd.mountIDs) > 0 || hd.adopted > 0 || hd.pending > 0
}

// holding asks the plugin, then dockerd. The plugin knows every Mount it
// answered since it started: a container that is only "created" in dockerd
// may already hold the volume, and dockerd bind-mounts it once its other
// volumes are mounted. dockerd knows the containers, and their names:
//   - running and paused containers that use the volume always count;
//   - created ones count if they were created before the plugin started
//     (a Mount answered by a previous plugin is unknowable), or when the
//     plugin cannot be asked;
//   - restarting ones count when the plugin cannot be asked (else their
//     next Mount waits for the lock and finds the volume as it is then);
//   - when the plugin reports holders, every container that can still
//     start is named as one that may be the holder.
//
// A list from dockerd that fails is an error, unless the plugin already
// says the volume is held.
func (h *Host) holding(ctx context.Context, log *slog.Logger, name string) (holding, error) {
	var hd holding
	since, perr := h.askPlugin(ctx, log, name, &hd)
	list, err := h.docker.ListContainers(ctx, dockerapi.ListOptions{All: true})
	if errors.Is(err, dockerapi.ErrNoDaemon) {
		log.Warn("no dockerd on this host: no container can use a volume", "error", err.Error())
		list, err = nil, nil
	}
	if err != nil {
		if perr == nil && hd.busy() {
			log.Warn("dockerd cannot name the containers; the plugin's holders alone make the volume busy", "error", err.Error())
			return hd, nil
		}
		return hd, fmt.Errorf("cannot ask dockerd which containers use %s: %w", name, err)
	}
	var mayHold []User
	for _, c := range list {
		if !h.references(c, name) {
			continue
		}
		u := User{ID: c.ID, Name: c.Name(), State: c.State}
		switch c.State {
		case "running", "paused":
			hd.users = append(hd.users, u)
		case "created":
			if !hd.asked || since.IsZero() || c.Created <= since.Unix() {
				hd.users = append(hd.users, u)
			} else {
				mayHold = append(mayHold, u)
			}
		case "restarting":
			if !hd.asked {
				hd.users = append(hd.users, u)
			} else {
				mayHold = append(mayHold, u)
			}
		}
	}
	if len(hd.mountIDs) > 0 || hd.adopted > 0 || hd.pending > 0 {
		hd.users = append(hd.users, mayHold...)
	}
	return hd, nil
}

// askPlugin fills hd from the plugin's answer and returns when the plugin
// started (zero when it did not say), or why it could not be asked.
func (h *Host) askPlugin(ctx context.Context, log *slog.Logger, name string, hd *holding) (time.Time, error) {
	err := errNoPlugin
	var resp plugin.HoldersResponse
	if h.plugin != nil {
		resp, err = h.plugin.Holders(ctx, name)
	}
	if err != nil {
		log.Warn("the plugin could not be asked who holds the volume; counting every container that can still start (created, restarting, running, paused) as a user",
			"error", err.Error())
		return time.Time{}, err
	}
	hd.asked, hd.mountIDs, hd.adopted, hd.pending = true, resp.Holders, resp.Adopted, resp.Pending
	since, perr := time.Parse(time.RFC3339Nano, resp.Since)
	if perr != nil {
		since = time.Time{} // every created container counts
	}
	log.Info("the plugin says who holds the volume", "mountIds", resp.Holders, "adopted", resp.Adopted,
		"pending", resp.Pending, "pluginSince", resp.Since)
	return since, nil
}

// references reports whether container c uses tether volume NAME: by its
// Docker volume name, by a bind of its mount point (or below), or as the
// task-scoped Docker volume of c's ECS task.
func (h *Host) references(c dockerapi.Container, name string) bool {
	mp := h.Mountpoint(name)
	for _, m := range c.Mounts {
		if m.Name == name || m.Source == mp || strings.HasPrefix(m.Source, mp+"/") {
			return true
		}
		if m.Type == "volume" && strings.HasPrefix(m.Name, "ecs-") {
			if tn, ok, _ := taskVolumeName(m.Name, c.Labels); ok && tn == name {
				return true
			}
		}
	}
	return false
}
