package ecssim

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// constraintExpr is a parsed memberOf expression in ECS's cluster query
// language: conditions "subject op [argument]" joined by and/or (also && and
// ||) with parentheses. Subjects: attribute:NAME, ec2InstanceId,
// agentConnected, task:group. Operators: == (equals), != (not_equals),
// exists, !exists (not_exists), in, !in (not_in), =~ (matches),
// !~ (not_matches). Anything else is refused when the expression is parsed.
type constraintExpr struct {
	op          string // "and", "or" or a condition operator
	left, right *constraintExpr
	subject     string
	args        []string
}

var opAliases = map[string]string{
	"==": "==", "equals": "==", "!=": "!=", "not_equals": "!=",
	"exists": "exists", "!exists": "!exists", "not_exists": "!exists",
	"in": "in", "!in": "!in", "not_in": "!in",
	"=~": "=~", "matches": "=~", "!~": "!~", "not_matches": "!~",
}

func lexConstraint(s string) ([]string, error) {
	var toks []string
	rs := []rune(s)
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case unicode.IsSpace(r):
			i++
		case strings.ContainsRune("()[],", r):
			toks = append(toks, string(r))
			i++
		case (r == '=' || r == '!') && i+1 < len(rs) && (rs[i+1] == '=' || rs[i+1] == '~'):
			toks = append(toks, string(rs[i:i+2]))
			i += 2
		case r == '&' || r == '|':
			if i+1 >= len(rs) || rs[i+1] != r {
				return nil, fmt.Errorf("unexpected %q at %d", r, i)
			}
			toks = append(toks, string(rs[i:i+2]))
			i += 2
		default:
			j := i + 1
			for j < len(rs) && !unicode.IsSpace(rs[j]) && !strings.ContainsRune("()[],=~&|", rs[j]) &&
				(rs[j] != '!' || j+1 >= len(rs) || (rs[j+1] != '=' && rs[j+1] != '~')) {
				j++
			}
			toks = append(toks, string(rs[i:j]))
			i = j
		}
	}
	return toks, nil
}

type constraintParser struct {
	toks []string
	pos  int
}

func (p *constraintParser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *constraintParser) next() string {
	t := p.peek()
	p.pos++
	return t
}

// parseConstraint parses a memberOf expression.
func parseConstraint(s string) (*constraintExpr, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty expression")
	}
	if len(s) > 2000 {
		return nil, errors.New("expression longer than 2000 characters")
	}
	toks, err := lexConstraint(s)
	if err != nil {
		return nil, err
	}
	p := &constraintParser{toks: toks}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("unexpected %q", p.peek())
	}
	return e, nil
}

func (p *constraintParser) or() (*constraintExpr, error) {
	left, err := p.and()
	for err == nil && (strings.EqualFold(p.peek(), "or") || p.peek() == "||") {
		p.next()
		var right *constraintExpr
		if right, err = p.and(); err == nil {
			left = &constraintExpr{op: "or", left: left, right: right}
		}
	}
	return left, err
}

func (p *constraintParser) and() (*constraintExpr, error) {
	left, err := p.primary()
	for err == nil && (strings.EqualFold(p.peek(), "and") || p.peek() == "&&") {
		p.next()
		var right *constraintExpr
		if right, err = p.primary(); err == nil {
			left = &constraintExpr{op: "and", left: left, right: right}
		}
	}
	return left, err
}

func (p *constraintParser) primary() (*constraintExpr, error) {
	if p.peek() == "(" {
		p.next()
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.next() != ")" {
			return nil, errors.New("missing )")
		}
		return e, nil
	}
	subject := p.next()
	switch {
	case strings.HasPrefix(subject, "attribute:") && len(subject) > len("attribute:"):
	case subject == "ec2InstanceId", subject == "agentConnected", subject == "task:group":
	case subject == "":
		return nil, errors.New("unexpected end of expression")
	default:
		return nil, fmt.Errorf("subject %q is not supported (attribute:NAME, ec2InstanceId, agentConnected, task:group)", subject)
	}
	op, ok := opAliases[p.next()]
	if !ok {
		return nil, fmt.Errorf("missing or unsupported operator after %s", subject)
	}
	e := &constraintExpr{op: op, subject: subject}
	switch op {
	case "exists", "!exists":
	case "in", "!in":
		if p.next() != "[" {
			return nil, fmt.Errorf("%s needs a [list]", op)
		}
		for {
			v := p.next()
			if v == "" || strings.ContainsAny(v, "[](),") {
				return nil, errors.New("bad list")
			}
			e.args = append(e.args, v)
			if sep := p.next(); sep == "]" {
				break
			} else if sep != "," {
				return nil, errors.New("bad list: want , or ]")
			}
		}
	default:
		v := p.next()
		if v == "" || strings.ContainsAny(v, "[](),") {
			return nil, fmt.Errorf("%s needs a value", op)
		}
		if op == "=~" || op == "!~" {
			if _, err := regexp.Compile(v); err != nil {
				return nil, fmt.Errorf("bad pattern %q: %w", v, err)
			}
		}
		e.args = []string{v}
	}
	return e, nil
}

