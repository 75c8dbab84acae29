package reconcile

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Steps a hint can record.
const (
	stepCreate  = "create"
	stepAttach  = "attach"
	stepMount   = "mount"
	stepUnmount = "unmount"
	stepDetach  = "detach"
	// stepHeld: no step taken; the volume waits on Instance for a task
	// there to stop (what a retry of it can be superseded by).
	stepHeld = "held"
	// stepUnmountDue: the release from Instance was decided, and SSM's
	// rate limit refused its unmount: the retry sends it at once if EC2
	// still shows the same attachment (At: its attach time), without the
	// reads that decided it.
	stepUnmountDue = "unmount-due"
	// stepMountDue: the volume was attached for Target, and SSM's rate
	// limit refused its mount: the retry sends it once EC2 still shows
	// that attachment (At: its attach time) and ECS that task waiting
	// there, without listing the key's tasks again.
	stepMountDue = "mount-due"
)

// hint is what a pass knew when it handed its key back: the step it took,
// on which volume and instance, and when. The next pass uses it to skip
// reads whose answer it already has (the SSM command to look at, the
// attachment it verified). Everything in it is checked before it is relied
// on, and a pass without it reaches the same end state.
type hint struct {
	Step     string `json:"s,omitempty"`
	Volume   string `json:"v,omitempty"`
	Instance string `json:"i,omitempty"`
	CI       string `json:"ci,omitempty"` // container instance ARN of Instance
	Command  string `json:"c,omitempty"`
	At       int64  `json:"t,omitempty"` // when the step was taken (unix ms)
	Since    int64  `json:"h,omitempty"` // when the handoff began (unix ms)
	Gen      int    `json:"g,omitempty"` // CreateVolume token generation
	Burn     int64  `json:"b,omitempty"` // when Gen's token was first refused
	Vanished int    `json:"x,omitempty"` // volumes EC2 deleted right after creating them
	Unreach  int64  `json:"u,omitempty"` // when Instance's agent was first found unreachable
	Busy     int64  `json:"y,omitempty"` // when unmount on Instance first answered busy
	Pass     int64  `json:"n,omitempty"` // when the pass that handed the key back ended
	Poison   string `json:"p,omitempty"` // device name that got stuck on Instance
	// Detaching: when the detach of Volume from Instance was first seen in
	// progress (unix ms); kept while unmounts are sent to let it finish.
	Detaching int64 `json:"d,omitempty"`
	// Attempt: commands of Step sent for this attachment by this chain.
	Attempt int `json:"a,omitempty"`
	// Target: the task the volume is released for (a detach's next step
	// attaches it there if that task still wants it).
	Target string `json:"tt,omitempty"`
	// Operator: an operator asked to release the volume from an instance
	// ("INSTANCE@MS": the instance, "*" for whichever holds it, and when
	// asked); Force: with force. The chain carries them until it is done
	// or Timing.OperatorWindow has passed.
	Operator string `json:"o,omitempty"`
	Force    bool   `json:"f,omitempty"`
	// Owner: the mount Command carried FormatOwner (SSM's answer for one
	// invocation does not echo the parameters).
	Owner bool `json:"w,omitempty"`
	// Drain: the chain began with a live draining instance's event (see
	// Timing.DrainDefer).
	Drain bool `json:"dr,omitempty"`
	// Released: Command is a drain's release (drainrelease.go), sent once no
	// task was meant to run on Instance, which ECS was draining: no task
	// can want the volume there, so its end asks for the detach without
	// reading ECS (where it goes next is read once it is detached).
	Released bool `json:"rl,omitempty"`
	// TaskDef: the task definition of Target (stepMountDue: the mount's
	// parameters come from it, without reading the task again).
	TaskDef string `json:"td,omitempty"`
	// Refused: how many times SSM's rate limit refused this due step
	// (stepMountDue): its retries space out as the bucket stays empty.
	Refused int `json:"rf,omitempty"`
	// Full: the command's end must be weighed by the full pass (a pass of
	// the key ended unread while it ran: see pass.awaitCommand).
	Full bool `json:"fu,omitempty"`
}

// operatorAsk is an operator's release that a chain of passes carries out.
type operatorAsk struct {
	instance string    // the instance to release from ("*": whichever holds it); "" none
	at       time.Time // when asked
	force    bool
}

// covers: the ask is about a release from inst.
func (o operatorAsk) covers(inst string) bool {
	return o.instance != "" && (o.instance == "*" || o.instance == inst)
}

func (o operatorAsk) encode() string {
	if o.instance == "" {
		return ""
	}
	return o.instance + "@" + strconv.FormatInt(ms(o.at), 10)
}

func parseOperator(s string, force bool) operatorAsk {
	inst, at, ok := strings.Cut(s, "@")
	n, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || inst == "" {
		return operatorAsk{}
	}
	return operatorAsk{instance: inst, at: fromMS(n), force: force}
}

// counts: the hint carries a count a chain of retries must keep (see
// superseded).
func (h hint) counts() bool {
	return h.Gen != 0 || h.Burn != 0 || h.Vanished != 0 || h.Unreach != 0 || h.Busy != 0 || h.Detaching != 0 || h.Operator != "" || h.Poison != "" ||
		h.Step == stepGrow // only its chain sends the mount that grows the filesystem
}

// carries: h keeps every count old keeps, about the same volume and
// instance, counted from no later (so no deadline moves out).
func (h hint) carries(old hint) bool {
	since := func(mine, theirs int64) bool { return theirs == 0 || (mine != 0 && mine <= theirs) }
	return h.Volume == old.Volume && h.Instance == old.Instance &&
		h.Gen == old.Gen && h.Burn == old.Burn && h.Vanished >= old.Vanished &&
		since(h.Unreach, old.Unreach) && since(h.Busy, old.Busy) && since(h.Detaching, old.Detaching) &&
		h.Operator == old.Operator && h.Force == old.Force && (old.Poison == "" || h.Poison == old.Poison) &&
		(old.Step != stepGrow || h.Step == stepGrow)
}

func parseHint(s string) hint {
	var h hint
	if s == "" || json.Unmarshal([]byte(s), &h) != nil {
		return hint{}
	}
	return h
}

func (h hint) String() string {
	if h == (hint{}) {
		return ""
	}
	b, _ := json.Marshal(h)
	return string(b)
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}
