package eventsrc

import (
	"strings"
	"testing"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

func TestReleaseRoundTrip(t *testing.T) {
	dec := mustDecoder(t, demo)
	for _, r := range []reconcile.Release{
		{Key: reconcile.Key{Cluster: demo, Volume: "rexray-vol"}},
		{Key: reconcile.Key{Cluster: demo, Volume: "rexray-vol"}, Instance: "i-0123456789abcdef0"},
		{Key: reconcile.Key{Cluster: demo, Volume: "rexray-vol"}, Instance: "i-0123456789abcdef0", Force: true,
			Reason: "host wedged: " + strings.Repeat("r", MaxReleaseReason-len("host wedged: ")), Operator: "alice@admin"},
	} {
		body, err := EncodeRelease(r)
		if err != nil {
			t.Fatalf("EncodeRelease(%+v): %v", r, err)
		}
		ev, err := dec.Decode(body)
		if err != nil {
			t.Fatalf("Decode(%s): %v", body, err)
		}
		if ev.Kind != KindRelease || ev.Trigger != r {
			t.Errorf("got %s %#v, want %#v", ev.Kind, ev.Trigger, r)
		}
	}
}

func TestReleaseRejectsHostileInput(t *testing.T) {
	dec := mustDecoder(t, demo)
	key := `"key":{"cluster":"tether-demo","volume":"rexray-vol"}`
	for _, name := range hostileNames {
		if _, err := EncodeRelease(reconcile.Release{Key: reconcile.Key{Cluster: demo, Volume: name}}); err == nil {
			t.Errorf("EncodeRelease accepted volume %q", name)
		}
		checkPoison(t, dec, `{"tether":"release","key":{"cluster":"tether-demo","volume":`+quote(name)+`}}`)
	}
	for _, r := range []reconcile.Release{
		{Key: reconcile.Key{Cluster: demo, Volume: "v"}, Force: true},
		{Key: reconcile.Key{Cluster: demo, Volume: "v"}, Instance: "i-1;reboot"},
		{Key: reconcile.Key{Cluster: demo, Volume: "v"}, Reason: "a\nb"},
		{Key: reconcile.Key{Cluster: demo, Volume: "v"}, Operator: strings.Repeat("o", MaxReleaseOperator+1)},
	} {
		if _, err := EncodeRelease(r); err == nil {
			t.Errorf("EncodeRelease accepted %+v", r)
		}
	}
	for _, body := range []string{
		`{"tether":"release"}`,
		`{"tether":"release","key":null}`,
		`{"tether":"release","key":{"cluster":"prod","volume":"rexray-vol"}}`,
		`{"tether":"release",` + key + `,"force":true}`,
		`{"tether":"release",` + key + `,"force":"yes","instance":"i-0123456789abcdef0"}`,
		`{"tether":"release",` + key + `,"instance":"i-XYZ"}`,
		`{"tether":"release",` + key + `,"instance":"i-0123456789abcdef0","hint":"x"}`,
		`{"tether":"release",` + key + `,"Force":true,"instance":"i-0123456789abcdef0"}`,
		`{"tether":"release",` + key + `,"reason":"` + strings.Repeat("r", MaxReleaseReason+1) + `"}`,
		`{"tether":"release",` + key + `,"operator":"\u00e9"}`,
		`{"tether":"Release",` + key + `}`,
		`{"tether":7,` + key + `}`,
	} {
		checkPoison(t, dec, body)
	}
}
