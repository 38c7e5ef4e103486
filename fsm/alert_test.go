package fsm

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestAlert(t *testing.T) {
	h := newPaper(t)
	a := Alert{ID: "aa-1", Service: "dns", Replica: "win-bind", Kind: KindExploit, Source: "apparmor",
		Evidence: "apparmor=\"DENIED\" operation=\"exec\"\n", At: 42}
	res := h.must(a)
	if res.Duplicate || res.Service != "dns" || res.Generation != 1 {
		t.Fatalf("result %+v", res)
	}
	want := AlertRecord{ID: "aa-1", Service: "dns", Replica: "win-bind", Kind: KindExploit, Source: "apparmor",
		Evidence: a.Evidence, At: 42, Index: 2}
	if got := h.m.Alerts(); len(got) != 1 || got[0] != want {
		t.Fatalf("ledger %+v, want [%+v]", got, want)
	}
	if got, ok := h.m.Alert("aa-1"); !ok || got != want {
		t.Fatalf("Alert(aa-1) = %+v %v", got, ok)
	}
	// Alerts never switch by themselves.
	if got := h.roles("dns"); got != "win-bind=active win-unbound=suspended lin-bind=suspended lin-unbound=standby" {
		t.Fatalf("alert changed roles: %q", got)
	}

	// Duplicate: acknowledged, nothing changes (even with different content).
	before := domainState(t, h.m)
	dup := a
	dup.Kind, dup.At = KindDoS, 99
	res = h.must(dup)
	if !res.Duplicate || res.Index != h.index {
		t.Fatalf("duplicate result %+v", res)
	}
	if domainState(t, h.m) != before {
		t.Fatal("duplicate alert changed the state")
	}

	for _, c := range []struct {
		name string
		a    Alert
		want error
		msg  string
	}{
		{"unknown service", Alert{ID: "x1", Service: "nope", Replica: "win-bind", Kind: KindDoS}, ErrUnknownService, `"nope"`},
		{"unknown replica", Alert{ID: "x2", Service: "dns", Replica: "ghost", Kind: KindDoS}, ErrUnknownReplica, `"ghost"`},
		{"missing id", Alert{Service: "dns", Replica: "win-bind", Kind: KindDoS}, ErrInvalid, "id: required"},
		{"missing service", Alert{ID: "x3", Replica: "win-bind", Kind: KindDoS}, ErrInvalid, "service: required"},
		{"missing replica", Alert{ID: "x4", Service: "dns", Kind: KindDoS}, ErrInvalid, "replica: required"},
		{"bad kind", Alert{ID: "x5", Service: "dns", Replica: "win-bind", Kind: "ddos"}, ErrInvalid, "kind"},
		{"negative at", Alert{ID: "x6", Service: "dns", Replica: "win-bind", Kind: KindDoS, At: -5}, ErrInvalid, "at:"},
		{"long id", Alert{ID: strings.Repeat("i", maxIDLen+1), Service: "dns", Replica: "win-bind", Kind: KindDoS}, ErrInvalid, "id:"},
		{"control in source", Alert{ID: "x7", Service: "dns", Replica: "win-bind", Kind: KindDoS, Source: "a\nb"}, ErrInvalid, "source"},
		{"huge evidence", Alert{ID: "x8", Service: "dns", Replica: "win-bind", Kind: KindDoS, Evidence: strings.Repeat("e", maxEvidenceLen+1)}, ErrInvalid, "evidence"},
		{"control in evidence", Alert{ID: "x9", Service: "dns", Replica: "win-bind", Kind: KindDoS, Evidence: "\x1b[31m"}, ErrInvalid, "evidence"},
		{"kind manual (a SwitchRequest, not an alert)", Alert{ID: "x10", Service: "dns", Replica: "win-bind", Kind: KindManual}, ErrInvalid, "kind"},
	} {
		t.Run(c.name, func(t *testing.T) { h.reject(c.a, c.want, c.msg) })
	}
	// Rejected alerts are not in the ledger, so the same ID can be sent again, corrected.
	h.must(Alert{ID: "x1", Service: "dns", Replica: "win-bind", Kind: KindDoS})
	if n := len(h.m.Alerts()); n != 2 {
		t.Fatalf("ledger has %d alerts, want 2", n)
	}
}

