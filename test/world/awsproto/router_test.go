package awsproto

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestRegisteringWithoutAModelFails(t *testing.T) {
	r := NewRouter()
	ok := func(context.Context, string, []byte) (any, error) { return nil, nil }
	if err := r.AddJSON("kinesis", "Kinesis_20131202", "", "1.1", ok); err == nil {
		t.Error("AddJSON(kinesis) without a model succeeded")
	}
	if err := r.AddJSON("ssm", "AmazonSSMX", "", "1.1", ok); err == nil {
		t.Error("AddJSON(ssm) with a target prefix its model does not have succeeded")
	}
	if err := r.AddJSON("ssm", "AmazonSSM", "", "1.0", ok); err == nil {
		t.Error("AddJSON(ssm) as JSON 1.0 succeeded (its model is 1.1)")
	}
	if err := r.AddQuery("cloudformation", "2011-01-01", "", nil); err == nil {
		t.Error("AddQuery(cloudformation) with the wrong API version succeeded")
	}
	if err := r.AddQuery("ssm", "2014-11-06", "", nil); err == nil {
		t.Error("AddQuery(ssm), a JSON service, succeeded")
	}
	defer func() {
		if recover() == nil {
			t.Error("HandleJSON(kinesis) did not stop the start")
		}
	}()
	r.HandleJSON("kinesis", "Kinesis_20131202", "", "1.1", ok)
}

// routerWith registers SSM, SQS and EC2 handlers that count their calls.
func routerWith(t *testing.T) (*httptest.Server, *Router, map[string]int) {
	t.Helper()
	r := NewRouter()
	calls := map[string]int{}
	r.HandleJSON("ssm", "AmazonSSM", "", "1.1", func(_ context.Context, action string, _ []byte) (any, error) {
		calls["ssm:"+action]++
		return map[string]string{"ok": "yes"}, nil
	})
	r.HandleJSON("sqs", "AmazonSQS", "com.amazonaws.sqs", "1.0", func(_ context.Context, action string, _ []byte) (any, error) {
		calls["sqs:"+action]++
		return struct{}{}, nil
	})
	r.HandleEC2(func(_ context.Context, action string, _ url.Values) (any, error) {
		calls["ec2:"+action]++
		return &struct {
			EC2Metadata
			Return bool `xml:"return"`
		}{Return: true}, nil
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv, r, calls
}

func postJSON(t *testing.T, url, target, version, body string) (*http.Response, map[string]string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("X-Amz-Target", target)
	req.Header.Set("Content-Type", "application/x-amz-json-"+version)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]string{}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp, out
}

func TestRefusedBeforeTheHandler(t *testing.T) {
	srv, r, calls := routerWith(t)

	resp, body := postJSON(t, srv.URL, "AmazonSSM.SendCommand", "1.1", `{"DocumentName":"AWS-RunShellScript","Comment":"`+strings.Repeat("c", 101)+`"}`)
	if resp.StatusCode != 400 || body["__type"] != "ValidationException" ||
		!strings.HasPrefix(body["message"], "1 validation error detected: Value 'ccc") {
		t.Errorf("SendCommand with a 101-character comment: %d %v", resp.StatusCode, body)
	}
	resp, body = postJSON(t, srv.URL, "AmazonSSM.Nope", "1.1", `{}`)
	if resp.StatusCode != 400 || body["__type"] != "UnknownOperationException" {
		t.Errorf("unknown SSM operation: %d %v", resp.StatusCode, body)
	}
	resp, _ = postJSON(t, srv.URL, "AmazonSSM.ListCommands", "1.1", `{"MaxResults":10}`)
	if resp.StatusCode != 200 {
		t.Errorf("valid ListCommands: %d", resp.StatusCode)
	}

	// SQS is query-compatible: the code travels in x-amzn-query-error.
	resp, body = postJSON(t, srv.URL, "AmazonSQS.SendMessage", "1.0", `{"QueueUrl":"http://q/1/q"}`)
	if resp.StatusCode != 400 || body["__type"] != "com.amazonaws.sqs#MissingRequiredParameterException" ||
		resp.Header.Get("X-Amzn-Query-Error") != "MissingParameter;Sender" {
		t.Errorf("SQS SendMessage without a body: %d %v %v", resp.StatusCode, body, resp.Header)
	}

	form := url.Values{"Action": {"AttachVolume"}, "Version": {"2016-11-15"}, "VolumeId": {"vol-1"}, "InstanceId": {"i-1"}}
	resp, err := http.PostForm(srv.URL, form)
	if err != nil {
		t.Fatal(err)
	}
	var ec2err struct {
		Errors []struct{ Code, Message string } `xml:"Errors>Error"`
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := xml.Unmarshal(b, &ec2err); err != nil || resp.StatusCode != 400 || len(ec2err.Errors) != 1 ||
		ec2err.Errors[0].Code != "MissingParameter" || ec2err.Errors[0].Message != "The request must contain the parameter Device" {
		t.Errorf("AttachVolume without Device: %d %s", resp.StatusCode, b)
	}

	if calls["ssm:SendCommand"] != 0 || calls["ssm:Nope"] != 0 || calls["sqs:SendMessage"] != 0 || calls["ec2:AttachVolume"] != 0 {
		t.Errorf("handlers ran for refused requests: %v", calls)
	}
	if calls["ssm:ListCommands"] != 1 {
		t.Errorf("the valid request reached its handler %d times", calls["ssm:ListCommands"])
	}

	var refused []string
	for _, c := range r.Journal() {
		if c.Refused {
			refused = append(refused, c.Service+":"+c.Action+":"+c.ErrorCode)
		} else if c.ErrorCode != "" {
			t.Errorf("journal: %+v answered by the handler with an error", c)
		}
	}
	want := []string{"ssm:SendCommand:ValidationException", "ssm:Nope:UnknownOperationException",
		"sqs:SendMessage:MissingParameter", "ec2:AttachVolume:MissingParameter"}
	if strings.Join(refused, " ") != strings.Join(want, " ") {
		t.Errorf("journal of refusals %v, want %v", refused, want)
	}
}
