package decide

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/ars-project/ars/fsm"
)

// Capabilities says what a replica's driver can do, as far as choosing a
// replica is concerned. The zero value is a fully capable replica, so a
// replica missing from State.Capabilities has no restriction.
type Capabilities struct {
	// Unavailable: the driver cannot operate the replica now (its host or
	// Docker engine is unreachable, the VM is missing, ...). It is never
	// chosen to become active, and a manual switch to it is refused. A
	// probe verdict on an active that is unavailable is not flap-damped by
	// min_dwell: its silence is not the switch's gap, and waiting cannot
	// end it.
	Unavailable bool
	// NoRestore: the driver cannot bring the replica back to a clean state
	// (no clean snapshot configured, or an FT-protected VM: vSphere cannot
	// snapshot or revert it). Once attacked it stays quarantined for good, so
	// among candidates that are otherwise equally diverse one that can be
	// restored is preferred. It never outranks impl diversity.
	NoRestore bool
	// Stopped: its platform reports it powered off, neither running nor
	// suspended, so a switch to it must boot or start it, the slowest way
	// to bring a replica in (a container that a Docker engine restart
	// killed took 1.3-1.8 s to start in the chaos lab; a VM boots). Among
	// candidates that are otherwise equal a running or suspended one is
	// preferred, the standby included; it never outranks impl diversity
	// or restorability.
	Stopped bool
	// NotAnswering: the leader's health probe of the replica (a standby
	// with a health_addr) got no valid answer for probe.standby_failures
	// probes in a row: its server is wedged, or its VM or container is
	// running but does not answer. A switch to it would be an outage of a
	// probe window and a switch, damped by min_dwell since it never
	// answered. Among candidates of the same impl diversity one that is not
	// so judged is preferred, whatever its restorability or power state;
	// it never outranks impl diversity. With every candidate so judged the
	// least bad is still chosen, and the Reason says so.
	NotAnswering bool
}

// State is what Decide decides on.
type State struct {
	// Service is the replicated state of the service the event concerns (a
	// copy, e.g. from cluster.Service).
	Service fsm.Service
	// Capabilities optionally maps replica name to what its driver can do.
	// nil, or a replica missing from it, means fully capable.
	Capabilities map[string]Capabilities
}

// Outcome says what a decision does, or why it does nothing. Values are
// stable; Decision.Reason carries the detail.
type Outcome string

// Outcomes.
const (
	// OutcomeSwitch: one fsm.Switch away from the active replica.
	OutcomeSwitch Outcome = "switch"
	// OutcomeQuarantine: one fsm.ReplicaRole quarantine of an exploited
	// replica that is not active (standby, suspended or in maintenance). The
	// FSM picks a new standby if it was the standby; the active is untouched.
	OutcomeQuarantine Outcome = "quarantine"
	// OutcomeAlreadyHandled: the replica is already quarantined or
	// recovering; it is restored before it serves again.
	OutcomeAlreadyHandled Outcome = "ignored: already handled"
	// OutcomeNotActive: a DoS report on a replica that is not serving (the
	// service has moved on since the probes were sent).
	OutcomeNotActive Outcome = "ignored: not active"
	// OutcomeStale: a DoS verdict reached before the replica it names took
	// over.
	OutcomeStale Outcome = "ignored: stale verdict"
	// OutcomeUnconfirmed: probe.confirm is "quorum" and the verdict lacks it.
	OutcomeUnconfirmed Outcome = "ignored: unconfirmed"
	// OutcomeDampedDwell: a DoS switch refused because the active replica
	// has been active for less than policy.min_dwell.
	OutcomeDampedDwell Outcome = "damped: min dwell"
	// OutcomeDampedRate: a DoS switch refused because policy.max_switches
	// switches already started within policy.window.
	OutcomeDampedRate Outcome = "damped: max switches"
	// OutcomeNoEligible: a switch is called for but no replica can take
	// over (all others are quarantined, recovering, in maintenance or
	// unavailable).
	OutcomeNoEligible Outcome = "no eligible replica"
	// OutcomeRejected: the event or the state is invalid; Decide returns the
	// error too.
	OutcomeRejected Outcome = "rejected"
)