func TestAlertLedgerBound(t *testing.T) {
	h := newPaper(t)
	id := func(i int) string { return fmt.Sprintf("a-%05d", i) }
	alert := func(i int) Alert {
		return Alert{ID: id(i), Service: "dns", Replica: "win-bind", Kind: KindDoS, At: int64(i)}
	}
	decided := func(i int) { h.must(AlertOutcome{ID: id(i), Outcome: "ignored"}) }
	held := func(i int) bool { _, ok := h.m.Alert(id(i)); return ok }

	// A ledger full of undecided alerts refuses a new one and changes
	// nothing (h.reject compares the whole state): an undecided alert is
	// never pushed out (docs/design.md §4.3).
	for i := 0; i < AlertLedgerLimit; i++ {
		h.must(alert(i))
	}
	next := AlertLedgerLimit
	h.reject(alert(next), ErrLedgerFull, id(next), "undecided")
	if Code(h.reject(alert(next), ErrLedgerFull)) != CodeLedgerFull {
		t.Fatal("ledger full has no code of its own")
	}
	// AlertRoom, asked before a commit, agrees: no room for a new id, a
	// duplicate is still taken.
	if err := h.m.AlertRoom(id(next)); !errors.Is(err, ErrLedgerFull) {
		t.Fatalf("AlertRoom on a full ledger: %v", err)
	}
	if err := h.m.AlertRoom(id(3)); err != nil {
		t.Fatalf("AlertRoom for a held alert: %v", err)
	}

	// With some decided, a new alert pushes out the oldest decided one,
	// not the oldest.
	decided(20)
	if err := h.m.AlertRoom(id(next)); err != nil {
		t.Fatalf("AlertRoom with a decided alert to drop: %v", err)
	}
	decided(10)
	h.must(alert(next))
	if held(10) || !held(0) || !held(20) || !held(next) {
		t.Fatalf("after one eviction: a-00010 %v, a-00000 %v, a-00020 %v, new %v", held(10), held(0), held(20), held(next))
	}
	next++
	h.must(alert(next))
	if held(20) || !held(next) {
		t.Fatal("second eviction did not take the other decided alert")
	}
	next++
	h.reject(alert(next), ErrLedgerFull)

	// Everything decided: the oldest go first, in index order.
	for i := 0; i < next; i++ {
		if held(i) {
			decided(i)
		}
	}
	for k := 0; k < 100; k++ {
		h.must(alert(next))
		next++
	}
	ledger := h.m.Alerts()
	if len(ledger) != AlertLedgerLimit {
		t.Fatalf("ledger length %d, want %d", len(ledger), AlertLedgerLimit)
	}
	// 0..4097 held less 10 and 20 (evicted above), less the 100 oldest
	// of the rest: the ledger starts at a-00102.
	if ledger[0].ID != id(102) || ledger[len(ledger)-1].ID != id(next-1) {
		t.Fatalf("ledger holds %s..%s", ledger[0].ID, ledger[len(ledger)-1].ID)
	}
	for i := 1; i < len(ledger); i++ {
		if ledger[i].Index <= ledger[i-1].Index {
			t.Fatalf("ledger not in index order at %d", i)
		}
	}
	// Still-held IDs are deduplicated; evicted ones are new again.
	if res := h.must(alert(102)); !res.Duplicate {
		t.Fatal("held alert not deduplicated")
	}
	if held(101) {
		t.Fatal("evicted alert still found")
	}
	decided(102)
	if res := h.must(alert(101)); res.Duplicate {
		t.Fatal("evicted alert ID reported as duplicate")
	}
	if len(h.m.alertIDs) != AlertLedgerLimit || len(h.m.Alerts()) != AlertLedgerLimit {
		t.Fatalf("index %d entries, ledger %d", len(h.m.alertIDs), len(h.m.Alerts()))
	}
	// The ledger survives a snapshot round trip with its dedup index.
	m2 := New()
	if err := m2.Restore(snapshot(t, h.m)); err != nil {
		t.Fatal(err)
	}
	h.m = m2
	if res := h.must(alert(200)); !res.Duplicate {
		t.Fatal("restored ledger lost its dedup index")
	}
}

