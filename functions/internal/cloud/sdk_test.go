package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
)

// endpoint is a scripted AWS endpoint: the real SDK clients talk to it over
// HTTP, so the wire format, the retryer and the error decoding are the SDK's
// own (the SDK is the oracle).
type endpoint struct {
	t  *testing.T
	mu sync.Mutex
	// requests in order: "EC2:DescribeVolumes", "SSM:GetCommandInvocation"...
	requests []string
	forms    []url.Values
	// answer returns status and body for a request (call is 1-based per action).
	answer func(action string, form url.Values, body string, call int) (int, string)
	calls  map[string]int
}

func newEndpoint(t *testing.T, answer func(action string, form url.Values, body string, call int) (int, string)) (*endpoint, string) {
	e := &endpoint{t: t, answer: answer, calls: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(srv.Close)
	return e, srv.URL
}

func (e *endpoint) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var action string
	var form url.Values
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		svc := "ECS"
		if strings.HasPrefix(target, "AmazonSSM.") {
			svc = "SSM"
		}
		action = svc + ":" + target[strings.IndexByte(target, '.')+1:]
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	} else {
		form, _ = url.ParseQuery(string(raw))
		action = "EC2:" + form.Get("Action")
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	}
	e.mu.Lock()
	e.requests = append(e.requests, action)
	e.forms = append(e.forms, form)
	e.calls[action]++
	call := e.calls[action]
	e.mu.Unlock()
	status, body := e.answer(action, form, string(raw), call)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (e *endpoint) count(action string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[action]
}

func ec2Error(code string) string {
	return `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>` + code +
		`</Code><Message>scripted</Message></Error></Errors><RequestID>r-1</RequestID></Response>`
}

func volumeXML(id, name, state string, attachedTo string) string {
	att := ""
	if attachedTo != "" {
		att = `<item><volumeId>` + id + `</volumeId><instanceId>` + attachedTo + `</instanceId><device>/dev/xvdf</device><status>attached</status><attachTime>2024-05-01T12:00:01.000Z</attachTime></item>`
	}
	return `<item><volumeId>` + id + `</volumeId><size>5</size><availabilityZone>us-east-1a</availabilityZone><status>` + state +
		`</status><createTime>2024-05-01T12:00:00.000Z</createTime><volumeType>gp2</volumeType><encrypted>true</encrypted>` +
		`<attachmentSet>` + att + `</attachmentSet><tagSet><item><key>tether:cluster</key><value>c</value></item>` +
		`<item><key>tether:volume</key><value>` + name + `</value></item><item><key>Name</key><value>` + name + `</value></item></tagSet></item>`
}

func describeVolumesXML(items ...string) string {
	return `<DescribeVolumesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r-1</requestId><volumeSet>` +
		strings.Join(items, "") + `</volumeSet></DescribeVolumesResponse>`
}

const attachOK = `<AttachVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><volumeId>vol-0123456789abcdef0</volumeId><instanceId>i-b</instanceId><device>/dev/xvdf</device><status>attaching</status><attachTime>2024-05-01T12:00:01.000Z</attachTime></AttachVolumeResponse>`

// newTestCloud loads the SDK config as a Lambda would, with the endpoint
// given only through AWS_ENDPOINT_URL.
func newTestCloud(t *testing.T, base string, o Options) *AWS {
	t.Setenv("AWS_ENDPOINT_URL", base)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if o.Backoff == nil {
		o.Backoff = NoBackoff()
	}
	return New(cfg, o)
}

func TestEndpointFromEnvironmentAndDescribeByID(t *testing.T) {
	e, base := newEndpoint(t, func(action string, form url.Values, _ string, _ int) (int, string) {
		if action != "EC2:DescribeVolumes" {
			return 400, ec2Error("InvalidAction")
		}
		return 200, describeVolumesXML(volumeXML("vol-0123456789abcdef0", "rexray-vol", "in-use", "i-a"))
	})
	c := newTestCloud(t, base, Options{BatchWindow: -1})
	ctx := NewSession(context.Background())
	v, err := c.VolumeByID(ctx, "vol-0123456789abcdef0")
	if err != nil {
		t.Fatal(err)
	}
	if v.State != VolumeInUse || v.AZ != "us-east-1a" || v.Tags[TagVolume] != "rexray-vol" || len(v.Attachments) != 1 ||
		v.Attachments[0].InstanceID != "i-a" || v.Attachments[0].State != AttachAttached || v.Attachments[0].AttachTime.IsZero() {
		t.Fatalf("decoded volume: %+v", v)
	}
	f := e.forms[0]
	if f.Get("Filter.1.Name") != "volume-id" || f.Get("Filter.1.Value.1") != "vol-0123456789abcdef0" || f.Get("VolumeId.1") != "" {
		t.Fatalf("want the volume-id filter (not VolumeIds): %v", f)
	}
	// Known in this session: no second request. Unknown in a new one.
	if _, err := c.VolumeByID(ctx, "vol-0123456789abcdef0"); err != nil || e.count("EC2:DescribeVolumes") != 1 {
		t.Fatalf("asked again within the session: %d requests, %v", e.count("EC2:DescribeVolumes"), err)
	}
	if _, err := c.VolumeByID(NewSession(context.Background()), "vol-0123456789abcdef0"); err != nil || e.count("EC2:DescribeVolumes") != 2 {
		t.Fatalf("new session must ask EC2: %d requests", e.count("EC2:DescribeVolumes"))
	}
	if kv, ok := c.KnownVolume("vol-0123456789abcdef0"); !ok || kv.AZ != "us-east-1a" || kv.State != "" {
		t.Fatalf("identity not kept: %+v %v", kv, ok)
	}
	snap := c.Stats().Snapshot()
	if snap.Calls["EC2:DescribeVolumes"] != 2 {
		t.Fatalf("request counter: %v", snap.Calls)
	}
}

