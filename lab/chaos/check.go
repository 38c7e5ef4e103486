package chaos

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/ars-project/ars/fsm"
)

// Invariants the checker reports (docs/design.md §4; docs/chaos.md, "The checks").
const (
	// InvDeposedCall: a node that was not the leader made a vCenter call
	// that changes a VM (§4.1): another node led both in the sample before
	// the call and in the one after it.
	InvDeposedCall = "deposed-driver-call"
	// InvTwoAttached: two replicas on the service address at once for
	// longer than the make-before-break window (§4.2). A replica is on
	// the address while linked; one with address handover only while
	// linked and holding the address.
	InvTwoAttached = "two-attached"
	// InvAlertUnanswered: a committed alert without an outcome; InvAlertLost:
	// an exploit the lab wrote that no committed alert reports, or one
	// reports only after MaxOutage (§4.3).
	InvAlertUnanswered = "alert-unanswered"
	InvAlertLost       = "alert-lost"
	// InvUnrestored: a replica linked again after an exploit without a
	// revert to its clean snapshot in between (§4.4).
	InvUnrestored = "unrestored-linked"
	// InvAttackUnanswered: an attack on the linked replica not followed
	// by a switch away from it within the outage bound (§4.5).
	InvAttackUnanswered = "attack-unanswered"
	// InvStateDiverged: two nodes with different state digests at the same
	// applied index (§4.6).
	InvStateDiverged = "state-diverged"
	// InvSessionLeak: a node's vCenter session alive longer than allowed
	// after the node stopped leading or logged in again.
	InvSessionLeak = "session-leak"
	// InvOutage: the service not answering again within the bound after
	// an attack or a Docker engine restart.
	InvOutage = "outage"
	// InvNotReady: the cluster not healthy again after the faults were
	// healed (leader, every voter, service steady, alerts answered).
	InvNotReady = "not-ready"
	// InvElections: more elections (new leader terms in the samples) than
	// the schedule's faults on the leader explain.
	InvElections = "excess-elections"
	// InvFalseSwitch: a switch (not a manual one) with no attack or Docker
	// engine restart in the outage bound before it: a node fault, a lossy
	// or one-way link moved the service on its own.
	InvFalseSwitch = "false-switch"
	// InvStaleCommand: a replica agent carried out a command whose fence
	// (term, generation) is older than one it carried out before.
	InvStaleCommand = "stale-agent-command"
)

// Invariants lists them in report order.
var Invariants = []string{InvDeposedCall, InvTwoAttached, InvAlertUnanswered, InvAlertLost, InvUnrestored, InvAttackUnanswered,
	InvStateDiverged, InvSessionLeak, InvOutage, InvNotReady, InvElections, InvFalseSwitch, InvStaleCommand}

// Bounds are the checker's limits.
type Bounds struct {
	// MaxOverlap bounds a make-before-break window: how long two replicas
	// may be linked at once (default 10s: the longest fault, 4 s, plus an
	// election and a reconcile pass with its retries).
	MaxOverlap time.Duration
	// MaxOutage bounds how long after an attack the service may go
	// unanswered and the switch may take (default 10s: the longest node
	// fault, 4 s, plus the longest vCenter failure, 3 s, plus an
	// election, barrier and login, 2 s, plus detection and the switch,
	// 1 s — all at once, which a schedule rarely lines up).
	MaxOutage time.Duration
	// LogoutGrace is how long a node's session may outlive its
	// leadership, or its replacement by a newer session of the node
	// (default 5s).
	LogoutGrace time.Duration
	// SessionExpiry replaces LogoutGrace for a node that was killed,
	// stopped or cut off meanwhile (it could not log out; vCenter expires
	// the session): default 20s, set it from the lab's session timeout.
	SessionExpiry time.Duration
}

// MarshalJSON writes the bounds as Go durations ("10s"), for people
// reading a summary.
func (b Bounds) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"max_overlap": b.MaxOverlap.String(), "max_outage": b.MaxOutage.String(),
		"logout_grace": b.LogoutGrace.String(), "session_expiry": b.SessionExpiry.String()})
}

func (b Bounds) withDefaults() Bounds {
	if b.MaxOverlap == 0 {
		b.MaxOverlap = 10 * time.Second
	}
	if b.MaxOutage == 0 {
		b.MaxOutage = 10 * time.Second
	}
	if b.LogoutGrace == 0 {
		b.LogoutGrace = 5 * time.Second
	}
	if b.SessionExpiry == 0 {
		b.SessionExpiry = 20 * time.Second
	}
	return b
}

