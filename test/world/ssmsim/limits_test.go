package ssmsim

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/latency"
)

// Every action this SSM answers draws from a bucket, and a new server
// applies DefaultLimits.
func TestEveryActionHasABucket(t *testing.T) {
	s := New(Config{})
	defer s.Close()
	limits, inForce := DefaultLimits(), s.Gate().Limits()
	for action := range s.handlers {
		if b, ok := limits[action]; !ok || b.Size <= 0 || b.Refill <= 0 {
			t.Errorf("%s: bucket %+v", action, b)
		}
		if inForce[action] != limits[action] {
			t.Errorf("%s: %+v in force, want %+v", action, inForce[action], limits[action])
		}
	}
	if len(limits) != len(s.handlers) {
		t.Errorf("%d buckets for %d actions", len(limits), len(s.handlers))
	}
}

// Past its bucket a call answers ThrottlingException with HTTP 400, which
// aws-sdk-go-v2 classifies as a throttle.
func TestThrottlingIsAThrottleToTheSDK(t *testing.T) {
	w := newWorld(t, latency.Instant())
	w.srv.SetThrottling(true)
	w.srv.Gate().SetLimit("ListDocuments", awsproto.Bucket{Size: 2, Refill: 0})
	one := ssm.New(w.ssm.Options(), func(o *ssm.Options) { o.RetryMaxAttempts = 1 })
	for i := range 2 {
		if _, err := one.ListDocuments(context.Background(), &ssm.ListDocumentsInput{}); err != nil {
			t.Fatalf("call %d within the bucket: %v", i, err)
		}
	}
	_, err := one.ListDocuments(context.Background(), &ssm.ListDocumentsInput{})
	var re *awshttp.ResponseError
	if code(t, err) != "ThrottlingException" || !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusBadRequest {
		t.Fatalf("past the bucket: %v", err)
	}
	if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) != aws.TrueTernary {
		t.Errorf("aws-sdk-go-v2 does not see a throttle in %v", err)
	}
}
