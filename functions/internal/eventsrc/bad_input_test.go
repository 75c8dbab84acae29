package eventsrc

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// mutate decodes a sample into a generic map, lets f change it and encodes
// it again, so each bad case differs from a good event in one way only.
func mutate(t *testing.T, sample string, f func(ev map[string]any, detail map[string]any)) []byte {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal(readFile(t, eventsDir+"/"+sample), &ev); err != nil {
		t.Fatal(err)
	}
	detail, _ := ev["detail"].(map[string]any)
	f(ev, detail)
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRejectsBadInput(t *testing.T) {
	type tc struct {
		name  string
		body  []byte
		quiet bool
	}
	task := func(name string, f func(ev, d map[string]any)) tc {
		return tc{name: "task/" + name, body: mutate(t, "task-running.json", f)}
	}
	inst := func(name string, f func(ev, d map[string]any)) tc {
		return tc{name: "instance/" + name, body: mutate(t, "instance-draining.json", f)}
	}
	vol := func(name string, f func(ev, d map[string]any)) tc {
		return tc{name: "volume/" + name, body: mutate(t, "volume-detached.json", f)}
	}
	cmd := func(name string, f func(ev, d map[string]any)) tc {
		return tc{name: "command/" + name, body: mutate(t, "command-unmount-succeeded.json", f)}
	}
	cases := []tc{
		{name: "empty", body: []byte("")},
		{name: "spaces", body: []byte("  \n")},
		{name: "null", body: []byte("null")},
		{name: "array", body: []byte(`[{"source":"aws.ecs"}]`)},
		{name: "string", body: []byte(`"aws.ecs"`)},
		{name: "truncated", body: []byte(`{"version":"0","id":"x`)},
		{name: "trailing garbage", body: []byte(`{"version":"0"} {"x":1}`)},
		{name: "too large", body: []byte(`{"pad":"` + strings.Repeat("a", MaxMessageBytes) + `"}`)},
		{name: "no id", body: mutate(t, "task-running.json", func(ev, d map[string]any) { delete(ev, "id") })},
		{name: "hostile id", body: mutate(t, "task-running.json", func(ev, d map[string]any) { ev["id"] = "a\nb" })},
		{name: "no detail", body: mutate(t, "task-running.json", func(ev, d map[string]any) { delete(ev, "detail") })},
		{name: "null detail", body: mutate(t, "task-running.json", func(ev, d map[string]any) { ev["detail"] = nil })},
		{name: "detail not an object", body: mutate(t, "task-running.json", func(ev, d map[string]any) { ev["detail"] = "RUNNING" })},
		{name: "other source", body: mutate(t, "task-running.json", func(ev, d map[string]any) { ev["source"] = "aws.ec2" })},
		{name: "custom source", body: mutate(t, "task-running.json", func(ev, d map[string]any) { ev["source"] = "my.app" })},
		{name: "source case", body: mutate(t, "task-running.json", func(ev, d map[string]any) { ev["source"] = "AWS.ECS" })},
		{name: "other detail-type", body: mutate(t, "task-running.json", func(ev, d map[string]any) { ev["detail-type"] = "ECS Service Action" })},
		{name: "detail-type prefix", body: mutate(t, "task-running.json", func(ev, d map[string]any) { ev["detail-type"] = "ECS Task State Change " })},
		{name: "ec2 instance state", body: mutate(t, "volume-detached.json", func(ev, d map[string]any) {
			ev["detail-type"] = "EC2 Instance State-change Notification"
		})},
		{name: "schedule from another source", body: mutate(t, "scheduled.json", func(ev, d map[string]any) { ev["source"] = "aws.ecs" })},

		task("other cluster", func(ev, d map[string]any) { d["clusterArn"] = "arn:aws:ecs:us-east-1:123456789012:cluster/prod" }),
		task("cluster name prefix", func(ev, d map[string]any) {
			d["clusterArn"] = "arn:aws:ecs:us-east-1:123456789012:cluster/tether-demo-2"
		}),
		task("no clusterArn", func(ev, d map[string]any) { delete(d, "clusterArn") }),
		task("clusterArn hostile", func(ev, d map[string]any) {
			d["clusterArn"] = "arn:aws:ecs:us-east-1:123456789012:cluster/tether-demo;id"
		}),
		task("clusterArn wrong service", func(ev, d map[string]any) { d["clusterArn"] = "arn:aws:eks:us-east-1:123456789012:cluster/tether-demo" }),
		task("taskArn hostile", func(ev, d map[string]any) {
			d["taskArn"] = "arn:aws:ecs:us-east-1:123456789012:task/tether-demo/5b1f$(reboot)"
		}),
		task("taskArn of another cluster", func(ev, d map[string]any) {
			d["taskArn"] = "arn:aws:ecs:us-east-1:123456789012:task/prod/5b1f0c2d9e8a4f7b8c6d1e2f3a4b5c6d"
		}),
		task("no taskArn", func(ev, d map[string]any) { delete(d, "taskArn") }),
		task("containerInstanceArn hostile", func(ev, d map[string]any) {
			d["containerInstanceArn"] = "arn:aws:ecs:us-east-1:123456789012:container-instance/tether-demo/../x"
		}),
		task("containerInstanceArn not a string", func(ev, d map[string]any) { d["containerInstanceArn"] = 7 }),
		task("taskDefinitionArn hostile", func(ev, d map[string]any) {
			d["taskDefinitionArn"] = "arn:aws:ecs:us-east-1:123456789012:task-definition/mysql:1 --force"
		}),
		task("taskDefinitionArn revision 0", func(ev, d map[string]any) {
			d["taskDefinitionArn"] = "arn:aws:ecs:us-east-1:123456789012:task-definition/mysql:0"
		}),
		task("lastStatus lower case", func(ev, d map[string]any) { d["lastStatus"] = "running" }),
		task("lastStatus with suffix", func(ev, d map[string]any) { d["lastStatus"] = "RUNNING_X" }),
		task("lastStatus missing", func(ev, d map[string]any) { delete(d, "lastStatus") }),
		task("desiredStatus unknown", func(ev, d map[string]any) { d["desiredStatus"] = "PAUSED" }),
		task("negative version", func(ev, d map[string]any) { d["version"] = -1 }),
		task("version not a number", func(ev, d map[string]any) { d["version"] = "4" }),

		inst("other cluster", func(ev, d map[string]any) { d["clusterArn"] = "arn:aws:ecs:us-east-1:123456789012:cluster/prod" }),
		inst("ec2InstanceId hostile", func(ev, d map[string]any) { d["ec2InstanceId"] = "i-0a1b2c3d4e5f60718; reboot" }),
		inst("ec2InstanceId missing", func(ev, d map[string]any) { delete(d, "ec2InstanceId") }),
		inst("status substring", func(ev, d map[string]any) { d["status"] = "DRAINING_SOON" }),
		inst("status lower case", func(ev, d map[string]any) { d["status"] = "draining" }),
		inst("agentConnected missing", func(ev, d map[string]any) { delete(d, "agentConnected") }),
		inst("agentConnected a string", func(ev, d map[string]any) { d["agentConnected"] = "true" }),
		inst("attributes not a list", func(ev, d map[string]any) { d["attributes"] = "none" }),

		vol("no resources", func(ev, d map[string]any) { ev["resources"] = []any{} }),
		vol("only the instance", func(ev, d map[string]any) {
			ev["resources"] = []any{"arn:aws:ec2:us-east-1:123456789012:instance/i-0a1b2c3d4e5f60718"}
		}),
		vol("volume id upper case", func(ev, d map[string]any) {
			ev["resources"] = []any{"arn:aws:ec2:us-east-1:123456789012:volume/vol-0C8F3E2A1B4D5E6F7"}
		}),
		vol("volume id hostile", func(ev, d map[string]any) {
			ev["resources"] = []any{"arn:aws:ec2:us-east-1:123456789012:volume/vol-0c8f3e2a1b4d5e6f7 --force"}
		}),
		vol("two volumes", func(ev, d map[string]any) {
			ev["resources"] = []any{"arn:aws:ec2:us-east-1:123456789012:volume/vol-0c8f3e2a1b4d5e6f7",
				"arn:aws:ec2:us-east-1:123456789012:volume/vol-01234567"}
		}),
		vol("unknown event", func(ev, d map[string]any) { d["event"] = "createSnapshot" }),
		vol("event case", func(ev, d map[string]any) { d["event"] = "DetachVolume" }),
		vol("result hostile", func(ev, d map[string]any) { d["result"] = "detached\"; rm" }),

		cmd("other detail-type", func(ev, d map[string]any) { ev["detail-type"] = "EC2 Command Status-change Notification" }),
		cmd("command-id hostile", func(ev, d map[string]any) { d["command-id"] = "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f;x" }),
		cmd("command-id upper case", func(ev, d map[string]any) { d["command-id"] = "8C1D2E3F-4A5B-4C6D-8E7F-9A0B1C2D3E4F" }),
		cmd("command-id missing", func(ev, d map[string]any) { delete(d, "command-id") }),
		cmd("instance-id hostile", func(ev, d map[string]any) { d["instance-id"] = "i-0a1b2c3d4e5f60718 x" }),
		cmd("managed node", func(ev, d map[string]any) { d["instance-id"] = "mi-0123456789abcdef0" }),
		cmd("document-name hostile", func(ev, d map[string]any) { d["document-name"] = "tether-demo-unmount'; reboot" }),
		cmd("document-name missing", func(ev, d map[string]any) { delete(d, "document-name") }),
		cmd("status lower case", func(ev, d map[string]any) { d["status"] = "success" }),
		cmd("status unknown", func(ev, d map[string]any) { d["status"] = "Done" }),
		cmd("status not a string", func(ev, d map[string]any) { d["status"] = 0 }),
	}
	// Quiet skips: expected, not tether's business.
	cases = append(cases,
		tc{name: "task/fargate", quiet: true, body: mutate(t, "task-running.json", func(ev, d map[string]any) {
			d["launchType"] = "FARGATE"
		})},
		tc{name: "task/external", quiet: true, body: mutate(t, "task-running.json", func(ev, d map[string]any) {
			d["launchType"] = "EXTERNAL"
		})},
		tc{name: "task/not placed", quiet: true, body: mutate(t, "task-provisioning.json", func(ev, d map[string]any) {
			delete(d, "containerInstanceArn")
		})},
		tc{name: "instance/ECS Anywhere", quiet: true, body: mutate(t, "instance-active.json", func(ev, d map[string]any) {
			d["ec2InstanceId"] = "mi-0123456789abcdef0"
		})},
	)

	dec := mustDecoder(t, demo)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, err := dec.Decode(c.body)
			s, ok := AsSkip(err)
			if !ok {
				t.Fatalf("Decode = %+v, %v; want a *SkipError", ev, err)
			}
			if s.Quiet != c.quiet {
				t.Errorf("quiet = %v, want %v (%s)", s.Quiet, c.quiet, s)
			}
			if s.Reason == "" {
				t.Error("skip without a reason")
			}
		})
	}
}

