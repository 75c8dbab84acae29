// Command sqsfn is a tiny SQS-triggered Lambda function for lambdarun's
// tests: it fails the records whose body starts with "fail" (partial batch
// response), returns a function error for a body "crash", and logs the
// TETHER_CLUSTER it was given. A body "wait:<path>" holds the invocation
// until that file exists (or the invocation's deadline), after creating
// <path>.held to say it is holding.
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var resp events.SQSEventResponse
	for _, r := range ev.Records {
		log.Info("record", "messageId", r.MessageId, "cluster", os.Getenv("TETHER_CLUSTER"), "endpoint", os.Getenv("AWS_ENDPOINT_URL"))
		switch {
		case strings.HasPrefix(r.Body, "wait:"):
			if err := os.WriteFile(strings.TrimPrefix(r.Body, "wait:")+".held", nil, 0o644); err != nil {
				return resp, err
			}
			for {
				if _, err := os.Stat(strings.TrimPrefix(r.Body, "wait:")); err == nil {
					break
				}
				select {
				case <-ctx.Done():
					return resp, ctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
		case r.Body == "crash":
			return resp, errors.New("crash requested")
		case strings.HasPrefix(r.Body, "fail"):
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
		}
	}
	return resp, nil
}

func main() { lambda.Start(handle) }
