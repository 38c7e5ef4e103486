package bench

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Modes, in report order.
const (
	ModeARS = "ars"
	// ModeARSAddress is ars with address handover on its Linux VM
	// replicas (their replica agents move the address; controller/DESIGN.md).
	ModeARSAddress = "ars-address"
	ModePaperSDK   = "paper-sdk"
	ModePaperCLI   = "paper-cli"
	ModeDNSDist    = "dnsdist"
)

// Profiles: no injected latency, and latency calibrated on the paper's testbed.
const (
	ProfileNone  = "none"
	ProfilePaper = "paper"
)

// StatusNotRun marks a result for a scenario that could not run.
const StatusNotRun = "not-run"

// Errors returned (wrapped) by Summarize, Validate, Write and Read.
var (
	ErrEmptyName    = errors.New("empty scenario name")
	ErrEmptyProfile = errors.New("empty profile")
	ErrUnknownMode  = errors.New("unknown mode")
	ErrNegative     = errors.New("negative value")
	ErrNoTrials     = errors.New("no successful trials")
	ErrDuplicate    = errors.New("duplicate result")
	ErrInvalid      = errors.New("invalid result")
)

// Modes returns the known modes in report order.
func Modes() []string {
	return []string{ModeARS, ModeARSAddress, ModePaperSDK, ModePaperCLI, ModeDNSDist}
}

// modeRank is the position of mode in Modes, or -1 if it is unknown.
func modeRank(mode string) int {
	return slices.Index(Modes(), mode)
}

// Scenarios returns the standard scenario names, sorted.
func Scenarios() []string {
	var names []string
	for _, attack := range []string{"dos", "exploit"} {
		for _, pair := range []string{"vm-vm", "vm-container", "container-container"} {
			names = append(names, attack+"/"+pair)
		}
	}
	names = append(names, "leader-loss/dos", "impl-attack/diverse", "impl-attack/round-robin", "impl-attack/first-available", RepeatedDoS)
	slices.Sort(names)
	return names
}

// Trial is one trial's raw measurements.
type Trial struct {
	Downtime  time.Duration // time the service answered no query
	Detection time.Duration // attack start to detection
	Switch    time.Duration // detection to traffic served by the new replica
	Lost      int           // queries left without a correct answer
	Switched  bool          // the controller switched replicas
	Outages   int           // distinct outages seen (impl-attack)
	// Exposure is how long the replica switched away from stayed on the
	// service address after the trigger (the switch record's exposure_ms:
	// until its agent released the address or its NIC detach returned);
	// nil when not measured.
	Exposure *time.Duration
	Err      string // non-empty: the trial failed and its numbers are ignored
}

// Dist is a mean, median and maximum, in milliseconds.
type Dist struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	Max  float64 `json:"max"`
}

// Stat is a mean and maximum (milliseconds, or a count).
type Stat struct {
	Mean float64 `json:"mean"`
	Max  float64 `json:"max"`
}

// Result summarises the trials of one scenario × mode × profile.
// A result with Status StatusNotRun has a Reason, zero Trials, no
// measurements and no Note.
type Result struct {
	Name          string `json:"name"`
	Mode          string `json:"mode"`
	Profile       string `json:"profile"`
	Trials        int    `json:"trials"`
	Downtime      Dist   `json:"downtime_ms"`
	Detection     Stat   `json:"detection_ms"`
	Switch        Stat   `json:"switch_ms"`
	Lost          Stat   `json:"lost_queries"`
	FalseSwitches int    `json:"false_switches"`
	Outages       *Stat  `json:"outages,omitempty"` // set when a trial counted outages
	// Exposure is over the ExposureTrials successful trials that measured
	// it (absent when none did).
	Exposure       *Stat    `json:"exposure_ms,omitempty"`
	ExposureTrials int      `json:"exposure_trials,omitempty"`
	Switched       int      `json:"switched,omitempty"` // trials that switched
	Errors         []string `json:"errors,omitempty"`   // failed trials, left out of the numbers
	Status         string   `json:"status,omitempty"`   // "" (ran) or StatusNotRun
	Reason         string   `json:"reason,omitempty"`   // why it did not run
	// Note says what a result that ran measured where that is not what
	// its scenario name says of the other modes (a system that cannot
	// switch, a rotation of its own; repeated-dos: the policy it ran with).
	Note string `json:"note,omitempty"`
	// Repeated is the summary of a repeated-dos result (SummarizeRepeated).
	Repeated *Repeated `json:"repeated,omitempty"`
}