// AWS adds fields over the years; an event with fields tether does not know
// still decodes (unlike tether's own retry message).
func TestDecodeToleratesNewAWSFields(t *testing.T) {
	dec := mustDecoder(t, demo)
	for _, sample := range []string{"task-running.json", "instance-draining.json", "volume-attached.json", "scheduled.json"} {
		body := mutate(t, sample, func(ev, d map[string]any) {
			ev["replay-name"] = "x"
			d["someFieldFrom2030"] = map[string]any{"nested": []any{1, "two"}}
		})
		if _, err := dec.Decode(body); err != nil {
			t.Errorf("%s with new fields: %v", sample, err)
		}
	}
}

// Old events use short task ARNs (task/<id>); new ones task/<cluster>/<id>.
func TestDecodeBothTaskARNFormats(t *testing.T) {
	dec := mustDecoder(t, demo)
	for _, arn := range []string{
		"arn:aws:ecs:us-east-1:123456789012:task/b99d40b3-5176-4f71-9a52-9dbd6f1cebef",
		"arn:aws:ecs:us-east-1:123456789012:task/tether-demo/5b1f0c2d9e8a4f7b8c6d1e2f3a4b5c6d",
		"arn:aws-us-gov:ecs:us-gov-west-1:123456789012:task/tether-demo/5b1f0c2d9e8a4f7b8c6d1e2f3a4b5c6d",
	} {
		body := mutate(t, "task-running.json", func(ev, d map[string]any) {
			d["taskArn"] = arn
			d["containerInstanceArn"] = "arn:aws:ecs:us-east-1:123456789012:container-instance/b54a2a04-046f-4331-9d74-3f6d7f6ca315"
		})
		ev, err := dec.Decode(body)
		if err != nil {
			t.Fatalf("%s: %v", arn, err)
		}
		if got := ev.Trigger.(reconcile.TaskChanged).TaskArn; got != arn {
			t.Errorf("TaskArn %q, want %q", got, arn)
		}
	}
}