func TestVolumeNotFoundIsErrNotFound(t *testing.T) {
	_, base := newEndpoint(t, func(string, url.Values, string, int) (int, string) { return 200, describeVolumesXML() })
	c := newTestCloud(t, base, Options{BatchWindow: -1})
	_, err := c.VolumeByID(context.Background(), "vol-0123456789abcdef0")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("want ErrNotFound, got %v", err)
	}
}

// Throttled reads are retried by the SDK; the counters see every attempt;
// past MaxAttempts the error is ErrThrottled. A throttled write is not
// retried: its bucket here is emptied (the next write waits, or is refused
// without calling AWS if that would take too long), and the error is
// ErrThrottled at once. Other transient errors of writes are retried.
func TestThrottlingIsRetriedAndCounted(t *testing.T) {
	e, base := newEndpoint(t, func(action string, _ url.Values, _ string, call int) (int, string) {
		if call <= 2 {
			return 503, ec2Error("RequestLimitExceeded")
		}
		return 200, describeVolumesXML(volumeXML("vol-0123456789abcdef0", "rexray-vol", "in-use", "i-a"))
	})
	c := newTestCloud(t, base, Options{MaxAttempts: 5, RetryMode: aws.RetryModeStandard, BatchWindow: -1})
	if _, err := c.VolumeByID(context.Background(), "vol-0123456789abcdef0"); err != nil {
		t.Fatalf("want success after two throttles: %v", err)
	}
	if n := e.count("EC2:DescribeVolumes"); n != 3 {
		t.Fatalf("want 3 attempts, got %d", n)
	}
	snap := c.Stats().Snapshot()
	if snap.Throttles["EC2:DescribeVolumes"] != 2 || snap.Calls["EC2:DescribeVolumes"] != 3 {
		t.Fatalf("counters: %+v", snap)
	}

	e2, base2 := newEndpoint(t, func(action string, _ url.Values, _ string, call int) (int, string) {
		if action == "EC2:AttachVolume" && call == 1 {
			return 500, ec2Error("InternalError")
		}
		if action == "EC2:AttachVolume" {
			return 200, attachOK
		}
		return 503, ec2Error("RequestLimitExceeded")
	})
	c2 := newTestCloud(t, base2, Options{MaxAttempts: 3, RetryMode: aws.RetryModeStandard, MaxPaceWait: 100 * time.Millisecond})
	err := c2.DetachVolume(context.Background(), "vol-0123456789abcdef0", Attachment{InstanceID: "i-a"}, false)
	if !errors.Is(err, ErrThrottled) {
		t.Fatalf("want ErrThrottled, got %v", err)
	}
	if n := e2.count("EC2:DetachVolume"); n != 1 {
		t.Fatalf("a throttled write was retried: %d requests", n)
	}
	err = c2.DetachVolume(context.Background(), "vol-0123456789abcdef0", Attachment{InstanceID: "i-a"}, false)
	if !errors.Is(err, ErrThrottled) || e2.count("EC2:DetachVolume") != 1 {
		t.Fatalf("the next write right after a throttle: %v, %d requests (want refused here, 1)", err, e2.count("EC2:DetachVolume"))
	}
	at, err := c2.AttachVolume(context.Background(), "vol-0123456789abcdef0", "i-b", "/dev/xvdf")
	if err != nil || e2.count("EC2:AttachVolume") != 2 {
		t.Fatalf("a write failing with a 500 is retried: %v, %d requests", err, e2.count("EC2:AttachVolume"))
	}
	if want := time.Date(2024, 5, 1, 12, 0, 1, 0, time.UTC); !at.AttachTime.Equal(want) || at.State != AttachAttaching || at.Device != "/dev/xvdf" {
		t.Fatalf("attachment from the answer: %+v, want attach time %s", at, want)
	}
}

func TestEC2ErrorCodesThroughTheSDK(t *testing.T) {
	codes := map[string]string{
		"EC2:DetachVolume": "IncorrectState",
		"EC2:AttachVolume": "InvalidParameterValue",
		"EC2:CreateVolume": "IdempotentParameterMismatch",
		"EC2:DeleteVolume": "InvalidVolume.NotFound",
	}
	_, base := newEndpoint(t, func(action string, _ url.Values, _ string, _ int) (int, string) {
		return 400, ec2Error(codes[action])
	})
	c := newTestCloud(t, base, Options{BatchWindow: -1})
	ctx := context.Background()
	if err := c.DetachVolume(ctx, "vol-0123456789abcdef0", Attachment{InstanceID: "i-a"}, false); !IsDone(err) {
		t.Errorf("detach IncorrectState: want done, got %v", err)
	}
	if _, err := c.AttachVolume(ctx, "vol-0123456789abcdef0", "i-a", "/dev/xvdf"); !errors.Is(err, ErrDeviceName) {
		t.Errorf("attach InvalidParameterValue: want ErrDeviceName, got %v", err)
	}
	if _, err := c.CreateVolume(ctx, CreateVolumeRequest{Token: "t", AZ: "us-east-1a", SizeGiB: 1, Type: "gp3", Tags: map[string]string{TagVolume: "v"}}); !errors.Is(err, ErrTokenMismatch) {
		t.Errorf("create IdempotentParameterMismatch: want ErrTokenMismatch, got %v", err)
	}
	if err := c.DeleteVolume(ctx, "vol-0123456789abcdef0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete NotFound: want ErrNotFound, got %v", err)
	}
}

