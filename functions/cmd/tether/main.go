// Command tether is tether's command for operators: `tether volumes`,
// `tether explain TASK|VOLUME`, `tether release VOLUME [--force]` and
// `tether adopt VOLUME-ID --name NAME` (functions/internal/ops). It uses
// the normal AWS credential chain; AWS_ENDPOINT_URL points it at another
// endpoint, such as the local world.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"os/user"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"golang.org/x/sys/unix"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/ops"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	io := ops.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	if len(os.Args) < 2 || os.Args[1] == "help" || os.Args[1] == "-h" || os.Args[1] == "--help" {
		os.Exit(ops.Run(ctx, ops.Deps{}, io, os.Args[1:]))
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tether: AWS configuration: %v\n", err)
		os.Exit(ops.ExitFailed)
	}
	deps := ops.Deps{
		Cloud:    cloud.New(cfg, cloud.Options{}),
		Queue:    sqs.NewFromConfig(cfg),
		Stacks:   cloudformation.NewFromConfig(cfg),
		Pings:    ssm.NewFromConfig(cfg),
		Terminal: isTerminal(os.Stdin),
		Operator: operator(),
	}
	os.Exit(ops.Run(ctx, deps, io, os.Args[1:]))
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// operator names who runs the command, for the reconciler's logs.
func operator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil {
		name += "@" + h
	}
	return name
}
