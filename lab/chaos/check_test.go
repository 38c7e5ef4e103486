package chaos

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/fsm"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func ns(ms int) int64 { return at(ms).UnixNano() }

// sample is a poll where leader leads (term 2) and every node is at index
// with digest, and sessions (KEY@NODE) are live.
func sample(ms int, leader string, index uint64, digest string, sessions ...string) Sample {
	s := Sample{At: at(ms)}
	for _, n := range []string{"n1", "n2", "n3"} {
		st := "follower"
		if n == leader {
			st = "leader"
		}
		s.Nodes = append(s.Nodes, NodeSample{Node: n, State: st, Leader: leader, Term: 2, Voters: 3, Index: index, Digest: digest})
	}
	for _, kv := range sessions {
		k, n, _ := strings.Cut(kv, "@")
		s.Sessions = append(s.Sessions, Session{Key: k, Node: n})
	}
	return s
}

// good is a history that keeps every invariant: a DoS on the active "a"
// answered by a break-before-make switch to "b" (a 300 ms gap), and an
// exploit on "b" answered by a make-before-break switch to "c", "b"
// reverted; n1 leads throughout with one session.
func good() History {
	h := History{Seed: 7, Start: at(0), End: at(20000), Healed: at(17000), Ready: true, Linked: []string{"a"}}
	h.Injections = []Injection{
		{Step: Step{Kind: AttackDoS, Target: TargetActive}, At: at(1000), Replica: "a"},
		{Step: Step{Kind: NodeStop, Target: TargetFollower, Duration: 2 * time.Second}, At: at(2000), Until: at(4000), Node: "n2"},
		{Step: Step{Kind: AttackExploit, Target: TargetActive}, At: at(6000), Replica: "b"},
	}
	h.Events = []Event{
		{At: at(1000), Replica: "a", What: "dos"},
		{At: at(1285), Node: "n1", What: "vc-call", Detail: "ReconfigVM_Task vm-a"},
		{At: at(1295), Node: "n1", What: "vc-call", Detail: "ReconfigVM_Task vm-b"},
		{At: at(1290), Replica: "a", What: "unlink"},
		{At: at(1300), Replica: "b", What: "link"},
		{At: at(1500), Replica: "a", What: "revert"},
		{At: at(6000), Replica: "b", What: "exploit"},
		{At: at(6050), Replica: "c", What: "link"},
		{At: at(6060), Replica: "b", What: "unlink"},
		{At: at(6500), Replica: "b", What: "revert"},
		{At: at(9000), Replica: "b", What: "link"}, // after its revert: fine
		{At: at(9010), Replica: "c", What: "unlink"},
	}
	h.Gaps = []Gap{{Start: at(1005), End: at(1305), Lost: 60}}
	h.Switches = []fsm.SwitchRecord{
		{Generation: 2, From: "a", To: "b", Reason: fsm.ReasonDoS, StartedAt: ns(1280), DoneAt: ns(1350), Done: true},
		{Generation: 3, From: "b", To: "c", Reason: fsm.ReasonExploit, StartedAt: ns(6040), DoneAt: ns(6100), Done: true},
		{Generation: 4, From: "c", To: "b", Reason: fsm.ReasonManual, StartedAt: ns(9000), DoneAt: ns(9050), Done: true},
	}
	h.Alerts = []fsm.AlertRecord{{ID: "x1", Replica: "b", Kind: fsm.KindExploit, At: ns(6002), Index: 30, Outcome: "switch"}}
	for ms := 0; ms <= 20000; ms += 500 {
		h.Samples = append(h.Samples, sample(ms, "n1", uint64(10+ms/1000), "d"+string(rune('a'+ms/1000)), "s1@n1"))
	}
	return h
}

