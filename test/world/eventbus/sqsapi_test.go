package eventbus_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/eventbus"
)

func TestSQSThroughTheSDK(t *testing.T) {
	router := awsproto.NewRouter()
	hs := httptest.NewServer(router)
	defer hs.Close()
	bus := eventbus.New(eventbus.Options{Seed: 3, QueueURLBase: hs.URL})
	defer bus.Close()
	bus.RegisterSQS(router)
	dlq, err := bus.CreateQueue("TaskDLQ", eventbus.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.CreateQueue("TaskQueue", eventbus.QueueOptions{DeadLetter: dlq, MaxReceiveCount: 5}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := sqs.New(sqs.Options{
		BaseEndpoint: aws.String(hs.URL), Region: "us-west-2", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDWORLD", "secret", ""),
	})

	url, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("TaskQueue")})
	if err != nil || *url.QueueUrl != hs.URL+"/123456789012/TaskQueue" {
		t.Fatalf("GetQueueUrl: %v %v", url, err)
	}
	_, err = c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("nope")})
	var qdne *types.QueueDoesNotExist
	if !errors.As(err, &qdne) {
		t.Fatalf("missing queue: %v", err)
	}

	// The function's "retry after d": the key back with a delay (15 min:
	// still delayed when looked at) and an attribute.
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl: url.QueueUrl, MessageBody: aws.String(`{"cluster":"c1","volume":"later"}`), DelaySeconds: 900,
	}); err != nil {
		t.Fatalf("SendMessage with a delay: %v", err)
	}
	sent, err := c.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl: url.QueueUrl, MessageBody: aws.String(`{"cluster":"c1","volume":"rexray-vol"}`),
		MessageAttributes: map[string]types.MessageAttributeValue{"tether-retry": {DataType: aws.String("String"), StringValue: aws.String("attach in flight")}},
	})
	if err != nil { // the SDK checks MD5OfMessageBody itself
		t.Fatalf("SendMessage: %v", err)
	}
	if sent.MD5OfMessageAttributes == nil || *sent.MD5OfMessageAttributes == "" {
		t.Fatal("no MD5OfMessageAttributes")
	}
	batch, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: url.QueueUrl, Entries: []types.SendMessageBatchRequestEntry{
		{Id: aws.String("1"), MessageBody: aws.String("one")},
		{Id: aws.String("2"), MessageBody: aws.String("two"), DelaySeconds: 901},
	}})
	if err != nil || len(batch.Successful) != 1 || len(batch.Failed) != 1 || *batch.Failed[0].Id != "2" || !batch.Failed[0].SenderFault {
		t.Fatalf("SendMessageBatch: %+v %v", batch, err)
	}
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: url.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	if err != nil || attrs.Attributes["ApproximateNumberOfMessagesDelayed"] != "1" || attrs.Attributes["RedrivePolicy"] == "" {
		t.Fatalf("GetQueueAttributes: %v %v", attrs, err)
	}

	var got []types.Message
	for len(got) < 2 && ctx.Err() == nil {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: url.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 20,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
			MessageAttributeNames:       []string{"All"},
		})
		if err != nil {
			t.Fatalf("ReceiveMessage: %v", err)
		}
		got = append(got, out.Messages...)
	}
	var retry types.Message
	for _, m := range got {
		if m.MessageAttributes["tether-retry"].StringValue != nil {
			retry = m
		}
	}
	if retry.MessageId == nil || *retry.MessageId != *sent.MessageId || retry.Attributes["ApproximateReceiveCount"] != "1" ||
		*retry.MD5OfMessageAttributes != *sent.MD5OfMessageAttributes {
		t.Fatalf("received: %+v", got)
	}
	if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: url.QueueUrl, ReceiptHandle: retry.ReceiptHandle, VisibilityTimeout: 600}); err != nil {
		t.Fatal(err)
	}
	for _, m := range got {
		if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: url.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: url.QueueUrl, ReceiptHandle: aws.String("forged!")})
	var rhi *types.ReceiptHandleIsInvalid
	if !errors.As(err, &rhi) {
		t.Fatalf("forged receipt handle: %v", err)
	}
	_, err = c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url.QueueUrl, MaxNumberOfMessages: 11})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidParameterValue" {
		t.Fatalf("MaxNumberOfMessages 11: %v", err)
	}

	// Injected faults reach the SDK as SQS errors.
	bus.SQSGate().FailNext("SendMessage", 1, awsproto.Errorf(500, "InternalError", "injected"))
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url.QueueUrl, MessageBody: aws.String("x")}); !errors.As(err, &ae) || ae.ErrorCode() != "InternalError" {
		t.Fatalf("injected SendMessage failure: %v", err)
	}

	// DLQ depth for the alarm.
	bus.Queue("TaskDLQ").Send("dead", eventbus.SendOptions{})
	dlqURL, _ := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("TaskDLQ")})
	depth, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlqURL.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages}})
	if err != nil || depth.Attributes["ApproximateNumberOfMessages"] != "1" || len(depth.Attributes) != 1 {
		t.Fatalf("DLQ depth: %v %v", depth, err)
	}
}
