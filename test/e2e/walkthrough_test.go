package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/test/demo"
	"github.com/tether-ecs/tether/test/images"
	"github.com/tether-ecs/tether/test/world/hosts"
	"github.com/tether-ecs/tether/test/world/world"
)

// The seed's walkthrough with busybox in place of MySQL: the first task's
// container writes a file into its volume, drain-instance.sh moves the task,
// and the replacement's container on the other instance reads the file from
// the same EBS volume, now attached there. Then the seed's cleanup leaves
// the volume available, finds it by its Name tag and deletes it.
func TestSeedWalkthroughBusybox(t *testing.T) {
	requireWorld(t)
	w := startWorld(t, world.Options{})
	ctx := ctxFor(t)
	wt, err := demo.New(demo.WorldTarget(w), t.TempDir(), &logWriter{t: t})
	if err != nil {
		t.Fatal(err)
	}

	if err := wt.Outputs(ctx); err != nil {
		t.Fatal(err)
	}
	for k, v := range w.StackOutputs() {
		if got := wt.Session.Var(k); got != v {
			t.Errorf("get-outputs.sh set %s=%q, the stack says %q", k, got, v)
		}
	}
	if _, err := wt.TaskDefinition(ctx, busybox); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Service(ctx); err != nil {
		t.Fatal(err)
	}
	first, _, err := wt.FirstTask(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before, err := wt.Volume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.InstanceID != first.InstanceID || before.State != "in-use" || before.Type != "gp2" || before.SizeGiB != 5 {
		t.Fatalf("rexray-vol is %+v; want a 5 GiB gp2 volume in use on %s, where the task runs", before, first.InstanceID)
	}
	requireVolumeMount(t, ctx, w, first)
	mark := fmt.Sprintf("Fluffy Poodle %d", time.Now().UnixNano())
	inTask(t, ctx, w, first, "echo "+mark+" > /var/lib/mysql/pets && sync")

	drainedAt, err := wt.Drain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := wt.Replacement(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("handoff: replacement RUNNING %.1fs after the drain", time.Since(drainedAt).Seconds())
	after, err := wt.Volume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.ID != before.ID || after.InstanceID != second.InstanceID {
		t.Fatalf("after the drain rexray-vol is %s; want %s attached to %s, where the replacement runs", after, before.ID, second.InstanceID)
	}
	requireVolumeMount(t, ctx, w, second)
	if got := inTask(t, ctx, w, second, "cat /var/lib/mysql/pets"); got != mark {
		t.Fatalf("the replacement on %s reads %q from its volume, want %q (written on %s)", second.InstanceID, got, mark, first.InstanceID)
	}

	if err := wt.CleanUp(ctx); err != nil {
		t.Fatal(err)
	}
}

// busybox turns the seed's MySQL container into one that waits, stopping
// at once on SIGTERM; everything else stays the seed's.
func busybox(def map[string]any) error {
	cs, _ := def["containerDefinitions"].([]any)
	if len(cs) != 1 {
		return fmt.Errorf("want the seed's one container, got %d", len(cs))
	}
	c, _ := cs[0].(map[string]any)
	if c["image"] != "mysql" {
		return fmt.Errorf("the seed's container runs %v, want mysql", c["image"])
	}
	c["image"] = "busybox"
	c["entryPoint"] = []string{"sh", "-c"}
	c["command"] = []string{"trap 'exit 0' TERM; while true; do sleep 1; done"}
	return nil
}

// inTask runs a shell command in the task's container (docker exec on its
// instance) and returns its output, trimmed.
func inTask(t *testing.T, ctx context.Context, w *world.World, task demo.Task, command string) string {
	t.Helper()
	h, ok := w.RealHost(task.InstanceID)
	if !ok {
		t.Fatalf("%s is not a real host", task.InstanceID)
	}
	script := fmt.Sprintf(`id=$(docker ps -q --filter label=%s=%s) && [ -n "$id" ] && exec docker exec "$id" sh -c '%s'`,
		hosts.LabelTaskARN, task.Arn, command)
	r, err := h.RunShellScript(ctx, script, time.Minute)
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("in task %s on %s: %s: exit %d, %v\n%s", task.ID, task.InstanceID, command, r.ExitCode, err, r.Stderr)
	}
	return strings.TrimSpace(r.Stdout)
}

// requireVolumeMount checks that the container's /var/lib/mysql is an
// ext4 filesystem (the EBS volume), not a directory of the host.
func requireVolumeMount(t *testing.T, ctx context.Context, w *world.World, task demo.Task) {
	t.Helper()
	mounts := inTask(t, ctx, w, task, "cat /proc/self/mounts")
	for line := range strings.SplitSeq(mounts, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[1] == "/var/lib/mysql" {
			if f[2] != "ext4" {
				t.Fatalf("task %s: /var/lib/mysql is %s from %s, want the EBS volume's ext4", task.ID, f[2], f[0])
			}
			return
		}
	}
	t.Fatalf("task %s: /var/lib/mysql is not a mount:\n%s", task.ID, mounts)
}

// `make demo` with the instant profile: the mysql image, the seed's own
// task definition (driver tether), the seed's SQL with the mariadb client,
// the row back after the drain on the same volume. Opt-in: the image's
// first build runs debootstrap (about a minute, needs Debian's mirror).
func TestSeedWalkthroughMariaDB(t *testing.T) {
	if os.Getenv("TETHER_E2E_MARIADB") != "1" {
		t.Skip("set TETHER_E2E_MARIADB=1 to run the MySQL walkthrough (make demo with the instant profile)")
	}
	requireWorld(t)
	root, err := world.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	img, err := images.MySQL(ctxFor(t), root, "", &logWriter{t: t}, 0)
	if err != nil {
		t.Fatal(err)
	}
	w := startWorld(t, world.Options{Images: []hosts.Image{{Tar: img.Path}}})
	wt, err := demo.New(demo.WorldTarget(w), t.TempDir(), &logWriter{t: t})
	if err != nil {
		t.Fatal(err)
	}
	r, err := wt.RunMySQL(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Rows, []string{demo.PetRow}) || r.VolumeAfter.ID != r.VolumeBefore.ID ||
		r.Second.InstanceID == r.First.InstanceID || !r.CleanedUp {
		t.Fatalf("walkthrough result %+v", r)
	}
	t.Logf("the row came back on %s with %s; handoff %.1fs", r.Second.InstanceID, r.VolumeAfter.ID, r.Handoff.Seconds())
}
