package cloudtest

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tether-ecs/tether/internal/agentproto"
)

// Op is something in flight that the test driver may complete.
type Op struct {
	Kind string // create, attach, detach, delete, modify, optimize, snapshot, command, start, stop
	ID   string // volume id, command id or task ARN
}

func (o Op) String() string { return o.Kind + " " + o.ID }

// Pending lists what can be completed now, in a stable order. A task can
// start only when tether-agent's plugin would let its containers start:
// every tether volume of the task mounted on its instance.
func (w *World) Pending() []Op {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ops []Op
	for _, v := range w.volumes {
		switch {
		case v.State == "creating":
			ops = append(ops, Op{"create", v.ID})
		case v.State == "deleting":
			ops = append(ops, Op{"delete", v.ID})
		case v.Att != nil && v.Att.State == "attaching" && !w.stuck[v.Att.Instance+"/"+v.Att.Device]:
			ops = append(ops, Op{"attach", v.ID})
		case v.Att != nil && v.Att.State == "detaching" && !v.Att.Blocked:
			ops = append(ops, Op{"detach", v.ID})
		}
		if v.Mod != nil && v.Mod.State == "modifying" {
			ops = append(ops, Op{"modify", v.ID})
		}
		if v.Mod != nil && v.Mod.State == "optimizing" {
			ops = append(ops, Op{"optimize", v.ID})
		}
	}
	for _, s := range w.snapshots {
		if s.State == "pending" {
			ops = append(ops, Op{"snapshot", s.ID})
		}
	}
	for _, c := range w.commands {
		if c.Status == "Pending" && w.runnableLocked(c) {
			ops = append(ops, Op{"command", c.ID})
		}
	}
	for _, t := range w.tasks {
		switch {
		case t.DesiredStatus == "RUNNING" && t.LastStatus == "PENDING" && w.canStartLocked(t):
			ops = append(ops, Op{"start", t.ARN})
		case t.DesiredStatus == "STOPPED" && t.LastStatus != "STOPPED":
			ops = append(ops, Op{"stop", t.ARN})
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		if ops[i].Kind != ops[j].Kind {
			return ops[i].Kind < ops[j].Kind
		}
		return ops[i].ID < ops[j].ID
	})
	return ops
}

// Complete finishes one pending op as AWS (or the ECS agent) would.
func (w *World) Complete(op Op) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch op.Kind {
	case "create":
		w.completeCreate(op.ID)
	case "attach":
		v := w.volumes[op.ID]
		if v == nil || v.Att == nil || v.Att.State != "attaching" {
			return
		}
		// The EBS guide sends attachVolume events only when an attach
		// fails: a successful one is seen in DescribeVolumes, and by the
		// guest, whose device appears.
		v.Att.State = "attached"
	case "detach":
		w.completeDetach(op.ID)
	case "modify":
		w.completeModify(op.ID)
	case "optimize":
		w.completeOptimize(op.ID)
	case "snapshot":
		w.completeSnapshot(op.ID)
	case "delete":
		if v := w.volumes[op.ID]; v != nil && v.State == "deleting" {
			delete(w.volumes, v.ID)
			w.events = append(w.events, Event{Kind: "volume", Volume: v.ID, Action: "deleteVolume", Result: "deleted"})
		}
	case "command":
		w.runCommand(op.ID)
	case "start":
		if t := w.tasks[op.ID]; t != nil && t.LastStatus == "PENDING" && t.DesiredStatus == "RUNNING" && w.canStartLocked(t) {
			w.mountForTaskLocked(t)
			t.LastStatus, t.Started = "RUNNING", w.now
			w.taskEventLocked(t)
		}
	case "stop":
		if t := w.tasks[op.ID]; t != nil && t.LastStatus != "STOPPED" {
			w.finishStopLocked(t)
		}
	}
	w.checkRunningLocked()
}

func (w *World) completeCreate(id string) {
	v := w.volumes[id]
	if v == nil || v.State != "creating" {
		return
	}
	if v.vanishes {
		delete(w.volumes, id)
		if t := w.tokens[v.token]; t != nil {
			t.failed = true
		}
		w.events = append(w.events, Event{Kind: "volume", Volume: id, Action: "createVolume", Result: "failed"})
		return
	}
	v.State = "available"
	w.events = append(w.events, Event{Kind: "volume", Volume: id, Action: "createVolume", Result: "available"})
}

