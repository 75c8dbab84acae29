// Command tetherdemo is `make demo`: the seed walkthrough (AWS Compute
// Blog, "Amazon ECS and Docker volume drivers, part 1: Amazon EBS") with
// tether instead of REX-Ray, on a local AWS world of two real instances,
// replayed with the real aws CLI; MySQL (MariaDB) keeps its row across a
// drain. It builds what it needs, starts the world, replays the seed, tears
// the world down and prints a summary. Exit 0 only when the row came back.
//
//	tetherdemo [-profile realistic] [-functions rie|inprocess] [-image PATH]
//	           [-agent PATH] [-bootstraps DIR] [-dir DIR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.profile, "profile", "realistic", "latency profile of the world (instant, realistic, realistic*0.5...)")
	flag.StringVar(&o.image, "image", "", "the mysql image archive (docker load); default: test/images/mariadb/build.sh, cached")
	flag.StringVar(&o.agent, "agent", "", "tether-agent binary; default: built")
	flag.StringVar(&o.bootstraps, "bootstraps", "", "directory of the functions' bootstraps (<fn>/bootstrap); default: built")
	flag.StringVar(&o.functions, "functions", "rie", "how tether's functions run: rie (the real bootstraps under the Lambda runtime interface emulator) or inprocess")
	flag.StringVar(&o.dir, "dir", "", "where the run's directory goes (default: the system's temporary directory)")
	flag.Parse()
	if o.functions != "rie" && o.functions != "inprocess" {
		fmt.Fprintf(os.Stderr, "tetherdemo: -functions %q: want rie or inprocess\n", o.functions)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, o, os.Stdout))
}

type options struct {
	profile, image, agent, bootstraps, functions, dir string
}

// run returns the exit code: 0 when the row came back and the world was
// torn down clean, 1 otherwise.
func run(ctx context.Context, o options, out io.Writer) int {
	parent := o.dir
	if parent == "" {
		parent = os.TempDir()
	}
	runDir, err := os.MkdirTemp(parent, "tetherdemo-"+time.Now().Format("20060102-150405")+"-")
	if err != nil {
		fmt.Fprintf(out, "tetherdemo: %v\n", err)
		return 1
	}
	d := &demoRun{opts: o, out: out, runDir: runDir, start: time.Now()}
	d.p.Out = out
	err = d.run(ctx)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", errInterrupted, err)
	}
	// Teardown always, also after Ctrl-C.
	terr := d.teardown()
	d.summary(err, terr)
	if err != nil || terr != nil {
		return 1
	}
	return 0
}

// logsDir is where the run keeps its logs (kept after the run).
func (d *demoRun) logsDir() string { return filepath.Join(d.runDir, "logs") }

// errInterrupted: the person pressed Ctrl-C.
var errInterrupted = errors.New("interrupted")
