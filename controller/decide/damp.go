package decide

import (
	"fmt"
	"slices"
	"time"

	"github.com/ars-project/ars/fsm"
)

// damp applies flap damping to a DoS switch away from the active replica
// that has not served since it took over (see served) and whose platform
// answers, or that a detector's dos alert names. It returns the damped decision and true if the switch
// must not happen now.
//
//   - min dwell: if the newest switch record made the current active replica
//     active, the replica has been active since that switch was verified
//     (DoneAt), or since it started (StartedAt) while it is still open. Less
//     than policy.min_dwell is damped.
//   - rate: if policy.max_switches switch records (any reason, superseded
//     ones included) started within policy.window before now, damped.
//
// Without a switch record for it (the initial active replica) there is no
// dwell to respect. A clock behind the recorded timestamps counts as "no time
// has passed": it can delay a DoS switch, never hasten one.
func (d *decider) damp(trigger string) (Decision, bool) {
	if dec, damped := d.dwellDamp(trigger); damped {
		return dec, true
	}
	return d.rateDamp(trigger)
}

// dwellDamp is the min_dwell half of damp.
func (d *decider) dwellDamp(trigger string) (Decision, bool) {
	pol := d.svc.Spec.Policy
	if rec, ok := d.lastSwitchTo(d.active.Name); ok && pol.MinDwell > 0 {
		since, what := rec.StartedAt, "started"
		if rec.Done && rec.DoneAt > since {
			since, what = rec.DoneAt, "was verified"
		}
		if dwell := d.nowNS - since; dwell < int64(pol.MinDwell) {
			retry := since + int64(pol.MinDwell)
			return Decision{
				Outcome: OutcomeDampedDwell,
				Reason: fmt.Sprintf("%s: damped: %q has been active for %s (its switch, generation %d, %s at %s), min_dwell is %s; not before %s",
					trigger, d.active.Name, time.Duration(dwell), rec.Generation, what, stamp(since), pol.MinDwell, stamp(retry)),
				RetryAt: time.Unix(0, retry).UTC(),
			}, true
		}
	}
	return Decision{}, false
}

// rateDamp is the max_switches half of damp.
func (d *decider) rateDamp(trigger string) (Decision, bool) {
	pol := d.svc.Spec.Policy
	if pol.MaxSwitches > 0 && pol.Window > 0 {
		var starts []int64
		for _, rec := range d.svc.History {
			if d.nowNS-rec.StartedAt < int64(pol.Window) {
				starts = append(starts, rec.StartedAt)
			}
		}
		if len(starts) >= pol.MaxSwitches {
			slices.Sort(starts)
			// The count drops below the maximum when this one leaves the window.
			retry := starts[len(starts)-pol.MaxSwitches] + int64(pol.Window)
			return Decision{
				Outcome: OutcomeDampedRate,
				Reason: fmt.Sprintf("%s: damped: %d switches started in the last %s (since %s), max_switches is %d; not before %s",
					trigger, len(starts), pol.Window, stamp(starts[0]), pol.MaxSwitches, stamp(retry)),
				RetryAt: time.Unix(0, retry).UTC(),
			}, true
		}
	}
	return Decision{}, false
}

// served reports whether the active replica answered the probes after the
// switch that made it active started (answered is the latest answer since
// it was attached; the initial active has no such switch). A replica that
// served and then went silent failed anew: the failure is neither the
// switch's own gap nor an attach still landing, which is what min_dwell
// waits out.
func (d *decider) served(answered time.Time) bool {
	if answered.IsZero() {
		return false
	}
	rec, ok := d.lastSwitchTo(d.active.Name)
	return !ok || answered.UnixNano() >= rec.StartedAt
}

// undampedSwitch is a DoS switch away from an active whose silence is
// not the switch's own gap: it served since it took over (see served), or
// the probes confirm it down and its platform does not answer (a Docker
// engine restarting under it, its vCenter gone: waiting cannot land the
// attach or bring it back). Damping exists to stop ping-pong on verdicts
// that are not the replica's fault; it must not hold the service on a
// replica the probes confirm is down. So: no min_dwell, and a switch to a
// replica of another impl is never damped — the rotation is bounded
// instead by the restores (every DoS switch quarantines its source, which
// serves again only after its restore), by detection (each switch needs a
// verdict on a new activation) and, for the platform case, by choose,
// which never picks a replica whose platform does not answer. A switch
// that stays within the attacked impl (the only eligible replicas share
// it, or rotation round-robin picked one) cannot escape an attack on the
// impl; the rate bound, max_switches per window, still applies to it.
// trigger already says why min_dwell does not apply.
func (d *decider) undampedSwitch(trigger string) (Decision, error) {
	p, ok := d.choose(d.active.Name)
	if !ok {
		return Decision{Outcome: OutcomeNoEligible, Reason: fmt.Sprintf("%s: %s", trigger, d.noEligible(d.active.Name))}, nil
	}
	if d.sameImpl(p.name, d.active.Name) {
		if dec, damped := d.rateDamp(trigger); damped {
			return dec, nil
		}
	}
	return d.switchDecision(fsm.ReasonDoS, p.name, fmt.Sprintf("%s: switch to %s", trigger, p.why)), nil
}