func TestCreateVolumeRequestOnTheWire(t *testing.T) {
	e, base := newEndpoint(t, func(string, url.Values, string, int) (int, string) {
		return 200, `<CreateVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><volumeId>vol-0123456789abcdef0</volumeId><size>5</size><availabilityZone>us-east-1a</availabilityZone><status>creating</status><createTime>2024-05-01T12:00:00.000Z</createTime><volumeType>gp3</volumeType><encrypted>true</encrypted></CreateVolumeResponse>`
	})
	c := newTestCloud(t, base, Options{})
	v, err := c.CreateVolume(context.Background(), CreateVolumeRequest{
		Token: "tether-abc", AZ: "us-east-1a", SizeGiB: 5, Type: "gp3", IOPS: 4000, Throughput: 250, Encrypted: true,
		KMSKeyID: "alias/k", Tags: map[string]string{TagName: "db", TagCluster: "c", TagVolume: "db", TagScope: ScopeShared},
	})
	if err != nil || v.ID != "vol-0123456789abcdef0" || v.State != VolumeCreating || v.Tags[TagVolume] != "db" {
		t.Fatalf("%+v %v", v, err)
	}
	f := e.forms[0]
	want := map[string]string{
		"ClientToken": "tether-abc", "AvailabilityZone": "us-east-1a", "Size": "5", "VolumeType": "gp3", "Iops": "4000",
		"Throughput": "250", "Encrypted": "true", "KmsKeyId": "alias/k", "TagSpecification.1.ResourceType": "volume",
	}
	for k, v := range want {
		if f.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, f.Get(k), v)
		}
	}
	var tags []string
	for i := 1; f.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Key", i)) != ""; i++ {
		tags = append(tags, f.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Key", i))+"="+f.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Value", i)))
	}
	sort.Strings(tags)
	if strings.Join(tags, ",") != "Name=db,tether:cluster=c,tether:scope=shared,tether:volume=db" {
		t.Errorf("tags on the wire: %v", tags)
	}
}

// Concurrent lookups of several keys of one cluster become one
// DescribeVolumes with all the names as values of one tag filter.
func TestConcurrentKeyLookupsShareOneDescribeVolumes(t *testing.T) {
	names := []string{"a", "b", "c", "d"}
	e, base := newEndpoint(t, func(string, url.Values, string, int) (int, string) {
		return 200, describeVolumesXML(volumeXML("vol-0000000000000000a", "a", "available", ""), volumeXML("vol-0000000000000000c", "c", "in-use", "i-a"))
	})
	c := newTestCloud(t, base, Options{BatchWindow: time.Hour, BatchMax: len(names)}) // closes when full
	ctx := NewSession(context.Background())
	got := make([][]Volume, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vs, err := c.VolumesByKey(ctx, "c", n)
			if err != nil {
				t.Error(err)
			}
			got[i] = vs
		}()
	}
	wg.Wait()
	if n := e.count("EC2:DescribeVolumes"); n != 1 {
		t.Fatalf("want one DescribeVolumes for %d concurrent keys, got %d", len(names), n)
	}
	f := e.forms[0]
	var values []string
	for i := 1; f.Get(fmt.Sprintf("Filter.2.Value.%d", i)) != ""; i++ {
		values = append(values, f.Get(fmt.Sprintf("Filter.2.Value.%d", i)))
	}
	sort.Strings(values)
	if f.Get("Filter.1.Name") != "tag:tether:cluster" || f.Get("Filter.2.Name") != "tag:tether:volume" || strings.Join(values, ",") != "a,b,c,d" {
		t.Fatalf("batched filters: %v", f)
	}
	for i, n := range names {
		want := 0
		if n == "a" || n == "c" {
			want = 1
		}
		if len(got[i]) != want || (want == 1 && got[i][0].Tags[TagVolume] != n) {
			t.Errorf("%s: got %+v", n, got[i])
		}
	}
	// All four answers are known to the session now, "b" and "d" as none.
	if _, err := c.VolumesByKey(ctx, "c", "b"); err != nil || e.count("EC2:DescribeVolumes") != 1 {
		t.Fatalf("asked again: %d", e.count("EC2:DescribeVolumes"))
	}
	// A write to a volume drops what the session knew about it.
	_ = c.DetachVolume(ctx, "vol-0000000000000000c", Attachment{InstanceID: "i-a"}, false) // the scripted answer does not matter here
	unbatched := NewWithClients(c.ec2, c.ecs, c.ssm, Options{BatchWindow: -1})             // same session, no window to wait for
	if _, err := unbatched.VolumesByKey(ctx, "c", "c"); err != nil || e.count("EC2:DescribeVolumes") != 2 {
		t.Fatalf("after a write the key must be read again: %d", e.count("EC2:DescribeVolumes"))
	}
}

// ssmInvocation answers ListCommandInvocations (Details) and
// GetCommandInvocation (PluginName) for invocations of tether's documents
// of three steps, as SSM does (test/world/ssmsim's rules): no plugins
// before the agent step ended, the agent step's full stdout by its name.
type ssmInvocation struct {
	status, details string
	plugins         string // the CommandPlugins JSON list
	stdout          string // the agent step's StandardOutputContent
}

func answerSSM(invs map[string]ssmInvocation) func(string, url.Values, string, int) (int, string) {
	return func(action string, _ url.Values, body string, _ int) (int, string) {
		for id, inv := range invs {
			if !strings.Contains(body, `"`+id+`"`) {
				continue
			}
			switch action {
			case "SSM:ListCommandInvocations":
				return 200, fmt.Sprintf(`{"CommandInvocations":[{"CommandId":%q,"InstanceId":"i-a","DocumentName":"tether-tether-mount","Status":%q,"StatusDetails":%q,"CommandPlugins":%s}]}`,
					id, inv.status, inv.details, inv.plugins)
			case "SSM:GetCommandInvocation":
				if !strings.Contains(body, `"PluginName":"mount"`) || inv.stdout == "" && inv.plugins == "[]" {
					return 400, `{"__type":"InvalidPluginName"}`
				}
				return 200, fmt.Sprintf(`{"Status":%q,"StatusDetails":%q,"StandardOutputContent":%q}`, inv.status, inv.details, inv.stdout)
			}
		}
		if action == "SSM:ListCommandInvocations" {
			return 200, `{"CommandInvocations":[]}`
		}
		return 400, `{"__type":"InvocationDoesNotExist","message":""}`
	}
}

const skipped = `{"Name":"refuseWindows","Status":"Success","ResponseCode":0,"Output":"Step execution skipped due to unsatisfied preconditions"},` +
	`{"Name":"refuseMacOS","Status":"Success","ResponseCode":0,"Output":"Step execution skipped due to unsatisfied preconditions"}`

