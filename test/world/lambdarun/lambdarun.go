// Package lambdarun runs a real Lambda function — a `bootstrap` built for
// the provided.al2023 runtime — under the Lambda runtime interface emulator
// (aws-lambda-rie), on free local ports, and invokes it as Lambda's Invoke
// API does. A Function satisfies eventbus.Invoker, so an event source
// mapping can drive it with SQS batches.
package lambdarun

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tether-ecs/tether/test/world/eventbus"
)

// RIEModule is the emulator's module and version the world uses:
// go install RIEModule/cmd/aws-lambda-rie@RIEVersion.
const (
	RIEModule  = "github.com/aws/aws-lambda-runtime-interface-emulator"
	RIEVersion = "v0.0.0-20261030222936-bef5c4ba774d"
)

// ErrRIENotFound: aws-lambda-rie is neither on PATH nor in GOPATH/bin.
var ErrRIENotFound = errors.New("aws-lambda-rie not found (go install " + RIEModule + "/cmd/aws-lambda-rie@" + RIEVersion + ")")

// FindRIE locates aws-lambda-rie: on PATH, else in GOBIN or GOPATH/bin.
func FindRIE() (string, error) {
	if p, err := exec.LookPath("aws-lambda-rie"); err == nil {
		return p, nil
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	if gopath := os.Getenv("GOPATH"); gopath != "" {
		for _, p := range filepath.SplitList(gopath) {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "aws-lambda-rie")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", ErrRIENotFound
}

// Config describes one function.
type Config struct {
	Bootstrap    string            // path to the function's bootstrap executable
	RIE          string            // aws-lambda-rie; FindRIE when empty
	FunctionName string            // default "function"
	Env          map[string]string // the function's environment (AWS_ENDPOINT_URL, TETHER_*...)
	Region       string            // AWS_REGION, default us-west-2
	Timeout      time.Duration     // function timeout, default 30s
	MemoryMB     int               // default 128
	StartTimeout time.Duration     // readiness bound, default 15s
	StopTimeout  time.Duration     // SIGTERM to SIGKILL, default 5s
	Logger       *slog.Logger
}

// FunctionError is a function's error answer (errorType, errorMessage).
type FunctionError struct {
	Type    string `json:"errorType"`
	Message string `json:"errorMessage"`
}

func (e *FunctionError) Error() string { return "function error " + e.Type + ": " + e.Message }

// Function is one running emulator with its bootstrap. Invocations are
// serialised: one emulator runs one invocation at a time, as one Lambda
// execution environment does.
type Function struct {
	cfg  Config
	url  string
	cmd  *exec.Cmd
	log  *slog.Logger
	done chan struct{} // closed when the emulator exits
	err  error         // its exit status, once done

	invokeMu sync.Mutex
	client   *http.Client
	relay    *traceRelay // the bootstrap's runtime API, with the trace header

	mu       sync.Mutex
	output   bytes.Buffer
	initTime time.Duration
	invokes  int
	stopped  bool
}

var initReport = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)

// Start runs the emulator with the bootstrap and waits until it answers.
func Start(ctx context.Context, cfg Config) (*Function, error) {
	if cfg.Bootstrap == "" {
		return nil, errors.New("lambdarun: Config.Bootstrap is required")
	}
	boot, err := filepath.Abs(cfg.Bootstrap)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(boot); err != nil || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("lambdarun: bootstrap %s is not an executable file: %v", boot, err)
	}
	if cfg.RIE == "" {
		if cfg.RIE, err = FindRIE(); err != nil {
			return nil, err
		}
	}
	setDefaults(&cfg)
	// The emulator binds two ports that were free when chosen; another
	// process may take one in between (CI under load). That start fails at
	// once and is made again on new ports, a bounded number of times.
	for attempt := 1; ; attempt++ {
		f, err := start(ctx, cfg, boot)
		var busy *portTakenError
		if !errors.As(err, &busy) || attempt == 3 {
			return f, err
		}
		cfg.Logger.Warn("lambdarun: a port the emulator was given was taken meanwhile; starting it again on others",
			"function", cfg.FunctionName, "attempt", attempt)
	}
}

