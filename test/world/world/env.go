package world

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Dummy credentials: the world signs nothing, but the SDK and the CLI
// insist on having some.
const (
	AccessKeyID     = "AKIDTETHERWORLD"
	SecretAccessKey = "tether-world-secret"
)

// seedOutputs are the seed stack's outputs, as the walkthrough's
// CloudFormation template exports them; ids are drawn from the seed.
func (w *World) seedOutputs() map[string]string {
	o := w.opts
	w.mu.Lock()
	subnet, sg, tg := w.rng.Uint64(), w.rng.Uint64(), w.rng.Uint64()
	w.mu.Unlock()
	out := map[string]string{
		"AWSRegion":           o.Region,
		"ECSClusterName":      o.Cluster,
		"AvailabilityZone":    o.azs()[0],
		"CWLogGroupName":      SeedStack + "-ecs",
		"SubnetId":            fmt.Sprintf("subnet-0%016x", subnet),
		"SecurityGroupId":     fmt.Sprintf("sg-0%016x", sg),
		"MySQLTargetGroupArn": fmt.Sprintf("arn:aws:elasticloadbalancing:%s:%s:targetgroup/%s-mysql/%016x", o.Region, o.Account, SeedStack, tg),
	}
	maps.Copy(out, o.StackOutputs)
	return out
}

// StackOutputs are the outputs of the seed's stack (rexray-demo).
func (w *World) StackOutputs() map[string]string { return maps.Clone(w.outputs) }

// writeAWSConfig writes the aws CLI's config and credentials files: the
// seed's get-outputs.sh asks `aws configure get region`, which reads only
// the config file.
func (w *World) writeAWSConfig() error {
	dir := filepath.Join(w.dir, "aws")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	config := fmt.Sprintf("[default]\nregion = %s\noutput = json\n", w.opts.Region)
	creds := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", AccessKeyID, SecretAccessKey)
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "credentials"), []byte(creds), 0o600)
}

// Env is what points the aws CLI, an SDK and the seed's scripts at the
// world: the endpoint, region, dummy credentials, the CLI's config files,
// the seed's stack name (CloudFormationStack, for get-outputs.sh) and the
// stack's outputs (AWSRegion, ECSClusterName, AvailabilityZone, ...).
func (w *World) Env() map[string]string {
	env := map[string]string{
		"AWS_ENDPOINT_URL":            w.endpoint,
		"AWS_REGION":                  w.opts.Region,
		"AWS_DEFAULT_REGION":          w.opts.Region,
		"AWS_ACCESS_KEY_ID":           AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":       SecretAccessKey,
		"AWS_CONFIG_FILE":             filepath.Join(w.dir, "aws", "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(w.dir, "aws", "credentials"),
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_PAGER":                   "",
		"CloudFormationStack":         SeedStack,
	}
	maps.Copy(env, w.outputs)
	return env
}

// Environ is Env as KEY=VALUE strings, sorted, for exec.Cmd.Env.
func (w *World) Environ() []string {
	env := w.Env()
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// WriteEnvFile writes Env as `export KEY='value'` lines a shell can
// source.
func (w *World) WriteEnvFile(path string) error {
	env := w.Env()
	var b strings.Builder
	b.WriteString("# tether local AWS world: source this file to point the aws CLI at it\n")
	for _, k := range slices.Sorted(maps.Keys(env)) {
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(env[k]))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("world: env file: %w", err)
	}
	return nil
}

// shellQuote single-quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// AWSConfig is an aws-sdk-go-v2 configuration for the world: its endpoint,
// region and dummy credentials.
func (w *World) AWSConfig() aws.Config {
	return aws.Config{
		Region:       w.opts.Region,
		BaseEndpoint: aws.String(w.endpoint),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey, Source: "tether-world"}, nil
		}),
	}
}
