package cloud

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// describesECS answers for one container instance and counts the describes
// (logic of the seam only: which lookups reach ECS).
type describesECS struct {
	ECSAPI
	mu        sync.Mutex
	describes int
	status    string
}

const recentCIARN = "arn:aws:ecs:us-east-1:111122223333:container-instance/c/a"

func (e *describesECS) DescribeContainerInstances(_ context.Context, in *ecs.DescribeContainerInstancesInput, _ ...func(*ecs.Options)) (*ecs.DescribeContainerInstancesOutput, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.describes++
	return &ecs.DescribeContainerInstancesOutput{ContainerInstances: []ecstypes.ContainerInstance{{
		ContainerInstanceArn: aws.String(recentCIARN), Ec2InstanceId: aws.String("i-a"), Status: aws.String(e.status), AgentConnected: true,
	}}}, nil
}

func (e *describesECS) ListContainerInstances(context.Context, *ecs.ListContainerInstancesInput, ...func(*ecs.Options)) (*ecs.ListContainerInstancesOutput, error) {
	return &ecs.ListContainerInstancesOutput{ContainerInstanceArns: []string{recentCIARN}}, nil
}

// A container instance's state, as described, serves the process's later
// invocations while it is younger than MaxAge (a drain's events, one
// invocation each, read the host once); older, and for a read past the
// session (Uncached), ECS is asked again.
func TestContainerInstanceStatesServeTheProcessForMaxAge(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	e := &describesECS{status: "ACTIVE"}
	c := NewWithClients(nil, e, nil, Options{BatchWindow: -1, MaxAge: 3 * time.Second, Now: func() time.Time { return now }})
	lookup := func(ctx context.Context, byEC2 bool) ContainerInstance {
		t.Helper()
		var ci ContainerInstance
		var err error
		if byEC2 {
			ci, err = c.ContainerInstanceOf(ctx, "c", "i-a")
		} else {
			ci, err = c.ContainerInstance(ctx, "c", recentCIARN)
		}
		if err != nil {
			t.Fatal(err)
		}
		return ci
	}
	for i, step := range []struct {
		after   time.Duration
		byEC2   bool
		fresh   bool // Uncached
		status  string
		want    int // describes so far
		wantSee string
	}{
		{0, true, false, "ACTIVE", 1, "ACTIVE"},
		{time.Second, false, false, "DRAINING", 1, "ACTIVE"}, // another invocation, 1 s later: the process's answer
		{time.Second, true, false, "DRAINING", 1, "ACTIVE"},
		{1500 * time.Millisecond, false, false, "DRAINING", 2, "DRAINING"}, // 3.5 s old: asked again
		{0, false, true, "DRAINING", 3, "DRAINING"},                        // past the session: always asked
		{time.Second, true, false, "ACTIVE", 3, "DRAINING"},
	} {
		now = now.Add(step.after)
		e.mu.Lock()
		e.status = step.status
		e.mu.Unlock()
		ctx := NewSession(context.Background()) // a new invocation each time
		if step.fresh {
			ctx = Uncached(ctx)
		}
		ci := lookup(ctx, step.byEC2)
		if e.describes != step.want || ci.Status != step.wantSee {
			t.Fatalf("step %d: %d describes, status %q; want %d and %q", i, e.describes, ci.Status, step.want, step.wantSee)
		}
	}
}
