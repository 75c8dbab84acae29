package bench

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/world/fakehost"
	"github.com/tether-ecs/tether/test/world/ssmsim"
	"github.com/tether-ecs/tether/test/world/world"
)

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// A window counts what the world answered less what the bench sent, by
// service and action, throttled attempts included: the bench's own calls
// (through its meter) vanish, another client's (tether's functions in a
// run) all remain, and nothing before the window counts.
func TestWindowCountsOtherClientsCallsOnly(t *testing.T) {
	w := world.StartT(t, world.Options{})
	ctx := t.Context()
	fleet := NewFleet(w, testLog(t))
	tether := w.AWSConfig()
	tetherEC2, tetherECS, tetherSSM := ec2.NewFromConfig(tether), ecs.NewFromConfig(tether), ssm.NewFromConfig(tether)

	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tetherEC2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{})) // before the window
	win := OpenWindow(w.Router(), fleet.Meter)
	must(tetherEC2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{}))
	must(tetherEC2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{}))
	must(tetherECS.ListClusters(ctx, &ecs.ListClustersInput{}))
	must(tetherSSM.DescribeInstanceInformation(ctx, &ssm.DescribeInstanceInformationInput{}))
	// A throttled attempt and its retry both count (the SDK retries).
	w.EC2().ThrottleNext("DescribeInstances", 1)
	must(tetherEC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}))
	// The bench's own calls, throttled ones too, are not tether's.
	must(fleet.EC2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{}))
	must(fleet.ECS.ListClusters(ctx, &ecs.ListClustersInput{}))
	w.ECS().ThrottleNext("DescribeClusters", 1)
	must(fleet.ECS.DescribeClusters(ctx, &ecs.DescribeClustersInput{}))
	got, err := win.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"ec2:DescribeVolumes": 2, "ecs:ListClusters": 1, "ssm:DescribeInstanceInformation": 1, "ec2:DescribeInstances": 2}
	if fmt.Sprint(got.All) != fmt.Sprint(want) {
		t.Errorf("tether's calls %v, want %v", got.All, want)
	}
	if fmt.Sprint(got.Throttled) != fmt.Sprint(map[string]int{"ec2:DescribeInstances": 1}) {
		t.Errorf("tether's throttled calls %v, want ec2:DescribeInstances 1", got.Throttled)
	}
	own := fleet.Meter.Since(0)
	if own.All["ecs:DescribeClusters"] != 2 || own.Throttled["ecs:DescribeClusters"] != 1 || own.All["ec2:DescribeVolumes"] != 1 {
		t.Errorf("the meter counted %v (throttled %v)", own.All, own.Throttled)
	}
	if got.Service("ec2") != 4 || got.Mutating("ec2") != 0 || got.ThrottledTotal() != 1 {
		t.Errorf("ec2 %d, mutating %d, throttled %d", got.Service("ec2"), got.Mutating("ec2"), got.ThrottledTotal())
	}
}

// The bench paces its bulk ECS calls under the world's own buckets.
func TestFleetPacesUnderTheWorldsBuckets(t *testing.T) {
	w := world.StartT(t, world.Options{})
	f := NewFleet(w, testLog(t))
	limits := w.ECS().Gate().Limits()
	for _, a := range pacedActions {
		b, l := limits[a], f.pace[a]
		if l == nil {
			t.Errorf("%s is not paced", a)
			continue
		}
		if float64(l.Limit()) >= b.Refill || float64(l.Burst()) >= b.Size || l.Burst() < 1 {
			t.Errorf("%s paced at %v/s burst %d, the world's bucket is %g + %g/s", a, l.Limit(), l.Burst(), b.Size, b.Refill)
		}
	}
	if b := limits["RegisterTaskDefinition"]; b.Size != 20 || b.Refill != 1 {
		t.Errorf("RegisterTaskDefinition's bucket %+v: the pacing comment cites 20 + 1/s", b)
	}
}

func TestSubtractRefusesCallsTheWorldDidNotSee(t *testing.T) {
	all := Calls{All: map[string]int{"ecs:ListTasks": 3, "ec2:AttachVolume": 1}, Throttled: map[string]int{"ecs:ListTasks": 1}}
	own := Calls{All: map[string]int{"ecs:ListTasks": 1}, Throttled: map[string]int{"ecs:ListTasks": 1}}
	got, err := subtract(all, own)
	if err != nil || got.All["ecs:ListTasks"] != 2 || got.All["ec2:AttachVolume"] != 1 || len(got.Throttled) != 0 {
		t.Errorf("subtract: %v %v, err %v", got.All, got.Throttled, err)
	}
	if all.All["ecs:ListTasks"] != 3 {
		t.Error("subtract changed its input")
	}
	own.All["ssm:SendCommand"] = 1
	if _, err := subtract(all, own); err == nil || !strings.Contains(err.Error(), "ssm:SendCommand") {
		t.Errorf("a call the world never journaled was subtracted: %v", err)
	}
}

