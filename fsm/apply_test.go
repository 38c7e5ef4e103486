package fsm

import (
	"errors"
	"testing"
)

func TestStaleTerm(t *testing.T) {
	m := New()
	create, _ := Encode(3, ServiceApply{Spec: paperSpec("dns")})
	if _, err := m.Apply(1, 3, create); err != nil {
		t.Fatal(err)
	}
	before := domainState(t, m)
	// Issued by the leader of term 2, appended in term 3: stale.
	old, _ := Encode(2, Switch{Service: "dns", Reason: ReasonDoS})
	res, err := m.Apply(2, 3, old)
	if !errors.Is(err, ErrStaleTerm) || res != (Result{Index: 2}) {
		t.Fatalf("Apply = %+v, %v; want stale term", res, err)
	}
	// Issued for a later term than the entry's: also refused.
	future, _ := Encode(9, Switch{Service: "dns", Reason: ReasonDoS})
	if _, err := m.Apply(3, 4, future); !errors.Is(err, ErrStaleTerm) {
		t.Fatalf("future term: %v", err)
	}
	if domainState(t, m) != before {
		t.Fatal("stale command changed the state")
	}
	if m.Index() != 3 || m.Term() != 4 {
		t.Fatalf("Index/Term = %d/%d, want 3/4: rejected entries still count as applied", m.Index(), m.Term())
	}
	// Term 0 is not bound to a leader term; the matching term works.
	unbound, _ := Encode(0, Alert{ID: "x", Service: "dns", Replica: "win-bind", Kind: KindDoS})
	if _, err := m.Apply(4, 4, unbound); err != nil {
		t.Fatal(err)
	}
	bound, _ := Encode(5, Switch{Service: "dns", Reason: ReasonDoS})
	if _, err := m.Apply(5, 5, bound); err != nil {
		t.Fatal(err)
	}
	if m.Term() != 5 {
		t.Fatalf("Term() = %d", m.Term())
	}
}

func TestApplyFatal(t *testing.T) {
	m := New()
	create, _ := Encode(2, ServiceApply{Spec: paperSpec("dns")})
	if _, err := m.Apply(5, 2, create); err != nil {
		t.Fatal(err)
	}
	before := string(snapshot(t, m))
	for _, c := range []struct {
		name        string
		index, term uint64
		data        []byte
		want        error
	}{
		{"garbage", 6, 2, []byte("\x00\x01garbage"), ErrCorrupt},
		{"empty", 6, 2, nil, ErrCorrupt},
		{"unknown type", 6, 2, []byte(`{"v":1,"type":"reboot","term":0,"body":{}}`), ErrUnknownCommand},
		{"unknown version", 6, 2, []byte(`{"v":2,"type":"alert","term":0,"body":{}}`), ErrUnknownCommand},
		{"unknown body field", 6, 2, []byte(`{"v":1,"type":"alert","term":0,"body":{"id":"x","colour":"red"}}`), ErrCorrupt},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := m.Apply(c.index, c.term, c.data)
			if !errors.Is(err, c.want) || !Fatal(err) {
				t.Fatalf("err = %v, want fatal %v", err, c.want)
			}
			if res.Index != c.index {
				t.Errorf("Result.Index %d", res.Index)
			}
			if got := string(snapshot(t, m)); got != before {
				t.Fatal("a fatal entry changed the state (or the index)")
			}
		})
	}
}

// TestApplyAfterForeignRestore: after restoring a snapshot taken at a later
// index and term (disaster recovery into a fresh cluster), entries with
// lower indexes and terms keep applying.
func TestApplyAfterForeignRestore(t *testing.T) {
	old := New()
	if _, err := old.Apply(5000, 50, mustEncode(t, 50, ServiceApply{Spec: paperSpec("dns")})); err != nil {
		t.Fatal(err)
	}
	m := New()
	if err := m.Restore(snapshot(t, old)); err != nil {
		t.Fatal(err)
	}
	res, err := m.Apply(3, 2, mustEncode(t, 2, Switch{Service: "dns", Reason: ReasonDoS}))
	if err != nil || res.Generation != 2 {
		t.Fatalf("Apply after restore: %+v, %v", res, err)
	}
	if m.Index() != 3 || m.Term() != 50 {
		t.Fatalf("Index/Term = %d/%d, want 3/50", m.Index(), m.Term())
	}
}

func TestAccessorsReturnCopies(t *testing.T) {
	h := newPaper(t)
	h.must(Switch{Service: "dns", Reason: ReasonExploit})
	h.must(Alert{ID: "a", Service: "dns", Replica: "win-bind", Kind: KindExploit})
	before := string(snapshot(t, h.m))

	s, _ := h.m.Service("dns")
	s.Spec.Name = "x"
	s.Spec.Replicas[0].Impl = "mutated"
	s.Replicas[0].Role = RoleActive
	s.Intent.To = "mutated"
	s.History[0].Done = true
	s.Generation = 99
	all := h.m.Services()
	all[0].Replicas[1].Clean = false
	all[0].Spec.Replicas[1].Name = "mutated"
	all[0].History[0].From = "mutated"
	all[0].Intent.Generation = 77
	alerts := h.m.Alerts()
	alerts[0].ID = "mutated"
	snap := snapshot(t, h.m)
	snap[10] = 'X'

	if got := string(snapshot(t, h.m)); got != before {
		t.Fatalf("mutating returned values changed the machine:\n%s\n%s", before, got)
	}
	c := s.Clone()
	c.Replicas[1].Name = "clone"
	c.Intent.From = "clone"
	c.History[0].To = "clone"
	c.Spec.Replicas[1].OS = "clone"
	if s.Replicas[1].Name == "clone" || s.Intent.From == "clone" || s.History[0].To == "clone" || s.Spec.Replicas[1].OS == "clone" {
		t.Fatal("Service.Clone shares memory")
	}
}

func TestServicesSorted(t *testing.T) {
	h := newHarness(t)
	for _, n := range []string{"zeta", "alpha", "mid"} {
		h.must(ServiceApply{Spec: paperSpec(n)})
	}
	got := h.m.Services()
	if len(got) != 3 || got[0].Spec.Name != "alpha" || got[1].Spec.Name != "mid" || got[2].Spec.Name != "zeta" {
		t.Fatalf("order %v", []string{got[0].Spec.Name, got[1].Spec.Name, got[2].Spec.Name})
	}
	if _, ok := h.m.Service("nope"); ok {
		t.Fatal("unknown service found")
	}
}