// A replica linked again between the exploit and the switch that
// quarantined it (its container re-started under it before the alert was
// committed) is still the active to the cluster: no §4.4 violation.
func TestCheckRelinkBeforeQuarantine(t *testing.T) {
	h := good()
	h.Events = append(h.Events, Event{At: at(6020), Replica: "b", What: "link"}, // before the quarantine at 6040
		Event{At: at(6043), Replica: "b", What: "link"}) // recorded 3 ms after it: seen late
	slices.SortStableFunc(h.Events, func(a, b Event) int { return a.At.Compare(b.At) })
	if r := Check(h, Bounds{}); len(r.Violations) != 0 {
		t.Fatalf("violations %+v", r.Violations)
	}
}

// A gap that starts after an engine restart belongs to the restart, not
// to an attack up to 10 s before it (seed 83: an exploit at 6 s, an
// engine restart at 15.8 s under the serving container, its 400 ms gap
// ending past the exploit's bound); the restart has a bound of its own.
func TestCheckEngineRestartGaps(t *testing.T) {
	h := good()
	h.Injections = append(h.Injections, Injection{Step: Step{Kind: DockerRestart}, At: at(15800), Until: at(17000)})
	h.Gaps = append(h.Gaps, Gap{Start: at(15830), End: at(16230), Lost: 80})
	r := Check(h, Bounds{})
	if !r.OK() || r.LongestRestartOutage != 400*time.Millisecond || r.LongestOutage != 300*time.Millisecond || r.UnattributedGaps != 0 {
		t.Fatalf("violations %v, restart outage %s, attack outage %s, unattributed %d", r.Violations, r.LongestRestartOutage, r.LongestOutage, r.UnattributedGaps)
	}
	h.Gaps[len(h.Gaps)-1].Open = true // never answered again
	h.End = at(26000)
	r = Check(h, Bounds{})
	if len(r.Violations) == 0 || r.Violations[0].Invariant != InvOutage || !strings.Contains(r.Violations[0].What, "docker-restart at") {
		t.Fatalf("an engine restart never answered: violations %+v", r.Violations)
	}
}

func TestCheckAcceptsAGoodHistory(t *testing.T) {
	r := Check(good(), Bounds{})
	if !r.OK() {
		t.Fatalf("violations in a good history: %v", r.Violations)
	}
	if r.Attacks != 2 || r.Switches != 3 || r.Faults[NodeStop] != 1 || r.Faults[AttackDoS] != 1 {
		t.Fatalf("figures %+v", r)
	}
	if r.LongestOutage != 300*time.Millisecond {
		t.Fatalf("longest outage %s, want 300ms", r.LongestOutage)
	}
	if r.LongestOverlap != 10*time.Millisecond {
		t.Fatalf("longest overlap %s, want 10ms", r.LongestOverlap)
	}
	if r.DriverCalls != 2 || r.LateCalls != 0 {
		t.Fatalf("driver calls %d, late %d; want 2, 0", r.DriverCalls, r.LateCalls)
	}
	if r.Unprovoked != 0 || r.UnattributedGaps != 0 {
		t.Fatalf("%d unprovoked switches, %d gaps with no attack", r.Unprovoked, r.UnattributedGaps)
	}
}

