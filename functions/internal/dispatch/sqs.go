package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-lambda-go/events"
)

// HandleSQS is the Lambda handler for an SQS event source mapping with
// FunctionResponseTypes: [ReportBatchItemFailures]. It returns an error only
// when it could not look at the batch at all (then Lambda retries all of it).
func (d *Dispatcher) HandleSQS(ctx context.Context, batch events.SQSEvent) (events.SQSEventResponse, error) {
	msgs := make([]*message, 0, len(batch.Records))
	for _, r := range batch.Records {
		log := d.log.With("messageId", r.MessageId)
		if n := r.Attributes["ApproximateReceiveCount"]; n != "" && n != "1" {
			log = log.With("receiveCount", n)
		}
		msgs = append(msgs, &message{id: r.MessageId, body: []byte(r.Body), log: log})
	}
	d.run(ctx, msgs)

	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	for _, m := range msgs {
		if m.verdict == failed {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.id})
		}
	}
	return resp, nil
}

// ErrUnfinished is returned by HandleEvent when the event's work did not
// finish (an error or the deadline); the next sweep covers it.
var ErrUnfinished = errors.New("event not fully reconciled")

// HandleEvent is the Lambda handler for an event invoked directly (the
// sweep schedule). A skipped event is not an error.
func (d *Dispatcher) HandleEvent(ctx context.Context, raw json.RawMessage) error {
	m := &message{body: raw, log: d.log}
	d.run(ctx, []*message{m})
	if m.verdict == failed {
		return fmt.Errorf("%w: %s", ErrUnfinished, m.why)
	}
	return nil
}
