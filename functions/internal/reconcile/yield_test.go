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
