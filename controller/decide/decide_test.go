package decide_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/controller/decide"
	"github.com/ars-project/ars/fsm"
)

func exploit(id, replica string) decide.Alert {
	return decide.Alert{ID: id, Service: svcName, Replica: replica, Kind: fsm.KindExploit, Source: "apparmor"}
}

func dosAlert(id, replica string) decide.Alert {
	return decide.Alert{ID: id, Service: svcName, Replica: replica, Kind: fsm.KindDoS, Source: "watchdog"}
}

func verdict(replica string) decide.DoSVerdict {
	return decide.DoSVerdict{Service: svcName, Replica: replica, Detection: 250 * time.Millisecond, Confirmations: 1}
}

// servedVerdict is a verdict on a replica whose latest answer since it was
// attached arrived at base+answered.
func servedVerdict(replica string, answered time.Duration) decide.DoSVerdict {
	v := verdict(replica)
	v.AnsweredAt = at(answered)
	return v
}

// active in an event's replica field stands for the active replica after
// the case's setup.
const active = "@active"

func resolveActive(ev decide.Event, s fsm.Service) decide.Event {
	a, _ := s.Active()
	switch e := ev.(type) {
	case decide.DoSVerdict:
		if e.Replica == active {
			e.Replica = a.Name
		}
		return e
	case decide.Alert:
		if e.Replica == active {
			e.Replica = a.Name
		}
		return e
	}
	return ev
}

func manual(to string) decide.ManualSwitch {
	return decide.ManualSwitch{Service: svcName, To: to, Reason: "patch window"}
}

// restoreCycle makes dos switches to the standby at the given times, each
// verified 100ms later and its attacked replica restored right after.
func restoreCycle(times ...time.Duration) func(*lab) {
	return func(l *lab) {
		for _, t := range times {
			s := l.svc()
			a, _ := s.Active()
			sb, _ := s.Standby()
			l.switchTo(sb.Name, fsm.ReasonDoS, t)
			l.done(t + 100*time.Millisecond)
			l.role(a.Name, fsm.ActionRestored)
		}
	}
}