func mountPlugin(status string, code int) string {
	return fmt.Sprintf(`[%s,{"Name":"mount","Status":%q,"ResponseCode":%d,"ResponseStartDateTime":1714564801.25,"ResponseFinishDateTime":1714564802.5,"Output":"{\"volumeId\"... (cut)"}]`, skipped, status, code)
}

func TestSSMCommandOutcomes(t *testing.T) {
	mounted := `{"volumeId":"vol-0123456789abcdef0","name":"db","generation":1}` + "\n"
	busy := `{"error":{"exitCode":3,"class":"busy","message":"held"}}` + "\n"
	_, base := newEndpoint(t, answerSSM(map[string]ssmInvocation{
		"cmd-ok":      {"Success", "Success", mountPlugin("Success", 0), mounted},
		"cmd-busy":    {"Failed", "Failed", mountPlugin("Failed", 3), busy},
		"cmd-lost":    {"Failed", "Undeliverable", "[]", ""},
		"cmd-late":    {"TimedOut", "Delivery Timed Out", "[]", ""},
		"cmd-slow":    {"TimedOut", "Execution Timed Out", mountPlugin("TimedOut", 137), ""},
		"cmd-running": {"InProgress", "InProgress", "[]", ""},
		// Every step skipped (an unsupported platform): SSM says Success.
		"cmd-skipped": {"Success", "Success", "[" + skipped + "]", ""},
		// A Windows node: the refusing step failed, the agent never ran.
		"cmd-windows": {"Failed", "Failed", `[{"Name":"refuseWindows","Status":"Failed","ResponseCode":1,"Output":"tether runs on Linux"}]`, ""},
		// Success without the agent's JSON line is no success.
		"cmd-silent": {"Success", "Success", mountPlugin("Success", 0), "\n"},
	}))
	c := newTestCloud(t, base, Options{})
	want := map[string]struct {
		s    CommandStatus
		exit int
	}{
		"cmd-ok": {CommandSucceeded, 0}, "cmd-busy": {CommandFailed, 3}, "cmd-lost": {CommandUnreachable, -1},
		"cmd-late": {CommandUnreachable, -1}, "cmd-slow": {CommandFailed, 137}, "cmd-running": {CommandPending, -1},
		"cmd-skipped": {CommandFailed, 1}, "cmd-windows": {CommandFailed, 1}, "cmd-silent": {CommandFailed, 1},
	}
	for id, w := range want {
		got, err := c.Command(context.Background(), id, "i-a", "mount")
		if err != nil || got.Status != w.s || (w.s != CommandPending && got.ExitCode != w.exit) {
			t.Errorf("%s: got %+v %v, want %v exit %d", id, got, err, w.s, w.exit)
		}
	}
	if got, _ := c.Command(context.Background(), "cmd-ok", "i-a", "mount"); got.Output != mounted {
		t.Errorf("cmd-ok output %q: want the agent step's full stdout", got.Output)
	}
	if got, _ := c.Command(context.Background(), "cmd-busy", "i-a", "mount"); got.Output != busy {
		t.Errorf("cmd-busy output %q: want the agent's failure line", got.Output)
	}
	if _, err := c.Command(context.Background(), "cmd-unknown", "i-a", "mount"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown command: want ErrNotFound, got %v", err)
	}
	if _, err := c.Command(context.Background(), "cmd-unreported", "i-a", "mount"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a step SSM has no result for yet (InvalidPluginName): want ErrNotFound, got %v", err)
	}
}

func TestTaskDefinitionsAreCachedForTheProcess(t *testing.T) {
	e, base := newEndpoint(t, func(string, url.Values, string, int) (int, string) {
		return 200, `{"taskDefinition":{"taskDefinitionArn":"arn:td:1","volumes":[{"name":"rexray-vol","dockerVolumeConfiguration":{"scope":"shared","autoprovision":true,"driver":"tether","driverOpts":{"size":"5"}}},{"name":"host","host":{"sourcePath":"/tmp"}}]}}`
	})
	c := newTestCloud(t, base, Options{})
	for range 3 {
		td, err := c.TaskDefinition(NewSession(context.Background()), "arn:td:1")
		if err != nil {
			t.Fatal(err)
		}
		if len(td.Volumes) != 1 || td.Volumes[0].Driver != "tether" || td.Volumes[0].Scope != "shared" || !td.Volumes[0].Autoprovision || td.Volumes[0].DriverOpts["size"] != "5" {
			t.Fatalf("decoded: %+v", td)
		}
	}
	if n := e.count("ECS:DescribeTaskDefinition"); n != 1 {
		t.Fatalf("want one DescribeTaskDefinition for the process, got %d", n)
	}
}

func TestMutatingActionsEachHaveTheirOwnAdaptiveRetryer(t *testing.T) {
	r := newRetryers(Options{}.withDefaults())
	if _, adaptive := r.detach.(*retry.AdaptiveMode); adaptive || r.detach.MaxAttempts() != 1 {
		t.Fatalf("DetachVolume's retryer is %T with %d attempts, want one attempt, never delayed", r.detach, r.detach.MaxAttempts())
	}
	all := []aws.Retryer{r.create, r.attach, r.delete, r.tags, r.modify, r.stopTask, r.sendCommand}
	for i, a := range all {
		if _, ok := a.(*retry.AdaptiveMode); !ok {
			t.Fatalf("retryer %d is %T, want adaptive", i, a)
		}
		if a.MaxAttempts() != 5 {
			t.Fatalf("retryer %d: %d attempts", i, a.MaxAttempts())
		}
		for j := range i {
			if all[j] == a {
				t.Fatalf("retryers %d and %d are shared", j, i)
			}
		}
	}
}

