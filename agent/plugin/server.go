package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// maxRequestBytes bounds a request body; dockerd's largest is a Create with
// a handful of options.
const maxRequestBytes = 1 << 20

// DefaultShutdownGrace is how long calls in flight go on after Serve's
// context ends (SIGTERM): a Mount waiting for the reconciler may still get
// its volume and answer with it, instead of failing the container's start
// at once. Then their contexts are cancelled and they answer with an Err
// (a mount already running finishes in the background, see driver).
const DefaultShutdownGrace = 30 * time.Second

// answerWait bounds how long Serve waits, after the grace, for the
// cancelled calls to write their answers.
const answerWait = 5 * time.Second

// Option changes how Serve runs.
type Option func(*settings)

type settings struct {
	log   *slog.Logger
	grace time.Duration
}

// WithLogger sets the logger for the request log (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *settings) { s.log = l } }

// WithShutdownGrace sets how long shutdown waits for calls in flight.
func WithShutdownGrace(d time.Duration) Option { return func(s *settings) { s.grace = d } }

// Serve answers dockerd's plugin calls on l with d until ctx ends or the
// listener fails. When ctx ends it stops accepting and lets the calls in
// flight go on for the shutdown grace (a waiting Mount may still be
// answered with its volume); then it cancels their contexts (they answer
// with an Err), waits a little for the answers and returns. Serve closes l.
func Serve(ctx context.Context, l net.Listener, d Driver, opts ...Option) error {
	s := settings{log: slog.Default(), grace: DefaultShutdownGrace}
	for _, o := range opts {
		o(&s)
	}
	// Calls get a context of their own so that shutdown can end their waits
	// while the server still writes their answers.
	callCtx, cancelCalls := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCalls()
	srv := &http.Server{
		Handler:           NewHandler(d, s.log),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return callCtx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	s.log.Info("plugin serving", "address", l.Addr().String())

	select {
	case err := <-served:
		return fmt.Errorf("plugin server on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	s.log.Info("plugin shutting down: no new calls; calls in flight may finish", "address", l.Addr().String(), "grace", s.grace.String())
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.WithoutCancel(ctx)) }()
	grace := time.NewTimer(s.grace)
	defer grace.Stop()
	var err error
	select {
	case err = <-shut:
	case <-grace.C:
		s.log.Warn("shutdown grace over; answering the calls still in flight with an error", "grace", s.grace.String())
		cancelCalls()
		select {
		case err = <-shut:
		case <-time.After(answerWait):
			srv.Close()
			err = <-shut
			if err == nil {
				err = errors.New("calls did not answer")
			}
		}
	}
	<-served // http.ErrServerClosed once Shutdown has begun
	if err != nil {
		return fmt.Errorf("plugin shutdown: calls still in flight after %s: %w", s.grace+answerWait, err)
	}
	return nil
}

// NewHandler answers the plugin protocol for d (and HolderMethod when d
// implements Holders); Serve uses it, and it can
// be mounted in any HTTP server.
func NewHandler(d Driver, log *slog.Logger) http.Handler {
	h := &handler{
		log: log,
		endpoints: map[string]endpoint{
			"Plugin.Activate":           handle(activate),
			"VolumeDriver.Create":       handle(d.Create),
			"VolumeDriver.Remove":       handle(d.Remove),
			"VolumeDriver.Mount":        handle(d.Mount),
			"VolumeDriver.Unmount":      handle(d.Unmount),
			"VolumeDriver.Path":         handle(d.Path),
			"VolumeDriver.Get":          handle(d.Get),
			"VolumeDriver.List":         handle(d.List),
			"VolumeDriver.Capabilities": handle(d.Capabilities),
		},
	}
	if hd, ok := d.(Holders); ok {
		h.endpoints[HolderMethod] = handle(hd.Holders)
	}
	return h
}

func activate(context.Context, ActivateRequest) (ActivateResponse, error) {
	return ActivateResponse{Implements: []string{Implements}}, nil
}

// endpoint decodes one request body into a call ready to run.
type endpoint func(body []byte) (call, error)

// call is a decoded request: what to log about it and how to run it.
type call struct {
	volume  string
	mountID string
	run     func(context.Context) (any, error)
}

// handle is the one decode/call step every endpoint shares: the body is the
// JSON of Req (an empty body is Req's zero value: dockerd sends none to
// Plugin.Activate), and the answer is Resp's JSON.
func handle[Req, Resp any](f func(context.Context, Req) (Resp, error)) endpoint {
	return func(body []byte) (call, error) {
		var req Req
		if len(bytes.TrimSpace(body)) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				return call{}, err
			}
		}
		c := call{run: func(ctx context.Context) (any, error) { return f(ctx, req) }}
		if v, ok := any(req).(interface{ volume() string }); ok {
			c.volume = v.volume()
		}
		if v, ok := any(req).(interface{ mountID() string }); ok {
			c.mountID = v.mountID()
		}
		return c, nil
	}
}

type handler struct {
	log       *slog.Logger
	endpoints map[string]endpoint
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	method := strings.TrimPrefix(r.URL.Path, "/")
	log := h.log.With("method", method)
	ep, ok := h.endpoints[method]
	switch {
	case !ok:
		h.fail(w, log, start, http.StatusNotFound, fmt.Errorf("tether plugin: unknown endpoint %q", r.URL.Path))
		return
	case r.Method != http.MethodPost:
		h.fail(w, log, start, http.StatusMethodNotAllowed, fmt.Errorf("tether plugin: %s takes POST, not %s", method, r.Method))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBytes+1))
	if err != nil {
		h.fail(w, log, start, http.StatusBadRequest, fmt.Errorf("tether plugin: reading %s request: %w", method, err))
		return
	}
	if len(body) > maxRequestBytes {
		h.fail(w, log, start, http.StatusRequestEntityTooLarge, fmt.Errorf("tether plugin: %s request larger than %d bytes", method, maxRequestBytes))
		return
	}
	c, err := ep(body)
	if err != nil {
		h.fail(w, log, start, http.StatusBadRequest, fmt.Errorf("tether plugin: malformed %s request: %w", method, err))
		return
	}
	if c.volume != "" {
		log = log.With("volume", c.volume)
	}
	if c.mountID != "" {
		log = log.With("mountId", c.mountID)
	}
	log.Info("plugin request")
	resp, err := c.run(r.Context())
	if err != nil {
		h.fail(w, log, start, http.StatusInternalServerError, err)
		return
	}
	log.Info("plugin reply", "durationMs", msSince(start))
	reply(w, http.StatusOK, resp)
}

func (h *handler) fail(w http.ResponseWriter, log *slog.Logger, start time.Time, status int, err error) {
	log.Error("plugin reply", "status", status, "error", err.Error(), "durationMs", msSince(start))
	reply(w, status, ErrorResponse{Err: err.Error()})
}

func reply(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only a driver returning an unencodable Status could get here.
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorResponse{Err: "tether plugin: encoding the answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func msSince(t time.Time) float64 {
	return float64(time.Since(t).Microseconds()) / 1000
}
