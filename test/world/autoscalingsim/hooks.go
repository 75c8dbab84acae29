package autoscalingsim

import (
	"context"
	"net/url"
	"slices"
	"sort"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

// Lifecycle hooks (user guide, "Amazon EC2 Auto Scaling lifecycle hooks",
// "Complete a lifecycle action"; API reference PutLifecycleHook,
// CompleteLifecycleAction, RecordLifecycleActionHeartbeat):
//   - A hook holds each instance of its transition in a wait state until
//     CompleteLifecycleAction (by token, or by instance id) or until its
//     heartbeat timeout (30 to 7200 s, default 3600) passes, then applies
//     its DefaultResult (default ABANDON).
//   - RecordLifecycleActionHeartbeat restarts the timeout ("extends the
//     timeout period by the timeout value specified when you created the
//     lifecycle hook"); an instance waits at most its GlobalTimeout in all,
//     "172800 seconds (48 hours) or 100 times HeartbeatTimeout, whichever
//     is smaller", then the DefaultResult applies.
//   - On launch, CONTINUE puts the instance in service and ABANDON
//     terminates it; on termination "both ABANDON and CONTINUE allow the
//     instance to terminate. However, ABANDON stops any remaining actions,
//     such as other lifecycle hooks".
//   - An unknown token or instance is a ValidationError: "No active
//     Lifecycle Action found with token ..." / "... with instance ID ..."
//     (AWS's messages, as users report them). An action already completed
//     or timed out is no longer active.
//   - DeleteLifecycleHook completes outstanding actions first, "ABANDON
//     for launching instances, CONTINUE for terminating instances".
//   - At most 50 hooks per group ("Quotas for Amazon EC2 Auto Scaling").
// All durations are world time (Config.TimeScale).

// Lifecycle transitions.
const (
	TransitionLaunching   = "autoscaling:EC2_INSTANCE_LAUNCHING"
	TransitionTerminating = "autoscaling:EC2_INSTANCE_TERMINATING"
)

// Lifecycle action results.
const (
	ResultContinue = "CONTINUE"
	ResultAbandon  = "ABANDON"
)

const (
	maxHooks         = 50
	defaultHeartbeat = 3600
	maxGlobalTimeout = 172800
)

type hook struct {
	name, group, transition string
	role, metadata          string
	heartbeat               int // seconds
	defaultResult           string
}

func (h *hook) globalTimeout() int { return min(maxGlobalTimeout, 100*h.heartbeat) }

func (h *hook) xml() xmlHook {
	return xmlHook{LifecycleHookName: h.name, AutoScalingGroupName: h.group, LifecycleTransition: h.transition,
		RoleARN: h.role, NotificationMetadata: h.metadata, HeartbeatTimeout: h.heartbeat,
		GlobalTimeout: h.globalTimeout(), DefaultResult: h.defaultResult}
}

// lifecycleAction is one instance held by one hook.
type lifecycleAction struct {
	token          string
	hook           hook // as it was when the action began
	group          *group
	inst           *instance
	started        time.Time
	deadline       time.Time // when the heartbeat timeout passes
	globalDeadline time.Time
	gen            uint64 // bumped by each heartbeat, so stale timers stop
	done           bool
}

// hookFromForm reads a hook's settings (PutLifecycleHook's parameters, or
// one LifecycleHookSpecification) over old (nil for a new hook).
func hookFromForm(form url.Values, groupName string, old *hook) (*hook, error) {
	name, err := requiredString(form, "LifecycleHookName", 1, 255)
	if err != nil {
		return nil, err
	}
	if err := checkHookName(name); err != nil {
		return nil, err
	}
	h := &hook{name: name, group: groupName, heartbeat: defaultHeartbeat, defaultResult: ResultAbandon}
	if old != nil {
		*h = *old
	}
	if t, ok := param(form, "LifecycleTransition"); ok {
		if t != TransitionLaunching && t != TransitionTerminating {
			return nil, errValidation("Invalid lifecycle transition %s: valid values are %s and %s.", t, TransitionLaunching, TransitionTerminating)
		}
		h.transition = t
	} else if old == nil {
		// "Required for new lifecycle hooks, but optional when updating
		// existing hooks."
		return nil, errNull("LifecycleTransition")
	}
	if v, ok, err := optInt(form, "HeartbeatTimeout"); err != nil {
		return nil, err
	} else if ok {
		if v < 30 || v > 7200 {
			return nil, errValidation("HeartbeatTimeout must be between 30 and 7200 seconds; got %d.", v)
		}
		h.heartbeat = v
	}
	if v, ok := param(form, "DefaultResult"); ok {
		if v != ResultContinue && v != ResultAbandon {
			return nil, errValidation("Valid values for DefaultResult are CONTINUE and ABANDON; got %s.", v)
		}
		h.defaultResult = v
	}
	if v, ok, err := optString(form, "NotificationMetadata", 1, 4000); err != nil {
		return nil, err
	} else if ok {
		h.metadata = v
	}
	if v, ok, err := optString(form, "NotificationTargetARN", 0, 255); err != nil {
		return nil, err
	} else if ok && v != "" {
		return nil, errValidation("The world delivers lifecycle notifications through EventBridge only; an SNS or SQS NotificationTargetARN is not modelled.")
	}
	if v, ok, err := optString(form, "RoleARN", 1, 255); err != nil {
		return nil, err
	} else if ok {
		h.role = v
	}
	return h, nil
}

// putLifecycleHook answers PutLifecycleHook: create or update.
func (s *Server) putLifecycleHook(_ context.Context, form url.Values) (any, error) {
	groupName, err := requiredString(form, "AutoScalingGroupName", 1, 255)
	if err != nil {
		return nil, err
	}
	name, err := requiredString(form, "LifecycleHookName", 1, 255)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.groupLocked(groupName)
	if err != nil {
		return nil, err
	}
	old := g.hooks[name]
	h, err := hookFromForm(form, groupName, old)
	if err != nil {
		return nil, err
	}
	if old == nil && len(g.hooks) >= maxHooks {
		return nil, awsproto.BadRequest("LimitExceeded", "Lifecycle hooks per Auto Scaling group: the quota is %d.", maxHooks)
	}
	g.hooks[name] = h
	s.log.Info("lifecycle hook put", "group", groupName, "hook", name, "transition", h.transition,
		"heartbeat", h.heartbeat, "defaultResult", h.defaultResult)
	return &empty{}, nil
}

// describeLifecycleHooks answers DescribeLifecycleHooks (at most 50 names;
// names that do not exist are left out).
func (s *Server) describeLifecycleHooks(_ context.Context, form url.Values) (any, error) {
	groupName, err := requiredString(form, "AutoScalingGroupName", 1, 255)
	if err != nil {
		return nil, err
	}
	names := list(form, "LifecycleHookNames")
	if len(names) > 50 {
		return nil, errValidation("1 validation error detected: Value at 'lifecycleHookNames' failed to satisfy constraint: Member must have length less than or equal to 50")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.groupLocked(groupName)
	if err != nil {
		return nil, err
	}
	out := &describeHooksResult{}
	for _, h := range sortedHooks(g) {
		if len(names) == 0 || slices.Contains(names, h.name) {
			out.Hooks = append(out.Hooks, h.xml())
		}
	}
	return out, nil
}

func sortedHooks(g *group) []*hook {
	hs := make([]*hook, 0, len(g.hooks))
	for _, h := range g.hooks {
		hs = append(hs, h)
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].name < hs[j].name })
	return hs
}

