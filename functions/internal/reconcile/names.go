package reconcile

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/volspec"
)

// Driver names that mean "tether". Docker resolves a legacy plugin by its
// socket name ("tether"); ":latest" is the implicit tag of a managed plugin
// of the same name, so both spellings name the same driver.
func isTetherDriver(driver string) bool { return driver == "tether" || driver == "tether:latest" }

func taskID(taskARN string) string { return volspec.TaskID(taskARN) }

func validTaskID(id string) bool { return volspec.ValidTaskID(id) }

func taskVolumeName(taskARN, vol string) string { return volspec.TaskVolumeName(taskARN, vol) }

func parseTaskVolumeName(name string) (id, vol string, ok bool) {
	return volspec.ParseTaskVolumeName(name)
}

// keysOf returns the keys a task definition's tether volumes name for a
// task, and a reason for each volume tether must refuse.
func keysOf(cluster, taskARN string, td cloud.TaskDefinition) (keys []Key, refused []string) {
	for _, v := range td.Volumes {
		if !isTetherDriver(v.Driver) || isReplicated(v) {
			continue // replicas=true: replicaKeys names them
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

// TaskKeys names the tether volumes a task of definition td uses, as the
// reconciler does (task scope: task-<task id>-<name>); volumes tether
// refuses are left out. For the tether command.
func TaskKeys(cluster, taskARN string, td cloud.TaskDefinition) []Key {
	keys, _ := keysOf(cluster, taskARN, td)
	return keys
}
