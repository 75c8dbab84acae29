// Package boot is what tether's three Lambda mains share: the configuration
// from the environment (docs/contracts.md), JSON logs on stdout, the AWS
// configuration (config.LoadDefaultConfig, so AWS_ENDPOINT_URL points every
// client at the local world), the reconciler core, the retry queue and the
// dispatcher, then lambda.Start. A main is one call to Main.
package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/tether-ecs/tether/functions/internal/dispatch"
	"github.com/tether-ecs/tether/functions/internal/eventsrc"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// Environment the function layer reads (the core reads its own, see
// reconcile.NewFromEnv).
const (
	EnvCluster       = "TETHER_CLUSTER"
	EnvRetryQueueURL = "TETHER_RETRY_QUEUE_URL"
	EnvLogLevel      = "TETHER_LOG_LEVEL"   // optional: debug, info (default), warn, error
	EnvConcurrency   = "TETHER_CONCURRENCY" // optional: keys reconciled at once per invocation (default 8)
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

// NewCore builds the reconciler core from the environment; logs and metrics
// are where it writes JSON logs and EMF lines.
type NewCore func(ctx context.Context, getenv func(string) string, logs, metrics io.Writer) (dispatch.Reconciler, error)

// Setup builds the dispatcher a function serves with.
func Setup(ctx context.Context, function string, getenv func(string) string, stdout io.Writer, newCore NewCore) (*dispatch.Dispatcher, error) {
	env, err := LoadEnv(getenv)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: env.LogLevel})).With("function", function)
	decoder, err := eventsrc.NewDecoder(env.Cluster)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvCluster, err)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	requeue, err := dispatch.NewSQSRequeuer(sqs.NewFromConfig(awsCfg), env.RetryQueueURL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvRetryQueueURL, err)
	}
	core, err := newCore(ctx, getenv, stdout, stdout)
	if err != nil {
		return nil, err
	}
	return dispatch.New(decoder, core, requeue, log, dispatch.Config{Concurrency: env.Concurrency}), nil
}

// Input is what invokes a function.
type Input int

const (
	// SQSBatch: an SQS event source mapping with ReportBatchItemFailures.
	SQSBatch Input = iota
	// DirectEvent: an EventBridge rule targeting the function (the schedule).
	DirectEvent
)

// CoreFromEnv is the real core: reconcile.NewFromEnv.
func CoreFromEnv(ctx context.Context, getenv func(string) string, logs, metrics io.Writer) (dispatch.Reconciler, error) {
	core, err := reconcile.NewFromEnv(ctx, getenv, logs, metrics)
	if err != nil {
		return nil, err
	}
	return core, nil
}

// Main sets the function up and serves invocations until the runtime ends
// it. It returns only on a setup error: the main exits with its result, so
// Lambda reports the init failure with the message on stderr.
func Main(function string, in Input) int {
	d, err := Setup(context.Background(), function, os.Getenv, os.Stdout, CoreFromEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tether %s: configuration: %v\n", function, err)
		return 1
	}
	switch in {
	case SQSBatch:
		lambda.Start(d.HandleSQS)
	case DirectEvent:
		lambda.Start(d.HandleEvent)
	default:
		fmt.Fprintf(os.Stderr, "tether %s: unknown input kind %d\n", function, in)
		return 1
	}
	return 0
}
