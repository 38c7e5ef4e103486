package chaos

import (
	"fmt"
	"io"
	"sort"
	"time"
)

// Summary adds up the reports of a chaos run (`make chaos` writes it to
// bench/results/chaos.json).
type Summary struct {
	Started   time.Time `json:"started"`
	Machine   string    `json:"machine,omitempty"`
	FirstSeed int64     `json:"first_seed"`
	Schedules int       `json:"schedules"`
	// Length is each schedule's length; MeanSeconds and MaxSeconds the
	// time a schedule took with its heal and readiness check.
	Length      string       `json:"schedule_length"`
	MeanSeconds float64      `json:"mean_schedule_seconds"`
	MaxSeconds  float64      `json:"max_schedule_seconds"`
	Faults      map[Kind]int `json:"faults"`
	Skipped     map[Kind]int `json:"skipped,omitempty"`
	Attacks     int          `json:"attacks"`
	Switches    int          `json:"switches"`
	Unprovoked  int          `json:"unprovoked_switches"`
	// DriverCalls counts the nodes' vCenter calls that changed a VM,
	// LateCalls those a cut-off node's requests made after the heal.
	DriverCalls int `json:"driver_calls"`
	LateCalls   int `json:"late_calls"`
	// UnattributedGaps counts the client's gaps with no attack or engine
	// restart before them.
	UnattributedGaps int `json:"unattributed_gaps"`
	// Elections counts the leader terms the samples saw begin,
	// ElectionsExplained how many the faults on the leader allowed,
	// TermsAdvanced how far the terms moved (Report).
	Elections          int            `json:"elections"`
	ElectionsExplained int            `json:"elections_explained"`
	TermsAdvanced      uint64         `json:"terms_advanced"`
	Violations         map[string]int `json:"violations"`
	// FailingSeeds are the seeds whose schedule broke an invariant:
	// `ars-lab chaos -seed N -schedules 1` runs one again.
	FailingSeeds    []int64 `json:"failing_seeds"`
	LongestOutageMS float64 `json:"longest_outage_ms"`
	// LongestRestartOutageMS is the longest gap after a Docker engine
	// restart (under the serving container).
	LongestRestartOutageMS float64 `json:"longest_engine_restart_outage_ms"`
	LongestOverlapMS       float64 `json:"longest_overlap_ms"`
	// AgentCommands counts the commands replica agents carried out
	// (address handover; absent without).
	AgentCommands int    `json:"agent_commands,omitempty"`
	Bounds        Bounds `json:"bounds"`
}

// NewSummary starts an empty summary.
func NewSummary(started time.Time, firstSeed int64, length time.Duration, b Bounds) *Summary {
	return &Summary{Started: started, FirstSeed: firstSeed, Length: length.String(), Bounds: b.withDefaults(),
		Faults: map[Kind]int{}, Skipped: map[Kind]int{}, Violations: map[string]int{}, FailingSeeds: []int64{}}
}

// Add counts one schedule's report.
func (s *Summary) Add(r Report) {
	total := s.MeanSeconds * float64(s.Schedules)
	s.Schedules++
	sec := r.Duration.Seconds()
	s.MeanSeconds = (total + sec) / float64(s.Schedules)
	s.MaxSeconds = max(s.MaxSeconds, sec)
	for k, n := range r.Faults {
		s.Faults[k] += n
	}
	for k, n := range r.Skipped {
		s.Skipped[k] += n
	}
	s.Attacks += r.Attacks
	s.Switches += r.Switches
	s.Unprovoked += r.Unprovoked
	s.UnattributedGaps += r.UnattributedGaps
	s.DriverCalls += r.DriverCalls
	s.LateCalls += r.LateCalls
	s.Elections += r.Elections
	s.ElectionsExplained += r.ElectionsExplained
	s.TermsAdvanced += r.TermsAdvanced
	for _, v := range r.Violations {
		s.Violations[v.Invariant]++
	}
	if !r.OK() {
		s.FailingSeeds = append(s.FailingSeeds, r.Seed)
	}
	s.LongestOutageMS = max(s.LongestOutageMS, ms(r.LongestOutage))
	s.LongestRestartOutageMS = max(s.LongestRestartOutageMS, ms(r.LongestRestartOutage))
	s.LongestOverlapMS = max(s.LongestOverlapMS, ms(r.LongestOverlap))
	s.AgentCommands += r.AgentCommands
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ViolationCount is the number of violations of every invariant.
func (s *Summary) ViolationCount() int {
	n := 0
	for _, v := range s.Violations {
		n += v
	}
	return n
}

// WriteTable prints the summary as a table for people.
func (s *Summary) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "schedules run\t%d (seeds %d..%d, %s each; mean %.1f s, max %.1f s with heal and readiness check)\n",
		s.Schedules, s.FirstSeed, s.FirstSeed+int64(s.Schedules)-1, s.Length, s.MeanSeconds, s.MaxSeconds)
	var kinds []string
	for k := range s.Faults {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		if Kind(k).IsAttack() {
			continue
		}
		fmt.Fprintf(w, "faults injected: %s\t%d\n", k, s.Faults[Kind(k)])
	}
	for _, k := range Kinds {
		if n := s.Skipped[k]; n > 0 {
			fmt.Fprintf(w, "not injected: %s\t%d\n", k, n)
		}
	}
	fmt.Fprintf(w, "attacks (dos, exploit)\t%d (%d, %d)\n", s.Attacks, s.Faults[AttackDoS], s.Faults[AttackExploit])
	fmt.Fprintf(w, "switches\t%d (%d with no attack or engine restart before them)\n", s.Switches, s.Unprovoked)
	fmt.Fprintf(w, "client gaps with no attack or engine restart before them\t%d\n", s.UnattributedGaps)
	fmt.Fprintf(w, "vCenter calls that changed a VM\t%d (%d from a node after its partition healed)\n", s.DriverCalls, s.LateCalls)
	fmt.Fprintf(w, "elections (new leader terms seen)\t%d (%d explained by faults on the leader; terms advanced %d)\n",
		s.Elections, s.ElectionsExplained, s.TermsAdvanced)
	fmt.Fprintf(w, "invariant violations\t%d\n", s.ViolationCount())
	for _, inv := range Invariants {
		if n := s.Violations[inv]; n > 0 {
			fmt.Fprintf(w, "  %s\t%d\n", inv, n)
		}
	}
	fmt.Fprintf(w, "longest outage after an attack\t%.1f ms (bound %s)\n", s.LongestOutageMS, s.Bounds.MaxOutage)
	fmt.Fprintf(w, "longest outage after an engine restart\t%.1f ms (bound %s)\n", s.LongestRestartOutageMS, s.Bounds.MaxOutage)
	fmt.Fprintf(w, "longest two-replica overlap\t%.1f ms (bound %s)\n", s.LongestOverlapMS, s.Bounds.MaxOverlap)
	if s.AgentCommands > 0 {
		fmt.Fprintf(w, "replica agent commands carried out\t%d (%d older than one the agent carried out before)\n",
			s.AgentCommands, s.Violations[InvStaleCommand])
	}
	if len(s.FailingSeeds) > 0 {
		fmt.Fprintf(w, "failing seeds\t%v (ars-lab chaos -seed N -schedules 1 runs one again)\n", s.FailingSeeds)
	}
}
