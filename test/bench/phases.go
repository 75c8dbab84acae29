package bench

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tether-ecs/tether/internal/agentproto"
)

// Handoff is one volume moving with its task: the old task on OldInstance
// is drained away, the replacement runs on NewInstance with the data.
type Handoff struct {
	Service     string
	VolumeName  string
	VolumeID    string
	OldTask     string
	OldInstance string
	NewTask     string
	NewInstance string
	Drained     time.Time // the drain was issued
	Running     time.Time // the replacement was RUNNING (zero: never)
	// Modeled is added to the measured time: fake hosts report RUNNING
	// when the volume is mounted, so the real container start measured on
	// a real host is added as the last step.
	Modeled  time.Duration
	Verified bool   // the replacement saw the data written before the drain
	Failure  string // why the handoff failed ("" when it did not)
}

// Duration is drain issued -> replacement RUNNING (plus any modeled step).
func (h Handoff) Duration() time.Duration {
	if h.Running.IsZero() {
		return 0
	}
	return h.Running.Sub(h.Drained) + h.Modeled
}

// OK says the handoff finished with its data.
func (h Handoff) OK() bool { return h.Failure == "" && !h.Running.IsZero() && h.Verified }

// Mark is one step of a handoff's critical path, in the order the path
// takes them.
type Mark int

const (
	MarkDrain Mark = iota
	MarkStopRequested
	MarkOldStopped
	MarkUnmountSent
	MarkUnmountDone
	MarkDetachCalled
	MarkDetached
	MarkAttachCalled
	MarkMountSent // sent as soon as AttachVolume returned: the agent waits for the device
	MarkAttached
	MarkMountDone
	MarkRunning
	numMarks
)

var markNames = [numMarks]string{
	"drain issued", "old task stop requested", "old task STOPPED", "unmount command sent",
	"unmount command done", "DetachVolume", "detached", "AttachVolume", "mount command sent",
	"attached", "mount command done", "new task RUNNING",
}

func (m Mark) String() string { return markNames[m] }

// whose says who a gap ending at the mark belongs to: the world's latency
// that the floor counts, the world's own steps the floor leaves out (ECS,
// the application's stop), or tether.
var whose = [numMarks]string{
	MarkStopRequested: "ECS",
	MarkOldStopped:    "ECS + the old container's stop",
	MarkUnmountSent:   "tether: STOPPED event delivery (SQS batching, pollers) + pass [template.yaml, dispatch, reconcile]",
	MarkUnmountDone:   "tether: the unmount's SSM round trip before the detach [reconcile]",
	MarkDetachCalled:  "tether: learning the unmount ended (SSM status event or poll) [reconcile]",
	MarkDetached:      "world: detach (floor)",
	MarkAttachCalled:  "tether: learning the detach ended (batched DescribeVolumes poll; the detachVolume event where the world sends it) + pass [reconcile]",
	MarkMountSent:     "tether: the mount command, sent once AttachVolume returned [reconcile]",
	MarkAttached:      "world: attach (floor); the mount command is delivered meanwhile and waits for the device",
	MarkMountDone:     "world: SSM command (floor) + tether-agent mount, once the device is there",
	MarkRunning:       "world: container start (floor) + the plugin's wait [agent/driver]",
}

// Timeline is when each mark of one handoff happened (zero: not seen), and
// how often the steps that can repeat did.
type Timeline struct {
	At              [numMarks]time.Time
	UnmountCommands int
	MountCommands   int
	DetachCalls     int // DetachVolume accepted
	AttachCalls     int // AttachVolume accepted
	BusyDetach      int // EC2 found the device still in use in the guest
	// HostGone: when EC2 reported the old instance terminated or stopped
	// (zero: it did not, as in a drain). Off the critical path's marks: only
	// a host that dies has it, and it is the fact tether may act on.
	HostGone time.Time
}

// Offset is the mark's time since the drain (false: not seen).
func (tl Timeline) Offset(m Mark) (time.Duration, bool) {
	if tl.At[m].IsZero() || tl.At[MarkDrain].IsZero() {
		return 0, false
	}
	return tl.At[m].Sub(tl.At[MarkDrain]), true
}