func TestCallsArithmetic(t *testing.T) {
	c := Calls{All: map[string]int{
		"ec2:AttachVolume": 2, "ec2:DetachVolume": 2, "ec2:DescribeVolumes": 7, "ec2:CreateTags": 1,
		"ecs:ListTasks": 3, "ecs:DescribeTasks": 4, "ssm:SendCommand": 4, "ssm:GetCommandInvocation": 2, "sqs:SendMessage": 9,
	}, Throttled: map[string]int{"ec2:DescribeVolumes": 2, "ssm:SendCommand": 1}}
	if c.Service("ec2") != 12 || c.Mutating("ec2") != 5 || c.Service("ecs") != 7 || c.Mutating("ecs") != 0 || c.Service("ssm") != 6 || c.ThrottledTotal() != 3 {
		t.Errorf("ec2 %d (mutating %d), ecs %d, ssm %d, throttled %d", c.Service("ec2"), c.Mutating("ec2"), c.Service("ecs"), c.Service("ssm"), c.ThrottledTotal())
	}
	if got := c.Of("ec2"); got != "DescribeVolumes 7, AttachVolume 2, DetachVolume 2, CreateTags 1" {
		t.Errorf("Of(ec2) = %q", got)
	}
	if got := countList(c.Throttled, ""); got != "ec2:DescribeVolumes 2, ssm:SendCommand 1" {
		t.Errorf("countList = %q", got)
	}
	if countList(nil, "") != "none" {
		t.Error("an empty list")
	}
	sum := NewCalls()
	sum.Add(c)
	sum.Add(c)
	if sum.Service("ec2") != 24 || sum.ThrottledTotal() != 6 {
		t.Errorf("Add: %v", sum)
	}
}

// Force detaches count as live unless EC2 says the instance is stopped or
// terminated; a pending detach upgraded to force counts as well.
func TestForcedDetaches(t *testing.T) {
	entries := []Entry{
		{Msg: msgDetaching, Attrs: map[string]string{"volume": "vol-1", "instance": "i-live", "force": "false"}},
		{Msg: msgDetaching, Attrs: map[string]string{"volume": "vol-2", "instance": "i-live", "force": "true"}},
		{Msg: msgDetaching, Attrs: map[string]string{"volume": "vol-3", "instance": "i-gone", "force": "true"}},
		{Msg: msgDetachForced, Attrs: map[string]string{"volume": "vol-4", "instance": "i-live"}},
		{Msg: msgDetaching, Attrs: map[string]string{"volume": "vol-5", "instance": "i-unknown", "force": "true"}},
		{Msg: msgDetached, Attrs: map[string]string{"volume": "vol-2", "instance": "i-live", "force": "true"}},
	}
	state := func(id string) (string, error) {
		switch id {
		case "i-live":
			return "running", nil
		case "i-gone":
			return "terminated", nil
		}
		return "", fmt.Errorf("no instance %s", id)
	}
	if n := ForcedDetaches(entries, state); n != 3 {
		t.Errorf("%d live force detaches, want 3 (vol-2, vol-4, vol-5)", n)
	}
}

// Formats are read from fake hosts' mkfs records and real hosts' mount
// results; a format without the grant parameter is counted apart.
func TestFormats(t *testing.T) {
	mkfs := []fakehost.Mkfs{{VolumeID: "vol-1", Granted: true}, {VolumeID: "vol-2", Granted: false}}
	result := func(formatted bool) string {
		return fmt.Sprintf("a line of the document\n{\"volumeId\":\"vol-9\",\"name\":\"n\",\"formatted\":%v,\"generation\":1}\n", formatted)
	}
	step := func(stdout string) []ssmsim.Step {
		return []ssmsim.Step{{Name: "refuseWindows"}, {Name: "refuseMacOS"}, {Name: agentproto.StepMount, Stdout: stdout}}
	}
	grant := func(v string) map[string][]string { return map[string][]string{agentproto.ParamFormatIfBlank: {v}} }
	invs := []ssmsim.Invocation{
		{Document: "tether-mount", Steps: step(result(true)), Parameters: grant("true")},
		{Document: "tether-mount", Steps: step(result(true)), Parameters: grant("false")},
		{Document: "tether-mount", Steps: step(result(false)), Parameters: grant("false")},
		{Document: "tether-mount", Steps: step(`{"error":{"exitCode":6,"class":"not-formatted","message":"m"}}`), Parameters: grant("false")},
		{Document: "tether-unmount", Steps: step(result(true))},
	}
	if f, without := Formats(mkfs, invs, "tether-mount"); f != 4 || without != 2 {
		t.Errorf("formats %d, without grant %d; want 4 and 2", f, without)
	}
}

