package chaos

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/fakehost"
	"github.com/tether-ecs/tether/test/world/world"
)

// The invariants of issue 11, checked on facts the world records as they
// happen (world.DetachesAsked, fakehost.Disks.Mkfs, Lambda's
// RecursiveInvocationsDropped), not on what tether says it did.

// checkDetachesLocked reads the detaches EC2 accepted since the last poll:
//   - no force-detach of a live host: EC2 said running when it accepted
//     DetachVolume with Force (tether forces only on EC2's word that the
//     instance is stopped or terminated, or an operator's, and chaos has
//     no operator);
//   - no detach while the kernel holds the device: the guest had the
//     filesystem mounted, or something held the device, when the detach
//     was asked;
//   - no unmount result reused across generations: every binding of the
//     volume on that guest was released by an unmount of its current
//     generation (a mount since, by tether or by the plugin, clears it).
func (wt *watcher) checkDetachesLocked(ds []world.DetachAsked) {
	for _, d := range ds {
		wt.detachSeen++
		v := wt.volLocked(d.VolumeID)
		kind := "detach"
		if d.Force {
			kind = "force detach"
			wt.outcomes["force detaches (instance "+orDash(d.InstanceState)+")"]++
		}
		v.note(wt.since(), "%s asked from %s (EC2: %s)%s", kind, d.InstanceID, orDash(d.InstanceState), guestSays(d.Guest))
		if d.Force && d.InstanceState == "running" {
			wt.violateLocked("force-live", d.VolumeID, "%s (%s) was force-detached from %s while EC2 said it was running (at %s)",
				d.VolumeID, v.name, d.InstanceID, wt.at(d.At))
		}
		g := d.Guest
		if g == nil || d.Force {
			continue
		}
		if len(g.Mounted) > 0 || len(g.Holders) > 0 {
			wt.violateLocked("detach-held", d.VolumeID, "%s (%s) detach from %s asked while the guest held the device: mounted as %v, holders %s (at %s)",
				d.VolumeID, v.name, d.InstanceID, g.Mounted, holderList(g), wt.at(d.At))
		}
		for _, name := range slices.Sorted(maps.Keys(g.Bindings)) {
			if b := g.Bindings[name]; !b.Released {
				wt.violateLocked("unmount-reused", d.VolumeID, "%s (%s) detach from %s asked while its binding %s was at mount generation %d, which no unmount released (attachment %s; at %s)",
					d.VolumeID, v.name, d.InstanceID, name, b.Generation, orDash(b.Attachment), wt.at(d.At))
			}
		}
	}
}

// checkMkfsLocked: no filesystem is made without the grant (the fake agent
// records each mkfs with whether its command had --format-if-blank), and
// a volume is formatted only while it holds no generation.
func (wt *watcher) checkMkfsLocked(all []fakehost.Mkfs) {
	for _, m := range all[min(wt.mkfsSeen, len(all)):] {
		wt.mkfsSeen++
		v := wt.volLocked(m.VolumeID)
		v.note(wt.since(), "mkfs %s on %s (grant %v)", m.FSType, m.Instance, m.Granted)
		if !m.Granted {
			wt.violateLocked("mkfs-without-grant", m.VolumeID, "%s (%s) was formatted (%s) on %s without the grant (--format-if-blank)", m.VolumeID, v.name, m.FSType, m.Instance)
		}
		if len(v.writeSeen) > 0 && m.At.After(v.writeSeen[0]) { // after a generation was seen on it
			wt.violateLocked("mkfs-over-data", m.VolumeID, "%s (%s) was formatted on %s over %d verified generations (last %s)",
				m.VolumeID, v.name, m.Instance, len(v.writes), shortTask(last(v.writes)))
		}
	}
}

// checkRecursionLocked: Lambda's recursive loop detection dropped no
// invocation of tether's functions (it stops a chain of SQS messages and
// invocations after about 16 hops unless the function allows recursion).
func (wt *watcher) checkRecursionLocked(dropped, longest int) {
	if dropped > wt.recursionSeen {
		wt.violateLocked("recursive-loop", "", "Lambda's recursive loop detection dropped %d invocations (longest chain %d)", dropped, longest)
		wt.recursionSeen = dropped
	}
	wt.outcomes["longest SQS -> Lambda chain"] = max(wt.outcomes["longest SQS -> Lambda chain"], longest)
}

func guestSays(g *fakehost.Holding) string {
	if g == nil {
		return "; guest: gone or without the device"
	}
	var gens []string
	for _, name := range slices.Sorted(maps.Keys(g.Bindings)) {
		b := g.Bindings[name]
		gens = append(gens, fmt.Sprintf("%s gen %d released %v", name, b.Generation, b.Released))
	}
	return fmt.Sprintf("; guest: mounted %v, holders %s, bindings [%s]", g.Mounted, holderList(g), strings.Join(gens, "; "))
}

func holderList(g *fakehost.Holding) string {
	if len(g.Holders) == 0 {
		return "none"
	}
	var out []string
	for _, h := range g.Holders {
		out = append(out, fmt.Sprintf("%s %s (pid %d %s)", h.Kind, h.Name, h.PID, h.Command))
	}
	return strings.Join(out, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// at is a wall time as an offset into the run.
func (wt *watcher) at(t time.Time) string { return t.Sub(wt.start).Round(time.Millisecond).String() }