// completeDetach: a detach cannot finish while the guest has the volume
// mounted, unless forced (then the guest loses it, as with a real force
// detach). It stays blocked, shown as BlockedDetachShows says, until the
// guest unmounts.
func (w *World) completeDetach(id string) {
	v := w.volumes[id]
	if v == nil || v.Att == nil || v.Att.State != "detaching" {
		return
	}
	inst := w.instances[v.Att.Instance]
	if _, mounted := inst.Mounted[id]; mounted && !v.Att.Force {
		v.Att.Blocked = true
		v.Att.State = w.blockedState
		return
	}
	if v.Att.Force {
		if users := w.usersLocked(inst.ID, id); len(users) > 0 {
			w.violate("force detach of %s from %s completed under running task %s", id, inst.ID, users[0])
		}
		delete(inst.Mounted, id)
	}
	v.Att = nil
	v.State = "available"
	if w.detachEvents {
		w.events = append(w.events, Event{Kind: "volume", Volume: id, Action: "detachVolume", Result: "detached"})
	}
}

// agentWait is how long tether-agent mount waits for the device to appear
// (its --wait default).
const agentWait = 60 * time.Second

// devicePresentLocked: the volume's device is on the instance: from
// attached until its detach ends.
func (w *World) devicePresentLocked(vid, instance string) bool {
	v := w.volumes[vid]
	return v != nil && v.Att != nil && v.Att.Instance == instance && v.Att.State != "attaching"
}

// runnableLocked: the agent can finish the command now. A mount waits for
// its device until agentWait has passed (then it exits no-device); an
// undeliverable command ends whenever.
func (w *World) runnableLocked(c *Command) bool {
	inst := w.instances[c.Instance]
	if c.Unmount || inst.SSMDown || inst.State != "running" {
		return true
	}
	return w.devicePresentLocked(c.Params[agentproto.ParamVolumeID], c.Instance) || w.now.Sub(c.Requested) >= agentWait
}

// runCommand plays tether-agent (internal/agentproto's exit codes and JSON
// line): mount needs the device on the instance, formats only a blank
// volume and only with the grant, and counts generations; unmount refuses
// (exit 3, naming the holder) while a running container uses the volume,
// and marks the name released so the plugin does not remount it by itself.
func (w *World) runCommand(id string) {
	c := w.commands[id]
	if c == nil || c.Status != "Pending" {
		return
	}
	inst := w.instances[c.Instance]
	vid, name := c.Params[agentproto.ParamVolumeID], c.Params[agentproto.ParamVolumeName]
	defer func() {
		w.events = append(w.events, Event{Kind: "command", Command: c.ID, Document: c.Document, EC2ID: c.Instance, Status: c.Status})
	}()
	switch {
	case inst.State != "running":
		c.Status, c.Details, c.Exit = "Failed", "Undeliverable", -1
		w.note("%s %s %s undeliverable", c.Document, vid, inst.ID)
		return
	case inst.SSMDown:
		c.Status, c.Details, c.Exit = "TimedOut", "Delivery Timed Out", -1
		w.note("%s %s %s undeliverable", c.Document, vid, inst.ID)
		return
	}
	c.Started, c.Ended = w.now, w.now
	var lines []string
	exit := agentproto.ExitOK
	if c.Unmount {
		// Several volumes are lists (agentproto.ListSep): one line each,
		// failures naming their volume; the exit code is the first non-zero.
		ids, names, atts := agentproto.SplitList(vid), agentproto.SplitList(name), agentproto.SplitList(c.Params[agentproto.ParamAttachment])
		batch := len(ids) > 1
		for i, id := range ids {
			att := ""
			if i < len(atts) {
				att = atts[i]
			}
			line, code := w.unmountOneLocked(inst, id, names[i], att, batch)
			lines = append(lines, line)
			if exit == agentproto.ExitOK {
				exit = code
			}
		}
	} else {
		line, code := w.mountLocked(inst, c)
		lines, exit = []string{line}, code
	}
	c.Output = strings.Join(lines, "\n") + "\n"
	c.Exit = int32(exit)
	if exit == agentproto.ExitOK {
		c.Status, c.Details = "Success", "Success"
	} else {
		c.Status, c.Details = "Failed", "Failed"
	}
}

// failureLine is tether-agent's failure line; batch names its volume.
func failureLine(vid string, batch bool, code int, msg string, holders ...agentproto.Holder) (string, int) {
	f := agentproto.Failure{ExitCode: code, Class: agentproto.ClassOf(code), Message: msg, Holders: holders}
	if batch {
		f.VolumeID = vid
	}
	b, _ := json.Marshal(struct {
		Error agentproto.Failure `json:"error"`
	}{f})
	return string(b), code
}

