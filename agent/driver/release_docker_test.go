package driver_test

import (
	"strings"
	"testing"
)

// Regression (issue 11, finding 4): after the unmount command succeeded,
// with the detach still in flight, the plugin remounted the still-visible
// device for a new container on the same host. A released volume is not
// mounted by the plugin: the container waits for the reconciler's next
// mount command, which clears the release.
func TestPluginDoesNotRemountAReleasedVolume(t *testing.T) {
	m := newMachine(t, "i-released", "--mount-wait", "3s")
	const vol = "vol-0c0c0c0c0c0c0c0c2"
	m.mustDocker("volume", "create", "-d", "tether", "data")
	m.attach(vol)
	m.tetherMount(vol, "data")
	m.mustDocker("run", "--rm", "--network", "none", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f")
	m.waitUnmounted("data") // the plugin's own unmount: not released
	if r := m.unmountCmd(vol, "data"); r.code != 0 || !strings.Contains(r.stdout, `"released":true`) {
		t.Fatalf("unmount: exit %d, %s", r.code, r.stdout)
	}
	// The device is still attached (the detach is in flight): a new
	// container on this host must not get it.
	_, errOut, err := m.docker("run", "--rm", "--network", "none", "-v", "data:/data", "busybox", "cat", "/data/f")
	if err == nil {
		t.Fatal("a container started on the released volume: the plugin remounted it")
	}
	if !strings.Contains(errOut, "released by the unmount command") {
		t.Errorf("docker run's error does not say the volume was released: %s", errOut)
	}
	m.wantMounted("data", false)
	// The reconciler's next mount clears the release.
	m.tetherMount(vol, "data")
	if out := m.mustDocker("run", "--rm", "--network", "none", "-v", "data:/data", "busybox", "cat", "/data/f"); out != "kept" {
		t.Fatalf("after the mount command the container reads %q", out)
	}
}
