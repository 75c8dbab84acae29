package ops

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
)

// common are the flags every verb takes.
type common struct {
	cluster string
	stack   string
}

// verbFlags makes a verb's flag set with --json, --cluster and --stack.
func (c *cmd) verbFlags(name string, co *common) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&c.json, "json", false, "print the result as JSON on stdout")
	fs.StringVar(&co.cluster, "cluster", c.io.Getenv(EnvCluster), "ECS cluster (default $"+EnvCluster+")")
	fs.StringVar(&co.stack, "stack", cmp.Or(c.io.Getenv(EnvStack), DefaultStack), "tether's SAM stack (default $"+EnvStack+" or "+DefaultStack+")")
	return fs
}

// parse parses flags given before, between and after the positional
// arguments (`tether release rexray-vol --force`), and returns those.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, usageErr("%s: see `tether help`", fs.Name())
			}
			return nil, usageErr("%s: %v", fs.Name(), err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// clusterPattern is ECS's rule for cluster names.
var clusterPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)

// stackPattern is CloudFormation's rule for stack names.
var stackPattern = regexp.MustCompile(`^[a-zA-Z][-a-zA-Z0-9]{0,127}$`)

func (co common) check(needCluster bool) error {
	if co.cluster == "" && needCluster {
		return usageErr("no cluster: give --cluster or set $%s", EnvCluster)
	}
	if co.cluster != "" && !clusterPattern.MatchString(co.cluster) {
		return usageErr("invalid cluster name %q", co.cluster)
	}
	if !stackPattern.MatchString(co.stack) {
		return usageErr("invalid stack name %q", co.stack)
	}
	return nil
}

// documents are tether's SSM document names for a stack (template.yaml:
// tether-<stack>-mount, -unmount).
func (co common) documents() (mount, unmount string) {
	return fmt.Sprintf("tether-%s-mount", co.stack), fmt.Sprintf("tether-%s-unmount", co.stack)
}
