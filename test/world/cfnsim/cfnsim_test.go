package cfnsim

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/awsproto"
)

func start(t *testing.T) (*Server, string) {
	t.Helper()
	s := New(Config{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	r := awsproto.NewRouter()
	s.Register(r)
	hs := httptest.NewServer(r)
	t.Cleanup(hs.Close)
	return s, hs.URL
}

func TestDescribeStacksWithSDK(t *testing.T) {
	s, url := start(t)
	id := s.AddStack("rexray-demo", map[string]string{"ECSClusterName": "rexray-cluster", "AvailabilityZone": "us-west-2a"})
	c := cloudformation.New(cloudformation.Options{Region: "us-west-2", BaseEndpoint: aws.String(url),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")})
	ctx := context.Background()
	for _, name := range []string{"rexray-demo", id} {
		out, err := c.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		st := out.Stacks[0]
		if aws.ToString(st.StackName) != "rexray-demo" || st.StackStatus != cfntypes.StackStatusCreateComplete || len(st.Outputs) != 2 ||
			aws.ToString(st.Outputs[0].OutputKey) != "AvailabilityZone" || aws.ToString(st.Outputs[1].OutputValue) != "rexray-cluster" {
			t.Errorf("by %s: %+v", name, st)
		}
	}
	w := cloudformation.NewStackCreateCompleteWaiter(c)
	if err := w.Wait(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("rexray-demo")}, 10e9); err != nil {
		t.Errorf("StackCreateComplete waiter: %v", err)
	}
	_, err := c.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("nope")})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ValidationError" || ae.ErrorMessage() != "Stack with id nope does not exist" {
		t.Errorf("missing stack: %v", err)
	}
	if _, err := c.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String("rexray-demo")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("rexray-demo")}); !errors.As(err, &ae) || ae.ErrorCode() != "ValidationError" {
		t.Errorf("deleted stack: %v", err)
	}
	if _, err := c.ListStacks(ctx, &cloudformation.ListStacksInput{}); !errors.As(err, &ae) || ae.ErrorCode() != "InvalidAction" {
		t.Errorf("unsupported action: %v", err)
	}
}

// TestSeedGetOutputsWithAWSCLI runs the seed's script with the real aws
// CLI, pointed at the world by AWS_ENDPOINT_URL (the script itself
// passes no --endpoint-url).
func TestSeedGetOutputsWithAWSCLI(t *testing.T) {
	testenv.RequireCommands(t, "aws", "bash", "awk")
	s, url := start(t)
	s.AddStack("rexray-demo", map[string]string{"ECSClusterName": "rexray-cluster", "AvailabilityZone": "us-west-2a",
		"TaskRoleArn": "arn:aws:iam::123456789012:role/rexray-task"})
	dir := t.TempDir()
	script := filepath.Join(dir, "get-outputs.sh")
	getOutputs, err := os.ReadFile("../../demo/seed/get-outputs.sh") // the seed's, verbatim
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, getOutputs, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(script, "rexray-demo", "us-west-2")
	cmd.Dir = dir
	cmd.Env = cliEnv(dir, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("get-outputs.sh: %v\n%s", err, out)
	}
	for _, want := range []string{"#Region: us-west-2", "export AvailabilityZone=us-west-2a", "export ECSClusterName=rexray-cluster",
		"export TaskRoleArn=arn:aws:iam::123456789012:role/rexray-task"} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// A stack that does not exist: describe-stacks fails at once with
	// CloudFormation's message (the stack-exists waiter would retry it).
	cmd = exec.Command("aws", "cloudformation", "describe-stacks", "--region", "us-west-2", "--stack-name", "nope")
	cmd.Env = cliEnv(dir, url)
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "ValidationError") || !strings.Contains(string(out), "Stack with id nope does not exist") {
		t.Errorf("describe-stacks of a missing stack: %v\n%s", err, out)
	}
}

func cliEnv(home, url string) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "AWS_ACCESS_KEY_ID=AKIDEXAMPLE",
		"AWS_SECRET_ACCESS_KEY=secret", "AWS_ENDPOINT_URL=" + url, "AWS_CONFIG_FILE=" + filepath.Join(home, "config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"), "AWS_EC2_METADATA_DISABLED=true"}
}
