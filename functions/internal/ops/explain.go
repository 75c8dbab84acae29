package ops

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/agentproto"
)

// Step is one step of a volume's chain, in words.
type Step struct {
	State  string `json:"state"` // done, now, next, failed
	What   string `json:"what"`
	Detail string `json:"detail,omitempty"`
}

// Step states.
const (
	stepDone   = "done"
	stepNow    = "now"
	stepNext   = "next"
	stepFailed = "failed"
)

// TaskLine is a task that uses the volume.
type TaskLine struct {
	Task          string     `json:"task"`
	Family        string     `json:"family"`
	Instance      string     `json:"instance,omitempty"`
	LastStatus    string     `json:"lastStatus"`
	DesiredStatus string     `json:"desiredStatus"`
	Created       time.Time  `json:"createdAt"`
	Started       *time.Time `json:"startedAt,omitempty"`
	Stopped       *time.Time `json:"stoppedAt,omitempty"`
	StoppedReason string     `json:"stoppedReason,omitempty"`
}

// Explanation is `tether explain`'s answer for one volume.
type Explanation struct {
	Cluster    string     `json:"cluster"`
	Volume     string     `json:"volume"`
	VolumeID   string     `json:"volumeId,omitempty"`
	Scope      string     `json:"scope,omitempty"`
	State      string     `json:"state,omitempty"`
	AZ         string     `json:"az,omitempty"`
	SizeGiB    int32      `json:"sizeGiB,omitempty"`
	Type       string     `json:"type,omitempty"`
	Instance   string     `json:"instance,omitempty"`   // attached to
	Attachment string     `json:"attachment,omitempty"` // attaching, attached, detaching, busy
	Tasks      []TaskLine `json:"tasks"`
	Instances  []instance `json:"instances"`
	Steps      []Step     `json:"steps"`
	// WaitingFor says what the volume waits for now, in words; "" when
	// nothing waits (it is in use where needed, or nothing needs it).
	WaitingFor string `json:"waitingFor"`
	// Advice: what an operator can do about it, when tether cannot.
	Advice string `json:"advice,omitempty"`
}

// explain turns a volume's facts into its chain of steps and what it waits
// for now. It reads nothing: every fact is in f.
func explain(f *facts) Explanation {
	e := &explainer{f: f, x: Explanation{Cluster: f.key.Cluster, Volume: f.key.Volume, Tasks: []TaskLine{}, Steps: []Step{}, Instances: []instance{}}}
	for _, id := range slices.Sorted(maps.Keys(f.instances)) {
		if in := f.instances[id]; in.State != "" || e.usedOn(id) {
			e.x.Instances = append(e.x.Instances, in)
		}
	}
	for _, t := range f.tasks {
		e.x.Tasks = append(e.x.Tasks, e.taskLine(t))
		if t.LastStatus == "STOPPED" && strings.HasPrefix(t.StoppedReason, "tether: ") {
			e.step(stepFailed, "task "+cloud.TaskID(t.ARN)+" stopped by tether", strings.TrimPrefix(t.StoppedReason, "tether: "))
		}
	}
	e.chain()
	return e.x
}

type explainer struct {
	f       *facts
	x       Explanation
	needers []cloud.Task // desired RUNNING, placed, not started: oldest first
	holders []cloud.Task // started and not stopped
}

func (e *explainer) step(state, what, detail string) {
	e.x.Steps = append(e.x.Steps, Step{State: state, What: what, Detail: detail})
}

func (e *explainer) wait(format string, args ...any) { e.x.WaitingFor = fmt.Sprintf(format, args...) }

func (e *explainer) usedOn(id string) bool {
	for _, t := range e.f.tasks {
		if e.f.instanceOfTask(t) == id {
			return true
		}
	}
	return false
}

func (e *explainer) taskLine(t cloud.Task) TaskLine {
	l := TaskLine{Task: t.ARN, Family: t.Family(), Instance: e.f.instanceOfTask(t), LastStatus: t.LastStatus,
		DesiredStatus: t.DesiredStatus, Created: t.CreatedAt, StoppedReason: t.StoppedReason}
	if !t.StartedAt.IsZero() {
		s := t.StartedAt
		l.Started = &s
	}
	if !t.StoppedAt.IsZero() {
		s := t.StoppedAt
		l.Stopped = &s
	}
	return l
}

// ago says how long ago t was, in whole seconds.
func (e *explainer) ago(t time.Time) string {
	return e.f.now.Sub(t).Round(time.Second).String()
}

