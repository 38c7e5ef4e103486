package decide

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ars-project/ars/fsm"
)

// pick is a chosen replica and why it was chosen.
type pick struct {
	name string
	why  string
}

// class is a candidate's preference class; smaller is better, compared
// element by element.
//
//	[0] 1 if its impl is the attacked replica's (rotation "diverse" only:
//	    an impl-wide attack is avoided whenever another impl is eligible)
//	[1] 1 if the leader's health probe judged it not answering
//	    (Capabilities.NotAnswering): a switch to it is an outage
//	[2] 1 if its driver cannot restore it (Capabilities.NoRestore)
//	[3] 1 if its platform reports it stopped (Capabilities.Stopped)
type class [4]int

func (c class) less(o class) bool { return slices.Compare(c[:], o[:]) < 0 }

// choose returns the replica to switch to, away from the attacked (active)
// replica, or false if none is eligible.
//
// The order is fsm.RankStandby's (the diversity rule, or round-robin),
// without replicas whose driver is unavailable. Among the candidates of the
// best class, the current standby wins if it is one of them (it is running:
// the switch is one NIC operation); otherwise the first of them in
// RankStandby's order. A standby the leader's health probe judged not
// answering (its server is wedged) is of a worse class than any replica
// of the same diversity that is not so judged: a switch to it is an
// outage. A standby its platform reports stopped (a Docker engine restart
// killed it) is of a worse class than a suspended replica of the same
// diversity: resuming is faster than starting.
func (d *decider) choose(attacked string) (pick, bool) {
	var unavailable []string
	for _, rs := range d.svc.Replicas {
		if d.capsOf(rs.Name).Unavailable {
			unavailable = append(unavailable, rs.Name)
		}
	}
	ranked := fsm.RankStandby(d.svc, attacked, unavailable...)
	if len(ranked) == 0 {
		return pick{}, false
	}
	diverse := d.svc.Spec.Policy.Rotation != fsm.RotationRoundRobin
	classOf := func(name string) class {
		var c class
		if diverse && d.sameImpl(name, attacked) {
			c[0] = 1
		}
		if d.capsOf(name).NotAnswering {
			c[1] = 1
		}
		if d.capsOf(name).NoRestore {
			c[2] = 1
		}
		if d.capsOf(name).Stopped {
			c[3] = 1
		}
		return c
	}
	best := classOf(ranked[0])
	for _, n := range ranked[1:] {
		if c := classOf(n); c.less(best) {
			best = c
		}
	}

	var why []string
	chosen := ""
	sb, hasStandby := d.svc.Standby()
	switch {
	case hasStandby && slices.Contains(ranked, sb.Name) && classOf(sb.Name) == best:
		chosen = sb.Name
		why = append(why, "standby "+d.label(chosen))
		running := "running"
		if d.capsOf(chosen).Stopped {
			running = "stopped"
		}
		if diverse {
			why = append(why, running+" and of another impl than "+d.impl(attacked))
		} else {
			why = append(why, running+" (round-robin)")
		}
	default:
		for _, n := range ranked {
			if classOf(n) == best {
				chosen = n
				break
			}
		}
		state := "suspended"
		if d.capsOf(chosen).Stopped {
			state = "stopped"
		}
		c := state + " " + d.label(chosen)
		if diverse {
			c += fmt.Sprintf(", first by diversity from %q", attacked)
		} else {
			c += fmt.Sprintf(", next in round-robin order after %q", attacked)
		}
		why = append(why, c)
		switch {
		case !hasStandby:
			why = append(why, "there is no standby")
		case d.capsOf(sb.Name).Unavailable:
			why = append(why, fmt.Sprintf("standby %q is unavailable", sb.Name))
		case classOf(sb.Name)[0] > best[0]:
			why = append(why, fmt.Sprintf("standby %q has the attacked impl %s", sb.Name, d.impl(sb.Name)))
		case classOf(sb.Name)[1] > best[1]:
			why = append(why, fmt.Sprintf("standby %q does not answer its health probe: a switch to it would be an outage", sb.Name))
		case classOf(sb.Name)[2] > best[2]:
			why = append(why, fmt.Sprintf("standby %q cannot be restored by its driver", sb.Name))
		case classOf(sb.Name)[3] > best[3]:
			why = append(why, fmt.Sprintf("standby %q is stopped: a switch to it would have to start it", sb.Name))
		}
	}
	if d.sameImpl(chosen, attacked) {
		if diverse {
			why = append(why, fmt.Sprintf("same impl %s as %q: no replica of another impl is eligible", d.impl(attacked), attacked))
		} else {
			why = append(why, fmt.Sprintf("same impl %s as %q: round-robin ignores impl", d.impl(attacked), attacked))
		}
	}
	if best[1] == 1 {
		why = append(why, "note: it does not answer its health probe, nor does any equally diverse candidate: the least bad is chosen")
	}
	if best[2] == 1 {
		why = append(why, "note: its driver cannot restore it, nor any equally diverse candidate's")
	}
	if best[3] == 1 {
		why = append(why, "note: it is stopped, as is every equally good candidate: the switch starts it")
	}
	return pick{name: chosen, why: strings.Join(why, "; ")}, true
}

// noEligible explains why no replica can take over from the attacked one.
func (d *decider) noEligible(attacked string) string {
	var out []string
	for _, rs := range d.svc.Replicas {
		if rs.Name == attacked {
			continue
		}
		switch {
		case !rs.Role.Eligible() || !rs.Clean:
			out = append(out, fmt.Sprintf("%q is %s", rs.Name, rs.Role))
		case d.capsOf(rs.Name).Unavailable:
			out = append(out, fmt.Sprintf("%q is unavailable", rs.Name))
		}
	}
	why := fmt.Sprintf("no replica can take over from %q", attacked)
	if len(out) > 0 {
		why += ": " + strings.Join(out, ", ")
	} else {
		why += ": it is the only replica"
	}
	return why + "; restore or release a replica"
}