// An invocation keeps AWS's answers only for MaxAge: a pass that starts
// later (a long sweep, a slow batch) reads afresh.
func TestSessionAnswersAgeOut(t *testing.T) {
	e, base := newEndpoint(t, func(string, url.Values, string, int) (int, string) {
		return 200, describeVolumesXML(volumeXML("vol-0123456789abcdef0", "rexray-vol", "in-use", "i-a"))
	})
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	c := newTestCloud(t, base, Options{BatchWindow: -1, MaxAge: 3 * time.Second, Now: func() time.Time { return now }})
	ctx := NewSession(context.Background())
	for _, step := range []struct {
		after time.Duration
		want  int
	}{{0, 1}, {2 * time.Second, 1}, {time.Second, 1}, {time.Millisecond, 2}, {time.Second, 2}} {
		now = now.Add(step.after)
		if _, err := c.VolumesByKey(ctx, "c", "rexray-vol"); err != nil {
			t.Fatal(err)
		}
		if n := e.count("EC2:DescribeVolumes"); n != step.want {
			t.Fatalf("after %s more: %d DescribeVolumes, want %d", step.after, n, step.want)
		}
	}
}

// A finished command invocation never changes: it is asked for once per
// process, with the times it ran; one still running is asked every time.
func TestFinishedCommandsAreAskedOnceWithTheirTimes(t *testing.T) {
	e, base := newEndpoint(t, answerSSM(map[string]ssmInvocation{
		"cmd-ok":      {"Success", "Success", mountPlugin("Success", 0), `{"volumeId":"vol-0123456789abcdef0","name":"db","generation":1}`},
		"cmd-running": {"InProgress", "InProgress", "[]", ""},
	}))
	c := newTestCloud(t, base, Options{})
	for range 2 {
		got, err := c.Command(context.Background(), "cmd-ok", "i-a", "")
		if err != nil || got.Status != CommandSucceeded ||
			!got.Started.Equal(time.Date(2024, 5, 1, 12, 0, 1, 250e6, time.UTC)) || !got.Ended.Equal(time.Date(2024, 5, 1, 12, 0, 2, 500e6, time.UTC)) {
			t.Fatalf("finished command: %+v %v", got, err)
		}
		if got, err := c.Command(context.Background(), "cmd-running", "i-a", ""); err != nil || got.Status != CommandPending || !got.Ended.IsZero() {
			t.Fatalf("running command: %+v %v", got, err)
		}
	}
	if n, g := e.count("SSM:ListCommandInvocations"), e.count("SSM:GetCommandInvocation"); n != 3 || g != 1 {
		t.Fatalf("%d ListCommandInvocations, %d GetCommandInvocation; want 3 and 1 (the finished one once with its output, the running one twice)", n, g)
	}
}

// DetachVolume names the attachment it was judged for: read right before
// the request, a volume now attached anew (another attach time) is not
// detached (ErrAttachmentChanged, no DetachVolume sent); the same one is,
// with its device named, so that EC2 refuses the request should another
// attachment take its place meanwhile (or during the SDK's retries).
func TestDetachVolumeFencesTheJudgedAttachment(t *testing.T) {
	var detachForm url.Values
	e, base := newEndpoint(t, func(action string, form url.Values, _ string, _ int) (int, string) {
		switch action {
		case "EC2:DescribeVolumes":
			return 200, describeVolumesXML(volumeXML("vol-0123456789abcdef0", "v", "in-use", "i-a"))
		case "EC2:DetachVolume":
			detachForm = form
			return 200, `<DetachVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><volumeId>vol-0123456789abcdef0</volumeId><instanceId>i-a</instanceId><device>/dev/xvdf</device><status>detaching</status><attachTime>2024-05-01T12:00:01.000Z</attachTime></DetachVolumeResponse>`
		}
		return 400, ec2Error("InvalidParameterValue")
	})
	c := newTestCloud(t, base, Options{BatchWindow: -1})
	ctx := context.Background()
	older := Attachment{InstanceID: "i-a", Device: "/dev/xvdg", AttachTime: time.Date(2024, 5, 1, 11, 0, 0, 0, time.UTC)}
	if err := c.DetachVolume(ctx, "vol-0123456789abcdef0", older, false); !errors.Is(err, ErrAttachmentChanged) {
		t.Fatalf("an attachment replaced since it was judged: %v, want ErrAttachmentChanged", err)
	}
	if n := e.count("EC2:DetachVolume"); n != 0 {
		t.Fatalf("%d DetachVolume requests for an attachment that is gone", n)
	}
	same := Attachment{InstanceID: "i-a", Device: "/dev/xvdf", AttachTime: time.Date(2024, 5, 1, 12, 0, 1, 0, time.UTC)}
	if err := c.DetachVolume(ctx, "vol-0123456789abcdef0", same, false); err != nil {
		t.Fatalf("the attachment judged: %v", err)
	}
	if detachForm.Get("Device") != "/dev/xvdf" || detachForm.Get("InstanceId") != "i-a" {
		t.Fatalf("DetachVolume sent %v, want Device /dev/xvdf and InstanceId i-a", detachForm)
	}
}