// Documents names the stack's SSM documents, to tell mounts from unmounts.
type Documents struct{ Mount, Unmount string }

// BuildTimeline reads one handoff's marks from the world's journal: ECS's
// task lines by task ARN, EC2's by volume id, SSM's by command id, which
// commandVolume maps to the volume id the command was about, or the
// volumes of an unmount of several (agentproto.ListSep) (ssmsim's
// invocations carry the parameters; its log lines do not). An unmount of
// several ends for each of its volumes when it ends: the world's log
// does not tell their lines apart.
func BuildTimeline(h Handoff, entries []Entry, commandVolume map[string]string, docs Documents) Timeline {
	var tl Timeline
	tl.At[MarkDrain] = h.Drained
	tl.At[MarkRunning] = h.Running
	first := func(m Mark, t time.Time) {
		if tl.At[m].IsZero() {
			tl.At[m] = t
		}
	}
	mountCmds, unmountCmds, batches := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, e := range entries {
		if e.Time.Before(h.Drained) {
			continue
		}
		a := e.Attrs
		// After the replacement runs, only the end of a command already
		// sent still counts (SSM may report it after the plugin's Mount
		// returned); anything else is later business.
		if late := !h.Running.IsZero() && e.Time.After(h.Running); late && e.Msg != msgCommandFinished {
			continue
		}
		switch e.Msg {
		case msgStopRequested:
			if a["task"] == h.OldTask {
				first(MarkStopRequested, e.Time)
			}
		case msgTaskStopped:
			if a["task"] == h.OldTask {
				first(MarkOldStopped, e.Time)
			}
		case msgCommandSent:
			vols := agentproto.SplitList(commandVolume[a["command"]])
			if !slices.Contains(vols, h.VolumeID) {
				continue
			}
			batches[a["command"]] = len(vols) > 1
			switch a["document"] {
			case docs.Unmount:
				unmountCmds[a["command"]] = true
				tl.UnmountCommands++
				first(MarkUnmountSent, e.Time)
			case docs.Mount:
				if a["instances"] == h.NewInstance {
					mountCmds[a["command"]] = true
					tl.MountCommands++
					first(MarkMountSent, e.Time)
				}
			}
		case msgCommandFinished:
			switch {
			case unmountCmds[a["command"]] && (a["status"] == "Success" || batches[a["command"]]):
				first(MarkUnmountDone, e.Time)
			case mountCmds[a["command"]] && a["status"] == "Success":
				first(MarkMountDone, e.Time)
			}
		case msgDetaching:
			if a["volume"] == h.VolumeID {
				tl.DetachCalls++
				first(MarkDetachCalled, e.Time)
			}
		case msgDetached:
			if a["volume"] == h.VolumeID {
				first(MarkDetached, e.Time)
			}
		case msgDetachWaiting:
			if a["volume"] == h.VolumeID {
				tl.BusyDetach++
			}
		case msgInstanceState:
			if a["instance"] == h.OldInstance && (a["state"] == "terminated" || a["state"] == "stopped") && tl.HostGone.IsZero() {
				tl.HostGone = e.Time
			}
		case msgAttaching:
			if a["volume"] == h.VolumeID && a["instance"] == h.NewInstance {
				tl.AttachCalls++
				first(MarkAttachCalled, e.Time)
			}
		case msgAttached:
			if a["volume"] == h.VolumeID && a["instance"] == h.NewInstance {
				first(MarkAttached, e.Time)
			}
		}
	}
	return tl
}

// Gap is the time between two consecutive marks that were both seen.
type Gap struct {
	From, To Mark
	Took     time.Duration
}

