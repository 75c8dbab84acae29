// Command tetherchaos is `make chaos`: one seeded chaos run of tether in
// the local AWS world (test/chaos), configured by CHAOS_SEED,
// CHAOS_HANDOFFS, CHAOS_KINDS (-kind,... leaves kinds out; the opt-in kinds
// of hosts that go away, scale-in, spot-interrupt and hang-member, with
// their undo launch-member, are drawn only when named), CHAOS_WEIGHTS
// (kind=weight,... aims a run at faults), CHAOS_FAULTS, CHAOS_TEAR_RATE,
// CHAOS_INTERVAL, CHAOS_PROFILE, CHAOS_SHAPE (a smaller cluster, to
// minimise a failing seed), CHAOS_MAX_RUN and CHAOS_KEEP_GOING (CHAOS_LOG:
// where the world's JSON log, every chaos operation in it, and then the
// functions' output go, kept; by default it is kept only when the run
// fails). It prints the run's tables and exits 1 on any violation (with
// the seed, the operations before it and the command that replays it), 2
// when the run could not be carried out.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/tether-ecs/tether/test/chaos"
)

func main() { os.Exit(run()) }

func run() int {
	cfg, err := chaos.ConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tetherchaos: %v\n", err)
		return 2
	}
	logPath, keep := os.Getenv("CHAOS_LOG"), true
	if logPath == "" {
		logPath, keep = filepath.Join(os.TempDir(), fmt.Sprintf("tetherchaos-%d.log", cfg.Seed)), false
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tetherchaos: world log: %v\n", err)
		return 2
	}
	defer logFile.Close()
	cfg.Progress, cfg.WorldLog, cfg.FunctionLog = os.Stderr, logFile, logFile
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := chaos.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tetherchaos: %v (world log: %s)\n", err, logPath)
		return 2
	}
	rep.Print(os.Stdout)
	if rep.Broken() {
		fmt.Printf("\nFAILED: %d violations; world log: %s\n", len(rep.Violations), logPath)
		return 1
	}
	if !keep {
		logFile.Close()
		os.Remove(logPath)
	}
	return 0
}
