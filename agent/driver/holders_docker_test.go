package driver_test

// A stale `tether-agent unmount` must not pull a volume from under a
// container that is still starting: the plugin answered its Mount, and
// dockerd waits for the container's other volumes before it binds the
// mount point into the container.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// agentRun is one run of a tether-agent command inside the machine.
type agentRun struct {
	stdout, stderr string
	code           int
}

// tetherAgent runs a tether-agent command (as the SSM document does) inside
// the machine.
func (m *machine) tetherAgent(args ...string) agentRun {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := m.Command(ctx, m.bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	r := agentRun{stdout: o.String(), stderr: e.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		m.t.Fatalf("machine %s: tether-agent %s: %v", m.ID(), strings.Join(args, " "), err)
	}
	m.t.Logf("tether-agent %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// unmountCmd is the reconciler's `tether-agent unmount` (a stale pass's).
func (m *machine) unmountCmd(volumeID, name string, extra ...string) agentRun {
	m.t.Helper()
	return m.tetherAgent(append([]string{"unmount", "--volume-id", volumeID, "--name", name, "--root", agentRoot, "--json"}, extra...)...)
}

// pluginLog counts the serve log's lines with msg for method and the
// Docker volume name; ok lines only (no error status) when okOnly.
func (m *machine) pluginLog(msg, method, volume string, okOnly bool) int {
	m.t.Helper()
	b, err := os.ReadFile(m.agent.log)
	if err != nil {
		m.t.Fatal(err)
	}
	n := 0
	for _, line := range bytes.Split(b, []byte("\n")) {
		var l struct {
			Msg, Method, Volume string
			Status              int
		}
		if json.Unmarshal(line, &l) == nil && l.Msg == msg && l.Method == method && l.Volume == volume && (!okOnly || l.Status == 0) {
			n++
		}
	}
	return n
}

// killServe ends tether-agent serve abruptly (a crash, an OOM kill).
func (m *machine) killServe() {
	m.t.Helper()
	a := m.agent
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Kill()
	<-a.done
	a.cmd = nil
}

// startInBackground runs `docker run -d` (which returns once the container
// started, or failed to) without waiting for it; the CLI is killed at the
// end of the test if it still runs.
func (m *machine) startInBackground(args ...string) <-chan error {
	m.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	exited := make(chan struct{}) // closed when the CLI has exited, whoever reads done
	cmd := exec.CommandContext(ctx, "docker", append([]string{"run", "-d"}, args...)...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+m.DockerHost())
	var e bytes.Buffer
	cmd.Stderr = &e
	if err := cmd.Start(); err != nil {
		cancel()
		m.t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		if err != nil {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(e.String()))
		}
		done <- err
		close(exited)
	}()
	m.t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			m.t.Errorf("docker run still running 30s after it was killed")
		}
	})
	return done
}

// holders asks the plugin's tether-private endpoint over its socket.
func (m *machine) holders(name string) (mountIDs []string, adopted int, err error) {
	sock := m.Path(pluginSocket)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := client.Post("http://plugin/Tether.Holders", "application/json", strings.NewReader(`{"Name":"`+name+`"}`))
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Holders []string
		Adopted int
		Err     string
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Err != "" {
		return nil, 0, fmt.Errorf("Tether.Holders %s: %s, %v, %q", name, resp.Status, err, out.Err)
	}
	return out.Holders, out.Adopted, nil
}

// wantHolders fails the test unless the plugin reports these holders.
func (m *machine) wantHolders(name string, mountIDs, adopted int) []string {
	m.t.Helper()
	ids, n, err := m.holders(name)
	if err != nil || len(ids) != mountIDs || n != adopted {
		m.t.Fatalf("holders of %s = %v, %d adopted, %v; want %d mount IDs, %d adopted", name, ids, n, err, mountIDs, adopted)
	}
	return ids
}

// startingTask is task T3 of the chaos finding: one container, two tether
// volumes (data-19, shared, with the previous task's data; and a
// task-scoped one), both bound on this instance and detached.
type startingTask struct {
	vols    map[string]*taskVolume // by Docker name
	running <-chan error           // docker run -d's result
}

type taskVolume struct {
	docker, tether, volumeID, backing string
}

const (
	t3TaskID     = "0123456789abcdef0123456789abcd19"
	t3TaskVolume = "ecs-app-5-scratch-a1b2c3d4e5f6a7b8c9"
)

func t3Labels() []string {
	return []string{
		"--label", "com.amazonaws.ecs.task-arn=arn:aws:ecs:us-east-1:123456789012:task/demo/" + t3TaskID,
		"--label", "com.amazonaws.ecs.task-definition-family=app",
		"--label", "com.amazonaws.ecs.task-definition-version=5",
	}
}