// MarshalJSON leaves the measurement fields out of not-run results.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	if r.Status != StatusNotRun {
		return json.Marshal(plain(r))
	}
	return json.Marshal(struct {
		Name    string   `json:"name"`
		Mode    string   `json:"mode"`
		Profile string   `json:"profile"`
		Trials  int      `json:"trials"`
		Errors  []string `json:"errors,omitempty"`
		Status  string   `json:"status"`
		Reason  string   `json:"reason"`
	}{r.Name, r.Mode, r.Profile, r.Trials, r.Errors, r.Status, r.Reason})
}

// NotRun returns the result for a scenario that could not run, for example a
// container pair on a host without container replicas.
func NotRun(name, mode, profile, reason string) Result {
	return Result{Name: name, Mode: mode, Profile: profile, Status: StatusNotRun, Reason: reason}
}

// Summarize aggregates trials into a Result. Failed trials (Err set) are
// listed in Errors and left out of the statistics; Trials counts the others.
// Durations are reported in milliseconds rounded to 0.1 ms, and so are the
// means of counts. P50 is the median by linear interpolation between closest
// ranks: with an even number of trials it is the mean of the two middle ones.
// It is an error if no trial succeeded; report such a scenario with NotRun.
func Summarize(name, mode, profile string, trials []Trial, falseSwitches int) (Result, error) {
	r := Result{Name: name, Mode: mode, Profile: profile, FalseSwitches: falseSwitches}
	if err := r.checkKey(); err != nil {
		return Result{}, err
	}
	if falseSwitches < 0 {
		return Result{}, fmt.Errorf("bench: %s: false switches %d: %w", r.key(), falseSwitches, ErrNegative)
	}
	var down, det, sw, lost, out, exp []float64
	for i, t := range trials {
		if err := t.check(); err != nil {
			return Result{}, fmt.Errorf("bench: %s: trial %d: %w", r.key(), i+1, err)
		}
		if t.Err != "" {
			r.Errors = append(r.Errors, fmt.Sprintf("trial %d: %s", i+1, t.Err))
			continue
		}
		down = append(down, ms(t.Downtime))
		det = append(det, ms(t.Detection))
		sw = append(sw, ms(t.Switch))
		lost = append(lost, float64(t.Lost))
		out = append(out, float64(t.Outages))
		if t.Exposure != nil {
			exp = append(exp, ms(*t.Exposure))
		}
		if t.Switched {
			r.Switched++
		}
	}
	if len(down) == 0 {
		return Result{}, fmt.Errorf("bench: %s: %d trials, %d failed: %w", r.key(), len(trials), len(r.Errors), ErrNoTrials)
	}
	r.Trials = len(down)
	r.Downtime = Dist{Mean: round(mean(down)), P50: round(percentile(down, 50)), Max: round(slices.Max(down))}
	r.Detection = stat(det)
	r.Switch = stat(sw)
	r.Lost = stat(lost)
	if slices.Max(out) > 0 {
		s := stat(out)
		r.Outages = &s
	}
	if len(exp) > 0 {
		s := stat(exp)
		r.Exposure, r.ExposureTrials = &s, len(exp)
	}
	return r, nil
}

