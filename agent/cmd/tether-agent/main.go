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

	"github.com/tether-ecs/tether/agent/agentlog"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// version is the release, stamped at build: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	log := slog.New(agentlog.ForStderr(os.Stderr))
	code := run(ctx, os.Args[1:], os.Stdout, log)
	stop()
	os.Exit(code)
}

const usage = `tether-agent: persistent EBS volumes for Amazon ECS tasks

Usage:
  tether-agent serve   [--socket /run/docker/plugins/tether.sock] [--root /var/lib/tether]
                       [--mount-wait 90s] [--shutdown-grace 30s]
  tether-agent mount   --volume-id vol-... --name NAME [--fstype ext4|xfs] [--format-if-blank]
                       [--device /dev/xvdf] [--size-gib N] [--attachment TOKEN] [--dev-suid]
                       [--format-owner UID[:GID]] [--wait 60s] [--lock-wait 60s] [--root /var/lib/tether] [--json]
  tether-agent unmount --volume-id vol-...[,vol-...] --name NAME[,NAME] [--force]
                       [--attachment TOKEN[,TOKEN]] [--lock-wait 60s] [--root /var/lib/tether]
                       [--socket /run/docker/plugins/tether.sock] [--json]
  tether-agent status  [--root /var/lib/tether] [--json]
  tether-agent version [--json]
  tether-agent help | COMMAND -h

Commands:
  serve    answer dockerd as the "tether" volume plugin on a unix socket
  mount    find the volume's device and mount it under <root>/volumes/NAME;
           a device without a filesystem is formatted only with
           --format-if-blank and only once it proves blank
  unmount  flush and unmount NAME; succeeds only when the kernel holds the
           device nowhere on this host (refused while containers hold it,
           unless --force, which still needs the kernel's agreement); up to
           24 volumes at once: lists joined by ",", item i of each is volume i
  status   list every tether volume on this host, and EBS devices no volume names
  version  print the agent's version and the protocol of its commands

Exit codes: 0 done, 1 failed, 2 bad input, 3 busy, 4 device not found,
5 refused (the device holds something tether must not touch), 6 not formatted
(no filesystem, and no grant or no proof of blank), 7 needs repair,
8 conflict, 9 retryable (a lock was held past --lock-wait).
Logs are JSON lines on stderr; with --json a command prints exactly one JSON
line on stdout: its result, or {"error":{...}}. An unmount of several volumes
prints one such line per volume, in list order (a failure's error names its
volumeId), and exits with the first non-zero code of theirs.
`

// run runs one command and returns its exit code.
func run(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) int {
	if len(args) == 0 {
		log.Error("no command given; run tether-agent help")
		return agentproto.ExitBadInput
	}
	cmd, rest := args[0], args[1:]
	log = log.With("command", cmd)
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return agentproto.ExitOK
	case "mount":
		return runMount(ctx, log, rest, stdout)
	case "unmount":
		return runUnmount(ctx, log, rest, stdout)
	case "status":
		return runStatus(ctx, log, rest, stdout)
	case "version":
		return runVersion(log, rest, stdout)
	case "serve":
		return runServe(ctx, log, rest, stdout)
	}
	log.Error(fmt.Sprintf("unknown command %q; run tether-agent help", cmd))
	return agentproto.ExitBadInput
}
