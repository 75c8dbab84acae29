// Package dockerapi is the little of the Docker Engine API tether-agent
// needs: the container list, to learn which containers use a volume and
// which ECS task a container belongs to. It never inspects a container:
// dockerd holds a container's lock while it calls a volume plugin, so an
// inspect from inside a plugin call could wait for itself.
package dockerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// DefaultHost is dockerd's socket when DOCKER_HOST is unset.
const DefaultHost = "unix:///var/run/docker.sock"

// RequestTimeout bounds one call to dockerd.
const RequestTimeout = 20 * time.Second

// ErrNoDaemon means no dockerd listens at the configured address (the
// socket file does not exist): on this host no container runs.
var ErrNoDaemon = errors.New("no docker daemon")

// Client talks to one dockerd.
type Client struct {
	http *http.Client
	base string // URL prefix, e.g. http://docker
	host string // as configured, for messages
}

// New returns a client for dockerHost (unix:///path or tcp://host:port;
// "" means DefaultHost).
func New(dockerHost string) (*Client, error) {
	if dockerHost == "" {
		dockerHost = DefaultHost
	}
	u, err := url.Parse(dockerHost)
	if err != nil {
		return nil, fmt.Errorf("DOCKER_HOST %q: %w", dockerHost, err)
	}
	transport := &http.Transport{MaxIdleConns: 2, IdleConnTimeout: 30 * time.Second}
	c := &Client{host: dockerHost}
	switch u.Scheme {
	case "unix":
		socket := u.Path
		transport.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}
		c.base = "http://docker"
	case "tcp", "http":
		c.base = "http://" + u.Host
	default:
		return nil, fmt.Errorf("DOCKER_HOST %q: want unix:// or tcp://", dockerHost)
	}
	// Bounded: a dockerd that accepts but does not answer (starting, or
	// itself waiting on this plugin) must not hang a mount or unmount.
	c.http = &http.Client{Transport: transport, Timeout: RequestTimeout}
	return c, nil
}

// FromEnv returns a client for $DOCKER_HOST.
func FromEnv() (*Client, error) { return New(os.Getenv("DOCKER_HOST")) }

// Mount is one mount of a container, as the list reports it.
type Mount struct {
	Type        string `json:"Type"` // volume, bind, tmpfs, ...
	Name        string `json:"Name"` // the Docker volume name (Type volume)
	Source      string `json:"Source"`
	Destination string `json:"Destination"`
	Driver      string `json:"Driver"`
}

// Container is one entry of GET /containers/json.
type Container struct {
	ID    string   `json:"Id"`
	Names []string `json:"Names"`
	State string   `json:"State"` // created, running, paused, restarting, exited, ...
	// Created is when the container was created, in Unix seconds.
	Created int64             `json:"Created"`
	Labels  map[string]string `json:"Labels"`
	Mounts  []Mount           `json:"Mounts"`
}

// Name is the container's name without Docker's leading slash.
func (c Container) Name() string {
	if len(c.Names) == 0 {
		return ""
	}
	return strings.TrimPrefix(c.Names[0], "/")
}

// ListOptions selects containers.
type ListOptions struct {
	All    bool   // include containers that are not running (created, exited, ...)
	Volume string // only containers that mount this Docker volume (name)
}

// ListContainers returns the containers dockerd reports. Without All, only
// running (and paused) containers.
func (c *Client) ListContainers(ctx context.Context, o ListOptions) ([]Container, error) {
	q := url.Values{}
	if o.All {
		q.Set("all", "1")
	}
	if o.Volume != "" {
		filters, err := json.Marshal(map[string][]string{"volume": {o.Volume}})
		if err != nil {
			return nil, err
		}
		q.Set("filters", string(filters))
	}
	var out []Container
	if err := c.get(ctx, "/containers/json?"+q.Encode(), &out); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *Client) get(ctx context.Context, path string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("%w at %s: %w", ErrNoDaemon, c.host, err)
		}
		return fmt.Errorf("docker %s: %w", c.host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("docker %s: read %s: %w", c.host, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var msg struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(body, &msg)
		return fmt.Errorf("docker %s: GET %s: %s: %s", c.host, path, resp.Status, msg.Message)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("docker %s: decode %s: %w", c.host, path, err)
	}
	return nil
}
