package ec2sim

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func instanceStatus(t *testing.T, w *world, in *ec2.DescribeInstanceStatusInput) []types.InstanceStatus {
	t.Helper()
	out, err := w.ec2.DescribeInstanceStatus(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return out.InstanceStatuses
}

// TestDescribeInstanceStatus: running instances pass both checks until a
// control fails one; impaired checks say since when; stopped instances are
// listed only with IncludeAllInstances, as not-applicable.
func TestDescribeInstanceStatus(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.addInstance(t, instA, azA)
	w.addInstance(t, instB, azA)
	w.addInstance(t, instC, azB)

	all := instanceStatus(t, w, &ec2.DescribeInstanceStatusInput{})
	if len(all) != 3 {
		t.Fatalf("%d statuses, want 3", len(all))
	}
	s := all[0]
	if aws.ToString(s.InstanceId) != instA || s.InstanceState.Name != types.InstanceStateNameRunning || aws.ToString(s.AvailabilityZone) != azA ||
		s.InstanceStatus.Status != types.SummaryStatusOk || s.SystemStatus.Status != types.SummaryStatusOk ||
		s.AttachedEbsStatus.Status != types.SummaryStatusOk || len(s.InstanceStatus.Details) != 1 ||
		s.InstanceStatus.Details[0].Name != types.StatusNameReachability || s.InstanceStatus.Details[0].Status != types.StatusTypePassed {
		t.Errorf("healthy status %+v", s)
	}
	if ok := ec2.NewInstanceStatusOkWaiter(w.ec2, func(o *ec2.InstanceStatusOkWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Millisecond, 5*time.Millisecond
	}); ok.Wait(ctx,
		&ec2.DescribeInstanceStatusInput{InstanceIds: []string{instA}}, 5*time.Second) != nil {
		t.Error("InstanceStatusOk waiter")
	}

	before := time.Now().Add(-time.Second)
	if err := w.srv.ImpairInstanceStatus(instB, SystemCheck); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.HangInstance(instC, 0); err != nil {
		t.Fatal(err)
	}
	impaired := instanceStatus(t, w, &ec2.DescribeInstanceStatusInput{Filters: []types.Filter{
		{Name: aws.String("system-status.status"), Values: []string{"impaired"}}}})
	if len(impaired) != 1 || aws.ToString(impaired[0].InstanceId) != instB || impaired[0].InstanceStatus.Status != types.SummaryStatusOk ||
		impaired[0].SystemStatus.Details[0].Status != types.StatusTypeFailed || impaired[0].SystemStatus.Details[0].ImpairedSince == nil ||
		impaired[0].SystemStatus.Details[0].ImpairedSince.Before(before) {
		t.Errorf("system impaired: %+v", impaired)
	}
	hung := instanceStatus(t, w, &ec2.DescribeInstanceStatusInput{Filters: []types.Filter{
		{Name: aws.String("instance-status.reachability"), Values: []string{"failed"}}}})
	if len(hung) != 1 || aws.ToString(hung[0].InstanceId) != instC || hung[0].InstanceStatus.Status != types.SummaryStatusImpaired ||
		hung[0].InstanceState.Name != types.InstanceStateNameRunning {
		t.Errorf("hung instance: %+v", hung)
	}
	if err := w.srv.RestoreInstanceStatus(instB); err != nil {
		t.Fatal(err)
	}
	if got := instanceStatus(t, w, &ec2.DescribeInstanceStatusInput{InstanceIds: []string{instB}}); got[0].SystemStatus.Status != types.SummaryStatusOk {
		t.Errorf("after RestoreInstanceStatus: %+v", got[0].SystemStatus)
	}

	if err := w.srv.StopInstance(ctx, instA, false); err != nil {
		t.Fatal(err)
	}
	if got := instanceStatus(t, w, &ec2.DescribeInstanceStatusInput{InstanceIds: []string{instA}}); len(got) != 0 {
		t.Errorf("stopped instance listed without IncludeAllInstances: %+v", got)
	}
	got := instanceStatus(t, w, &ec2.DescribeInstanceStatusInput{InstanceIds: []string{instA}, IncludeAllInstances: aws.Bool(true)})
	if len(got) != 1 || got[0].InstanceState.Name != types.InstanceStateNameStopped || got[0].InstanceStatus.Status != types.SummaryStatusNotApplicable ||
		got[0].SystemStatus.Status != types.SummaryStatusNotApplicable || len(got[0].InstanceStatus.Details) != 0 {
		t.Errorf("stopped instance with IncludeAllInstances: %+v", got)
	}

	for name, c := range map[string]struct {
		in   *ec2.DescribeInstanceStatusInput
		want string
	}{
		"max 4":          {&ec2.DescribeInstanceStatusInput{MaxResults: aws.Int32(4)}, "InvalidParameterValue"},
		"ids and max":    {&ec2.DescribeInstanceStatusInput{MaxResults: aws.Int32(5), InstanceIds: []string{instB}}, "InvalidParameterCombination"},
		"unknown id":     {&ec2.DescribeInstanceStatusInput{InstanceIds: []string{"i-0000000000000000f"}}, "InvalidInstanceID.NotFound"},
		"unknown filter": {&ec2.DescribeInstanceStatusInput{Filters: []types.Filter{{Name: aws.String("event.code"), Values: []string{"x"}}}}, "InvalidParameterValue"},
	} {
		_, err := w.ec2.DescribeInstanceStatus(ctx, c.in)
		if got := code(t, err); got != c.want {
			t.Errorf("%s: %q, want %s", name, got, c.want)
		}
	}
}

// TestHungInstance: a hung guest keeps EC2 "running" and its status ok
// until the checks catch up; it does not release a device (the detach
// stays detaching) until the detach is forced.
func TestHungInstance(t *testing.T) {
	w := newWorld(t)
	host := w.addInstance(t, instA, azA)
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "in-use", "attached")
	if err := w.srv.HangInstance(instA, time.Hour); err != nil {
		t.Fatal(err)
	}
	st := instanceStatus(t, w, &ec2.DescribeInstanceStatusInput{InstanceIds: []string{instA}})
	if len(st) != 1 || st[0].InstanceStatus.Status != types.SummaryStatusOk || st[0].InstanceState.Name != types.InstanceStateNameRunning {
		t.Errorf("just hung: %+v (impaired only after EC2's checks)", st)
	}
	if err := detach(t, w, vol, false); err != nil {
		t.Fatal(err)
	}
	// The detach worker retries every BusyRetry (5 ms here); the guest is
	// never asked while it is hung.
	eventually(t, "three refused detach attempts", func() (bool, string) {
		w.srv.mu.Lock()
		defer w.srv.mu.Unlock()
		a := w.srv.volumes[vol].att
		return a.detachTries >= 3 && a.state == attDetaching, "attachment " + a.state + ", tries " + itoa(int32(a.detachTries))
	})
	if host.detachCalls() != 0 {
		t.Errorf("a hung guest was asked to detach %d times", host.detachCalls())
	}
	if err := detach(t, w, vol, true); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "available", "")
	if host.detachCalls() != 1 {
		t.Errorf("forced detach: the host was asked %d times, want once (forced)", host.detachCalls())
	}
}