// Decision is the result of Decide.
type Decision struct {
	// Commands to commit, in order, each encoded with fsm.Encode and the
	// leader's current term. Empty when nothing is to be done. Every command
	// expects the generation of the state decided on, so a decision that
	// reaches the log after any other role change is refused with
	// fsm.ErrStaleGeneration: decide again on the fresh state.
	Commands []fsm.Command
	Outcome  Outcome
	// Reason explains the outcome in one line: the trigger, what was chosen
	// and why, or why nothing happens (with the numbers, when damped).
	Reason string
	// RetryAt is set when damped: the earliest time at which the same event
	// would not be damped any more. Decide keeps no memory; a caller whose
	// verdict still holds then should decide again.
	RetryAt time.Time
}

// maxRoleReason is the FSM's limit on ReplicaRole.Reason (bytes).
const maxRoleReason = 256

// Decide returns what the leader should commit in reaction to ev, given the
// replicated state st of the service and the leader's clock reading now.
//
// It is a pure function: no I/O, no clock read, no goroutine, no randomness,
// and no dependence on map iteration order; the same arguments always give
// the same decision. It never changes st.
//
// The error is non-nil only for input that cannot be decided on: an event
// for another service, an unknown replica, an invalid field, a manual switch
// to a replica that cannot become active. It wraps fsm.ErrInvalid,
// fsm.ErrUnknownReplica or fsm.ErrConflict (so fsm.Code gives the API code),
// and the decision then has no command. Doing nothing for a good reason (an
// alert already handled, damping, no eligible replica after an attack) is a
// decision, not an error.
func Decide(st State, ev Event, now time.Time) (Decision, error) {
	d, err := newDecider(st, ev, now)
	if err != nil {
		return Decision{Outcome: OutcomeRejected, Reason: err.Error()}, err
	}
	var dec Decision
	switch e := ev.(type) {
	case DoSVerdict:
		dec, err = d.dosVerdict(e)
	case *DoSVerdict:
		dec, err = d.dosVerdict(*e)
	case Alert:
		dec, err = d.alert(e)
	case *Alert:
		dec, err = d.alert(*e)
	case ManualSwitch:
		dec, err = d.manual(e)
	case *ManualSwitch:
		dec, err = d.manual(*e)
	default:
		err = fmt.Errorf("%w: decide: unknown event type %T", fsm.ErrInvalid, ev)
	}
	if err != nil && dec.Outcome == "" {
		dec = Decision{Outcome: OutcomeRejected, Reason: err.Error()}
	}
	return dec, err
}

// decider holds one call's inputs.
type decider struct {
	svc    fsm.Service
	caps   map[string]Capabilities
	nowNS  int64
	active fsm.ReplicaState
}

func newDecider(st State, ev Event, now time.Time) (*decider, error) {
	if ev == nil || isNilPointer(ev) {
		return nil, fmt.Errorf("%w: decide: nil event", fsm.ErrInvalid)
	}
	svc := st.Service
	name := svc.Spec.Name
	switch {
	case name == "":
		return nil, fmt.Errorf("%w: decide: no service state given (event for service %q)", fsm.ErrInvalid, ev.ServiceName())
	case ev.ServiceName() != name:
		return nil, fmt.Errorf("%w: decide: event for service %q, state of service %q", fsm.ErrInvalid, ev.ServiceName(), name)
	case svc.Generation == 0:
		return nil, fmt.Errorf("%w: decide: service %q: state has generation 0", fsm.ErrInvalid, name)
	case len(svc.Replicas) != len(svc.Spec.Replicas):
		return nil, fmt.Errorf("%w: decide: service %q: %d replica states for %d replicas in spec",
			fsm.ErrInvalid, name, len(svc.Replicas), len(svc.Spec.Replicas))
	}
	ns := now.UnixNano()
	if now.IsZero() || ns <= 0 || !time.Unix(0, ns).Equal(now) {
		return nil, fmt.Errorf("%w: decide: service %q: now %s is not a usable clock reading", fsm.ErrInvalid, name, now)
	}
	active, ok := svc.Active()
	if !ok {
		return nil, fmt.Errorf("%w: decide: service %q has no active replica", fsm.ErrConflict, name)
	}
	return &decider{svc: svc, caps: st.Capabilities, nowNS: ns, active: active}, nil
}

