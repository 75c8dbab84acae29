// Package engine is a small typed client of the Docker Engine HTTP API over
// a unix socket: the calls the ECS agent makes for a task (volumes,
// containers, waits) and image loading, nothing else. Errors from the
// daemon read as the Docker client prints them ("Error response from
// daemon: ..."), because the ECS agent passes that text on as a task's
// stopped reason.
package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// APIVersion is the Engine API version the client speaks: dockerd 20.10's
// newest, which later daemons still accept.
const APIVersion = "1.41"

// ErrNotFound matches (errors.Is) an *APIError with status 404.
var ErrNotFound = errors.New("not found")

// APIError is a non-2xx answer from the daemon.
type APIError struct {
	StatusCode int
	Message    string
}

func (e *APIError) Error() string { return "Error response from daemon: " + e.Message }

// Is makes errors.Is(err, ErrNotFound) true for a 404.
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.StatusCode == http.StatusNotFound
}

// Client talks to one dockerd.
type Client struct {
	socket string
	http   *http.Client
}

// New returns a client for the daemon listening on socket (a path).
func New(socket string) *Client {
	return &Client{socket: socket, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}}}
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// do sends a request and decodes a JSON answer into out (nil: discard).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	resp, err := c.send(ctx, method, path, query, in, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// send returns the response of a 2xx answer (the caller closes its body);
// any other status becomes an *APIError.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, in any, contentType string) (*http.Response, error) {
	var body io.Reader
	if r, ok := in.(io.Reader); ok {
		body = r
	} else if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
		contentType = "application/json"
	}
	u := "http://docker/v" + APIVersion + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s on %s: %w", method, path, c.socket, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var msg struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &msg) != nil || msg.Message == "" {
		msg.Message = strings.TrimSpace(string(b))
	}
	return nil, &APIError{StatusCode: resp.StatusCode, Message: msg.Message}
}

// Ping checks that the daemon answers.
func (c *Client) Ping(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/_ping", nil, nil, nil)
}

// Volume is a Docker volume as inspect shows it.
type Volume struct {
	Name       string            `json:"Name"`
	Driver     string            `json:"Driver"`
	Mountpoint string            `json:"Mountpoint"`
	Labels     map[string]string `json:"Labels"`
	Options    map[string]string `json:"Options"`
	Scope      string            `json:"Scope"`
}

// VolumeCreateRequest is the body of POST /volumes/create.
type VolumeCreateRequest struct {
	Name       string            `json:"Name"`
	Driver     string            `json:"Driver,omitempty"`
	DriverOpts map[string]string `json:"DriverOpts,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
}

// VolumeInspect returns the named volume; ErrNotFound if it does not exist.
func (c *Client) VolumeInspect(ctx context.Context, name string) (Volume, error) {
	var v Volume
	err := c.do(ctx, http.MethodGet, "/volumes/"+url.PathEscape(name), nil, nil, &v)
	return v, err
}

// VolumeCreate creates a volume (the driver's Create runs inside).
func (c *Client) VolumeCreate(ctx context.Context, r VolumeCreateRequest) (Volume, error) {
	var v Volume
	err := c.do(ctx, http.MethodPost, "/volumes/create", nil, r, &v)
	return v, err
}

// VolumeRemove removes a volume.
func (c *Client) VolumeRemove(ctx context.Context, name string, force bool) error {
	q := url.Values{"force": {strconv.FormatBool(force)}}
	return c.do(ctx, http.MethodDelete, "/volumes/"+url.PathEscape(name), q, nil, nil)
}

// ContainerConfig is the body of POST /containers/create: the container
// config plus its HostConfig, the fields the world sets.
type ContainerConfig struct {
	Image      string            `json:"Image"`
	User       string            `json:"User,omitempty"`
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Cmd        []string          `json:"Cmd,omitempty"`
	Env        []string          `json:"Env,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
	HostConfig HostConfig        `json:"HostConfig"`
}

// HostConfig is the part of the create body about the host.
type HostConfig struct {
	Binds       []string `json:"Binds,omitempty"`
	NetworkMode string   `json:"NetworkMode,omitempty"`
}

// ContainerCreate creates a container named name and returns its id.
func (c *Client) ContainerCreate(ctx context.Context, name string, cfg ContainerConfig) (string, error) {
	var out struct {
		ID string `json:"Id"`
	}
	err := c.do(ctx, http.MethodPost, "/containers/create", url.Values{"name": {name}}, cfg, &out)
	return out.ID, err
}

