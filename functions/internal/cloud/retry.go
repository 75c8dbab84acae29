package cloud

import (
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// retryers holds one retryer per mutating action. The SDK's adaptive mode
// rate-limits per retryer object, not per action: with one retryer per
// action, throttled AttachVolumes do not slow DetachVolumes down (EC2 keeps a
// token bucket per action too).
type retryers struct {
	create, attach, detach, delete, tags aws.Retryer
	stopTask                             aws.Retryer
	sendCommand                          aws.Retryer
}

func newRetryers(o Options) *retryers {
	n := func() aws.Retryer { return newRetryer(o) }
	return &retryers{
		create: n(), attach: n(), detach: n(), delete: n(), tags: n(),
		stopTask: n(), sendCommand: n(),
	}
}

// newRetryer is adaptive (client-side rate limiting after throttles) with
// bounded attempts and backoff: a Lambda pass must end well within its
// timeout; work that cannot finish goes back to the queue instead.
func newRetryer(o Options) aws.Retryer {
	std := func(so *retry.StandardOptions) {
		so.MaxAttempts = o.MaxAttempts
		so.MaxBackoff = o.MaxBackoff
		if o.Backoff != nil {
			so.Backoff = o.Backoff
		}
	}
	if o.RetryMode == aws.RetryModeStandard {
		return retry.NewStandard(std)
	}
	return retry.NewAdaptiveMode(func(ao *retry.AdaptiveModeOptions) {
		ao.StandardOptions = append(ao.StandardOptions, std)
	})
}

func ec2Retryer(r aws.Retryer) func(*ec2.Options) { return func(o *ec2.Options) { o.Retryer = r } }
func ecsRetryer(r aws.Retryer) func(*ecs.Options) { return func(o *ecs.Options) { o.Retryer = r } }
func ssmRetryer(r aws.Retryer) func(*ssm.Options) { return func(o *ssm.Options) { o.Retryer = r } }

// noBackoff retries at once; for tests that check retry counts, not timing.
type noBackoff struct{}

func (noBackoff) BackoffDelay(int, error) (time.Duration, error) { return 0, nil }

// NoBackoff returns a retry.BackoffDelayer that does not wait (tests only).
func NoBackoff() retry.BackoffDelayer { return noBackoff{} }
