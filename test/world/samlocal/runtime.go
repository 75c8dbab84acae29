package samlocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/tether-ecs/tether/test/world/eventbus"
	"github.com/tether-ecs/tether/test/world/lambdarun"
)

// Runtime runs the template's functions: in-process (InProcess) or as real
// bootstraps under the Lambda runtime interface emulator (Emulator).
type Runtime interface {
	Start(ctx context.Context, fn Function) (Running, error)
}

// Running is one started function.
type Running interface {
	eventbus.Invoker
	// Output is what the function wrote so far (logs, EMF lines).
	Output() string
	Stop() error
}

// Emulator runs each function's bootstrap (built by functions/Makefile's
// bootstraps target, see BuildBootstraps) under aws-lambda-rie, with as
// many execution environments as its reserved concurrency allows, at most
// Environments.
type Emulator struct {
	Bootstraps   string // <Bootstraps>/<package>/bootstrap
	RIE          string // aws-lambda-rie; lambdarun.FindRIE when empty
	Region       string
	Environments int // per function, default 2
	Logger       *slog.Logger
}

// Start implements Runtime.
func (e Emulator) Start(ctx context.Context, fn Function) (Running, error) {
	bootstrap := filepath.Join(e.Bootstraps, fn.Package, "bootstrap")
	if _, err := os.Stat(bootstrap); err != nil {
		return nil, fmt.Errorf("samlocal: %s: bootstrap: %w (make -C functions bootstraps OUT=%s)", fn.LogicalID, err, e.Bootstraps)
	}
	n := e.Environments
	if n <= 0 {
		n = 2
	}
	if fn.ReservedConcurrency > 0 {
		n = min(n, fn.ReservedConcurrency)
	}
	pool, err := lambdarun.StartPool(ctx, lambdarun.Config{
		Bootstrap: bootstrap, RIE: e.RIE, FunctionName: fn.Name, Env: fn.Env, Region: e.Region,
		Timeout: fn.Timeout, MemoryMB: fn.MemoryMB, Logger: e.Logger,
	}, n)
	if err != nil {
		return nil, fmt.Errorf("samlocal: %s: %w", fn.LogicalID, err)
	}
	return emulated{pool}, nil
}

type emulated struct{ *lambdarun.Pool }

func (e emulated) Output() string {
	var b strings.Builder
	for i, f := range e.Functions() {
		fmt.Fprintf(&b, "--- environment %d\n%s", i, f.Output())
	}
	return b.String()
}

// HandlerFunc builds one of tether's functions in this process: pkg is the
// function's Go package under functions/ (taskstate, drain, sweep), getenv
// its environment as the template sets it, awsCfg the configuration every
// AWS client of the function must use (the world's endpoint), out where its
// JSON logs and EMF lines go. It returns a handler lambda.Start accepts.
//
// Go's internal-package rule keeps the world from importing
// functions/internal, so the implementation must live under functions/.
type HandlerFunc func(ctx context.Context, pkg string, getenv func(string) string, awsCfg aws.Config, out io.Writer) (any, error)

// InProcess runs the functions as handlers in this process, each invocation
// with the Lambda context the bus gives in-process functions.
type InProcess struct {
	Bus     *eventbus.Bus
	Handler HandlerFunc
	AWS     aws.Config
	// Logs receives every function's output besides Output (nil: only
	// kept for Output).
	Logs io.Writer
}

// Start implements Runtime.
func (p InProcess) Start(ctx context.Context, fn Function) (Running, error) {
	if p.Handler == nil || p.Bus == nil {
		return nil, errors.New("samlocal: InProcess needs Bus and Handler")
	}
	out := &lockedBuffer{}
	var w io.Writer = out
	if p.Logs != nil {
		w = io.MultiWriter(out, p.Logs)
	}
	getenv := func(k string) string { return fn.Env[k] }
	h, err := p.Handler(ctx, fn.Package, getenv, p.AWS, w)
	if err != nil {
		return nil, fmt.Errorf("samlocal: %s in-process: %w", fn.LogicalID, err)
	}
	return inProcess{Invoker: p.Bus.Function(fn.Name, h), out: out}, nil
}

type inProcess struct {
	eventbus.Invoker
	out *lockedBuffer
}

func (p inProcess) Output() string { return p.out.String() }
func (p inProcess) Stop() error    { return nil }

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// BuildBootstraps runs `make -C <functionsDir> bootstraps OUT=<out>`: every
// function's bootstrap, built natively for this machine, as
// <out>/<package>/bootstrap.
func BuildBootstraps(ctx context.Context, functionsDir, out string) error {
	cmd := exec.CommandContext(ctx, "make", "-C", functionsDir, "bootstraps", "OUT="+out)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("samlocal: make -C %s bootstraps OUT=%s: %w\n%s", functionsDir, out, err, log.String())
	}
	return nil
}

// buildTarget finds the Go package a SAM makefile build of logicalID
// builds: the `./<package>` of the recipe under `build-<logicalID>:`.
func buildTarget(makefile, logicalID string) (string, error) {
	raw, err := os.ReadFile(makefile)
	if err != nil {
		return "", err
	}
	re := regexp.MustCompile(`(?m)^build-` + regexp.QuoteMeta(logicalID) + `:.*\n((?:\t.*\n?)+)`)
	m := re.FindSubmatch(raw)
	if m == nil {
		return "", fmt.Errorf("%s has no target build-%s (SAM's makefile build runs it)", makefile, logicalID)
	}
	pkg := regexp.MustCompile(`\s\./([A-Za-z0-9_-]+)\s*$`).FindSubmatch(bytes.TrimRight(m[1], "\n"))
	if pkg == nil {
		return "", fmt.Errorf("%s: build-%s builds no ./<package>", makefile, logicalID)
	}
	return string(pkg[1]), nil
}
