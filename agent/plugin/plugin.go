// Package plugin speaks Docker's legacy volume plugin protocol: JSON over
// HTTP POST on a unix socket that dockerd finds in /run/docker/plugins.
//
// The protocol is one small Driver interface whose request and response
// types mirror the wire JSON field for field. Serve owns the HTTP side:
// routing by path, decoding, the {"Err": "..."} answer on failure, logging
// and graceful shutdown. Nothing here knows about EBS; agent/driver does.
//
// How dockerd reads an answer (moby pkg/plugins/client.go, callWithRetry,
// and daemon/volume/drivers/proxy.go, the same in 20.10 and today): a
// non-200 status is never retried and dockerd takes the text of its Err
// field ("VolumeDriver.Mount: <Err>"); a 200 answer is decoded and a
// non-empty Err becomes the error as is. Only failures to reach the socket
// are retried, for up to 30 s. Either way the Err text reaches the user; this
// package answers failures with 500 (400 for a request it cannot decode, 404
// for an endpoint it does not serve) so that the status alone already says
// "failed" to anything reading the socket, and dockerd prefixes the
// endpoint name, which tells the user which step failed.
package plugin

import "context"

// ContentType is the media type of the plugin protocol (moby
// pkg/plugins/transport VersionMimetype); dockerd sends it as Accept.
const ContentType = "application/vnd.docker.plugins.v1.2+json"

// Implements is what Plugin.Activate answers: the plugin kinds served.
const Implements = "VolumeDriver"

// Scopes a driver can declare in Capabilities.
const (
	ScopeLocal  = "local"
	ScopeGlobal = "global"
)

// Driver is a volume driver. Every method gets the request's context, which
// ends when dockerd gives up on the call (it closes the connection) or when
// Serve shuts down; methods that wait must return when it ends.
//
// A returned error becomes {"Err": err.Error()}: its text is what the user
// sees in the docker CLI, so it must say what failed in words a user can act on.
type Driver interface {
	Create(context.Context, CreateRequest) (CreateResponse, error)
	Remove(context.Context, RemoveRequest) (RemoveResponse, error)
	Mount(context.Context, MountRequest) (MountResponse, error)
	Unmount(context.Context, UnmountRequest) (UnmountResponse, error)
	Path(context.Context, PathRequest) (PathResponse, error)
	Get(context.Context, GetRequest) (GetResponse, error)
	List(context.Context, ListRequest) (ListResponse, error)
	Capabilities(context.Context, CapabilitiesRequest) (CapabilitiesResponse, error)
}

// CreateRequest is VolumeDriver.Create: `docker volume create -d DRIVER -o k=v NAME`,
// or a `docker run -v NAME:/path` of a volume dockerd does not know yet (no Opts).
type CreateRequest struct {
	Name string
	Opts map[string]string
}

// CreateResponse carries nothing on success.
type CreateResponse struct{}

// RemoveRequest is VolumeDriver.Remove (`docker volume rm NAME`).
type RemoveRequest struct {
	Name string
}

// RemoveResponse carries nothing on success.
type RemoveResponse struct{}

// MountRequest is VolumeDriver.Mount: a container with this volume starts.
// ID identifies this use (one per container mount point); the same ID comes
// back in the matching Unmount, and dockerd repeats a Mount with the same ID
// when it needs the path again for a running container (docker cp).
type MountRequest struct {
	Name string
	ID   string
}

// MountResponse gives the host path dockerd bind-mounts into the container.
type MountResponse struct {
	Mountpoint string
}

// UnmountRequest is VolumeDriver.Unmount: a use that Mount started ended.
type UnmountRequest struct {
	Name string
	ID   string
}

// UnmountResponse carries nothing on success.
type UnmountResponse struct{}

// PathRequest is VolumeDriver.Path: where the volume is mounted, if it is.
type PathRequest struct {
	Name string
}

// PathResponse is empty when the volume is not mounted.
type PathResponse struct {
	Mountpoint string `json:",omitempty"`
}

// GetRequest is VolumeDriver.Get (docker volume inspect, and several times
// before each container start).
type GetRequest struct {
	Name string
}

// GetResponse describes one volume.
type GetResponse struct {
	Volume *Volume
}

// ListRequest is VolumeDriver.List (docker volume ls); it has no fields.
type ListRequest struct{}

// ListResponse lists every volume the driver knows.
type ListResponse struct {
	Volumes []*Volume
}

// CapabilitiesRequest is VolumeDriver.Capabilities; it has no fields.
type CapabilitiesRequest struct{}

// CapabilitiesResponse declares the driver's scope.
type CapabilitiesResponse struct {
	Capabilities Capability
}

// Capability is the driver's scope: ScopeGlobal when a volume is the same
// volume on every host (dockerd then leaves cluster-wide bookkeeping to the driver).
type Capability struct {
	Scope string
}

// Volume is one volume as Get and List show it. dockerd decodes CreatedAt
// as a time.Time, so it is omitted rather than sent empty.
type Volume struct {
	Name       string
	Mountpoint string         `json:",omitempty"`
	CreatedAt  string         `json:",omitempty"` // RFC 3339
	Status     map[string]any `json:",omitempty"` // shown by docker volume inspect
}

// ActivateRequest is Plugin.Activate; dockerd sends no body.
type ActivateRequest struct{}

// ActivateResponse is the answer to Plugin.Activate, dockerd's handshake.
type ActivateResponse struct {
	Implements []string
}

// ErrorResponse is the body of every failed call.
type ErrorResponse struct {
	Err string
}

// The volume and mount ID of a request, for the log line of every request.
func (r CreateRequest) volume() string   { return r.Name }
func (r RemoveRequest) volume() string   { return r.Name }
func (r MountRequest) volume() string    { return r.Name }
func (r UnmountRequest) volume() string  { return r.Name }
func (r PathRequest) volume() string     { return r.Name }
func (r GetRequest) volume() string      { return r.Name }
func (r MountRequest) mountID() string   { return r.ID }
func (r UnmountRequest) mountID() string { return r.ID }

// HolderMethod is tether's own endpoint on the plugin socket (dockerd never
// calls it): the unmount command asks the running plugin who holds a
// volume, under the volume's lock, before it unmounts.
const HolderMethod = "Tether.Holders"

// Holders is implemented by a driver that can say who holds a volume; the
// handler serves HolderMethod for it.
type Holders interface {
	Holders(context.Context, HoldersRequest) (HoldersResponse, error)
}

// HoldersRequest names a tether volume (not a Docker name).
type HoldersRequest struct {
	Name string
}

// HoldersResponse is who holds the volume as the plugin counts them.
type HoldersResponse struct {
	// Holders are the mount IDs dockerd got a Mount answer for and has not
	// unmounted yet (a container starting or running).
	Holders []string
	// Adopted is how many uses the plugin found at its start (from the
	// mount table and dockerd's running containers), IDs unknowable.
	Adopted int
	// Pending is how many Mounts of the volume are in progress (waiting
	// for its lock or its device): containers about to hold it.
	Pending int
	// Since is when this plugin process started counting (RFC 3339): a
	// container created before it may hold a Mount answered by a previous
	// one, which it cannot know.
	Since string `json:",omitempty"`
	Err   string
}

func (r HoldersRequest) volume() string { return r.Name }