// deleteLifecycleHook answers DeleteLifecycleHook.
func (s *Server) deleteLifecycleHook(_ context.Context, form url.Values) (any, error) {
	groupName, err := requiredString(form, "AutoScalingGroupName", 1, 255)
	if err != nil {
		return nil, err
	}
	name, err := requiredString(form, "LifecycleHookName", 1, 255)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.groupLocked(groupName)
	if err != nil {
		return nil, err
	}
	h := g.hooks[name]
	if h == nil {
		return nil, errValidation("No Lifecycle Hook found with name %s for Auto Scaling group %s", name, groupName)
	}
	delete(g.hooks, name)
	for _, a := range s.actions {
		if a.group == g && a.hook.name == name {
			result := ResultContinue
			if a.hook.transition == TransitionLaunching {
				result = ResultAbandon
			}
			s.completeLocked(a, result, "hook deleted")
		}
	}
	s.log.Info("lifecycle hook deleted", "group", groupName, "hook", name)
	return &empty{}, nil
}

func (s *Server) describeLifecycleHookTypes(context.Context, url.Values) (any, error) {
	return &describeHookTypesResult{Types: []string{TransitionLaunching, TransitionTerminating}}, nil
}

// enterWaitLocked puts the instance in its transition's wait state with one
// action per hook of that transition, announced on the bus; false when the
// group has no such hook. Caller holds s.mu.
func (s *Server) enterWaitLocked(in *instance, transition string) bool {
	var hs []*hook
	for _, h := range sortedHooks(in.group) {
		if h.transition == transition {
			hs = append(hs, h)
		}
	}
	if len(hs) == 0 {
		return false
	}
	in.state = StatePendingWait
	if transition == TransitionTerminating {
		in.state = StateTerminatingWait
	}
	now := time.Now()
	for _, h := range hs {
		a := &lifecycleAction{token: s.newUUID(), hook: *h, group: in.group, inst: in, started: now,
			deadline:       now.Add(s.real(time.Duration(h.heartbeat) * time.Second)),
			globalDeadline: now.Add(s.real(time.Duration(h.globalTimeout()) * time.Second))}
		s.actions[a.token] = a
		in.actions[h.name] = a
		s.scheduleTimeoutLocked(a)
		s.lifecycleEventLocked(a)
	}
	return true
}