func TestDecide(t *testing.T) {
	type want struct {
		outcome decide.Outcome
		to      string // switch target ("" = no switch)
		reason  string // switch reason
		mode    string
		quar    string // replica quarantined ("" = none)
		err     error  // wrapped sentinel
		retry   time.Duration
		says    []string // substrings of Decision.Reason
	}
	cases := []struct {
		name  string
		spec  fsm.ServiceSpec // zero: paper lab, default policy
		setup func(*lab)
		caps  map[string]decide.Capabilities
		ev    decide.Event
		now   time.Duration
		want  want
	}{
		// ---- exploit alerts
		{
			name: "exploit on active: switch to the standby of another impl, make-before-break",
			ev:   exploit("a1", "win-bind"),
			want: want{outcome: decide.OutcomeSwitch, to: "lin-unbound", reason: fsm.ReasonExploit, mode: fsm.ModeMakeBeforeBreak,
				says: []string{`exploit alert "a1" from "apparmor" on active "win-bind"`, `standby "lin-unbound"`, "another impl than bind9"}},
		},
		{
			name: "exploit mode from policy",
			spec: spec(paperReplicas(), modes(fsm.ModeBreakBeforeMake, fsm.ModeMakeBeforeBreak)),
			ev:   exploit("a1", "win-bind"),
			want: want{outcome: decide.OutcomeSwitch, to: "lin-unbound", reason: fsm.ReasonExploit, mode: fsm.ModeBreakBeforeMake},
		},
		{
			name: "exploit on standby: quarantine it, active untouched",
			ev:   exploit("a1", "lin-unbound"),
			want: want{outcome: decide.OutcomeQuarantine, quar: "lin-unbound", says: []string{`active "win-bind" is untouched`, "new standby"}},
		},
		{
			name: "exploit on suspended: quarantine it",
			ev:   exploit("a1", "win-unbound"),
			want: want{outcome: decide.OutcomeQuarantine, quar: "win-unbound"},
		},
		{
			name:  "exploit on maintenance: quarantine it, or release would launder it",
			setup: func(l *lab) { l.role("lin-bind", fsm.ActionMaintenance) },
			ev:    exploit("a1", "lin-bind"),
			want:  want{outcome: decide.OutcomeQuarantine, quar: "lin-bind"},
		},
		{
			name:  "exploit on quarantined: already handled",
			setup: func(l *lab) { l.switchTo("lin-unbound", fsm.ReasonExploit, 0) },
			ev:    exploit("a2", "win-bind"),
			now:   time.Second,
			want:  want{outcome: decide.OutcomeAlreadyHandled, says: []string{"already quarantined"}},
		},
		{
			name:  "exploit on recovering: already handled",
			setup: func(l *lab) { l.switchTo("lin-unbound", fsm.ReasonDoS, 0) },
			ev:    exploit("a2", "win-bind"),
			now:   time.Second,
			want:  want{outcome: decide.OutcomeAlreadyHandled, says: []string{"already recovering"}},
		},
		{
			name: "exploit is never damped by min dwell",
			setup: func(l *lab) {
				l.switchTo("lin-unbound", fsm.ReasonDoS, 0)
				l.done(100 * time.Millisecond)
			},
			ev:   exploit("a2", "lin-unbound"),
			now:  200 * time.Millisecond,
			want: want{outcome: decide.OutcomeSwitch, to: "lin-bind", reason: fsm.ReasonExploit, mode: fsm.ModeMakeBeforeBreak},
		},
		{
			name:  "exploit is never damped by max switches",
			spec:  spec(paperReplicas(), maxSwitches(2, time.Minute), dwell(time.Millisecond)),
			setup: restoreCycle(0, time.Second),
			ev:    exploit("a3", active),
			now:   2 * time.Second,
			want:  want{outcome: decide.OutcomeSwitch, reason: fsm.ReasonExploit, to: "win-bind"},
		},
		{
			name: "exploit on the target of the open switch: switch again, superseding it",
			setup: func(l *lab) {
				l.switchTo("lin-unbound", fsm.ReasonExploit, 0)
			},
			ev:  exploit("a2", "lin-unbound"),
			now: 300 * time.Millisecond,
			want: want{outcome: decide.OutcomeSwitch, to: "lin-bind", reason: fsm.ReasonExploit,
				says: []string{`supersedes the open switch generation 2 ("win-bind" -> "lin-unbound")`}},
		},
		{
			name: "exploit on active, nothing eligible",
			spec: spec([]fsm.ReplicaSpec{rep("a", "bind9", "linux", "vm"), rep("b", "unbound", "linux", "vm")}),
			setup: func(l *lab) {
				l.role("b", fsm.ActionQuarantine)
			},
			ev:   exploit("a1", "a"),
			want: want{outcome: decide.OutcomeNoEligible, says: []string{`no replica can take over from "a": "b" is quarantined`}},
		},
		{
			name: "exploit on the only replica",
			spec: spec([]fsm.ReplicaSpec{rep("a", "bind9", "linux", "vm")}),
			ev:   exploit("a1", "a"),
			want: want{outcome: decide.OutcomeNoEligible, says: []string{"it is the only replica"}},
		},

		// ---- DoS verdicts and alerts
		{
			name: "dos verdict on active: switch, the default dos_mode",
			ev:   verdict("win-bind"),
			want: want{outcome: decide.OutcomeSwitch, to: "lin-unbound", reason: fsm.ReasonDoS, mode: fsm.DefaultDoSMode,
				says: []string{`dos verdict on active "win-bind" (detection 250ms, confirmed by 1)`}},
		},
		{
			name: "dos mode from policy",
			spec: spec(paperReplicas(), modes(fsm.ModeMakeBeforeBreak, fsm.ModeMakeBeforeBreak)),
			ev:   verdict("win-bind"),
			want: want{outcome: decide.OutcomeSwitch, to: "lin-unbound", reason: fsm.ReasonDoS, mode: fsm.ModeMakeBeforeBreak},
		},
		{
			name: "dos verdict on standby: not active",
			ev:   verdict("lin-unbound"),
			want: want{outcome: decide.OutcomeNotActive, says: []string{`the active is "win-bind"`}},
		},
		{
			name: "dos alert on suspended: not active",
			ev:   dosAlert("d1", "lin-bind"),
			want: want{outcome: decide.OutcomeNotActive},
		},
		{
			name:  "dos verdict on recovering: already handled",
			setup: func(l *lab) { l.switchTo("lin-unbound", fsm.ReasonDoS, 0) },
			ev:    verdict("win-bind"),
			now:   time.Minute,
			want:  want{outcome: decide.OutcomeAlreadyHandled},
		},
		{
			name: "dos verdict without the quorum the probe policy asks for",
			spec: spec(paperReplicas(), quorum),
			ev:   verdict("win-bind"),
			want: want{outcome: decide.OutcomeUnconfirmed, says: []string{`probe.confirm is "quorum"`}},
		},
		{
			name: "dos verdict with quorum",
			spec: spec(paperReplicas(), quorum),
			ev:   decide.DoSVerdict{Service: svcName, Replica: "win-bind", Confirmations: 2, Quorum: true},
			want: want{outcome: decide.OutcomeSwitch, to: "lin-unbound", reason: fsm.ReasonDoS},
		},
		{
			name: "dos alert needs no probe quorum",
			spec: spec(paperReplicas(), quorum),
			ev:   dosAlert("d1", "win-bind"),
			want: want{outcome: decide.OutcomeSwitch, to: "lin-unbound", reason: fsm.ReasonDoS, mode: fsm.DefaultDoSMode},
		},
		{
			name: "dos within min dwell after the verified switch: damped",
			setup: func(l *lab) {
				l.switchTo("lin-unbound", fsm.ReasonExploit, 0)
				l.done(500 * time.Millisecond)
			},
			ev:  verdict("lin-unbound"),
			now: time.Second,
			want: want{outcome: decide.OutcomeDampedDwell, retry: 2500 * time.Millisecond,
				says: []string{`"lin-unbound" has been active for 500ms`, "generation 2, was verified at 2026-03-01T12:00:00.5Z", "min_dwell is 2s"}},
		},
		{
			name: "dos 1ns before min dwell ends: damped",
			setup: func(l *lab) {
				l.switchTo("lin-unbound", fsm.ReasonExploit, 0)
				l.done(500 * time.Millisecond)
			},
			ev:   verdict("lin-unbound"),
			now:  2500*time.Millisecond - 1,
			want: want{outcome: decide.OutcomeDampedDwell, retry: 2500 * time.Millisecond},
		},
		{
			name: "dos when min dwell has passed: switch",
			setup: func(l *lab) {
				l.switchTo("lin-unbound", fsm.ReasonExploit, 0)
				l.done(500 * time.Millisecond)
			},
			ev:  verdict("lin-unbound"),
			now: 2500 * time.Millisecond,
			want: want{outcome: decide.OutcomeSwitch, to: "lin-bind", reason: fsm.ReasonDoS,
				says: []string{`standby "win-unbound" has the attacked impl unbound`}},
		},
		{
			name:  "dos on the target of an open switch: dwell counts from its start",
			setup: func(l *lab) { l.switchTo("lin-unbound", fsm.ReasonDoS, 0) },
			ev:    verdict("lin-unbound"),
			now:   time.Second,
			want:  want{outcome: decide.OutcomeDampedDwell, retry: 2 * time.Second, says: []string{"generation 2, started at"}},
		},
		{
			name:  "dos on the target of a switch still open after min dwell: switch again, superseding",
			setup: func(l *lab) { l.switchTo("lin-unbound", fsm.ReasonDoS, 0) },
			ev:    verdict("lin-unbound"),
			now:   2 * time.Second,
			want:  want{outcome: decide.OutcomeSwitch, to: "lin-bind", says: []string{"supersedes the open switch generation 2"}},
		},
		{
			name: "dos with the leader's clock behind the switch record: damped",
			setup: func(l *lab) {
				l.switchTo("lin-unbound", fsm.ReasonExploit, 10*time.Second)
				l.done(10 * time.Second)
			},
			ev:   verdict("lin-unbound"),
			now:  5 * time.Second,
			want: want{outcome: decide.OutcomeDampedDwell, retry: 12 * time.Second, says: []string{"active for -5s"}},
		},
		{
			name: "dos on an active that answered after its switch, within min dwell: switch",
			setup: func(l *lab) {
				l.switchTo("lin-unbound", fsm.ReasonExploit, 0)
				l.done(500 * time.Millisecond)
			},
			ev:  servedVerdict("lin-unbound", 800*time.Millisecond),
			now: time.Second,
			want: want{outcome: decide.OutcomeSwitch, to: "lin-bind", reason: fsm.ReasonDoS,
				says: []string{`"lin-unbound" answered at 2026-03-01T12:00:00.8Z, after it took over`, "min_dwell does not apply"}},
		},
		{
			name:  "dos on the target of an open switch that answered since: switch again",
			setup: func(l *lab) { l.switchTo("lin-unbound", fsm.ReasonDoS, 0) },
			ev:    servedVerdict("lin-unbound", 300*time.Millisecond),
			now:   time.Second,
			want:  want{outcome: decide.OutcomeSwitch, to: "lin-bind", says: []string{"supersedes the open switch generation 2"}},
		},
		{
			name:  "dos on the target of an open switch whose platform does not answer: switch at once",
			setup: func(l *lab) { l.switchTo("lin-unbound", fsm.ReasonExploit, 0) },
			caps:  map[string]decide.Capabilities{"lin-unbound": {Unavailable: true}},
			ev:    verdict("lin-unbound"),
			now:   300 * time.Millisecond,
			want: want{outcome: decide.OutcomeSwitch, to: "lin-bind", reason: fsm.ReasonDoS,
				says: []string{`the platform of "lin-unbound" does not answer`, "min_dwell does not apply", "supersedes the open switch generation 2"}},
		},
		{
			name:  "a dos alert on an active whose platform does not answer is still damped by min dwell",
			setup: func(l *lab) { l.switchTo("lin-unbound", fsm.ReasonExploit, 0) },
			caps:  map[string]decide.Capabilities{"lin-unbound": {Unavailable: true}},
			ev:    dosAlert("w1", "lin-unbound"),
			now:   300 * time.Millisecond,
			want:  want{outcome: decide.OutcomeDampedDwell, retry: 2 * time.Second},
		},
		{
			name:  "max_switches still damps an unavailable active when the switch stays within its impl",
			spec:  spec(implPairs(), roundRobin, maxSwitches(2, time.Minute), dwell(time.Hour)),
			setup: restoreCycle(0, 10*time.Second),
			caps:  map[string]decide.Capabilities{"unbound-a": {Unavailable: true}},
			ev:    verdict(active),
			now:   20 * time.Second,
			want: want{outcome: decide.OutcomeDampedRate, retry: time.Minute,
				says: []string{`the platform of "unbound-a" does not answer`, "max_switches is 2"}},
		},
		{
			name: "dos on an active whose latest answer predates its switch: damped by min dwell",
			setup: func(l *lab) {
				l.switchTo("lin-unbound", fsm.ReasonExploit, time.Second)
				l.done(1500 * time.Millisecond)
			},
			ev:   servedVerdict("lin-unbound", 999*time.Millisecond),
			now:  2 * time.Second,
			want: want{outcome: decide.OutcomeDampedDwell, retry: 3500 * time.Millisecond},
		},
		{
			name: "dos on the initial active that answered: switch",
			ev:   servedVerdict("win-bind", -time.Second),
			want: want{outcome: decide.OutcomeSwitch, to: "lin-unbound", reason: fsm.ReasonDoS},
		},
		{
			name:  "max_switches does not hold a served active while another impl can take over",
			spec:  spec(paperReplicas(), maxSwitches(3, time.Minute), dwell(time.Millisecond)),
			setup: restoreCycle(0, 10*time.Second, 20*time.Second),
			ev:    servedVerdict(active, 25*time.Second),
			now:   30 * time.Second,
			want:  want{outcome: decide.OutcomeSwitch, reason: fsm.ReasonDoS, to: "lin-unbound", says: []string{"after it took over"}},
		},
		{
			name:  "a dos alert on a served active is still damped by max_switches",
			spec:  spec(paperReplicas(), maxSwitches(3, time.Minute), dwell(time.Millisecond)),
			setup: restoreCycle(0, 10*time.Second, 20*time.Second),
			ev:    dosAlert("w9", active),
			now:   30 * time.Second,
			want:  want{outcome: decide.OutcomeDampedRate, retry: time.Minute},
		},
		{
			name:  "max_switches still damps a served active when the switch stays within its impl",
			spec:  spec(implPairs(), roundRobin, maxSwitches(2, time.Minute), dwell(time.Millisecond)),
			setup: restoreCycle(0, 10*time.Second),
			ev:    servedVerdict(active, 15*time.Second),
			now:   20 * time.Second,
			want: want{outcome: decide.OutcomeDampedRate, retry: time.Minute,
				says: []string{`"unbound-a" answered`, "max_switches is 2"}},
		},
		{
			name:  "dos after max_switches in the window: damped",
			spec:  spec(paperReplicas(), maxSwitches(3, time.Minute), dwell(time.Millisecond)),
			setup: restoreCycle(0, 10*time.Second, 20*time.Second),
			ev:    verdict(active),
			now:   30 * time.Second,
			want: want{outcome: decide.OutcomeDampedRate, retry: time.Minute,
				says: []string{"3 switches started in the last 1m0s", "max_switches is 3"}},
		},
		{
			name:  "dos when the oldest switch has left the window: switch",
			spec:  spec(paperReplicas(), maxSwitches(3, time.Minute), dwell(time.Millisecond)),
			setup: restoreCycle(0, 10*time.Second, 20*time.Second),
			ev:    verdict(active),
			now:   time.Minute,
			want:  want{outcome: decide.OutcomeSwitch, reason: fsm.ReasonDoS, to: "lin-unbound"},
		},
		{
			name:  "rate counts every reason; retry when enough leave the window",
			spec:  spec(paperReplicas(), maxSwitches(2, time.Minute), dwell(time.Millisecond)),
			setup: restoreCycle(0, 10*time.Second, 20*time.Second),
			ev:    verdict(active),
			now:   30 * time.Second,
			want:  want{outcome: decide.OutcomeDampedRate, retry: 70 * time.Second, says: []string{"3 switches"}},
		},
		{
			name: "verdict reached before the replica took over: stale",
			setup: func(l *lab) {
				l.switchTo("lin-unbound", fsm.ReasonExploit, 10*time.Second)
				l.done(10100 * time.Millisecond)
			},
			ev:   decide.DoSVerdict{Service: svcName, Replica: "lin-unbound", DetectedAt: at(9 * time.Second)},
			now:  20 * time.Second,
			want: want{outcome: decide.OutcomeStale, says: []string{"before \"lin-unbound\" took over"}},
		},
		{
			name: "verdict reached after the replica took over: switch",
			setup: func(l *lab) {
				l.switchTo("lin-unbound", fsm.ReasonExploit, 10*time.Second)
				l.done(10100 * time.Millisecond)
			},
			ev:   decide.DoSVerdict{Service: svcName, Replica: "lin-unbound", DetectedAt: at(19 * time.Second)},
			now:  20 * time.Second,
			want: want{outcome: decide.OutcomeSwitch, to: "lin-bind"},
		},
		{
			name: "dos on active, nothing eligible",
			spec: spec([]fsm.ReplicaSpec{rep("a", "bind9", "linux", "vm"), rep("b", "unbound", "linux", "vm")}),
			setup: func(l *lab) {
				l.role("b", fsm.ActionMaintenance)
			},
			ev:   verdict("a"),
			want: want{outcome: decide.OutcomeNoEligible, says: []string{`"b" is maintenance`}},
		},

		// ---- choice of the replica to switch to
		{
			name: "standby of the attacked impl is passed over for another impl",
			spec: spec(implPairs()),
			setup: func(l *lab) {
				// Make bind-b the standby: it is only picked while no unbound is eligible.
				l.role("unbound-b", fsm.ActionMaintenance)
				l.role("unbound-a", fsm.ActionMaintenance)
				l.role("unbound-a", fsm.ActionRelease)
				l.role("unbound-b", fsm.ActionRelease)
			},
			ev: verdict("bind-a"),
			want: want{outcome: decide.OutcomeSwitch, to: "unbound-b",
				says: []string{`suspended "unbound-b" (unbound/linux/container), first by diversity from "bind-a"`, `standby "bind-b" has the attacked impl bind9`}},
		},
		{
			name: "unavailable standby is skipped",
			caps: map[string]decide.Capabilities{"lin-unbound": {Unavailable: true}},
			ev:   verdict("win-bind"),
			want: want{outcome: decide.OutcomeSwitch, to: "win-unbound", says: []string{`standby "lin-unbound" is unavailable`}},
		},
		{
			name: "same impl only when no other impl is available",
			caps: map[string]decide.Capabilities{"lin-unbound": {Unavailable: true}, "win-unbound": {Unavailable: true}},
			ev:   exploit("a1", "win-bind"),
			want: want{outcome: decide.OutcomeSwitch, to: "lin-bind", says: []string{"same impl bind9", "no replica of another impl is eligible"}},
		},
		{
			name: "everything unavailable: no eligible replica",
			caps: map[string]decide.Capabilities{"lin-unbound": {Unavailable: true}, "win-unbound": {Unavailable: true}, "lin-bind": {Unavailable: true}},
			ev:   verdict("win-bind"),
			want: want{outcome: decide.OutcomeNoEligible, says: []string{`"lin-bind" is unavailable`}},
		},
		{
			name: "a restorable replica is preferred over one that cannot be restored",
			caps: map[string]decide.Capabilities{"lin-unbound": {NoRestore: true}},
			ev:   exploit("a1", "win-bind"),
			want: want{outcome: decide.OutcomeSwitch, to: "win-unbound", says: []string{`standby "lin-unbound" cannot be restored`}},
		},
		{
			name: "restorability never outranks impl diversity",
			caps: map[string]decide.Capabilities{"lin-unbound": {NoRestore: true}, "win-unbound": {NoRestore: true}},
			ev:   exploit("a1", "win-bind"),
			want: want{outcome: decide.OutcomeSwitch, to: "lin-unbound", says: []string{"cannot restore it"}},
		},
		{
			name: "a standby that does not answer its health probe is passed over",
			caps: map[string]decide.Capabilities{"lin-unbound": {NotAnswering: true}},
			ev:   verdict("win-bind"),
			want: want{outcome: decide.OutcomeSwitch, to: "win-unbound",
				says: []string{`suspended "win-unbound"`, `standby "lin-unbound" does not answer its health probe: a switch to it would be an outage`}},
		},
		{
			name: "answering outranks restorability",
			caps: map[string]decide.Capabilities{"lin-unbound": {NotAnswering: true}, "win-unbound": {NoRestore: true}},
			ev:   exploit("a1", "win-bind"),
			want: want{outcome: decide.OutcomeSwitch, to: "win-unbound",
				says: []string{`standby "lin-unbound" does not answer its health probe`, "cannot restore it"}},
		},
		{
			name: "answering outranks running: a stopped replica that can start beats a wedged standby",
			caps: map[string]decide.Capabilities{"lin-unbound": {NotAnswering: true}, "win-unbound": {Stopped: true}},
			ev:   verdict("win-bind"),
			want: want{outcome: decide.OutcomeSwitch, to: "win-unbound", says: []string{`stopped "win-unbound"`, "does not answer its health probe"}},
		},
		{
			name: "not answering never outranks impl diversity",
			caps: map[string]decide.Capabilities{"lin-unbound": {NotAnswering: true}, "win-unbound": {NotAnswering: true}},
			ev:   verdict("win-bind"),
			want: want{outcome: decide.OutcomeSwitch, to: "lin-unbound",
				says: []string{`standby "lin-unbound"`, "note: it does not answer its health probe, nor does any equally diverse candidate: the least bad is chosen"}},
		},
		{
			name: "every candidate not answering: the standby is still chosen, and the reason says so",
			caps: map[string]decide.Capabilities{"lin-unbound": {NotAnswering: true}, "win-unbound": {NotAnswering: true}, "lin-bind": {NotAnswering: true}},
			ev:   exploit("a1", "win-bind"),
			want: want{outcome: decide.OutcomeSwitch, to: "lin-unbound", says: []string{"the least bad is chosen"}},
		},
		{
			name: "round-robin: a standby that does not answer loses to the next in the ring",
			spec: spec(implPairs(), roundRobin),
			caps: map[string]decide.Capabilities{"bind-b": {NotAnswering: true}},
			ev:   verdict("bind-a"),
			want: want{outcome: decide.OutcomeSwitch, to: "unbound-a", says: []string{`standby "bind-b" does not answer its health probe`}},
		},
		{
			name: "round-robin: the standby, whatever its impl",
			spec: spec(implPairs(), roundRobin),
			ev:   verdict("bind-a"),
			want: want{outcome: decide.OutcomeSwitch, to: "bind-b", says: []string{"round-robin ignores impl"}},
		},
		{
			name: "round-robin: spec order after the active when the standby is unavailable",
			spec: spec(implPairs(), roundRobin),
			caps: map[string]decide.Capabilities{"bind-b": {Unavailable: true}},
			ev:   verdict("bind-a"),
			want: want{outcome: decide.OutcomeSwitch, to: "unbound-a", says: []string{`next in round-robin order after "bind-a"`}},
		},

		// ---- manual switches
		{
			name: "manual to a named suspended replica",
			ev:   manual("lin-bind"),
			want: want{outcome: decide.OutcomeSwitch, to: "lin-bind", reason: fsm.ReasonManual, mode: fsm.ModeMakeBeforeBreak,
				says: []string{`"patch window"`, "as requested", "same impl bind9"}},
		},
		{
			name: "manual without target: best by diversity",
			ev:   manual(""),
			want: want{outcome: decide.OutcomeSwitch, to: "lin-unbound", reason: fsm.ReasonManual, mode: fsm.ModeMakeBeforeBreak},
		},
		{
			name: "manual is not damped",
			setup: func(l *lab) {
				l.switchTo("lin-unbound", fsm.ReasonDoS, 0)
				l.done(100 * time.Millisecond)
			},
			ev:   manual("win-unbound"),
			now:  200 * time.Millisecond,
			want: want{outcome: decide.OutcomeSwitch, to: "win-unbound", reason: fsm.ReasonManual},
		},
		{
			name: "manual to the active replica",
			ev:   manual("win-bind"),
			want: want{outcome: decide.OutcomeRejected, err: fsm.ErrConflict, says: []string{"already active"}},
		},
		{
			name:  "manual to a quarantined replica",
			setup: func(l *lab) { l.role("lin-bind", fsm.ActionQuarantine) },
			ev:    manual("lin-bind"),
			want:  want{outcome: decide.OutcomeRejected, err: fsm.ErrConflict, says: []string{"quarantined", "restored first"}},
		},
		{
			name:  "manual to a replica in maintenance",
			setup: func(l *lab) { l.role("lin-bind", fsm.ActionMaintenance) },
			ev:    manual("lin-bind"),
			want:  want{outcome: decide.OutcomeRejected, err: fsm.ErrConflict, says: []string{"release it first"}},
		},
		{
			name: "manual to an unavailable replica",
			caps: map[string]decide.Capabilities{"lin-bind": {Unavailable: true}},
			ev:   manual("lin-bind"),
			want: want{outcome: decide.OutcomeRejected, err: fsm.ErrConflict, says: []string{"unavailable"}},
		},
		{
			name: "manual to an unknown replica",
			ev:   manual("nope"),
			want: want{outcome: decide.OutcomeRejected, err: fsm.ErrUnknownReplica, says: []string{`"nope"`}},
		},
		{
			name: "manual without target, nothing eligible",
			spec: spec([]fsm.ReplicaSpec{rep("a", "bind9", "linux", "vm")}),
			ev:   decide.ManualSwitch{Service: svcName},
			want: want{outcome: decide.OutcomeNoEligible, err: fsm.ErrConflict, says: []string{"only replica"}},
		},

		// ---- bad input
		{
			name: "event for another service",
			ev:   decide.Alert{ID: "x", Service: "other", Replica: "win-bind", Kind: fsm.KindExploit},
			want: want{outcome: decide.OutcomeRejected, err: fsm.ErrInvalid, says: []string{`event for service "other"`}},
		},
		{
			name: "unknown replica",
			ev:   verdict("ghost"),
			want: want{outcome: decide.OutcomeRejected, err: fsm.ErrUnknownReplica},
		},
		{
			name: "replica missing",
			ev:   verdict(""),
			want: want{outcome: decide.OutcomeRejected, err: fsm.ErrInvalid, says: []string{"replica required"}},
		},
		{
			name: "alert of unknown kind",
			ev:   decide.Alert{ID: "x", Service: svcName, Replica: "win-bind", Kind: "worm"},
			want: want{outcome: decide.OutcomeRejected, err: fsm.ErrInvalid, says: []string{`kind "worm"`}},
		},
		{
			name: "alert without id",
			ev:   decide.Alert{Service: svcName, Replica: "win-bind", Kind: fsm.KindExploit},
			want: want{outcome: decide.OutcomeRejected, err: fsm.ErrInvalid},
		},
		{
			name: "nil event",
			ev:   nil,
			want: want{outcome: decide.OutcomeRejected, err: fsm.ErrInvalid},
		},
		{
			name: "nil pointer event",
			ev:   (*decide.Alert)(nil),
			want: want{outcome: decide.OutcomeRejected, err: fsm.ErrInvalid},
		},
		{
			name: "event type from outside the package",
			ev:   struct{ decide.Alert }{exploit("a1", "win-bind")},
			want: want{outcome: decide.OutcomeRejected, err: fsm.ErrInvalid, says: []string{"unknown event type"}},
		},
		{
			name: "pointer events are accepted",
			ev:   &decide.DoSVerdict{Service: svcName, Replica: "win-bind"},
			want: want{outcome: decide.OutcomeSwitch, to: "lin-unbound"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.spec
			if s.Name == "" {
				s = spec(paperReplicas())
			}
			l := newLab(t, s)
			if c.setup != nil {
				c.setup(l)
			}
			l.caps = c.caps
			now := at(c.now)
			st := l.state()
			dec, err := decide.Decide(st, resolveActive(c.ev, st.Service), now)
			t.Logf("%s: %s", dec.Outcome, dec.Reason)
			checkDecision(t, l, dec, err, now)
			w := c.want
			if dec.Outcome != w.outcome {
				t.Errorf("outcome %q, want %q (reason: %s)", dec.Outcome, w.outcome, dec.Reason)
			}
			if w.err == nil && err != nil {
				t.Fatalf("error %v", err)
			}
			if w.err != nil && !errors.Is(err, w.err) {
				t.Fatalf("error %v, want %v", err, w.err)
			}
			if w.err != nil && dec.Reason != err.Error() && w.outcome == decide.OutcomeRejected {
				t.Errorf("rejected decision reason %q, error %q", dec.Reason, err)
			}
			for _, p := range w.says {
				if !strings.Contains(dec.Reason, p) {
					t.Errorf("reason %q does not say %q", dec.Reason, p)
				}
			}
			if w.retry != 0 && !dec.RetryAt.Equal(at(w.retry)) {
				t.Errorf("RetryAt %v, want %v", dec.RetryAt, at(w.retry))
			}
			var sw *fsm.Switch
			var rr *fsm.ReplicaRole
			for _, cmd := range dec.Commands {
				switch cmd := cmd.(type) {
				case fsm.Switch:
					sw = &cmd
				case fsm.ReplicaRole:
					rr = &cmd
				}
			}
			switch {
			case w.to == "" && sw != nil:
				t.Errorf("unexpected switch %+v", *sw)
			case w.to != "" && sw == nil:
				t.Errorf("no switch, want one to %q", w.to)
			case sw != nil:
				if sw.To != w.to {
					t.Errorf("switch to %q, want %q", sw.To, w.to)
				}
				if w.reason != "" && sw.Reason != w.reason {
					t.Errorf("switch reason %q, want %q", sw.Reason, w.reason)
				}
				if w.mode != "" && sw.Mode != w.mode {
					t.Errorf("switch mode %q, want %q", sw.Mode, w.mode)
				}
				if sw.NextStandby != "" {
					t.Errorf("next standby %q: decide leaves it to the FSM", sw.NextStandby)
				}
			}
			switch {
			case w.quar == "" && rr != nil:
				t.Errorf("unexpected role command %+v", *rr)
			case w.quar != "" && (rr == nil || rr.Replica != w.quar || rr.Action != fsm.ActionQuarantine):
				t.Errorf("role command %+v, want quarantine of %q", rr, w.quar)
			}
		})
	}
}