func (e *explainer) chain() {
	f := e.f
	for _, t := range f.tasks {
		switch {
		case started(t) && t.LastStatus != "STOPPED":
			e.holders = append(e.holders, t)
		case t.DesiredStatus == "RUNNING" && t.LastStatus != "STOPPED" && f.instanceOfTask(t) != "":
			e.needers = append(e.needers, t)
		}
	}
	if f.volume == nil {
		e.noVolume()
		return
	}
	v := *f.volume
	e.x.VolumeID, e.x.Scope, e.x.State, e.x.AZ, e.x.SizeGiB, e.x.Type = v.ID, v.Tags[cloud.TagScope], v.State, v.AZ, v.SizeGiB, v.Type
	switch v.State {
	case cloud.VolumeCreating:
		e.step(stepNow, "create "+v.ID, "EC2 has been creating it for "+e.ago(v.CreateTime))
		e.wait("EC2 to create %s (creating for %s)", v.ID, e.ago(v.CreateTime))
		e.nextServe(e.target(nil))
		return
	case cloud.VolumeError:
		e.step(stepFailed, "create "+v.ID, "EC2 says the volume is in state error")
		e.x.Advice = "the volume is unusable; restore a snapshot of it (EBS) and adopt the new volume"
		return
	}
	e.step(stepDone, "create "+v.ID, fmt.Sprintf("%s, %d GiB %s in %s", v.CreateTime.UTC().Format(time.RFC3339), v.SizeGiB, v.Type, v.AZ))
	if len(f.others) > 0 {
		var ids []string
		for _, o := range f.others {
			ids = append(ids, o.ID)
		}
		e.step(stepFailed, "one volume per name", fmt.Sprintf("%v carry this volume's tether tags too; tether uses %s and leaves them alone", ids, v.ID))
	}
	if v.MultiAttach {
		e.step(stepFailed, "serve "+v.ID, "EBS Multi-Attach is enabled: tether serves single-attach volumes only")
		e.x.Advice = "disable Multi-Attach (aws ec2 modify-volume --no-multi-attach-enabled) or use another volume"
		return
	}
	if len(v.Attachments) == 0 {
		e.released()
		if t := e.target(nil); t != "" {
			e.attachTo(v, t)
			return
		}
		e.step(stepDone, "available", "no task needs it")
		return
	}
	a := v.Attachments[0]
	e.x.Instance, e.x.Attachment = a.InstanceID, a.State
	if t := e.target(&a); t == a.InstanceID || (t == "" && e.heldOn(a.InstanceID)) {
		e.released()
		e.serveOn(v, a)
		return
	}
	e.releaseFrom(v, a)
	e.nextServe(e.target(&a))
}

// target: the instance tether serves now: where it is attached if a task
// there needs it, else the oldest waiting task's (as the reconciler picks).
func (e *explainer) target(a *cloud.Attachment) string {
	for _, t := range e.needers {
		if a != nil && e.f.instanceOfTask(t) == a.InstanceID {
			return a.InstanceID
		}
	}
	if len(e.needers) > 0 {
		return e.f.instanceOfTask(e.needers[0])
	}
	return ""
}

func (e *explainer) heldOn(inst string) bool {
	for _, t := range e.holders {
		if e.f.instanceOfTask(t) == inst {
			return true
		}
	}
	return false
}

func (e *explainer) tasksOn(ts []cloud.Task, inst string) []cloud.Task {
	var out []cloud.Task
	for _, t := range ts {
		if e.f.instanceOfTask(t) == inst {
			out = append(out, t)
		}
	}
	return out
}

func (e *explainer) noVolume() {
	f := e.f
	if len(f.unowned) > 0 {
		v := f.unowned[0]
		what := fmt.Sprintf("EBS volume %s (%s) is named %s but is not tether's: tether creates no second volume", v.ID, v.AZ, f.key.Volume)
		if len(f.unowned) > 1 {
			var ids []string
			for _, u := range f.unowned {
				ids = append(ids, u.ID)
			}
			what = fmt.Sprintf("EBS volumes %v are named %s and none is tether's: tether will not choose", ids, f.key.Volume)
		}
		e.step(stepFailed, "create "+f.key.Volume, what)
		e.x.Advice = fmt.Sprintf("claim it: tether adopt %s --name %s --cluster %s", v.ID, f.key.Volume, f.key.Cluster)
		e.wait("an operator to adopt %s (tether adopt)", v.ID)
		return
	}
	if t := e.target(nil); t != "" {
		e.step(stepNow, "create "+f.key.Volume, "in "+cmp.Or(e.f.instances[t].AZ, "the AZ of "+t))
		e.wait("tether to create %s for task %s on %s", f.key.Volume, cloud.TaskID(e.needers[0].ARN), t)
		e.nextServe(t)
		return
	}
	e.step(stepNext, "create "+f.key.Volume, "when a task that needs it is placed")
}

