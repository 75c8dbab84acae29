package dockerapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
)

// serveUnix runs handler on a unix socket for the test and returns its DOCKER_HOST.
func serveUnix(t *testing.T, handler http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return "unix://" + sock
}

func TestListContainers(t *testing.T) {
	var gotQuery string
	host := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/containers/json" {
			http.Error(w, `{"message":"unexpected"}`, http.StatusNotFound)
			return
		}
		gotQuery = r.URL.RawQuery
		w.Header().Set("Content-Type", "application/json")
		// Trimmed from a real dockerd answer.
		_, _ = w.Write([]byte(`[{"Id":"8dfafdbc3a40","Names":["/ecs-app-1-web-e0b5"],"Image":"busybox","State":"running",
			"Labels":{"com.amazonaws.ecs.task-arn":"arn:aws:ecs:us-east-1:1:task/c/abc"},
			"Mounts":[{"Type":"volume","Name":"data","Source":"/var/lib/tether/volumes/data","Destination":"/data","Driver":"tether","Mode":"","RW":true,"Propagation":""}]}]`))
	}))
	c, err := New(host)
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.ListContainers(context.Background(), ListOptions{All: true, Volume: "data"})
	if err != nil {
		t.Fatal(err)
	}
	if gotQuery != "all=1&filters=%7B%22volume%22%3A%5B%22data%22%5D%7D" {
		t.Errorf("query = %s", gotQuery)
	}
	if len(list) != 1 || list[0].ID != "8dfafdbc3a40" || list[0].Name() != "ecs-app-1-web-e0b5" ||
		list[0].Labels["com.amazonaws.ecs.task-arn"] == "" || len(list[0].Mounts) != 1 ||
		list[0].Mounts[0].Name != "data" || list[0].Mounts[0].Source != "/var/lib/tether/volumes/data" {
		t.Errorf("decoded %+v", list)
	}
}

func TestErrorAnswer(t *testing.T) {
	host := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"message":"something broke"}`))
	}))
	c, _ := New(host)
	_, err := c.ListContainers(context.Background(), ListOptions{})
	if err == nil || errors.Is(err, ErrNoDaemon) {
		t.Fatalf("err = %v; want a plain failure", err)
	}
}

func TestNoDaemon(t *testing.T) {
	c, err := New("unix://" + filepath.Join(t.TempDir(), "missing.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListContainers(context.Background(), ListOptions{}); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("err = %v; want ErrNoDaemon", err)
	}
}

func TestNewRejectsOddHosts(t *testing.T) {
	for _, h := range []string{"ssh://host", "npipe:////./pipe/docker"} {
		if _, err := New(h); err == nil {
			t.Errorf("New(%q) accepted", h)
		}
	}
}