// prepareT3 makes both volumes as the previous tasks left them: bound,
// unmounted, detached; data-19 holds the previous task's proof.
func (m *machine) prepareT3() map[string]*taskVolume {
	m.t.Helper()
	vols := map[string]*taskVolume{
		"data-19":    {docker: "data-19", tether: "data-19", volumeID: "vol-0d0d0d0d0d0d0d019"},
		t3TaskVolume: {docker: t3TaskVolume, tether: "task-" + t3TaskID + "-scratch", volumeID: "vol-0e0e0e0e0e0e0e0e1"},
	}
	for _, v := range vols {
		m.mustDocker("volume", "create", "-d", "tether", "-o", "size=1", v.docker)
		v.backing = m.attach(v.volumeID)
		m.tetherMount(v.volumeID, v.tether)
	}
	if err := os.WriteFile(m.Path(agentRoot+"/volumes/data-19/proof"), []byte("from-T2\n"), 0o644); err != nil {
		m.t.Fatal(err)
	}
	for _, v := range vols {
		if r := m.unmountCmd(v.volumeID, v.tether); r.code != 0 {
			m.t.Fatalf("unmount %s: exit %d", v.tether, r.code)
		}
		if err := m.DetachLoop(context.Background(), v.volumeID, false); err != nil {
			m.t.Fatal(err)
		}
	}
	return vols
}

// startT3UntilHalfMounted starts T3's container and brings it to the
// finding's moment: the plugin answered the Mount of one volume (held), and
// dockerd waits on the Mount of the other (waiting). dockerd mounts a
// container's volumes in map order, so which comes first is random: the
// first one asked for is attached (the plugin then remounts it itself, as
// for data-19 in the finding), the other stays detached.
func (m *machine) startT3UntilHalfMounted(vols map[string]*taskVolume) (held, waiting *taskVolume, running <-chan error) {
	m.t.Helper()
	args := append([]string{"--name", "t3", "--network", "none", "-v", "data-19:/data", "-v", t3TaskVolume + ":/scratch"}, t3Labels()...)
	running = m.startInBackground(append(args, "busybox", "sh", "-c", "cat /data/proof > /scratch/seen && exec sleep 600")...)
	waitFor(m.t, "dockerd's first Mount of T3's volumes", 60*time.Second, func() (bool, string) {
		for _, v := range vols {
			if m.pluginLog("plugin request", "VolumeDriver.Mount", v.docker, false) > 0 {
				held = v
				return true, ""
			}
		}
		return false, "no Mount yet"
	})
	for _, v := range vols {
		if v != held {
			waiting = v
		}
	}
	m.t.Logf("dockerd mounts %s first: it is held, %s waits", held.docker, waiting.docker)
	// The reconciler attaches it and runs its mount command (the unmount
	// command released it: the plugin does not mount it by itself).
	m.AttachLoopT(m.t, held.backing, held.volumeID)
	m.tetherMount(held.volumeID, held.tether)
	waitFor(m.t, "the plugin to answer the Mount of "+held.docker, 60*time.Second, func() (bool, string) {
		n := m.pluginLog("plugin reply", "VolumeDriver.Mount", held.docker, true)
		return n == 1, fmt.Sprintf("%d ok replies", n)
	})
	waitFor(m.t, "dockerd's Mount of "+waiting.docker, 60*time.Second, func() (bool, string) {
		n := m.pluginLog("plugin request", "VolumeDriver.Mount", waiting.docker, false)
		return n == 1, fmt.Sprintf("%d requests", n)
	})
	return held, waiting, running
}

// finishT3 attaches the waiting volume and mounts it (the reconciler), dockerd
// starts the container, which must see the previous task's data.
func (m *machine) finishT3(waiting *taskVolume, running <-chan error) {
	m.t.Helper()
	m.AttachLoopT(m.t, waiting.backing, waiting.volumeID)
	m.tetherMount(waiting.volumeID, waiting.tether)
	select {
	case err := <-running:
		if err != nil {
			m.t.Fatalf("docker run t3: %v", err)
		}
	case <-time.After(2 * time.Minute):
		m.t.Fatal("docker run t3 did not return within 2m of its last volume's device appearing")
	}
	out, errOut, err := m.docker("exec", "t3", "cat", "/data/proof", "/scratch/seen")
	if err != nil || out != "from-T2\nfrom-T2" {
		m.t.Fatalf("t3 started without its data: cat /data/proof /scratch/seen = %q, %v %s", out, err, errOut)
	}
}

