// Package ops is the tether command for operators (functions/cmd/tether):
// what tether's volumes are and where, why a task waits, an operator's
// release, and the adoption of a volume tether did not create. It reads
// AWS through the same seam as the functions (functions/internal/cloud)
// with the operator's own credentials (the normal credential chain;
// AWS_ENDPOINT_URL points it at the local world), and takes no step of the
// reconciler's itself: a release is a message on tether's retry queue that
// the reconciler acts on, by the same rules as every other pass.
//
// Exit codes (README, "Operating tether"):
//
//	0  done (also: nothing to do)
//	1  failed: AWS refused or failed a call, or an unexpected error
//	2  usage: bad flags or arguments
//	3  refused: a check said no (a task or a container holds the volume, the volume is another cluster's...)
//	4  not found: no such volume or task
//	5  not finished: the wait ran out; tether goes on with it
//	6  not confirmed: a --force without confirmation (no terminal and no --yes, or the answer was not yes)
package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/tether-ecs/tether/functions/internal/cloud"
)

// Exit codes.
const (
	ExitOK           = 0
	ExitFailed       = 1
	ExitUsage        = 2
	ExitRefused      = 3
	ExitNotFound     = 4
	ExitNotFinished  = 5
	ExitNotConfirmed = 6
)

// Cloud is what the command asks of EC2, ECS and SSM; *cloud.AWS
// implements it.
type Cloud interface {
	TetherVolumes(ctx context.Context) ([]cloud.Volume, error)
	ClusterVolumes(ctx context.Context, cluster string) ([]cloud.Volume, error)
	VolumesByKey(ctx context.Context, cluster, name string) ([]cloud.Volume, error)
	VolumesByName(ctx context.Context, name string) ([]cloud.Volume, error)
	VolumeByID(ctx context.Context, id string) (cloud.Volume, error)
	Instance(ctx context.Context, id string) (cloud.Instance, error)
	TagVolume(ctx context.Context, volumeID string, tags map[string]string) error
	SnapshotsTagged(ctx context.Context, key, value string) ([]cloud.EBSSnapshot, error)

	LiveTasks(ctx context.Context, cluster string) ([]cloud.Task, error)
	TasksOf(ctx context.Context, cluster string, q cloud.TaskQuery) ([]cloud.Task, error)
	Tasks(ctx context.Context, cluster string, ids []string) ([]cloud.Task, error)
	TaskDefinition(ctx context.Context, arn string) (cloud.TaskDefinition, error)
	ContainerInstances(ctx context.Context, cluster string) ([]cloud.ContainerInstance, error)

	Commands(ctx context.Context, document, instanceID string, after time.Time) ([]cloud.Command, error)
	Command(ctx context.Context, commandID, instanceID, plugin string) (cloud.Command, error)
	DocumentCommands(ctx context.Context, document string, after time.Time, max int) ([]cloud.Command, error)
}

var _ Cloud = (*cloud.AWS)(nil)

