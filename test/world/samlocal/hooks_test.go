package samlocal_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/test/world/samlocal"
)

// hookRecorder stands for the world's Auto Scaling: the hooks put, and a
// refusal for a group it does not have (Auto Scaling's ValidationError).
type hookRecorder struct {
	mu     sync.Mutex
	groups []string
	puts   []*autoscaling.PutLifecycleHookInput
}

func (h *hookRecorder) PutLifecycleHook(_ context.Context, in *autoscaling.PutLifecycleHookInput, _ ...func(*autoscaling.Options)) (*autoscaling.PutLifecycleHookOutput, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !slices.Contains(h.groups, aws.ToString(in.AutoScalingGroupName)) {
		return nil, &smithy.GenericAPIError{Code: "ValidationError", Message: "Group " + aws.ToString(in.AutoScalingGroupName) + " not found"}
	}
	h.puts = append(h.puts, in)
	return &autoscaling.PutLifecycleHookOutput{}, nil
}

func deployWithGroups(t *testing.T, asg samlocal.AutoScalingAPI, groups string) (*samlocal.Deployment, error) {
	t.Helper()
	e := newEnv(t)
	d, err := samlocal.Deploy(context.Background(), samlocal.Config{
		Template: repoTemplate, StackName: "tether", Parameters: map[string]string{"ClusterName": "default", "AutoScalingGroupNames": groups},
		Endpoint: endpoint, Bus: e.bus, SSM: e.ssm, Runtime: newRecorder(), AutoScaling: asg,
	})
	if d != nil {
		t.Cleanup(func() { _ = d.Stop() })
	}
	return d, err
}

// With AutoScalingGroupNames, each named group gets tether's termination
// hook (PutLifecycleHook, as CloudFormation does) with the template's
// settings, the lifecycle action rule exists, and the hosts function
// knows the hook's name; the unused slots are not created.
func TestTerminationHooksArePutIntoTheNamedGroups(t *testing.T) {
	asg := &hookRecorder{groups: []string{"ecs-od", "ecs-spot"}}
	d, err := deployWithGroups(t, asg, "ecs-od,ecs-spot")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Hooks, []string{"ecs-od/tether-tether", "ecs-spot/tether-tether"}) {
		t.Errorf("hooks %v", d.Hooks)
	}
	for _, in := range asg.puts {
		if aws.ToString(in.LifecycleHookName) != "tether-tether" || aws.ToString(in.LifecycleTransition) != "autoscaling:EC2_INSTANCE_TERMINATING" ||
			aws.ToString(in.DefaultResult) != "CONTINUE" || aws.ToInt32(in.HeartbeatTimeout) != 300 ||
			in.NotificationTargetARN != nil || in.RoleARN != nil {
			t.Errorf("hook put %+v", in)
		}
	}
	if !slices.Contains(d.Rules, "TerminationHoldRule") || !slices.Equal(d.NotCreated, []string{"TerminationHook3", "TerminationHook4"}) {
		t.Errorf("rules %v, not created %v", d.Rules, d.NotCreated)
	}
	if got := d.Functions["HostsFunction"].Env["TETHER_HOLD_HOOK"]; got != "tether-tether" {
		t.Errorf("TETHER_HOLD_HOOK = %q", got)
	}
}

// A hook of a group the world does not have fails the deploy, as it fails
// the stack; so does a template with hooks and no Auto Scaling to put them in.
func TestATerminationHookNeedsItsGroup(t *testing.T) {
	if _, err := deployWithGroups(t, &hookRecorder{groups: []string{"ecs-od"}}, "ecs-od,missing"); err == nil {
		t.Error("deployed a hook of a group Auto Scaling does not have")
	}
	if _, err := deployWithGroups(t, nil, "ecs-od"); !errors.Is(err, samlocal.ErrUnsupported) {
		t.Errorf("hooks without an Auto Scaling: %v, want ErrUnsupported", err)
	}
}
