// Package packaging holds the systemd unit of tether-agent; its test pins
// the properties the ECS integration depends on.
package packaging

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"
)

// unit parses a systemd unit into section -> key -> values (in order).
func unit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", path, line)
			}
			out[section][key] = append(out[section][key], value)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func words(values []string) []string {
	var w []string
	for _, v := range values {
		w = append(w, strings.Fields(v)...)
	}
	return w
}

func TestUnit(t *testing.T) {
	u := unit(t, "tether-agent.service")
	before := words(u["Unit"]["Before"])
	for _, want := range []string{"ecs.service", "docker.service"} {
		if !slices.Contains(before, want) {
			t.Errorf("Before= %v lacks %s: the ECS agent must see the plugin when it registers", before, want)
		}
	}
	for _, bad := range []string{"ecs.service", "docker.service"} {
		if slices.Contains(words(u["Unit"]["After"]), bad) {
			t.Errorf("After=%s would order tether-agent after the service that needs it", bad)
		}
	}
	svc := u["Service"]
	checks := map[string]string{"Type": "notify", "Restart": "always", "NoNewPrivileges": "yes"}
	for key, want := range checks {
		if got := svc[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %s", key, got, want)
		}
	}
	exec := words(svc["ExecStart"])
	if len(exec) < 2 || exec[0] != "/usr/local/bin/tether-agent" || exec[1] != "serve" {
		t.Errorf("ExecStart=%v, want /usr/local/bin/tether-agent serve (where the SSM documents call it)", exec)
	}
	// A watchdog (serve pings it), and no start limit: a host without the
	// plugin can start no tether task.
	if got := svc["WatchdogSec"]; len(got) != 1 || got[0] == "0" {
		t.Errorf("WatchdogSec=%v, want a watchdog", got)
	}
	if got := u["Unit"]["StartLimitIntervalSec"]; len(got) != 1 || got[0] != "0" {
		t.Errorf("StartLimitIntervalSec=%v in [Unit], want 0 (unlimited restarts)", got)
	}
	// Any of these gives the service its own mount namespace: its mounts
	// would be invisible to dockerd.
	for _, key := range []string{"ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
		"ReadOnlyPaths", "ReadWritePaths", "InaccessiblePaths", "TemporaryFileSystem", "BindPaths",
		"ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
		"ProtectHostname", "ProtectProc", "MountFlags", "RootDirectory", "DeviceAllow", "DevicePolicy", "ProtectClock"} {
		if v, ok := svc[key]; ok {
			t.Errorf("%s=%v: would hide tether's mounts from dockerd or its devices from tether", key, v)
		}
	}
	caps := words(svc["CapabilityBoundingSet"])
	for _, want := range []string{"CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_LINUX_IMMUTABLE"} {
		if !slices.Contains(caps, want) {
			t.Errorf("CapabilityBoundingSet %v lacks %s", caps, want)
		}
	}
	if got := words(u["Install"]["WantedBy"]); !slices.Contains(got, "multi-user.target") {
		t.Errorf("WantedBy=%v", got)
	}
}