// Violation is one broken invariant.
type Violation struct {
	Invariant string    `json:"invariant"`
	At        time.Time `json:"at"`
	What      string    `json:"what"`
}

func (v Violation) String() string {
	return fmt.Sprintf("%s at %s: %s", v.Invariant, v.At.Format("15:04:05.000"), v.What)
}

// Report is the checker's verdict on one history, with its figures.
type Report struct {
	Seed       int64        `json:"seed"`
	Violations []Violation  `json:"violations"`
	Faults     map[Kind]int `json:"faults"`  // done, by kind (attacks included)
	Skipped    map[Kind]int `json:"skipped"` // not done: skipped or failed
	Attacks    int          `json:"attacks"`
	Switches   int          `json:"switches"`
	// LongestOutage is the longest gap the client saw after an attack,
	// LongestRestartOutage after a Docker engine restart (under the
	// serving container: a crash to the cluster).
	LongestOutage        time.Duration `json:"longest_outage"`
	LongestRestartOutage time.Duration `json:"longest_restart_outage"`
	// LongestOverlap is the longest time two replicas were on the
	// service address at once.
	LongestOverlap time.Duration `json:"longest_overlap"`
	// AgentCommands counts the commands the replica agents carried out.
	AgentCommands int `json:"agent_commands,omitempty"`
	// DriverCalls counts the nodes' vCenter calls that change a VM;
	// LateCalls those of a node that was cut off in the 10 s before
	// (requests it sent as leader can reach vCenter after the partition
	// heals: counted, not violations).
	DriverCalls int `json:"driver_calls"`
	LateCalls   int `json:"late_calls"`
	// Unprovoked counts switches with no attack or engine restart in the
	// outage bound before them (each one is also an InvFalseSwitch
	// violation), UnattributedGaps the client's gaps with none (reported:
	// a gap alone may be the lab's, a false switch shows in both).
	Unprovoked       int `json:"unprovoked_switches"`
	UnattributedGaps int `json:"unattributed_gaps"`
	// Elections counts the leader terms the samples saw begin during the
	// run (a term with a node that said it led, above the highest term of
	// the first sample); ElectionsExplained is how many the faults on the
	// leader allow (one per kill, stop, partition, lossy or one-way link
	// of the node that led when it struck); TermsAdvanced is how far the
	// highest term moved (elections that elected no one included).
	Elections          int    `json:"elections"`
	ElectionsExplained int    `json:"elections_explained"`
	TermsAdvanced      uint64 `json:"terms_advanced"`
	// Duration is the run's length, from Start to End.
	Duration time.Duration `json:"duration"`
}

// OK reports whether no invariant was broken.
func (r Report) OK() bool { return len(r.Violations) == 0 }

// Check verifies the invariants over h.
func Check(h History, b Bounds) Report {
	b = b.withDefaults()
	r := Report{Seed: h.Seed, Faults: map[Kind]int{}, Skipped: map[Kind]int{}, Duration: h.End.Sub(h.Start)}
	add := func(inv string, at time.Time, format string, a ...any) {
		r.Violations = append(r.Violations, Violation{Invariant: inv, At: at, What: fmt.Sprintf(format, a...)})
	}
	for _, in := range h.Injections {
		if in.Done() {
			r.Faults[in.Step.Kind]++
			if in.Step.Kind.IsAttack() {
				r.Attacks++
			}
		} else {
			r.Skipped[in.Step.Kind]++
		}
	}
	for _, s := range h.Switches {
		if t := time.Unix(0, s.StartedAt); !t.Before(h.Start) && !t.After(h.End) {
			r.Switches++
		}
	}
	evs := slices.Clone(h.Events)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].At.Before(evs[j].At) })

	checkDriverCalls(h, evs, &r, add)
	checkAttached(h, evs, b, &r, add)
	checkAlerts(h, b, add)
	checkRestored(evs, h.Switches, add)
	checkAttacks(h, evs, b, &r, add)
	checkDigests(h, add)
	checkSessions(h, b, add)
	checkElections(h, &r, add)
	checkFences(h, &r, add)
	if !h.Ready {
		add(InvNotReady, h.End, "not healthy after the heal: %s", h.NotReady)
	}
	sort.SliceStable(r.Violations, func(i, j int) bool { return r.Violations[i].At.Before(r.Violations[j].At) })
	return r
}

type addFunc func(inv string, at time.Time, format string, a ...any)

