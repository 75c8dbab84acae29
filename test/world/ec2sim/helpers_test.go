package ec2sim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// fakeHost records what EC2 asked of it; busy makes DetachDevice answer
// ErrDeviceBusy (the guest still has the device mounted) unless forced.
type fakeHost struct {
	id string

	mu          sync.Mutex
	attached    map[string]worldapi.Attachment
	busy        bool
	attachErr   error
	attachCalls int
	detaches    int
	forced      int
	killed      bool
}

func newFakeHost(id string) *fakeHost {
	return &fakeHost{id: id, attached: map[string]worldapi.Attachment{}}
}

func (h *fakeHost) InstanceID() string { return h.id }

func (h *fakeHost) AttachDevice(_ context.Context, a worldapi.Attachment) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attachCalls++
	if h.killed {
		return worldapi.ErrHostDown
	}
	if h.attachErr != nil {
		return h.attachErr
	}
	h.attached[a.VolumeID] = a
	return nil
}

func (h *fakeHost) DetachDevice(_ context.Context, volumeID string, force bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.killed {
		return worldapi.ErrHostDown
	}
	h.detaches++
	if h.busy && !force {
		return worldapi.ErrDeviceBusy
	}
	if force {
		h.forced++
	}
	delete(h.attached, volumeID)
	return nil
}

func (h *fakeHost) has(volumeID string) (worldapi.Attachment, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.attached[volumeID]
	return a, ok
}

func (h *fakeHost) setBusy(b bool) {
	h.mu.Lock()
	h.busy = b
	h.mu.Unlock()
}

func (h *fakeHost) detachCalls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.detaches
}

func (h *fakeHost) RunShellScript(context.Context, string, time.Duration) (worldapi.CommandResult, error) {
	return worldapi.CommandResult{}, errors.New("not used by ec2sim")
}
func (h *fakeHost) Attributes(context.Context) (map[string]string, error) { return nil, nil }
func (h *fakeHost) StartTask(context.Context, worldapi.TaskSpec, func(worldapi.TaskUpdate)) error {
	return errors.New("not used by ec2sim")
}
func (h *fakeHost) StopTask(context.Context, string) error { return errors.New("not used by ec2sim") }
func (h *fakeHost) Kill() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.killed = true
	h.attached = map[string]worldapi.Attachment{}
	return nil
}
func (h *fakeHost) RestartAgent(context.Context) error { return nil }
func (h *fakeHost) Close() error                       { return nil }

// events records what EC2 published.
type events struct {
	mu  sync.Mutex
	all []worldapi.Event
}

func (e *events) Publish(ev worldapi.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

func (e *events) list() []worldapi.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]worldapi.Event(nil), e.all...)
}

type world struct {
	srv    *Server
	router *awsproto.Router
	url    string
	ec2    *ec2.Client
	events *events
}

const (
	azA = "us-west-2a"
	azB = "us-west-2b"
)

// newWorld starts an EC2 on an httptest server and an SDK client for it.
func newWorld(t *testing.T, mutate ...func(*Config)) *world {
	t.Helper()
	ev := &events{}
	cfg := Config{Region: "us-west-2", Account: "123456789012", Seed: 1, Dir: t.TempDir(), Publisher: ev,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), BusyRetry: 5 * time.Millisecond}
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	router := awsproto.NewRouter()
	srv.Register(router)
	hs := httptest.NewServer(router)
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	return &world{srv: srv, router: router, url: hs.URL, ec2: newClient(hs.URL), events: ev}
}

func newClient(url string) *ec2.Client {
	return ec2.New(ec2.Options{
		Region:       "us-west-2",
		BaseEndpoint: aws.String(url),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 3
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
		}),
	})
}

// code returns the AWS error code of err ("" for nil).
func code(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("not an API error: %v", err)
	}
	return ae.ErrorCode()
}

// eventually polls cond (bounded, 10 s) and fails with what it waited for.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, now := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s; now: %s", what, now)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (w *world) waitState(t *testing.T, volumeID, state, att string) {
	t.Helper()
	eventually(t, volumeID+" "+state+"/"+att, func() (bool, string) {
		s, a, err := w.srv.VolumeState(volumeID)
		if err != nil {
			return false, err.Error()
		}
		return s == state && a == att, s + "/" + a
	})
}

func (w *world) addInstance(t *testing.T, id, az string) *fakeHost {
	t.Helper()
	h := newFakeHost(id)
	if err := w.srv.AddInstance(InstanceSpec{ID: id, AZ: az, Host: h}); err != nil {
		t.Fatal(err)
	}
	return h
}

func (w *world) createVolume(t *testing.T, in *ec2.CreateVolumeInput) string {
	t.Helper()
	out, err := w.ec2.CreateVolume(context.Background(), in)
	if err != nil {
		t.Fatalf("CreateVolume: %v", err)
	}
	w.waitState(t, *out.VolumeId, "available", "")
	return *out.VolumeId
}

// volumeEvents are the EBS Volume Notifications published for volumeID.
func volumeEvents(w *world, volumeID string) []VolumeNotification {
	var out []VolumeNotification
	for _, e := range w.events.list() {
		if e.DetailType != detailVolume || len(e.Resources) == 0 || !strings.HasSuffix(e.Resources[0], ":volume/"+volumeID) {
			continue
		}
		var d VolumeNotification
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			panic(err)
		}
		out = append(out, d)
	}
	return out
}

// eventKinds lists the volume's events as "event/result".
func eventKinds(w *world, volumeID string) []string {
	var out []string
	for _, d := range volumeEvents(w, volumeID) {
		out = append(out, d.Event+"/"+d.Result)
	}
	return out
}

func hasEvent(w *world, volumeID, event, result, cause string) bool {
	for _, d := range volumeEvents(w, volumeID) {
		if d.Event == event && d.Result == result && strings.Contains(d.Cause, cause) {
			return true
		}
	}
	return false
}

// instanceStates lists the states published for instanceID, in order.
func instanceStates(w *world, instanceID string) []string {
	var out []string
	for _, e := range w.events.list() {
		if e.DetailType != detailInstance {
			continue
		}
		var d InstanceStateChange
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			panic(err)
		}
		if d.InstanceID == instanceID {
			out = append(out, d.State)
		}
	}
	return out
}
