package eventbus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

// SQSTarget is the X-Amz-Target prefix of SQS's JSON protocol
// (application/x-amz-json-1.0, used by aws-sdk-go-v2's sqs since 2023).
const SQSTarget = "AmazonSQS"

// SQSGate is the SQS API's front door for faults (FailNext, ThrottleNext,
// SetErrorRate) and call counts; no rate limits unless set.
func (b *Bus) SQSGate() *awsproto.Gate { return b.sqsGate }

// RegisterSQS serves SQS's JSON API on the world's router.
func (b *Bus) RegisterSQS(r *awsproto.Router) {
	r.HandleJSON("sqs", SQSTarget, "com.amazonaws.sqs", "1.0", b.HandleSQS)
}

type sqsAction func(b *Bus, ctx context.Context, body []byte) (any, error)

var sqsActions = map[string]sqsAction{
	"SendMessage":             (*Bus).sendMessage,
	"SendMessageBatch":        (*Bus).sendMessageBatch,
	"ReceiveMessage":          (*Bus).receiveMessage,
	"DeleteMessage":           (*Bus).deleteMessage,
	"ChangeMessageVisibility": (*Bus).changeMessageVisibility,
	"GetQueueUrl":             (*Bus).getQueueURL,
	"GetQueueAttributes":      (*Bus).getQueueAttributes,
}

// HandleSQS answers one SQS action (the awsproto.JSONHandler).
func (b *Bus) HandleSQS(ctx context.Context, action string, body []byte) (any, error) {
	a, ok := sqsActions[action]
	if !ok {
		return nil, awsproto.BadRequest("UnsupportedOperation", "Operation %s is not supported by the local SQS world.", action)
	}
	if e := b.sqsGate.Admit(action, action); e != nil {
		return nil, e
	}
	return a(b, ctx, body)
}

func sqsError(code, format string, args ...any) *awsproto.Error {
	return awsproto.BadRequest(code, format, args...)
}

func invalidValue(format string, args ...any) *awsproto.Error {
	return sqsError("InvalidParameterValue", format, args...)
}

func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if strings.HasPrefix(err.Error(), "json: unknown field") { // encoding/json has no typed error for this
			return invalidValue("parameter %s is not supported by the local SQS world", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return awsproto.BadRequest("SerializationException", "%v", err)
	}
	return nil
}

// queueByURL finds a queue by its URL (any host: clients may rewrite it) or
// by its name.
func (b *Bus) queueByURL(u string) (*Queue, error) {
	parts := strings.Split(strings.TrimRight(u, "/"), "/")
	name := parts[len(parts)-1]
	if len(parts) >= 2 && strings.Contains(u, "/") && parts[len(parts)-2] != b.opts.Account {
		return nil, sqsError("QueueDoesNotExist", "The specified queue does not exist.")
	}
	if q := b.Queue(name); q != nil {
		return q, nil
	}
	return nil, sqsError("QueueDoesNotExist", "The specified queue does not exist.")
}

type attributeValueJSON struct {
	DataType         string   `json:"DataType"`
	StringValue      *string  `json:"StringValue,omitempty"`
	BinaryValue      []byte   `json:"BinaryValue,omitempty"`
	StringListValues []string `json:"StringListValues,omitempty"`
	BinaryListValues [][]byte `json:"BinaryListValues,omitempty"`
}

func readAttributes(in map[string]attributeValueJSON) (map[string]MessageAttribute, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > 10 {
		return nil, invalidValue("Number of message attributes [%d] exceeds the allowed maximum [10].", len(in))
	}
	out := map[string]MessageAttribute{}
	for name, v := range in {
		if len(v.StringListValues) > 0 || len(v.BinaryListValues) > 0 {
			return nil, invalidValue("Message attribute list values are not supported.")
		}
		base, _, _ := strings.Cut(v.DataType, ".")
		switch {
		case (base == "String" || base == "Number") && v.StringValue != nil:
			out[name] = MessageAttribute{DataType: v.DataType, StringValue: *v.StringValue}
		case base == "Binary" && v.BinaryValue != nil:
			out[name] = MessageAttribute{DataType: v.DataType, BinaryValue: v.BinaryValue}
		default:
			return nil, invalidValue("The message attribute '%s' has an invalid message attribute type or value.", name)
		}
	}
	return out, nil
}

