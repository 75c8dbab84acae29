package autoscalingsim

import (
	"time"
)

// Which instances a scale-in takes (user guide, "Control which Auto
// Scaling instances terminate during scale in", default termination
// policy): (1) the Availability Zones with the most instances and at least
// one instance not protected from scale in; (2) the allocation strategy
// (groups with mixed instances only: not modelled, no-op); (3) the oldest
// launch template or configuration (a world group has one template: no-op);
// (4) of what remains, the instance closest to the next billing hour; (5)
// if several, one at random (seeded). A custom list applies its policies
// in order, still within the most imbalanced zone; OldestInstance and
// NewestInstance pick by launch time, ClosestToNextInstanceHour as step 4.
// Instances protected from scale in are never picked. Within one hour of
// launch, "closest to the next billing hour" is the oldest instance.

// pickLocked selects n instances to take out of service. Caller holds s.mu.
func (s *Server) pickLocked(g *group, n int) []*instance {
	var out []*instance
	taken := map[*instance]bool{}
	now := time.Now()
	for len(out) < n {
		counts := map[string]int{}
		var eligible []*instance
		for _, in := range g.sortedMembers() {
			if in.terminating() || taken[in] {
				continue
			}
			counts[in.az]++
			if !in.protected {
				eligible = append(eligible, in)
			}
		}
		if len(eligible) == 0 {
			// "If all instances in an Auto Scaling group are protected ...
			// its desired capacity is decremented. However, the Auto
			// Scaling group can't terminate the required number of
			// instances".
			s.log.Warn("scale in: every remaining instance is protected from scale in", "group", g.name, "wanted", n, "picked", len(out))
			break
		}
		most := 0
		for _, in := range eligible {
			most = max(most, counts[in.az])
		}
		var cands []*instance
		for _, in := range eligible {
			if counts[in.az] == most {
				cands = append(cands, in)
			}
		}
		for _, p := range g.policies {
			if len(cands) == 1 {
				break
			}
			cands = applyPolicy(p, cands, now)
		}
		pick := cands[0]
		if len(cands) > 1 {
			pick = cands[s.rng.IntN(len(cands))]
		}
		taken[pick] = true
		out = append(out, pick)
	}
	return out
}

// applyPolicy narrows candidates by one termination policy.
func applyPolicy(p string, cands []*instance, now time.Time) []*instance {
	keep := func(score func(*instance) time.Duration) []*instance {
		var best []*instance
		var bestScore time.Duration
		for _, in := range cands {
			sc := score(in)
			switch {
			case len(best) == 0 || sc > bestScore:
				best, bestScore = []*instance{in}, sc
			case sc == bestScore:
				best = append(best, in)
			}
		}
		return best
	}
	// Billing is counted in whole seconds: instances launched within the
	// same second tie.
	age := func(in *instance) time.Duration { return now.Sub(in.launched).Truncate(time.Second) }
	switch p {
	case "OldestInstance":
		return keep(age)
	case "NewestInstance":
		return keep(func(in *instance) time.Duration { return -age(in) })
	case "ClosestToNextInstanceHour", "Default":
		return keep(func(in *instance) time.Duration { return age(in) % time.Hour })
	}
	return cands // AllocationStrategy, OldestLaunchTemplate, OldestLaunchConfiguration: one template, no mixed instances
}
