package reconcile

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/volspec"
)

// Driver names that mean "tether". Docker resolves a legacy plugin by its
// socket name ("tether"); ":latest" is the implicit tag of a managed plugin
// of the same name, so both spellings name the same driver.
func isTetherDriver(driver string) bool { return driver == "tether" || driver == "tether:latest" }

// taskNamePattern is the tether name of a task-scoped volume:
// task-<task id>-<volume>. Task ids are 32 hex digits (new ARN format) or a
// UUID (old format). Shared volumes may not use names of this form, so a
// key's scope is known from its name alone.
var taskNamePattern = regexp.MustCompile(`^task-([0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-(.+)$`)

// taskID is the last path segment of a task ARN (or the id itself).
func taskID(taskARN string) string {
	if i := strings.LastIndexByte(taskARN, '/'); i >= 0 {
		return taskARN[i+1:]
	}
	return taskARN
}

// taskVolumeName is the tether name of task-scoped volume vol of a task.
func taskVolumeName(taskARN, vol string) string { return "task-" + taskID(taskARN) + "-" + vol }

// parseTaskVolumeName splits a task-scoped tether name; ok false for a
// shared name.
func parseTaskVolumeName(name string) (id, vol string, ok bool) {
	m := taskNamePattern.FindStringSubmatch(name)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// keysOf returns the keys a task definition's tether volumes name for a
// task, and a reason for each volume tether must refuse.
func keysOf(cluster, taskARN string, td cloud.TaskDefinition) (keys []Key, refused []string) {
	for _, v := range td.Volumes {
		if !isTetherDriver(v.Driver) {
			continue
		}
		name := v.Name
		if v.Scope == "task" {
			name = taskVolumeName(taskARN, v.Name)
		} else if _, _, reserved := parseTaskVolumeName(v.Name); reserved {
			refused = append(refused, fmt.Sprintf("volume %q: shared volume names of the form task-<task id>-<name> are reserved for task-scoped volumes", v.Name))
			continue
		}
		if err := volspec.ValidateName(name); err != nil {
			refused = append(refused, err.Error())
			continue
		}
		keys = append(keys, Key{Cluster: cluster, Volume: name})
	}
	return keys, refused
}

// volumeOf returns the tether volume of a task definition that key names
// for the given task, if any.
func volumeOf(key Key, taskARN string, td cloud.TaskDefinition) (cloud.DockerVolume, bool) {
	id, vol, taskScoped := parseTaskVolumeName(key.Volume)
	for _, v := range td.Volumes {
		if !isTetherDriver(v.Driver) {
			continue
		}
		if taskScoped {
			if v.Scope == "task" && v.Name == vol && taskID(taskARN) == id {
				return v, true
			}
		} else if v.Scope != "task" && v.Name == key.Volume {
			return v, true
		}
	}
	return cloud.DockerVolume{}, false
}

// clientToken makes CreateVolume idempotent per key (and per task for task
// scope) and per generation: a generation is only left behind when EC2 has
// shown that its token can no longer create (see create.go).
func clientToken(key Key, taskARN string, gen int) string {
	h := sha256.Sum256([]byte(key.Cluster + "\x00" + key.Volume + "\x00" + taskARN + "\x00" + strconv.Itoa(gen)))
	return "tether-" + hex.EncodeToString(h[:])[:48]
}

// deviceNames are the names tether attaches volumes as: EC2's recommended
// range for EBS data volumes on Linux (xvdf to xvdz), then the two-letter
// names xvdba to xvdzz (671 in all; volspec and tether-agent accept them).
// On Nitro instances the name is only a label; on Xen ones it is the
// device, so the single letters come first in each volume's order.
func deviceNames() []string {
	out := make([]string, 0, 21+25*26)
	for c := 'f'; c <= 'z'; c++ {
		out = append(out, "/dev/xvd"+string(c))
	}
	for c := 'b'; c <= 'z'; c++ {
		for d := 'a'; d <= 'z'; d++ {
			out = append(out, "/dev/xvd"+string(c)+string(d))
		}
	}
	return out
}

// deviceOrder lists the candidate device names for a volume: the single
// letters from a place derived from the volume id, then the two-letter
// names likewise, so concurrent attaches of different volumes to one
// instance from different processes rarely try the same name first.
func deviceOrder(volumeID string, skip map[string]bool) []string {
	names := deviceNames()
	h := sha256.Sum256([]byte(volumeID))
	out := make([]string, 0, len(names))
	for _, part := range [][]string{names[:21], names[21:]} {
		start := int(h[0])<<8 | int(h[1])
		for i := range part {
			if n := part[(start+i)%len(part)]; !skip[n] {
				out = append(out, n)
			}
		}
	}
	return out
}
