package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDriver records what it was asked and answers from its fields.
type fakeDriver struct {
	mu    sync.Mutex
	calls []any
	err   error // returned by every call when set

	mountStarted chan struct{} // closed when Mount runs, if set
	mountBlocks  bool          // Mount waits for its context to end (or mountRelease)
	mountRelease chan struct{} // closing it lets a blocked Mount answer with its volume
}

func (f *fakeDriver) record(req any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, req)
	return f.err
}

func (f *fakeDriver) lastCall() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return nil
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeDriver) Create(_ context.Context, r CreateRequest) (CreateResponse, error) {
	return CreateResponse{}, f.record(r)
}

func (f *fakeDriver) Remove(_ context.Context, r RemoveRequest) (RemoveResponse, error) {
	return RemoveResponse{}, f.record(r)
}

func (f *fakeDriver) Mount(ctx context.Context, r MountRequest) (MountResponse, error) {
	if err := f.record(r); err != nil {
		return MountResponse{}, err
	}
	if f.mountStarted != nil {
		close(f.mountStarted)
	}
	if f.mountBlocks {
		select {
		case <-ctx.Done():
			return MountResponse{}, errors.New("gave up waiting: " + ctx.Err().Error())
		case <-f.mountRelease: // nil: never
		}
	}
	return MountResponse{Mountpoint: "/var/lib/tether/volumes/" + r.Name}, nil
}

func (f *fakeDriver) Unmount(_ context.Context, r UnmountRequest) (UnmountResponse, error) {
	return UnmountResponse{}, f.record(r)
}

func (f *fakeDriver) Path(_ context.Context, r PathRequest) (PathResponse, error) {
	return PathResponse{Mountpoint: "/var/lib/tether/volumes/" + r.Name}, f.record(r)
}

func (f *fakeDriver) Get(_ context.Context, r GetRequest) (GetResponse, error) {
	v := &Volume{Name: r.Name, CreatedAt: "2026-01-02T03:04:05Z", Status: map[string]any{"volumeId": "vol-0123456789abcdef0"}}
	return GetResponse{Volume: v}, f.record(r)
}

func (f *fakeDriver) List(_ context.Context, r ListRequest) (ListResponse, error) {
	return ListResponse{Volumes: []*Volume{{Name: "a", Mountpoint: "/m/a"}, {Name: "b"}}}, f.record(r)
}

func (f *fakeDriver) Capabilities(_ context.Context, r CapabilitiesRequest) (CapabilitiesResponse, error) {
	return CapabilitiesResponse{Capabilities: Capability{Scope: ScopeGlobal}}, f.record(r)
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

type testServer struct {
	client *http.Client
	sock   string
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// startServer serves d on a fresh unix socket, as dockerd would reach it.
func startServer(t *testing.T, d Driver, opts ...Option) *testServer {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "tether.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{
		sock:   sock,
		logs:   logs,
		cancel: cancel,
		done:   make(chan error, 1),
		client: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
		}},
	}
	go func() {
		ts.done <- Serve(ctx, l, d, append([]Option{WithLogger(slog.New(slog.NewJSONHandler(logs, nil)))}, opts...)...)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-ts.done; err != nil {
			t.Errorf("Serve returned %v after shutdown", err)
		}
	})
	return ts
}

// post sends body to /method as dockerd does and returns status, content
// type and body.
func (ts *testServer) post(t *testing.T, method, body string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://plugin/"+method, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", ContentType)
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

func assertJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("answer is not JSON: %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("answer = %s, want %s", got, want)
	}
}

