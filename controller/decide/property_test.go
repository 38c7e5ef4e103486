package decide_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ars-project/ars/controller/decide"
	"github.com/ars-project/ars/fsm"
)

// eventsFor is every event kind on every replica of s, plus manual switches
// without a target.
func eventsFor(s fsm.Service) []decide.Event {
	evs := []decide.Event{decide.ManualSwitch{Service: svcName}}
	for i, r := range s.Replicas {
		id := fmt.Sprintf("e%d", i)
		evs = append(evs,
			exploit(id, r.Name),
			dosAlert(id, r.Name),
			verdict(r.Name),
			decide.DoSVerdict{Service: svcName, Replica: r.Name, Quorum: true, Confirmations: 2},
			// Answered later than any switch of these walks: the replica
			// served, so the undamped path is taken.
			decide.DoSVerdict{Service: svcName, Replica: r.Name, Quorum: true, Confirmations: 2, AnsweredAt: at(24 * time.Hour)},
			manual(r.Name),
		)
	}
	return evs
}

// capVariants are driver capability maps to try on a state: none; the
// standby unavailable; every replica without restore; the standby
// unavailable and the first suspended replica without restore.
func capVariants(s fsm.Service) []map[string]decide.Capabilities {
	all := map[string]decide.Capabilities{}
	for _, r := range s.Replicas {
		all[r.Name] = decide.Capabilities{NoRestore: true}
	}
	out := []map[string]decide.Capabilities{nil, all}
	if sb, ok := s.Standby(); ok {
		out = append(out, map[string]decide.Capabilities{sb.Name: {Unavailable: true}})
		mixed := map[string]decide.Capabilities{sb.Name: {Unavailable: true}}
		for _, r := range s.Replicas {
			if r.Role == fsm.RoleSuspended {
				mixed[r.Name] = decide.Capabilities{NoRestore: true}
				break
			}
		}
		out = append(out, mixed)
	}
	return out
}

// TestEveryEventOnEveryState decides every event, under several capability
// maps and clock readings, on every state the scenarios pass through, and
// checks each decision (commands accepted by the FSM, never stale when
// generated from the current state, docs/design.md §4.4, at most one command).
func TestEveryEventOnEveryState(t *testing.T) {
	n := 0
	for _, sc := range scenarios() {
		_, states := runScenario(t, sc)
		for _, v := range states {
			s := v.lab.svc()
			for _, caps := range capVariants(s) {
				l := v.lab.clone()
				l.caps = caps
				for _, e := range eventsFor(s) {
					for _, now := range []time.Time{v.now, v.now.Add(time.Hour)} {
						dec, err := decide.Decide(l.state(), e, now)
						checkDecision(t, l, dec, err, now)
						n++
					}
				}
			}
		}
	}
	t.Logf("%d decisions checked", n)
}

// TestRandomWalk drives services through long random sequences of events and
// reconciler/operator operations, applying every decision, and checks every
// decision on the way. It also checks that an exploit on the active replica
// always switches when any replica is eligible, and that a replica of the
// attacked impl is chosen only when no other impl is eligible (rotation
// "diverse").
func TestRandomWalk(t *testing.T) {
	specs := []fsm.ServiceSpec{
		spec(paperReplicas()),
		spec(fiveReplicas(), maxSwitches(3, 30*time.Second)),
		spec(implPairs(), roundRobin),
		spec(fiveReplicas(), quorum, dwell(500*time.Millisecond)),
	}
	steps := 1500
	if testing.Short() {
		steps = 300
	}
	for si, sp := range specs {
		t.Run(fmt.Sprint(si), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(si)+1, 42))
			l := newLab(t, sp)
			now := at(0)
			counts := map[decide.Outcome]int{}
			for i := range steps {
				now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
				s := l.svc()
				r := s.Replicas[rng.IntN(len(s.Replicas))]
				switch k := rng.IntN(10); {
				case k < 6:
					l.caps = nil
					if rng.IntN(4) == 0 {
						l.caps = capVariants(s)[rng.IntN(len(capVariants(s)))]
					}
					evs := eventsFor(s)
					e := evs[rng.IntN(len(evs))]
					dec, err := decide.Decide(l.state(), e, now)
					next := checkDecision(t, l, dec, err, now)
					counts[dec.Outcome]++
					checkChoice(t, l, e, dec)
					l = next
				case k < 8:
					if s.Intent != nil {
						l.must(fsm.SwitchDone{Service: svcName, Generation: s.Intent.Generation, At: now.UnixNano()})
					}
				default:
					action := fsm.ActionRestored
					switch r.Role {
					case fsm.RoleStandby, fsm.RoleSuspended:
						action = []string{fsm.ActionMaintenance, fsm.ActionQuarantine}[rng.IntN(2)]
					case fsm.RoleMaintenance:
						action = fsm.ActionRelease
					case fsm.RoleActive:
						continue
					}
					l.must(fsm.ReplicaRole{Service: svcName, Replica: r.Name, Action: action, ExpectGeneration: s.Generation})
				}
				if t.Failed() {
					t.Fatalf("step %d", i)
				}
			}
			t.Logf("outcomes: %v", counts)
			if counts[decide.OutcomeSwitch] == 0 {
				t.Errorf("no switch in %d steps", steps)
			}
		})
	}
}