// portTakenError: the emulator could not bind a port chosen for it.
type portTakenError struct{ err error }

func (e *portTakenError) Error() string { return e.err.Error() }
func (e *portTakenError) Unwrap() error { return e.err }

// startMu makes one start at a time: the ports chosen for an emulator are
// free until it binds them, and another start's relay, listening on a free
// port meanwhile, could be given one of them (the emulator then fails to
// bind, and the relay answers its address with 404s: seen under load when
// a pool started several emulators at once).
var startMu sync.Mutex

func start(ctx context.Context, cfg Config, boot string) (*Function, error) {
	startMu.Lock()
	defer startMu.Unlock()
	envCmd, err := exec.LookPath("env")
	if err != nil {
		return nil, fmt.Errorf("lambdarun: env(1), to point the bootstrap at the trace relay: %w", err)
	}
	// The relay's port first: the emulator's are chosen while it is held.
	ln, err := listenRelay()
	if err != nil {
		return nil, fmt.Errorf("lambdarun: runtime API relay: %w", err)
	}
	apiAddr, err := freeAddr()
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	rieAddr, err := freeAddr()
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	relay := startTraceRelay(ln, apiAddr)
	f := &Function{cfg: cfg, url: "http://" + rieAddr, done: make(chan struct{}), client: &http.Client{}, relay: relay,
		log: cfg.Logger.With("component", "lambdarun", "function", cfg.FunctionName)}
	// The emulator sets AWS_LAMBDA_RUNTIME_API to its own runtime API for
	// the bootstrap; env(1) points the bootstrap at the relay instead.
	f.cmd = exec.Command(cfg.RIE, "--runtime-interface-emulator-address", rieAddr, "--runtime-api-address", apiAddr,
		envCmd, "AWS_LAMBDA_RUNTIME_API="+relay.Addr(), boot)
	f.cmd.Dir = filepath.Dir(boot)
	f.cmd.Env = f.environ()
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the bootstrap is its child: stop both
	pr, pw := io.Pipe()
	f.cmd.Stdout, f.cmd.Stderr = pw, pw
	if err := f.cmd.Start(); err != nil {
		_ = relay.Close()
		return nil, fmt.Errorf("lambdarun: starting %s: %w", cfg.RIE, err)
	}
	go f.collect(pr)
	go func() {
		f.err = f.cmd.Wait()
		_ = pw.Close()
		close(f.done)
	}()
	f.log.Info("emulator started", "pid", f.cmd.Process.Pid, "addr", rieAddr, "bootstrap", boot)
	if err := f.waitReady(ctx); err != nil {
		_ = f.Stop()
		err = fmt.Errorf("lambdarun: %s not ready: %w; output:\n%s", cfg.FunctionName, err, f.Output())
		if strings.Contains(f.Output(), "address already in use") {
			return nil, &portTakenError{err}
		}
		return nil, err
	}
	return f, nil
}

