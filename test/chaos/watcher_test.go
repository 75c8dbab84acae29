package chaos

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/world"
)

// The watcher on a live world: tether hands a volume over with its data
// (handoffs counted, no violation), and what tether never does is seen at
// once: a detach of a volume the guest has mounted, a forced detach from
// under a running task on a running host.
func TestWatcherOnALiveWorld(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := world.StartT(t, world.Options{Instances: 2, AZs: 1, TimeScale: timeScale, Seed: 3, Functions: world.InProcessFunctions})
	api := ecs.NewFromConfig(w.AWSConfig())
	svc := &serviceDef{name: "svc-00", az: w.Options().Region + "a",
		volumes: []volumeDef{{name: "data-00", shared: true, opts: map[string]string{"size": "1"}}}}
	if err := svc.register(ctx, api); err != nil {
		t.Fatal(err)
	}
	wt := newWatcher(w, "default", w.Deployment().Documents["MountDocument"], []*serviceDef{svc}, nil)
	if err := wt.tap(w.Bus()); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); wt.run(wctx) }()
	t.Cleanup(func() { stop(); <-done })
	if err := svc.create(ctx, api, "default", 1); err != nil {
		t.Fatal(err)
	}

	running := func(not string) ecssim.TaskInfo {
		t.Helper()
		var task ecssim.TaskInfo
		err := w.ECS().WaitFor(ctx, "default", "svc-00 RUNNING", func(sn ecssim.Snapshot) bool {
			for _, tk := range sn.ServiceTasks("svc-00") {
				if tk.LastStatus == "RUNNING" && tk.Arn != not {
					task = tk
					return true
				}
			}
			return false
		})
		if err != nil {
			t.Fatal(err)
		}
		return task
	}
	waitWatcher := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("watcher never saw %s; violations %v", what, wt.violations)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	first := running("")
	if err := w.DrainInstance(ctx, first.EC2InstanceID); err != nil {
		t.Fatal(err)
	}
	second := running(first.Arn)
	waitWatcher("the handoff", func() bool { return wt.Handoffs() == 1 })
	vol, ok := wt.volumeOf("data-00")
	if !ok {
		t.Fatal("the watcher does not know data-00's volume")
	}
	wt.mu.Lock()
	history := slices.Clone(wt.vols[vol].writes)
	nv := len(wt.violations)
	wt.mu.Unlock()
	if nv != 0 || !slices.Equal(history, []string{first.Arn, second.Arn}) {
		t.Fatalf("after one handoff: history %v (want %s, %s), violations %v", history, first.Arn, second.Arn, wt.violations)
	}

	// What tether must never do: detach the volume while the guest has it
	// mounted (its generation never released by an unmount), then force
	// it off a running host and task.
	c := ec2.NewFromConfig(w.AWSConfig())
	if _, err := c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(vol)}); err != nil {
		t.Fatal(err)
	}
	waitWatcher("the detach of a mounted volume", func() bool {
		wt.mu.Lock()
		defer wt.mu.Unlock()
		ks := kinds(wt.violations)
		return slices.Contains(ks, "detach-held") && slices.Contains(ks, "unmount-reused")
	})
	if _, err := c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(vol), Force: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	waitWatcher("the forced detach", func() bool {
		wt.mu.Lock()
		defer wt.mu.Unlock()
		ks := kinds(wt.violations)
		return slices.Contains(ks, "force-live") && slices.Contains(ks, "unclean-detach") && slices.Contains(ks, "unmounted-under-task")
	})
}
