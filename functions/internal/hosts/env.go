package hosts

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/dispatch"
	"github.com/tether-ecs/tether/functions/internal/emf"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// Environment the hosts function reads besides the reconciler's
// (docs/contracts.md).
const (
	EnvQueueURL      = "TETHER_HOSTS_QUEUE_URL"     // the hosts queue (holds' and watches' next passes)
	EnvHoldHook      = "TETHER_HOLD_HOOK"           // tether's termination hook name ("": no group held)
	EnvHoldDeadline  = "TETHER_HOLD_DEADLINE"       // optional Go duration (default 10m)
	EnvHungAction    = "TETHER_HUNG_HOST_ACTION"    // none (default) or stop
	EnvHungThreshold = "TETHER_HUNG_HOST_THRESHOLD" // optional Go duration (default 5m)
	EnvHoldPoll      = "TETHER_HOLD_POLL"           // optional Go duration (default 5s)
	EnvWatchPoll     = "TETHER_HOST_WATCH_POLL"     // optional Go duration (default 30s)
)

// ConfigFromEnv reads the host rules' settings.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	cfg := Config{Cluster: getenv(reconcile.EnvCluster), QueueURL: getenv(EnvQueueURL), HookName: getenv(EnvHoldHook),
		HungAction: strings.ToLower(getenv(EnvHungAction))}
	for _, d := range []struct {
		env  string
		dst  *time.Duration
		zero bool // 0 allowed
	}{
		{EnvHoldDeadline, &cfg.HoldDeadline, false}, {EnvHungThreshold, &cfg.HungThreshold, true},
		{EnvHoldPoll, &cfg.HoldPoll, false}, {EnvWatchPoll, &cfg.WatchPoll, false},
	} {
		v := getenv(d.env)
		if v == "" {
			continue
		}
		x, err := time.ParseDuration(v)
		if err != nil || x < 0 || (x == 0 && !d.zero) {
			return Config{}, fmt.Errorf("hosts: %s=%q: want a positive duration such as 5m", d.env, v)
		}
		if x == 0 {
			x = time.Nanosecond // "as soon as EC2 says impaired"; zero means the default
		}
		*d.dst = x
	}
	return cfg, nil
}

// CoreFromEnv builds the hosts function's core: the reconciler
// (reconcile.NewFromEnv), the host rules' AWS clients on awsCfg, and its
// configuration from the environment; logs and EMF metrics go to logs and
// metrics.
func CoreFromEnv(ctx context.Context, getenv func(string) string, awsCfg aws.Config, logs, metrics io.Writer) (dispatch.Reconciler, error) {
	cfg, err := ConfigFromEnv(getenv)
	if err != nil {
		return nil, err
	}
	rec, err := reconcile.NewFromEnv(ctx, getenv, awsCfg, logs, metrics)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewJSONHandler(logs, nil)).With("rules", "hosts")
	return New(rec, cloud.New(awsCfg, cloud.Options{}), cloud.NewHosts(awsCfg, cloud.Options{}), sqs.NewFromConfig(awsCfg), cfg, log,
		emf.New(metrics, "Tether", nil), nil)
}