// nextServe lists the steps still to come on inst.
func (e *explainer) nextServe(inst string) {
	if inst == "" {
		return
	}
	e.step(stepNext, "attach to "+inst, "")
	e.step(stepNext, "mount on "+inst, "")
	for _, t := range e.tasksOn(e.needers, inst) {
		e.step(stepNext, "task "+cloud.TaskID(t.ARN)+" starts", "")
	}
}

// released: the volume left the instance of its last stopped holder.
func (e *explainer) released() {
	f := e.f
	if f.releasedFrom == "" {
		return
	}
	if u := f.released; u != nil {
		e.commandStep("unmount on "+f.releasedFrom, u, stepDone)
	}
	e.step(stepDone, "detach from "+f.releasedFrom, "")
}

// commandStep reports an SSM command: its state (the given one when it
// succeeded) and the agent's own words.
func (e *explainer) commandStep(what string, c *cloud.Command, ok string) {
	switch c.Status {
	case cloud.CommandPending:
		e.step(stepNow, what, e.pending(c))
	case cloud.CommandSucceeded:
		detail := fmt.Sprintf("command %s succeeded", c.ID)
		if !c.Ended.IsZero() {
			detail += " at " + c.Ended.UTC().Format(time.RFC3339)
		}
		if out, parsed := agentproto.ParseOutput(c.Output); parsed {
			if a := out.AgentOf(); a.Reported() {
				detail += fmt.Sprintf(" (tether-agent %s, protocol %d)", a.AgentVersion, a.Protocol)
			}
		}
		e.step(ok, what, detail)
	case cloud.CommandUnreachable:
		e.step(stepFailed, what, fmt.Sprintf("command %s not delivered (%s): the instance's SSM agent does not answer", c.ID, c.Detail))
	default:
		e.step(stepFailed, what, fmt.Sprintf("command %s: %s", c.ID, agentWords(c)))
	}
}

// pending says how long a command that has not finished has been going,
// and whether the instance's SSM agent picked it up.
func (e *explainer) pending(c *cloud.Command) string {
	switch c.Detail {
	case "Pending", "Delayed":
		return fmt.Sprintf("command %s waiting %s for the instance's SSM agent to pick it up", c.ID, e.ago(c.Requested))
	}
	return fmt.Sprintf("command %s running for %s", c.ID, e.ago(c.Requested))
}

// agentWords: the agent's message for a failed command, or SSM's detail.
func agentWords(c *cloud.Command) string {
	if out, ok := agentproto.ParseOutput(c.Output); ok && out.Error != nil {
		msg := fmt.Sprintf("exit %d (%s): %s", out.Error.ExitCode, out.Error.Class, out.Error.Message)
		if a := out.Error.Agent; a.Reported() && a.Protocol != agentproto.Protocol {
			msg += fmt.Sprintf(" [tether-agent %s speaks protocol %d, these functions %d]", a.AgentVersion, a.Protocol, agentproto.Protocol)
		}
		return msg
	}
	return fmt.Sprintf("exit %d, %s", c.ExitCode, c.Detail)
}

// holders of a busy unmount that are containers (the force is refused for them).
func busyContainers(c *cloud.Command) []agentproto.Holder {
	out, ok := agentproto.ParseOutput(c.Output)
	if !ok || out.Error == nil || out.Error.ExitCode != agentproto.ExitBusy {
		return nil
	}
	var hs []agentproto.Holder
	for _, h := range out.Error.Holders {
		if h.Kind == "container" || h.ContainerID != "" {
			hs = append(hs, h)
		}
	}
	return hs
}