func TestFunctionOutput(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	emf := func(at time.Time, metrics string) string {
		return fmt.Sprintf(`{"Cluster":"c",%s,"_aws":{"Timestamp":%d,"CloudWatchMetrics":[{"Namespace":"Tether","Dimensions":[["Cluster"]],"Metrics":[%s]}]}}`,
			metrics, at.UnixMilli(), metricNames(metrics))
	}
	out := map[string]string{
		"TaskStateFunction": "--- environment 0\nSTART RequestId: x\n" +
			emf(t0.Add(time.Second), `"EC2Requests":2,"Passes":1`) + "\n" +
			emf(t0.Add(time.Minute), `"EC2Requests":5,"Passes":1`) + "\n" +
			`{"time":"2026-01-01T00:00:02Z","level":"INFO","msg":"invocation done","function":"taskstate"}` + "\n",
		"SweepFunction": emf(t0.Add(2*time.Second), `"EC2Requests":1,"ForcedDetachesLive":1`) + "\n" +
			`{"time":"2026-01-01T00:00:03Z","level":"INFO","msg":"invocation done","function":"sweep"}` + "\n" +
			`{"time":"2026-01-01T00:02:00Z","level":"INFO","msg":"invocation done","function":"sweep"}` + "\n",
	}
	lines := ParseFunctionOutput(out)
	if len(lines) != 6 {
		t.Fatalf("%d lines, want 6: %+v", len(lines), lines)
	}
	window := []Span{{From: t0, To: t0.Add(10 * time.Second)}}
	if got := MetricSums(lines, "EC2Requests", window); got["TaskStateFunction"] != 2 || got["SweepFunction"] != 1 || len(got) != 2 {
		t.Errorf("EC2Requests in the window %v", got)
	}
	if got := Sum(MetricSums(lines, "EC2Requests", nil)); got != 8 {
		t.Errorf("EC2Requests ever %v, want 8", got)
	}
	if got := Sum(MetricSums(lines, metricForcedDetachesLive, nil)); got != 1 {
		t.Errorf("ForcedDetachesLive %v", got)
	}
	if n := Invocations(lines, sweepFunction, window); n != 1 {
		t.Errorf("%d sweeps in the window, want 1", n)
	}
	if n := Invocations(lines, sweepFunction, nil); n != 2 {
		t.Errorf("%d sweeps ever, want 2", n)
	}
}

// metricNames turns `"A":1,"B":2` into the EMF directive's metric list.
func metricNames(metrics string) string {
	var names []string
	for _, kv := range strings.Split(metrics, ",") {
		k, _, _ := strings.Cut(kv, ":")
		names = append(names, fmt.Sprintf(`{"Name":%s,"Unit":"Count"}`, k))
	}
	return strings.Join(names, ",")
}

