// Package boot is what tether's Lambda mains share: the configuration
// from the environment (docs/contracts.md), JSON logs on stdout, the AWS
// configuration (config.LoadDefaultConfig, so AWS_ENDPOINT_URL points every
// client at the local world), the reconciler core, the retry queue and the
// dispatcher, then lambda.Start. A main is one call to Main.
//
// Handler builds the same handler without lambda.Start, for the local AWS
// world to run the functions in-process (it is outside functions/internal so
// test/ may import it).
package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/tether-ecs/tether/functions/internal/dispatch"
	"github.com/tether-ecs/tether/functions/internal/eventsrc"
	"github.com/tether-ecs/tether/functions/internal/hosts"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// Environment the function layer reads (the core reads its own, see
// reconcile.NewFromEnv).
const (
	EnvCluster       = "TETHER_CLUSTER"
	EnvRetryQueueURL = "TETHER_RETRY_QUEUE_URL"
	EnvLogLevel      = "TETHER_LOG_LEVEL"   // optional: debug, info (default), warn, error
	EnvConcurrency   = "TETHER_CONCURRENCY" // optional: keys reconciled at once per invocation (default 16)
)

// Env is the function layer's configuration.
type Env struct {
	Cluster       string
	RetryQueueURL string
	LogLevel      slog.Level
	Concurrency   int
}

// LoadEnv reads and checks the environment; every problem is named.
func LoadEnv(getenv func(string) string) (Env, error) {
	var errs []error
	env := Env{Cluster: getenv(EnvCluster), RetryQueueURL: getenv(EnvRetryQueueURL)}
	if env.Cluster == "" {
		errs = append(errs, fmt.Errorf("%s is not set (the ECS cluster name)", EnvCluster))
	}
	if env.RetryQueueURL == "" {
		errs = append(errs, fmt.Errorf("%s is not set (the retry queue's URL)", EnvRetryQueueURL))
	}
	switch v := strings.ToLower(getenv(EnvLogLevel)); v {
	case "", "info":
		env.LogLevel = slog.LevelInfo
	case "debug":
		env.LogLevel = slog.LevelDebug
	case "warn":
		env.LogLevel = slog.LevelWarn
	case "error":
		env.LogLevel = slog.LevelError
	default:
		errs = append(errs, fmt.Errorf("%s=%q: want debug, info, warn or error", EnvLogLevel, v))
	}
	if v := getenv(EnvConcurrency); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 64 {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number from 1 to 64", EnvConcurrency, v))
		}
		env.Concurrency = n
	}
	return env, errors.Join(errs...)
}

// NewCore builds the reconciler core from the environment and the AWS
// configuration; logs and metrics are where it writes JSON logs and EMF lines.
type NewCore func(ctx context.Context, getenv func(string) string, awsCfg aws.Config, logs, metrics io.Writer) (dispatch.Reconciler, error)

// Setup builds the dispatcher a function serves with; every AWS client uses
// awsCfg, with PropagateTrace added.
func Setup(ctx context.Context, function string, getenv func(string) string, awsCfg aws.Config, stdout io.Writer, newCore NewCore) (*dispatch.Dispatcher, error) {
	env, err := LoadEnv(getenv)
	if err != nil {
		return nil, err
	}
	awsCfg.APIOptions = append(slices.Clip(awsCfg.APIOptions), PropagateTrace)
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: env.LogLevel})).With("function", function)
	decoder, err := eventsrc.NewDecoder(env.Cluster)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvCluster, err)
	}
	requeue, err := dispatch.NewSQSRequeuer(sqs.NewFromConfig(awsCfg), env.RetryQueueURL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvRetryQueueURL, err)
	}
	core, err := newCore(ctx, getenv, awsCfg, stdout, stdout)
	if err != nil {
		return nil, err
	}
	return dispatch.New(decoder, core, requeue, log, dispatch.Config{Concurrency: env.Concurrency}), nil
}

// TraceHeader is the HTTP header that carries the invocation's X-Ray trace
// to AWS APIs.
const TraceHeader = "X-Amzn-Trace-Id"