func TestAlertOutcome(t *testing.T) {
	h := newPaper(t)
	h.must(Alert{ID: "a1", Service: "dns", Replica: "win-bind", Kind: KindExploit})
	h.must(Alert{ID: "a2", Service: "dns", Replica: "lin-unbound", Kind: KindExploit})
	h.must(Alert{ID: "a3", Service: "dns", Replica: "win-bind", Kind: KindExploit})
	h.must(Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonExploit, AlertID: "a1"})
	h.must(ReplicaRole{Service: "dns", Replica: "win-unbound", Action: ActionQuarantine, AlertID: "a2"})
	h.must(AlertOutcome{ID: "a3", Outcome: "ignored: already handled"})
	h.reject(AlertOutcome{ID: "nope", Outcome: "x"}, ErrConflict, "not in the ledger")
	h.reject(AlertOutcome{ID: "a3"}, ErrInvalid, "outcome")
	want := map[string]string{"a1": "switch", "a2": ActionQuarantine, "a3": "ignored: already handled"}
	// The switch record names the ledger entry it answered.
	if hist := h.svc("dns").History; len(hist) != 1 || hist[0].AlertID != "a1" {
		t.Errorf("history %+v, want one record with alert_id a1", hist)
	}
	for id, o := range want {
		if got, _ := h.m.Alert(id); got.Outcome != o {
			t.Errorf("alert %s outcome %q, want %q", id, got.Outcome, o)
		}
	}
	// First outcome wins.
	h.must(AlertOutcome{ID: "a1", Outcome: "other"})
	if got, _ := h.m.Alert("a1"); got.Outcome != "switch" {
		t.Errorf("outcome overwritten: %q", got.Outcome)
	}
}

// An operator's switch request is a ledger entry of kind manual: its
// target may be empty, it switches nothing by itself, and a Switch naming
// it records its outcome.
func TestSwitchRequest(t *testing.T) {
	h := newPaper(t)
	before := h.roles("dns")
	h.must(SwitchRequest{ID: "m1", Service: "dns", Source: "operator", Reason: "maintenance window", At: 5})
	h.must(SwitchRequest{ID: "m2", Service: "dns", To: "lin-unbound", Source: "operator"})
	if r, _ := h.m.Alert("m1"); r.Kind != KindManual || r.Replica != "" || r.Evidence != "maintenance window" || r.Source != "operator" || r.At != 5 {
		t.Fatalf("ledger entry %+v", r)
	}
	for _, c := range []struct {
		name string
		r    SwitchRequest
		want error
		msg  string
	}{
		{"unknown replica", SwitchRequest{ID: "x1", Service: "dns", To: "ghost"}, ErrUnknownReplica, `"ghost"`},
		{"unknown service", SwitchRequest{ID: "x2", Service: "nope"}, ErrUnknownService, `"nope"`},
		{"missing id", SwitchRequest{Service: "dns"}, ErrInvalid, "id: required"},
		{"control in reason", SwitchRequest{ID: "x3", Service: "dns", Reason: "a\x00b"}, ErrInvalid, "reason"},
		{"id of an alert", SwitchRequest{ID: "m1", Service: "nope"}, nil, ""},
	} {
		if c.want == nil {
			if res := h.must(c.r); !res.Duplicate {
				t.Errorf("%s: %+v, want a duplicate", c.name, res)
			}
			continue
		}
		t.Run(c.name, func(t *testing.T) { h.reject(c.r, c.want, c.msg) })
	}
	if got := h.roles("dns"); got != before {
		t.Fatalf("a manual request changed roles: %q", got)
	}
	h.must(Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonManual, AlertID: "m2"})
	h.must(AlertOutcome{ID: "m1", Outcome: "rejected: superseded"})
	for id, o := range map[string]string{"m1": "rejected: superseded", "m2": "switch"} {
		if got, ok := h.m.Alert(id); !ok || got.Outcome != o || got.Kind != KindManual {
			t.Errorf("entry %s = %+v, want kind manual, outcome %q", id, got, o)
		}
	}
}
