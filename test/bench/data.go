package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tether-ecs/tether/internal/volspec"
)

// agentRoot is tether-agent's default --root on the hosts.
const agentRoot = "/var/lib/tether"

// WriteMark leaves a mark in the service's volume on its current instance
// (real hosts: a file holding token, written and synced where tether
// mounted the volume; fake hosts record every task that ran with the
// volume, so nothing needs writing).
func (f *Fleet) WriteMark(ctx context.Context, s *Service, token string) error {
	if _, fake := f.W.FakeHost(s.Instance); fake {
		return nil
	}
	h, ok := f.W.RealHost(s.Instance)
	if !ok {
		return fmt.Errorf("bench: no host %s", s.Instance)
	}
	if err := volspec.ValidateName(s.VolumeName); err != nil {
		return err
	}
	path := agentRoot + "/volumes/" + s.VolumeName + "/bench-mark"
	res, err := h.RunShellScript(ctx, fmt.Sprintf("printf %%s '%s' > %s && sync %s", token, path, path), 30*time.Second)
	if err != nil || res.ExitCode != 0 {
		return fmt.Errorf("bench: write mark in %s on %s: %v (exit %d) %s", s.VolumeName, s.Instance, err, res.ExitCode, res.Stderr)
	}
	return nil
}

// Verify checks a handoff that did not fail: its data, by VerifyMark. A
// handoff whose data is wrong fails with "data: …"; else it is Verified.
func (f *Fleet) Verify(ctx context.Context, h *Handoff, token string) {
	if h.Failure != "" {
		return
	}
	if err := f.VerifyMark(ctx, *h, token); err != nil {
		h.Failure = "data: " + err.Error()
		return
	}
	h.Verified = true
}

// VerifyMark checks, after h, that the replacement saw the volume's data:
// real hosts read the mark back on the new instance; fake hosts show the
// old task then the new one in the volume's writes, formatted once.
func (f *Fleet) VerifyMark(ctx context.Context, h Handoff, token string) error {
	if _, fake := f.W.FakeHost(h.NewInstance); fake {
		d, ok := f.W.Disks().Volume(h.VolumeID)
		if !ok {
			return fmt.Errorf("volume %s: no host ever saw it", h.VolumeID)
		}
		i, j := slices.Index(d.Writes, h.OldTask), slices.Index(d.Writes, h.NewTask)
		if i < 0 || j < i || d.Formats != 1 {
			return fmt.Errorf("volume %s: writes %v (old %s at %d, new %s at %d), formatted %d times", h.VolumeID, d.Writes, h.OldTask, i, h.NewTask, j, d.Formats)
		}
		return nil
	}
	host, ok := f.W.RealHost(h.NewInstance)
	if !ok {
		return fmt.Errorf("no host %s", h.NewInstance)
	}
	res, err := host.RunShellScript(ctx, "cat "+agentRoot+"/volumes/"+h.VolumeName+"/bench-mark", 30*time.Second)
	if err != nil || res.ExitCode != 0 {
		return fmt.Errorf("read mark of %s on %s: %v (exit %d) %s", h.VolumeName, h.NewInstance, err, res.ExitCode, res.Stderr)
	}
	if got := strings.TrimSpace(res.Stdout); got != token {
		return fmt.Errorf("%s on %s holds %q, want %q", h.VolumeName, h.NewInstance, got, token)
	}
	return nil
}
