package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/lambdarun"
	"github.com/tether-ecs/tether/test/world/samlocal"
)

// FunctionIDs are the template's functions, by logical id, as `sam build`
// builds them (functions/Makefile: build-<logical id>).
var FunctionIDs = []string{"TaskStateFunction", "DrainFunction", "SweepFunction"}

// BootstrapSizes builds every function as SAM ships it (the Makefile's
// build-<logical id> target: static, stripped, linux/arm64) into dir and
// returns each bootstrap's size in bytes.
func BootstrapSizes(ctx context.Context, root, dir string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, id := range FunctionIDs {
		artifacts := filepath.Join(dir, id)
		if err := os.MkdirAll(artifacts, 0o755); err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, "make", "-s", "-C", filepath.Join(root, "functions"), "build-"+id, "ARTIFACTS_DIR="+artifacts)
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("bench: make build-%s: %w\n%s", id, err, b)
		}
		fi, err := os.Stat(filepath.Join(artifacts, "bootstrap"))
		if err != nil {
			return nil, fmt.Errorf("bench: build-%s left no bootstrap: %w", id, err)
		}
		out[id] = fi.Size()
	}
	return out, nil
}

// coldInitPayload is an invocation each function accepts without work
// for the others: an empty SQS batch, or the schedule's event for sweep.
func coldInitPayload(id string) []byte {
	if id == "SweepFunction" {
		return []byte(`{"version":"0","id":"00000000-0000-0000-0000-000000000000","detail-type":"Scheduled Event",` +
			`"source":"aws.events","account":"123456789012","time":"2025-01-01T00:00:00Z","region":"us-west-2",` +
			`"resources":["arn:aws:events:us-west-2:123456789012:rule/tether-sweep"],"detail":{}}`)
	}
	return []byte(`{"Records":[]}`)
}

// ColdInits starts each deployed function's native bootstrap (from
// bootstraps/<package>/bootstrap) under the runtime interface emulator
// rounds times, each a fresh process, with the environment the template
// gives it, and returns the emulator's init durations per function.
func ColdInits(ctx context.Context, bootstraps string, fns map[string]samlocal.Function, region string, rounds int, log *slog.Logger) (map[string][]time.Duration, error) {
	out := map[string][]time.Duration{}
	for _, id := range FunctionIDs {
		fn, ok := fns[id]
		if !ok {
			return nil, fmt.Errorf("bench: the deployment has no %s", id)
		}
		for range rounds {
			d, err := coldInit(ctx, lambdarun.Config{
				Bootstrap: filepath.Join(bootstraps, fn.Package, "bootstrap"), FunctionName: fn.Name, Env: fn.Env,
				Region: region, Timeout: fn.Timeout, MemoryMB: fn.MemoryMB, Logger: log,
			}, coldInitPayload(id))
			if err != nil {
				return nil, fmt.Errorf("bench: cold init of %s: %w", id, err)
			}
			out[id] = append(out[id], d)
		}
	}
	return out, nil
}

func coldInit(ctx context.Context, cfg lambdarun.Config, payload []byte) (time.Duration, error) {
	f, err := lambdarun.Start(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer f.Stop()
	// A function error is fine: the init happened before it.
	if _, err := f.Invoke(ctx, payload); err != nil {
		var fe *lambdarun.FunctionError
		if !errors.As(err, &fe) {
			return 0, fmt.Errorf("invoke: %w\n%s", err, tail(f.Output(), 20))
		}
	}
	d, ok := f.InitDuration()
	if !ok {
		return 0, fmt.Errorf("the emulator reported no init duration\n%s", tail(f.Output(), 20))
	}
	return d, nil
}

// FunctionRows adds bootstrap_bytes and cold_init_ms to the report.
func FunctionRows(r *Report, sizes map[string]int64, inits map[string][]time.Duration) {
	if len(sizes) > 0 {
		var biggest int64
		var parts []string
		for _, id := range FunctionIDs {
			biggest = max(biggest, sizes[id])
			parts = append(parts, fmt.Sprintf("%s %.1f MiB", id, float64(sizes[id])/(1<<20)))
		}
		r.Results.BootstrapBytes = Ptr(biggest)
		r.Add("bootstrap_bytes", fmt.Sprint(biggest), "small", "largest arm64 bootstrap as sam build makes it: "+strings.Join(parts, ", "))
	}
	if len(inits) > 0 {
		var worst time.Duration
		var parts []string
		for _, id := range FunctionIDs {
			m := Median(inits[id])
			worst = max(worst, m)
			parts = append(parts, fmt.Sprintf("%s %.1fms", id, float64(m.Microseconds())/1000))
		}
		ms := float64(worst.Microseconds()) / 1000
		r.Results.ColdInitMs = Ptr(ms)
		r.Add("cold_init_ms", fmt.Sprintf("%.1f", ms), "small", fmt.Sprintf("slowest function's median of %d cold starts under aws-lambda-rie (native build): %s",
			len(inits[FunctionIDs[0]]), strings.Join(parts, ", ")))
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := bytes.Split([]byte(s), []byte("\n"))
	return string(bytes.Join(lines[max(0, len(lines)-n):], []byte("\n")))
}