func delayOption(d *int32) (*time.Duration, error) {
	if d == nil {
		return nil, nil
	}
	if *d < 0 || *d > 900 {
		return nil, invalidValue("Value %d for parameter DelaySeconds is invalid. Reason: must be between 0 and 900.", *d)
	}
	v := time.Duration(*d) * time.Second
	return &v, nil
}

type sendMessageRequest struct {
	QueueURL                string                        `json:"QueueUrl"`
	MessageBody             *string                       `json:"MessageBody"`
	DelaySeconds            *int32                        `json:"DelaySeconds"`
	MessageAttributes       map[string]attributeValueJSON `json:"MessageAttributes"`
	MessageSystemAttributes map[string]attributeValueJSON `json:"MessageSystemAttributes"`
}

type sendResult struct {
	ID                           string `json:"Id,omitempty"`
	MessageID                    string `json:"MessageId"`
	MD5OfMessageBody             string `json:"MD5OfMessageBody"`
	MD5OfMessageAttributes       string `json:"MD5OfMessageAttributes,omitempty"`
	MD5OfMessageSystemAttributes string `json:"MD5OfMessageSystemAttributes,omitempty"`
}

// traceOf is the trace header a sent message keeps (AWSTraceHeader):
// "Currently, the only supported message system attribute is
// AWSTraceHeader. Its type must be String and its value must be a
// correctly formatted X-Ray trace header string" (SendMessage's
// MessageSystemAttributes, botocore's sqs model); without it, the request's
// X-Amzn-Trace-Id, which "corresponds to all messages included in a
// SendMessage or SendMessageBatch request", and "if both header
// instrumentations are set, the message system attribute overrides the
// HTTP trace header" (X-Ray Developer Guide, "Amazon SQS and AWS X-Ray").
func traceOf(ctx context.Context, system map[string]attributeValueJSON) (string, error) {
	for name, v := range system {
		if name != "AWSTraceHeader" {
			return "", invalidValue("Message system attribute name '%s' is invalid.", name)
		}
		if v.DataType != "String" || v.StringValue == nil || v.BinaryValue != nil || len(v.StringListValues)+len(v.BinaryListValues) > 0 {
			return "", invalidValue("The message system attribute 'AWSTraceHeader' must be of type String.")
		}
		if _, ok := parseTraceHeader(*v.StringValue); !ok {
			return "", invalidValue("The message system attribute 'AWSTraceHeader' is not a valid X-Ray trace header: %q.", *v.StringValue)
		}
		return *v.StringValue, nil
	}
	if h := TraceHeader(ctx); h != "" {
		if _, ok := parseTraceHeader(h); ok {
			return h, nil
		}
	}
	return "", nil
}

func (b *Bus) send(ctx context.Context, q *Queue, req sendMessageRequest) (sendResult, error) {
	if req.MessageBody == nil || *req.MessageBody == "" {
		return sendResult{}, sqsError("MissingParameter", "The request must contain the parameter MessageBody.")
	}
	if len(*req.MessageBody) > 256*1024 {
		return sendResult{}, invalidValue("One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.")
	}
	delay, err := delayOption(req.DelaySeconds)
	if err != nil {
		return sendResult{}, err
	}
	attrs, err := readAttributes(req.MessageAttributes)
	if err != nil {
		return sendResult{}, err
	}
	trace, err := traceOf(ctx, req.MessageSystemAttributes)
	if err != nil {
		return sendResult{}, err
	}
	id := q.Send(*req.MessageBody, SendOptions{Delay: delay, Attributes: attrs, TraceHeader: trace})
	res := sendResult{MessageID: id, MD5OfMessageBody: md5Hex([]byte(*req.MessageBody)), MD5OfMessageAttributes: md5OfAttributes(attrs)}
	if len(req.MessageSystemAttributes) > 0 {
		res.MD5OfMessageSystemAttributes = md5OfAttributes(map[string]MessageAttribute{"AWSTraceHeader": {DataType: "String", StringValue: trace}})
	}
	return res, nil
}