// TestStaleUnmountIsRefusedWhileAContainerStarts is the chaos finding: the
// plugin has answered the Mount of one of T3's volumes, dockerd waits for
// the other, and a stale reconciler pass unmounts the first. The container
// is only "created" in dockerd; the unmount must still answer busy, naming
// the holder, and T3 must start with its data.
func TestStaleUnmountIsRefusedWhileAContainerStarts(t *testing.T) {
	m := newMachine(t, "i-stale")
	vols := m.prepareT3()
	held, waiting, running := m.startT3UntilHalfMounted(vols)

	if st := m.listedState("t3"); st != "created" {
		t.Fatalf("t3 is %s while dockerd waits for its volumes; want created", st)
	}
	r := m.unmountCmd(held.volumeID, held.tether)
	if r.code != 3 {
		t.Errorf("stale unmount of %s while t3 starts: exit %d, want 3 (busy)", held.tether, r.code)
	}
	ids, adopted, err := m.holders(held.tether)
	if err != nil || len(ids) != 1 || adopted != 0 {
		t.Errorf("Tether.Holders %s = %v, %d adopted, %v; want the one mount ID dockerd got", held.tether, ids, adopted, err)
	}
	for _, want := range []string{"t3", shortID(ids)} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("busy unmount does not name the holder %q: %s", want, r.stderr)
		}
	}
	m.wantMounted(held.tether, true)

	m.finishT3(waiting, running)
	m.mustDocker("rm", "-f", "t3")
	for _, v := range vols {
		m.waitUnmounted(v.tether)
	}
}

// listedState is the container's state from dockerd's container list:
// inspect would wait for the container's lock, which dockerd holds while
// it waits on a plugin Mount.
func (m *machine) listedState(name string) string {
	m.t.Helper()
	for _, line := range strings.Split(m.mustDocker("ps", "-a", "--format", "{{.Names}} {{.State}}"), "\n") {
		if n, st, ok := strings.Cut(line, " "); ok && n == name {
			return st
		}
	}
	return "(not listed)"
}

func shortID(ids []string) string {
	if len(ids) == 0 {
		return "(no mount id)"
	}
	return ids[0][:12]
}

