package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/tether-ecs/tether/test/demo"
	"github.com/tether-ecs/tether/test/world/world"
)

// A container that runs as a non-root user (user "1000:1000") writes to
// its tether volume, as it could to an EBS volume ECS manages: the first
// mount formats the new volume and gives its root to group 1000 (root:1000,
// 2775). The task moves to the other instance; there the file is still
// there, the ownership unchanged, and the container writes again.
func TestNonRootContainerWritesToItsVolume(t *testing.T) {
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
	if _, err := wt.TaskDefinition(ctx, nonRoot); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Service(ctx); err != nil {
		t.Fatal(err)
	}
	first, _, err := wt.FirstTask(ctx)
	if err != nil {
		t.Fatal(err)
	}
	requireVolumeMount(t, ctx, w, first)
	checkOwner := func(task demo.Task) {
		t.Helper()
		if got := inTask(t, ctx, w, task, "id -u; id -g"); got != "1000\n1000" {
			t.Fatalf("task %s's container runs as %q, want uid 1000 gid 1000 (the container definition's user)", task.ID, got)
		}
		if got := inTask(t, ctx, w, task, `stat -c "%u:%g %a" /var/lib/mysql`); got != "0:1000 2775" {
			t.Fatalf("task %s: the volume's root is %q, want 0:1000 2775", task.ID, got)
		}
	}
	checkOwner(first)
	mark := fmt.Sprintf("written by uid 1000 %d", time.Now().UnixNano())
	inTask(t, ctx, w, first, "echo "+mark+" > /var/lib/mysql/notes && sync")

	if _, err := wt.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	second, _, err := wt.Replacement(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if second.InstanceID == first.InstanceID {
		t.Fatalf("the replacement runs on %s too; want the other instance", first.InstanceID)
	}
	requireVolumeMount(t, ctx, w, second)
	checkOwner(second)
	if got := inTask(t, ctx, w, second, "cat /var/lib/mysql/notes"); got != mark {
		t.Fatalf("the replacement on %s reads %q, want %q (written on %s)", second.InstanceID, got, mark, first.InstanceID)
	}
	if got := inTask(t, ctx, w, second, `echo again >> /var/lib/mysql/notes && mkdir /var/lib/mysql/d && stat -c "%u:%g" /var/lib/mysql/notes /var/lib/mysql/d && sync`); got != "1000:1000\n1000:1000" {
		t.Fatalf("files the container made: owners %q, want 1000:1000 (the setgid root keeps group 1000)", got)
	}
	if err := wt.CleanUp(ctx); err != nil {
		t.Fatal(err)
	}
}

// nonRoot is busybox (the seed's task with a waiting container) run as
// user 1000:1000.
func nonRoot(def map[string]any) error {
	if err := busybox(def); err != nil {
		return err
	}
	def["containerDefinitions"].([]any)[0].(map[string]any)["user"] = "1000:1000"
	return nil
}
