package eventbus

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/tether-ecs/tether/test/world/worldapi"
)

func taskEvent(cluster string, extra map[string]any) worldapi.Event {
	detail := map[string]any{"clusterArn": "arn:aws:ecs:us-west-2:123456789012:cluster/" + cluster, "lastStatus": "RUNNING", "version": 3}
	for k, v := range extra {
		detail[k] = v
	}
	raw, _ := json.Marshal(detail)
	return worldapi.Event{
		Version: "0", ID: "e1", DetailType: "ECS Task State Change", Source: "aws.ecs", Account: "123456789012",
		Region: "us-west-2", Resources: []string{"arn:aws:ecs:us-west-2:123456789012:task/" + cluster + "/abc"}, Detail: raw,
	}
}

func TestPatternMatching(t *testing.T) {
	cases := []struct {
		name    string
		pattern string
		event   worldapi.Event
		want    bool
	}{
		{"source and detail-type", `{"source":["aws.ecs"],"detail-type":["ECS Task State Change"]}`, taskEvent("c1", nil), true},
		{"detail-type any-of", `{"detail-type":["ECS Container Instance State Change","ECS Task State Change"]}`, taskEvent("c1", nil), true},
		{"wrong source", `{"source":["aws.ec2"]}`, taskEvent("c1", nil), false},
		{"clusterArn exact", `{"detail":{"clusterArn":["arn:aws:ecs:us-west-2:123456789012:cluster/c1"]}}`, taskEvent("c1", nil), true},
		{"clusterArn exact other", `{"detail":{"clusterArn":["arn:aws:ecs:us-west-2:123456789012:cluster/c1"]}}`, taskEvent("c10", nil), false},
		{"clusterArn prefix", `{"detail":{"clusterArn":[{"prefix":"arn:aws:ecs:us-west-2:123456789012:cluster/c"}]}}`, taskEvent("c10", nil), true},
		{"prefix is not suffix", `{"detail":{"clusterArn":[{"prefix":"c1"}]}}`, taskEvent("c1", nil), false},
		{"resources: any element", `{"resources":[{"prefix":"arn:aws:ecs:us-west-2:123456789012:task/c1/"}]}`, taskEvent("c1", nil), true},
		{"missing field never matches", `{"detail":{"stopCode":["UserInitiated"]}}`, taskEvent("c1", nil), false},
		{"number", `{"detail":{"version":[3.0]}}`, taskEvent("c1", nil), true},
		{"number differs", `{"detail":{"version":[4]}}`, taskEvent("c1", nil), false},
		{"string is not number", `{"detail":{"version":["3"]}}`, taskEvent("c1", nil), false},
		{"null", `{"detail":{"containerInstanceArn":[null]}}`, taskEvent("c1", map[string]any{"containerInstanceArn": nil}), true},
		{"boolean", `{"detail":{"agentConnected":[false]}}`, taskEvent("c1", map[string]any{"agentConnected": false}), true},
		{"nested object", `{"detail":{"overrides":{"name":["x"]}}}`, taskEvent("c1", map[string]any{"overrides": map[string]any{"name": "x"}}), true},
		{"object where a value is", `{"detail":{"lastStatus":{"a":["b"]}}}`, taskEvent("c1", nil), false},
		{"all fields must match", `{"source":["aws.ecs"],"detail":{"lastStatus":["STOPPED"]}}`, taskEvent("c1", nil), false},
		{"array field in detail", `{"detail":{"tags":["b"]}}`, taskEvent("c1", map[string]any{"tags": []any{"a", "b"}}), true},
	}
	for _, c := range cases {
		p, err := CompilePattern(c.pattern)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := p.Match(c.event); got != c.want {
			t.Errorf("%s: Match = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestPatternsOutsideTheSubsetAreRefused(t *testing.T) {
	for _, src := range []string{
		`{"detail":{"lastStatus":[{"anything-but":"STOPPED"}]}}`,
		`{"detail":{"version":[{"numeric":[">",1]}]}}`,
		`{"detail":{"stopCode":[{"exists":true}]}}`,
		`{"detail":{"clusterArn":[{"suffix":"/c1"}]}}`,
		`{"detail":{"clusterArn":[{"wildcard":"*/c1"}]}}`,
		`{"$or":[{"source":["aws.ecs"]},{"source":["aws.ec2"]}]}`,
		`{"detail":{"clusterArn":[{"prefix":"a","suffix":"b"}]}}`,
	} {
		_, err := CompilePattern(src)
		if !errors.Is(err, ErrUnsupportedPattern) {
			t.Errorf("%s: got %v, want ErrUnsupportedPattern", src, err)
		}
	}
	for _, src := range []string{`{}`, `[]`, `{"source":"aws.ecs"}`, `{"source":[]}`} {
		if _, err := CompilePattern(src); err == nil {
			t.Errorf("%s: compiled, want an error", src)
		}
	}
}
