package reconcile

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// Non-root containers. ECS gives a container that runs as a non-root user
// write access to the EBS volume it manages for the task (Amazon ECS
// developer guide, "Non-root user behavior"). tether does the same on the
// one occasion it can without touching what users made: the mount that
// formats a new volume passes the container's user as FormatOwner, and the
// agent gives the new filesystem's root to it (agentproto.FormatOwner).
// Later mounts never change ownership.
//
// The user is the container definition's `user` (ECS's forms: uid,
// uid:gid, user, user:group, uid:group, user:gid). Only numeric ids can be
// known without the image, and tether never looks into images: for a name
// it sends no owner and says why, rather than guess an id. The container
// is the one that mounts the volume; when several do, they must name the
// same user, else none is chosen (the filesystem stays root's) and the log
// says so.

// formatOwner is the FormatOwner for the first format of spec's volume ("",
// with why, when there is none to send; why is "" when there is nothing to
// say: no container names a user, or the user is root).
func formatOwner(spec cloud.DockerVolume) (owner, why string) {
	var users []string
	for _, c := range spec.Mounters {
		if !slices.Contains(users, c.User) {
			users = append(users, c.User)
		}
	}
	switch {
	case len(users) == 0:
		return "", ""
	case len(users) > 1:
		var each []string
		for _, c := range spec.Mounters {
			each = append(each, fmt.Sprintf("%s as %q", c.Name, c.User))
		}
		return "", fmt.Sprintf("the containers that mount volume %s run as different users (%s): the new filesystem's root stays root's",
			spec.Name, strings.Join(each, ", "))
	}
	user := users[0]
	if user == "" {
		return "", "" // the image's user: unknown without the image, root by default
	}
	uid, gid, hasGID := strings.Cut(user, ":")
	if !numeric(uid) || (hasGID && !numeric(gid)) {
		return "", fmt.Sprintf("container user %q names a user or group, not numeric ids: only the image knows them and tether does not read images, so the new filesystem's root stays root's (write user \"UID:GID\", e.g. \"1000:1000\")", user)
	}
	o, err := agentproto.ParseFormatOwner(user)
	if err != nil {
		return "", fmt.Sprintf("container user %q: %v; the new filesystem's root stays root's", user, err)
	}
	if o.UID == 0 {
		return "", "" // root writes anyway
	}
	return o.String(), ""
}

func numeric(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