// Each case breaks one invariant of the good history; the checker must
// report that one (and may report its consequences).
func TestCheckFindsEachViolation(t *testing.T) {
	cases := []struct {
		name string
		want string
		mod  func(h *History)
	}{
		{"two replicas linked past the make-before-break window", InvTwoAttached, func(h *History) {
			// c is never unlinked after the manual switch back to b at 9 s.
			h.Events = slices.DeleteFunc(h.Events, func(e Event) bool { return e.Replica == "c" && e.What == "unlink" })
		}},
		{"an overlap still open at the end", InvTwoAttached, func(h *History) {
			h.Events = append(h.Events, Event{At: at(9500), Replica: "a", What: "link"})
		}},
		{"a committed alert without an outcome", InvAlertUnanswered, func(h *History) {
			h.Alerts = append(h.Alerts, fsm.AlertRecord{ID: "x2", Replica: "c", Kind: fsm.KindExploit, At: ns(12000), Index: 40})
		}},
		{"an exploit with no committed alert", InvAlertLost, func(h *History) {
			h.Alerts = nil
		}},
		{"an exploit reported after the bound", InvAlertLost, func(h *History) {
			h.Alerts[0].At = ns(6002 + 10001)
		}},
		{"an exploited replica linked before its revert", InvUnrestored, func(h *History) {
			h.Events = slices.DeleteFunc(h.Events, func(e Event) bool { return e.Replica == "b" && e.What == "revert" })
		}},
		{"an exploited replica linked after its quarantine, before its revert", InvUnrestored, func(h *History) {
			h.Events = append(h.Events, Event{At: at(6200), Replica: "b", What: "link"})
			slices.SortStableFunc(h.Events, func(a, b Event) int { return a.At.Compare(b.At) })
		}},
		{"a DoS on the linked replica never switched", InvAttackUnanswered, func(h *History) {
			h.Switches = h.Switches[1:]
		}},
		{"an exploit on the linked replica switched too late", InvAttackUnanswered, func(h *History) {
			h.Switches[1].StartedAt = ns(6000 + 16000)
		}},
		{"two nodes at the same index with different states", InvStateDiverged, func(h *History) {
			h.Samples[3].Nodes[2].Digest = "forked"
		}},
		{"a deposed leader keeps its session", InvSessionLeak, func(h *History) {
			// n3 leads from 10 s on; n1's session stays.
			for i := range h.Samples {
				if h.Samples[i].At.After(at(10000)) {
					s := sample(int(h.Samples[i].At.Sub(t0)/time.Millisecond), "n3", h.Samples[i].Nodes[0].Index, h.Samples[i].Nodes[0].Digest, "s1@n1", "s3@n3")
					h.Samples[i] = s
				}
			}
		}},
		{"a leader logs in again and leaves the old session", InvSessionLeak, func(h *History) {
			for i := range h.Samples {
				if h.Samples[i].At.After(at(8000)) {
					h.Samples[i].Sessions = append(h.Samples[i].Sessions, Session{Key: "s2", Node: "n1"})
				}
			}
		}},
		{"the service does not answer again after an attack", InvOutage, func(h *History) {
			h.Gaps = append(h.Gaps, Gap{Start: at(6100), End: at(19000), Lost: 2500, Open: true})
		}},
		{"a gap longer than the bound", InvOutage, func(h *History) {
			h.Gaps[0].End = at(1000 + 16000)
		}},
		{"a second attack's gap outlasts the bound (it is not the first attack's)", InvOutage, func(h *History) {
			// A DoS at 3 s whose gap (from 2.9 s) lasts 15.5 s: within the
			// first attack's window, but it belongs to the second.
			h.Injections = append(h.Injections, Injection{Step: Step{Kind: AttackDoS, Target: TargetActive}, At: at(3000), Replica: "b"})
			h.Switches = append(h.Switches, fsm.SwitchRecord{Generation: 9, From: "b", To: "c", Reason: fsm.ReasonDoS, StartedAt: ns(3300), Done: true})
			h.Gaps = append(h.Gaps, Gap{Start: at(2900), End: at(3000 + 15500), Lost: 3000})
		}},
		{"a follower changes a VM", InvDeposedCall, func(h *History) {
			h.Events = append(h.Events, Event{At: at(5100), Node: "n2", What: "vc-call", Detail: "PowerOnVM_Task vm-c"})
		}},
		{"a stale leader changes a VM after another was elected", InvDeposedCall, func(h *History) {
			// n2 resumes from SIGSTOP believing it leads (term 1) while n1
			// leads in term 2.
			for i := range h.Samples {
				if ms := int(h.Samples[i].At.Sub(t0) / time.Millisecond); ms == 4000 || ms == 4500 {
					h.Samples[i].Nodes[1] = NodeSample{Node: "n2", State: "leader", Leader: "n2", Term: 1, Voters: 3}
				}
			}
			h.Events = append(h.Events, Event{At: at(4200), Node: "n2", What: "vc-call", Detail: "ReconfigVM_Task vm-a"})
		}},
		{"an election no fault on the leader explains", InvElections, func(h *History) {
			h.Injections = append(h.Injections, Injection{Step: Step{Kind: LinkLoss, Target: TargetFollower, Loss: 20, Duration: 2 * time.Second},
				At: at(9000), Until: at(11000), Node: "n2"})
			newLeader(h, 10000, "n3", 3)
		}},
		{"no healthy cluster after the heal", InvNotReady, func(h *History) {
			h.Ready, h.NotReady = false, "no leader"
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := good()
			c.mod(&h)
			r := Check(h, Bounds{})
			if !slices.ContainsFunc(r.Violations, func(v Violation) bool { return v.Invariant == c.want }) {
				t.Fatalf("no %s violation; got %v", c.want, r.Violations)
			}
		})
	}
}