// lateWindow is how long after a partition a node's call may be one it
// sent before (TCP delivers it when the link comes back).
const lateWindow = 10 * time.Second

// checkDriverCalls: only the leader changes VMs (§4.1).
func checkDriverCalls(h History, evs []Event, r *Report, add addFunc) {
	for _, e := range evs {
		if e.What != "vc-call" || e.Node == "" {
			continue
		}
		r.DriverCalls++
		prev, next := -1, -1
		for i, s := range h.Samples {
			if !s.At.After(e.At) {
				prev = i
			} else if next < 0 {
				next = i
			}
		}
		if prev < 0 || next < 0 {
			continue
		}
		before, after := h.Samples[prev].Leader(), h.Samples[next].Leader()
		if before == "" || before == e.Node || after != before {
			continue
		}
		cut := slices.ContainsFunc(h.Injections, func(in Injection) bool {
			return in.Node == e.Node && (in.Step.Kind == NodePartition || in.Step.Kind.IsLinkFault()) && in.Done() &&
				!in.At.After(e.At) && !in.At.Before(e.At.Add(-lateWindow-in.Step.Duration))
		})
		if cut {
			r.LateCalls++
			continue
		}
		add(InvDeposedCall, e.At, "%s called %s while %s led (samples at %s and %s)", e.Node, e.Detail, before,
			h.Samples[prev].At.Format("15:04:05.000"), h.Samples[next].At.Format("15:04:05.000"))
	}
}

// linkedAt replays the link events up to (not after) t.
func linkedAt(h History, evs []Event, t time.Time) map[string]bool {
	linked := map[string]bool{}
	for _, n := range h.Linked {
		linked[n] = true
	}
	for _, e := range evs {
		if e.At.After(t) {
			break
		}
		applyLink(linked, e)
	}
	return linked
}

func applyLink(linked map[string]bool, e Event) {
	if e.Err != "" || e.Replica == "" {
		return
	}
	switch e.What {
	case "link":
		linked[e.Replica] = true
	case "unlink":
		delete(linked, e.Replica)
	}
}

