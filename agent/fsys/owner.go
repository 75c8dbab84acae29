package fsys

import (
	"fmt"
	"os"

	"github.com/tether-ecs/tether/internal/agentproto"
)

// OwnRoot gives the root directory of a filesystem tether has just made
// (mounted at mp) to a non-root container user, as ECS does for the EBS
// volumes it manages ("Non-root user behavior", Amazon ECS developer
// guide: owned by root, group read and write; the ECS agent chowns the
// mount point to a group and sets mode 775 with setgid, aws/amazon-ecs-agent
// pull request 4757). tether cannot add a group to a container ECS starts,
// so the group is the container's own:
//   - UID:GID: root:GID, mode 2775;
//   - UID alone: UID:0, mode 0755.
//
// Only the root directory changes (lost+found stays root's). The caller
// calls it only right after its own format, never on a filesystem it found.
func OwnRoot(mp string, o agentproto.FormatOwner) error {
	uid, gid, mode := o.UID, 0, os.FileMode(0o755)
	if o.HasGID {
		uid, gid, mode = 0, o.GID, 0o775|os.ModeSetgid
	}
	// chown first: a chown may clear the set-group-ID bit.
	if err := os.Lchown(mp, uid, gid); err != nil {
		return fmt.Errorf("give the new filesystem's root %s to %d:%d: %w", mp, uid, gid, err)
	}
	if err := os.Chmod(mp, mode); err != nil {
		return fmt.Errorf("set mode %s on the new filesystem's root %s: %w", mode, mp, err)
	}
	return nil
}