// A node that was stopped, killed or cut off while it led cannot log out:
// its session may live until vCenter expires it, not longer.
func TestCheckExcusesAnOrphanedSessionUntilItExpires(t *testing.T) {
	mk := func(lastMS int) History {
		return orphanedSession(Injection{Step: Step{Kind: NodeKill, Target: TargetLeader, Duration: 2 * time.Second},
			At: at(10000), Until: at(12000), Node: "n1"}, lastMS)
	}
	if r := Check(mk(18000), Bounds{SessionExpiry: 10 * time.Second}); !r.OK() {
		t.Fatalf("a killed leader's session gone 8 s later: %v", r.Violations)
	}
	if r := Check(mk(18000), Bounds{SessionExpiry: 5 * time.Second}); r.OK() {
		t.Fatal("a killed leader's session 8 s after the kill with a 5 s expiry: no violation")
	}
}

// A leader that cannot send (a one-way link) is deposed and cannot log
// out; what it sent meanwhile may reach vCenter when the link heals and
// renew the session, so the expiry runs from then, not from the end of its
// leadership.
func TestCheckTimesAnOrphanedSessionFromTheEndOfItsLinkFault(t *testing.T) {
	mk := func(lastMS int) History {
		return orphanedSession(Injection{Step: Step{Kind: LinkOneway, Target: TargetLeader, Direction: DirFromNode, Loss: 100, Duration: 4 * time.Second},
			At: at(6000), Until: at(10000), Node: "n1"}, lastMS)
	}
	// Deposed at 6 s, link healed at 10 s, session gone at 18 s: 12 s
	// after the deposition, 8 s after the heal.
	if r := Check(mk(18000), Bounds{SessionExpiry: 10 * time.Second}); !r.OK() {
		t.Fatalf("a session gone 8 s after its node's link healed, expiry 10 s: %v", r.Violations)
	}
	if r := Check(mk(18000), Bounds{SessionExpiry: 7 * time.Second}); r.OK() {
		t.Fatal("a session alive 8 s after its node's link healed, expiry 7 s: no violation")
	}
}

// orphanedSession is the good history with fault on n1, which leads
// until the fault strikes; n3 leads from then on, and n1's session s1
// lives until lastMS.
func orphanedSession(fault Injection, lastMS int) History {
	h := good()
	h.Injections = append(h.Injections, fault)
	from := int(fault.At.Sub(t0) / time.Millisecond)
	for i := range h.Samples {
		ms := int(h.Samples[i].At.Sub(t0) / time.Millisecond)
		if ms > from {
			sess := []string{"s3@n3"}
			if ms <= lastMS {
				sess = append(sess, "s1@n1")
			}
			h.Samples[i] = sample(ms, "n3", h.Samples[i].Nodes[0].Index, h.Samples[i].Nodes[0].Digest, sess...)
		}
	}
	return h
}

// A call that a cut-off leader sent before it was deposed may reach vCenter
// when the partition heals: counted, not a violation.
func TestCheckCountsLateCallsOfAPartitionedNode(t *testing.T) {
	h := good()
	h.Injections = append(h.Injections, Injection{Step: Step{Kind: NodePartition, Target: TargetLeader, Duration: 2 * time.Second},
		At: at(10000), Until: at(12000), Node: "n2"})
	h.Events = append(h.Events, Event{At: at(12100), Node: "n2", What: "vc-call", Detail: "ReconfigVM_Task vm-a"})
	r := Check(h, Bounds{})
	if !r.OK() || r.LateCalls != 1 {
		t.Fatalf("late calls %d, violations %v", r.LateCalls, r.Violations)
	}
}