func setDefaults(cfg *Config) {
	if cfg.FunctionName == "" {
		cfg.FunctionName = "function"
	}
	if cfg.Region == "" {
		cfg.Region = "us-west-2"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 128
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 15 * time.Second
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
}

// environ is the function's whole environment: what Lambda sets, dummy
// credentials for the world, then Config.Env. Nothing leaks from the test
// process.
func (f *Function) environ() []string {
	env := map[string]string{
		"AWS_REGION": f.cfg.Region, "AWS_DEFAULT_REGION": f.cfg.Region,
		"AWS_ACCESS_KEY_ID": "AKIDLAMBDAWORLD", "AWS_SECRET_ACCESS_KEY": "world-secret", "AWS_SESSION_TOKEN": "world-session",
		"AWS_LAMBDA_FUNCTION_NAME": f.cfg.FunctionName, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(f.cfg.MemoryMB),
		"AWS_LAMBDA_FUNCTION_TIMEOUT":     strconv.Itoa(int(f.cfg.Timeout / time.Second)),
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/" + f.cfg.FunctionName, "LOG_LEVEL": "info",
		"TZ": ":UTC", "LANG": "en_US.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin",
	}
	for k, v := range f.cfg.Env {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func (f *Function) collect(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f.mu.Lock()
		f.output.WriteString(line + "\n")
		if m := initReport.FindStringSubmatch(line); m != nil && f.initTime == 0 {
			if ms, err := strconv.ParseFloat(m[1], 64); err == nil {
				f.initTime = time.Duration(ms * float64(time.Millisecond))
			}
		}
		f.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("lambdarun: no free port: %w", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr, nil
}

// waitReady polls the emulator's HTTP server (any answer will do: it has
// only the invocation route) while watching the process.
func (f *Function) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.StartTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.url+"/", nil)
		if resp, err := f.client.Do(req); err == nil {
			_ = resp.Body.Close()
			return nil
		}
		select {
		case <-f.done:
			return fmt.Errorf("emulator exited: %v", f.err)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to answer: %w", f.url, ctx.Err())
		case <-tick.C:
		}
	}
}

// URL is the emulator's base URL.
func (f *Function) URL() string { return f.url }

// Invoke runs the function once (RequestResponse) and returns its answer; a
// function error comes back as *FunctionError.
func (f *Function) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	f.invokeMu.Lock()
	defer f.invokeMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout+5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url+"/2015-03-31/functions/function/invocations", bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	// The invocation's X-Ray trace (an event source mapping's, with the
	// chain's lineage), as Lambda's Invoke takes it; the runtime gets it as
	// Lambda-Runtime-Trace-Id (through the relay: see traceRelay),
	// aws-lambda-go sets _X_AMZN_TRACE_ID from it, and aws-sdk-go-v2 sends
	// that with the function's requests.
	if trace := eventbus.TraceHeader(ctx); trace != "" {
		req.Header.Set(eventbus.TraceIDHeader, trace)
		id, done := f.relay.expect(trace)
		defer done()
		req.Header.Set(invokeRequestID, id)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("lambdarun: invoking %s: %w", f.cfg.FunctionName, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.invokes++
	f.mu.Unlock()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("lambdarun: %s answered HTTP %d: %s", f.cfg.FunctionName, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if fe := asFunctionError(body); fe != nil {
		return nil, fe
	}
	return body, nil
}

// asFunctionError recognises the runtime's error document: an object with
// errorType and errorMessage (and optionally stackTrace), nothing else.
func asFunctionError(body []byte) *FunctionError {
	var doc map[string]json.RawMessage
	if json.Unmarshal(body, &doc) != nil {
		return nil
	}
	_, hasType := doc["errorType"]
	_, hasMsg := doc["errorMessage"]
	if !hasType || !hasMsg {
		return nil
	}
	for k := range doc {
		if k != "errorType" && k != "errorMessage" && k != "stackTrace" {
			return nil
		}
	}
	var fe FunctionError
	if json.Unmarshal(body, &fe) != nil {
		return nil
	}
	return &fe
}

// InitDuration is the cold start the emulator measured (bootstrap start to
// the runtime's first request for work); false before the first invoke.
func (f *Function) InitDuration() (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.initTime, f.initTime > 0
}

// Invocations counts completed invocations.
func (f *Function) Invocations() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.invokes
}

// Output is everything the emulator and the function wrote so far.
func (f *Function) Output() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.output.String()
}

// Stop sends SIGTERM to the emulator's process group, then SIGKILL after
// StopTimeout; idempotent.
func (f *Function) Stop() error {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return nil
	}
	f.stopped = true
	f.mu.Unlock()
	pgid := f.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-f.done:
	case <-time.After(f.cfg.StopTimeout):
		f.log.Warn("emulator ignored SIGTERM; killing", "pid", pgid)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-f.done
	}
	// The runtime may outlive the emulator in its group: make sure it is gone.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	_ = f.relay.Close()
	f.log.Info("emulator stopped", "pid", pgid)
	return nil
}
