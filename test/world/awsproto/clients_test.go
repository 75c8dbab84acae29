package awsproto_test

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/cfnsim"
	"github.com/tether-ecs/tether/test/world/ec2sim"
	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/motoserver"
	"github.com/tether-ecs/tether/test/world/ssmsim"
)

// These tests send requests AWS refuses through the real clients (the aws
// CLI and aws-sdk-go-v2) to a Router serving the world's simulators, and
// check that each is refused with AWS's code before its simulator sees it.

// endpoint is the world's services on one Router behind an HTTP server.
func endpoint(t *testing.T) (string, *awsproto.Router) {
	t.Helper()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	r := awsproto.NewRouter()
	e, err := ec2sim.New(ec2sim.Config{Dir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e.Register(r)
	ecsSrv := ecssim.New(ecssim.Options{Logger: log})
	ecsSrv.Register(r)
	ssmSrv := ssmsim.New(ssmsim.Config{Logger: log})
	ssmSrv.Register(r)
	bus := eventbus.New(eventbus.Options{Logger: log})
	bus.RegisterSQS(r)
	cfnsim.New(cfnsim.Config{Logger: log}).Register(r)
	hs := httptest.NewServer(r)
	t.Cleanup(func() {
		hs.Close()
		_ = e.Close()
		_ = ecsSrv.Close()
		ssmSrv.Close()
		_ = bus.Close()
	})
	return hs.URL, r
}

type clients struct {
	ec2 *ec2.Client
	ecs *ecs.Client
	ssm *ssm.Client
	sqs *sqs.Client
	cfn *cloudformation.Client
}

func clientsFor(url string) clients {
	cfg := aws.Config{Region: "us-west-2", BaseEndpoint: aws.String(url), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")}
	return clients{ec2: ec2.NewFromConfig(cfg), ecs: ecs.NewFromConfig(cfg), ssm: ssm.NewFromConfig(cfg),
		sqs: sqs.NewFromConfig(cfg), cfn: cloudformation.NewFromConfig(cfg)}
}

// serverSide removes the SDK's own check of required members, so the
// request reaches the service as a client that does not check would send
// it (the aws CLI with parameter_validation = false, another SDK).
func serverSide(s *middleware.Stack) error {
	_, err := s.Initialize.Remove("OperationInputValidation")
	return err
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return fmt.Sprintf("HTTP %d", re.HTTPStatusCode())
	}
	if err != nil {
		return "not an API error: " + err.Error()
	}
	return ""
}

// sdkCase is one refused request through aws-sdk-go-v2.
type sdkCase struct {
	name    string
	call    func(ctx context.Context, c clients) error
	code    string // the world's answer, AWS's
	message string // part of the world's message
	// moto is moto's code for the same request ("" accepted). Where it is
	// not AWS's, why says why the world does not follow moto.
	moto, why string
}

var comment101 = strings.Repeat("c", 101)

var sdkCases = []sdkCase{
	{name: "ssm comment over 100", code: "ValidationException",
		message: "at 'comment' failed to satisfy constraint: Member must have length less than or equal to 100",
		moto:    "", why: "moto does not check Comment's length (botocore: max 100) and sends the command",
		call: func(ctx context.Context, c clients) error {
			_, err := c.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunShellScript"),
				InstanceIds: []string{"i-0123456789abcdef0"}, Comment: aws.String(comment101), Parameters: map[string][]string{"commands": {"ls"}}})
			return err
		}},
	{name: "ssm max results over 50", code: "ValidationException",
		message: "Value '51' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 50",
		moto:    "", why: "moto does not check MaxResults' range (botocore: 1 to 50)",
		call: func(ctx context.Context, c clients) error {
			_, err := c.ssm.ListCommands(ctx, &ssm.ListCommandsInput{MaxResults: aws.Int32(51)})
			return err
		}},
	{name: "ec2 attach without device", code: "MissingParameter", message: "The request must contain the parameter Device",
		moto: "InvalidVolume.NotFound", why: "moto does not check required members; it looks the volume up first",
		call: func(ctx context.Context, c clients) error {
			_, err := c.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String("vol-0123456789abcdef0"),
				InstanceId: aws.String("i-0123456789abcdef0")}, func(o *ec2.Options) { o.APIOptions = append(o.APIOptions, serverSide) })
			return err
		}},
	{name: "ec2 unknown volume type", code: "InvalidParameterValue", message: "Value (gp9) for parameter volumeType is invalid",
		moto: "", why: "moto creates a gp9 volume",
		call: func(ctx context.Context, c clients) error {
			_, err := c.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-west-2a"), Size: aws.Int32(1),
				VolumeType: ec2types.VolumeType("gp9")})
			return err
		}},
	{name: "ecs unknown desired status", code: "ClientException",
		message: "Value 'DONE' at 'desiredStatus' failed to satisfy constraint: Member must satisfy enum value set: [RUNNING, PENDING, STOPPED]",
		moto:    "ClusterNotFoundException", why: "moto does not check enums; it looks the (default) cluster up first",
		call: func(ctx context.Context, c clients) error {
			_, err := c.ecs.ListTasks(ctx, &ecs.ListTasksInput{DesiredStatus: ecstypes.DesiredStatus("DONE")})
			return err
		}},
	{name: "sqs message without a body", code: "MissingParameter", message: "The request must contain the parameter MessageBody.",
		moto: "AWS.SimpleQueueService.NonExistentQueue", why: "moto looks the queue up before the body",
		call: func(ctx context.Context, c clients) error {
			_, err := c.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String("http://localhost/123456789012/q")},
				func(o *sqs.Options) { o.APIOptions = append(o.APIOptions, serverSide) })
			return err
		}},
	{name: "cloudformation next token over 1024", code: "ValidationError",
		message: "at 'nextToken' failed to satisfy constraint: Member must have length less than or equal to 1024",
		moto:    "HTTP 500", why: "moto does not check NextToken's length (botocore: max 1024) and fails on the token",
		call: func(ctx context.Context, c clients) error {
			_, err := c.cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{NextToken: aws.String(strings.Repeat("t", 1025))})
			return err
		}},
}