// A switch with no attack before it is a false switch: counted and a
// violation. A manual one is neither.
func TestCheckCountsUnprovokedSwitches(t *testing.T) {
	h := good()
	h.Switches = append(h.Switches, fsm.SwitchRecord{Generation: 5, From: "b", To: "a", Reason: fsm.ReasonDoS, StartedAt: ns(19500), Done: true})
	h.Gaps = append(h.Gaps, Gap{Start: at(19400), End: at(19700), Lost: 60})
	r := Check(h, Bounds{MaxOutage: 5 * time.Second})
	if r.Unprovoked != 1 || r.UnattributedGaps != 1 || !hasViolation(r, InvFalseSwitch) {
		t.Fatalf("unprovoked %d, unattributed gaps %d, violations %v", r.Unprovoked, r.UnattributedGaps, r.Violations)
	}
	h.Switches[len(h.Switches)-1].Reason = fsm.ReasonManual
	if r := Check(h, Bounds{MaxOutage: 5 * time.Second}); r.Unprovoked != 0 || !r.OK() {
		t.Fatalf("a manual switch: unprovoked %d, violations %v", r.Unprovoked, r.Violations)
	}
}

func hasViolation(r Report, inv string) bool {
	return slices.ContainsFunc(r.Violations, func(v Violation) bool { return v.Invariant == inv })
}

func TestBoundsJSONIsReadable(t *testing.T) {
	b, err := json.Marshal(Bounds{}.withDefaults())
	if err != nil || !strings.Contains(string(b), `"max_outage":"10s"`) {
		t.Fatalf("bounds as JSON: %s, %v", b, err)
	}
}

