package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// RepeatedDoS is the scenario that attacks the serving replica again and
// again (a DoS every RepeatedEvery, RepeatedCount times) under the policy
// ars ships with, flap damping included.
const RepeatedDoS = "repeated-dos"

// The repeated-dos schedule: one attack every 5 s for 60 s.
const (
	RepeatedEvery = 5 * time.Second
	RepeatedCount = 12
)

// RepeatedTrials is how many trials repeated-dos runs unless the runner is
// told otherwise: each one lasts over a minute plus a quiet minute before it.
const RepeatedTrials = 3

// RepeatedVsDoSTarget is the target for Repeated.VsDoSMax: an attack that
// comes every 5 s costs a client at most this many times the worst outage
// of a single DoS (dos/vm-vm) of the same run.
const RepeatedVsDoSTarget = 1.5

// Attack is one attack of a repeated-dos trial. An attack is made only on a
// replica that is not already down from an earlier attack of the trial.
type Attack struct {
	Target string        // the replica attacked: the one the cluster held active
	At     time.Duration // since the trial's first attack
	// To is the replica the service switched to away from Target, and
	// After the time from the attack to that switch's commit; "" and 0
	// when the service did not switch away before the trial ended.
	To    string
	After time.Duration
	// InTime says the switch away committed before the next attack was
	// due (within RepeatedEvery): the attack counts as switched.
	InTime            bool
	Detection, Switch time.Duration // from the switch record (0 without one)
	// Outage is the client's longest gap from this attack to the next
	// attack made (for the last one, to the end of the trial), measured as
	// the dos scenarios measure it; Lost counts the queries it lost then.
	Outage time.Duration
	Lost   int
	// Clean lists the replicas other than Target that were clean (not
	// quarantined, recovering or in maintenance) and running when the
	// attack came: the service had somewhere to go.
	Clean []string
}

// RepeatedTrial is one trial of repeated-dos.
type RepeatedTrial struct {
	Due     int      // attacks the schedule called for
	Attacks []Attack // attacks made, in order
	// FalseSwitches counts the switches of the trial that answered no
	// attack (away from a replica nobody attacked, or a second switch
	// away from the same attack's target).
	FalseSwitches int
	Err           string // non-empty: the trial failed and its numbers are ignored
}

// Repeated is the repeated-dos summary of a Result.
type Repeated struct {
	Due     int `json:"due"`     // attacks the schedule called for, over every trial
	Attacks int `json:"attacks"` // attacks made (a tick whose target was still down makes none)
	// Switched counts the attacks the service switched away from within
	// RepeatedEvery; NotSwitchedClean those it did not although a clean
	// replica was running (the target is 0).
	Switched         int  `json:"switched"`
	NotSwitchedClean int  `json:"not_switched_clean"`
	Outage           Stat `json:"outage_ms"` // per attack
	// VsDoSMax is Outage.Max over the downtime max of dos/vm-vm in the same
	// run, mode and profile (nil when that did not run); the target is at
	// most RepeatedVsDoSTarget.
	VsDoSMax  *float64       `json:"vs_dos_max,omitempty"`
	PerAttack []AttackRecord `json:"per_attack"`
}

// AttackRecord is one attack as latest.json lists it.
type AttackRecord struct {
	Trial    int      `json:"trial"`
	Target   string   `json:"target"`
	AtMS     float64  `json:"at_ms"`
	To       string   `json:"to,omitempty"`
	AfterMS  float64  `json:"after_ms,omitempty"`
	InTime   bool     `json:"in_time"`
	OutageMS float64  `json:"outage_ms"`
	Lost     int      `json:"lost_queries"`
	Clean    []string `json:"clean,omitempty"`
}