// The call figures: per handoff over the headline runs, failures and
// throttles over every run.
func TestCallRows(t *testing.T) {
	ok := Handoff{Running: time.Now(), Verified: true}
	run := func(name string, n int, calls map[string]int, throttled map[string]int, failed int) RunResult {
		r := RunResult{Name: name, Calls: Calls{All: calls, Throttled: throttled}}
		for range n {
			r.Handoffs = append(r.Handoffs, ok)
		}
		for range failed {
			r.Handoffs = append(r.Handoffs, Handoff{Failure: "no replacement RUNNING before the deadline"})
		}
		return r
	}
	single := run("single", 2, map[string]int{"ec2:AttachVolume": 2, "ec2:DetachVolume": 2, "ec2:DescribeVolumes": 4, "ecs:ListTasks": 6, "ssm:SendCommand": 4}, nil, 0)
	conc := run("concurrent", 6, map[string]int{"ec2:AttachVolume": 8, "ec2:DetachVolume": 6, "ec2:DescribeVolumes": 10, "ecs:DescribeTasks": 10, "ssm:SendCommand": 12}, map[string]int{"ec2:AttachVolume": 2}, 0)
	events := run("single-detach-event", 1, map[string]int{"ec2:AttachVolume": 50}, map[string]int{"ecs:ListTasks": 3}, 1)
	conc.Cut, conc.Windows = 1, []Span{{}}
	var r Report
	CallRows(&r, []RunResult{single, conc}, []RunResult{single, conc, events})
	res := r.Results
	if *res.FailedHandoffs != 1 || *res.ThrottledCalls != 5 {
		t.Errorf("failed %d, throttled %d; want 1 and 5", *res.FailedHandoffs, *res.ThrottledCalls)
	}
	// 32 EC2 calls, 18 of them mutating, 16 ECS and 16 SSM over 8 handoffs.
	if *res.EC2CallsPerHandoff != 4 || *res.EC2MutatingCallsPerHandoff != 2.25 || *res.ECSCallsPerHandoff != 2 || *res.SSMCallsPerHandoff != 2 {
		t.Errorf("per handoff: ec2 %v, mutating %v, ecs %v, ssm %v", *res.EC2CallsPerHandoff, *res.EC2MutatingCallsPerHandoff, *res.ECSCallsPerHandoff, *res.SSMCallsPerHandoff)
	}
	var figures []string
	var details strings.Builder
	for _, row := range r.Rows {
		figures = append(figures, row.Figure)
		details.WriteString(row.Detail)
	}
	if !strings.Contains(details.String(), "lower bounds): concurrent 1 of 1") {
		t.Errorf("a window cut at its bound is not said:\n%s", details.String())
	}
	for _, k := range []string{"failed_handoffs", "ec2_calls_per_handoff", "ec2_mutating_calls_per_handoff", "ecs_calls_per_handoff", "ssm_calls_per_handoff", "throttled_calls"} {
		if !strings.Contains(strings.Join(figures, ","), k) {
			t.Errorf("no row %s in %v", k, figures)
		}
	}
}

func TestScalingAndSafetyRows(t *testing.T) {
	ok := Handoff{Running: time.Now(), Verified: true}
	runs := []RunResult{
		{Name: "unrelated-10", Handoffs: []Handoff{ok, ok}, Calls: Calls{All: map[string]int{"ecs:ListTasks": 4, "ecs:DescribeTasks": 6, "ec2:AttachVolume": 2}}},
		{Name: "unrelated-500", Handoffs: []Handoff{ok, ok}, Calls: Calls{All: map[string]int{"ecs:ListTasks": 12, "ecs:DescribeTasks": 10}}},
	}
	var r Report
	ScalingRows(&r, ScalingResult{Runs: runs, IdleSweeps: []Calls{{All: map[string]int{"ecs:ListTasks": 1}}, {All: map[string]int{"ecs:ListTasks": 5}}}}, []int{10, 500})
	if *r.Results.ECSCallsPerHandoff10Unrelated != 5 || *r.Results.ECSCallsPerHandoff500Unrelated != 11 || len(r.Rows) != 2 {
		t.Errorf("10: %v, 500: %v, rows %v", r.Results.ECSCallsPerHandoff10Unrelated, r.Results.ECSCallsPerHandoff500Unrelated, r.Rows)
	}
	if r.Rows[1].Figure != "ecs_calls_per_handoff_500_unrelated" || !strings.Contains(r.Rows[1].Detail, "one sweep at rest makes 5") {
		t.Errorf("row %+v", r.Rows[1])
	}

	var s Safety
	s.Add(Safety{ForcedLive: 0, ForcedLiveMetric: 1, Formats: 3, RecursiveDropped: 1, LongestChain: 4})
	s.Add(Safety{Formats: 2, WithoutGrant: 1, LongestChain: 9})
	var sr Report
	SafetyRows(&sr, s, 2)
	if *sr.Results.ForcedDetachesLive != 1 || *sr.Results.MkfsWithoutGrant != 1 || *sr.Results.RecursiveInvocationsDropped != 1 || s.LongestChain != 9 || s.Formats != 5 {
		t.Errorf("safety %+v -> %+v", s, sr.Results)
	}
}

