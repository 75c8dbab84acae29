package eventbus

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Lambda's recursive loop detection ("Use Lambda recursive loop detection
// to prevent infinite loops", Lambda Developer Guide): Lambda tracks an
// event's chain of invocations in the X-Ray trace header the AWS SDKs
// propagate (X-Amzn-Trace-Id; on SQS, the message system attribute
// AWSTraceHeader). "If your function is invoked approximately 16 times in
// the same chain of requests, then Lambda automatically stops the next
// function invocation in that request chain": 16 invocations run, the 17th
// is stopped and counted in the CloudWatch metric RecursiveInvocationsDropped
// ("Lambda emits this metric as soon as it stops a recursive invocation";
// not emitted for a function set to RecursiveLoop: Allow). An SQS message
// so stopped is not deleted: its receive count grows and Lambda keeps
// stopping it until the queue's redrive policy moves it to the dead-letter
// queue (the guide's note on maxReceiveCount).
const RecursionLimit = 16

// RecursiveLoop is a function's recursive loop detection setting
// (AWS::Lambda::Function RecursiveLoop; botocore's lambda model: enum
// Allow, Terminate; Lambda's default is Terminate).
type RecursiveLoop string

const (
	RecursiveLoopTerminate RecursiveLoop = "Terminate"
	RecursiveLoopAllow     RecursiveLoop = "Allow"
)

func (r RecursiveLoop) valid() bool { return r == RecursiveLoopTerminate || r == RecursiveLoopAllow }

// The header's Lineage field, as OpenTelemetry's AWS X-Ray propagator
// validates it (opentelemetry-java-contrib, aws-xray-propagator
// AwsXrayPropagator.java): "<loop counter>:<8 hex hash>:<request counter>",
// 12 to 18 characters, loop counter 0-32767, request counter 0-255. Lambda
// does not document what it counts in which field; the world counts the
// chain's invocations in the first and leaves the last at 0. Functions and
// SDKs never read it: they copy the whole header.
const (
	maxLoopCounter    = 32767
	maxRequestCounter = 255
)

// traceHeader is one X-Ray trace header (X-Ray Developer Guide, "Tracing
// header": Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=0|1, and other
// fields such as Lineage).
type traceHeader struct {
	root, parent, sampled string
	hops                  int    // invocations so far in the chain (the lineage's loop counter)
	hash                  string // the lineage's hash, kept as received
}

// parseTraceHeader reads a header; ok is false when it has no Root (X-Ray
// ignores such a header, and so does the world). A malformed Lineage is
// dropped, as the OpenTelemetry propagator drops it.
func parseTraceHeader(s string) (traceHeader, bool) {
	if strings.Contains(s, "%") { // aws-sdk-go-v2's recursion detection percent-encodes
		if u, err := url.PathUnescape(s); err == nil {
			s = u
		}
	}
	var h traceHeader
	for _, part := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "Root":
			h.root = v
		case "Parent":
			h.parent = v
		case "Sampled":
			h.sampled = v
		case "Lineage":
			h.hops, h.hash = parseLineage(v)
		}
	}
	return h, h.root != ""
}

func parseLineage(v string) (hops int, hash string) {
	f := strings.Split(v, ":")
	if len(v) < 12 || len(v) > 18 || len(f) != 3 || len(f[1]) != 8 {
		return 0, ""
	}
	loop, err1 := strconv.Atoi(f[0])
	req, err2 := strconv.Atoi(f[2])
	if _, err3 := strconv.ParseUint(f[1], 16, 32); err1 != nil || err2 != nil || err3 != nil ||
		loop < 0 || loop > maxLoopCounter || req < 0 || req > maxRequestCounter {
		return 0, ""
	}
	return loop, f[1]
}

func (h traceHeader) String() string {
	s := "Root=" + h.root
	if h.parent != "" {
		s += ";Parent=" + h.parent
	}
	sampled := h.sampled
	if sampled == "" {
		sampled = "0"
	}
	s += ";Sampled=" + sampled
	if h.hops > 0 {
		s += fmt.Sprintf(";Lineage=%d:%s:0", min(h.hops, maxLoopCounter), h.hash)
	}
	return s
}

// lineageHash names a function in a lineage (8 hex digits).
func lineageHash(function string) string {
	f := fnv.New32a()
	f.Write([]byte(function))
	return fmt.Sprintf("%08x", f.Sum32())
}

// invocationTrace is the header Lambda gives an invocation caused by an
// event whose chain is from (zero value: a new chain): the same root, one
// more hop.
func invocationTrace(from traceHeader, newRoot, parent, function string) traceHeader {
	t := traceHeader{root: from.root, parent: parent, sampled: from.sampled, hops: from.hops + 1, hash: lineageHash(function)}
	if t.root == "" {
		t.root = newRoot
	}
	return t
}

// xrayRoot makes an X-Ray trace id from an epoch and 24 hex digits.
func xrayRoot(epoch int64, unique string) string {
	return fmt.Sprintf("1-%08x-%s", uint32(epoch), unique)
}

type traceKey struct{}

// WithTraceHeader gives an invocation (or an API request) its X-Ray trace
// header: Invokers pass it to the function (lambdarun as the invoke's
// X-Amzn-Trace-Id, which the runtime interface emulator forwards as
// Lambda-Runtime-Trace-Id; InProcess as aws-lambda-go's context value),
// and the SQS API records it with the messages a request sends.
func WithTraceHeader(ctx context.Context, header string) context.Context {
	return context.WithValue(ctx, traceKey{}, header)
}

// TraceHeader is the header WithTraceHeader gave ctx, or "".
func TraceHeader(ctx context.Context) string {
	s, _ := ctx.Value(traceKey{}).(string)
	return s
}

// TraceIDHeader is the HTTP header that carries an X-Ray trace header
// to an AWS API.
const TraceIDHeader = "X-Amzn-Trace-Id"

// CarryTraceHeader passes each request's X-Amzn-Trace-Id to the handler's
// context (TraceHeader), so the SQS API can record it with the messages the
// request sends, as SQS does: aws-sdk-go-v2 running in a Lambda function
// sends the invocation's trace as this HTTP header
// (aws/middleware.RecursionDetection), not as a message attribute. Wrap the
// world's router with it.
func CarryTraceHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := r.Header.Get(TraceIDHeader); h != "" {
			r = r.WithContext(WithTraceHeader(r.Context(), h))
		}
		next.ServeHTTP(w, r)
	})
}