// Timestamps come with 1, 2 or 3 fractional digits (or none); each is read.
func TestDecodeTimestampPrecisions(t *testing.T) {
	dec := mustDecoder(t, demo)
	for _, ts := range []string{"2026-03-02T10:14:41Z", "2026-03-02T10:14:41.5Z", "2026-03-02T10:14:41.57Z", "2026-03-02T10:14:41.571Z"} {
		want, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := dec.Decode(mutate(t, "task-running.json", func(ev, d map[string]any) { d["updatedAt"] = ts }))
		if err != nil {
			t.Fatalf("%s: %v", ts, err)
		}
		v, ok := attrValue(ev.Attrs, "updatedAt")
		if !ok || !v.Time().Equal(want) {
			t.Errorf("updatedAt %s: logged %v (present %v)", ts, v, ok)
		}
	}
	// A timestamp tether cannot read is not worth dropping the event for.
	if _, err := dec.Decode(mutate(t, "task-running.json", func(ev, d map[string]any) { d["updatedAt"] = "yesterday" })); err != nil {
		t.Errorf("unreadable updatedAt: %v", err)
	}
}

// The container instance's attributes keep their values (the reason tether
// does not use aws-lambda-go's ECSContainerInstanceEvent).
func TestDecodeInstanceAttributes(t *testing.T) {
	dec := mustDecoder(t, demo)
	ev, err := dec.Decode(readFile(t, eventsDir+"/instance-draining.json"))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := attrValue(ev.Attrs, "az"); !ok || v.String() != "us-east-1a" {
		t.Errorf("availability_zone = %v (present %v), want us-east-1a", v, ok)
	}
	if v, ok := attrValue(ev.Attrs, "tetherPlugin"); !ok || !v.Bool() {
		t.Errorf("tether_plugin = %v (present %v), want true", v, ok)
	}
	noPlugin := mutate(t, "instance-active.json", func(ev, d map[string]any) {
		d["attributes"] = []any{map[string]any{"name": "ecs.availability-zone", "value": "us-east-1b"}}
	})
	ev, err = dec.Decode(noPlugin)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := attrValue(ev.Attrs, "tetherPlugin"); !ok || v.Bool() {
		t.Errorf("tether_plugin = %v (present %v), want false", v, ok)
	}
}

func TestNewDecoderValidatesCluster(t *testing.T) {
	for _, bad := range []string{"", "a b", "arn:aws:ecs:us-east-1:123456789012:cluster/x", strings.Repeat("c", 256), "x;y"} {
		if _, err := NewDecoder(bad); err == nil {
			t.Errorf("NewDecoder(%q) accepted", bad)
		}
	}
}