func names(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// onAddress follows which replicas are on the service address: linked,
// and for an address-handover replica also holding the address.
type onAddress struct {
	linked, holding, address map[string]bool
}

func newOnAddress(h History) *onAddress {
	o := &onAddress{linked: linkedAt(h, nil, h.Start), holding: map[string]bool{}, address: map[string]bool{}}
	for _, n := range h.Address {
		o.address[n] = true
	}
	for _, n := range h.Holding {
		o.holding[n] = true
	}
	return o
}

func (o *onAddress) apply(e Event) {
	applyLink(o.linked, e)
	if e.Err != "" || e.Replica == "" {
		return
	}
	switch e.What {
	case "hold":
		o.holding[e.Replica] = true
	case "drop":
		delete(o.holding, e.Replica)
	}
}

func (o *onAddress) on() map[string]bool {
	out := map[string]bool{}
	for n := range o.linked {
		if !o.address[n] || o.holding[n] {
			out[n] = true
		}
	}
	return out
}

// checkAttached: never two replicas on the service address for longer
// than MaxOverlap.
func checkAttached(h History, evs []Event, b Bounds, r *Report, add addFunc) {
	state := newOnAddress(h)
	var since time.Time
	var who []string
	end := func(at time.Time) {
		d := at.Sub(since)
		r.LongestOverlap = max(r.LongestOverlap, d)
		if d > b.MaxOverlap {
			add(InvTwoAttached, since, "%v on the service address together for %s (bound %s)", who, d.Round(time.Millisecond), b.MaxOverlap)
		}
		since = time.Time{}
	}
	if on := state.on(); len(on) >= 2 {
		since, who = h.Start, names(on)
	}
	for _, e := range evs {
		state.apply(e)
		on := state.on()
		switch {
		case len(on) >= 2 && since.IsZero():
			since, who = e.At, names(on)
		case len(on) < 2 && !since.IsZero():
			end(e.At)
		}
	}
	if !since.IsZero() {
		end(h.End)
	}
}

// checkFences: a replica agent never carries out a command older than
// one it carried out before (its fence is the highest (term, generation)
// it obeyed, kept across its restarts).
func checkFences(h History, r *Report, add addFunc) {
	type fence struct{ term, gen uint64 }
	highest := map[string]fence{}
	for _, c := range h.AgentCommands {
		r.AgentCommands++
		f, seen := highest[c.Replica]
		if seen && (c.Term < f.term || c.Term == f.term && c.Generation < f.gen) {
			add(InvStaleCommand, c.At, "the agent of %s carried out %s (term %d, generation %d) after (term %d, generation %d)",
				c.Replica, c.Action, c.Term, c.Generation, f.term, f.gen)
			continue
		}
		highest[c.Replica] = fence{c.Term, c.Generation}
	}
}

// checkAlerts: every committed alert of the run answered; every exploit
// the lab wrote reported by a committed alert.
func checkAlerts(h History, b Bounds, add addFunc) {
	for _, a := range h.Alerts {
		at := time.Unix(0, a.At)
		if at.Before(h.Start) {
			continue
		}
		if a.Outcome == "" {
			add(InvAlertUnanswered, at, "alert %s (%s on %s, index %d) has no outcome", a.ID, a.Kind, a.Replica, a.Index)
		}
	}
	for _, in := range h.Injections {
		if in.Step.Kind != AttackExploit || !in.Done() {
			continue
		}
		// The first alert on the replica committed from a second before the
		// exploit on (a.At is when the node received it).
		var first time.Time
		for _, a := range h.Alerts {
			at := time.Unix(0, a.At)
			if a.Replica == in.Replica && a.Kind == fsm.KindExploit && !at.Before(in.At.Add(-time.Second)) &&
				(first.IsZero() || at.Before(first)) {
				first = at
			}
		}
		switch {
		case first.IsZero():
			add(InvAlertLost, in.At, "the exploit on %s has no committed alert", in.Replica)
		case first.Sub(in.At) > b.MaxOutage:
			// A detector that cannot reach the cluster for that long: the
			// exploited replica may serve on unseen.
			add(InvAlertLost, in.At, "the exploit on %s was reported %s after it (bound %s)", in.Replica,
				first.Sub(in.At).Round(time.Millisecond), b.MaxOutage)
		}
	}
}

// observeLag is how much later than the engine acted the lab may record
// a container's change: it follows the engine's event stream and reads the
// container before it records anything.
const observeLag = 100 * time.Millisecond

// checkRestored: after an exploit on a replica, it is linked again only
// after a revert to its clean snapshot. The replica is tainted from the
// moment the cluster quarantined it — the exploit switch away from it,
// when there is one — and from the exploit itself otherwise (an exploit
// on a standby, or one never answered): until the alert is committed the
// replica is still the active to the cluster, and a repair that links it
// again (its engine restarted under it) is no violation of §4.4. A link
// recorded within observeLag of the quarantine is the lab seeing such a
// repair late (seed 5: a container started, with its service network
// still configured, just before the switch, its link recorded 3 ms after
// it), and is not counted either.
func checkRestored(evs []Event, switches []fsm.SwitchRecord, add addFunc) {
	quarantined := func(r string, after time.Time) time.Time {
		for _, s := range switches {
			if s.From == r && s.Reason == fsm.ReasonExploit && !time.Unix(0, s.StartedAt).Before(after) {
				return time.Unix(0, s.StartedAt)
			}
		}
		return after
	}
	tainted := map[string]time.Time{}
	for _, e := range evs {
		if e.Err != "" || e.Replica == "" {
			continue
		}
		switch e.What {
		case "exploit":
			if _, ok := tainted[e.Replica]; !ok {
				tainted[e.Replica] = quarantined(e.Replica, e.At)
			}
		case "revert":
			delete(tainted, e.Replica)
		case "link":
			if t, ok := tainted[e.Replica]; ok && !e.At.Before(t.Add(observeLag)) {
				add(InvUnrestored, e.At, "%s linked again without a revert since the exploit at %s", e.Replica, t.Format("15:04:05.000"))
				delete(tainted, e.Replica) // once
			}
		}
	}
}

// lossLead is how long before an attack a query may be sent and still be
// lost to it: the client's timeout (a query in flight when the server is
// wedged).
const lossLead = 250 * time.Millisecond

// checkAttacks: an attack on the linked replica is answered by a switch
// away from it within MaxOutage, and every gap the client saw after an
// attack or an engine restart (a gap belongs to the latest of them before
// it) is over within MaxOutage of it. An engine restart takes the serving
// container down like a crash; without it among the causes, its gap was
// charged to an attack up to MaxOutage before and could end past that
// attack's bound although the attack was long answered (seed 83: an
// engine restart 9.8 s after an exploit, its 383 ms gap ending at 10.2 s).
func checkAttacks(h History, evs []Event, b Bounds, r *Report, add addFunc) {
	var attacks, causes []Injection
	for _, in := range h.Injections {
		if !in.Done() {
			continue
		}
		if in.Step.Kind.IsAttack() {
			attacks = append(attacks, in)
		}
		if in.Step.Kind.IsAttack() || in.Step.Kind == DockerRestart {
			causes = append(causes, in)
		}
	}
	byTime := func(s []Injection) {
		sort.SliceStable(s, func(i, j int) bool { return s[i].At.Before(s[j].At) })
	}
	byTime(attacks)
	byTime(causes)
	for _, in := range attacks {
		t, bound := in.At, in.At.Add(b.MaxOutage)
		if linkedAt(h, evs, t)[in.Replica] {
			ok := slices.ContainsFunc(h.Switches, func(s fsm.SwitchRecord) bool {
				st := time.Unix(0, s.StartedAt)
				return s.From == in.Replica && !st.Before(t.Add(-time.Second)) && !st.After(bound)
			})
			if !ok {
				add(InvAttackUnanswered, t, "%s on %s: no switch away from it within %s", in.Step.Kind, in.Replica, b.MaxOutage)
			}
		}
	}
	for _, g := range h.Gaps {
		// The latest cause at most lossLead after the gap's start.
		i := -1
		for j, in := range causes {
			if !in.At.After(g.Start.Add(lossLead)) {
				i = j
			}
		}
		if i < 0 || g.Start.After(causes[i].At.Add(b.MaxOutage)) {
			r.UnattributedGaps++
			continue
		}
		in := causes[i]
		end := g.End
		if g.Open {
			end = h.End
		}
		if in.Step.Kind.IsAttack() {
			r.LongestOutage = max(r.LongestOutage, end.Sub(g.Start))
		} else {
			r.LongestRestartOutage = max(r.LongestRestartOutage, end.Sub(g.Start))
		}
		what := string(in.Step.Kind)
		if in.Replica != "" {
			what += " on " + in.Replica
		}
		if bound := in.At.Add(b.MaxOutage); g.Open || end.After(bound) {
			add(InvOutage, g.Start, "%s at %s: the service did not answer again within %s (gap of %s, %d lost%s)",
				what, in.At.Format("15:04:05.000"), b.MaxOutage, end.Sub(g.Start).Round(time.Millisecond), g.Lost, openNote(g.Open))
		}
	}
	for _, s := range h.Switches {
		st := time.Unix(0, s.StartedAt)
		if st.Before(h.Start) || st.After(h.End) || s.Reason == fsm.ReasonManual {
			continue
		}
		if !slices.ContainsFunc(causes, func(in Injection) bool {
			return !st.Before(in.At.Add(-time.Second)) && !st.After(in.At.Add(b.MaxOutage))
		}) {
			r.Unprovoked++
			add(InvFalseSwitch, st, "switch generation %d %s -> %s (%s) with no attack or engine restart in the %s before it",
				s.Generation, s.From, s.To, s.Reason, b.MaxOutage)
		}
	}
}

func openNote(open bool) string {
	if open {
		return ", never answered again"
	}
	return ""
}

// checkDigests: nodes at the same applied index hold the same state.
func checkDigests(h History, add addFunc) {
	type seen struct {
		digest, node string
	}
	first := map[uint64]seen{}
	reported := map[uint64]bool{}
	for _, s := range h.Samples {
		for _, n := range s.Nodes {
			if n.Err != "" || n.Digest == "" {
				continue
			}
			f, ok := first[n.Index]
			if !ok {
				first[n.Index] = seen{n.Digest, n.Node}
				continue
			}
			if f.digest != n.Digest && !reported[n.Index] {
				reported[n.Index] = true
				add(InvStateDiverged, s.At, "index %d: %s has state %.12s, %s has %.12s", n.Index, f.node, f.digest, n.Node, n.Digest)
			}
		}
	}
}

// checkSessions: a node's vCenter session ends within LogoutGrace of the
// end of the node's leadership or of a newer session of the node, or
// within SessionExpiry if the node was killed, stopped or cut off (it
// could not log out).
func checkSessions(h History, b Bounds, add addFunc) {
	type life struct {
		node        string
		first, last time.Time
	}
	lives := map[string]*life{}
	var samples []Sample
	for _, s := range h.Samples {
		if s.SessionsErr != "" {
			continue
		}
		samples = append(samples, s)
		for _, ss := range s.Sessions {
			l := lives[ss.Key]
			if l == nil {
				l = &life{node: ss.Node, first: s.At}
				lives[ss.Key] = l
			}
			l.last = s.At
		}
	}
	// excused reports whether a fault kept node from logging out of a
	// session alive from..to, and from when the session could no longer
	// be touched: a killed node's at the kill; a stopped, cut-off or
	// degraded one's when the fault ended, since a request it sent
	// meanwhile (a keep-alive, a call) can reach vCenter then and
	// renew the session's idle time (chaos seed 37: a deposed leader on a
	// one-way link).
	excused := func(node string, from, to time.Time) (time.Time, bool) {
		var last time.Time
		ok := false
		for _, in := range h.Injections {
			if in.Node != node || !in.Step.Kind.IsNodeFault() && !in.Step.Kind.IsLinkFault() || !in.Done() {
				continue
			}
			until := in.Until
			if until.IsZero() {
				until = h.End
			}
			if in.At.After(to) || until.Before(from) {
				continue
			}
			ok = true
			if in.Step.Kind == NodeKill || in.Step.Kind == NodeRestart {
				until = in.At
			}
			if until.After(last) {
				last = until
			}
		}
		return last, ok
	}
	reported := map[string]bool{}
	for i, s := range samples {
		for _, ss := range s.Sessions {
			if reported[ss.Key] {
				continue
			}
			l := lives[ss.Key]
			var stale time.Time
			// Not leading since when?
			if samples[i].Leader() != l.node {
				j := i
				for j > 0 && samples[j-1].Leader() != l.node && !samples[j-1].At.Before(l.first) {
					j--
				}
				stale = samples[j].At
			}
			// Replaced by a newer session of the same node?
			for _, o := range s.Sessions {
				if o.Key != ss.Key && o.Node == l.node && lives[o.Key].first.After(l.first) {
					if f := lives[o.Key].first; stale.IsZero() || f.Before(stale) {
						stale = f
					}
				}
			}
			if stale.IsZero() {
				continue
			}
			allowed := b.LogoutGrace
			if untouched, ok := excused(l.node, l.first.Add(-time.Second), s.At); ok {
				allowed = b.SessionExpiry
				if untouched.After(stale) {
					stale = untouched
				}
			}
			if d := s.At.Sub(stale); d > allowed {
				reported[ss.Key] = true
				add(InvSessionLeak, s.At, "session %.8s of %s alive %s after its node stopped leading or logged in again (bound %s)",
					ss.Key, orNone(l.node), d.Round(time.Millisecond), allowed)
			}
		}
	}
}

// checkElections counts the elections the samples saw and checks them
// against the faults that explain one: a node, link or disk fault on the node
// that led when it struck may cost an election (the others elect a new
// leader while it is gone, deaf or mute, or its lossy link misses their
// heartbeats); faults on a follower explain none, since raft's pre-vote
// and leader stickiness keep a follower that lost the leader from
// disturbing the others. vCenter faults, attacks and engine restarts do
// not touch raft. Leader terms that began and ended between two samples
// go unseen, so the count is a lower bound and the check can only miss.
func checkElections(h History, r *Report, add addFunc) {
	if len(h.Samples) == 0 {
		return
	}
	var base uint64
	for _, n := range h.Samples[0].Nodes {
		if n.Err == "" {
			base = max(base, n.Term)
		}
	}
	top := base
	seen := map[uint64]bool{}
	var excess time.Time
	for _, in := range h.Injections {
		if in.Done() && in.Step.Target == TargetLeader && (in.Step.Kind.IsNodeFault() || in.Step.Kind.IsLinkFault() || in.Step.Kind.IsDiskFault()) {
			r.ElectionsExplained++
		}
	}
	for _, s := range h.Samples {
		for _, n := range s.Nodes {
			if n.Err != "" {
				continue
			}
			top = max(top, n.Term)
			if n.State == "leader" && n.Term > base && !seen[n.Term] {
				seen[n.Term] = true
				r.Elections++
				if r.Elections == r.ElectionsExplained+1 {
					excess = s.At
				}
			}
		}
	}
	r.TermsAdvanced = top - base
	if r.Elections > r.ElectionsExplained {
		add(InvElections, excess, "%d elections (leader terms after term %d), %d explained by faults on the leader",
			r.Elections, base, r.ElectionsExplained)
	}
}

func orNone(s string) string {
	if s == "" {
		return "no node"
	}
	return s
}
