package eventsrc

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// hostsDir holds the samples of hosts that go away (events/hosts): EC2's
// instance events, Auto Scaling's lifecycle action, ECS's disconnect, and
// tether's own hold and watch messages.
const hostsDir = eventsDir + "/hosts"

func TestDecodeHostSamples(t *testing.T) {
	const instA = "i-0a1b2c3d4e5f60718"
	holdStart := time.Date(2026, 3, 2, 11, 40, 9, 0, time.UTC)
	cases := map[string]want{
		"instance-stopped.json":          {kind: KindHost, trigger: reconcile.HostChanged{InstanceID: instA, State: "stopped"}},
		"instance-terminated.json":       {kind: KindHost, trigger: reconcile.HostChanged{InstanceID: instA, State: "terminated"}},
		"instance-running.json":          {skip: true, quiet: true},
		"spot-interruption-warning.json": {kind: KindHost, trigger: reconcile.HostInterrupted{InstanceID: instA, Action: "terminate"}},
		"terminate-lifecycle-action.json": {kind: KindHold, trigger: reconcile.TerminationHold{Group: "tether-demo-asg", Hook: "tether-tether",
			InstanceID: instA, Token: "87654321-4321-4321-4321-210987654321", Started: holdStart}},
		"instance-disconnected.json": {kind: KindInstance, trigger: reconcile.InstanceChanged{Cluster: demo, ContainerInstanceArn: ciA,
			EC2InstanceID: instA, Status: "ACTIVE", AgentConnected: false, Version: 13}},
		"hold.json": {kind: KindHold, trigger: reconcile.TerminationHold{Group: "tether-demo-asg", Hook: "tether-tether",
			InstanceID: instA, Token: "87654321-4321-4321-4321-210987654321", Started: holdStart, Passes: 3}},
		"watch.json": {kind: KindWatch, trigger: reconcile.HostWatch{Cluster: demo, InstanceID: instA,
			Since: time.Date(2026, 3, 2, 11, 10, 27, 0, time.UTC)}},
	}
	files, err := filepath.Glob(filepath.Join(hostsDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(cases) {
		t.Errorf("events/hosts has %d samples, the test knows %d", len(files), len(cases))
	}
	dec := mustDecoder(t, demo)
	for _, f := range files {
		name := filepath.Base(f)
		w, ok := cases[name]
		if !ok {
			t.Errorf("%s: no expected outcome", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			body := readFile(t, f)
			if w.kind == KindHold || w.kind == KindWatch {
				// tether's own messages carry no event id.
				ev, err := dec.Decode(body)
				if err != nil || ev.Kind != w.kind || ev.Trigger != w.trigger || len(ev.Attrs) == 0 {
					t.Fatalf("Decode = %+v, %v; want %+v", ev, err, w.trigger)
				}
				return
			}
			checkDecode(t, dec, body, w)
		})
	}
}

// What tether sends itself decodes to what it encoded.
func TestHoldAndWatchMessagesRoundTrip(t *testing.T) {
	dec := mustDecoder(t, demo)
	h := reconcile.TerminationHold{Group: "my asg/ñ", Hook: "tether-prod", InstanceID: "i-0123456789abcdef0",
		Token: "87654321-4321-4321-4321-210987654321", Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Passes: 7}
	b, err := EncodeHold(h)
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := dec.Decode(b); err != nil || ev.Trigger != h {
		t.Fatalf("hold %s decoded to %+v, %v", b, ev.Trigger, err)
	}
	noToken := h
	noToken.Token = ""
	if b, err := EncodeHold(noToken); err != nil {
		t.Fatal(err)
	} else if ev, err := dec.Decode(b); err != nil || ev.Trigger != noToken {
		t.Fatalf("hold without token %s decoded to %+v, %v", b, ev.Trigger, err)
	}
	w := reconcile.HostWatch{Cluster: demo, InstanceID: "i-0123456789abcdef0", Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	b, err = EncodeWatch(w)
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := dec.Decode(b); err != nil || ev.Trigger != w {
		t.Fatalf("watch %s decoded to %+v, %v", b, ev.Trigger, err)
	}
	for _, bad := range []reconcile.TerminationHold{
		{Group: "", Hook: "h", InstanceID: "i-0123456789abcdef0", Started: h.Started},
		{Group: "g\n", Hook: "h", InstanceID: "i-0123456789abcdef0", Started: h.Started},
		{Group: "g", Hook: "h h", InstanceID: "i-0123456789abcdef0", Started: h.Started},
		{Group: "g", Hook: "h", InstanceID: "i-nope", Started: h.Started},
		{Group: "g", Hook: "h", InstanceID: "i-0123456789abcdef0", Token: "x", Started: h.Started},
		{Group: "g", Hook: "h", InstanceID: "i-0123456789abcdef0"},
		{Group: "g", Hook: "h", InstanceID: "i-0123456789abcdef0", Started: h.Started, Passes: -1},
	} {
		if b, err := EncodeHold(bad); err == nil {
			t.Errorf("EncodeHold(%+v) = %s; want a refusal", bad, b)
		}
	}
	if b, err := EncodeWatch(reconcile.HostWatch{Cluster: "a/b", InstanceID: w.InstanceID, Since: w.Since}); err == nil {
		t.Errorf("EncodeWatch of a bad cluster = %s", b)
	}
}

func TestDecodeRejectsBadHostInput(t *testing.T) {
	state := func(name string, f func(ev, d map[string]any)) tc2 {
		return tc2{name: "state/" + name, body: mutate(t, "hosts/instance-stopped.json", f)}
	}
	spot := func(name string, f func(ev, d map[string]any)) tc2 {
		return tc2{name: "spot/" + name, body: mutate(t, "hosts/spot-interruption-warning.json", f)}
	}
	hook := func(name string, f func(ev, d map[string]any)) tc2 {
		return tc2{name: "lifecycle/" + name, body: mutate(t, "hosts/terminate-lifecycle-action.json", f)}
	}
	cases := []tc2{
		state("bad instance", func(ev, d map[string]any) { d["instance-id"] = "i-$(reboot)" }),
		state("no instance", func(ev, d map[string]any) { delete(d, "instance-id") }),
		state("unknown state", func(ev, d map[string]any) { d["state"] = "Stopped" }),
		state("state not a string", func(ev, d map[string]any) { d["state"] = 3 }),
		spot("bad instance", func(ev, d map[string]any) { d["instance-id"] = "" }),
		spot("unknown action", func(ev, d map[string]any) { d["instance-action"] = "reboot" }),
		hook("launch transition", func(ev, d map[string]any) { d["LifecycleTransition"] = "autoscaling:EC2_INSTANCE_LAUNCHING" }),
		hook("launch detail type", func(ev, d map[string]any) { ev["detail-type"] = "EC2 Instance-launch Lifecycle Action" }),
		hook("bad token", func(ev, d map[string]any) { d["LifecycleActionToken"] = "not-a-uuid" }),
		hook("bad hook name", func(ev, d map[string]any) { d["LifecycleHookName"] = "tether tether" }),
		hook("no group", func(ev, d map[string]any) { delete(d, "AutoScalingGroupName") }),
		hook("control in group", func(ev, d map[string]any) { d["AutoScalingGroupName"] = "asg\u0000" }),
		hook("bad instance", func(ev, d map[string]any) { d["EC2InstanceId"] = "i-1" }),
		hook("bad time", func(ev, d map[string]any) { ev["time"] = "yyyy-mm-ddThh:mm:ssZ" }),
		{name: "hold/unknown field", body: []byte(`{"tether":"hold","hold":{"group":"g","hook":"h","instance":"i-0123456789abcdef0","started":"2026-01-02T03:04:05Z","passes":0,"x":1}}`)},
		{name: "hold/field case", body: []byte(`{"tether":"hold","hold":{"Group":"g","hook":"h","instance":"i-0123456789abcdef0","started":"2026-01-02T03:04:05Z","passes":0}}`)},
		{name: "hold/extra top field", body: []byte(`{"tether":"hold","hold":{"group":"g","hook":"h","instance":"i-0123456789abcdef0","started":"2026-01-02T03:04:05Z","passes":0},"key":{}}`)},
		{name: "hold/no body", body: []byte(`{"tether":"hold"}`)},
		{name: "hold/null body", body: []byte(`{"tether":"hold","hold":null}`)},
		{name: "hold/no start", body: []byte(`{"tether":"hold","hold":{"group":"g","hook":"h","instance":"i-0123456789abcdef0","passes":0}}`)},
		{name: "watch/other cluster", body: []byte(`{"tether":"watch","watch":{"cluster":"other","instance":"i-0123456789abcdef0","since":"2026-01-02T03:04:05Z"}}`)},
		{name: "watch/bad instance", body: []byte(`{"tether":"watch","watch":{"cluster":"tether-demo","instance":"x","since":"2026-01-02T03:04:05Z"}}`)},
		{name: "tether kind not a string", body: []byte(`{"tether":1}`)},
	}
	dec := mustDecoder(t, demo)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, err := dec.Decode(c.body)
			s, ok := AsSkip(err)
			if !ok {
				t.Fatalf("Decode(%s) = %+v, %v; want a *SkipError", c.body, ev, err)
			}
			if s.Quiet {
				t.Errorf("skipped quietly (%s); want poison", s.Reason)
			}
			if strings.Contains(s.Reason, "\n") {
				t.Errorf("reason has a newline: %q", s.Reason)
			}
		})
	}
}

type tc2 struct {
	name string
	body []byte
}
