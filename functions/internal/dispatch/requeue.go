package dispatch

import (
	"context"
	"fmt"
	"net/url"
	"slices"
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

var _ BundleRequeuer = (*SQSRequeuer)(nil)

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

// RequeueBundle sends items as one message (eventsrc.EncodeRetries) with
// the delay; a hint that cannot be sent is dropped, as Requeue drops it.
func (q *SQSRequeuer) RequeueBundle(ctx context.Context, items []reconcile.Retry, after time.Duration) error {
	items = slices.Clone(items)
	for i, it := range items {
		if _, err := eventsrc.EncodeRetry(it.Key, it.Hint); err != nil && it.Hint != "" {
			items[i].Hint = ""
		}
	}
	body, err := eventsrc.EncodeRetries(items)
	if err != nil {
		return fmt.Errorf("requeue %d keys: %w", len(items), err)
	}
	_, err = q.client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:     aws.String(q.queueURL),
		MessageBody:  aws.String(string(body)),
		DelaySeconds: DelaySeconds(after),
	})
	if err != nil {
		return fmt.Errorf("requeue %d keys: send to retry queue: %w", len(items), err)
	}
	return nil
}

// handBack is a key a pass handed back, with its hint and its delay in
// whole seconds (SQS's unit): keys of one delay share messages.
type handBack struct {
	key   reconcile.Key
	hint  string
	delay int32
}

// sendBundles sends hbs in messages of up to eventsrc.MaxBundle keys of
// one delay each; every key's answer is its message's error.
func sendBundles(ctx context.Context, q BundleRequeuer, hbs []handBack) map[handBack]error {
	byDelay := map[int32][]handBack{}
	var delays []int32
	for _, hb := range hbs {
		if byDelay[hb.delay] == nil {
			delays = append(delays, hb.delay)
		}
		byDelay[hb.delay] = append(byDelay[hb.delay], hb)
	}
	out := make(map[handBack]error, len(hbs))
	for _, delay := range delays {
		for chunk := range slices.Chunk(byDelay[delay], eventsrc.MaxBundle) {
			items := make([]reconcile.Retry, len(chunk))
			for i, hb := range chunk {
				items[i] = reconcile.Retry{Key: hb.key, Hint: hb.hint}
			}
			var err error
			if len(items) == 1 {
				err = q.Requeue(ctx, items[0].Key, items[0].Hint, time.Duration(delay)*time.Second)
			} else {
				err = q.RequeueBundle(ctx, items, time.Duration(delay)*time.Second)
			}
			for _, hb := range chunk {
				out[hb] = err
			}
		}
	}
	return out
}
