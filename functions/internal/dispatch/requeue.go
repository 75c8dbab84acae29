package dispatch

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/tether-ecs/tether/functions/internal/eventsrc"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// SQSSender is the one SQS call the requeuer makes; *sqs.Client satisfies it.
type SQSSender interface {
	SendMessage(ctx context.Context, params *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

var _ SQSSender = (*sqs.Client)(nil)

// SQSRequeuer hands keys back as tether retry messages on the retry queue,
// delayed by SQS itself (DelaySeconds), so no Lambda waits.
type SQSRequeuer struct {
	client   SQSSender
	queueURL string
}

var _ Requeuer = (*SQSRequeuer)(nil)

// NewSQSRequeuer sends to the queue at queueURL (TETHER_RETRY_QUEUE_URL).
func NewSQSRequeuer(client SQSSender, queueURL string) (*SQSRequeuer, error) {
	u, err := url.Parse(queueURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("invalid retry queue URL %q: want http(s)://host/account/queue", queueURL)
	}
	return &SQSRequeuer{client: client, queueURL: queueURL}, nil
}

// MaxDelay is SQS's longest message delay.
const MaxDelay = 900 * time.Second

// DelaySeconds turns a retry-after into SQS's DelaySeconds: whole seconds,
// rounded up, at least 1 and at most 900 (a longer wait just takes another
// pass that finds the key still waiting).
func DelaySeconds(after time.Duration) int32 {
	switch {
	case after <= time.Second:
		return 1
	case after >= MaxDelay:
		return int32(MaxDelay / time.Second)
	}
	return int32((after + time.Second - 1) / time.Second)
}

// Requeue sends {"tether":"retry","key":…,"hint":…} with the delay.
func (q *SQSRequeuer) Requeue(ctx context.Context, key reconcile.Key, hint string, after time.Duration) error {
	body, err := eventsrc.EncodeRetry(key, hint)
	if err != nil && hint != "" {
		// A hint is only an optimisation: a key without one still converges.
		body, err = eventsrc.EncodeRetry(key, "")
	}
	if err != nil {
		return fmt.Errorf("requeue %s/%s: %w", key.Cluster, key.Volume, err)
	}
	_, err = q.client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:     aws.String(q.queueURL),
		MessageBody:  aws.String(string(body)),
		DelaySeconds: DelaySeconds(after),
	})
	if err != nil {
		return fmt.Errorf("requeue %s/%s: send to retry queue: %w", key.Cluster, key.Volume, err)
	}
	return nil
}
