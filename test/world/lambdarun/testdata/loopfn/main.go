// Command loopfn is an SQS-triggered Lambda function for lambdarun's tests
// of Lambda's recursive loop detection: it sends each record on to the
// queue LOOP_QUEUE_URL with a plain aws-sdk-go-v2 client (no tether code),
// so the chain's lineage travels only as the SDK carries the invocation's
// trace. A body "n/limit" goes back as "n+1/limit" while n < limit.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

func main() {
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "loopfn:", err)
		os.Exit(1)
	}
	client, queue := sqs.NewFromConfig(cfg), os.Getenv("LOOP_QUEUE_URL")
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	lambda.Start(func(ctx context.Context, ev events.SQSEvent) error {
		for _, r := range ev.Records {
			var n, limit int
			if _, err := fmt.Sscanf(r.Body, "%d/%d", &n, &limit); err != nil {
				return fmt.Errorf("body %q: %w", r.Body, err)
			}
			log.Info("record", "body", r.Body, "trace", os.Getenv("_X_AMZN_TRACE_ID"), "messageTrace", r.Attributes["AWSTraceHeader"])
			if n >= limit {
				continue
			}
			if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{
				QueueUrl: aws.String(queue), MessageBody: aws.String(fmt.Sprintf("%d/%d", n+1, limit)),
			}); err != nil {
				return err
			}
		}
		return nil
	})
}