// lambdaTraceKey is where aws-lambda-go's runtime loop puts the invocation's
// trace header in the handler's context (lambda/invoke_loop.go,
// context.WithValue(ctx, "x-amzn-trace-id", ...)); the local world's
// in-process functions get it there too.
const lambdaTraceKey = "x-amzn-trace-id"

// PropagateTrace makes a request sent during an invocation carry the
// invocation's trace header (X-Amzn-Trace-Id). Lambda's recursive loop
// detection follows an event's chain through it (SQS keeps it with each
// message sent as the AWSTraceHeader attribute), so the retry queue's
// messages continue the chain of the event that caused them.
//
// aws-sdk-go-v2 does this itself in a Lambda execution environment
// (aws/middleware.RecursionDetection, on every client: when
// AWS_LAMBDA_FUNCTION_NAME is set it copies _X_AMZN_TRACE_ID, which
// aws-lambda-go sets for each invocation). That variable is process-wide:
// aws-lambda-go leaves it unset when one environment runs invocations
// concurrently, and the local world runs functions in one process. So this
// middleware, placed after the SDK's, fills the header from the context
// when the SDK's did not.
func PropagateTrace(stack *middleware.Stack) error {
	return stack.Build.Add(middleware.BuildMiddlewareFunc("TetherPropagateTrace", func(
		ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler,
	) (middleware.BuildOutput, middleware.Metadata, error) {
		if req, ok := in.Request.(*smithyhttp.Request); ok && req.Header.Get(TraceHeader) == "" {
			if trace, _ := ctx.Value(lambdaTraceKey).(string); trace != "" {
				req.Header.Set(TraceHeader, trace)
			}
		}
		return next.HandleBuild(ctx, in)
	}), middleware.After)
}

// Input is what invokes a function.
type Input int

const (
	// SQSBatch: an SQS event source mapping with ReportBatchItemFailures.
	SQSBatch Input = iota
	// DirectEvent: an EventBridge rule targeting the function (the schedule).
	DirectEvent
)

// Inputs says how each of tether's functions is invoked, by its package
// name under functions/.
var Inputs = map[string]Input{
	"taskstate": SQSBatch,
	"drain":     SQSBatch,
	"sweep":     DirectEvent,
	"hosts":     SQSBatch,
}

// cores builds each function's core where it is not the reconciler alone.
var cores = map[string]NewCore{
	"hosts": hosts.CoreFromEnv, // the host rules around the reconciler
}

// CoreFromEnv is the real core: reconcile.NewFromEnv.
func CoreFromEnv(ctx context.Context, getenv func(string) string, awsCfg aws.Config, logs, metrics io.Writer) (dispatch.Reconciler, error) {
	core, err := reconcile.NewFromEnv(ctx, getenv, awsCfg, logs, metrics)
	if err != nil {
		return nil, err
	}
	return core, nil
}

// Handler builds function's Lambda handler (a func lambda.Start accepts):
// the environment from getenv, every AWS client on awsCfg, logs and EMF to
// out. function is the package name under functions/ (see Inputs).
func Handler(ctx context.Context, function string, getenv func(string) string, awsCfg aws.Config, out io.Writer) (any, error) {
	in, ok := Inputs[function]
	if !ok {
		return nil, fmt.Errorf("unknown function %q (want taskstate, drain, sweep or hosts)", function)
	}
	newCore := CoreFromEnv
	if c, ok := cores[function]; ok {
		newCore = c
	}
	d, err := Setup(ctx, function, getenv, awsCfg, out, newCore)
	if err != nil {
		return nil, err
	}
	if in == DirectEvent {
		return d.HandleEvent, nil
	}
	return d.HandleSQS, nil
}

// Main sets the function up and serves invocations until the runtime ends
// it. It returns only on a setup error: the main exits with its result, so
// Lambda reports the init failure with the message on stderr.
func Main(function string) int {
	ctx := context.Background()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err == nil {
		var h any
		if h, err = Handler(ctx, function, os.Getenv, awsCfg, os.Stdout); err == nil {
			lambda.Start(h)
			return 0
		}
	}
	fmt.Fprintf(os.Stderr, "tether %s: configuration: %v\n", function, err)
	return 1
}