// The bench's unrelated tasks run only where tether does not (the
// placement expression is one the world accepts), and are waited for.
func TestRunUnrelatedOnHostsWithoutTether(t *testing.T) {
	w := world.StartT(t, world.Options{Instances: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	bystander, err := w.LaunchInstance(ctx, world.LaunchOptions{NoPlugin: true})
	if err != nil {
		t.Fatal(err)
	}
	f := NewFleet(w, testLog(t))
	if err := f.RunUnrelated(ctx, 12, 12, time.Minute); err != nil {
		t.Fatal(err)
	}
	sn := w.ECS().Snapshot(w.Options().Cluster)
	n := 0
	for _, task := range sn.Tasks {
		if task.StartedBy != unrelatedStartedBy {
			continue
		}
		n++
		if task.EC2InstanceID != bystander.ID {
			t.Errorf("unrelated task %s placed on %s, not the host without tether %s", task.Arn, task.EC2InstanceID, bystander.ID)
		}
	}
	if n != 12 {
		t.Errorf("%d unrelated tasks, want 12", n)
	}
	if own := f.Meter.Since(0); own.All["ecs:RunTask"] != 2 || own.All["ecs:RegisterTaskDefinition"] != 1 {
		t.Errorf("the bench's calls %v: want RunTask 2 (10 + 2), one registration", own.All)
	}
}

// A handoff window on a small world with tether's functions in process:
// tether's attach, detach and commands are counted, the bench's drain call
// (throttled once, then retried) is not; the run's world reports its
// formats, all granted, and no forced or dropped work.
func TestHandoffWindowOnASmallWorld(t *testing.T) {
	j := NewJournal()
	w := world.StartT(t, world.Options{Instances: 2, Functions: world.InProcessFunctions, Logger: slog.New(j.Handler())})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	log := testLog(t)
	bw := &benchWorld{name: "small", W: w, J: j, Fleet: NewFleet(w, log), env: Env{Log: log, Dir: t.TempDir()}}
	svcs, err := bw.Fleet.CreateServices(ctx, "small", 3, 2, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !bw.quiesce(ctx, time.Minute) {
		t.Fatal("tether did not go quiet after the setup")
	}
	res := RunResult{Calls: NewCalls()}
	w.ECS().ThrottleNext("UpdateContainerInstancesState", 1)
	win := bw.openWindow()
	hs, err := bw.Fleet.Drain(ctx, svcs, svcs[0].Instance)
	if err != nil {
		t.Fatal(err)
	}
	if err := bw.closeWindow(ctx, win, time.Minute, &res); err != nil {
		t.Fatal(err)
	}
	for i := range hs {
		if hs[i].Failure != "" {
			t.Fatalf("handoff %s: %s", hs[i].Service, hs[i].Failure)
		}
		if err := bw.Fleet.VerifyMark(ctx, hs[i], ""); err != nil {
			t.Errorf("handoff %s: %v", hs[i].Service, err)
		}
	}
	res.Handoffs = hs
	bw.finish(&res)
	c := res.Calls
	if n := c.All["ecs:UpdateContainerInstancesState"] + c.Throttled["ecs:UpdateContainerInstancesState"]; n != 0 {
		t.Errorf("the bench's drain call counted as tether's %d times", n)
	}
	if own := bw.Fleet.Meter.Since(0); own.All["ecs:UpdateContainerInstancesState"] != 2 || own.Throttled["ecs:UpdateContainerInstancesState"] != 1 {
		t.Errorf("the meter saw the drain call %d times (%d throttled), want 2 (1)", own.All["ecs:UpdateContainerInstancesState"], own.Throttled["ecs:UpdateContainerInstancesState"])
	}
	// Every volume moved between instances was detached and attached.
	if c.All["ec2:AttachVolume"] < len(hs) || c.All["ec2:DetachVolume"] < len(hs) || c.All["ssm:SendCommand"] < len(hs) || c.Service("ecs") == 0 {
		t.Errorf("%d handoffs, tether's calls %v", len(hs), c.All)
	}
	if len(res.Windows) != 1 || res.Windows[0].To.Before(res.Windows[0].From) || Sum(res.EC2ByFunction) == 0 {
		t.Errorf("windows %v, EC2Requests by function %v", res.Windows, res.EC2ByFunction)
	}
	for i, tl := range res.Timelines {
		if _, ok := tl.Offset(MarkDetached); !ok || tl.AttachCalls == 0 {
			t.Errorf("handoff %s: timeline %s", hs[i].Service, tl.Line())
		}
	}
	s := bw.safety()
	if s.Formats != len(svcs) || s.WithoutGrant != 0 || s.ForcedLive != 0 || s.ForcedLiveMetric != 0 || s.RecursiveDropped != 0 {
		t.Errorf("safety: %s; want %d formats, all granted, nothing forced or dropped", s, len(svcs))
	}
}