// scheduleTimeoutLocked arms the action's timeout at its deadline. Caller
// holds s.mu.
func (s *Server) scheduleTimeoutLocked(a *lifecycleAction) {
	a.gen++
	gen := a.gen
	s.afterLocked(time.Until(a.deadline), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if a.done || a.gen != gen {
			return
		}
		why := "heartbeat timeout"
		if !time.Now().Before(a.globalDeadline) {
			why = "global timeout"
		}
		s.completeLocked(a, a.hook.defaultResult, why)
	})
}

// completeLocked ends an action with result and moves the instance on when
// no action holds it any more. Caller holds s.mu.
func (s *Server) completeLocked(a *lifecycleAction, result, why string) {
	if a.done {
		return
	}
	in := a.inst
	end := func(x *lifecycleAction) {
		x.done = true
		delete(s.actions, x.token)
		delete(in.actions, x.hook.name)
	}
	end(a)
	s.log.Info("lifecycle action completed", "group", a.group.name, "hook", a.hook.name, "instance", in.id,
		"result", result, "why", why, "waited", time.Since(a.started).Round(time.Millisecond))
	if result == ResultAbandon {
		for _, other := range in.actions {
			end(other)
		}
	}
	if len(in.actions) > 0 {
		return
	}
	switch in.state {
	case StatePendingWait:
		if result == ResultAbandon {
			s.startTerminateLocked(in, "At "+ts(time.Now())+" an instance was taken out of service because its launch lifecycle action was abandoned.")
			s.reconcileLocked(in.group)
			return
		}
		in.state = StatePendingProceed
		s.inServiceLocked(in)
	case StateTerminatingWait:
		s.proceedTerminateLocked(in)
	}
}

// findActionLocked finds the active action CompleteLifecycleAction or
// RecordLifecycleActionHeartbeat names. Caller holds s.mu.
func (s *Server) findActionLocked(form url.Values) (*lifecycleAction, error) {
	hookName, err := requiredString(form, "LifecycleHookName", 1, 255)
	if err != nil {
		return nil, err
	}
	if err := checkHookName(hookName); err != nil {
		return nil, err
	}
	groupName, err := requiredString(form, "AutoScalingGroupName", 1, 1600)
	if err != nil {
		return nil, err
	}
	token, hasToken, err := optString(form, "LifecycleActionToken", 36, 36)
	if err != nil {
		return nil, err
	}
	id, hasID, err := optString(form, "InstanceId", 1, 19)
	if err != nil {
		return nil, err
	}
	if !hasToken && !hasID {
		return nil, errValidation("Either LifecycleActionToken or InstanceId must be specified.")
	}
	g, err := s.groupLocked(groupName)
	if err != nil {
		return nil, err
	}
	if hasToken {
		a := s.actions[token]
		if a == nil || a.group != g || a.hook.name != hookName {
			return nil, errValidation("No active Lifecycle Action found with token %s", token)
		}
		if hasID && a.inst.id != id {
			return nil, errValidation("No active Lifecycle Action found with instance ID %s", id)
		}
		return a, nil
	}
	in := s.instances[id]
	if in == nil || in.group != g || in.actions[hookName] == nil {
		return nil, errValidation("No active Lifecycle Action found with instance ID %s", id)
	}
	return in.actions[hookName], nil
}

// completeLifecycleAction answers CompleteLifecycleAction.
func (s *Server) completeLifecycleAction(_ context.Context, form url.Values) (any, error) {
	result, ok := param(form, "LifecycleActionResult")
	if !ok {
		return nil, errNull("LifecycleActionResult")
	}
	if result != ResultContinue && result != ResultAbandon {
		return nil, errValidation("Valid values for LifecycleActionResult are CONTINUE and ABANDON; got %s.", result)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.findActionLocked(form)
	if err != nil {
		return nil, err
	}
	s.completeLocked(a, result, "CompleteLifecycleAction")
	return &empty{}, nil
}

// recordLifecycleActionHeartbeat answers RecordLifecycleActionHeartbeat:
// the timeout restarts, never past the global timeout.
func (s *Server) recordLifecycleActionHeartbeat(_ context.Context, form url.Values) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.findActionLocked(form)
	if err != nil {
		return nil, err
	}
	next := time.Now().Add(s.real(time.Duration(a.hook.heartbeat) * time.Second))
	if next.After(a.globalDeadline) {
		next = a.globalDeadline
	}
	a.deadline = next
	s.scheduleTimeoutLocked(a)
	s.log.Info("lifecycle action heartbeat", "group", a.group.name, "hook", a.hook.name, "instance", a.inst.id,
		"deadlineIn", time.Until(next).Round(time.Millisecond))
	return &empty{}, nil
}
