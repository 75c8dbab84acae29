package lambdarun

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
)

// Lambda's runtime API answers a runtime's "next invocation" request with
// the invocation's X-Ray trace header in Lambda-Runtime-Trace-Id (Lambda
// Developer Guide, "Using the Lambda runtime API for custom runtimes");
// aws-lambda-go puts it in _X_AMZN_TRACE_ID and the handler's context, and
// aws-sdk-go-v2 sends it with the function's requests, which is how
// Lambda's recursive loop detection follows a chain. The emulator drops
// it: its default mode builds the header with a no-op tracer that ignores
// the X-Amzn-Trace-Id it was invoked with (aws-lambda-rie,
// internal/lambda/telemetry/tracer.go, NoOpTracer.BuildTracingHeader).
//
// traceRelay sits between the bootstrap and the emulator's runtime API and
// adds the header the emulator leaves out: the invoke names its request id
// (X-Amzn-RequestId, which the emulator uses as the invocation's id), and
// the next-invocation answer carrying that id gets that invocation's trace.
// Everything else passes through unchanged.
type traceRelay struct {
	srv *http.Server
	ln  net.Listener

	mu     sync.Mutex
	traces map[string]string // request id -> trace header, while the invocation runs
}

const (
	nextInvocationPath = "/2018-06-01/runtime/invocation/next"
	runtimeTraceHeader = "Lambda-Runtime-Trace-Id"
	runtimeRequestID   = "Lambda-Runtime-Aws-Request-Id"
	invokeRequestID    = "X-Amzn-RequestId"
)

// listenRelay takes a free local port for a trace relay.
func listenRelay() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// startTraceRelay serves on ln and forwards to the emulator's runtime API
// at upstream (host:port).
func startTraceRelay(ln net.Listener, upstream string) *traceRelay {
	r := &traceRelay{ln: ln, traces: map[string]string{}}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: upstream})
	proxy.ModifyResponse = r.addTrace
	r.srv = &http.Server{Handler: proxy}
	go func() { _ = r.srv.Serve(ln) }()
	return r
}

// Addr is where the bootstrap must find the runtime API
// (AWS_LAMBDA_RUNTIME_API).
func (r *traceRelay) Addr() string { return r.ln.Addr().String() }

func (r *traceRelay) addTrace(resp *http.Response) error {
	if resp.Request.URL.Path != nextInvocationPath || resp.Header.Get(runtimeTraceHeader) != "" {
		return nil
	}
	r.mu.Lock()
	trace := r.traces[resp.Header.Get(runtimeRequestID)]
	r.mu.Unlock()
	if trace != "" {
		resp.Header.Set(runtimeTraceHeader, trace)
	}
	return nil
}

// expect registers the trace of an invocation about to be sent and returns
// its request id; done forgets it.
func (r *traceRelay) expect(trace string) (requestID string, done func()) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	requestID = h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	r.mu.Lock()
	r.traces[requestID] = trace
	r.mu.Unlock()
	return requestID, func() {
		r.mu.Lock()
		delete(r.traces, requestID)
		r.mu.Unlock()
	}
}

func (r *traceRelay) Close() error {
	if err := r.srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