func TestRefusedThroughTheSDK(t *testing.T) {
	url, router := endpoint(t)
	c := clientsFor(url)
	ctx := context.Background()
	for _, tc := range sdkCases {
		err := tc.call(ctx, c)
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != tc.code || !strings.Contains(ae.ErrorMessage(), tc.message) {
			t.Errorf("%s: %v; want %s containing %q", tc.name, err, tc.code, tc.message)
		}
	}
	refused := 0
	for _, call := range router.Journal() {
		if call.Refused {
			refused++
		} else {
			t.Errorf("%s:%s reached its simulator (answered %q)", call.Service, call.Action, call.ErrorCode)
		}
	}
	if refused != len(sdkCases) {
		t.Errorf("the journal shows %d refusals, want %d", refused, len(sdkCases))
	}
}

// TestRefusalsAgainstMoto sends the same requests to moto: where moto
// answers differently, the case says why AWS's answer (the world's) wins.
func TestRefusalsAgainstMoto(t *testing.T) {
	c := clientsFor(motoserver.Start(t))
	ctx := context.Background()
	for _, tc := range sdkCases {
		got := errorCode(tc.call(ctx, c))
		if got != tc.moto {
			t.Errorf("%s: moto answers %q, the table says %q", tc.name, got, tc.moto)
		}
		if got != tc.code && tc.why == "" {
			t.Errorf("%s: moto answers %q, the world %q, and the table does not say why", tc.name, got, tc.code)
		}
	}
}

// runCLI runs one aws CLI command line against url; extraConfig is added
// to the CLI's config file ([default] section).
func runCLI(t *testing.T, url, extraConfig, line string) (string, error) {
	t.Helper()
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, "config"), []byte("[default]\nregion = us-west-2\n"+extraConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", line)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=secret", "AWS_ENDPOINT_URL=" + url,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_MAX_ATTEMPTS=1"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestRefusedThroughTheAWSCLI(t *testing.T) {
	testenv.RequireCommands(t, "aws", "bash")
	url, router := endpoint(t)
	// Required members are checked by the CLI itself unless told not to.
	noClientCheck := "parameter_validation = false\n"
	cases := []struct {
		name, config, line string
		code, message      string
		refused            bool // by the model (else by the simulator)
	}{
		{name: "ssm send-command comment over 100",
			line:    `aws ssm send-command --document-name AWS-RunShellScript --instance-ids i-0123456789abcdef0 --parameters commands=ls --comment ` + comment101,
			code:    "ValidationException",
			message: "1 validation error detected: Value '" + comment101 + "' at 'comment' failed to satisfy constraint: Member must have length less than or equal to 100",
			refused: true},
		{name: "ec2 attach-volume without a device", config: noClientCheck,
			line: `aws ec2 attach-volume --cli-input-json '{"VolumeId":"vol-0123456789abcdef0","InstanceId":"i-0123456789abcdef0"}'`,
			code: "MissingParameter", message: "The request must contain the parameter Device", refused: true},
		{name: "ec2 create-volume of an unknown type",
			line: `aws ec2 create-volume --availability-zone us-west-2a --size 1 --volume-type gp9`,
			code: "InvalidParameterValue", message: "Value (gp9) for parameter volumeType is invalid", refused: true},
		{name: "ecs list-tasks of an unknown status",
			line: `aws ecs list-tasks --desired-status DONE`, code: "ClientException",
			message: "Member must satisfy enum value set: [RUNNING, PENDING, STOPPED]", refused: true},
		// ECS's 1-to-100 limit is not in its model: ecssim answers it, as
		// ECS does, with InvalidParameterException.
		{name: "ecs list-tasks over 100",
			line: `aws ecs list-tasks --cluster default --max-results 101`, code: "InvalidParameterException", message: "maxResults", refused: false},
		// CLI v1 points SQS at its legacy endpoint unless --endpoint-url is
		// given (awscli/customizations/overridesslcommonname.py ignores
		// AWS_ENDPOINT_URL).
		{name: "sqs send-message without a body", config: noClientCheck,
			line: `aws sqs send-message --endpoint-url "$AWS_ENDPOINT_URL" --cli-input-json '{"QueueUrl":"` + url + `/123456789012/q"}'`,
			code: "MissingParameter", message: "The request must contain the parameter MessageBody.", refused: true},
		{name: "cloudformation describe-stacks with a long token",
			line: `aws cloudformation describe-stacks --next-token ` + strings.Repeat("t", 1025), code: "ValidationError",
			message: "Member must have length less than or equal to 1024", refused: true},
	}
	if out, err := runCLI(t, url, "", `aws ecs create-cluster --cluster-name default`); err != nil {
		t.Fatalf("create-cluster: %v\n%s", err, out)
	}
	for _, c := range cases {
		before := len(router.Journal())
		out, err := runCLI(t, url, c.config, c.line)
		want := "An error occurred (" + c.code + ")"
		if err == nil || !strings.Contains(out, want) || !strings.Contains(out, c.message) {
			t.Errorf("%s: %v\n%s\nwant %s and %q", c.name, err, out, want, c.message)
			continue
		}
		calls := router.Journal()[before:]
		if len(calls) != 1 || calls[0].ErrorCode != c.code || calls[0].Refused != c.refused {
			t.Errorf("%s: journal %+v, want one call answered %s (refused by the model: %v)", c.name, calls, c.code, c.refused)
		}
	}
}
