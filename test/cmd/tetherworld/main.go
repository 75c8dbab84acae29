// Command tetherworld runs one local AWS world (test/world/world) until it
// gets SIGINT or SIGTERM, then tears it down.
//
//	tetherworld --instances N --azs K --profile instant|realistic --hosts real|fake
//	            --functions inprocess|rie|none [--seed S] [--env-file F] [--log json|text]
//	            [--mysql auto|off|ARCHIVE] [--image REF=TAR ...]
//
// Real hosts get the image the seed walkthrough runs, mysql:latest (MariaDB
// from Debian, test/images/mariadb/build.sh, built once and cached), so the
// seed's steps typed by hand start their task; --mysql off leaves it out.
//
// It builds what it needs (tether-agent with `go build` for real hosts, the
// functions' bootstraps with functions/Makefile for rie), starts the world,
// and as soon as it is ready prints on stdout
//
//	AWS_ENDPOINT_URL=http://127.0.0.1:PORT
//	TETHER_WORLD_ENV=<file>
//
// where <file> holds `export` lines (endpoint, region, dummy credentials, the
// seed stack's outputs) to source before using the aws CLI or the seed's
// scripts. Logs go to stderr. Exit status: 0 after a clean teardown, 1 if
// the world failed to start or to tear down, 2 for bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	seedimages "github.com/tether-ecs/tether/test/images"
	"github.com/tether-ecs/tether/test/world/hosts"
	"github.com/tether-ecs/tether/test/world/world"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// images collects repeated --image REF=TAR flags.
type images []hosts.Image

func (im *images) String() string { return fmt.Sprint(*im) }

func (im *images) Set(v string) error {
	ref, tar, ok := strings.Cut(v, "=")
	if !ok || tar == "" {
		return errors.New("want REF=TAR (a rootfs tar imported as REF) or =TAR (a docker save archive)")
	}
	*im = append(*im, hosts.Image{Ref: ref, Tar: tar})
	return nil
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tetherworld", flag.ContinueOnError)
	fs.SetOutput(stderr)
	instances := fs.Int("instances", 2, "instances in the cluster")
	azs := fs.Int("azs", 1, "availability zones (us-west-2a, us-west-2b, ...)")
	profile := fs.String("profile", "realistic", "latency profile: instant, realistic, or either *FACTOR (realistic*0.1)")
	hostKind := fs.String("hosts", "real", "instances: real (namespaces with dockerd and tether-agent; root) or fake (in memory)")
	functions := fs.String("functions", "rie", "tether's functions: inprocess, rie (real bootstraps under aws-lambda-rie) or none")
	seed := fs.Uint64("seed", 1, "seed of ids, latencies and faults")
	envFile := fs.String("env-file", "", "where to write the export lines (default: in the world's directory)")
	logFormat := fs.String("log", "text", "log format on stderr: json or text")
	dir := fs.String("dir", "", "parent of the world's directory (default: the system's temporary directory)")
	cacheDir := fs.String("cache-dir", "", "image cache: the busybox rootfs and the mysql archive (default ~/.cache/tether)")
	mysql := fs.String("mysql", "auto", "the seed's mysql image on real hosts: auto (build once, cached), off, or a docker-load ARCHIVE")
	var imgs images
	fs.Var(&imgs, "image", "extra image for real hosts, REF=ROOTFS.tar or =SAVED.tar (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tetherworld: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return 2
	}
	var handler slog.Handler
	switch *logFormat {
	case "json":
		handler = slog.NewJSONHandler(stderr, nil)
	case "text":
		handler = slog.NewTextHandler(stderr, nil)
	default:
		fmt.Fprintf(stderr, "tetherworld: --log %q: want json or text\n", *logFormat)
		return 2
	}
	log := slog.New(handler)
	opts := world.Options{
		Instances: *instances, AZs: *azs, Profile: *profile, Seed: *seed,
		Hosts: world.HostKind(*hostKind), Functions: world.FunctionsMode(*functions),
		Images: imgs, CacheDir: *cacheDir, Dir: *dir, Logger: log,
	}

	// Signals are caught from the start: one during Start cancels it, and
	// more during the teardown do not cut it short.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan os.Signal, 1)
	go func() {
		first := true
		for s := range sigs {
			if first {
				first = false
				stopped <- s
				cancel()
				continue
			}
			log.Warn("still tearing the world down; please wait", "signal", s.String())
		}
	}()

	if *hostKind == string(world.RealHosts) && *mysql != "off" {
		archive, err := mysqlImage(ctx, *mysql, *cacheDir, log)
		if err != nil {
			log.Error("the seed's mysql image", "err", err)
			return 1
		}
		opts.Images = append(opts.Images, hosts.Image{Tar: archive})
	}
	w, err := world.Start(ctx, opts)
	if err != nil {
		log.Error("the world did not start", "err", err)
		if errors.Is(err, world.ErrBadOptions) {
			return 2
		}
		return 1
	}
	path := *envFile
	if path == "" {
		path = filepath.Join(w.Dir(), "world.env")
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if err := w.WriteEnvFile(path); err != nil {
		log.Error("env file", "err", err)
		return closeWorld(log, w, 1)
	}
	fmt.Fprintf(stdout, "AWS_ENDPOINT_URL=%s\nTETHER_WORLD_ENV=%s\n", w.Endpoint(), path)
	log.Info("world running; SIGINT or SIGTERM tears it down", "endpoint", w.Endpoint(), "env", path,
		"instances", len(w.Instances()), "cluster", w.Options().Cluster, "stack", world.SeedStack)

	s := <-stopped
	log.Info("tearing the world down", "signal", s.String())
	code := closeWorld(log, w, 0)
	if *envFile != "" {
		// The file points at a world that is gone.
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("env file not removed", "path", path, "err", err)
		}
	}
	return code
}

// mysqlImage is --mysql's archive: given, or built (cached) by test/images.
func mysqlImage(ctx context.Context, flag, cacheDir string, log *slog.Logger) (string, error) {
	if flag != "auto" {
		if _, err := os.Stat(flag); err != nil {
			return "", fmt.Errorf("--mysql %q: %w", flag, err)
		}
		return flag, nil
	}
	root, err := world.RepoRoot()
	if err != nil {
		return "", err
	}
	log.Info("finding or building the seed's mysql image (the first build takes about a minute)")
	a, err := seedimages.MySQL(ctx, root, cacheDir, logLines{log}, 15*time.Second)
	if err != nil {
		return "", err
	}
	log.Info("mysql image ready", "archive", a.Path, "built", a.Built, "took", a.Took.Round(time.Millisecond).String())
	return a.Path, nil
}

// logLines logs each line written to it.
type logLines struct{ log *slog.Logger }

func (l logLines) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		if line != "" {
			l.log.Info(line)
		}
	}
	return len(p), nil
}

func closeWorld(log *slog.Logger, w *world.World, code int) int {
	if err := w.Close(); err != nil {
		log.Error("teardown", "err", err)
		return 1
	}
	log.Info("world torn down")
	return code
}
