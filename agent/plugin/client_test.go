package plugin

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"reflect"
	"testing"
)

// holdersDriver is a fakeDriver that also answers Tether.Holders.
type holdersDriver struct {
	fakeDriver
	resp HoldersResponse
}

func (h *holdersDriver) Holders(_ context.Context, r HoldersRequest) (HoldersResponse, error) {
	return h.resp, h.record(r)
}

func TestAskHoldersRoundTrips(t *testing.T) {
	want := HoldersResponse{Holders: []string{"f00dfeed"}, Adopted: 2, Pending: 1, Since: "2026-11-25T20:00:00Z"}
	d := &holdersDriver{resp: want}
	ts := startServer(t, d)
	got, err := AskHolders(context.Background(), ts.sock, "data-19")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("AskHolders = %+v, %v; want %+v", got, err, want)
	}
	if r, ok := d.lastCall().(HoldersRequest); !ok || r.Name != "data-19" {
		t.Errorf("the driver was asked %#v", d.lastCall())
	}
	d.err = errors.New("tether: volume \"x\": reading the mount table: boom")
	if _, err := AskHolders(context.Background(), ts.sock, "x"); err == nil || errors.Is(err, ErrNotServing) {
		t.Errorf("AskHolders with a failing driver = %v; want its error", err)
	}
}

func TestAskHoldersOfADriverWithoutIt(t *testing.T) {
	ts := startServer(t, &fakeDriver{})
	if _, err := AskHolders(context.Background(), ts.sock, "data"); err == nil {
		t.Error("AskHolders of a plugin without the endpoint: no error")
	}
}

func TestAskHoldersWithoutAPlugin(t *testing.T) {
	dir := t.TempDir()
	if _, err := AskHolders(context.Background(), filepath.Join(dir, "absent.sock"), "data"); !errors.Is(err, ErrNotServing) {
		t.Errorf("no socket: %v; want ErrNotServing", err)
	}
	// A socket left by a dead process: nobody accepts.
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := AskHolders(context.Background(), stale, "data"); !errors.Is(err, ErrNotServing) {
		t.Errorf("stale socket: %v; want ErrNotServing", err)
	}
}