func TestSummaryAddsReports(t *testing.T) {
	s := NewSummary(t0, 1, 20*time.Second, Bounds{})
	good := Check(good(), Bounds{})
	h := good
	s.Add(good)
	bad := h
	bad.Seed = 2
	bad.Violations = []Violation{{Invariant: InvOutage}}
	s.Add(bad)
	s.Add(Report{Seed: 3, Faults: map[Kind]int{LinkLoss: 2, LinkOneway: 1}, Elections: 2, ElectionsExplained: 3, TermsAdvanced: 4})
	if s.Schedules != 3 || s.Attacks != 4 || s.ViolationCount() != 1 || !slices.Equal(s.FailingSeeds, []int64{2}) {
		t.Fatalf("summary %+v", s)
	}
	var b strings.Builder
	s.WriteTable(&b)
	for _, want := range []string{"schedules run\t3", "invariant violations\t1", "outage\t1", "failing seeds\t[2]", "node-stop\t2",
		"faults injected: link-loss\t2", "faults injected: link-oneway\t1", "elections (new leader terms seen)\t2 (3 explained by faults on the leader; terms advanced 4)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

// newLeader makes every sample from ms on show leader in term.
func newLeader(h *History, ms int, leader string, term uint64) {
	for i := range h.Samples {
		if !h.Samples[i].At.Before(at(ms)) {
			for j := range h.Samples[i].Nodes {
				n := &h.Samples[i].Nodes[j]
				n.Leader, n.Term, n.State = leader, term, "follower"
				if n.Node == leader {
					n.State = "leader"
				}
			}
			h.Samples[i].Sessions = nil
		}
	}
}

func TestCheckCountsElections(t *testing.T) {
	oneway := func(target string) Injection {
		return Injection{Step: Step{Kind: LinkOneway, Target: target, Loss: 100, Direction: DirFromNode, Duration: 2 * time.Second},
			At: at(9500), Until: at(11500), Node: "n1"}
	}
	cases := []struct {
		name                      string
		mod                       func(h *History)
		elections, explained, adv int
		ok                        bool
	}{
		{"none", func(*History) {}, 0, 0, 0, true},
		{"one after a one-way partition of the leader", func(h *History) {
			h.Injections = append(h.Injections, oneway(TargetLeader))
			newLeader(h, 10000, "n3", 3)
		}, 1, 1, 1, true},
		{"a failed candidacy first: terms advance by two, one election", func(h *History) {
			h.Injections = append(h.Injections, oneway(TargetLeader))
			newLeader(h, 10000, "", 3)
			newLeader(h, 11000, "n3", 4)
		}, 1, 1, 2, true},
		{"two after one fault on the leader", func(h *History) {
			h.Injections = append(h.Injections, oneway(TargetLeader))
			newLeader(h, 10000, "n3", 3)
			newLeader(h, 13000, "n2", 4)
		}, 2, 1, 2, false},
		{"one after a fault on a follower", func(h *History) {
			h.Injections = append(h.Injections, oneway(TargetFollower))
			newLeader(h, 10000, "n3", 3)
		}, 1, 0, 1, false},
		{"a fault on the leader that was not carried out explains none", func(h *History) {
			in := oneway(TargetLeader)
			in.Err = "nft: failed"
			h.Injections = append(h.Injections, in)
			newLeader(h, 10000, "n3", 3)
		}, 1, 0, 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := good()
			c.mod(&h)
			r := Check(h, Bounds{SessionExpiry: time.Minute})
			if r.Elections != c.elections || r.ElectionsExplained != c.explained || r.TermsAdvanced != uint64(c.adv) {
				t.Fatalf("elections %d (explained %d, terms advanced %d), want %d (%d, %d)",
					r.Elections, r.ElectionsExplained, r.TermsAdvanced, c.elections, c.explained, c.adv)
			}
			bad := slices.ContainsFunc(r.Violations, func(v Violation) bool { return v.Invariant == InvElections })
			if bad == c.ok {
				t.Fatalf("excess-elections violation %v, want %v: %v", bad, !c.ok, r.Violations)
			}
		})
	}
}

// A degraded link is no excuse for a switch: one during a lossy link with
// no attack before it is a false switch.
func TestCheckLinkFaultsExcuseNoSwitch(t *testing.T) {
	h := good()
	h.Injections = append(h.Injections, Injection{Step: Step{Kind: LinkLoss, Target: TargetLeader, Loss: 30, Duration: 3 * time.Second},
		At: at(18000), Until: at(19900), Node: "n1"})
	h.Switches = append(h.Switches, fsm.SwitchRecord{Generation: 5, From: "b", To: "a", Reason: fsm.ReasonDoS, StartedAt: ns(19000), Done: true})
	h.Gaps = append(h.Gaps, Gap{Start: at(18900), End: at(19100), Lost: 40})
	r := Check(h, Bounds{MaxOutage: 5 * time.Second})
	if r.Unprovoked != 1 || r.UnattributedGaps != 1 || r.Faults[LinkLoss] != 1 || !hasViolation(r, InvFalseSwitch) {
		t.Fatalf("unprovoked %d, unattributed gaps %d, link-loss faults %d, violations %v", r.Unprovoked, r.UnattributedGaps, r.Faults[LinkLoss], r.Violations)
	}
}

// A call a leader sent over a lossy or one-way link may land late, like
// one sent before a partition: counted, not a violation.
func TestCheckCountsLateCallsOfADegradedLink(t *testing.T) {
	h := good()
	h.Injections = append(h.Injections, Injection{Step: Step{Kind: LinkOneway, Target: TargetLeader, Loss: 100, Direction: DirToNode, Duration: 2 * time.Second},
		At: at(10000), Until: at(12000), Node: "n2"})
	h.Events = append(h.Events, Event{At: at(11100), Node: "n2", What: "vc-call", Detail: "ReconfigVM_Task vm-a"})
	r := Check(h, Bounds{})
	if !r.OK() || r.LateCalls != 1 {
		t.Fatalf("late calls %d, violations %v", r.LateCalls, r.Violations)
	}
}

// goodAddress is a history of a lab with address handover: a and b are
// linked throughout (b the warm standby), a holds the address; a DoS on a
// is answered by b's claim, a's release 2 ms later and a's NIC detach.
func goodAddress() History {
	h := good()
	h.Linked = []string{"a", "b"}
	h.Address, h.Holding = []string{"a", "b"}, []string{"a"}
	h.Injections = h.Injections[:2]
	h.Events = []Event{
		{At: at(1000), Replica: "a", What: "dos"},
		{At: at(1300), Replica: "b", What: "hold"},
		{At: at(1302), Replica: "a", What: "drop"},
		{At: at(1700), Node: "n1", What: "vc-call", Detail: "ReconfigVM_Task vm-a"},
		{At: at(1710), Replica: "a", What: "unlink"},
		{At: at(2500), Replica: "a", What: "revert"},
		{At: at(4000), Replica: "a", What: "link"}, // a warm standby again, without the address
	}
	h.Switches = h.Switches[:1]
	h.Alerts = nil
	h.AgentCommands = []AgentCommand{
		{At: at(500), Replica: "b", Action: "release", Term: 2, Generation: 1},
		{At: at(1300), Replica: "b", Action: "claim", Term: 2, Generation: 2},
		{At: at(1302), Replica: "a", Action: "release", Term: 2, Generation: 2},
		{At: at(3900), Replica: "a", Action: "release", Term: 2, Generation: 3},
	}
	return h
}

// TestCheckAddressHandover: with address handover a linked standby is not
// on the address; a replica that holds it again while linked after its
// release (a rogue one) is, and an agent that obeys an older fence is
// reported.
func TestCheckAddressHandover(t *testing.T) {
	r := Check(goodAddress(), Bounds{})
	if !r.OK() {
		t.Fatalf("violations in a good address-handover history: %v", r.Violations)
	}
	if r.LongestOverlap != 2*time.Millisecond || r.AgentCommands != 4 {
		t.Fatalf("longest overlap %s, agent commands %d; want 2ms (claim to release), 4", r.LongestOverlap, r.AgentCommands)
	}
	for _, c := range []struct {
		name, want string
		mod        func(h *History)
	}{
		{"a rogue replica holds the address again and is never unlinked", InvTwoAttached, func(h *History) {
			h.Events = slices.DeleteFunc(h.Events, func(e Event) bool { return e.Replica == "a" && e.What == "unlink" })
			h.Events = append(h.Events, Event{At: at(1400), Replica: "a", What: "hold"})
			slices.SortStableFunc(h.Events, func(a, b Event) int { return a.At.Compare(b.At) })
		}},
		{"the standby was never released", InvTwoAttached, func(h *History) {
			h.Holding = []string{"a", "b"}
			h.Events = slices.DeleteFunc(h.Events, func(e Event) bool { return e.What == "drop" || e.What == "unlink" })
		}},
		{"an agent obeys an older term", InvStaleCommand, func(h *History) {
			h.AgentCommands = append(h.AgentCommands, AgentCommand{At: at(5000), Replica: "a", Action: "claim", Term: 1, Generation: 9})
		}},
		{"an agent obeys an older generation", InvStaleCommand, func(h *History) {
			h.AgentCommands = append(h.AgentCommands, AgentCommand{At: at(5000), Replica: "b", Action: "release", Term: 2, Generation: 1})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := goodAddress()
			c.mod(&h)
			r := Check(h, Bounds{})
			if !slices.ContainsFunc(r.Violations, func(v Violation) bool { return v.Invariant == c.want }) {
				t.Fatalf("no %s violation; got %v", c.want, r.Violations)
			}
		})
	}
	// The same events without address handover: the linked standby is on
	// the address, and the overlap lasts until a's unlink.
	h := goodAddress()
	h.Address, h.Holding = nil, nil
	if r := Check(h, Bounds{MaxOverlap: time.Second}); r.OK() {
		t.Fatal("two linked NIC-handover replicas for 1.7 s passed a 1 s bound")
	}
}