// unmountOneLocked plays tether-agent unmount for one volume: refused
// (exit 3, naming the holder) while a running container uses it; else
// unmounted and its name marked released for the attachment.
func (w *World) unmountOneLocked(inst *Instance, vid, name, attachment string, batch bool) (string, int) {
	users := w.usersLocked(inst.ID, vid)
	line, code := "", agentproto.ExitOK
	switch n := w.busyUnmount[vid]; {
	case n > 0:
		w.busyUnmount[vid] = n - 1
		line, code = failureLine(vid, batch, agentproto.ExitBusy, "busy: a container holds the volume", agentproto.Holder{Kind: "container", Name: "injected"})
	case len(users) > 0:
		line, code = failureLine(vid, batch, agentproto.ExitBusy, "busy: task "+users[0]+" holds the volume", agentproto.Holder{Kind: "container", Name: users[0]})
	default:
		_, was := inst.Mounted[vid]
		w.unmountLocked(inst, vid)
		inst.Released[name] = true
		inst.ReleasedFor[name] = attachment
		b, _ := json.Marshal(agentproto.UnmountResult{VolumeID: vid, Name: name, WasMounted: was, Released: true,
			Generation: inst.Generation[name], Attachment: attachment})
		line = string(b)
	}
	w.note("unmount %s %s exit=%d", vid, inst.ID, code)
	return line, code
}

// mountLocked plays tether-agent mount: it needs the device on the
// instance, formats only a blank volume and only with the grant, and
// counts generations.
func (w *World) mountLocked(inst *Instance, c *Command) (string, int) {
	vid, name := c.Params[agentproto.ParamVolumeID], c.Params[agentproto.ParamVolumeName]
	v := w.volumes[vid]
	_, mounted := inst.Mounted[vid]
	line, code := "", agentproto.ExitOK
	fail := func(exit int, msg string) { line, code = failureLine(vid, false, exit, msg) }
	switch {
	case len(w.mountExits[vid]) > 0:
		exit := w.mountExits[vid][0]
		w.mountExits[vid] = w.mountExits[vid][1:]
		fail(exit, fmt.Sprintf("injected failure (exit %d)", exit))
	case inst.OldAgent && c.Params[agentproto.ParamFormatOwner] != "":
		fail(agentproto.ExitBadInput, "flag provided but not defined: -format-owner")
	case inst.Released[name] && c.Params[agentproto.ParamAttachment] != "" && inst.ReleasedFor[name] == c.Params[agentproto.ParamAttachment]:
		// A released attachment is only ever detached (tether-agent's rule).
		fail(agentproto.ExitReleased, fmt.Sprintf("%s was released for attachment %s and is being detached", name, c.Params[agentproto.ParamAttachment]))
	case !w.devicePresentLocked(vid, inst.ID):
		fail(agentproto.ExitNoDevice, fmt.Sprintf("device of %s did not appear within %s", vid, agentWait))
	case !v.Formatted && c.Params[agentproto.ParamFormatIfBlank] != "true":
		fail(agentproto.ExitNotFormatted, fmt.Sprintf("%s is blank and mount has no format grant", vid))
	default:
		formatted := false
		if !v.Formatted {
			v.Formatted, formatted = true, true
			w.mkfs = append(w.mkfs, fmt.Sprintf("%s %s grant=%s", vid, inst.ID, c.Params[agentproto.ParamFormatIfBlank]))
		}
		if !mounted {
			inst.Generation[name]++
		}
		inst.Mounted[vid] = name
		inst.Bindings[name] = vid
		delete(inst.Released, name)
		grown, fsBytes := v.growLocked()
		b, _ := json.Marshal(agentproto.MountResult{VolumeID: vid, Name: name, Device: c.Params[agentproto.ParamDevice], FSType: c.Params[agentproto.ParamFSType],
			Formatted: formatted, Granted: new(c.Params[agentproto.ParamFormatIfBlank] == "true"), AlreadyMounted: mounted, Attachment: c.Params[agentproto.ParamAttachment], Generation: inst.Generation[name],
			Mountpoint: "/var/lib/tether/volumes/" + name, Grown: grown, FilesystemBytes: fsBytes, DeviceBytes: int64(v.Size) << 30})
		line = string(b)
	}
	w.note("mount %s %s exit=%d", vid, inst.ID, code)
	return line, code
}

