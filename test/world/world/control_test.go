package world_test

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tether-ecs/tether/test/world/world"
)

// Instances are spread over the AZs in turn, registered with EC2, SSM and
// ECS, and the control methods change each of them as the real event
// would.
func TestInstancesAndControls(t *testing.T) {
	w := world.StartT(t, world.Options{Instances: 3, AZs: 2, Seed: 7})
	ctx := ctxT(t)
	ins := w.Instances()
	idPattern := regexp.MustCompile(`^i-0[0-9a-f]{16}$`)
	for i, in := range ins {
		if want := []string{"us-west-2a", "us-west-2b"}[i%2]; in.AZ != want {
			t.Errorf("instance %d in %s, want %s", i, in.AZ, want)
		}
		if !idPattern.MatchString(in.ID) || !strings.HasPrefix(in.ContainerInstanceArn, "arn:aws:ecs:us-west-2:123456789012:container-instance/default/") {
			t.Errorf("instance %+v", in)
		}
		if state, err := w.EC2().InstanceState(in.ID); err != nil || state != "running" {
			t.Errorf("EC2 %s: %q %v", in.ID, state, err)
		}
	}
	// The same seed makes the same world.
	again := world.StartT(t, world.Options{Instances: 3, AZs: 2, Seed: 7})
	for i, in := range again.Instances() {
		if in.ID != ins[i].ID {
			t.Errorf("seed 7 gave %s then %s", ins[i].ID, in.ID)
		}
	}

	if _, err := w.LaunchInstance(ctx, world.LaunchOptions{AZ: "us-west-2c"}); err == nil {
		t.Error("launched into an AZ the world does not have")
	}
	if _, err := w.LaunchInstance(ctx, world.LaunchOptions{Cluster: "nope"}); err == nil {
		t.Error("registered with a cluster that does not exist")
	}

	a, b, c := ins[0], ins[1], ins[2]
	if err := w.DrainInstance(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := w.RestartAgent(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if h, _ := w.FakeHost(b.ID); h.State().AgentRestarts != 1 {
		t.Errorf("tether-agent restarts on %s: %d, want 1", b.ID, h.State().AgentRestarts)
	}
	if err := w.KillInstance(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if h, _ := w.FakeHost(c.ID); !h.State().Down {
		t.Errorf("%s's host still up after KillInstance", c.ID)
	}
	if state, _ := w.EC2().InstanceState(c.ID); state != "terminated" {
		t.Errorf("EC2 %s is %s after KillInstance, want terminated", c.ID, state)
	}
	status := map[string]string{}
	for _, ci := range w.ECS().Snapshot("default").Instances {
		status[ci.EC2InstanceID] = ci.Status
	}
	if status[a.ID] != "DRAINING" || status[b.ID] != "ACTIVE" || status[c.ID] != "INACTIVE" {
		t.Errorf("ECS container instances %v, want %s DRAINING, %s ACTIVE, %s INACTIVE", status, a.ID, b.ID, c.ID)
	}
	if err := w.KillInstance(ctx, "i-00000000000000000"); !errors.Is(err, world.ErrNoInstance) {
		t.Errorf("KillInstance of an unknown instance: %v", err)
	}
}

// The env file points the aws CLI at the world: sourced alone, the seed's
// get-outputs.sh and any aws command work.
func TestEnvFile(t *testing.T) {
	w := world.StartT(t, world.Options{Instances: 1})
	sh := newShell(t, nil)
	envFile := filepath.Join(sh.dir, "world.env")
	if err := w.WriteEnvFile(envFile); err != nil {
		t.Fatal(err)
	}
	sh.copySeed("get-outputs.sh", 0o755)
	out := sh.run(". ./world.env && ./get-outputs.sh && aws ecs list-container-instances --cluster \"$ECSClusterName\" --query 'length(containerInstanceArns)'")
	if !strings.Contains(out, "export ECSClusterName=default\n") || !strings.HasSuffix(strings.TrimSpace(out), "1") {
		t.Fatalf("with the env file sourced:\n%s", out)
	}
	for k, v := range map[string]string{"AWS_ENDPOINT_URL": w.Endpoint(), "AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-west-2", "CloudFormationStack": world.SeedStack} {
		if got := w.Env()[k]; got != v {
			t.Errorf("Env()[%s] = %q, want %q", k, got, v)
		}
	}
	// Values are quoted for the shell.
	w2 := world.StartT(t, world.Options{StackOutputs: map[string]string{"Odd": `it's "odd" $HOME`}})
	if err := w2.WriteEnvFile(envFile); err != nil {
		t.Fatal(err)
	}
	if got := sh.run(`. ./world.env && printf %s "$Odd"`); got != `it's "odd" $HOME` {
		t.Fatalf("Odd = %q", got)
	}
}

func TestOptionsAreChecked(t *testing.T) {
	for name, o := range map[string]world.Options{
		"hosts":     {Hosts: "vm"},
		"functions": {Functions: "lambda"},
		"profile":   {Profile: "slow"},
		"region":    {Region: "mars"},
		"azs":       {AZs: 9},
		"instances": {Instances: -1},
		"account":   {Account: "42"},
	} {
		t.Run(name, func(t *testing.T) {
			w, err := world.Start(context.Background(), o)
			if err == nil {
				_ = w.Close()
				t.Fatal("started")
			}
			if !errors.Is(err, world.ErrBadOptions) {
				t.Fatalf("err = %v, want ErrBadOptions", err)
			}
			t.Log(err)
		})
	}
}