// SummarizeRepeated aggregates repeated-dos trials into a Result. The
// ordinary columns are per attack: downtime is each attack's outage,
// detection and switch come from the switches that answered an attack, lost
// is per attack. Failed trials are listed in Errors and left out; note (the
// policy the trials ran with) is kept with the result. It is an error if no
// trial succeeded or a successful trial made no attack.
func SummarizeRepeated(mode, profile string, trials []RepeatedTrial, note string) (Result, error) {
	r := Result{Name: RepeatedDoS, Mode: mode, Profile: profile, Note: note}
	if err := r.checkKey(); err != nil {
		return Result{}, err
	}
	rep := &Repeated{PerAttack: []AttackRecord{}}
	var down, det, sw, lost []float64
	for i, t := range trials {
		if err := t.check(); err != nil {
			return Result{}, fmt.Errorf("bench: %s: trial %d: %w", r.key(), i+1, err)
		}
		if t.Err != "" {
			r.Errors = append(r.Errors, fmt.Sprintf("trial %d: %s", i+1, t.Err))
			continue
		}
		if len(t.Attacks) == 0 {
			return Result{}, fmt.Errorf("bench: %s: trial %d made no attack: %w", r.key(), i+1, ErrInvalid)
		}
		r.Trials++
		r.FalseSwitches += t.FalseSwitches
		rep.Due += t.Due
		for _, a := range t.Attacks {
			rep.Attacks++
			if a.InTime {
				rep.Switched++
			} else if len(a.Clean) > 0 {
				rep.NotSwitchedClean++
			}
			down = append(down, ms(a.Outage))
			lost = append(lost, float64(a.Lost))
			if a.To != "" {
				det = append(det, ms(a.Detection))
				sw = append(sw, ms(a.Switch))
			}
			rep.PerAttack = append(rep.PerAttack, AttackRecord{Trial: i + 1, Target: a.Target, AtMS: round(ms(a.At)),
				To: a.To, AfterMS: round(ms(a.After)), InTime: a.InTime, OutageMS: round(ms(a.Outage)), Lost: a.Lost,
				Clean: slices.Clone(a.Clean)})
		}
	}
	if r.Trials == 0 {
		return Result{}, fmt.Errorf("bench: %s: %d trials, %d failed: %w", r.key(), len(trials), len(r.Errors), ErrNoTrials)
	}
	r.Downtime = Dist{Mean: round(mean(down)), P50: round(percentile(down, 50)), Max: round(slices.Max(down))}
	if len(det) > 0 {
		r.Detection, r.Switch = stat(det), stat(sw)
	}
	r.Lost = stat(lost)
	rep.Outage = Stat{Mean: r.Downtime.Mean, Max: r.Downtime.Max}
	r.Repeated = rep
	return r, nil
}

func (t RepeatedTrial) check() error {
	if t.Due < 0 || t.FalseSwitches < 0 {
		return fmt.Errorf("due %d, false switches %d: %w", t.Due, t.FalseSwitches, ErrNegative)
	}
	if len(t.Attacks) > t.Due {
		return fmt.Errorf("%d attacks of %d due: %w", len(t.Attacks), t.Due, ErrInvalid)
	}
	for i, a := range t.Attacks {
		for _, d := range []struct {
			what string
			v    time.Duration
		}{{"at", a.At}, {"after", a.After}, {"detection", a.Detection}, {"switch", a.Switch}, {"outage", a.Outage}} {
			if d.v < 0 {
				return fmt.Errorf("attack %d: %s %v: %w", i+1, d.what, d.v, ErrNegative)
			}
		}
		if a.Lost < 0 {
			return fmt.Errorf("attack %d: lost queries %d: %w", i+1, a.Lost, ErrNegative)
		}
		if a.Target == "" || a.InTime && a.To == "" {
			return fmt.Errorf("attack %d: target %q, switched in time to %q: %w", i+1, a.Target, a.To, ErrInvalid)
		}
	}
	return nil
}

// RelateDoS sets r's VsDoSMax from dos, the dos/vm-vm result of the same
// run, mode and profile: r's per-attack outage max over dos's downtime max,
// rounded to two decimals. It does nothing when either did not run or
// dos's max is 0.
func (r *Result) RelateDoS(dos Result) {
	if r.Repeated == nil || r.Status != "" || dos.Status != "" || dos.Name != "dos/vm-vm" ||
		dos.Mode != r.Mode || dos.Profile != r.Profile || dos.Downtime.Max <= 0 {
		return
	}
	v := math.Round(r.Repeated.Outage.Max/dos.Downtime.Max*100) / 100
	r.Repeated.VsDoSMax = &v
}

// validate checks a Repeated summary against its result's trials.
func (p *Repeated) validate(trials int) error {
	switch {
	case p.Attacks < trials || p.Attacks > p.Due:
		return fmt.Errorf("%d attacks of %d due in %d trials", p.Attacks, p.Due, trials)
	case p.Switched < 0 || p.NotSwitchedClean < 0 || p.Switched+p.NotSwitchedClean > p.Attacks:
		return fmt.Errorf("switched %d, not switched with a clean replica %d, of %d attacks", p.Switched, p.NotSwitchedClean, p.Attacks)
	case len(p.PerAttack) != p.Attacks:
		return fmt.Errorf("%d per-attack records for %d attacks", len(p.PerAttack), p.Attacks)
	case p.Outage.Mean < 0 || p.Outage.Mean > p.Outage.Max || math.IsNaN(p.Outage.Max) || math.IsInf(p.Outage.Max, 0):
		return fmt.Errorf("outage mean %v, max %v", p.Outage.Mean, p.Outage.Max)
	case p.VsDoSMax != nil && (*p.VsDoSMax < 0 || math.IsNaN(*p.VsDoSMax) || math.IsInf(*p.VsDoSMax, 0)):
		return fmt.Errorf("vs dos max %v", *p.VsDoSMax)
	}
	return nil
}