// eval reports whether the container instance satisfies the expression.
func (e *constraintExpr) eval(ci *instance) bool {
	switch e.op {
	case "and":
		return e.left.eval(ci) && e.right.eval(ci)
	case "or":
		return e.left.eval(ci) || e.right.eval(ci)
	}
	if e.subject == "task:group" {
		has := func(g string) bool {
			for _, t := range ci.cluster.liveTasks() {
				if t.instance == ci && t.live() && matchValue(g, t.group) {
					return true
				}
			}
			return false
		}
		switch e.op {
		case "==":
			return has(e.args[0])
		case "!=":
			return !has(e.args[0])
		case "in":
			return slices.ContainsFunc(e.args, has)
		case "!in":
			return !slices.ContainsFunc(e.args, has)
		}
		return false
	}
	value, present := e.subjectValue(ci)
	switch e.op {
	case "exists":
		return present
	case "!exists":
		return !present
	case "==":
		return present && matchValue(e.args[0], value)
	case "!=":
		return !present || !matchValue(e.args[0], value)
	case "in":
		return present && slices.ContainsFunc(e.args, func(a string) bool { return matchValue(a, value) })
	case "!in":
		return !present || !slices.ContainsFunc(e.args, func(a string) bool { return matchValue(a, value) })
	case "=~":
		return present && regexp.MustCompile(e.args[0]).MatchString(value)
	case "!~":
		return !present || !regexp.MustCompile(e.args[0]).MatchString(value)
	}
	return false
}

func (e *constraintExpr) subjectValue(ci *instance) (string, bool) {
	switch e.subject {
	case "ec2InstanceId":
		return ci.ec2InstanceID, true
	case "agentConnected":
		return fmt.Sprint(ci.agentConnected), true
	}
	v, ok := ci.attributes[strings.TrimPrefix(e.subject, "attribute:")]
	return v, ok
}

// matchValue compares with ECS's * wildcard.
func matchValue(pattern, value string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == value
	}
	ok, err := path.Match(pattern, value)
	return err == nil && ok
}

// placement is what one task needs from a container instance.
type placement struct {
	def         *taskDef
	constraints []*constraintExpr
	distinct    bool
	group       string
}

// Placement failure reasons, as ECS words them.
const (
	reasonCPU      = "RESOURCE:CPU"
	reasonMemory   = "RESOURCE:MEMORY"
	reasonAttr     = "ATTRIBUTE"
	reasonAgent    = "AGENT"
	reasonMemberOf = "MemberOf placement constraint unsatisfied."
	reasonDistinct = "DistinctInstance placement constraint unsatisfied."
)

// check returns "" when ci can take the task, else why not.
func (p placement) check(ci *instance) string {
	if !ci.agentConnected {
		return reasonAgent
	}
	for _, n := range p.def.requires {
		if _, ok := ci.attributes[n]; !ok {
			return reasonAttr
		}
	}
	for _, e := range p.def.constraint {
		if !e.eval(ci) {
			return reasonMemberOf
		}
	}
	for _, e := range p.constraints {
		if !e.eval(ci) {
			return reasonMemberOf
		}
	}
	if p.distinct {
		for _, t := range ci.cluster.liveTasks() {
			if t.instance == ci && t.live() && t.group == p.group {
				return reasonDistinct
			}
		}
	}
	cpu, mem, _, _ := ci.remaining()
	if p.def.cpu > cpu {
		return reasonCPU
	}
	if p.def.mem > mem {
		return reasonMemory
	}
	return ""
}

// choose picks an ACTIVE container instance for the task: spread the group
// over AZs, then over instances; ties broken by the seeded source. With none,
// it returns the failures (one per instance that was considered).
func (s *Server) choose(c *cluster, p placement) (*instance, []failureJSON) {
	var best []*instance
	bestAZ, bestHost := -1, -1
	var failures []failureJSON
	for _, id := range c.instanceOrder {
		ci := c.instances[id]
		if ci.status != statusActive {
			continue
		}
		if why := p.check(ci); why != "" {
			failures = append(failures, failureJSON{Arn: ci.arn, Reason: why})
			continue
		}
		inAZ, onHost := 0, 0
		for _, t := range c.liveTasks() {
			if t.live() && t.group == p.group && t.instance != nil {
				if t.instance.az == ci.az {
					inAZ++
				}
				if t.instance == ci {
					onHost++
				}
			}
		}
		switch {
		case best == nil || inAZ < bestAZ || (inAZ == bestAZ && onHost < bestHost):
			best, bestAZ, bestHost = []*instance{ci}, inAZ, onHost
		case inAZ == bestAZ && onHost == bestHost:
			best = append(best, ci)
		}
	}
	if len(best) == 0 {
		return nil, failures
	}
	return best[s.rng.Intn(len(best))], nil
}
