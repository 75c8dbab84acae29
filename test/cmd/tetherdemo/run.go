package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/demo"
	"github.com/tether-ecs/tether/test/images"
	"github.com/tether-ecs/tether/test/world/hosts"
	"github.com/tether-ecs/tether/test/world/lambdarun"
	"github.com/tether-ecs/tether/test/world/world"
)

// demoRun is one run of the demo.
type demoRun struct {
	opts   options
	out    io.Writer
	p      demo.Progress
	runDir string
	start  time.Time

	logFile *os.File
	w       *world.World

	result   demo.Result
	timings  []timing
	imageHow string
	left     []string
}

type timing struct {
	what string
	took time.Duration
}

func (d *demoRun) timed(what string, took time.Duration) {
	d.timings = append(d.timings, timing{what, took})
}

func (d *demoRun) run(ctx context.Context) error {
	fmt.Fprintf(d.out, "tether demo: the seed walkthrough (AWS Compute Blog, \"Amazon ECS and Docker volume drivers,\n"+
		"part 1: Amazon EBS\") with \"driver\": \"tether\", on a local AWS world, with the real aws CLI.\n"+
		"Run directory (logs, the walkthrough's files): %s\n", d.runDir)
	if err := preflight(); err != nil {
		return &demo.StepError{Step: "setup", Err: err}
	}
	root, err := world.RepoRoot()
	if err != nil {
		return &demo.StepError{Step: "setup", Err: err}
	}
	var rie string
	if d.opts.functions == "rie" {
		if rie, err = lambdarun.FindRIE(); err != nil {
			return &demo.StepError{Step: "setup", Err: err}
		}
	}
	if err := os.MkdirAll(d.logsDir(), 0o755); err != nil {
		return &demo.StepError{Step: "setup", Err: err}
	}

	if rie != "" {
		d.p.Step("Build tether-agent and the functions' bootstraps")
	} else {
		d.p.Step("Build tether-agent")
	}
	agent, boots, err := d.build(ctx)
	if err != nil {
		return &demo.StepError{Step: "build", Err: err}
	}

	d.p.Step("The image named mysql: MariaDB from Debian (test/images/mariadb/build.sh, cached in ~/.cache/tether)")
	image, err := d.image(ctx, root)
	if err != nil {
		return &demo.StepError{Step: "the mysql image", Err: err}
	}

	d.p.Step("Start the local AWS world: 2 real instances in us-west-2a, %q latencies, tether's template.yaml deployed", d.opts.profile)
	if err := d.startWorld(ctx, agent, boots, rie, image); err != nil {
		return &demo.StepError{Step: "world start", Err: err}
	}

	wt, err := demo.New(demo.WorldTarget(d.w), filepath.Join(d.runDir, "walkthrough"), d.out)
	if err != nil {
		return &demo.StepError{Step: "setup", Err: err}
	}
	d.p.Say("the walkthrough's shell runs in %s with AWS_ENDPOINT_URL=%s, region us-west-2,", wt.Session.Dir(), d.w.Endpoint())
	d.p.Say("dummy credentials and CloudFormationStack=%s (the outputs come from get-outputs.sh)", world.SeedStack)
	d.result, err = wt.RunMySQL(ctx)
	return err
}

// errPrerequisite: the machine lacks something the demo needs (.ci/run
// installs all of it).
var errPrerequisite = errors.New("missing prerequisite (bash .ci/run installs them)")

// preflight checks what the demo needs before it starts anything.
func preflight() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (loop devices, mounts, mount namespaces, dockerd)")
	}
	for _, name := range []string{"go", "make", "bash", "aws", "jq", "mariadb", "dockerd", "docker",
		"nsenter", "losetup", "mount", "mkfs.ext4", "blkid", "busybox"} {
		if _, err := exec.LookPath(name); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", errPrerequisite, strings.Join(missing, ", "))
	}
	return nil
}

// build builds the agent and the bootstraps unless given.
func (d *demoRun) build(ctx context.Context) (agent, boots string, err error) {
	agent, boots = d.opts.agent, d.opts.bootstraps
	bin := filepath.Join(d.runDir, "bin")
	if agent == "" {
		start := time.Now()
		d.p.Say("go build ./agent/cmd/tether-agent (static)")
		if agent, err = world.BuildAgent(ctx, bin); err != nil {
			return "", "", err
		}
		d.timed("agent build", time.Since(start))
	} else {
		d.p.Say("tether-agent: %s", agent)
	}
	if boots == "" && d.opts.functions == "rie" {
		start := time.Now()
		boots = filepath.Join(bin, "functions")
		d.p.Say("make -C functions bootstraps OUT=%s", boots)
		if err = world.BuildBootstraps(ctx, boots); err != nil {
			return "", "", err
		}
		d.timed("bootstraps build", time.Since(start))
	} else if boots != "" {
		d.p.Say("bootstraps: %s", boots)
	}
	return agent, boots, nil
}