// TestUnmountWithThePluginDown: with tether-agent serve not running, the
// unmount command cannot ask for the plugin's holders, so it counts every
// container that can still start (created, restarting, running, paused)
// as a user, says so, and --force still goes past them.
func TestUnmountWithThePluginDown(t *testing.T) {
	m := newMachine(t, "i-nodaemon")
	const vol = "vol-0c0c0c0c0c0c0c0c1"
	m.mustDocker("volume", "create", "-d", "tether", "data")
	m.attach(vol)
	m.tetherMount(vol, "data")
	m.mustDocker("create", "--name", "later", "--network", "none", "-v", "data:/data", "busybox", "true")
	m.mustDocker("run", "--name", "finished", "--network", "none", "-v", "/var/lib/tether/volumes/data:/d", "busybox", "true")
	m.stopServe()

	r := m.unmountCmd(vol, "data")
	if r.code != 3 || !strings.Contains(r.stderr, "later") || strings.Contains(r.stderr, "finished") {
		t.Errorf("unmount with the plugin down: exit %d (want 3) naming the created container, not the exited one: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "plugin") {
		t.Errorf("the log does not say the plugin could not be asked: %s", r.stderr)
	}
	m.wantMounted("data", true)

	forced := m.unmountCmd(vol, "data", "--force")
	if forced.code != 0 || !strings.Contains(forced.stdout, `"wasMounted":true`) || !strings.Contains(forced.stdout, `"name":"later"`) {
		t.Errorf("unmount --force with the plugin down: exit %d, %s; want success naming the container it went past", forced.code, forced.stdout)
	}
	m.wantMounted("data", false)
	m.mustDocker("rm", "later", "finished")
	if r := m.unmountCmd(vol, "data"); r.code != 0 || !strings.Contains(r.stdout, `"wasMounted":false`) {
		t.Errorf("unmount of an unmounted volume: exit %d, %s", r.code, r.stdout)
	}
	m.startServe()
}

// TestHoldersAfterARestart: a restarted plugin counts the running
// containers it adopted, and answers the holder query with them; after an
// abrupt death mid-start, the container that may hold a Mount from before
// the restart keeps the volume busy.
func TestHoldersAfterARestart(t *testing.T) {
	m := newMachine(t, "i-restarts")

	t.Run("running containers adopted", func(t *testing.T) {
		m := m.with(t)
		const vol = "vol-0a0a0a0a0a0a0a0a1"
		m.mustDocker("volume", "create", "-d", "tether", "kept")
		m.attach(vol)
		m.tetherMount(vol, "kept")
		m.runHolding("k1", "kept")
		m.runHolding("k2", "kept")
		m.waitReplies("VolumeDriver.Mount", "kept", 2)
		m.wantHolders("kept", 2, 0)
		m.restartServe()
		m.wantHolders("kept", 0, 2)
		if r := m.unmountCmd(vol, "kept"); r.code != 3 {
			t.Fatalf("unmount after the restart: exit %d, want 3", r.code)
		}
		m.mustDocker("kill", "k1")
		m.waitReplies("VolumeDriver.Unmount", "kept", 1)
		m.wantHolders("kept", 0, 1)
		if r := m.unmountCmd(vol, "kept"); r.code != 3 {
			t.Fatalf("unmount with one adopted holder: exit %d, want 3", r.code)
		}
		m.mustDocker("kill", "k2")
		m.waitReplies("VolumeDriver.Unmount", "kept", 2)
		m.waitUnmounted("kept")
		m.wantHolders("kept", 0, 0)
		m.mustDocker("rm", "k1", "k2")
	})

	t.Run("killed while a container starts", func(t *testing.T) {
		m := m.with(t)
		vols := m.prepareT3()
		held, waiting, running := m.startT3UntilHalfMounted(vols)
		m.killServe()
		m.startServe()
		r := m.unmountCmd(held.volumeID, held.tether)
		if r.code != 3 || !strings.Contains(r.stderr, "t3") {
			t.Errorf("unmount after the plugin died during t3's start: exit %d (want 3) naming t3: %s", r.code, r.stderr)
		}
		m.wantMounted(held.tether, true)
		// dockerd either re-sends the waiting Mount to the new plugin (t3
		// starts) or gives up on t3's start; never may t3 run without data.
		m.AttachLoopT(t, waiting.backing, waiting.volumeID)
		m.tetherMount(waiting.volumeID, waiting.tether)
		select {
		case err := <-running:
			t.Logf("docker run t3 after the plugin's restart: %v", err)
		case <-time.After(3 * time.Minute):
			t.Fatal("docker run t3 still running 3m after the plugin's restart")
		}
		if st, _ := m.containerState("t3"); st == "running" {
			if out, _, err := m.docker("exec", "t3", "cat", "/data/proof", "/scratch/seen"); err != nil || out != "from-T2\nfrom-T2" {
				t.Fatalf("t3 runs without its data: %q, %v", out, err)
			}
		}
		m.mustDocker("rm", "-f", "t3")
	})
}

// TestUnmountedMountPointIsUnusable: defence in depth. A container given
// the mount point of an unmounted volume (however it got there) cannot
// write to it, as root or as another user; mounting again still works.
func TestUnmountedMountPointIsUnusable(t *testing.T) {
	m := newMachine(t, "i-sealed")
	const vol = "vol-0b0b0b0b0b0b0b0b1"
	m.attach(vol)
	m.tetherMount(vol, "data")
	if err := os.WriteFile(m.Path(agentRoot+"/volumes/data/kept"), []byte("kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := m.unmountCmd(vol, "data"); r.code != 0 {
		t.Fatalf("unmount: exit %d", r.code)
	}
	bind := "/var/lib/tether/volumes/data:/data"
	for _, user := range []string{"0", "1000"} {
		out, errOut, err := m.docker("run", "--rm", "--network", "none", "--user", user, "-v", bind, "busybox",
			"sh", "-c", "echo lost > /data/f")
		if err == nil {
			t.Errorf("as uid %s a container wrote into the unmounted mount point: %s", user, out)
		}
		t.Logf("uid %s: %v: %s", user, err, errOut)
	}
	if _, err := os.Stat(m.Path(agentRoot + "/volumes/data/f")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file appeared in the unmounted mount point: %v", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(m.Path(agentRoot+"/volumes/data"), &st); err != nil || st.Mode&0o777 != 0 {
		t.Errorf("unmounted mount point mode %o, %v; want 000", st.Mode&0o777, err)
	}
	m.tetherMount(vol, "data")
	if out := m.mustDocker("run", "--rm", "--network", "none", "-v", bind, "busybox", "sh", "-c", "cat /data/kept && echo new > /data/f && cat /data/f"); out != "kept\nnew" {
		t.Fatalf("after mounting again the container sees %q; want the volume's data and a writable filesystem", out)
	}
	if r := m.unmountCmd(vol, "data"); r.code != 0 {
		t.Fatalf("unmount: exit %d", r.code)
	}
}