// releaseFrom: the volume must leave a.InstanceID (another instance needs
// it, or nothing does).
func (e *explainer) releaseFrom(v cloud.Volume, a cloud.Attachment) {
	f, inst := e.f, a.InstanceID
	halted := ""
	if in := f.instances[inst]; in.State != "" && in.State != "running" {
		halted = fmt.Sprintf(" (EC2 says %s is %s)", inst, in.State)
	}
	if hs := append(e.tasksOn(e.holders, inst), e.tasksOn(e.needers, inst)...); len(hs) > 0 {
		t := hs[0]
		if t.DesiredStatus == "RUNNING" {
			e.step(stepNow, "task "+cloud.TaskID(t.ARN)+" on "+inst+" lets go", fmt.Sprintf("it is %s and wants to run: a tether volume serves one instance at a time", t.LastStatus))
			e.wait("task %s on %s to stop: it holds the volume and runs (%s)%s", cloud.TaskID(t.ARN), inst, t.LastStatus, halted)
			e.x.Advice = "place the tasks that share the volume on one instance, or deploy with minimumHealthyPercent 0 and maximumPercent 100"
		} else {
			e.step(stepNow, "task "+cloud.TaskID(t.ARN)+" on "+inst+" stops", "its last status is "+t.LastStatus)
			e.wait("task %s on %s to stop (last status %s)%s", cloud.TaskID(t.ARN), inst, t.LastStatus, halted)
		}
		e.step(stepNext, "unmount on "+inst, "")
		e.step(stepNext, "detach from "+inst, "")
		return
	}
	if a.State == cloud.AttachDetaching || a.State == cloud.AttachBusy {
		if u := f.unmount; u != nil {
			e.commandStep("unmount on "+inst, u, stepDone)
		}
		since := ""
		if u := f.unmount; u != nil && !u.Ended.IsZero() {
			since = " (unmounted " + e.ago(u.Ended) + " ago)"
		}
		e.step(stepNow, "detach from "+inst, "EC2 says "+a.State+since)
		e.wait("EC2 to detach %s from %s (%s%s)%s", v.ID, inst, a.State, since, halted)
		return
	}
	u := f.unmount
	ping := f.instances[inst].SSM
	switch {
	case u == nil && ping != "" && ping != "Online":
		e.step(stepNow, "unmount on "+inst, "SSM cannot run it there: the instance's SSM agent is "+ping)
		e.wait("the SSM agent on %s (SSM says %s); tether never force-detaches a running instance%s", inst, ping, halted)
		e.x.Advice = "start the instance's SSM agent, or stop the instance (tether then force-detaches), or `tether release --force` (data the host did not flush is lost)"
	case u == nil:
		e.step(stepNow, "unmount on "+inst, "not sent yet")
		e.wait("tether to send the unmount of %s to %s%s", v.ID, inst, halted)
		if halted != "" {
			e.wait("tether to act on %s being %s (it force-detaches from a stopped or terminated instance)", inst, f.instances[inst].State)
		}
	case u.Status == cloud.CommandPending:
		e.commandStep("unmount on "+inst, u, stepDone)
		e.wait("the unmount on %s (%s)%s", inst, e.pending(u), halted)
	case u.Status == cloud.CommandUnreachable:
		e.commandStep("unmount on "+inst, u, stepDone)
		e.wait("the SSM agent on %s, which does not answer%s", inst, halted)
		e.x.Advice = "start the instance's SSM agent, or stop the instance (tether then force-detaches), or `tether release --force` (data the host did not flush is lost)"
	case u.Status == cloud.CommandFailed:
		e.commandStep("unmount on "+inst, u, stepDone)
		if hs := busyContainers(u); len(hs) > 0 {
			e.wait("containers on %s to let go of the volume (%s); tether asks again%s", inst, holderNames(hs), halted)
			e.x.Advice = "a container on the host still uses the volume: stop it (a force is refused while it runs)"
		} else {
			e.wait("the host %s to let go: its unmount answered %s; tether asks again%s", inst, agentWords(u), halted)
		}
	default:
		e.commandStep("unmount on "+inst, u, stepDone)
		e.step(stepNow, "detach from "+inst, "tether detaches it")
		e.wait("tether to detach %s from %s", v.ID, inst)
	}
	if e.x.Steps[len(e.x.Steps)-1].What != "detach from "+inst {
		e.step(stepNext, "detach from "+inst, "")
	}
	if e.target(&a) == "" && e.x.WaitingFor != "" {
		e.x.WaitingFor += "; no task needs the volume, so tether releases it"
	}
}

func holderNames(hs []agentproto.Holder) string {
	var names []string
	for _, h := range hs {
		n := cmp.Or(h.Name, h.ID, h.ContainerID)
		if h.State != "" {
			n += " (" + h.State + ")"
		}
		names = append(names, h.Kind+" "+n)
	}
	return strings.Join(names, ", ")
}

