package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/demo"
)

// summary prints how the run went; on failure, which step failed, what the
// functions and agents said last, and where the logs are.
func (d *demoRun) summary(err, teardownErr error) {
	r := d.result
	d.p.Step("Summary")
	if err == nil {
		d.p.Say("OK: the row came back: %s (rexraydb.pets)", strings.Join(r.Rows, ", "))
	} else {
		var se *demo.StepError
		step, cause := "the demo", err
		if errors.As(err, &se) {
			step, cause = se.Step, se.Err
		}
		if errors.Is(err, errInterrupted) {
			d.p.Say("INTERRUPTED during %s", step)
		} else {
			d.p.Say("FAILED at %s:", step)
			d.p.Say("  %s", cause)
		}
		if errors.Is(err, demo.ErrRowLost) {
			d.p.Say("  the replacement task runs, but the data written before the drain is not there")
		}
	}
	if r.VolumeBefore.ID != "" {
		d.p.Say("EBS volume:       %s (%s, %d GiB, %s)%s", r.VolumeBefore.ID, r.VolumeBefore.Type, r.VolumeBefore.SizeGiB, r.VolumeBefore.AZ,
			map[bool]string{true: ", the same before and after the drain", false: ""}[r.VolumeAfter.ID == r.VolumeBefore.ID])
	}
	if r.First.InstanceID != "" {
		d.p.Say("instance before:  %s (task %s)", r.First.InstanceID, r.First.ID)
	}
	if r.Second.InstanceID != "" {
		d.p.Say("instance after:   %s (task %s)", r.Second.InstanceID, r.Second.ID)
	}
	if r.Handoff > 0 {
		d.p.Say("handoff:          %.1fs from drain issued to the replacement task RUNNING with MySQL answering", r.Handoff.Seconds())
		if r.OldStopped > 0 {
			d.p.Say("                  (old task STOPPED %.1fs, replacement RUNNING %.1fs, MySQL answering %.1fs after the drain)",
				r.OldStopped.Seconds(), r.NewRunning.Seconds(), r.Handoff.Seconds())
		}
	}
	if r.FirstAnswering > 0 {
		d.p.Say("first start:      task RUNNING %.1fs, MySQL answering %.1fs after create-service (new volume, mkfs, database initialised)",
			r.FirstRunning.Seconds(), r.FirstAnswering.Seconds())
	}
	parts := make([]string, len(d.timings))
	for i, t := range d.timings {
		parts[i] = fmt.Sprintf("%s %.1fs", t.what, t.took.Seconds())
	}
	d.p.Say("timings:          %s", strings.Join(parts, ", "))
	d.p.Say("whole run:        %s", time.Since(d.start).Round(time.Second))
	d.p.Say("functions:        %s", d.functionsHow())
	if teardownErr != nil {
		d.p.Say("TEARDOWN FAILED: %s", teardownErr)
	}
	if err != nil && !errors.Is(err, errInterrupted) {
		d.showLastErrors()
	}
	d.p.Say("logs:             %s (world.log, function-*.log, tether-agent-*.log, dockerd-*.log)", d.logsDir())
	d.p.Say("walkthrough:      %s (the seed's scripts and the JSON they wrote)", filepath.Join(d.runDir, "walkthrough"))
}

// showLastErrors prints the last error and warning lines of the functions
// and agents: where a failed walkthrough usually shows its cause.
func (d *demoRun) showLastErrors() {
	files, _ := filepath.Glob(filepath.Join(d.logsDir(), "*.log"))
	slices.Sort(files)
	shown := false
	for _, f := range files {
		if filepath.Base(f) == "world.log" {
			continue
		}
		lines := lastMatching(f, 6, func(l string) bool {
			// A plugin Get of a volume not created yet is how Docker asks
			// before Create: not a fault.
			if strings.Contains(l, `"method":"VolumeDriver.Get"`) {
				return false
			}
			return strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, `"level":"WARN"`) ||
				strings.Contains(l, "[ERROR]") || strings.Contains(l, "[WARNING]") // the emulator's own
		})
		if len(lines) == 0 {
			continue
		}
		if !shown {
			d.p.Say("last errors and warnings:")
			shown = true
		}
		d.p.Say("  %s:", filepath.Base(f))
		for _, l := range lines {
			d.p.Say("    %s", truncate(l, 400))
		}
	}
	d.showWorldWarnings()
}

// showWorldWarnings sums up the world's warnings and errors (failed
// invocations, redeliveries, refused calls) by message, with an example.
func (d *demoRun) showWorldWarnings() {
	type kind struct {
		n       int
		example string
	}
	kinds := map[string]*kind{}
	for _, l := range lastMatching(filepath.Join(d.logsDir(), "world.log"), 5000, func(l string) bool {
		return strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, `"level":"WARN"`)
	}) {
		var rec struct{ Level, Msg, Component, Err string }
		if json.Unmarshal([]byte(l), &rec) != nil {
			continue
		}
		key := rec.Level + " " + rec.Component + ": " + rec.Msg
		if kinds[key] == nil {
			kinds[key] = &kind{}
		}
		kinds[key].n++
		kinds[key].example = rec.Err
	}
	if len(kinds) == 0 {
		return
	}
	d.p.Say("world.log warnings and errors:")
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		d.p.Say("  %dx %s (last: %s)", kinds[k].n, k, truncate(kinds[k].example, 200))
	}
}

// lastMatching returns the last n lines of path that match.
func lastMatching(path string, n int, match func(string) bool) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		if l := sc.Text(); match(l) {
			out = append(out, l)
			if len(out) > n {
				out = out[1:]
			}
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
