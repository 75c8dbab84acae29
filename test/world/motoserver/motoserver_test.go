package motoserver_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/motoserver"
)

func TestStartAnswersAndStopEndsIt(t *testing.T) {
	testenv.RequireCommands(t, "python3")
	s, err := motoserver.StartWithError(context.Background())
	switch {
	case errors.Is(err, motoserver.ErrMissing):
		testenv.Missing(t, err.Error())
	case err != nil:
		t.Fatal(err)
	}
	resp, err := http.Get(s.URL + "/moto-api/")
	if err != nil {
		_ = s.Stop()
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /moto-api/: %s", resp.Status)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get(s.URL + "/moto-api/"); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("moto still answers on %s after Stop", s.URL)
	}
}