func isNilPointer(ev Event) bool {
	switch e := ev.(type) {
	case *DoSVerdict:
		return e == nil
	case *Alert:
		return e == nil
	case *ManualSwitch:
		return e == nil
	}
	return false
}

// replica returns the state of a replica named by an event.
func (d *decider) replica(field, name string) (fsm.ReplicaState, error) {
	if name == "" {
		return fsm.ReplicaState{}, fmt.Errorf("%w: decide: service %q: %s: replica required", fsm.ErrInvalid, d.svc.Spec.Name, field)
	}
	rs, ok := d.svc.Replica(name)
	if !ok {
		return fsm.ReplicaState{}, fmt.Errorf("%w: decide: service %q has no replica %q (%s)", fsm.ErrUnknownReplica, d.svc.Spec.Name, name, field)
	}
	return rs, nil
}

func (d *decider) capsOf(name string) Capabilities { return d.caps[name] }

// ---- events ----------------------------------------------------------------

func (d *decider) dosVerdict(e DoSVerdict) (Decision, error) {
	rs, err := d.replica("replica", e.Replica)
	if err != nil {
		return Decision{}, err
	}
	trigger := fmt.Sprintf("dos verdict on %s %q (detection %s, confirmed by %d)", rs.Role, rs.Name, e.Detection, e.Confirmations)
	if dec, done := d.dosOnInactive(rs, trigger); done {
		return dec, nil
	}
	if !e.DetectedAt.IsZero() {
		if rec, ok := d.lastSwitchTo(rs.Name); ok && e.DetectedAt.UnixNano() < rec.StartedAt {
			return Decision{Outcome: OutcomeStale, Reason: fmt.Sprintf(
				"%s: the verdict was reached at %s, before %q took over at %s (switch generation %d); the failures were not its own",
				trigger, stamp(e.DetectedAt.UnixNano()), rs.Name, stamp(rec.StartedAt), rec.Generation)}, nil
		}
	}
	if d.svc.Spec.Probe.Confirm == fsm.ConfirmQuorum && !e.Quorum {
		return Decision{Outcome: OutcomeUnconfirmed, Reason: fmt.Sprintf(
			"%s: probe.confirm is %q and the verdict has no quorum; a controller-side fault must not cause a switch",
			trigger, fsm.ConfirmQuorum)}, nil
	}
	return d.dosSwitch(trigger, e.AnsweredAt, true)
}

func (d *decider) alert(e Alert) (Decision, error) {
	if e.ID == "" {
		return Decision{}, fmt.Errorf("%w: decide: service %q: alert id required", fsm.ErrInvalid, d.svc.Spec.Name)
	}
	if e.Kind != fsm.KindExploit && e.Kind != fsm.KindDoS {
		return Decision{}, fmt.Errorf("%w: decide: alert %q: kind %q must be %q or %q", fsm.ErrInvalid, e.ID, e.Kind, fsm.KindExploit, fsm.KindDoS)
	}
	rs, err := d.replica("replica", e.Replica)
	if err != nil {
		return Decision{}, err
	}
	trigger := fmt.Sprintf("%s alert %q", e.Kind, e.ID)
	if e.Source != "" {
		trigger += fmt.Sprintf(" from %q", e.Source)
	}
	trigger += fmt.Sprintf(" on %s %q", rs.Role, rs.Name)

	if e.Index > 0 && rs.RestoredIndex > e.Index {
		// A detector that repeats itself (retries, a burst of denials from
		// one exploit) must not re-quarantine the clean replica the first
		// alert already had restored.
		return Decision{Outcome: OutcomeAlreadyHandled, Reason: fmt.Sprintf(
			"%s: committed at log index %d, before the replica was restored to its clean state (index %d)",
			trigger, e.Index, rs.RestoredIndex)}, nil
	}

	if e.Kind == fsm.KindDoS {
		if dec, done := d.dosOnInactive(rs, trigger); done {
			return dec, nil
		}
		// A detector's dos alert is a claim, not the probes' evidence: it
		// is always subject to the whole damping.
		return d.dosSwitch(trigger, time.Time{}, false)
	}

	switch rs.Role {
	case fsm.RoleQuarantined, fsm.RoleRecovering:
		return d.alreadyHandled(rs, trigger), nil
	case fsm.RoleActive:
		// Exploit: never damped (see controller/DESIGN.md, "Exploit vs DoS, and flap damping").
		return d.switchAway(fsm.ReasonExploit, trigger)
	default: // standby, suspended, maintenance
		cmd := fsm.ReplicaRole{
			Service:          d.svc.Spec.Name,
			Replica:          rs.Name,
			Action:           fsm.ActionQuarantine,
			ExpectGeneration: d.svc.Generation,
			Reason:           clip(fmt.Sprintf("exploit alert %q", e.ID), maxRoleReason),
		}
		why := fmt.Sprintf("%s: quarantine it until it is restored; the active %q is untouched", trigger, d.active.Name)
		if rs.Role == fsm.RoleStandby {
			why += "; the FSM picks a new standby"
		}
		return Decision{Commands: []fsm.Command{cmd}, Outcome: OutcomeQuarantine, Reason: why}, nil
	}
}

