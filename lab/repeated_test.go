package lab

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ars-project/ars/fsm"
)

func TestCleanRunning(t *testing.T) {
	s := fsm.Service{Replicas: []fsm.ReplicaState{
		{Name: "a", Role: fsm.RoleActive, Clean: true},
		{Name: "b", Role: fsm.RoleStandby, Clean: true},
		{Name: "c", Role: fsm.RoleSuspended, Clean: true},
		{Name: "d", Role: fsm.RoleRecovering},
		{Name: "e", Role: fsm.RoleQuarantined},
		{Name: "f", Role: fsm.RoleMaintenance, Clean: true},
		{Name: "g", Role: fsm.RoleStandby, Clean: true},
	}}
	running := func(names ...string) func(string) bool {
		return func(n string) bool { return slices.Contains(names, n) }
	}
	tests := []struct {
		name    string
		target  string
		running func(string) bool
		want    []string
	}{
		{"standbys that run", "a", running("a", "b", "d", "e", "f", "g"), []string{"b", "g"}},
		{"a suspended replica does not run", "a", running("a"), nil},
		{"a suspended one resumed", "a", running("c"), []string{"c"}},
		{"never the target", "b", running("b", "g"), []string{"g"}},
		// Recovering, quarantined and maintenance replicas are no way
		// out, whether they run or not.
		{"unclean ones never", "a", running("d", "e", "f"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cleanRunning(s, tt.target, tt.running); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("cleanRunning = %q, want %q", got, tt.want)
			}
		})
	}
}

// rec is a switch record of generation gen from one replica to another,
// committed at (unix nanoseconds from t0).
func rec(gen uint64, from, to string, at time.Duration, done bool) fsm.SwitchRecord {
	return fsm.SwitchRecord{Generation: gen, From: from, To: to, Reason: fsm.ReasonDoS,
		StartedAt: t0.Add(at).UnixNano(), Done: done, DetectionMS: 250, SwitchMS: 40}
}

var t0 = time.Date(2026, 12, 6, 22, 0, 0, 0, time.UTC)

func TestRepeatedBookDown(t *testing.T) {
	b := &repeatedBook{gen0: 3, every: 5 * time.Second}
	if b.down(nil, "x") {
		t.Error("a replica never attacked is down")
	}
	b.attacked("x", t0, 3, []string{"y"})
	if !b.down(nil, "x") {
		t.Error("x attacked and not switched away from is not down")
	}
	// A switch before the attack (generation 3 or lower) does not count.
	old := []fsm.SwitchRecord{rec(3, "x", "y", -time.Minute, true)}
	if !b.down(old, "x") {
		t.Error("a switch older than the attack took x out of the down set")
	}
	// Committed (even while still open), x no longer serves.
	h := append(old, rec(4, "x", "y", 300*time.Millisecond, false))
	if b.down(h, "x") {
		t.Error("x is down after a switch away from it")
	}
	if b.down(h, "y") {
		t.Error("y, never attacked, is down")
	}
	// x restored, active again and attacked again: down until the next
	// switch away from it, whatever the first attack's switch says.
	b.attacked("x", t0.Add(10*time.Second), 6, nil)
	if !b.down(h, "x") {
		t.Error("x attacked a second time is not down")
	}
	if b.down(append(h, rec(7, "x", "z", 10300*time.Millisecond, true)), "x") {
		t.Error("x is down after the second switch away from it")
	}
}