// image builds (or finds cached) the mysql image archive.
func (d *demoRun) image(ctx context.Context, root string) (string, error) {
	if d.opts.image != "" {
		d.imageHow = "given"
		d.p.Say("image: %s", d.opts.image)
		return d.opts.image, nil
	}
	// A cold build takes about a minute: say that it is still going.
	a, err := images.MySQL(ctx, root, "", &lineIndent{w: d.out}, 10*time.Second)
	if err != nil {
		return "", err
	}
	d.imageHow = "cached"
	if a.Built {
		d.imageHow = "built"
	}
	d.timed("image ("+d.imageHow+")", a.Took)
	d.p.Say("image %s (%s, %.1fs): %s", images.MySQLRef, d.imageHow, a.Took.Seconds(), a.Path)
	return a.Path, nil
}

func (d *demoRun) startWorld(ctx context.Context, agent, boots, rie, image string) error {
	f, err := os.Create(filepath.Join(d.logsDir(), "world.log"))
	if err != nil {
		return err
	}
	d.logFile = f
	opts := world.Options{
		Instances: 2, AZs: 1, Profile: d.opts.profile, Hosts: world.RealHosts, AgentBinary: agent,
		Images:    []hosts.Image{{Tar: image}},
		Functions: world.EmulatedFunctions, Bootstraps: boots, RIE: rie,
		Dir:    d.runDir,
		Logger: slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if d.opts.functions == "inprocess" {
		opts.Functions, opts.Bootstraps, opts.RIE = world.InProcessFunctions, "", ""
	}
	d.p.Say("functions: %s", d.functionsHow())
	d.p.Say("each instance: its own mount namespace, dockerd, tether-agent serving the plugin; the mysql image loaded")
	start := time.Now()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(d.out, "    … waiting for the world to start: 2 instances booting, images loading (%s)\n", time.Since(start).Round(time.Second))
			}
		}
	}()
	w, err := world.Start(ctx, opts)
	close(done)
	if err != nil {
		return err
	}
	d.w = w
	d.timed("world start", time.Since(start))
	d.p.Say("world ready after %.1fs: endpoint %s (EC2, ECS, SSM, SQS, CloudFormation)", time.Since(start).Seconds(), w.Endpoint())
	for _, in := range w.Instances() {
		d.p.Say("instance %s in %s, container instance %s", in.ID, in.AZ, in.ContainerInstanceArn)
	}
	if dep := w.Deployment(); dep != nil {
		d.p.Say("template.yaml deployed as stack %q: functions %s; rules %s; queues %s; SSM documents %s",
			dep.StackName, keys(dep.Functions), strings.Join(dep.Rules, ", "), keys(dep.Queues), values(dep.Documents))
	}
	return nil
}

// teardown saves the functions' and agents' logs, closes the world and
// checks that nothing of it is left.
func (d *demoRun) teardown() error {
	d.p.Step("Tear the world down")
	var errs []error
	if d.w != nil {
		for id, out := range d.w.FunctionOutput() {
			_ = os.WriteFile(filepath.Join(d.logsDir(), "function-"+id+".log"), []byte(out), 0o644)
		}
		for id, path := range d.w.AgentLogs() {
			if raw, err := os.ReadFile(path); err == nil {
				_ = os.WriteFile(filepath.Join(d.logsDir(), "tether-agent-"+id+".log"), raw, 0o644)
			}
		}
		for _, in := range d.w.Instances() {
			if h, ok := d.w.RealHost(in.ID); ok {
				if raw, err := os.ReadFile(h.Machine().DockerdLog()); err == nil {
					_ = os.WriteFile(filepath.Join(d.logsDir(), "dockerd-"+in.ID+".log"), raw, 0o644)
				}
			}
		}
		start := time.Now()
		if err := d.w.Close(); err != nil {
			errs = append(errs, fmt.Errorf("world close: %w", err))
		}
		d.timed("teardown", time.Since(start))
	}
	// Also after a failed Start, which tears down what it started.
	d.left = demo.Leftovers(d.runDir)
	if len(d.left) > 0 {
		errs = append(errs, fmt.Errorf("left behind: %s", strings.Join(d.left, "; ")))
	} else {
		d.p.Say("nothing left: no loop device, mount, dockerd, tether-agent or emulator of the world remains")
	}
	if d.logFile != nil {
		d.logFile.Close()
	}
	// The binaries built for this run go; the logs and the walkthrough's
	// files stay.
	if err := os.RemoveAll(filepath.Join(d.runDir, "bin")); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// functionsHow says how tether's functions run.
func (d *demoRun) functionsHow() string {
	if d.opts.functions == "inprocess" {
		return "in this process (functions/boot.Handler, the mains' own wiring), fed by the same queues and rules"
	}
	return "the real bootstraps under aws-lambda-rie (the Lambda runtime interface emulator), fed by the template's queues and rules"
}

func keys[V any](m map[string]V) string {
	return strings.Join(slices.Sorted(maps.Keys(m)), ", ")
}

func values(m map[string]string) string {
	return strings.Join(slices.Sorted(maps.Values(m)), ", ")
}

// lineIndent indents what it passes on by four spaces per line.
type lineIndent struct {
	w       io.Writer
	midLine bool
}

func (l *lineIndent) Write(b []byte) (int, error) {
	for _, c := range b {
		if !l.midLine {
			if _, err := io.WriteString(l.w, "    "); err != nil {
				return 0, err
			}
		}
		if _, err := l.w.Write([]byte{c}); err != nil {
			return 0, err
		}
		l.midLine = c != '\n'
	}
	return len(b), nil
}
