package autoscalingsim

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

// LaunchTemplate stands in for an EC2 launch template, which the world's
// EC2 does not serve: the world defines the templates its groups may name
// (AddLaunchTemplate), each saying how the world boots an instance.
type LaunchTemplate struct {
	ID           string // lt-...; made up when empty
	Name         string // 3 to 128 of [a-zA-Z0-9().-/_] (EC2 API reference, CreateLaunchTemplate)
	InstanceType string // default t3.medium
	// Spot: InstanceMarketOptions MarketType spot; the instances are Spot
	// Instances.
	Spot bool
	// Cluster is the ECS cluster its user data joins (ECS_CLUSTER).
	Cluster string
}

var templateNamePattern = regexp.MustCompile(`^[a-zA-Z0-9().\-/_]{3,128}$`)

// AddLaunchTemplate defines a launch template groups may name, and returns
// it with its id.
func (s *Server) AddLaunchTemplate(t LaunchTemplate) (LaunchTemplate, error) {
	if !templateNamePattern.MatchString(t.Name) {
		return LaunchTemplate{}, fmt.Errorf("autoscalingsim: launch template name %q: want 3 to 128 of [a-zA-Z0-9().-/_]", t.Name)
	}
	if t.InstanceType == "" {
		t.InstanceType = "t3.medium"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.templates {
		if o.Name == t.Name {
			return LaunchTemplate{}, fmt.Errorf("autoscalingsim: launch template %s already exists", t.Name)
		}
	}
	if t.ID == "" {
		t.ID = fmt.Sprintf("lt-0%016x", s.rng.Uint64())
	}
	s.templates = append(s.templates, &t)
	return t, nil
}

// group is one Auto Scaling group. Members include Terminated instances
// until they are dropped.
type group struct {
	name, arn         string
	min, max, desired int
	azs               []string
	template          *LaunchTemplate
	version           string
	created           time.Time
	cooldown, grace   int
	healthCheckType   string
	policies          []string
	newProtected      bool
	capacityRebalance bool
	tags              []xmlTag
	hooks             map[string]*hook
	members           map[string]*instance
	launching         map[string]int // in-flight launches per zone
	cause             string         // why the desired capacity last changed
	seq               int64
}

// GroupSpec describes a group created through CreateGroup.
type GroupSpec struct {
	Name              string
	Template          string // a launch template's name
	Min, Max, Desired int
	AZs               []string // default: every zone of the world
	// Hooks are created with the group, before any instance launches
	// (LifecycleHookSpecificationList).
	Hooks               []HookSpec
	TerminationPolicies []string
	Tags                map[string]string // propagated at launch
}

// HookSpec describes a lifecycle hook.
type HookSpec struct {
	Name          string
	Transition    string // TransitionLaunching or TransitionTerminating
	Heartbeat     int    // seconds, 30 to 7200; default 3600
	DefaultResult string // CONTINUE or ABANDON; default ABANDON
	Metadata      string
}

// CreateGroup creates a group as CreateAutoScalingGroup does (same rules);
// it launches its desired capacity in the background.
func (s *Server) CreateGroup(spec GroupSpec) error {
	form := url.Values{"AutoScalingGroupName": {spec.Name}, "LaunchTemplate.LaunchTemplateName": {spec.Template},
		"MinSize": {strconv.Itoa(spec.Min)}, "MaxSize": {strconv.Itoa(spec.Max)}, "DesiredCapacity": {strconv.Itoa(spec.Desired)}}
	for i, az := range spec.AZs {
		form.Set(fmt.Sprintf("AvailabilityZones.member.%d", i+1), az)
	}
	if len(spec.AZs) == 0 {
		for i, az := range s.cfg.AZs {
			form.Set(fmt.Sprintf("AvailabilityZones.member.%d", i+1), az)
		}
	}
	for i, p := range spec.TerminationPolicies {
		form.Set(fmt.Sprintf("TerminationPolicies.member.%d", i+1), p)
	}
	keys := make([]string, 0, len(spec.Tags))
	for k := range spec.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		p := fmt.Sprintf("Tags.member.%d.", i+1)
		form.Set(p+"Key", k)
		form.Set(p+"Value", spec.Tags[k])
		form.Set(p+"PropagateAtLaunch", "true")
	}
	for i, h := range spec.Hooks {
		p := fmt.Sprintf("LifecycleHookSpecificationList.member.%d.", i+1)
		form.Set(p+"LifecycleHookName", h.Name)
		form.Set(p+"LifecycleTransition", h.Transition)
		if h.Heartbeat != 0 {
			form.Set(p+"HeartbeatTimeout", strconv.Itoa(h.Heartbeat))
		}
		if h.DefaultResult != "" {
			form.Set(p+"DefaultResult", h.DefaultResult)
		}
		if h.Metadata != "" {
			form.Set(p+"NotificationMetadata", h.Metadata)
		}
	}
	_, err := s.createAutoScalingGroup(context.Background(), form)
	return err
}