func TestRepeatedBookResolved(t *testing.T) {
	b := &repeatedBook{gen0: 1, every: 5 * time.Second}
	if !b.resolved(nil) {
		t.Error("no attack: not resolved")
	}
	b.attacked("x", t0, 1, nil)
	for _, tt := range []struct {
		name    string
		history []fsm.SwitchRecord
		want    bool
	}{
		{"no switch", nil, false},
		{"switch still open", []fsm.SwitchRecord{rec(2, "x", "y", time.Second, false)}, false},
		{"switch from another replica", []fsm.SwitchRecord{rec(2, "y", "x", time.Second, true)}, false},
		{"switch verified", []fsm.SwitchRecord{rec(2, "x", "y", time.Second, true)}, true},
	} {
		if got := b.resolved(tt.history); got != tt.want {
			t.Errorf("%s: resolved = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestRepeatedBookTrial replays what today's damping does to the schedule:
// five switches in time, the sixth attack held past the next one's due
// time while a clean standby runs, the ticks after it on the held replica
// making no attack, and a switch nobody asked for.
func TestRepeatedBookTrial(t *testing.T) {
	const every = 5 * time.Second
	b := &repeatedBook{gen0: 10, every: every}
	names := []string{"r1", "r2", "r3", "r4", "r5", "r1"}
	var h []fsm.SwitchRecord
	for i, n := range names {
		at := time.Duration(i) * every
		b.due++
		b.attacked(n, t0.Add(at+20*time.Millisecond), uint64(10+i), []string{names[(i+1)%5]})
		if i < 5 {
			h = append(h, rec(uint64(11+i), n, names[i+1], at+270*time.Millisecond, true))
		}
	}
	// Ticks 7 to 12 found r1 still active and down: due, no attack.
	for range 6 {
		if !b.down(h, "r1") {
			t.Fatal("r1 held by the damping is not down")
		}
		b.due++
	}
	// The damping lets the switch go 35 s after the sixth attack; then a
	// switch away from r3, attacked long ago and switched already.
	h = append(h, rec(16, "r1", "r2", 60*time.Second, true), rec(17, "r3", "r4", 61*time.Second, true))
	got := b.trial(h)
	if got.Due != 12 || len(got.Attacks) != 6 {
		t.Fatalf("due %d, attacks %d; want 12 and 6", got.Due, len(got.Attacks))
	}
	for i, a := range got.Attacks[:5] {
		if !a.InTime || a.To != names[i+1] || a.After != 250*time.Millisecond || a.At != time.Duration(i)*every {
			t.Errorf("attack %d = %+v, want switched in time to %s after 250ms at %s", i+1, a, names[i+1], time.Duration(i)*every)
		}
		if a.Detection != 250*time.Millisecond || a.Switch != 40*time.Millisecond {
			t.Errorf("attack %d: detection %s, switch %s; want the record's 250ms and 40ms", i+1, a.Detection, a.Switch)
		}
	}
	late := got.Attacks[5]
	if late.InTime || late.To != "r2" || late.After != 35*time.Second-20*time.Millisecond || late.Target != "r1" {
		t.Errorf("held attack = %+v, want a late switch to r2 after 34.98s", late)
	}
	if !reflect.DeepEqual(late.Clean, []string{"r2"}) {
		t.Errorf("held attack's clean replicas = %q, want r2", late.Clean)
	}
	if got.FalseSwitches != 1 {
		t.Errorf("false switches = %d, want 1 (r3 -> r4)", got.FalseSwitches)
	}
}

func TestRepeatedBookTrialNoSwitch(t *testing.T) {
	b := &repeatedBook{gen0: 2, every: 5 * time.Second, due: 1}
	b.attacked("x", t0, 2, nil)
	// A switch committed just as the next attack is due is late.
	for _, tt := range []struct {
		name    string
		history []fsm.SwitchRecord
		inTime  bool
		to      string
	}{
		{"none", nil, false, ""},
		{"at the next due time", []fsm.SwitchRecord{rec(3, "x", "y", 5*time.Second, true)}, false, "y"},
		{"just before it", []fsm.SwitchRecord{rec(3, "x", "y", 5*time.Second-time.Millisecond, true)}, true, "y"},
	} {
		a := b.trial(tt.history).Attacks[0]
		if a.InTime != tt.inTime || a.To != tt.to {
			t.Errorf("%s: in time %v, to %q; want %v, %q", tt.name, a.InTime, a.To, tt.inTime, tt.to)
		}
	}
}
