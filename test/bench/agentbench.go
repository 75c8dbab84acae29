package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// Metrics are one benchmark's reported figures by unit ("ns/op",
// "ratio", "s/first-mount"...).
type Metrics map[string]float64

// ParseBenchOutput reads `go test -bench` output: every result line's
// figures by benchmark name (without the -GOMAXPROCS suffix).
func ParseBenchOutput(r io.Reader) (map[string]Metrics, error) {
	out := map[string]Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// name, iterations, then value-unit pairs.
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		m := Metrics{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("bench output: %q: value %q: %w", sc.Text(), f[i], err)
			}
			m[f[i+1]] = v
		}
		out[procSuffix.ReplaceAllString(f[0], "")] = m
	}
	return out, sc.Err()
}

var procSuffix = regexp.MustCompile(`-[0-9]+$`)

// AgentFigures are what the agent's benchmarks report.
type AgentFigures struct {
	Format  map[string]float64 // fstype -> s/first-mount of a blank 1 TiB device
	Write   float64            // write-ratio (through tether / direct)
	Read    float64            // read-ratio
	Start   map[string]Metrics // ContainerStart sub-benchmark (attached, mounted) -> figures
	Outputs string             // the go test outputs, for the log
}

// ErrNoFigures: a benchmark printed none of the figures looked for
// (skipped for lack of root or a tool, or failed; its output says).
var ErrNoFigures = errors.New("benchmark reported no figures")

// RunAgentBenchmarks runs the agent's benchmarks as `make bench-agent`
// does, in the repository at root, and reads their ReportMetric figures.
func RunAgentBenchmarks(ctx context.Context, root string, log io.Writer) (AgentFigures, error) {
	var fig AgentFigures
	var outputs bytes.Buffer
	run := func(args ...string) (map[string]Metrics, error) {
		cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-count=1", "-run", "^$"}, args...)...)
		cmd.Dir = root
		var buf bytes.Buffer
		cmd.Stdout = io.MultiWriter(&buf, log)
		cmd.Stderr = io.MultiWriter(&buf, log)
		err := cmd.Run()
		outputs.Write(buf.Bytes())
		parsed, perr := ParseBenchOutput(bytes.NewReader(buf.Bytes()))
		if err != nil {
			return parsed, fmt.Errorf("go test %s: %w", strings.Join(args, " "), err)
		}
		return parsed, perr
	}
	var errs []error
	tetherAgent, err := run("-bench", ".", "-benchtime", "5x", "./agent/cmd/tether-agent/")
	if err != nil {
		errs = append(errs, err)
	}
	fig.Format = map[string]float64{}
	for _, fs := range []string{"ext4", "xfs"} {
		if v, ok := tetherAgent["BenchmarkFirstUseFormat/"+fs+"/1TiB"]["s/first-mount"]; ok {
			fig.Format[fs] = v
		}
	}
	tp := tetherAgent["BenchmarkThroughput"]
	fig.Write, fig.Read = tp["write-ratio"], tp["read-ratio"]
	if len(fig.Format) == 0 || tp == nil {
		errs = append(errs, fmt.Errorf("tether-agent benchmarks: %w", ErrNoFigures))
	}
	driver, err := run("-bench", "ContainerStart", "-benchtime", "30x", "./agent/driver/")
	if err != nil {
		errs = append(errs, err)
	}
	fig.Start = map[string]Metrics{}
	for _, sub := range []string{"attached", "mounted"} {
		if m, ok := driver["BenchmarkContainerStart/"+sub]; ok {
			fig.Start[sub] = m
		}
	}
	if fig.Start["attached"] == nil {
		errs = append(errs, fmt.Errorf("driver benchmark: %w", ErrNoFigures))
	}
	fig.Outputs = outputs.String()
	return fig, errors.Join(errs...)
}

// AgentRows adds the agent's figures to the report: mount_overhead_ratio
// is the "attached" container start (every start remounts the volume, the
// steady state of a task restarted on its instance); data_path_ratio the
// worse of the write and read ratios; format_1tib_seconds the slower
// filesystem.
func AgentRows(r *Report, fig AgentFigures) {
	if a := fig.Start["attached"]; a != nil {
		r.Results.MountOverheadRatio = Ptr(a["ratio"])
		detail := fmt.Sprintf("attached: tether %.0fms / local %.0fms (min-ratio %.3f, paired delta %.0fms, plugin Mount %.0fms)",
			a["tether-ms"], a["local-ms"], a["min-ratio"], a["paired-delta-ms"], a["Mount-ms"])
		if m := fig.Start["mounted"]; m != nil {
			detail += fmt.Sprintf("; mounted: ratio %.3f (min-ratio %.3f)", m["ratio"], m["min-ratio"])
		}
		r.Add("mount_overhead_ratio", Ratio(a["ratio"]), "≤ 1.05", detail)
	} else {
		r.Add("mount_overhead_ratio", "n/a", "≤ 1.05", "the driver benchmark reported nothing (see its output)")
	}
	if fig.Write > 0 && fig.Read > 0 {
		r.Results.DataPathRatio = Ptr(min(fig.Write, fig.Read))
		r.Add("data_path_ratio", Ratio(min(fig.Write, fig.Read)), "≈ 1", fmt.Sprintf("worse of write-ratio %.3f, read-ratio %.3f (throughput through tether / direct)", fig.Write, fig.Read))
	} else {
		r.Add("data_path_ratio", "n/a", "≈ 1", "the throughput benchmark reported nothing")
	}
	if len(fig.Format) > 0 {
		worst, parts := 0.0, []string{}
		for _, fs := range []string{"ext4", "xfs"} {
			if v, ok := fig.Format[fs]; ok {
				worst = max(worst, v)
				parts = append(parts, fmt.Sprintf("%s %.3fs", fs, v))
			}
		}
		r.Results.Format1TiBSeconds = Ptr(worst)
		r.Add("format_1tib_seconds", fmt.Sprintf("%.3f", worst), "≤ 1", "slower of "+strings.Join(parts, ", ")+" (tether-agent mount of a blank 1 TiB device)")
	} else {
		r.Add("format_1tib_seconds", "n/a", "≤ 1", "the format benchmark reported nothing")
	}
}