// attachTo: the volume is available and a task on inst needs it.
func (e *explainer) attachTo(v cloud.Volume, inst string) {
	if az := e.f.instances[inst].AZ; az != "" && az != v.AZ {
		for _, s := range e.f.moves {
			if s.Tags[cloud.TagMoveTo] != az {
				continue
			}
			switch s.State {
			case cloud.SnapshotError:
				e.step(stepFailed, "move to "+az+" by snapshot", fmt.Sprintf("snapshot %s failed: %s", s.ID, s.StateError))
				e.x.Advice = "the volume stays in " + v.AZ + "; constrain the tasks to it, or snapshot it by hand"
				return
			case cloud.SnapshotCompleted:
				e.step(stepDone, "snapshot for the move to "+az, s.ID)
				e.step(stepNow, "create the volume in "+az+" from "+s.ID, "not asked yet")
				e.wait("tether to create %s's volume in %s from %s", e.f.key.Volume, az, s.ID)
			default:
				e.step(stepNow, "snapshot for the move to "+az, fmt.Sprintf("%s %s %s, started %s ago", s.ID, s.State, s.Progress, e.ago(s.StartTime)))
				e.wait("EBS to complete snapshot %s of %s (%s)", s.ID, v.ID, s.Progress)
				e.step(stepNext, "create the volume in "+az+" from "+s.ID, "")
			}
			e.step(stepNext, "attach to "+inst, "")
			e.step(stepNext, "mount on "+inst, "")
			return
		}
		e.step(stepFailed, "attach to "+inst, fmt.Sprintf("%s is in %s, the volume in %s: tether stops the task (add the placement constraint attribute:ecs.availability-zone == %s, or set the driverOpt azmove=snapshot to move the volume)", inst, az, v.AZ, v.AZ))
		e.x.Advice = fmt.Sprintf("constrain the tasks to %s, or let tether move the volume by snapshot (driverOpt azmove=snapshot)", v.AZ)
		return
	}
	e.step(stepNow, "attach to "+inst, "not asked yet")
	e.wait("tether to attach %s to %s (task %s waits)", v.ID, inst, cloud.TaskID(e.tasksOn(e.needers, inst)[0].ARN))
	e.step(stepNext, "mount on "+inst, "")
	for _, t := range e.tasksOn(e.needers, inst) {
		e.step(stepNext, "task "+cloud.TaskID(t.ARN)+" starts", "")
	}
}

// serveOn: the volume is attached where it is needed (or used).
func (e *explainer) serveOn(v cloud.Volume, a cloud.Attachment) {
	f, inst := e.f, a.InstanceID
	switch a.State {
	case cloud.AttachAttaching:
		e.step(stepNow, "attach to "+inst, fmt.Sprintf("EC2 says attaching (for %s) as %s", e.ago(a.AttachTime), a.Device))
		e.wait("EC2 to attach %s to %s (attaching for %s)", v.ID, inst, e.ago(a.AttachTime))
	case cloud.AttachDetaching, cloud.AttachBusy:
		e.step(stepNow, "detach from "+inst, "EC2 says "+a.State+": a detach raced a mount here; tether attaches it again after")
		e.wait("EC2 to detach %s from %s (%s); then it is attached there again", v.ID, inst, a.State)
		return
	default:
		e.step(stepDone, "attach to "+inst, fmt.Sprintf("as %s at %s", a.Device, a.AttachTime.UTC().Format(time.RFC3339)))
	}
	m := f.mount
	mounted := false
	switch {
	case m == nil:
		if e.heldOn(inst) {
			mounted = true // a started task proves the plugin mounted it
			break
		}
		e.step(stepNow, "mount on "+inst, "not sent yet")
		if e.x.WaitingFor == "" {
			e.wait("tether to send the mount of %s to %s", v.ID, inst)
		}
	case m.Status == cloud.CommandPending:
		e.commandStep("mount on "+inst, m, stepDone)
		if e.x.WaitingFor == "" || a.State == cloud.AttachAttached {
			e.wait("the mount on %s (%s)", inst, e.pending(m))
		}
	case m.Status == cloud.CommandSucceeded:
		e.commandStep("mount on "+inst, m, stepDone)
		mounted = true
	default:
		e.commandStep("mount on "+inst, m, stepDone)
		e.wait("tether to mount %s on %s again, or to stop the waiting tasks with the agent's words", v.ID, inst)
	}
	for _, t := range e.tasksOn(e.holders, inst) {
		e.step(stepDone, "task "+cloud.TaskID(t.ARN)+" runs", "since "+t.StartedAt.UTC().Format(time.RFC3339))
	}
	for _, t := range e.tasksOn(e.needers, inst) {
		if mounted {
			e.step(stepNow, "task "+cloud.TaskID(t.ARN)+" starts", "ECS says "+t.LastStatus)
			e.wait("ECS to start task %s (its volume is mounted on %s)", cloud.TaskID(t.ARN), inst)
		} else {
			e.step(stepNext, "task "+cloud.TaskID(t.ARN)+" starts", "")
		}
	}
}
