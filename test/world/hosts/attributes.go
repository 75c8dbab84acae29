package hosts

import (
	"context"
	"os"
	"path/filepath"
	"strings"
)

// Attribute name parts as the ECS agent spells them
// (amazon-ecs-agent agent/app/agent_capability.go).
const (
	capabilityPrefix = "com.amazonaws.ecs.capability."
	attributePrefix  = "ecs.capability."
	dockerPluginPart = "docker-plugin."
)

// remoteAPIVersions are the docker-remote-api capabilities the agent
// reports for a daemon with API 1.41: every version it knows below 1.33,
// except 1.26, 1.27 and 1.31 (the agent keeps the list short).
var remoteAPIVersions = []string{
	"1.17", "1.18", "1.19", "1.20", "1.21", "1.22", "1.23", "1.24", "1.25", "1.28", "1.29", "1.30", "1.32",
}

// nameOnly are the capabilities of an ECS-optimized Amazon Linux host that
// do not depend on this instance's state.
var nameOnly = []string{
	capabilityPrefix + "privileged-container",
	capabilityPrefix + "logging-driver.json-file",
	capabilityPrefix + "logging-driver.none",
	capabilityPrefix + "logging-driver.awslogs",
	capabilityPrefix + "ecr-auth",
	capabilityPrefix + "task-iam-role",
	capabilityPrefix + "task-iam-role-network-host",
	attributePrefix + "task-cpu-mem-limit",
	attributePrefix + "task-eni",
	attributePrefix + "execution-role-ecr-pull",
	attributePrefix + "execution-role-awslogs",
	attributePrefix + "container-health-check",
	attributePrefix + "container-ordering",
	attributePrefix + "full-sync",
	attributePrefix + "pid-ipc-namespace-sharing",
	attributePrefix + "secrets.ssm.environment-variables",
	attributePrefix + "secrets.asm.environment-variables",
	attributePrefix + "private-registry-authentication.secretsmanager",
	attributePrefix + "env-files.s3",
	attributePrefix + dockerPluginPart + "local",
}

// Attributes returns what the ECS agent would register for this instance
// now: the instance's facts, the static capabilities, and
// ecs.capability.docker-plugin.<name> for every legacy plugin socket in
// /run/docker/plugins (<name>.sock or <name>/<name>.sock) that answers
// Plugin.Activate as a VolumeDriver — so the tether capability is present
// only while tether-agent serves. (The real agent lists socket files
// without asking them; asking keeps a stale socket from advertising.)
func (in *Instance) Attributes(ctx context.Context) (map[string]string, error) {
	if err := in.alive(); err != nil {
		return nil, err
	}
	attrs := map[string]string{
		"ecs.availability-zone": in.cfg.AvailabilityZone,
		"ecs.instance-type":     in.cfg.InstanceType,
		"ecs.os-type":           "linux",
		"ecs.os-family":         "LINUX",
		"ecs.cpu-architecture":  archName(),
	}
	if in.cfg.AMIID != "" {
		attrs["ecs.ami-id"] = in.cfg.AMIID
	}
	for _, name := range nameOnly {
		attrs[name] = ""
	}
	for _, v := range remoteAPIVersions {
		attrs[capabilityPrefix+"docker-remote-api."+v] = ""
	}
	for name, sock := range in.pluginSockets() {
		if activate(ctx, in.m.Path(sock)) == nil {
			attrs[attributePrefix+dockerPluginPart+name] = ""
		}
	}
	return attrs, nil
}

// pluginSockets finds legacy plugin sockets inside the instance, by name.
func (in *Instance) pluginSockets() map[string]string {
	const dir = "/run/docker/plugins"
	entries, err := os.ReadDir(in.m.Path(dir))
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		switch {
		case e.Type()&os.ModeSocket != 0 && strings.HasSuffix(name, ".sock"):
			out[strings.TrimSuffix(name, ".sock")] = filepath.Join(dir, name)
		case e.IsDir():
			p := filepath.Join(dir, name, name+".sock")
			if st, err := os.Stat(in.m.Path(p)); err == nil && st.Mode()&os.ModeSocket != 0 {
				out[name] = p
			}
		}
	}
	return out
}