func (d *decider) manual(e ManualSwitch) (Decision, error) {
	trigger := fmt.Sprintf("manual switch from active %q", d.active.Name)
	if e.Reason != "" {
		trigger += fmt.Sprintf(" (%q)", e.Reason)
	}
	if e.To == "" {
		dec, err := d.switchAway(fsm.ReasonManual, trigger)
		if err == nil && dec.Outcome == OutcomeNoEligible {
			err = fmt.Errorf("%w: decide: %s", fsm.ErrConflict, dec.Reason)
		}
		return dec, err
	}
	rs, err := d.replica("to", e.To)
	if err != nil {
		return Decision{}, err
	}
	refuse := func(why string) (Decision, error) {
		return Decision{}, fmt.Errorf("%w: decide: service %q: cannot switch to %q: %s", fsm.ErrConflict, d.svc.Spec.Name, rs.Name, why)
	}
	switch {
	case rs.Role == fsm.RoleActive:
		return refuse("it is already active")
	case rs.Role == fsm.RoleQuarantined || rs.Role == fsm.RoleRecovering || !rs.Clean:
		return refuse(fmt.Sprintf("it is %s; it must be restored first", rs.Role))
	case rs.Role == fsm.RoleMaintenance:
		return refuse("it is in maintenance; release it first")
	case !rs.Role.Eligible():
		return refuse(fmt.Sprintf("it is %s", rs.Role))
	case d.capsOf(rs.Name).Unavailable:
		return refuse("its driver reports it unavailable")
	}
	why := fmt.Sprintf("%s: switch to %s %s, as requested", trigger, rs.Role, d.label(rs.Name))
	if d.sameImpl(rs.Name, d.active.Name) {
		why += fmt.Sprintf("; note: same impl %s as %q", d.impl(rs.Name), d.active.Name)
	}
	if d.capsOf(rs.Name).NotAnswering {
		why += "; note: it does not answer its health probe"
	}
	if d.capsOf(rs.Name).NoRestore {
		why += "; note: its driver cannot restore it"
	}
	return d.switchDecision(fsm.ReasonManual, rs.Name, why), nil
}

// ---- rules -------------------------------------------------------------------

// dosOnInactive handles a DoS report on a replica that is not active.
func (d *decider) dosOnInactive(rs fsm.ReplicaState, trigger string) (Decision, bool) {
	switch rs.Role {
	case fsm.RoleActive:
		return Decision{}, false
	case fsm.RoleQuarantined, fsm.RoleRecovering:
		return d.alreadyHandled(rs, trigger), true
	}
	return Decision{Outcome: OutcomeNotActive, Reason: fmt.Sprintf(
		"%s: it does not serve the service (the active is %q); a DoS report on it is stale or moot",
		trigger, d.active.Name)}, true
}