// validPolicies are the predefined termination policies
// (CreateAutoScalingGroup's TerminationPolicies). A Lambda function's ARN
// (a custom policy) is not modelled.
var validPolicies = []string{"Default", "AllocationStrategy", "ClosestToNextInstanceHour", "NewestInstance", "OldestInstance",
	"OldestLaunchConfiguration", "OldestLaunchTemplate"}

func checkPolicies(ps []string) error {
	for _, p := range ps {
		if !slices.Contains(validPolicies, p) {
			return errValidation("Termination policy %s is not one of %s (the world runs no custom termination policy).", p, strings.Join(validPolicies, ", "))
		}
	}
	return nil
}

// checkSizes enforces min <= desired <= max (CreateAutoScalingGroup,
// UpdateAutoScalingGroup).
func checkSizes(min, max, desired int) error {
	if min < 0 || max < 0 || desired < 0 {
		return errValidation("MinSize, MaxSize and DesiredCapacity must not be negative.")
	}
	if max < min {
		return errValidation("Max bound, %d, must be greater than or equal to min bound, %d", max, min)
	}
	if desired < min || desired > max {
		return errValidation("Desired capacity:%d must be between the specified min size:%d and max size:%d", desired, min, max)
	}
	return nil
}

// createAutoScalingGroup answers CreateAutoScalingGroup (API reference):
// a launch template, min and max sizes and at least one zone are needed;
// the desired capacity defaults to the min size; hooks in
// LifecycleHookSpecificationList exist before the first launch.
func (s *Server) createAutoScalingGroup(_ context.Context, form url.Values) (any, error) {
	name, err := requiredString(form, "AutoScalingGroupName", 1, 255)
	if err != nil {
		return nil, err
	}
	for _, p := range []string{"LaunchConfigurationName", "MixedInstancesPolicy", "InstanceId"} {
		for k := range form {
			if k == p || strings.HasPrefix(k, p+".") {
				return nil, errValidation("The world's Auto Scaling launches only from a launch template the world defines; %s is not modelled.", p)
			}
		}
	}
	if _, ok := param(form, "VPCZoneIdentifier"); ok {
		return nil, errValidation("The world has no VPC subnets: give AvailabilityZones instead of VPCZoneIdentifier.")
	}
	ltID, hasID := param(form, "LaunchTemplate.LaunchTemplateId")
	ltName, hasName := param(form, "LaunchTemplate.LaunchTemplateName")
	if !hasID && !hasName {
		return nil, errValidation("Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter.")
	}
	if hasID == hasName {
		return nil, errValidation("Valid requests must contain either launchTemplateId or LaunchTemplateName")
	}
	version, _ := param(form, "LaunchTemplate.Version")
	min, okMin, err := optInt(form, "MinSize")
	if err != nil {
		return nil, err
	}
	if !okMin {
		return nil, errNull("MinSize")
	}
	max, okMax, err := optInt(form, "MaxSize")
	if err != nil {
		return nil, err
	}
	if !okMax {
		return nil, errNull("MaxSize")
	}
	desired, okDesired, err := optInt(form, "DesiredCapacity")
	if err != nil {
		return nil, err
	}
	if !okDesired {
		desired = min // "If you do not specify a desired capacity, the default is the minimum size of the group."
	}
	if err := checkSizes(min, max, desired); err != nil {
		return nil, err
	}
	azs := list(form, "AvailabilityZones")
	if len(azs) == 0 {
		return nil, errValidation("At least one Availability Zone or VPC Subnet is required.")
	}
	for _, az := range azs {
		if !s.hasAZ(az) {
			return nil, errValidation("Availability zone %s is not supported by this world (zones: %s).", az, strings.Join(s.cfg.AZs, ", "))
		}
	}
	policies := list(form, "TerminationPolicies")
	if len(policies) == 0 {
		policies = []string{"Default"}
	}
	if err := checkPolicies(policies); err != nil {
		return nil, err
	}
	cooldown, okCool, err := optInt(form, "DefaultCooldown")
	if err != nil {
		return nil, err
	}
	if !okCool {
		cooldown = 300 // API reference: "Default: 300 seconds"
	}
	grace, _, err := optInt(form, "HealthCheckGracePeriod")
	if err != nil {
		return nil, err
	}
	hct, okHCT, err := optString(form, "HealthCheckType", 1, 32)
	if err != nil {
		return nil, err
	}
	if !okHCT {
		hct = "EC2"
	}
	if hct != "EC2" {
		return nil, errValidation("Health check type %s is not modelled: the world has no load balancers (EC2 only).", hct)
	}
	protected, _, err := optBool(form, "NewInstancesProtectedFromScaleIn")
	if err != nil {
		return nil, err
	}
	rebalance, _, err := optBool(form, "CapacityRebalance")
	if err != nil {
		return nil, err
	}
	if rebalance {
		return nil, errValidation("Capacity Rebalancing is not modelled by the world's Auto Scaling.")
	}
	var tags []xmlTag
	for _, m := range awsproto.Members(form, "Tags.member") {
		k := m.Get("Key")
		if err := checkLen("Key", k, 1, 128); err != nil {
			return nil, err
		}
		tags = append(tags, xmlTag{ResourceID: name, ResourceType: "auto-scaling-group", Key: k, Value: m.Get("Value"),
			PropagateAtLaunch: m.Get("PropagateAtLaunch") == "true"})
	}
	var hookSpecs []url.Values
	for _, m := range awsproto.Members(form, "LifecycleHookSpecificationList.member") {
		hookSpecs = append(hookSpecs, m)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups[name] != nil {
		return nil, awsproto.BadRequest("AlreadyExists", "AutoScalingGroup by this name already exists - A group with the name %s already exists", name)
	}
	// Quotas for Amazon EC2 Auto Scaling: 500 groups per Region.
	if len(s.groups) >= 500 {
		return nil, awsproto.BadRequest("LimitExceeded", "You have reached your quota of 500 Auto Scaling groups in this Region.")
	}
	lt := s.templateLocked(ltID, ltName)
	if lt == nil {
		if hasID {
			return nil, errValidation("You must use a valid fully-formed launch template. The specified launch template, with template ID %s, does not exist.", ltID)
		}
		return nil, errValidation("You must use a valid fully-formed launch template. The specified launch template, with template name %s, does not exist.", ltName)
	}
	switch version {
	case "", "$Default", "$Latest", "1":
	default:
		return nil, errValidation("You must use a valid fully-formed launch template. The launch template version %s does not exist.", version)
	}
	g := &group{name: name, min: min, max: max, desired: desired, azs: azs, template: lt, version: version,
		created: time.Now(), cooldown: cooldown, grace: grace, healthCheckType: hct, policies: policies,
		newProtected: protected, tags: tags, hooks: map[string]*hook{}, members: map[string]*instance{},
		launching: map[string]int{}, seq: s.nextSeq()}
	g.arn = fmt.Sprintf("arn:aws:autoscaling:%s:%s:autoScalingGroup:%s:autoScalingGroupName/%s", s.cfg.Region, s.cfg.Account, s.newUUID(), name)
	for _, m := range hookSpecs {
		h, err := hookFromForm(m, name, nil)
		if err != nil {
			return nil, err
		}
		g.hooks[h.name] = h
	}
	if len(g.hooks) > maxHooks {
		return nil, awsproto.BadRequest("LimitExceeded", "Lifecycle hooks per Auto Scaling group: the quota is %d.", maxHooks)
	}
	s.groups[name] = g
	g.cause = fmt.Sprintf("At %s a user request created an AutoScalingGroup changing the desired capacity from 0 to %d.", ts(time.Now()), desired)
	s.log.Info("group created", "group", name, "min", min, "max", max, "desired", desired, "azs", azs, "template", lt.Name, "hooks", len(g.hooks))
	s.reconcileLocked(g)
	return nil, nil
}

func (s *Server) templateLocked(id, name string) *LaunchTemplate {
	for _, t := range s.templates {
		if (id != "" && t.ID == id) || (name != "" && t.Name == name) {
			return t
		}
	}
	return nil
}

// groupLocked finds a group or answers AWS's not-found error. Caller holds
// s.mu.
func (s *Server) groupLocked(name string) (*group, error) {
	if g := s.groups[name]; g != nil {
		return g, nil
	}
	return nil, errGroupNotFound(name)
}

func (s *Server) groupXML(g *group, withInstances bool) xmlGroup {
	x := xmlGroup{AutoScalingGroupName: g.name, AutoScalingGroupARN: g.arn,
		LaunchTemplate: xmlLaunchTemplate{LaunchTemplateID: g.template.ID, LaunchTemplateName: g.template.Name, Version: g.versionName()},
		MinSize:        g.min, MaxSize: g.max, DesiredCapacity: g.desired, DefaultCooldown: g.cooldown, AvailabilityZones: g.azs,
		HealthCheckType: g.healthCheckType, HealthCheckGracePeriod: g.grace, CreatedTime: ts(g.created), Tags: g.tags,
		TerminationPolicies: g.policies, NewInstancesProtectedFromScaleIn: g.newProtected, CapacityRebalance: g.capacityRebalance,
		ServiceLinkedRoleARN: "arn:aws:iam::" + s.cfg.Account + ":role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"}
	if withInstances {
		x.Instances = &xmlInstances{}
		for _, in := range g.sortedMembers() {
			x.Instances.Members = append(x.Instances.Members, xmlInstance{InstanceID: in.id, InstanceType: g.template.InstanceType,
				AvailabilityZone: in.az, LifecycleState: in.state, HealthStatus: in.health, ProtectedFromScaleIn: in.protected,
				LaunchTemplate: &xmlLaunchTemplate{LaunchTemplateID: g.template.ID, LaunchTemplateName: g.template.Name, Version: g.versionName()}})
		}
	}
	return x
}

// versionName is the launch template version as DescribeAutoScalingGroups
// shows it: as given, $Default when none was.
func (g *group) versionName() string {
	if g.version == "" {
		return "$Default"
	}
	return g.version
}

func (g *group) sortedMembers() []*instance {
	out := make([]*instance, 0, len(g.members))
	for _, in := range g.members {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// pageToken and page implement NextToken/MaxRecords paging with an opaque
// offset token; a token not issued here is InvalidNextToken.
func page(form url.Values, n, def, max int) (start, end int, next string, err error) {
	limit := def
	if v, ok, err := optInt(form, "MaxRecords"); err != nil {
		return 0, 0, "", err
	} else if ok {
		if v < 1 || v > max {
			return 0, 0, "", errValidation("MaxRecords must be between 1 and %d.", max)
		}
		limit = v
	}
	if tok, ok := param(form, "NextToken"); ok {
		off, perr := strconv.Atoi(strings.TrimPrefix(tok, "world-"))
		if perr != nil || !strings.HasPrefix(tok, "world-") || off < 0 || off > n {
			return 0, 0, "", awsproto.BadRequest("InvalidNextToken", "The token '%s' is invalid.", tok)
		}
		start = off
	}
	end = min(n, start+limit)
	if end < n {
		next = "world-" + strconv.Itoa(end)
	}
	return start, end, next, nil
}

// describeAutoScalingGroups answers DescribeAutoScalingGroups: named
// groups that do not exist are left out, not an error; MaxRecords 1-100,
// default 50. Filters are not modelled.
func (s *Server) describeAutoScalingGroups(_ context.Context, form url.Values) (any, error) {
	for k := range form {
		if strings.HasPrefix(k, "Filters.") {
			return nil, errValidation("DescribeAutoScalingGroups Filters are not modelled by the world's Auto Scaling.")
		}
	}
	names := list(form, "AutoScalingGroupNames")
	withInstances := true
	if v, ok, err := optBool(form, "IncludeInstances"); err != nil {
		return nil, err
	} else if ok {
		withInstances = v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var gs []*group
	for _, g := range s.groups {
		if len(names) == 0 || slices.Contains(names, g.name) {
			gs = append(gs, g)
		}
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].name < gs[j].name })
	start, end, next, err := page(form, len(gs), 50, 100)
	if err != nil {
		return nil, err
	}
	out := &describeGroupsResult{NextToken: next}
	for _, g := range gs[start:end] {
		out.Groups = append(out.Groups, s.groupXML(g, withInstances))
	}
	return out, nil
}

// describeAutoScalingInstances answers DescribeAutoScalingInstances: ids
// that do not exist "are ignored with no error"; at most 50 ids; MaxRecords
// 1-50, default 50.
func (s *Server) describeAutoScalingInstances(_ context.Context, form url.Values) (any, error) {
	ids := list(form, "InstanceIds")
	if len(ids) > 50 {
		return nil, errValidation("The number of instance IDs must not exceed 50.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ins []*instance
	for _, in := range s.instances {
		if len(ids) == 0 || slices.Contains(ids, in.id) {
			ins = append(ins, in)
		}
	}
	sort.Slice(ins, func(i, j int) bool { return ins[i].seq < ins[j].seq })
	start, end, next, err := page(form, len(ins), 50, 50)
	if err != nil {
		return nil, err
	}
	out := &describeInstancesResult{NextToken: next}
	for _, in := range ins[start:end] {
		g := in.group
		out.Instances = append(out.Instances, xmlInstanceDetails{InstanceID: in.id, InstanceType: g.template.InstanceType,
			AutoScalingGroupName: g.name, AvailabilityZone: in.az, LifecycleState: in.state, HealthStatus: in.health,
			ProtectedFromScaleIn: in.protected,
			LaunchTemplate:       &xmlLaunchTemplate{LaunchTemplateID: g.template.ID, LaunchTemplateName: g.template.Name, Version: g.versionName()}})
	}
	return out, nil
}

// updateAutoScalingGroup answers UpdateAutoScalingGroup: "If you specify a
// new value for MinSize without specifying a value for DesiredCapacity,
// and the new MinSize is larger than the current size of the group, this
// sets the group's DesiredCapacity to the new MinSize value", and likewise
// a MaxSize below it (API reference).
func (s *Server) updateAutoScalingGroup(_ context.Context, form url.Values) (any, error) {
	name, err := requiredString(form, "AutoScalingGroupName", 1, 255)
	if err != nil {
		return nil, err
	}
	min, okMin, err := optInt(form, "MinSize")
	if err != nil {
		return nil, err
	}
	max, okMax, err := optInt(form, "MaxSize")
	if err != nil {
		return nil, err
	}
	desired, okDesired, err := optInt(form, "DesiredCapacity")
	if err != nil {
		return nil, err
	}
	policies := list(form, "TerminationPolicies")
	if err := checkPolicies(policies); err != nil {
		return nil, err
	}
	protected, okProtected, err := optBool(form, "NewInstancesProtectedFromScaleIn")
	if err != nil {
		return nil, err
	}
	if rebalance, _, err := optBool(form, "CapacityRebalance"); err != nil {
		return nil, err
	} else if rebalance {
		return nil, errValidation("Capacity Rebalancing is not modelled by the world's Auto Scaling.")
	}
	if hct, ok := param(form, "HealthCheckType"); ok && hct != "EC2" {
		return nil, errValidation("Health check type %s is not modelled: the world has no load balancers (EC2 only).", hct)
	}
	grace, okGrace, err := optInt(form, "HealthCheckGracePeriod")
	if err != nil {
		return nil, err
	}
	cooldown, okCool, err := optInt(form, "DefaultCooldown")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.groupLocked(name)
	if err != nil {
		return nil, err
	}
	newMin, newMax, newDesired := g.min, g.max, g.desired
	if okMin {
		newMin = min
	}
	if okMax {
		newMax = max
	}
	if okDesired {
		newDesired = desired
	} else {
		newDesired = max0(newMin, newDesired)
		newDesired = min0(newMax, newDesired)
	}
	if err := checkSizes(newMin, newMax, newDesired); err != nil {
		return nil, err
	}
	if newDesired != g.desired {
		g.cause = fmt.Sprintf("At %s a user request update of AutoScalingGroup constraints to min: %d, max: %d, desired: %d changing the desired capacity from %d to %d.",
			ts(time.Now()), newMin, newMax, newDesired, g.desired, newDesired)
	}
	g.min, g.max, g.desired = newMin, newMax, newDesired
	if len(policies) > 0 {
		g.policies = policies
	}
	if okProtected {
		g.newProtected = protected
	}
	if okGrace {
		g.grace = grace
	}
	if okCool {
		g.cooldown = cooldown
	}
	s.log.Info("group updated", "group", name, "min", g.min, "max", g.max, "desired", g.desired)
	s.reconcileLocked(g)
	return nil, nil
}

func max0(a, b int) int { return max(a, b) }
func min0(a, b int) int { return min(a, b) }

// setDesiredCapacity answers SetDesiredCapacity: the new value must lie
// within the group's min and max (the messages AWS gives).
func (s *Server) setDesiredCapacity(_ context.Context, form url.Values) (any, error) {
	name, err := requiredString(form, "AutoScalingGroupName", 1, 255)
	if err != nil {
		return nil, err
	}
	desired, ok, err := optInt(form, "DesiredCapacity")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errNull("DesiredCapacity")
	}
	if _, _, err := optBool(form, "HonorCooldown"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err = s.setDesiredLocked(name, desired)
	return nil, err
}

// setDesiredLocked changes a group's desired capacity and returns the
// instances the change selected for termination. Caller holds s.mu.
func (s *Server) setDesiredLocked(name string, desired int) ([]string, error) {
	g, err := s.groupLocked(name)
	if err != nil {
		return nil, err
	}
	if desired > g.max {
		return nil, errValidation("New SetDesiredCapacity value %d is above max value %d for the AutoScalingGroup.", desired, g.max)
	}
	if desired < g.min {
		return nil, errValidation("New SetDesiredCapacity value %d is below min value %d for the AutoScalingGroup.", desired, g.min)
	}
	if desired != g.desired {
		g.cause = fmt.Sprintf("At %s a user request explicitly set group desired capacity changing the desired capacity from %d to %d.",
			ts(time.Now()), g.desired, desired)
	}
	s.log.Info("desired capacity set", "group", name, "from", g.desired, "to", desired)
	g.desired = desired
	return s.reconcileLocked(g), nil
}

// ScaleIn lowers the group's desired capacity by n, as SetDesiredCapacity
// would, and returns the instances the termination policy selected (they
// go through the group's termination hooks).
func (s *Server) ScaleIn(name string, n int) ([]string, error) {
	if n < 1 {
		return nil, fmt.Errorf("autoscalingsim: scale in %s by %d: want 1 or more", name, n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[name]
	if g == nil {
		return nil, fmt.Errorf("autoscalingsim: %w", errGroupNotFound(name))
	}
	ids, err := s.setDesiredLocked(name, g.desired-n)
	if err != nil {
		return nil, fmt.Errorf("autoscalingsim: %w", err)
	}
	return ids, nil
}

// terminateInstanceInAutoScalingGroup answers
// TerminateInstanceInAutoScalingGroup: the instance goes through the
// group's termination hooks; without ShouldDecrementDesiredCapacity the
// group launches a replacement. Decrementing below the min size is refused
// with AWS's message.
func (s *Server) terminateInstanceInAutoScalingGroup(_ context.Context, form url.Values) (any, error) {
	id, err := requiredString(form, "InstanceId", 1, 19)
	if err != nil {
		return nil, err
	}
	decrement, ok, err := optBool(form, "ShouldDecrementDesiredCapacity")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errNull("ShouldDecrementDesiredCapacity")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	if in == nil || in.state == StateTerminated {
		return nil, errValidation("Instance Id not found - No managed instance found for instance ID: %s", id)
	}
	g := in.group
	if in.terminating() {
		return nil, awsproto.BadRequest("ScalingActivityInProgress", "Instance %s is already being terminated (%s).", id, in.state)
	}
	if decrement && g.desired <= g.min {
		return nil, errValidation("Currently, desiredSize equals minSize (%d). Terminating instance without replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag to false or lower group's min size.", g.min)
	}
	now := time.Now()
	active := g.activeCount()
	var cause string
	if decrement {
		cause = fmt.Sprintf("At %s instance %s was taken out of service in response to a user request, shrinking the capacity from %d to %d.", ts(now), id, active, active-1)
		g.desired--
	} else {
		cause = fmt.Sprintf("At %s instance %s was taken out of service in response to a user request.", ts(now), id)
	}
	s.startTerminateLocked(in, cause)
	s.reconcileLocked(g)
	return &activityResult{Activity: xmlActivity{ActivityID: in.activity.id, AutoScalingGroupName: g.name,
		Description: in.activity.description, Cause: cause, StartTime: ts(in.activity.start), StatusCode: "InProgress",
		Details:             fmt.Sprintf(`{"Subnet ID":%q,"Availability Zone":%q}`, s.subnet(in.az), in.az),
		AutoScalingGroupARN: g.arn}}, nil
}
