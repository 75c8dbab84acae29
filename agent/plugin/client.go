package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// AskTimeout bounds one AskHolders call. The plugin may ask dockerd (20 s
// at most) to answer it.
const AskTimeout = 30 * time.Second

// ErrNotServing means no plugin listens on the socket (it does not exist,
// or nobody accepts on it): tether-agent serve is not running.
var ErrNotServing = errors.New("no tether plugin serving")

// AskHolders asks the plugin serving on socket who holds the tether volume
// name (HolderMethod), waiting at most AskTimeout.
func AskHolders(ctx context.Context, socket, name string) (HoldersResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, AskTimeout)
	defer cancel()
	body, err := json.Marshal(HoldersRequest{Name: name})
	if err != nil {
		return HoldersResponse{}, err
	}
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://plugin/"+HolderMethod, bytes.NewReader(body))
	if err != nil {
		return HoldersResponse{}, err
	}
	req.Header.Set("Content-Type", ContentType)
	resp, err := client.Do(req)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return HoldersResponse{}, fmt.Errorf("%w on %s: %w", ErrNotServing, socket, err)
	}
	if err != nil {
		return HoldersResponse{}, fmt.Errorf("%s on %s: %w", HolderMethod, socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRequestBytes))
	if err != nil {
		return HoldersResponse{}, fmt.Errorf("%s on %s: reading the answer: %w", HolderMethod, socket, err)
	}
	var out HoldersResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return HoldersResponse{}, fmt.Errorf("%s on %s: %s: decoding the answer: %w", HolderMethod, socket, resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || out.Err != "" {
		return HoldersResponse{}, fmt.Errorf("%s on %s: %s: %s", HolderMethod, socket, resp.Status, out.Err)
	}
	return out, nil
}
