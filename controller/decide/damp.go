package decide

import (
	"fmt"
	"slices"
	"time"
)

// damp applies flap damping to a DoS switch away from the active replica. It
// returns the damped decision and true if the switch must not happen now.
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
