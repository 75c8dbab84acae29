package cloud

import (
	"maps"
	"slices"

	"github.com/tether-ecs/tether/internal/agentproto"
)

// ForVolume is the command as it concerns one volume. An unmount may carry
// several volumes of its instance (SendUnmount): its parameters are lists,
// its agent prints a line per volume, and its exit code and status are the
// batch's. ForVolume narrows the parameters (when the answer has them) to
// the volume's items, and the outcome (once read by Command) to the
// volume's own line: success, or its failure and exit code. ok is false
// when the parameters do not name the volume. A batch that printed no line
// for the volume (an agent older than batches refused the lists, or the
// command ran out of time first) failed for it (agentproto.ExitFailed): the
// volume is unmounted again on its own. Any other command is as it is.
func (c Command) ForVolume(volumeID string) (Command, bool) {
	if ids := agentproto.SplitList(c.Params[agentproto.ParamVolumeID]); len(ids) > 0 {
		i := slices.Index(ids, volumeID)
		if i < 0 {
			return Command{}, false
		}
		if len(ids) > 1 {
			p := maps.Clone(c.Params)
			for _, k := range []string{agentproto.ParamVolumeID, agentproto.ParamVolumeName, agentproto.ParamAttachment, agentproto.ParamReleasedFor} {
				p[k] = item(c.Params[k], i)
			}
			c.Params = p
		}
	}
	if !IsBatchComment(c.Comment) || !c.Finished() || c.Status == CommandUnreachable || c.Output == "" {
		return c, true // not a batch, or its lines not read (yet)
	}
	out, ok := agentproto.ParseOutputFor(c.Output, volumeID)
	switch {
	case !ok:
		c.Status, c.ExitCode, c.Output = CommandFailed, agentproto.ExitFailed, ""
		c.Detail = "tether-agent printed no line for " + volumeID + " in the unmount of several volumes"
	case out.Error != nil:
		c.Status, c.ExitCode, c.Output = CommandFailed, out.Error.ExitCode, string(out.Raw)+"\n"
	default:
		c.Status, c.ExitCode, c.Output, c.Detail = CommandSucceeded, 0, string(out.Raw)+"\n", "Success"
	}
	return c, true
}

// item is item i of a list parameter ("" when it has fewer).
func item(list string, i int) string {
	items := agentproto.SplitList(list)
	if i < len(items) {
		return items[i]
	}
	return ""
}
