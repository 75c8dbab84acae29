package ecssim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/motoserver"
)

type reply struct {
	status int
	code   string // error code without namespace
	doc    map[string]any
}

func ecsCall(t *testing.T, url, action string, body any) reply {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url+"/", bytes.NewReader(b))
	req.Header.Set("X-Amz-Target", ecssim.Target+"."+action)
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	// moto routes by the SigV4 credential scope: sign-shaped header it accepts.
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDWORLD/20250101/us-west-2/ecs/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s to %s: %v", action, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, doc: map[string]any{}}
	if err := json.Unmarshal(raw, &r.doc); err != nil {
		t.Fatalf("%s to %s: body %q: %v", action, url, raw, err)
	}
	if typ, ok := r.doc["__type"].(string); ok {
		r.code = typ[strings.LastIndexByte(typ, '#')+1:]
	}
	return r
}

// at walks a path like "service.deployments.0".
func at(doc any, path string) any {
	for _, p := range strings.Split(path, ".") {
		switch v := doc.(type) {
		case map[string]any:
			doc = v[p]
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i >= len(v) {
				return nil
			}
			doc = v[i]
		default:
			return nil
		}
	}
	return doc
}

func keys(v any) []string {
	m, _ := v.(map[string]any)
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Where moto and ECS differ, the world follows ECS. Each entry is a key moto
// returns that the world deliberately does not, with why.
var motoOnly = map[string]string{
	"service.taskSets":                "moto lists taskSets: [] for every service; ECS returns taskSets only for EXTERNAL/CODE_DEPLOY deployment controllers",
	"services.0.taskSets":             "as service.taskSets",
	"service.networkConfiguration":    "moto returns networkConfiguration: {} for a service without one; ECS omits it",
	"services.0.networkConfiguration": "as service.networkConfiguration",
	"service.tags":                    "moto returns tags: [] from CreateService; ECS returns tags only when asked (include TAGS)",
}

func TestContractWithMoto(t *testing.T) {
	moto := motoserver.Start(t)
	w := newWorld(t, ecssim.Timing{})
	taskDef := map[string]any{}
	if err := json.Unmarshal([]byte(seedTaskDef(t, "us-west-2a")), &taskDef); err != nil {
		t.Fatal(err)
	}
	plain := map[string]any{"family": "plain", "containerDefinitions": []any{map[string]any{"name": "app", "image": "busybox", "memory": 128}}}
	steps := []struct {
		action string
		body   any
		shape  []string // objects whose keys must agree (moto's ⊆ the world's)
		equal  []string // values that must be equal
	}{
		{"CreateCluster", map[string]any{"clusterName": "c1"}, []string{"cluster"}, []string{"cluster.clusterArn", "cluster.status", "cluster.settings"}},
		{"ListClusters", map[string]any{}, []string{""}, []string{"clusterArns"}},
		{"DescribeClusters", map[string]any{"clusters": []string{"c1", "nope"}}, []string{"", "clusters.0", "failures.0"}, []string{"failures", "clusters.0.clusterName"}},
		{"RegisterTaskDefinition", taskDef, []string{"taskDefinition", "taskDefinition.containerDefinitions.0", "taskDefinition.volumes.0.dockerVolumeConfiguration"},
			[]string{"taskDefinition.taskDefinitionArn", "taskDefinition.revision", "taskDefinition.status", "taskDefinition.volumes", "taskDefinition.placementConstraints", "taskDefinition.cpu", "taskDefinition.memory", "taskDefinition.networkMode"}},
		{"RegisterTaskDefinition", plain, []string{"taskDefinition"}, []string{"taskDefinition.taskDefinitionArn", "taskDefinition.containerDefinitions.0.cpu", "taskDefinition.containerDefinitions.0.essential"}},
		{"DescribeTaskDefinition", map[string]any{"taskDefinition": "mysql"}, []string{"taskDefinition"}, []string{"taskDefinition.taskDefinitionArn"}},
		{"DescribeTaskDefinition", map[string]any{"taskDefinition": "nope"}, nil, nil},
		{"CreateService", map[string]any{"cluster": "c1", "serviceName": "web", "taskDefinition": "plain", "desiredCount": 0}, []string{"service"},
			[]string{"service.serviceArn", "service.status", "service.desiredCount", "service.launchType", "service.taskDefinition", "service.schedulingStrategy"}},
		{"ListServices", map[string]any{"cluster": "c1"}, []string{""}, []string{"serviceArns"}},
		{"DescribeServices", map[string]any{"cluster": "c1", "services": []string{"web"}}, []string{"services.0"}, []string{"services.0.serviceName", "failures"}},
		{"UpdateService", map[string]any{"cluster": "c1", "service": "nope", "desiredCount": 0}, nil, nil},
		{"ListServices", map[string]any{"cluster": "nope"}, nil, nil},
		{"ListTasks", map[string]any{"cluster": "c1"}, []string{""}, []string{"taskArns"}},
		{"DescribeTasks", map[string]any{"cluster": "c1", "tasks": []string{"0123456789abcdef0123456789abcdef"}}, []string{""}, []string{"tasks"}},
		{"DeregisterTaskDefinition", map[string]any{"taskDefinition": "mysql:1"}, []string{"taskDefinition"}, []string{"taskDefinition.status"}},
	}
	for i, st := range steps {
		name := fmt.Sprintf("%d %s", i, st.action)
		m, wr := ecsCall(t, moto, st.action, st.body), ecsCall(t, w.url, st.action, st.body)
		if m.status != wr.status || m.code != wr.code {
			t.Errorf("%s: moto %d %s, world %d %s (%v)", name, m.status, m.code, wr.status, wr.code, wr.doc["message"])
			continue
		}
		for _, path := range st.shape {
			mv, wv := any(m.doc), any(wr.doc)
			if path != "" {
				mv, wv = at(m.doc, path), at(wr.doc, path)
			}
			worldKeys := map[string]bool{}
			for _, k := range keys(wv) {
				worldKeys[k] = true
			}
			var missing []string
			for _, k := range keys(mv) {
				if !worldKeys[k] && motoOnly[strings.TrimPrefix(path+"."+k, ".")] == "" {
					missing = append(missing, k)
				}
			}
			if len(missing) > 0 {
				t.Errorf("%s: %s lacks %v that moto returns", name, path, missing)
			}
			var extra []string
			for _, k := range keys(wv) {
				if !contains(keys(mv), k) {
					extra = append(extra, k)
				}
			}
			if len(extra) > 0 {
				t.Logf("%s: %s: fields ECS returns that moto omits: %v", name, path, extra)
			}
		}
		for _, path := range st.equal {
			mj, _ := json.Marshal(normalize(at(m.doc, path)))
			wj, _ := json.Marshal(normalize(at(wr.doc, path)))
			if !bytes.Equal(mj, wj) {
				t.Errorf("%s: %s: moto %s, world %s", name, path, mj, wj)
			}
		}
	}
	// Where moto is wrong, checked against the world only:
	// - moto accepts a second CreateService of an ACTIVE service; ECS refuses
	//   it ("Creation of service was not idempotent.").
	// - moto's DeleteService makes the service INACTIVE at once and still
	//   lists it; ECS goes DRAINING until its tasks stop, then INACTIVE, and
	//   ListServices no longer shows it.
	// - moto echoes missing services as short ARNs (service/<name>); the
	//   world uses the long format throughout.
	// - moto leaves hostPort out of awsvpc port mappings; ECS sets it to the
	//   container port.
	if r := ecsCall(t, w.url, "CreateService", map[string]any{"cluster": "c1", "serviceName": "web", "taskDefinition": "plain", "desiredCount": 0}); r.code != "InvalidParameterException" {
		t.Errorf("world accepted a duplicate service: %v", r.doc)
	}
	if r := ecsCall(t, w.url, "DeleteService", map[string]any{"cluster": "c1", "service": "web"}); at(r.doc, "service.status") != "DRAINING" {
		t.Errorf("world DeleteService: %v", r.doc)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// normalize drops the port mappings' hostPort (see above) so the rest of
// the volumes and definitions compare exactly.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if k != "hostPort" {
				out[k] = normalize(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	}
	return v
}
