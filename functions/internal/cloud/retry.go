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
	modify                               aws.Retryer
	stopTask                             aws.Retryer
	sendCommand                          aws.Retryer
}

func newRetryers(o Options) *retryers {
	n := func() aws.Retryer { return newRetryer(o, false) }
	// Paced writes are not retried when AWS throttles them: the pacer has
	// emptied its bucket, and the pass hands its key back, rather than
	// spending the account's next tokens on retries.
	paced := func() aws.Retryer { return newRetryer(o, true) }
	return &retryers{
		create: paced(), attach: paced(), detach: once(), delete: paced(), tags: paced(), modify: paced(),
		stopTask: n(), sendCommand: paced(),
	}
}

// once is DetachVolume's: one attempt, sent at once. DetachVolume names
// the instance and the device, not the attachment, and tether gives a
// volume the same device name each time it attaches it to an instance:
// a request the SDK repeated, or held back (adaptive mode's client-side
// rate limiting delays a request after throttles), could reach EC2 after
// the volume was detached and attached there again, and detach the new,
// mounted attachment. The attachment is read right before the one
// attempt; a failure hands the key back, to read it again.
func once() aws.Retryer {
	return retry.NewStandard(func(so *retry.StandardOptions) { so.MaxAttempts = 1 })
}

// newRetryer is adaptive (client-side rate limiting after throttles) with
// bounded attempts and backoff: a Lambda pass must end well within its
// timeout; work that cannot finish goes back to the queue instead.
func newRetryer(o Options, noThrottleRetry bool) aws.Retryer {
	std := func(so *retry.StandardOptions) {
		so.MaxAttempts = o.MaxAttempts
		so.MaxBackoff = o.MaxBackoff
		if o.Backoff != nil {
			so.Backoff = o.Backoff
		}
		if noThrottleRetry {
			so.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
				if isThrottle(err) {
					return aws.FalseTernary
				}
				return aws.UnknownTernary
			})}, so.Retryables...)
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
