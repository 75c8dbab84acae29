package eventsrc

import (
	"strings"
	"testing"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

func TestRetryRoundTrip(t *testing.T) {
	dec := mustDecoder(t, demo)
	for _, c := range []struct {
		key  reconcile.Key
		hint string
	}{
		{reconcile.Key{Cluster: demo, Volume: "rexray-vol"}, ""},
		{reconcile.Key{Cluster: demo, Volume: "task-5b1f0c2d9e8a4f7b8c6d1e2f3a4b5c6d-data"}, "ssm:0a1b2c3d-4e5f-6789-abcd-ef0123456789"},
		{reconcile.Key{Cluster: demo, Volume: "v1.2_x"}, strings.Repeat("h", MaxHintLength)},
	} {
		body, err := EncodeRetry(c.key, c.hint)
		if err != nil {
			t.Fatalf("EncodeRetry(%+v): %v", c.key, err)
		}
		ev, err := dec.Decode(body)
		if err != nil {
			t.Fatalf("Decode(%s): %v", body, err)
		}
		want := reconcile.Retry{Key: c.key, Hint: c.hint}
		if ev.Kind != KindRetry || ev.Trigger != want {
			t.Errorf("got %s %#v, want %#v", ev.Kind, ev.Trigger, want)
		}
	}
}

// HostileNames are volume names a forged retry message might carry.
var hostileNames = []string{
	"", "..", "a..b", "../etc", "a/b", "/abs", "-rf", ".hidden", "a b", "a;b", "a|b", "a&b", "$(id)", "a`id`",
	"a'b", `a"b`, "a\nb", "a\tb", "a\\b", "a*", "a?", "é", "a\x00b", strings.Repeat("a", 256), "{{ VolumeId }}",
}

func TestRetryRejectsHostileInput(t *testing.T) {
	dec := mustDecoder(t, demo)
	for _, name := range hostileNames {
		if _, err := EncodeRetry(reconcile.Key{Cluster: demo, Volume: name}, ""); err == nil {
			t.Errorf("EncodeRetry accepted volume %q", name)
		}
		body := `{"tether":"retry","key":{"cluster":"tether-demo","volume":` + quote(name) + `}}`
		checkPoison(t, dec, body)
	}
	for _, body := range []string{
		`{"tether":"retry"}`,
		`{"tether":"retry","key":null}`,
		`{"tether":"retry","key":"tether-demo/rexray-vol"}`,
		`{"tether":"retry","key":{}}`,
		`{"tether":"retry","key":{"cluster":"tether-demo"}}`,
		`{"tether":"retry","key":{"volume":"rexray-vol"}}`,
		`{"tether":"retry","key":{"cluster":"prod","volume":"rexray-vol"}}`,
		`{"tether":"retry","key":{"cluster":"tether-demo;x","volume":"rexray-vol"}}`,
		`{"tether":"retry","key":{"cluster":"tether-demo","volume":"rexray-vol","force":true}}`,
		`{"tether":"retry","key":{"cluster":"tether-demo","Volume":"rexray-vol"}}`,
		`{"tether":"retry","key":{"cluster":"tether-demo","volume":"rexray-vol"},"delay":0}`,
		`{"tether":"retry","Key":{"cluster":"tether-demo","volume":"rexray-vol"}}`,
		`{"tether":"retry","key":{"cluster":"tether-demo","volume":"rexray-vol"},"hint":7}`,
		`{"tether":"retry","key":{"cluster":"tether-demo","volume":"rexray-vol"},"hint":"a\nb"}`,
		`{"tether":"retry","key":{"cluster":"tether-demo","volume":"rexray-vol"},"hint":"` + strings.Repeat("h", MaxHintLength+1) + `"}`,
		`{"tether":"sweep","key":{"cluster":"tether-demo","volume":"rexray-vol"}}`,
		`{"tether":"RETRY","key":{"cluster":"tether-demo","volume":"rexray-vol"}}`,
		`{"tether":null,"key":{"cluster":"tether-demo","volume":"rexray-vol"}}`,
		`{"tether":"retry","key":{"cluster":"tether-demo","volume":["rexray-vol"]}}`,
	} {
		checkPoison(t, dec, body)
	}
}

func checkPoison(t *testing.T, dec *Decoder, body string) {
	t.Helper()
	ev, err := dec.Decode([]byte(body))
	s, ok := AsSkip(err)
	if !ok {
		t.Errorf("Decode(%.120s) = %+v, %v; want poison", body, ev, err)
		return
	}
	if s.Quiet {
		t.Errorf("Decode(%.120s): quiet skip, want poison", body)
	}
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&15])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