func (b *Bus) sendMessage(ctx context.Context, body []byte) (any, error) {
	var req sendMessageRequest
	if err := decodeStrict(body, &req); err != nil {
		return nil, err
	}
	q, err := b.queueByURL(req.QueueURL)
	if err != nil {
		return nil, err
	}
	return b.send(ctx, q, req)
}

type batchEntry struct {
	ID                      string                        `json:"Id"`
	MessageBody             *string                       `json:"MessageBody"`
	DelaySeconds            *int32                        `json:"DelaySeconds"`
	MessageAttributes       map[string]attributeValueJSON `json:"MessageAttributes"`
	MessageSystemAttributes map[string]attributeValueJSON `json:"MessageSystemAttributes"`
}

type batchFailure struct {
	ID          string `json:"Id"`
	SenderFault bool   `json:"SenderFault"`
	Code        string `json:"Code"`
	Message     string `json:"Message"`
}

func (b *Bus) sendMessageBatch(ctx context.Context, body []byte) (any, error) {
	var req struct {
		QueueURL string       `json:"QueueUrl"`
		Entries  []batchEntry `json:"Entries"`
	}
	if err := decodeStrict(body, &req); err != nil {
		return nil, err
	}
	q, err := b.queueByURL(req.QueueURL)
	if err != nil {
		return nil, err
	}
	switch {
	case len(req.Entries) == 0:
		return nil, sqsError("EmptyBatchRequest", "There should be at least one SendMessageBatchRequestEntry in the request.")
	case len(req.Entries) > 10:
		return nil, sqsError("TooManyEntriesInBatchRequest", "Maximum number of entries per request are 10. You have sent %d.", len(req.Entries))
	}
	seen := map[string]bool{}
	for _, e := range req.Entries {
		if seen[e.ID] {
			return nil, sqsError("BatchEntryIdsNotDistinct", "Id %s repeated.", e.ID)
		}
		seen[e.ID] = true
	}
	ok, failed := []sendResult{}, []batchFailure{}
	for _, e := range req.Entries {
		res, err := b.send(ctx, q, sendMessageRequest{MessageBody: e.MessageBody, DelaySeconds: e.DelaySeconds,
			MessageAttributes: e.MessageAttributes, MessageSystemAttributes: e.MessageSystemAttributes})
		var ae *awsproto.Error
		if errors.As(err, &ae) {
			failed = append(failed, batchFailure{ID: e.ID, SenderFault: true, Code: ae.Code, Message: ae.Message})
			continue
		}
		res.ID = e.ID
		ok = append(ok, res)
	}
	return map[string]any{"Successful": ok, "Failed": failed}, nil
}

type receivedJSON struct {
	MessageID              string                        `json:"MessageId"`
	ReceiptHandle          string                        `json:"ReceiptHandle"`
	MD5OfBody              string                        `json:"MD5OfBody"`
	Body                   string                        `json:"Body"`
	Attributes             map[string]string             `json:"Attributes,omitempty"`
	MD5OfMessageAttributes string                        `json:"MD5OfMessageAttributes,omitempty"`
	MessageAttributes      map[string]attributeValueJSON `json:"MessageAttributes,omitempty"`
}