func (d *decider) alreadyHandled(rs fsm.ReplicaState, trigger string) Decision {
	why := fmt.Sprintf("%s: it is already %s", trigger, rs.Role)
	if rs.Reason != "" {
		why += fmt.Sprintf(" (%s, log index %d)", rs.Reason, rs.Since)
	}
	why += "; it is restored before it serves again"
	return Decision{Outcome: OutcomeAlreadyHandled, Reason: why}
}

// dosSwitch is a DoS switch away from the active replica, subject to flap
// damping. answered is the latest answer the probes got from the active
// since it was attached (zero for an alert, or if none); probed tells the
// probes' verdict from a detector's dos alert, which is a claim and always
// damped.
func (d *decider) dosSwitch(trigger string, answered time.Time, probed bool) (Decision, error) {
	if d.served(answered) {
		return d.undampedSwitch(fmt.Sprintf("%s; %q answered at %s, after it took over: a new failure, min_dwell does not apply",
			trigger, d.active.Name, stamp(answered.UnixNano())))
	}
	if probed && d.capsOf(d.active.Name).Unavailable {
		return d.undampedSwitch(fmt.Sprintf("%s; the platform of %q does not answer: waiting cannot bring it up, min_dwell does not apply",
			trigger, d.active.Name))
	}
	if dec, damped := d.damp(trigger); damped {
		return dec, nil
	}
	return d.switchAway(fsm.ReasonDoS, trigger)
}

// switchAway switches from the active replica to the best replica.
func (d *decider) switchAway(reason, trigger string) (Decision, error) {
	p, ok := d.choose(d.active.Name)
	if !ok {
		return Decision{Outcome: OutcomeNoEligible, Reason: fmt.Sprintf("%s: %s", trigger, d.noEligible(d.active.Name))}, nil
	}
	return d.switchDecision(reason, p.name, fmt.Sprintf("%s: switch to %s", trigger, p.why)), nil
}

func (d *decider) switchDecision(reason, to, why string) Decision {
	mode := d.mode(reason)
	cmd := fsm.Switch{
		Service:          d.svc.Spec.Name,
		From:             d.active.Name,
		To:               to,
		Reason:           reason,
		Mode:             mode,
		ExpectGeneration: d.svc.Generation,
		At:               d.nowNS,
	}
	if in := d.svc.Intent; in != nil {
		why += fmt.Sprintf("; supersedes the open switch generation %d (%q -> %q)", in.Generation, in.From, in.To)
	}
	return Decision{Commands: []fsm.Command{cmd}, Outcome: OutcomeSwitch, Reason: why + "; " + mode}
}

// mode is the switch mode for a reason, from the policy.
func (d *decider) mode(reason string) string {
	pol := d.svc.Spec.Policy
	switch reason {
	case fsm.ReasonExploit:
		if pol.ExploitMode != "" {
			return pol.ExploitMode
		}
		return fsm.DefaultExploitMode
	case fsm.ReasonDoS:
		if pol.DoSMode != "" {
			return pol.DoSMode
		}
		return fsm.DefaultDoSMode
	}
	return fsm.ModeMakeBeforeBreak
}

// lastSwitchTo returns the newest switch record if it made name active.
func (d *decider) lastSwitchTo(name string) (fsm.SwitchRecord, bool) {
	h := d.svc.History
	if len(h) == 0 || h[len(h)-1].To != name {
		return fsm.SwitchRecord{}, false
	}
	return h[len(h)-1], true
}

// ---- helpers ---------------------------------------------------------------

func (d *decider) impl(name string) string {
	sp, _ := d.svc.Spec.Replica(name)
	return sp.Impl
}

func (d *decider) sameImpl(a, b string) bool { return d.impl(a) == d.impl(b) }

// label renders a replica as "name" (impl/os/platform).
func (d *decider) label(name string) string {
	sp, _ := d.svc.Spec.Replica(name)
	return fmt.Sprintf("%q (%s/%s/%s)", name, sp.Impl, sp.OS, sp.Platform)
}

// stamp formats unix nanoseconds for reasons.
func stamp(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// clip shortens s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
