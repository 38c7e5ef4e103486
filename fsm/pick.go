package fsm

import (
	"cmp"
	"slices"
)

// PickStandby returns the replica that should be the next standby (or the
// next active, for a caller choosing where to switch to), or false if no
// replica is eligible.
//
// Candidates are the replicas in role standby or suspended (never active,
// quarantined, recovering or maintenance) that are clean and not named in
// exclude. ref is the reference replica: the one being switched away from
// (the one under attack); "" means the current active replica.
//
// With rotation "diverse" (default) candidates are ranked, in order of
// precedence, by: an impl different from ref's; an impl different from the
// active replica's (after a switch, ref is the attacked replica and the
// active one is where the service now runs: a standby sharing the active's
// impl would fall to the same attack on it); an os different from ref's; a
// platform different from ref's; being the current standby already (it is
// running, so keeping it costs nothing); spec order. With "round-robin" the
// candidate that comes first after the active replica (or after ref if there
// is no active one) in spec order, wrapping around, wins.
//
// PickStandby is pure and deterministic; the FSM uses it on create, on Switch
// without an eligible NextStandby, and whenever a role change leaves the
// service without a standby; the controller's decide uses it to choose.
func PickStandby(svc Service, ref string, exclude ...string) (string, bool) {
	r := RankStandby(svc, ref, exclude...)
	if len(r) == 0 {
		return "", false
	}
	return r[0], true
}

// RankStandby returns every candidate PickStandby considers, best first.
func RankStandby(svc Service, ref string, exclude ...string) []string {
	pos := make(map[string]int, len(svc.Spec.Replicas))
	for i, r := range svc.Spec.Replicas {
		pos[r.Name] = i
	}
	active, hasActive := svc.Active()
	if ref == "" && hasActive {
		ref = active.Name
	}
	refSpec, hasRef := svc.Spec.Replica(ref)
	activeSpec, hasActiveSpec := svc.Spec.Replica(active.Name)

	type cand struct {
		name string
		key  [6]int // ascending: smaller is better
	}
	var cands []cand
	for _, rs := range svc.Replicas {
		p, ok := pos[rs.Name]
		if !ok || !rs.Role.Eligible() || !rs.Clean || slices.Contains(exclude, rs.Name) {
			continue
		}
		sp := svc.Spec.Replicas[p]
		c := cand{name: rs.Name}
		if svc.Spec.Policy.Rotation == RotationRoundRobin {
			anchor := -1
			if hasActive {
				anchor = pos[active.Name]
			} else if hasRef {
				anchor = pos[ref]
			}
			n := len(svc.Spec.Replicas)
			c.key[0] = ((p-anchor-1)%n + n) % n
		} else {
			if hasRef {
				c.key[0] = b2i(sp.Impl == refSpec.Impl)
				c.key[2] = b2i(sp.OS == refSpec.OS)
				c.key[3] = b2i(sp.Platform == refSpec.Platform)
			}
			if hasActive && hasActiveSpec {
				c.key[1] = b2i(sp.Impl == activeSpec.Impl)
			}
			c.key[4] = b2i(rs.Role != RoleStandby)
			c.key[5] = p
		}
		cands = append(cands, c)
	}
	slices.SortFunc(cands, func(a, b cand) int {
		for i := range a.key {
			if c := cmp.Compare(a.key[i], b.key[i]); c != 0 {
				return c
			}
		}
		return cmp.Compare(a.name, b.name)
	})
	out := make([]string, len(cands))
	for i, c := range cands {
		out[i] = c.name
	}
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
