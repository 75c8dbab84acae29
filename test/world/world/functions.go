package world

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/tether-ecs/tether/test/world/lambdarun"
	"github.com/tether-ecs/tether/test/world/samlocal"
)

// Module is tether's Go module; RepoRoot looks for its go.mod.
const Module = "github.com/tether-ecs/tether"

// deployTemplate deploys template.yaml: always its queues, rules and SSM
// documents; the functions as Options.Functions says.
func (w *World) deployTemplate(ctx context.Context) error {
	o := &w.opts
	if o.Template == "" {
		root, err := RepoRoot()
		if err != nil {
			return err
		}
		o.Template = filepath.Join(root, "template.yaml")
	}
	params := map[string]string{"ClusterName": o.Cluster}
	maps.Copy(params, o.Parameters)
	var rt samlocal.Runtime
	switch o.Functions {
	case EmulatedFunctions:
		rie := o.RIE
		if rie == "" {
			var err error
			if rie, err = lambdarun.FindRIE(); err != nil {
				return err
			}
		}
		if o.Bootstraps == "" {
			o.Bootstraps = filepath.Join(w.dir, "functions")
			w.log.Info("building the functions' bootstraps", "out", o.Bootstraps)
			if err := samlocal.BuildBootstraps(ctx, filepath.Join(filepath.Dir(o.Template), "functions"), o.Bootstraps); err != nil {
				return err
			}
		}
		rt = samlocal.Emulator{Bootstraps: o.Bootstraps, RIE: rie, Region: o.Region, Environments: o.Environments,
			Logger: w.log}
	case InProcessFunctions:
		rt = samlocal.InProcess{Bus: w.bus, Handler: o.InProcess, AWS: w.AWSConfig()}
	}
	d, err := samlocal.Deploy(ctx, samlocal.Config{
		Template: o.Template, StackName: o.StackName, Parameters: params, Region: o.Region, Account: o.Account,
		Endpoint: w.endpoint, Bus: w.bus, SSM: w.ssm, Runtime: rt, Logger: w.log.With("component", "samlocal"),
		AutoScaling: autoscaling.NewFromConfig(w.AWSConfig()),
	})
	if err != nil {
		return err
	}
	w.deploy = d
	// tether's own stack, as `sam deploy` leaves it: the tether command
	// finds its queue and documents in the stack's outputs.
	w.cfn.AddStack(o.StackName, d.Outputs)
	return nil
}

// FunctionOutput is what each running function wrote so far (logs and EMF
// lines), by logical id.
func (w *World) FunctionOutput() map[string]string {
	out := map[string]string{}
	if w.deploy == nil {
		return out
	}
	for id := range w.deploy.Functions {
		if s := w.deploy.Output(id); s != "" {
			out[id] = s
		}
	}
	return out
}

// RepoRoot finds the repository: the nearest directory at or above the
// working directory whose go.mod declares Module.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		raw, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(raw)), "module "+Module+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("world: not inside the tether repository (no go.mod of " + Module + " above the working directory)")
		}
		dir = parent
	}
}

// BuildAgent builds tether-agent (static, as `make agent` does) into
// outDir and returns its path.
func BuildAgent(ctx context.Context, outDir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(outDir, "tether-agent")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./agent/cmd/tether-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("world: go build tether-agent: %w\n%s", err, log.String())
	}
	return out, nil
}

// BuildBootstraps builds the functions' bootstraps (functions/Makefile's
// bootstraps target) into outDir.
func BuildBootstraps(ctx context.Context, outDir string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	return samlocal.BuildBootstraps(ctx, filepath.Join(root, "functions"), outDir)
}
