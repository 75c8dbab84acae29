// Command tether-agent is tether's host agent: the Docker volume plugin
// (serve) and the mount, unmount and status commands the reconciler runs
// through SSM. See docs/contracts.md for the command line and exit codes.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes (docs/contracts.md).
const (
	exitOK       = 0
	exitFailed   = 1
	exitBadInput = 2
	exitBusy     = 3
	exitNoDevice = 4
	exitRefused  = 5
)

const usage = `tether-agent: persistent EBS volumes for Amazon ECS tasks

Usage:
  tether-agent serve   [--socket /run/docker/plugins/tether.sock] [--root /var/lib/tether] [--mount-wait 90s]
  tether-agent mount   --volume-id vol-... --name NAME [--fstype ext4|xfs] [--device /dev/xvdf]
                       [--root /var/lib/tether] [--wait 60s] [--json]
  tether-agent unmount --volume-id vol-... --name NAME [--force] [--root /var/lib/tether]
                       [--socket /run/docker/plugins/tether.sock] [--json]
  tether-agent status  [--root /var/lib/tether] [--json]
  tether-agent help

Commands:
  serve    answer dockerd as the "tether" volume plugin on a unix socket
  mount    find the volume's device, make a filesystem if it is blank, mount it
           under <root>/volumes/NAME (and grow it if the device grew)
  unmount  flush and unmount NAME (refused while a container that is starting
           or running holds it, as the plugin counts them and dockerd lists
           them, unless --force)
  status   list every tether volume on this host

Exit codes: 0 done, 1 failed, 2 bad input, 3 busy, 4 device not found,
5 refused (the device holds something tether must not touch).
Logs are JSON lines on stderr; results on stdout.
`

// run runs one command and returns its exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	if len(args) == 0 {
		log.Error("no command given; run tether-agent help")
		return exitBadInput
	}
	cmd, rest := args[0], args[1:]
	log = log.With("command", cmd)
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "mount":
		return runMount(ctx, log, rest, stdout)
	case "unmount":
		return runUnmount(ctx, log, rest, stdout)
	case "status":
		return runStatus(ctx, log, rest, stdout)
	case "serve":
		return runServe(ctx, log, rest)
	}
	log.Error(fmt.Sprintf("unknown command %q; run tether-agent help", cmd))
	return exitBadInput
}