// Concurrent detaches of one process share the read right before their
// requests: one DescribeVolumes, sent once both asked (never a session's
// copy), then each DetachVolume; a volume EC2 no longer knows is not
// detached.
func TestConcurrentDetachesShareTheirFenceRead(t *testing.T) {
	const a, b = "vol-0123456789abcdef0", "vol-0123456789abcdef1"
	var reads []url.Values
	var mu sync.Mutex
	e, base := newEndpoint(t, func(action string, form url.Values, _ string, _ int) (int, string) {
		switch action {
		case "EC2:DescribeVolumes":
			mu.Lock()
			reads = append(reads, form)
			mu.Unlock()
			return 200, describeVolumesXML(volumeXML(a, "a", "in-use", "i-a"), volumeXML(b, "b", "in-use", "i-a"))
		case "EC2:DetachVolume":
			return 200, `<DetachVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><volumeId>` + form.Get("VolumeId") + `</volumeId><instanceId>i-a</instanceId><device>/dev/xvdf</device><status>detaching</status><attachTime>2024-05-01T12:00:01.000Z</attachTime></DetachVolumeResponse>`
		}
		return 400, ec2Error("InvalidParameterValue")
	})
	c := newTestCloud(t, base, Options{BatchMax: 2})
	c.fences.Wait = func(_ context.Context, full <-chan struct{}) { <-full } // open until both asked
	ctx := NewSession(context.Background())
	// The session holds a copy already detached: the fence must not use it.
	if _, err := c.VolumeByID(ctx, a); err != nil {
		t.Fatal(err)
	}
	judged := Attachment{InstanceID: "i-a", Device: "/dev/xvdf", AttachTime: time.Date(2024, 5, 1, 12, 0, 1, 0, time.UTC)}
	errs := make(chan error, 2)
	for _, v := range []string{a, b} {
		go func() { errs <- c.DetachVolume(ctx, v, judged, false) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("detach: %v", err)
		}
	}
	if n, d := e.count("EC2:DescribeVolumes"), e.count("EC2:DetachVolume"); n != 2 || d != 2 {
		t.Fatalf("%d DescribeVolumes and %d DetachVolume, want 2 (the session's read and one shared fence) and 2", n, d)
	}
	if got := reads[1].Get("VolumeId.1") + "," + reads[1].Get("VolumeId.2"); got != a+","+b && got != b+","+a || reads[1].Get("Filter.1.Name") != "" {
		t.Fatalf("the fence read asked for %v, want both volumes by id (EC2's unfiltered bucket, apart from the passes' filtered reads)", reads[1])
	}

	gone := newTestCloud(t, base, Options{BatchWindow: -1})
	if err := gone.DetachVolume(context.Background(), "vol-0123456789abcdef9", judged, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("detach of a volume EC2 does not return: %v, want ErrNotFound", err)
	}
	if d := e.count("EC2:DetachVolume"); d != 2 {
		t.Fatalf("%d DetachVolume after the unknown volume's, want still 2", d)
	}
}

// A detach of an attachment another pass is already detaching is not
// asked again (done, for the pass that asked first); a force is (it
// upgrades the detach under way).
func TestDetachVolumeOfAnAttachmentAlreadyDetachingIsNotAskedAgain(t *testing.T) {
	e, base := newEndpoint(t, func(action string, form url.Values, _ string, _ int) (int, string) {
		switch action {
		case "EC2:DescribeVolumes":
			return 200, describeVolumesXML(strings.Replace(volumeXML("vol-0123456789abcdef0", "v", "in-use", "i-a"), "<status>attached</status>", "<status>detaching</status>", 1))
		case "EC2:DetachVolume":
			return 200, `<DetachVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><volumeId>vol-0123456789abcdef0</volumeId><instanceId>i-a</instanceId><device>/dev/xvdf</device><status>detaching</status><attachTime>2024-05-01T12:00:01.000Z</attachTime></DetachVolumeResponse>`
		}
		return 400, ec2Error("InvalidParameterValue")
	})
	c := newTestCloud(t, base, Options{BatchWindow: -1})
	judged := Attachment{InstanceID: "i-a", Device: "/dev/xvdf", AttachTime: time.Date(2024, 5, 1, 12, 0, 1, 0, time.UTC)}
	if err := c.DetachVolume(context.Background(), "vol-0123456789abcdef0", judged, false); !IsDone(err) {
		t.Fatalf("detach of an attachment already detaching: %v, want a done error", err)
	}
	if n := e.count("EC2:DetachVolume"); n != 0 {
		t.Fatalf("%d DetachVolume requests for an attachment already detaching, want none", n)
	}
	if err := c.DetachVolume(context.Background(), "vol-0123456789abcdef0", judged, true); err != nil {
		t.Fatalf("forced detach of an attachment already detaching: %v", err)
	}
	if n := e.count("EC2:DetachVolume"); n != 1 {
		t.Fatalf("%d DetachVolume requests for the force, want 1", n)
	}
}

// A sweep listed the whole cluster; once that answer ages out (MaxAge),
// the next family listing lists the whole cluster again when the first
// listing spared more family listings than it costs, and each family on
// its own when it did not (a large cluster with few tether tasks).
func TestSweepListsTheWholeClusterAgainWhenThatIsCheaper(t *testing.T) {
	const tasks = 30
	e, base := newEndpoint(t, func(action string, _ url.Values, body string, _ int) (int, string) {
		switch action {
		case "ECS:ListTasks":
			var in struct{ Family string }
			_ = json.Unmarshal([]byte(body), &in)
			var arns []string
			for i := range tasks {
				if fam := fmt.Sprintf("fam-%02d", i); in.Family == "" || in.Family == fam {
					arns = append(arns, fmt.Sprintf("%q", "arn:aws:ecs:us-east-1:123456789012:task/c/"+fmt.Sprintf("%032d", i)))
				}
			}
			return 200, `{"taskArns":[` + strings.Join(arns, ",") + `]}`
		case "ECS:DescribeTasks":
			var in struct{ Tasks []string }
			_ = json.Unmarshal([]byte(body), &in)
			var out []string
			for _, arn := range in.Tasks {
				var i int
				fmt.Sscanf(arn[strings.LastIndexByte(arn, '/')+1:], "%d", &i)
				out = append(out, fmt.Sprintf(`{"taskArn":%q,"taskDefinitionArn":"arn:aws:ecs:us-east-1:123456789012:task-definition/fam-%02d:1","lastStatus":"RUNNING","desiredStatus":"RUNNING"}`, arn, i))
			}
			return 200, `{"tasks":[` + strings.Join(out, ",") + `],"failures":[]}`
		}
		return 400, `{"__type":"InvalidParameterException","message":"unexpected"}`
	})
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	c := newTestCloud(t, base, Options{BatchWindow: -1, MaxAge: 3 * time.Second, Now: func() time.Time { return now }})
	ctx := NewSession(context.Background())
	lists := func() int { return e.count("ECS:ListTasks") }
	family := func(i int) {
		t.Helper()
		arns, err := c.ListTaskARNs(ctx, "c", TaskQuery{Family: fmt.Sprintf("fam-%02d", i)})
		if err != nil || len(arns) != 1 {
			t.Fatalf("family %d: %v %v", i, arns, err)
		}
	}
	if ts, err := c.LiveTasks(ctx, "c"); err != nil || len(ts) != tasks || lists() != 1 {
		t.Fatalf("the sweep's listing: %d tasks, %v, %d ListTasks", len(ts), err, lists())
	}
	for i := range 10 { // a whole listing costs 2 calls here; it spared 10
		family(i)
	}
	if lists() != 1 {
		t.Fatalf("%d ListTasks after families the whole listing holds, want 1", lists())
	}
	now = now.Add(4 * time.Second)
	for i := 10; i < 20; i++ {
		family(i)
	}
	if n, d := lists(), e.count("ECS:DescribeTasks"); n != 2 || d != 2 {
		t.Fatalf("after the answers aged out: %d ListTasks, %d DescribeTasks; want the whole cluster listed again (2, 2)", n, d)
	}
	// That listing spared 10 as well; then a window that spares one: the
	// window after it lists each family on its own.
	now = now.Add(4 * time.Second)
	family(20)
	now = now.Add(4 * time.Second)
	family(21)
	family(22)
	if n := lists(); n != 5 {
		t.Fatalf("%d ListTasks; want 3 whole listings then 2 of one family each (5)", n)
	}
	// A window that looks up more families than a whole listing costs, each
	// listed on its own: the next window lists the whole cluster again.
	now = now.Add(4 * time.Second)
	for i := 23; i < 26; i++ {
		family(i)
	}
	now = now.Add(4 * time.Second)
	family(26)
	family(27)
	if n := lists(); n != 9 {
		t.Fatalf("%d ListTasks; want 3 more of one family each, then one whole listing (9)", n)
	}
}

