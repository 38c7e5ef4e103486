package probe

import (
	"fmt"
	"time"

	"github.com/ars-project/ars/fsm"
)

// State is the verdict on a service.
type State uint8

// Verdict states.
const (
	StateUnknown State = iota // no verdict yet
	StateUp                   // the latest evidence is a valid answer
	StateDown                 // the service is down (DoS verdict)
)

func (s State) String() string {
	switch s {
	case StateUnknown:
		return "unknown"
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Transition is a change of verdict.
type Transition struct {
	From, To State
	// At is when the verdict changed (the clock's time when the deciding
	// result arrived or the window ran out).
	At time.Time
	// Since: for StateDown, the start of the first failed probe of the
	// outage; otherwise At.
	Since time.Time
	// Detection (StateDown): At − Since, how long detection took.
	Detection time.Duration
	// Outage (StateUp after StateDown): At − the Since of the DOWN verdict,
	// the outage as the probes saw it.
	Outage time.Duration
	// Failures is the number of consecutive failures counted at the
	// verdict; Reason the reason of the latest one (StateDown).
	Failures int
	Reason   Reason
}

// Status answers "is the service down, since when, and how long did
// detection take".
type Status struct {
	State State
	// Since: StateDown, the start of the first failed probe of the outage;
	// StateUp, when the valid answer that made it up arrived; StateUnknown,
	// when the verdict started.
	Since time.Time
	// At is when the current state was entered.
	At time.Time
	// Detection (StateDown): At − Since.
	Detection time.Duration
	// LastOK is when the latest valid answer arrived (zero if none yet).
	LastOK time.Time
	// Failures counts the consecutive failures since the latest valid
	// answer; LastReason is the reason of the latest failure.
	Failures   int
	LastReason Reason
}

// Verdict turns probe results, fed in completion order, into a verdict. It
// is a pure state machine: no goroutines, no I/O, and no clock of its own —
// every method takes the current time, so a test drives it with any clock.
//
// Profile "paper": DOWN after spec.Failures consecutive failures.
//
// Profile "ars": DOWN when no valid answer has arrived for more than
// spec.Window since the latest valid answer (or since the verdict started),
// and at least spec.Failures consecutive failures were seen since that
// answer. Time passing alone can complete the first condition, so the
// caller must call Advance at Deadline.
//
// Both: a failure counts only if its probe started after the probe of the
// latest valid answer (an older probe that fails late says nothing about
// now); cancelled probes (ReasonCanceled) are ignored; any valid answer
// makes the verdict UP.
//
// A Verdict is not safe for concurrent use.
type Verdict struct {
	paper    bool
	window   time.Duration
	failures int

	state      State
	since      time.Time // see Status.Since
	at         time.Time
	lastOK     time.Time // arrival of the latest valid answer; the verdict start before one
	okStart    time.Time // latest Start among valid answers
	seenOK     bool
	fails      int
	firstFail  time.Time // earliest Start among the counted failures
	lastReason Reason
}

// NewVerdict returns the verdict for spec (normalized first), started at
// start: in the ars profile, the window runs from start until the first
// valid answer.
func NewVerdict(spec fsm.ProbeSpec, start time.Time) (*Verdict, error) {
	spec = normalize(spec)
	v := &Verdict{
		window:   time.Duration(spec.Window),
		failures: spec.Failures,
		state:    StateUnknown,
		since:    start,
		at:       start,
		lastOK:   start,
	}
	switch spec.Profile {
	case fsm.ProfilePaper:
		v.paper = true
	case fsm.ProfileARS:
		if v.window <= 0 {
			return nil, fmt.Errorf("%w: window: must be > 0 for profile %q", ErrInvalidSpec, spec.Profile)
		}
	default:
		return nil, fmt.Errorf("%w: profile: %q (want %q or %q)", ErrInvalidSpec, spec.Profile, fsm.ProfileARS, fsm.ProfilePaper)
	}
	if v.failures < 1 {
		return nil, fmt.Errorf("%w: failures: %d must be >= 1", ErrInvalidSpec, v.failures)
	}
	return v, nil
}

// State is the current verdict.
func (v *Verdict) State() State { return v.state }

// Status is the current verdict with its times.
func (v *Verdict) Status() Status {
	s := Status{
		State:      v.state,
		Since:      v.since,
		At:         v.at,
		Failures:   v.fails,
		LastReason: v.lastReason,
	}
	if v.seenOK {
		s.LastOK = v.lastOK
	}
	if v.state == StateDown {
		s.Detection = v.at.Sub(v.since)
	}
	return s
}

// Observe feeds one result that completed at now (results must be fed in
// completion order) and returns the transition it caused, if any.
func (v *Verdict) Observe(r Result, now time.Time) (Transition, bool) {
	if r.Reason == ReasonCanceled {
		return Transition{}, false
	}
	if r.OK {
		v.lastOK, v.seenOK = now, true
		if r.Start.After(v.okStart) {
			v.okStart = r.Start
		}
		v.fails, v.firstFail = 0, time.Time{}
		if v.state == StateUp {
			return Transition{}, false
		}
		t := Transition{From: v.state, To: StateUp, At: now, Since: now}
		if v.state == StateDown {
			t.Outage = now.Sub(v.since)
		}
		v.state, v.since, v.at = StateUp, now, now
		return t, true
	}
	if v.seenOK && !r.Start.After(v.okStart) {
		return Transition{}, false // stale: a later probe was answered
	}
	v.fails++
	v.lastReason = r.Reason
	if v.firstFail.IsZero() || r.Start.Before(v.firstFail) {
		v.firstFail = r.Start
	}
	return v.evaluate(now)
}

// Advance tells the verdict that time has reached now with no new result,
// and returns the transition that caused, if any (ars profile only: the
// window ran out).
func (v *Verdict) Advance(now time.Time) (Transition, bool) { return v.evaluate(now) }

// Deadline is the earliest time at which Advance, with no new result, could
// change the verdict; ok is false when only a new result can change it.
func (v *Verdict) Deadline() (t time.Time, ok bool) {
	if v.paper || v.state == StateDown || v.fails < v.failures {
		return time.Time{}, false
	}
	return v.lastOK.Add(v.window + time.Nanosecond), true
}

func (v *Verdict) evaluate(now time.Time) (Transition, bool) {
	if v.state == StateDown || v.fails < v.failures {
		return Transition{}, false
	}
	if !v.paper && now.Sub(v.lastOK) <= v.window {
		return Transition{}, false
	}
	since := v.firstFail
	if since.After(now) { // a result with a clock from the future; keep Detection >= 0
		since = now
	}
	t := Transition{
		From: v.state, To: StateDown, At: now, Since: since,
		Detection: now.Sub(since), Failures: v.fails, Reason: v.lastReason,
	}
	v.state, v.since, v.at = StateDown, since, now
	return t, true
}
