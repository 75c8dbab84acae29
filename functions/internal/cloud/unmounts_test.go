package cloud

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/tether-ecs/tether/internal/agentproto"
)

// sendsSSM records SendCommand inputs (logic of the seam only: which
// command goes out for which callers).
type sendsSSM struct {
	SSMAPI
	mu   sync.Mutex
	sent []*ssm.SendCommandInput
}

func (s *sendsSSM) SendCommand(_ context.Context, in *ssm.SendCommandInput, _ ...func(*ssm.Options)) (*ssm.SendCommandOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, in)
	return &ssm.SendCommandOutput{Command: &ssmtypes.Command{CommandId: aws.String(fmt.Sprintf("cmd-%d", len(s.sent)))}}, nil
}

// joined waits (bounded, for a fact: the callers' arrival in the open
// batch) until the instance's batch holds n unmounts.
func joined(t *testing.T, a *AWS, document, instance string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a.unmountsMu.Lock()
		b, _ := a.unmounts.Get(document + "/" + instance)
		a.unmountsMu.Unlock()
		got := 0
		if b != nil {
			got = b.Joined()
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %d unmounts to join the batch of %s; %d did", n, instance, got)
		}
		time.Sleep(time.Millisecond)
	}
}

// Unmounts of one instance's volumes sent at the same moment go out as one
// command: lists of ids, names and attachments, the tasks they serve in
// ReleasedFor, a BatchComment; each caller gets that command's id. A lone
// unmount goes out as ever, its comment naming it.
func TestConcurrentUnmountsOfAnInstanceAreOneCommand(t *testing.T) {
	s := &sendsSSM{}
	a := NewWithClients(nil, nil, s, Options{BatchWindow: -1})
	release := make(chan struct{})
	a.unmountWait = func(ctx context.Context, _ <-chan struct{}) { <-release }
	us := []Unmount{
		{VolumeID: "vol-0000000000000000a", Name: "a", Attachment: "i-1:100", Next: "0123456789abcdef0123456789abcdef"},
		{VolumeID: "vol-0000000000000000b", Name: "b", Attachment: "i-1:200"},
		{VolumeID: "vol-0000000000000000c", Name: "c", Attachment: "i-1:300", Next: "fedcba9876543210fedcba9876543210"},
	}
	ids := make([]string, len(us))
	var wg sync.WaitGroup
	for i, u := range us {
		wg.Go(func() {
			id, err := a.SendUnmount(context.Background(), "unmount-doc", "i-1", u)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		})
	}
	joined(t, a, "unmount-doc", "i-1", len(us))
	close(release)
	wg.Wait()
	if len(s.sent) != 1 {
		t.Fatalf("%d SendCommands for 3 concurrent unmounts of one instance, want 1", len(s.sent))
	}
	for i := range ids {
		if ids[i] != "cmd-1" {
			t.Fatalf("caller %d got command %q, want the batch's cmd-1", i, ids[i])
		}
	}
	in := s.sent[0]
	order := map[string]int{}
	for i, id := range agentproto.SplitList(in.Parameters[agentproto.ParamVolumeID][0]) {
		order[id] = i
	}
	if len(order) != 3 {
		t.Fatalf("VolumeId %v: want the three volumes", in.Parameters[agentproto.ParamVolumeID])
	}
	for _, u := range us {
		i := order[u.VolumeID]
		c := Command{Params: map[string]string{}, Comment: aws.ToString(in.Comment)}
		for k, v := range in.Parameters {
			c.Params[k] = v[0]
		}
		got, ok := c.ForVolume(u.VolumeID)
		if !ok || got.Params[agentproto.ParamVolumeName] != u.Name || got.Params[agentproto.ParamAttachment] != u.Attachment ||
			got.Params[agentproto.ParamReleasedFor] != u.Next || got.Params[agentproto.ParamForce] != "false" {
			t.Errorf("volume %s (item %d): parameters %v, want its name, attachment and task", u.VolumeID, i, got.Params)
		}
	}
	if c := aws.ToString(in.Comment); c != BatchComment(3) || !IsBatchComment(c) || len(c) > MaxComment {
		t.Errorf("comment %q, want %q", c, BatchComment(3))
	}

	// Alone, on another instance: as ever.
	release2 := make(chan struct{})
	close(release2)
	a.unmountWait = func(ctx context.Context, _ <-chan struct{}) { <-release2 }
	if _, err := a.SendUnmount(context.Background(), "unmount-doc", "i-2", us[0]); err != nil {
		t.Fatal(err)
	}
	in = s.sent[1]
	if got := in.Parameters[agentproto.ParamVolumeID]; len(s.sent) != 2 || len(got) != 1 || got[0] != us[0].VolumeID || in.Parameters[agentproto.ParamReleasedFor] != nil {
		t.Fatalf("a lone unmount: %v", in.Parameters)
	}
	if vid, name, complete, next := ParseCommandComment(aws.ToString(in.Comment)); vid != us[0].VolumeID || name != "a" || !complete || next != us[0].Next {
		t.Fatalf("a lone unmount's comment %q", aws.ToString(in.Comment))
	}
}

// A batch's result is read per volume: each volume's own line decides its
// status and exit code; a volume without a line failed (it is unmounted
// again on its own); a command that names the volume nowhere is not its.
func TestForVolumeReadsAVolumesOwnLine(t *testing.T) {
	out := `{"volumeId":"vol-0000000000000000a","name":"a","released":true,"generation":3,"attachment":"i-1:100"}
{"error":{"volumeId":"vol-0000000000000000b","exitCode":3,"class":"busy","message":"busy"}}
`
	c := Command{ID: "c", Status: CommandFailed, ExitCode: 3, Output: out, Comment: BatchComment(3),
		Params: map[string]string{agentproto.ParamVolumeID: "vol-0000000000000000a,vol-0000000000000000b,vol-0000000000000000c", agentproto.ParamVolumeName: "a,b,c"}}
	a, ok := c.ForVolume("vol-0000000000000000a")
	if u, parsed := mustOutput(t, a).Unmount(); !ok || a.Status != CommandSucceeded || a.ExitCode != 0 || !parsed || u.Generation != 3 {
		t.Errorf("released volume: %+v", a)
	}
	b, ok := c.ForVolume("vol-0000000000000000b")
	if !ok || b.Status != CommandFailed || b.ExitCode != agentproto.ExitBusy || b.Params[agentproto.ParamVolumeName] != "b" {
		t.Errorf("busy volume: %+v", b)
	}
	cc, ok := c.ForVolume("vol-0000000000000000c")
	if !ok || cc.Status != CommandFailed || cc.ExitCode != agentproto.ExitFailed || cc.Output != "" {
		t.Errorf("volume without a line: %+v", cc)
	}
	if _, ok := c.ForVolume("vol-0000000000000000d"); ok {
		t.Error("a volume the command does not name")
	}
	single := Command{Status: CommandFailed, ExitCode: 3, Output: `{"error":{"exitCode":3,"class":"busy"}}`, Comment: CommandComment("vol-0000000000000000a", "a", ""),
		Params: map[string]string{agentproto.ParamVolumeID: "vol-0000000000000000a"}}
	if got, ok := single.ForVolume("vol-0000000000000000a"); !ok || got.Status != single.Status || got.ExitCode != 3 || got.Output != single.Output {
		t.Errorf("a single volume's command changed: %+v", got)
	}
}

func mustOutput(t *testing.T, c Command) agentproto.Output {
	t.Helper()
	o, ok := agentproto.ParseOutput(c.Output)
	if !ok {
		t.Fatalf("no line in %q", c.Output)
	}
	return o
}