// Concurrent reads of instances go out as one DescribeInstances; one
// unknown id (which fails EC2's whole request) is then asked alone and
// reads as ErrNotFound, and the others are still answered.
func TestConcurrentInstanceReadsShareOneDescribeInstances(t *testing.T) {
	instanceXML := func(id string) string {
		return `<item><reservationId>r-1</reservationId><instancesSet><item><instanceId>` + id + `</instanceId>` +
			`<instanceState><code>16</code><name>running</name></instanceState><placement><availabilityZone>us-east-1a</availabilityZone></placement>` +
			`<blockDeviceMapping><item><deviceName>/dev/xvda</deviceName></item><item><deviceName>/dev/xvdf</deviceName></item></blockDeviceMapping>` +
			`</item></instancesSet></item>`
	}
	e, base := newEndpoint(t, func(action string, form url.Values, _ string, _ int) (int, string) {
		var items []string
		for i := 1; form.Get(fmt.Sprintf("InstanceId.%d", i)) != ""; i++ {
			id := form.Get(fmt.Sprintf("InstanceId.%d", i))
			if id == "i-gone" {
				return 400, `<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID 'i-gone' does not exist</Message></Error></Errors><RequestID>r</RequestID></Response>`
			}
			items = append(items, instanceXML(id))
		}
		return 200, `<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><reservationSet>` +
			strings.Join(items, "") + `</reservationSet></DescribeInstancesResponse>`
	})
	ids := []string{"i-a", "i-b", "i-gone"}
	c := newTestCloud(t, base, Options{BatchWindow: time.Hour, BatchMax: len(ids)}) // closes when full
	ctx := NewSession(context.Background())
	got := make([]Instance, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = c.Instance(ctx, id)
		}()
	}
	wg.Wait()
	for i, id := range ids[:2] {
		if errs[i] != nil || got[i].ID != id || got[i].State != "running" || strings.Join(got[i].Devices, ",") != "/dev/xvda,/dev/xvdf" {
			t.Errorf("%s: %+v %v", id, got[i], errs[i])
		}
	}
	if !errors.Is(errs[2], ErrNotFound) {
		t.Errorf("i-gone: %v, want ErrNotFound", errs[2])
	}
	// One request for the three, then each alone after EC2 refused it.
	if n := e.count("EC2:DescribeInstances"); n != 1+len(ids) {
		t.Fatalf("DescribeInstances calls: %d, want %d", n, 1+len(ids))
	}
	if len(e.forms[0]["InstanceId.3"]) != 1 {
		t.Fatalf("the first request did not carry the three ids: %v", e.forms[0])
	}
	// The session keeps the answers.
	if _, err := c.Instance(ctx, "i-a"); err != nil || e.count("EC2:DescribeInstances") != 1+len(ids) {
		t.Fatalf("asked again: %v, %d calls", err, e.count("EC2:DescribeInstances"))
	}
}

// A DetachVolume EC2 fails with a retryable error is not sent again by the
// SDK: a repeat could reach EC2 after the volume was detached and attached
// to the same instance again, as the same device. The pass hands its key
// back and reads the attachment again.
func TestDetachVolumeIsSentOnce(t *testing.T) {
	e, base := newEndpoint(t, func(action string, _ url.Values, _ string, _ int) (int, string) {
		switch action {
		case "EC2:DescribeVolumes":
			return 200, describeVolumesXML(volumeXML("vol-0123456789abcdef0", "v", "in-use", "i-a"))
		case "EC2:DetachVolume":
			return 503, ec2Error("Unavailable")
		}
		return 400, ec2Error("InvalidParameterValue")
	})
	c := newTestCloud(t, base, Options{BatchWindow: -1})
	att := Attachment{InstanceID: "i-a", Device: "/dev/xvdf", State: AttachAttached, AttachTime: time.Date(2024, 5, 1, 12, 0, 1, 0, time.UTC)}
	if err := c.DetachVolume(context.Background(), "vol-0123456789abcdef0", att, false); err == nil {
		t.Fatal("DetachVolume answered 503: want an error")
	}
	if n := e.count("EC2:DetachVolume"); n != 1 {
		t.Fatalf("%d DetachVolume requests, want 1", n)
	}
}

