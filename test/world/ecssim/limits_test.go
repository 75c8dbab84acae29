package ecssim_test

import (
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/ecssim"
)

// A server made without Limits applies ECS's own buckets.
func TestDefaultLimitsAreOn(t *testing.T) {
	srv := ecssim.New(ecssim.Options{})
	defer srv.Close()
	got, want := srv.Gate().Limits(), ecssim.DefaultLimits()
	if len(got) != len(want) {
		t.Fatalf("%d buckets in force, want %d", len(got), len(want))
	}
	for action, b := range want {
		if got[action] != b {
			t.Errorf("%s: %+v in force, want %+v", action, got[action], b)
		}
	}
	if b := want["RegisterTaskDefinition"]; b.Size != 20 || b.Refill != 1 {
		t.Errorf("RegisterTaskDefinition %+v, want the documented 20 burst / 1 per s", b)
	}
}

// Past its bucket DescribeTasks answers ThrottlingException with HTTP 400,
// which aws-sdk-go-v2 classifies as a throttle and retries; the burst is
// the bucket's size and the refill its rate, whatever the speed of the
// caller.
func TestDescribeTasksThrottledPastItsBucket(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	w.cluster(t)
	w.srv.SetThrottling(true)
	ctx := ctxT(t)
	bucket := ecssim.DefaultLimits()["DescribeTasks"]
	in := &ecs.DescribeTasksInput{Cluster: aws.String(testCluster), Tasks: []string{"0123456789abcdef0123456789abcdef"}}
	start := time.Now()
	admitted := 0
	var err error
	for range 1000 {
		if _, err = w.ecs.DescribeTasks(ctx, in); err != nil {
			break
		}
		admitted++
	}
	elapsed := time.Since(start).Seconds()
	if err == nil {
		t.Fatalf("1000 DescribeTasks in %.1fs, none throttled", elapsed)
	}
	if max := int(bucket.Size + bucket.Refill*elapsed + 1); admitted < int(bucket.Size) || admitted > max {
		t.Errorf("%d calls admitted in %.2fs before the first throttle, want %v..%d", admitted, elapsed, bucket.Size, max)
	}
	if apiCode(err) != "ThrottlingException" || !strings.Contains(err.Error(), "Rate exceeded") {
		t.Errorf("over the limit: %v", err)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusBadRequest {
		t.Errorf("HTTP status of the throttle: %v", err)
	}
	if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) != aws.TrueTernary {
		t.Errorf("aws-sdk-go-v2 does not see a throttle in %v", err)
	}
	if c := w.srv.Counts(); c.Throttled["DescribeTasks"] != 1 || c.Calls["DescribeTasks"] != admitted+1 {
		t.Errorf("counts: %d throttled of %d calls, want 1 of %d", c.Throttled["DescribeTasks"], c.Calls["DescribeTasks"], admitted+1)
	}

	// The standard retryer waits for the bucket to refill.
	patient := ecs.New(ecs.Options{BaseEndpoint: aws.String(w.url), Region: "us-west-2",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDWORLD", "secret", ""),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 10
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 100 * time.Millisecond, nil })
		})})
	if _, err := patient.DescribeTasks(ctx, in); err != nil {
		t.Errorf("with retries: %v", err)
	}
}

// The aws CLI reports an empty bucket as ECS's guide shows it: "An error
// occurred (ThrottlingException) when calling the DescribeClusters
// operation (reached max retries: 4): Rate exceeded."
func TestThrottlingSeenByTheAWSCLI(t *testing.T) {
	w := newWorld(t, ecssim.Timing{})
	w.cluster(t)
	c := newCLI(t, w.url)
	w.srv.SetThrottling(true)
	w.srv.Gate().SetLimit("DescribeClusters", awsproto.Bucket{Size: 0, Refill: 0})
	cmd := exec.Command("aws", "ecs", "describe-clusters", "--clusters", testCluster, "--endpoint-url", c.url, "--region", "us-west-2")
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("describe-clusters succeeded with an empty bucket: %s", out)
	}
	if !strings.Contains(string(out), "An error occurred (ThrottlingException) when calling the DescribeClusters operation (reached max retries: 4): Rate exceeded") {
		t.Errorf("aws CLI said: %s", out)
	}
	if n := w.srv.Counts().Throttled["DescribeClusters"]; n != 5 {
		t.Errorf("%d throttled calls, want the CLI's 1 + 4 retries", n)
	}
}