// Gaps lists the time spent reaching each mark from the previous one seen.
// A negative gap means the steps overlapped (the plugin's Mount returns
// when the filesystem is mounted, before SSM reports the command done).
func (tl Timeline) Gaps() []Gap {
	var out []Gap
	prev := MarkDrain
	for m := MarkStopRequested; m < numMarks; m++ {
		if tl.At[m].IsZero() {
			continue
		}
		out = append(out, Gap{From: prev, To: m, Took: tl.At[m].Sub(tl.At[prev])})
		prev = m
	}
	return out
}

// PhaseSummary is the median of each mark's offset from the drain and of
// each gap, over many handoffs.
type PhaseSummary struct {
	N       int
	Offsets [numMarks]time.Duration // median offset of each mark from the drain
	Seen    [numMarks]int           // handoffs in which the mark was seen
	Gaps    [numMarks]time.Duration // median time to reach the mark from the previous one
	Extra   string                  // retries seen (unmount/mount commands, busy detaches)
}

// Summarize takes the medians over timelines.
func Summarize(tls []Timeline) PhaseSummary {
	s := PhaseSummary{N: len(tls)}
	for m := MarkStopRequested; m < numMarks; m++ {
		var offs, gaps []time.Duration
		for _, tl := range tls {
			if d, ok := tl.Offset(m); ok {
				offs = append(offs, d)
			}
			for _, g := range tl.Gaps() {
				if g.To == m {
					gaps = append(gaps, g.Took)
				}
			}
		}
		s.Seen[m] = len(offs)
		s.Offsets[m] = Median(offs)
		s.Gaps[m] = Median(gaps)
	}
	var most Timeline
	for _, tl := range tls {
		most.UnmountCommands = max(most.UnmountCommands, tl.UnmountCommands)
		most.MountCommands = max(most.MountCommands, tl.MountCommands)
		most.DetachCalls = max(most.DetachCalls, tl.DetachCalls)
		most.AttachCalls = max(most.AttachCalls, tl.AttachCalls)
		most.BusyDetach = max(most.BusyDetach, tl.BusyDetach)
	}
	s.Extra = fmt.Sprintf("per handoff (max): unmount commands %d, mount commands %d, DetachVolume %d, AttachVolume %d, busy-detach retries %d",
		most.UnmountCommands, most.MountCommands, most.DetachCalls, most.AttachCalls, most.BusyDetach)
	return s
}

// Format renders the summary as indented lines: each mark's median offset
// from the drain, the median gap that reached it and whose time that gap is.
func (s PhaseSummary) Format(indent string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s%-26s %10s %10s  %s\n", indent, "step (median of "+fmt.Sprint(s.N)+")", "at", "gap", "whose time")
	fmt.Fprintf(&b, "%s%-26s %10s\n", indent, MarkDrain, "0.00s")
	for m := MarkStopRequested; m < numMarks; m++ {
		if s.Seen[m] == 0 {
			fmt.Fprintf(&b, "%s%-26s %10s %10s  %s\n", indent, m, "not seen", "", whose[m])
			continue
		}
		seen := ""
		if s.Seen[m] < s.N {
			seen = fmt.Sprintf(" (seen in %d)", s.Seen[m])
		}
		fmt.Fprintf(&b, "%s%-26s %10s %10s  %s%s\n", indent, m, secs(s.Offsets[m]), secs(s.Gaps[m]), whose[m], seen)
	}
	fmt.Fprintf(&b, "%s%s\n", indent, s.Extra)
	return b.String()
}

// Median is the middle value (the mean of the two middle ones for an even
// count); 0 for none.
func Median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

var markShort = [numMarks]string{
	"drain", "stop-req", "stopped", "unmount-sent", "unmount-done", "DetachVolume", "detached",
	"AttachVolume", "mount-sent", "attached", "mount-done", "RUNNING",
}

// Line is the handoff's marks as offsets from the drain, on one line.
func (tl Timeline) Line() string {
	var parts []string
	for m := MarkStopRequested; m < numMarks; m++ {
		if d, ok := tl.Offset(m); ok {
			parts = append(parts, fmt.Sprintf("%s %.2f", markShort[m], d.Seconds()))
		}
	}
	return strings.Join(parts, ", ")
}