func (t Trial) check() error {
	for _, d := range []struct {
		what string
		v    time.Duration
	}{{"downtime", t.Downtime}, {"detection", t.Detection}, {"switch", t.Switch}} {
		if d.v < 0 {
			return fmt.Errorf("%s %v: %w", d.what, d.v, ErrNegative)
		}
	}
	if t.Lost < 0 {
		return fmt.Errorf("lost queries %d: %w", t.Lost, ErrNegative)
	}
	if t.Outages < 0 {
		return fmt.Errorf("outages %d: %w", t.Outages, ErrNegative)
	}
	if t.Exposure != nil && *t.Exposure < 0 {
		return fmt.Errorf("exposure %v: %w", *t.Exposure, ErrNegative)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// round rounds to one decimal.
func round(x float64) float64 { return math.Round(x*10) / 10 }

func mean(xs []float64) float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// percentile interpolates linearly between the closest ranks of xs
// (p in [0, 100]); xs must not be empty.
func percentile(xs []float64, p float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	h := float64(len(s)-1) * p / 100
	lo := int(math.Floor(h))
	if lo+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[lo] + (h-float64(lo))*(s[lo+1]-s[lo])
}

func stat(xs []float64) Stat {
	return Stat{Mean: round(mean(xs)), Max: round(slices.Max(xs))}
}

func (r Result) key() string {
	return fmt.Sprintf("%s %s (profile %s)", r.Name, r.Mode, r.Profile)
}

func (r Result) checkKey() error {
	switch {
	case r.Name == "":
		return fmt.Errorf("bench: %s: %w", r.key(), ErrEmptyName)
	case r.Profile == "":
		return fmt.Errorf("bench: %s: %w (use %q)", r.key(), ErrEmptyProfile, ProfileNone)
	case modeRank(r.Mode) < 0:
		return fmt.Errorf("bench: %s: %w %q (want one of %v)", r.key(), ErrUnknownMode, r.Mode, Modes())
	}
	return nil
}

// Validate reports whether r is a consistent result: known mode, non-empty
// name and profile, and either a not-run result with a reason and no
// measurements, or at least one trial and non-negative, finite numbers.
func (r Result) Validate() error {
	if err := r.checkKey(); err != nil {
		return err
	}
	invalid := func(format string, a ...any) error {
		return fmt.Errorf("bench: %s: %s: %w", r.key(), fmt.Sprintf(format, a...), ErrInvalid)
	}
	switch r.Status {
	case StatusNotRun:
		switch {
		case r.Trials != 0:
			return invalid("not-run result has %d trials", r.Trials)
		case r.Reason == "":
			return invalid("not-run result needs a reason")
		case r.Downtime != Dist{} || r.Detection != Stat{} || r.Switch != Stat{} || r.Lost != Stat{} ||
			r.FalseSwitches != 0 || r.Outages != nil || r.Switched != 0 || r.Repeated != nil:
			return invalid("not-run result carries measurements")
		case r.Note != "":
			return invalid("not-run result carries a note (its reason says why)")
		}
		return nil
	case "":
	default:
		return invalid("unknown status %q", r.Status)
	}
	if r.Trials <= 0 {
		return fmt.Errorf("bench: %s: trials %d: %w", r.key(), r.Trials, ErrNoTrials)
	}
	if r.Reason != "" {
		return invalid("reason %q on a result that ran", r.Reason)
	}
	if r.FalseSwitches < 0 || r.Switched < 0 {
		return fmt.Errorf("bench: %s: false switches %d, switched %d: %w", r.key(), r.FalseSwitches, r.Switched, ErrNegative)
	}
	if r.Switched > r.Trials {
		return invalid("switched %d of %d trials", r.Switched, r.Trials)
	}
	if r.Repeated != nil {
		if r.Name != RepeatedDoS {
			return invalid("a repeated-attack summary on %s", r.Name)
		}
		if err := r.Repeated.validate(r.Trials); err != nil {
			return invalid("%v", err)
		}
	}
	stats := []struct {
		what           string
		mean, p50, max float64
	}{
		{"downtime", r.Downtime.Mean, r.Downtime.P50, r.Downtime.Max},
		{"detection", r.Detection.Mean, 0, r.Detection.Max},
		{"switch", r.Switch.Mean, 0, r.Switch.Max},
		{"lost queries", r.Lost.Mean, 0, r.Lost.Max},
	}
	if r.Outages != nil {
		stats = append(stats, struct {
			what           string
			mean, p50, max float64
		}{"outages", r.Outages.Mean, 0, r.Outages.Max})
	}
	for _, s := range stats {
		for _, v := range []float64{s.mean, s.p50, s.max} {
			switch {
			case math.IsNaN(v) || math.IsInf(v, 0):
				return invalid("%s %v", s.what, v)
			case v < 0:
				return fmt.Errorf("bench: %s: %s %v: %w", r.key(), s.what, v, ErrNegative)
			}
		}
		if s.mean > s.max || s.p50 > s.max {
			return invalid("%s mean %v or p50 %v above max %v", s.what, s.mean, s.p50, s.max)
		}
	}
	return nil
}

// sorted returns a copy of rs ordered by profile, scenario name and mode
// (in the order of Modes; unknown modes last, alphabetically).
func sorted(rs []Result) []Result {
	rank := func(m string) int {
		if i := modeRank(m); i >= 0 {
			return i
		}
		return len(Modes())
	}
	out := slices.Clone(rs)
	if out == nil {
		out = []Result{}
	}
	slices.SortStableFunc(out, func(a, b Result) int {
		return cmp.Or(
			cmp.Compare(a.Profile, b.Profile),
			cmp.Compare(a.Name, b.Name),
			cmp.Compare(rank(a.Mode), rank(b.Mode)),
			cmp.Compare(a.Mode, b.Mode),
		)
	})
	return out
}