// checkChoice checks the choice rules on a decision about the active
// replica.
func checkChoice(t *testing.T, l *lab, e decide.Event, dec decide.Decision) {
	t.Helper()
	s := l.svc()
	a, _ := s.Active()
	al, ok := e.(decide.Alert)
	if !ok || al.Kind != fsm.KindExploit || al.Replica != a.Name {
		return
	}
	var eligible []string
	for _, r := range s.Replicas {
		if r.Role.Eligible() && r.Clean && !l.caps[r.Name].Unavailable {
			eligible = append(eligible, r.Name)
		}
	}
	if len(eligible) == 0 {
		if dec.Outcome != decide.OutcomeNoEligible {
			t.Fatalf("exploit on active, nothing eligible: outcome %q", dec.Outcome)
		}
		return
	}
	if dec.Outcome != decide.OutcomeSwitch {
		t.Fatalf("exploit on active with %v eligible: outcome %q (%s)", eligible, dec.Outcome, dec.Reason)
	}
	if s.Spec.Policy.Rotation != fsm.RotationDiverse {
		return
	}
	to := dec.Commands[0].(fsm.Switch).To
	ts, _ := s.Spec.Replica(to)
	as, _ := s.Spec.Replica(a.Name)
	if ts.Impl != as.Impl {
		return
	}
	for _, n := range eligible {
		if sp, _ := s.Spec.Replica(n); sp.Impl != as.Impl {
			t.Fatalf("impl-wide: switched from %q to %q (both %s) although %q (%s) is eligible", a.Name, to, as.Impl, n, sp.Impl)
		}
	}
}

// FuzzDecide: arbitrary event fields and clock readings on a few states
// never panic, and every decision passes checkDecision.
func FuzzDecide(f *testing.F) {
	f.Add(uint8(0), uint8(0), "a1", "exploit", int64(0), int64(0), false, uint8(0))
	f.Add(uint8(1), uint8(3), "x", "dos", int64(time.Second), int64(-time.Second), true, uint8(1))
	f.Add(uint8(2), uint8(9), "", "worm", int64(-1), int64(1<<62), false, uint8(2))
	f.Fuzz(func(t *testing.T, kind, replica uint8, id, alertKind string, nowOff, detectedOff int64, quorum bool, stateSel uint8) {
		l := newLab(t, spec(fiveReplicas(), maxSwitches(2, time.Minute)))
		switch stateSel % 4 {
		case 1:
			l.switchTo("lin-unbound", fsm.ReasonDoS, 0)
		case 2:
			l.switchTo("lin-unbound", fsm.ReasonExploit, 0)
			l.done(time.Second)
			l.role("lin-bind", fsm.ActionMaintenance)
		case 3:
			l.caps = map[string]decide.Capabilities{"win-unbound": {Unavailable: true}, "lin-knot": {NoRestore: true}}
		}
		s := l.svc()
		name := "ghost"
		if int(replica) < len(s.Replicas) {
			name = s.Replicas[replica].Name
		}
		var e decide.Event
		switch kind % 3 {
		case 0:
			e = decide.Alert{ID: id, Service: svcName, Replica: name, Kind: alertKind, Source: id}
		case 1:
			var det time.Time
			if detectedOff != 0 {
				det = at(time.Duration(detectedOff))
			}
			var answered time.Time
			if detectedOff%2 != 0 {
				answered = at(time.Duration(detectedOff / 2))
			}
			e = decide.DoSVerdict{Service: svcName, Replica: name, DetectedAt: det, Quorum: quorum, AnsweredAt: answered}
		default:
			e = decide.ManualSwitch{Service: svcName, To: name, Reason: id}
		}
		now := at(time.Duration(nowOff))
		dec, err := decide.Decide(l.state(), e, now)
		if err != nil && dec.Outcome != decide.OutcomeRejected && dec.Outcome != decide.OutcomeNoEligible {
			t.Fatalf("error %v with outcome %q", err, dec.Outcome)
		}
		if now.UnixNano() <= 0 {
			return // rejected as a bad clock; checkDecision wants a usable now
		}
		checkDecision(t, l, dec, err, now)
	})
}
