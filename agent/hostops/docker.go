package hostops

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/tether-ecs/tether/agent/dockerapi"
	"github.com/tether-ecs/tether/agent/driver"
	"github.com/tether-ecs/tether/internal/volspec"
)

// ECS agent container labels.
const (
	labelTaskARN     = "com.amazonaws.ecs.task-arn"
	labelTaskFamily  = "com.amazonaws.ecs.task-definition-family"
	labelTaskVersion = "com.amazonaws.ecs.task-definition-version"
)

// ContainersUsing lists the running (or paused) containers that mount the
// Docker volume dockerName, with how many mount points each uses
// (driver.Host).
func (h *Host) ContainersUsing(ctx context.Context, dockerName string) ([]driver.ContainerUse, error) {
	list, err := h.docker.ListContainers(ctx, dockerapi.ListOptions{Volume: dockerName})
	if errors.Is(err, dockerapi.ErrNoDaemon) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var uses []driver.ContainerUse
	for _, c := range list {
		n := 0
		for _, m := range c.Mounts {
			if m.Type == "volume" && m.Name == dockerName {
				n++
			}
		}
		if n > 0 {
			uses = append(uses, driver.ContainerUse{ContainerID: c.ID, Mounts: n})
		}
	}
	return uses, nil
}

// taskIDPattern: the last part of a task ARN (32 hex digits today; older
// tasks had UUIDs).
var taskIDPattern = regexp.MustCompile(`^[0-9a-f][0-9a-f-]{0,63}$`)

// randomHexSuffix is the "-<hex>" the ECS agent appends to task volume names.
var randomHexSuffix = regexp.MustCompile(`-[0-9a-f]+$`)

// TaskVolumeName maps an ECS task-scoped Docker volume name
// (ecs-<family>-<revision>-<volume>-<hex>) to tether's name for it,
// task-<task id>-<volume>, through the ECS labels of a container (in any
// state) that uses it (driver.Host). ok is false when no container with a
// task ARN uses dockerName, or the name is not the task's scoped name (a
// shared volume used by an ECS task keeps its own name).
func (h *Host) TaskVolumeName(ctx context.Context, dockerName string) (string, bool, error) {
	list, err := h.docker.ListContainers(ctx, dockerapi.ListOptions{All: true, Volume: dockerName})
	if errors.Is(err, dockerapi.ErrNoDaemon) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	for _, c := range list {
		if !mountsVolume(c, dockerName) {
			continue
		}
		name, ok, err := taskVolumeName(dockerName, c.Labels)
		if err != nil || ok {
			return name, ok, err
		}
	}
	return "", false, nil
}

// TasksUsing lists the task ARNs of the containers that use dockerName and
// have not ended (driver.Host).
func (h *Host) TasksUsing(ctx context.Context, dockerName string) ([]string, error) {
	list, err := h.docker.ListContainers(ctx, dockerapi.ListOptions{All: true, Volume: dockerName})
	if errors.Is(err, dockerapi.ErrNoDaemon) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var arns []string
	for _, c := range list {
		switch c.State {
		case "created", "running", "paused", "restarting":
		default:
			continue
		}
		if arn := c.Labels[labelTaskARN]; arn != "" && mountsVolume(c, dockerName) && !slices.Contains(arns, arn) {
			arns = append(arns, arn)
		}
	}
	slices.Sort(arns)
	return arns, nil
}

func mountsVolume(c dockerapi.Container, dockerName string) bool {
	for _, m := range c.Mounts {
		if m.Name == dockerName {
			return true
		}
	}
	return false
}

// taskVolumeName derives the tether name from a container's ECS labels.
func taskVolumeName(dockerName string, labels map[string]string) (string, bool, error) {
	arn, family, version := labels[labelTaskARN], labels[labelTaskFamily], labels[labelTaskVersion]
	if arn == "" || family == "" || version == "" {
		return "", false, nil
	}
	prefix := "ecs-" + family + "-" + version + "-"
	rest, isTaskScoped := strings.CutPrefix(dockerName, prefix)
	suffix := randomHexSuffix.FindString(rest)
	if !isTaskScoped || suffix == "" || len(rest) == len(suffix) {
		return "", false, nil
	}
	volume := strings.TrimSuffix(rest, suffix)
	taskID := arn[strings.LastIndex(arn, "/")+1:]
	if !strings.HasPrefix(arn, "arn:") || !taskIDPattern.MatchString(taskID) {
		return "", false, fmt.Errorf("container label %s=%q: not a task ARN", labelTaskARN, arn)
	}
	name := "task-" + taskID + "-" + volume
	if err := volspec.ValidateName(name); err != nil {
		return "", false, fmt.Errorf("task volume %s: %w", dockerName, err)
	}
	return name, true, nil
}