// unmountLocked: the guest lets go of a volume; a detach that was busy
// because of it proceeds.
func (w *World) unmountLocked(inst *Instance, vid string) {
	delete(inst.Mounted, vid)
	if v := w.volumes[vid]; v != nil && v.Att != nil && v.Att.Instance == inst.ID && v.Att.Blocked {
		v.Att.State, v.Att.Blocked = "detaching", false
	}
}

// Task lifecycle (what ECS and its agent do).

// PlaceTask starts a task of td on instance (as the ECS scheduler).
func (w *World) PlaceTask(td, instance string) string {
	return w.place(td, instance, "family:"+familyOf(td))
}

// PlaceServiceTask starts a task of td for service on instance.
func (w *World) PlaceServiceTask(td, instance, service string) string {
	return w.place(td, instance, "service:"+service)
}

func (w *World) place(td, instance, group string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	inst := w.instances[instance]
	w.seq++
	arn := fmt.Sprintf("arn:aws:ecs:us-east-1:111122223333:task/c/%032x", w.seq)
	t := &Task{ARN: arn, TaskDef: td, CI: inst.CI, AZ: inst.AZ, LastStatus: "PENDING", DesiredStatus: "RUNNING", Created: w.now, Group: group}
	w.tasks[arn] = t
	w.taskEventLocked(t)
	return arn
}

// StopTask asks for a task to stop (as the scheduler, e.g. on drain).
func (w *World) StopTask(arn, reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopLocked(w.tasks[arn], reason)
}

func (w *World) stopLocked(t *Task, reason string) {
	if t.DesiredStatus == "STOPPED" {
		return
	}
	t.DesiredStatus = "STOPPED"
	if t.StoppedReason == "" {
		t.StoppedReason = reason
	}
	w.taskEventLocked(t)
}

func (w *World) finishStopLocked(t *Task) {
	wasRunning := t.LastStatus == "RUNNING"
	t.LastStatus, t.Stopped = "STOPPED", w.now
	w.taskEventLocked(t)
	if !wasRunning {
		return
	}
	// The plugin unmounts a volume when its last Docker user goes.
	inst := w.instances[w.cis[t.CI].EC2ID]
	for vid, name := range inst.Mounted {
		if contains(w.tetherNamesLocked(t), name) && len(w.usersLocked(inst.ID, vid)) == 0 {
			w.unmountLocked(inst, vid)
		}
	}
}

// Drain sets a container instance DRAINING.
func (w *World) Drain(instance string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ci := w.cis[w.instances[instance].CI]
	ci.Status = "DRAINING"
	w.events = append(w.events, Event{Kind: "instance", Instance: ci.ARN, EC2ID: instance, Status: ci.Status, AgentConnected: ci.AgentConnected})
}

// Terminate ends an instance abruptly: its tasks are gone, ECS deregisters it,
// and its volumes stay attached until someone detaches them.
func (w *World) Terminate(instance string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	inst := w.instances[instance]
	inst.State = "terminated"
	inst.Mounted = map[string]string{}
	ci := w.cis[inst.CI]
	ci.Status, ci.AgentConnected = "INACTIVE", false
	for _, t := range w.sortedTasksLocked() {
		if t.CI == ci.ARN && t.LastStatus != "STOPPED" {
			t.DesiredStatus, t.LastStatus, t.Stopped = "STOPPED", "STOPPED", w.now
			w.taskEventLocked(t)
		}
	}
	w.events = append(w.events, Event{Kind: "instance", Instance: ci.ARN, EC2ID: instance, Status: ci.Status})
}

func (w *World) taskEventLocked(t *Task) {
	t.Version++
	w.events = append(w.events, Event{Kind: "task", Task: t.ARN, Version: t.Version, TaskDef: t.TaskDef, CI: t.CI,
		LastStatus: t.LastStatus, DesiredStatus: t.DesiredStatus, Created: t.Created, Started: t.Started, Stopped: t.Stopped,
		Group: t.Group, AZ: t.AZ})
}

// tetherNamesLocked: the tether names of a task's tether volumes.
func (w *World) tetherNamesLocked(t *Task) []string {
	var out []string
	for _, v := range w.taskDefs[t.TaskDef].Volumes {
		if v.Driver != "tether" && v.Driver != "tether:latest" {
			continue
		}
		name := v.Name
		if v.Scope == "task" {
			name = "task-" + t.ARN[strings.LastIndexByte(t.ARN, '/')+1:] + "-" + v.Name
		}
		out = append(out, name)
	}
	return out
}