func TestEveryEndpointRoundTrips(t *testing.T) {
	d := &fakeDriver{}
	ts := startServer(t, d)
	cases := []struct {
		method, body string
		wantCall     any
		wantReply    string
	}{
		{"Plugin.Activate", "", nil, `{"Implements":["VolumeDriver"]}`},
		{"VolumeDriver.Create", `{"Name":"data","Opts":{"size":"5","volumetype":"gp3"}}`,
			CreateRequest{Name: "data", Opts: map[string]string{"size": "5", "volumetype": "gp3"}}, `{}`},
		{"VolumeDriver.Create", `{"Name":"bare","Opts":null}`, CreateRequest{Name: "bare"}, `{}`},
		{"VolumeDriver.Remove", `{"Name":"data"}`, RemoveRequest{Name: "data"}, `{}`},
		{"VolumeDriver.Mount", `{"Name":"data","ID":"abc123"}`, MountRequest{Name: "data", ID: "abc123"},
			`{"Mountpoint":"/var/lib/tether/volumes/data"}`},
		{"VolumeDriver.Unmount", `{"Name":"data","ID":"abc123"}`, UnmountRequest{Name: "data", ID: "abc123"}, `{}`},
		{"VolumeDriver.Path", `{"Name":"data"}`, PathRequest{Name: "data"}, `{"Mountpoint":"/var/lib/tether/volumes/data"}`},
		{"VolumeDriver.Get", `{"Name":"data"}`, GetRequest{Name: "data"},
			`{"Volume":{"Name":"data","CreatedAt":"2026-01-02T03:04:05Z","Status":{"volumeId":"vol-0123456789abcdef0"}}}`},
		{"VolumeDriver.List", `{}`, ListRequest{}, `{"Volumes":[{"Name":"a","Mountpoint":"/m/a"},{"Name":"b"}]}`},
		{"VolumeDriver.Capabilities", `{}`, CapabilitiesRequest{}, `{"Capabilities":{"Scope":"global"}}`},
		// dockerd may add fields; they are ignored, not rejected.
		{"VolumeDriver.Get", `{"Name":"x","Future":1}`, GetRequest{Name: "x"},
			`{"Volume":{"Name":"x","CreatedAt":"2026-01-02T03:04:05Z","Status":{"volumeId":"vol-0123456789abcdef0"}}}`},
	}
	for _, c := range cases {
		t.Run(c.method, func(t *testing.T) {
			status, ctype, body := ts.post(t, c.method, c.body)
			if status != http.StatusOK {
				t.Fatalf("status %d, body %s", status, body)
			}
			if ctype != ContentType {
				t.Errorf("Content-Type = %q, want %q", ctype, ContentType)
			}
			assertJSON(t, body, c.wantReply)
			if c.wantCall != nil && !reflect.DeepEqual(d.lastCall(), c.wantCall) {
				t.Errorf("driver got %#v, want %#v", d.lastCall(), c.wantCall)
			}
		})
	}
}

func TestDriverErrorIsErrWithFailureStatus(t *testing.T) {
	d := &fakeDriver{err: errors.New(`volume "data" is not attached to this instance`)}
	ts := startServer(t, d)
	for _, method := range []string{"VolumeDriver.Create", "VolumeDriver.Mount", "VolumeDriver.Get", "VolumeDriver.List"} {
		status, ctype, body := ts.post(t, method, `{"Name":"data","ID":"m1"}`)
		if status != http.StatusInternalServerError {
			t.Errorf("%s: status %d, want 500", method, status)
		}
		if ctype != ContentType {
			t.Errorf("%s: Content-Type = %q", method, ctype)
		}
		assertJSON(t, body, `{"Err":"volume \"data\" is not attached to this instance"}`)
	}
}

func TestMalformedRequestIsBadRequestWithErr(t *testing.T) {
	d := &fakeDriver{}
	ts := startServer(t, d)
	for _, body := range []string{`{"Name":`, `["data"]`, `{"Name":5}`, `{"Name":"a","Opts":"size=1"}`} {
		status, _, reply := ts.post(t, "VolumeDriver.Create", body)
		if status != http.StatusBadRequest {
			t.Errorf("body %s: status %d, want 400", body, status)
		}
		var e ErrorResponse
		if err := json.Unmarshal([]byte(reply), &e); err != nil || !strings.Contains(e.Err, "malformed VolumeDriver.Create request") {
			t.Errorf("body %s: answer %s, want an Err naming the malformed request", body, reply)
		}
	}
	if n := len(d.calls); n != 0 {
		t.Errorf("driver was called %d times for malformed requests", n)
	}
}