// Queue is the SQS call a release makes; *sqs.Client implements it.
type Queue interface {
	SendMessage(ctx context.Context, params *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// Pings is the SSM call that says whether an instance's SSM agent answers;
// *ssm.Client implements it.
type Pings interface {
	DescribeInstanceInformation(ctx context.Context, params *ssm.DescribeInstanceInformationInput, optFns ...func(*ssm.Options)) (*ssm.DescribeInstanceInformationOutput, error)
}

// Stacks is the CloudFormation call that finds the retry queue from the
// stack's outputs; *cloudformation.Client implements it.
type Stacks interface {
	DescribeStacks(ctx context.Context, params *cloudformation.DescribeStacksInput, optFns ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error)
}

var (
	_ Queue  = (*sqs.Client)(nil)
	_ Stacks = (*cloudformation.Client)(nil)
	_ Pings  = (*ssm.Client)(nil)
)

// Deps are the command's AWS clients, clock and terminal.
type Deps struct {
	Cloud  Cloud
	Queue  Queue
	Stacks Stacks
	Pings  Pings
	Now    func() time.Time
	// Sleep waits between looks while a release goes on (ctx cancels it).
	Sleep func(ctx context.Context, d time.Duration) error
	// Terminal: stdin is a terminal a confirmation can be asked on.
	Terminal bool
	// Operator names who asks (user@host), in a release's message.
	Operator string
}

// IO is the command's standard streams and environment.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// Environment the command reads.
const (
	EnvCluster       = "TETHER_CLUSTER"         // default --cluster
	EnvStack         = "TETHER_STACK"           // default --stack (the SAM stack's name; default "tether")
	EnvRetryQueueURL = "TETHER_RETRY_QUEUE_URL" // default --queue-url (else the stack's RetryQueueUrl output)
	DefaultStack     = "tether"                 // the SAM stack's name when none is given
	pollEvery        = 2 * time.Second          // looks at a release in progress
	progressEvery    = 10 * time.Second         // a progress line while nothing changes
	maxHandoffCmds   = 2000                     // commands read per document for `volumes`' handoffs
	historyDefault   = 7 * 24 * time.Hour       // how far back `volumes` looks for handoffs
	recentStopped    = time.Hour                // stopped tasks `explain` shows
	waitDefault      = 3 * time.Minute          // how long `release` waits
	maxWait          = time.Hour                // the longest --wait
)

// Run runs one command line (without the program name) and returns its
// exit code.
func Run(ctx context.Context, deps Deps, io IO, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(io.Stderr, usage)
		return ExitUsage
	}
	c := &cmd{deps: deps, io: io}
	if c.deps.Now == nil {
		c.deps.Now = time.Now
	}
	if c.deps.Sleep == nil {
		c.deps.Sleep = sleep
	}
	var err error
	switch args[0] {
	case "volumes":
		err = c.volumes(ctx, args[1:])
	case "explain":
		err = c.explain(ctx, args[1:])
	case "release":
		err = c.release(ctx, args[1:])
	case "adopt":
		err = c.adopt(ctx, args[1:])
	case "help", "-h", "--help":
		fmt.Fprint(io.Stdout, usage)
		return ExitOK
	default:
		err = usageErr("unknown command %q", args[0])
	}
	return c.exit(err)
}

const usage = `tether: what tether's volumes are, why a task waits, an operator's release, adopting a volume.

Usage:
  tether volumes [--cluster C] [--stack S] [--history 168h] [--json]
  tether explain TASK|VOLUME [--cluster C] [--stack S] [--json]
  tether release VOLUME [--force [--yes]] [--reason TEXT] [--wait 3m] [--cluster C] [--stack S] [--queue-url URL] [--json]
  tether adopt VOLUME-ID --name NAME [--cluster C] [--az AZ] [--dry-run] [--json]

VOLUME is a tether volume name or an EBS volume id; TASK a task ARN or id.
AWS credentials and region come from the usual chain; AWS_ENDPOINT_URL
points the command at another endpoint (the local world).
TETHER_CLUSTER, TETHER_STACK and TETHER_RETRY_QUEUE_URL give defaults.

Exit codes: 0 done, 1 failed, 2 usage, 3 refused by a check, 4 not found,
5 still in progress when the wait ran out, 6 --force not confirmed.
`

// cmd is one run of the command.
type cmd struct {
	deps Deps
	io   IO
	json bool
}

// exitError carries an exit code and what to say.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &exitError{ExitUsage, fmt.Sprintf(format, args...)}
}

func refused(format string, args ...any) error {
	return &exitError{ExitRefused, fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &exitError{ExitNotFound, fmt.Sprintf(format, args...)}
}

// exit prints err (if any) on stderr and returns its code.
func (c *cmd) exit(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *exitError
	code := ExitFailed
	if errors.As(err, &e) {
		code = e.code
	} else if errors.Is(err, cloud.ErrNotFound) {
		code = ExitNotFound
	}
	fmt.Fprintf(c.io.Stderr, "tether: %v\n", err)
	if code == ExitUsage {
		fmt.Fprint(c.io.Stderr, "run `tether help` for usage\n")
	}
	return code
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