// canStartLocked: every tether volume of t is mounted on its instance, or
// the plugin can mount it itself (binding known, device attached there).
func (w *World) canStartLocked(t *Task) bool {
	inst := w.instances[w.cis[t.CI].EC2ID]
	if inst.State != "running" {
		return false
	}
	for _, name := range w.tetherNamesLocked(t) {
		if w.mountedOrMountableLocked(inst, name) == "" {
			return false
		}
	}
	return true
}

func (w *World) mountedOrMountableLocked(inst *Instance, name string) string {
	for vid, n := range inst.Mounted {
		if n == name {
			if v := w.volumes[vid]; v != nil && v.Att != nil && v.Att.Instance == inst.ID && v.Att.State == "attached" {
				return vid
			}
		}
	}
	if vid := inst.Bindings[name]; vid != "" && !inst.Released[name] {
		if v := w.volumes[vid]; v != nil && v.Att != nil && v.Att.Instance == inst.ID && v.Att.State == "attached" {
			return vid
		}
	}
	return ""
}

func (w *World) mountForTaskLocked(t *Task) {
	inst := w.instances[w.cis[t.CI].EC2ID]
	for _, name := range w.tetherNamesLocked(t) {
		vid := w.mountedOrMountableLocked(inst, name)
		if _, ok := inst.Mounted[vid]; !ok {
			inst.Generation[name]++ // the plugin mounted it by itself
		}
		inst.Mounted[vid] = name
	}
}

// usersLocked: running tasks on the instance whose containers use volume vid.
func (w *World) usersLocked(instance, vid string) []string {
	inst := w.instances[instance]
	name, mounted := inst.Mounted[vid]
	if !mounted {
		return nil
	}
	var out []string
	for _, t := range w.sortedTasksLocked() {
		if t.LastStatus == "RUNNING" && w.cis[t.CI].EC2ID == instance && contains(w.tetherNamesLocked(t), name) {
			out = append(out, t.ARN)
		}
	}
	return out
}

// Invariants.

// checkKeysLocked: one EBS volume per tether key.
func (w *World) checkKeysLocked() {
	seen := map[string]*Volume{}
	for _, v := range w.volumes {
		c, n := v.Tags["tether:cluster"], v.Tags["tether:volume"]
		if c == "" || v.State == "deleting" {
			continue
		}
		k := c + "/" + n
		// An AZ move (driverOpt azmove) makes the key's new volume from a
		// snapshot before it retags the old one: for that moment the two
		// are one move, not two volumes of the key.
		moving := func(a, b *Volume) bool { return a.Tags["tether:moved-from"] == b.ID && b.Att == nil }
		if other, dup := seen[k]; dup && !moving(v, other) && !moving(other, v) {
			w.violate("two volumes for key %s: %s and %s", k, other.ID, v.ID)
		}
		seen[k] = v
	}
}

// checkRunningLocked: a running task's volumes are attached and mounted
// where it runs.
func (w *World) checkRunningLocked() {
	for _, t := range w.tasks {
		if t.LastStatus != "RUNNING" {
			continue
		}
		inst := w.instances[w.cis[t.CI].EC2ID]
		if inst.State != "running" {
			continue
		}
		for _, name := range w.tetherNamesLocked(t) {
			found := false
			for vid, n := range inst.Mounted {
				v := w.volumes[vid]
				if n == name && v != nil && v.Att != nil && v.Att.Instance == inst.ID {
					found = true
				}
			}
			if !found {
				w.violate("task %s runs on %s without its volume %s mounted", t.ARN, inst.ID, name)
			}
		}
	}
}

// CompleteOverdue runs the SSM commands pending longer than age, as a live
// agent would have by then (tests that jump the clock use it so that only
// the order of results, not a hung agent, is random).
func (w *World) CompleteOverdue(age time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]string, 0, len(w.commands))
	for id, c := range w.commands {
		if c.Status == "Pending" && w.now.Sub(c.Requested) >= age {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		w.runCommand(id)
	}
}

// Quiet reports whether nothing is in flight.
func (w *World) Quiet() bool { return len(w.Pending()) == 0 }

// Elapsed is a helper for tests: the time since t on the world's clock.
func (w *World) Elapsed(t time.Time) time.Duration { return w.Now().Sub(t) }