func TestUnknownEndpointAndWrongMethod(t *testing.T) {
	ts := startServer(t, &fakeDriver{})
	status, _, body := ts.post(t, "NetworkDriver.CreateNetwork", `{}`)
	if status != http.StatusNotFound {
		t.Errorf("unknown endpoint: status %d, want 404", status)
	}
	assertJSON(t, body, `{"Err":"tether plugin: unknown endpoint \"/NetworkDriver.CreateNetwork\""}`)

	resp, err := ts.client.Get("http://plugin/VolumeDriver.List")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d, want 405", resp.StatusCode)
	}
}

func TestRequestLogNamesVolumeAndMountID(t *testing.T) {
	ts := startServer(t, &fakeDriver{})
	ts.post(t, "VolumeDriver.Mount", `{"Name":"data","ID":"abc123"}`)
	var saw int
	for _, l := range ts.logs.lines(t) {
		if l["method"] != "VolumeDriver.Mount" {
			continue
		}
		saw++
		if l["volume"] != "data" || l["mountId"] != "abc123" {
			t.Errorf("log line lacks volume/mountId: %v", l)
		}
	}
	if saw != 2 {
		t.Errorf("saw %d log lines for the Mount, want request and reply", saw)
	}
}

// On SIGTERM a waiting Mount is not cancelled: within the grace it may
// still get its volume and answer with it.
func TestShutdownLetsWaitingCallsFinishWithinTheGrace(t *testing.T) {
	d := &fakeDriver{mountStarted: make(chan struct{}), mountBlocks: true, mountRelease: make(chan struct{})}
	ts := startServer(t, d, WithShutdownGrace(time.Hour))
	answered := make(chan int, 1)
	go func() {
		status, _, _ := ts.post(t, "VolumeDriver.Mount", `{"Name":"data","ID":"m1"}`)
		answered <- status
	}()
	<-d.mountStarted
	ts.cancel()
	waitForLog(t, ts, "plugin shutting down")
	select {
	case status := <-answered:
		t.Fatalf("the waiting Mount was answered (%d) before its volume came, during the grace", status)
	case err := <-ts.done:
		t.Fatalf("Serve returned (%v) with a call in flight, during the grace", err)
	default:
	}
	close(d.mountRelease) // the reconciler's mount arrives
	if status := <-answered; status != http.StatusOK {
		t.Errorf("the Mount answered %d, want 200 with its volume", status)
	}
	if err := <-ts.done; err != nil {
		t.Errorf("Serve = %v, want nil after a graceful shutdown", err)
	}
	ts.done <- nil // for the cleanup
}

// After the grace, the calls still waiting are answered with an Err.
func TestShutdownEndsWaitingCallsWithErrAfterTheGrace(t *testing.T) {
	d := &fakeDriver{mountStarted: make(chan struct{}), mountBlocks: true}
	ts := startServer(t, d, WithShutdownGrace(time.Millisecond))
	type answer struct {
		status int
		body   string
	}
	answered := make(chan answer, 1)
	go func() {
		status, _, body := ts.post(t, "VolumeDriver.Mount", `{"Name":"data","ID":"m1"}`)
		answered <- answer{status, body}
	}()
	<-d.mountStarted
	ts.cancel()
	a := <-answered
	if a.status != http.StatusInternalServerError || !strings.Contains(a.body, "gave up waiting: context canceled") {
		t.Errorf("waiting Mount answered %d %s, want 500 with the driver's Err", a.status, a.body)
	}
	if err := <-ts.done; err != nil {
		t.Errorf("Serve = %v, want nil after a graceful shutdown", err)
	}
	ts.done <- nil // for the cleanup
}

// waitForLog waits (bounded) for a log line containing msg.
func waitForLog(t *testing.T, ts *testServer, msg string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(ts.logs.String(), msg) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q within 30s", msg)
		}
		time.Sleep(time.Millisecond)
	}
}
