package ssmsim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/motoserver"
)

type ssmReply struct {
	status int
	code   string
	doc    map[string]any
}

// message is the error message, spelt "message" or "Message" (JSON 1.1
// allows either; the SDKs read both).
func (r ssmReply) message() any {
	if m, ok := r.doc["message"]; ok {
		return m
	}
	return r.doc["Message"]
}

func ssmCall(t *testing.T, url, action string, body any) ssmReply {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url+"/", bytes.NewReader(b))
	req.Header.Set("X-Amz-Target", "AmazonSSM."+action)
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	// moto routes by the SigV4 credential scope.
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDWORLD/20250101/us-west-2/ssm/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s to %s: %v", action, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := ssmReply{status: resp.StatusCode, doc: map[string]any{}}
	if err := json.Unmarshal(raw, &r.doc); err != nil {
		t.Fatalf("%s to %s: body %q: %v", action, url, raw, err)
	}
	if typ, ok := r.doc["__type"].(string); ok {
		r.code = typ[strings.LastIndexByte(typ, '#')+1:]
	}
	return r
}

// The world's document APIs against moto's, for a document created in
// moto with the same content the world loaded: the same description
// (moto does not compute PlatformTypes, and leaves Tags out where the aws
// CLI's own example shows "Tags": []), and the same refusals.
func TestDocumentsMatchMoto(t *testing.T) {
	moto := motoserver.Start(t)
	w := newWorld(t, latency.Instant())
	const name = "tether-contract"
	content := `{"schemaVersion":"2.2","description":"contract","parameters":{"VolumeId":{"type":"String","description":"EBS volume id","allowedPattern":"^vol-[0-9a-f]{8,17}$"},` +
		`"Force":{"type":"String","description":"force","default":"false"}},"mainSteps":[{"action":"aws:runShellScript","name":"unmount","inputs":{"runCommand":["tether-agent unmount --volume-id '{{ VolumeId }}' --force={{ Force }}"]}}]}`
	if r := ssmCall(t, moto, "CreateDocument", map[string]any{"Name": name, "Content": content, "DocumentType": "Command", "DocumentFormat": "JSON"}); r.status != 200 {
		t.Fatalf("moto CreateDocument: %d %v", r.status, r.doc)
	}
	if err := w.srv.AddDocument(name, content); err != nil {
		t.Fatal(err)
	}

	m, wr := ssmCall(t, moto, "DescribeDocument", map[string]any{"Name": name}), ssmCall(t, w.url, "DescribeDocument", map[string]any{"Name": name})
	if m.status != 200 || wr.status != 200 {
		t.Fatalf("DescribeDocument: moto %d %v, world %d %v", m.status, m.doc, wr.status, wr.doc)
	}
	md, wd := m.doc["Document"].(map[string]any), wr.doc["Document"].(map[string]any)
	for k := range md {
		if _, ok := wd[k]; !ok {
			t.Errorf("DescribeDocument: the world lacks %s that moto returns (%v)", k, md[k])
		}
	}
	for _, k := range []string{"Name", "Owner", "Status", "DocumentVersion", "Description", "Parameters", "DocumentType", "SchemaVersion",
		"LatestVersion", "DefaultVersion", "DocumentFormat", "HashType", "Hash"} {
		mj, _ := json.Marshal(md[k])
		wj, _ := json.Marshal(wd[k])
		if !bytes.Equal(mj, wj) {
			t.Errorf("DescribeDocument %s: moto %s, world %s", k, mj, wj)
		}
	}

	for _, c := range []struct {
		action string
		body   map[string]any
	}{
		{"DescribeDocument", map[string]any{"Name": "no-such-document"}},
		{"GetDocument", map[string]any{"Name": "no-such-document"}},
		{"ListDocuments", map[string]any{"Filters": []any{map[string]any{"Key": "Owner", "Values": []string{"Self", "Amazon"}}}}},
	} {
		m, wr := ssmCall(t, moto, c.action, c.body), ssmCall(t, w.url, c.action, c.body)
		if m.status != wr.status || m.code != wr.code || m.message() != wr.message() {
			t.Errorf("%s %v: moto %d %s %q, world %d %s %q", c.action, c.body, m.status, m.code, m.message(), wr.status, wr.code, wr.message())
		}
	}

	// Owner Self lists the account's document in both.
	self := map[string]any{"Filters": []any{map[string]any{"Key": "Owner", "Values": []string{"Self"}}}}
	names := func(r ssmReply) []string {
		var out []string
		for _, d := range r.doc["DocumentIdentifiers"].([]any) {
			out = append(out, d.(map[string]any)["Name"].(string))
		}
		return out
	}
	if got := names(ssmCall(t, moto, "ListDocuments", self)); !slices.Contains(got, name) {
		t.Errorf("moto Owner=Self: %v", got)
	}
	if got := names(ssmCall(t, w.url, "ListDocuments", self)); !slices.Contains(got, name) || slices.Contains(got, "AWS-RunShellScript") {
		t.Errorf("world Owner=Self: %v", got)
	}
}

// tether's mount document (the repository's template.yaml, as the world
// holds it: three steps, ENV_VAR parameters) is accepted by moto's
// CreateDocument and described alike. moto runs no steps (its invocations
// have one aws:runShellScript plugin, moto/ssm/models.py), so the steps'
// results are checked against amazon-ssm-agent's source instead
// (steps_test.go).
func TestRepositoryDocumentMatchesMoto(t *testing.T) {
	moto := motoserver.Start(t)
	w := newRepoWorld(t)
	name := w.docs["MountDocument"]
	w.srv.mu.Lock()
	content := w.srv.documents[name].raw
	w.srv.mu.Unlock()
	if r := ssmCall(t, moto, "CreateDocument", map[string]any{"Name": name, "Content": content, "DocumentType": "Command", "DocumentFormat": "JSON"}); r.status != 200 {
		t.Fatalf("moto CreateDocument: %d %v", r.status, r.doc)
	}
	m, wr := ssmCall(t, moto, "DescribeDocument", map[string]any{"Name": name}), ssmCall(t, w.url, "DescribeDocument", map[string]any{"Name": name})
	if m.status != 200 || wr.status != 200 {
		t.Fatalf("DescribeDocument: moto %d %v, world %d %v", m.status, m.doc, wr.status, wr.doc)
	}
	md, wd := m.doc["Document"].(map[string]any), wr.doc["Document"].(map[string]any)
	for _, k := range []string{"Name", "Description", "Parameters", "DocumentType", "SchemaVersion", "DocumentFormat", "HashType", "Hash"} {
		mj, _ := json.Marshal(md[k])
		wj, _ := json.Marshal(wd[k])
		if !bytes.Equal(mj, wj) {
			t.Errorf("DescribeDocument %s: moto %s, world %s", k, mj, wj)
		}
	}
	mg, wg := ssmCall(t, moto, "GetDocument", map[string]any{"Name": name}), ssmCall(t, w.url, "GetDocument", map[string]any{"Name": name})
	if mg.doc["Content"] != wg.doc["Content"] || wg.doc["Content"] != content {
		t.Errorf("GetDocument content: moto %v, world %v", mg.doc["Content"], wg.doc["Content"])
	}
}