// Passes of one invocation running at once (each with its own session, as
// the dispatcher gives them) describe their tasks and container instances
// in one DescribeTasks and one DescribeContainerInstances; each gets its
// own answers, by ARN or by id, and keeps them in its session.
func TestConcurrentPassesShareTheirECSDescribes(t *testing.T) {
	const prefix = "arn:aws:ecs:us-east-1:123456789012:"
	var asked [][]string
	var mu sync.Mutex
	e, base := newEndpoint(t, func(action string, _ url.Values, body string, _ int) (int, string) {
		var in struct{ Tasks, ContainerInstances []string }
		_ = json.Unmarshal([]byte(body), &in)
		mu.Lock()
		asked = append(asked, append(in.Tasks, in.ContainerInstances...))
		mu.Unlock()
		switch action {
		case "ECS:DescribeTasks":
			var out []string
			for _, id := range in.Tasks {
				if id == "gone" {
					continue
				}
				out = append(out, fmt.Sprintf(`{"taskArn":%q,"lastStatus":"RUNNING","desiredStatus":"RUNNING"}`, prefix+"task/c/"+TaskID(id)))
			}
			return 200, `{"tasks":[` + strings.Join(out, ",") + `],"failures":[]}`
		case "ECS:DescribeContainerInstances":
			var out []string
			for _, arn := range in.ContainerInstances {
				out = append(out, fmt.Sprintf(`{"containerInstanceArn":%q,"ec2InstanceId":"i-%s","status":"ACTIVE","agentConnected":true}`, arn, arn[len(arn)-1:]))
			}
			return 200, `{"containerInstances":[` + strings.Join(out, ",") + `],"failures":[]}`
		}
		return 400, `{"__type":"InvalidParameterException","message":"unexpected"}`
	})
	c := newTestCloud(t, base, Options{BatchMax: 3})
	c.tasksByID.Wait = func(_ context.Context, full <-chan struct{}) { <-full } // open until the three asked
	c.cisByARN.Wait = func(_ context.Context, full <-chan struct{}) { <-full }
	type answer struct {
		tasks []Task
		ci    ContainerInstance
		err   error
	}
	ask := [][]string{{"a"}, {prefix + "task/c/b", "gone"}}
	cis := []string{prefix + "container-instance/c/1", prefix + "container-instance/c/2", prefix + "container-instance/c/3"}
	answers := make([]answer, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			ctx := NewSession(context.Background())
			if i < 2 {
				answers[i].tasks, answers[i].err = c.Tasks(ctx, "c", ask[i])
			}
			answers[i].ci, _ = c.ContainerInstance(ctx, "c", cis[i])
			if i < 2 && answers[i].err == nil { // kept in the pass's session: no second request
				if again, err := c.Tasks(ctx, "c", ask[i][:1]); err != nil || len(again) != 1 {
					answers[i].err = fmt.Errorf("again: %v %v", again, err)
				}
			}
		})
	}
	wg.Wait()
	if n, d := e.count("ECS:DescribeTasks"), e.count("ECS:DescribeContainerInstances"); n != 1 || d != 1 {
		t.Fatalf("%d DescribeTasks and %d DescribeContainerInstances, want one of each (asked %v)", n, d, asked)
	}
	if a := answers[0]; a.err != nil || len(a.tasks) != 1 || a.tasks[0].ARN != prefix+"task/c/a" {
		t.Fatalf("the first pass's tasks: %+v %v", a.tasks, a.err)
	}
	if a := answers[1]; a.err != nil || len(a.tasks) != 1 || a.tasks[0].ARN != prefix+"task/c/b" {
		t.Fatalf("the second pass's tasks (one ECS does not know): %+v %v", a.tasks, a.err)
	}
	for i, a := range answers {
		if a.ci.ARN != cis[i] || a.ci.EC2InstanceID != fmt.Sprintf("i-%d", i+1) {
			t.Fatalf("pass %d's container instance: %+v", i, a.ci)
		}
	}
}

// One unknown id fails a VolumeIds read as a whole: the fence then reads
// the ids one by one, and only the known volume is detached.
func TestAFenceReadWithAnUnknownVolumeReadsEachAlone(t *testing.T) {
	const known, gone = "vol-0123456789abcdef0", "vol-0123456789abcdef9"
	e, base := newEndpoint(t, func(action string, form url.Values, _ string, _ int) (int, string) {
		switch action {
		case "EC2:DescribeVolumes":
			if form.Get("VolumeId.1") == gone || form.Get("VolumeId.2") == gone {
				return 400, ec2Error("InvalidVolume.NotFound")
			}
			return 200, describeVolumesXML(volumeXML(known, "a", "in-use", "i-a"))
		case "EC2:DetachVolume":
			return 200, `<DetachVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><volumeId>` + known + `</volumeId><instanceId>i-a</instanceId><device>/dev/xvdf</device><status>detaching</status><attachTime>2024-05-01T12:00:01.000Z</attachTime></DetachVolumeResponse>`
		}
		return 400, ec2Error("InvalidParameterValue")
	})
	c := newTestCloud(t, base, Options{BatchMax: 2})
	c.fences.Wait = func(_ context.Context, full <-chan struct{}) { <-full }
	judged := Attachment{InstanceID: "i-a", Device: "/dev/xvdf", AttachTime: time.Date(2024, 5, 1, 12, 0, 1, 0, time.UTC)}
	errs := map[string]chan error{known: make(chan error, 1), gone: make(chan error, 1)}
	for v, ch := range errs {
		go func() { ch <- c.DetachVolume(context.Background(), v, judged, false) }()
	}
	if err := <-errs[known]; err != nil {
		t.Fatalf("the known volume's detach: %v", err)
	}
	if err := <-errs[gone]; !errors.Is(err, ErrNotFound) {
		t.Fatalf("the unknown volume's detach: %v, want ErrNotFound", err)
	}
	if n, d := e.count("EC2:DescribeVolumes"), e.count("EC2:DetachVolume"); n != 3 || d != 1 {
		t.Fatalf("%d DescribeVolumes and %d DetachVolume, want 3 (both, then each) and 1", n, d)
	}
}