func (b *Bus) receiveMessage(ctx context.Context, body []byte) (any, error) {
	var req struct {
		QueueURL                    string   `json:"QueueUrl"`
		MaxNumberOfMessages         *int32   `json:"MaxNumberOfMessages"`
		VisibilityTimeout           *int32   `json:"VisibilityTimeout"`
		WaitTimeSeconds             *int32   `json:"WaitTimeSeconds"`
		AttributeNames              []string `json:"AttributeNames"`
		MessageSystemAttributeNames []string `json:"MessageSystemAttributeNames"`
		MessageAttributeNames       []string `json:"MessageAttributeNames"`
		ReceiveRequestAttemptID     string   `json:"ReceiveRequestAttemptId"`
	}
	if err := decodeStrict(body, &req); err != nil {
		return nil, err
	}
	q, err := b.queueByURL(req.QueueURL)
	if err != nil {
		return nil, err
	}
	o := ReceiveOptions{Max: 1, Wait: q.opts.ReceiveWaitTime}
	if n := req.MaxNumberOfMessages; n != nil {
		if *n < 1 || *n > 10 {
			return nil, invalidValue("Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.", *n)
		}
		o.Max = int(*n)
	}
	if w := req.WaitTimeSeconds; w != nil {
		if *w < 0 || *w > 20 {
			return nil, invalidValue("Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", *w)
		}
		o.Wait = time.Duration(*w) * time.Second
	}
	if v := req.VisibilityTimeout; v != nil {
		if *v < 0 || *v > 43200 {
			return nil, invalidValue("Value %d for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200.", *v)
		}
		d := time.Duration(*v) * time.Second
		o.Visibility = &d
	}
	msgs, err := q.Receive(ctx, o)
	if err != nil {
		return nil, err
	}
	wantSys := append(append([]string(nil), req.AttributeNames...), req.MessageSystemAttributeNames...)
	out := []receivedJSON{}
	for _, m := range msgs {
		r := receivedJSON{MessageID: m.MessageID, ReceiptHandle: m.ReceiptHandle, MD5OfBody: m.MD5OfBody, Body: m.Body}
		r.Attributes = pick(m.Attributes, wantSys)
		if attrs := pickAttrs(m.MessageAttrs, req.MessageAttributeNames); len(attrs) > 0 {
			r.MessageAttributes = map[string]attributeValueJSON{}
			for n, a := range attrs {
				av := attributeValueJSON{DataType: a.DataType}
				if a.BinaryValue != nil {
					av.BinaryValue = a.BinaryValue
				} else {
					s := a.StringValue
					av.StringValue = &s
				}
				r.MessageAttributes[n] = av
			}
			r.MD5OfMessageAttributes = md5OfAttributes(attrs)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return struct{}{}, nil
	}
	return map[string]any{"Messages": out}, nil
}

func pick(all map[string]string, names []string) map[string]string {
	out := map[string]string{}
	for _, n := range names {
		if n == "All" {
			return all
		}
		if v, ok := all[n]; ok {
			out[n] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func pickAttrs(all map[string]MessageAttribute, names []string) map[string]MessageAttribute {
	out := map[string]MessageAttribute{}
	for _, n := range names {
		for name, a := range all {
			if n == "All" || n == ".*" || n == name || (strings.HasSuffix(n, ".*") && strings.HasPrefix(name, strings.TrimSuffix(n, "*"))) {
				out[name] = a
			}
		}
	}
	return out
}

func receiptError(err error) error {
	switch {
	case errors.Is(err, ErrReceiptHandleInvalid):
		return sqsError("ReceiptHandleIsInvalid", "%v", err)
	case errors.Is(err, ErrMessageNotInflight):
		return sqsError("MessageNotInflight", "%v", err)
	}
	return err
}

func (b *Bus) deleteMessage(_ context.Context, body []byte) (any, error) {
	var req struct {
		QueueURL      string `json:"QueueUrl"`
		ReceiptHandle string `json:"ReceiptHandle"`
	}
	if err := decodeStrict(body, &req); err != nil {
		return nil, err
	}
	q, err := b.queueByURL(req.QueueURL)
	if err != nil {
		return nil, err
	}
	return struct{}{}, receiptError(q.Delete(req.ReceiptHandle))
}

func (b *Bus) changeMessageVisibility(_ context.Context, body []byte) (any, error) {
	var req struct {
		QueueURL          string `json:"QueueUrl"`
		ReceiptHandle     string `json:"ReceiptHandle"`
		VisibilityTimeout *int32 `json:"VisibilityTimeout"`
	}
	if err := decodeStrict(body, &req); err != nil {
		return nil, err
	}
	if req.VisibilityTimeout == nil || *req.VisibilityTimeout < 0 || *req.VisibilityTimeout > 43200 {
		return nil, invalidValue("VisibilityTimeout must be between 0 and 43200.")
	}
	q, err := b.queueByURL(req.QueueURL)
	if err != nil {
		return nil, err
	}
	return struct{}{}, receiptError(q.ChangeVisibility(req.ReceiptHandle, time.Duration(*req.VisibilityTimeout)*time.Second))
}

func (b *Bus) getQueueURL(_ context.Context, body []byte) (any, error) {
	var req struct {
		QueueName              string `json:"QueueName"`
		QueueOwnerAWSAccountID string `json:"QueueOwnerAWSAccountId"`
	}
	if err := decodeStrict(body, &req); err != nil {
		return nil, err
	}
	if req.QueueOwnerAWSAccountID != "" && req.QueueOwnerAWSAccountID != b.opts.Account {
		return nil, sqsError("QueueDoesNotExist", "The specified queue does not exist.")
	}
	q := b.Queue(req.QueueName)
	if q == nil {
		return nil, sqsError("QueueDoesNotExist", "The specified queue does not exist.")
	}
	return map[string]string{"QueueUrl": q.URL()}, nil
}

var queueAttributeNames = []string{
	"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed",
	"VisibilityTimeout", "DelaySeconds", "ReceiveMessageWaitTimeSeconds", "MaximumMessageSize",
	"MessageRetentionPeriod", "QueueArn", "RedrivePolicy", "CreatedTimestamp", "LastModifiedTimestamp",
	"SqsManagedSseEnabled",
}

func (b *Bus) getQueueAttributes(_ context.Context, body []byte) (any, error) {
	var req struct {
		QueueURL       string   `json:"QueueUrl"`
		AttributeNames []string `json:"AttributeNames"`
	}
	if err := decodeStrict(body, &req); err != nil {
		return nil, err
	}
	q, err := b.queueByURL(req.QueueURL)
	if err != nil {
		return nil, err
	}
	st := q.Stats()
	seconds := func(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }
	all := map[string]string{
		"ApproximateNumberOfMessages":           strconv.Itoa(st.Visible),
		"ApproximateNumberOfMessagesNotVisible": strconv.Itoa(st.InFlight),
		"ApproximateNumberOfMessagesDelayed":    strconv.Itoa(st.Delayed),
		"VisibilityTimeout":                     seconds(q.opts.VisibilityTimeout),
		"DelaySeconds":                          seconds(q.opts.DelaySeconds),
		"ReceiveMessageWaitTimeSeconds":         seconds(q.opts.ReceiveWaitTime),
		"MaximumMessageSize":                    "262144",
		"MessageRetentionPeriod":                "345600",
		"QueueArn":                              q.ARN(),
		"CreatedTimestamp":                      strconv.FormatInt(q.created.Unix(), 10),
		"LastModifiedTimestamp":                 strconv.FormatInt(q.created.Unix(), 10),
		"SqsManagedSseEnabled":                  "true",
	}
	if dlq := q.opts.DeadLetter; dlq != nil {
		rp, _ := json.Marshal(map[string]any{"deadLetterTargetArn": dlq.ARN(), "maxReceiveCount": q.opts.MaxReceiveCount})
		all["RedrivePolicy"] = string(rp)
	}
	out := map[string]string{}
	for _, n := range req.AttributeNames {
		if n == "All" {
			out = all
			break
		}
		known := false
		for _, k := range queueAttributeNames {
			known = known || k == n
		}
		if !known {
			return nil, awsproto.Errorf(http.StatusBadRequest, "InvalidAttributeName", "Unknown Attribute %s.", n)
		}
		if v, ok := all[n]; ok {
			out[n] = v
		}
	}
	if len(out) == 0 {
		return struct{}{}, nil
	}
	return map[string]any{"Attributes": out}, nil
}