// TestExploitOnStandbyPicksNewStandby: after quarantining the standby the
// FSM has a new one and the active is unchanged.
func TestExploitOnStandbyPicksNewStandby(t *testing.T) {
	l := newLab(t, spec(paperReplicas()))
	dec, err := decide.Decide(l.state(), exploit("a1", "lin-unbound"), at(0))
	after := checkDecision(t, l, dec, err, at(0))
	if got, want := roles(after.svc()), "win-bind=active win-unbound=standby lin-bind=suspended lin-unbound=quarantined"; got != want {
		t.Fatalf("roles %s, want %s", got, want)
	}
}

// TestAlertBurstOneSwitch: 20 alerts for the same exploit give one switch,
// whether they are decided one after the other on the fresh state (the 19
// later ones are "already handled") or all on the same state before any is
// committed (the FSM refuses the 19 later commands as stale).
func TestAlertBurstOneSwitch(t *testing.T) {
	t.Run("serialised", func(t *testing.T) {
		l := newLab(t, spec(paperReplicas()))
		switches := 0
		for i := range 20 {
			now := at(time.Duration(i) * 10 * time.Millisecond)
			dec, err := decide.Decide(l.state(), exploit("burst-"+string(rune('a'+i)), "win-bind"), now)
			l = checkDecision(t, l, dec, err, now)
			if dec.Outcome == decide.OutcomeSwitch {
				switches++
			} else if i > 0 && dec.Outcome != decide.OutcomeAlreadyHandled {
				t.Fatalf("alert %d: outcome %q", i, dec.Outcome)
			}
		}
		if switches != 1 {
			t.Fatalf("%d switches, want 1", switches)
		}
	})
	t.Run("same state", func(t *testing.T) {
		l := newLab(t, spec(paperReplicas()))
		st := l.state()
		var cmds []fsm.Command
		for i := range 20 {
			dec, err := decide.Decide(st, exploit("burst-"+string(rune('a'+i)), "win-bind"), at(0))
			if err != nil || dec.Outcome != decide.OutcomeSwitch {
				t.Fatalf("alert %d: %v %q", i, err, dec.Outcome)
			}
			cmds = append(cmds, dec.Commands...)
		}
		ok := 0
		for _, c := range cmds {
			switch err := l.apply(c); {
			case err == nil:
				ok++
			case errors.Is(err, fsm.ErrStaleGeneration):
			default:
				t.Fatalf("apply: %v", err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d switches applied, want 1", ok)
		}
	})
}

// TestDecideIsPure: the same input gives the same decision, and the input
// state is not changed.
func TestDecideIsPure(t *testing.T) {
	l := newLab(t, spec(fiveReplicas()))
	l.switchTo("lin-unbound", fsm.ReasonDoS, 0)
	l.caps = map[string]decide.Capabilities{"win-unbound": {NoRestore: true}, "lin-knot": {Unavailable: true}}
	st := l.state()
	before, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	events := []decide.Event{verdict("lin-unbound"), exploit("a", "lin-unbound"), exploit("b", "lin-bind"), manual(""), manual("win-unbound")}
	for _, ev := range events {
		for _, now := range []time.Time{at(time.Second), at(time.Hour)} {
			d1, err1 := decide.Decide(st, ev, now)
			d2, err2 := decide.Decide(st, ev, now)
			if !reflect.DeepEqual(d1, d2) || !reflect.DeepEqual(err1, err2) {
				t.Fatalf("%s: two calls differ:\n%+v %v\n%+v %v", ev, d1, err1, d2, err2)
			}
		}
	}
	after, _ := json.Marshal(st)
	if string(before) != string(after) {
		t.Fatalf("Decide changed its input:\n%s\n%s", before, after)
	}
}

func TestBadClockAndState(t *testing.T) {
	l := newLab(t, spec(paperReplicas()))
	for _, now := range []time.Time{{}, time.Unix(0, 0), time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if _, err := decide.Decide(l.state(), verdict("win-bind"), now); !errors.Is(err, fsm.ErrInvalid) {
			t.Errorf("now %v: err %v, want ErrInvalid", now, err)
		}
	}
	if _, err := decide.Decide(decide.State{}, verdict("win-bind"), at(0)); !errors.Is(err, fsm.ErrInvalid) {
		t.Errorf("empty state: err %v", err)
	}
	st := l.state()
	st.Service.Generation = 0
	if _, err := decide.Decide(st, verdict("win-bind"), at(0)); !errors.Is(err, fsm.ErrInvalid) {
		t.Errorf("generation 0: err %v", err)
	}
	st = l.state()
	st.Service.Replicas[0].Role = fsm.RoleSuspended
	if _, err := decide.Decide(st, verdict("win-bind"), at(0)); !errors.Is(err, fsm.ErrConflict) {
		t.Errorf("no active: err %v", err)
	}
}

// TestLongAlertID: the quarantine reason stays within the FSM's limits
// whatever the alert ID holds.
func TestLongAlertID(t *testing.T) {
	for _, id := range []string{strings.Repeat("é", 200), strings.Repeat("x", 300), "tab\there\x00", "\xff\xfe"} {
		l := newLab(t, spec(paperReplicas()))
		dec, err := decide.Decide(l.state(), exploit(id, "lin-bind"), at(0))
		checkDecision(t, l, dec, err, at(0))
		if dec.Outcome != decide.OutcomeQuarantine {
			t.Fatalf("id %q: outcome %q", id, dec.Outcome)
		}
	}
}

func TestAlertFromRecord(t *testing.T) {
	r := fsm.AlertRecord{ID: "i", Service: "s", Replica: "r", Kind: fsm.KindDoS, Source: "src", Evidence: "e", At: 5, Index: 9}
	if got, want := decide.AlertFromRecord(r), (decide.Alert{ID: "i", Service: "s", Replica: "r", Kind: fsm.KindDoS, Source: "src", Index: 9}); got != want {
		t.Fatalf("%+v, want %+v", got, want)
	}
}

// An alert committed before its replica's last restore reports a state the
// restore wiped out: a repeated or late alert from the same exploit must not
// quarantine the clean replica again. One committed after it must.
func TestAlertBeforeRestoreIsAlreadyHandled(t *testing.T) {
	l := newLab(t, spec(paperReplicas()))
	l.role("lin-bind", fsm.ActionQuarantine) // index 2
	l.role("lin-bind", fsm.ActionRestored)   // index 3
	r, _ := l.svc().Replica("lin-bind")
	if r.RestoredIndex != 3 {
		t.Fatalf("RestoredIndex %d, want 3", r.RestoredIndex)
	}
	for _, c := range []struct {
		index uint64
		want  decide.Outcome
	}{
		{2, decide.OutcomeAlreadyHandled}, // committed before the restore
		{4, decide.OutcomeQuarantine},     // after it: a new exploit
		{0, decide.OutcomeQuarantine},     // index unknown: never ignored
	} {
		for _, kind := range []string{fsm.KindExploit, fsm.KindDoS} {
			ev := exploit("a", "lin-bind")
			ev.Kind, ev.Index = kind, c.index
			dec, err := decide.Decide(l.state(), ev, at(time.Second))
			checkDecision(t, l, dec, err, at(time.Second))
			want := c.want
			if kind == fsm.KindDoS && want == decide.OutcomeQuarantine {
				want = decide.OutcomeNotActive // a DoS alert on a suspended replica is moot
			}
			if dec.Outcome != want {
				t.Errorf("%s alert at index %d: outcome %q (%s), want %q", kind, c.index, dec.Outcome, dec.Reason, want)
			}
		}
	}
}
