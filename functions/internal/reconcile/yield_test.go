package reconcile_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// yieldsSSM records, per document, whether each SendCommand was marked to
// give way (cloud.Yield).
type yieldsSSM struct {
	cloud.SSMAPI
	mu    sync.Mutex
	sends []string // "<document> yields" or "<document> first"
}

func (s *yieldsSSM) SendCommand(ctx context.Context, in *ssm.SendCommandInput, o ...func(*ssm.Options)) (*ssm.SendCommandOutput, error) {
	how := " first"
	if cloud.Yields(ctx) {
		how = " yields"
	}
	s.mu.Lock()
	s.sends = append(s.sends, aws.ToString(in.DocumentName)+how)
	s.mu.Unlock()
	return s.SSMAPI.SendCommand(ctx, in, o...)
}

func (s *yieldsSSM) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.sends
	s.sends = nil
	return out
}

// In a mass handoff an unmount starts a handoff and a mount ends one, and
// both take SSM's SendCommand tokens: a STOPPED event's unmount gives way
// when the bucket runs low, the mount never does, and an unmount that was
// refused once is not asked to give way again (so none waits twice).
func TestUnmountsGiveWayToMountsOnce(t *testing.T) {
	s := &yieldsSSM{}
	h := newHarnessSSM(t, func(c cloud.SSMAPI) cloud.SSMAPI { s.SSMAPI = c; return s })
	h.w.AddInstance("i-a", "us-east-1a")
	h.w.AddInstance("i-b", "us-east-1a")
	t1 := h.w.PlaceTask(tdShared, "i-a")
	h.settle(200)
	h.wantRunning(t1)
	for _, send := range s.take() {
		if send != mountDoc+" first" {
			t.Fatalf("placing the first task sent %q; want only mounts, which never give way", send)
		}
	}
	key := reconcile.Key{Cluster: cluster, Volume: volName}
	h.w.StopTask(t1, "drain")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t1})
	h.w.PlaceTask(tdShared, "i-b")
	h.w.Throttle("SSM:SendCommand", 1)
	for _, ev := range h.w.TakeEvents() {
		if ev.Kind == "task" && ev.LastStatus == "STOPPED" {
			h.invoke(h.trigger(ev))
		}
	}
	if got := s.take(); len(got) != 1 || got[0] != unmountDoc+" yields" {
		t.Fatalf("the STOPPED event's unmount: %q; want one unmount that gives way", got)
	}
	throttled := h.lastResult(key)
	if !strings.Contains(throttled.Hint, `"s":"unmount-due"`) {
		t.Fatalf("the throttled unmount: %+v; want it handed back as decided", throttled)
	}
	h.w.Advance(throttled.RetryAfter)
	h.invoke(reconcile.Retry{Key: key, Hint: throttled.Hint})
	if got := s.take(); len(got) != 1 || got[0] != unmountDoc+" first" {
		t.Fatalf("the refused unmount's retry: %q; want one unmount that does not give way", got)
	}
}

// A full pass that finds the volume's unmount released and whose detach
// AWS throttles hands the key back as that unmount's end: the retry looks
// at the volume and detaches it without reading ECS again (the pass had,
// and the task the volume goes to is named).
func TestAThrottledDetachIsRetriedFromItsUnmountsEnd(t *testing.T) {
	h, key, t1 := sharedRunning(t, "i-a", "i-b")
	h.w.StopTask(t1, "drain")
	h.w.Complete(cloudtest.Op{Kind: "stop", ID: t1})
	t2 := h.w.PlaceTask(tdShared, "i-b")
	var pending reconcile.Trigger
	for _, ev := range h.w.TakeEvents() {
		switch {
		case ev.Kind == "task" && ev.Task == t1 && ev.LastStatus == "STOPPED":
			h.invoke(h.trigger(ev)) // sends the unmount
		case ev.Kind == "task" && ev.Task == t2:
			pending = h.trigger(ev)
		}
	}
	unmounts := unmountCommands(h)
	if len(unmounts) != 1 || pending == nil {
		t.Fatalf("unmounts %+v, t2's event %v; want one unmount and t2's event", unmounts, pending)
	}
	h.w.Complete(cloudtest.Op{Kind: "command", ID: unmounts[0].ID})

	// Another process takes t2's event: a full pass, which finds the unmount
	// released and asks for the detach, which AWS throttles.
	other := h.otherProcess()
	ctx := other.Invocation(context.Background())
	if _, err := other.Keys(ctx, pending); err != nil {
		t.Fatal(err)
	}
	h.w.Throttle("EC2:DetachVolume", 1)
	res, err := other.Reconcile(ctx, key)
	if err != nil || res.Done() || res.Reason != "throttled by AWS" || !strings.Contains(res.Hint, `"s":"unmount"`) ||
		!strings.Contains(res.Hint, unmounts[0].ID) || !strings.Contains(res.Hint, t2) {
		t.Fatalf("the throttled detach's pass: %+v %v; want it handed back as the unmount's end, naming t2", res, err)
	}
	if v := h.oneVolume(volName); v.Att == nil || v.Att.State != "attached" {
		t.Fatalf("volume after the throttled detach: %+v, want it still attached", v.Att)
	}

	h.w.Advance(res.RetryAfter)
	before := h.w.Calls()
	ctx = other.Invocation(context.Background())
	retry := reconcile.Retry{Key: key, Hint: res.Hint}
	if _, err := other.Keys(ctx, retry); err != nil {
		t.Fatal(err)
	}
	res, err = other.Reconcile(ctx, key)
	if err != nil || res.Done() || !strings.Contains(res.Reason, "detaching") {
		t.Fatalf("the retry: %+v %v; want it detaching", res, err)
	}
	for op, n := range h.w.Calls() {
		if strings.HasPrefix(op, "ECS:") && n > before[op] {
			t.Errorf("the retry read ECS: %s %d times, want none", op, n-before[op])
		}
	}
	if v := h.oneVolume(volName); v.Att == nil || v.Att.State != "detaching" {
		t.Fatalf("volume after the retry: %+v, want it detaching", v.Att)
	}
	// The detach's chain goes on in the harness's queue.
	h.queue = append(h.queue, msg{key: key, hint: res.Hint, due: h.w.Now().Add(res.RetryAfter)})
	h.settle(300)
	h.wantRunning(t2)
	h.noViolations()
}