// ContainerStart starts a container. It returns once the daemon has
// started it, which includes every volume driver's Mount.
func (c *Client) ContainerStart(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/containers/"+id+"/start", nil, nil, nil)
}

// ContainerStop sends the stop signal, then SIGKILL after timeout.
func (c *Client) ContainerStop(ctx context.Context, id string, timeout time.Duration) error {
	secs := int((timeout + time.Second - 1) / time.Second)
	err := c.do(ctx, http.MethodPost, "/containers/"+id+"/stop", url.Values{"t": {strconv.Itoa(secs)}}, nil, nil)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusNotModified {
		return nil // already stopped
	}
	return err
}

// ContainerRemove removes a container (force: even if running).
func (c *Client) ContainerRemove(ctx context.Context, id string, force bool) error {
	q := url.Values{"force": {strconv.FormatBool(force)}, "v": {"false"}}
	return c.do(ctx, http.MethodDelete, "/containers/"+id, q, nil, nil)
}

// ContainerState is the State of a container's inspect.
type ContainerState struct {
	Status   string `json:"Status"`
	Running  bool   `json:"Running"`
	Pid      int    `json:"Pid"`
	ExitCode int    `json:"ExitCode"`
	Error    string `json:"Error"`
}

// ContainerJSON is the part of a container's inspect the world reads.
type ContainerJSON struct {
	ID     string         `json:"Id"`
	Name   string         `json:"Name"`
	State  ContainerState `json:"State"`
	Config struct {
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
	Mounts []struct {
		Type        string `json:"Type"`
		Name        string `json:"Name"`
		Source      string `json:"Source"`
		Destination string `json:"Destination"`
		Driver      string `json:"Driver"`
	} `json:"Mounts"`
}

// ContainerInspect returns a container's state.
func (c *Client) ContainerInspect(ctx context.Context, id string) (ContainerJSON, error) {
	var out ContainerJSON
	err := c.do(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/json", nil, nil, &out)
	return out, err
}

// ContainerSummary is one row of GET /containers/json.
type ContainerSummary struct {
	ID     string            `json:"Id"`
	Names  []string          `json:"Names"`
	State  string            `json:"State"`
	Labels map[string]string `json:"Labels"`
}

// ContainerList lists containers (all: also stopped ones).
func (c *Client) ContainerList(ctx context.Context, all bool) ([]ContainerSummary, error) {
	var out []ContainerSummary
	err := c.do(ctx, http.MethodGet, "/containers/json", url.Values{"all": {strconv.FormatBool(all)}}, nil, &out)
	return out, err
}

// WaitResult is how a container's run ended.
type WaitResult struct {
	ExitCode int
	Err      error // the wait itself failed (daemon gone, context ended)
}

// ContainerWait registers a wait for the container's next exit and returns
// once the daemon has accepted it (so a start that follows cannot be
// missed); the channel yields the result when the container exits.
func (c *Client) ContainerWait(ctx context.Context, id string) (<-chan WaitResult, error) {
	resp, err := c.send(ctx, http.MethodPost, "/containers/"+id+"/wait", url.Values{"condition": {"next-exit"}}, nil, "")
	if err != nil {
		return nil, err
	}
	ch := make(chan WaitResult, 1)
	go func() {
		defer resp.Body.Close()
		var out struct {
			StatusCode int `json:"StatusCode"`
			Error      *struct {
				Message string `json:"Message"`
			} `json:"Error"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			ch <- WaitResult{ExitCode: -1, Err: fmt.Errorf("wait for container %s: %w", id, err)}
			return
		}
		if out.Error != nil && out.Error.Message != "" {
			ch <- WaitResult{ExitCode: out.StatusCode, Err: fmt.Errorf("wait for container %s: %s", id, out.Error.Message)}
			return
		}
		ch <- WaitResult{ExitCode: out.StatusCode}
	}()
	return ch, nil
}

// ImageLoad loads a `docker save` archive.
func (c *Client) ImageLoad(ctx context.Context, archive io.Reader) error {
	resp, err := c.send(ctx, http.MethodPost, "/images/load", url.Values{"quiet": {"1"}}, archive, "application/x-tar")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	// The progress stream reports failures in-band.
	var msg struct {
		Error string `json:"error"`
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if json.Unmarshal(line, &msg) == nil && msg.Error != "" {
			return &APIError{StatusCode: http.StatusInternalServerError, Message: msg.Error}
		}
	}
	return nil
}
