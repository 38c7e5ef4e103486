package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// script is a scripted day in the life of two services: create, alerts,
// switches for every reason, a superseded switch, role actions, a spec update
// and a deletion, plus rejected and duplicate entries.
func script() []Command {
	dns := paperSpec("dns")
	dns2 := dns.Clone()
	dns2.Replicas = append(dns2.Replicas, replica("lin-knot", "knot-resolver", "linux", "container"))
	dns2.Probe.Timeout = Duration(80e6)
	rr := paperSpec("rr")
	rr.Address = "192.0.2.54:53"
	rr.Policy.Rotation = RotationRoundRobin
	tmp := paperSpec("tmp")
	tmp.Replicas = tmp.Replicas[:2]
	return []Command{
		ServiceApply{Spec: dns}, // 1 gen 1
		ServiceApply{Spec: rr},  // 2
		ServiceApply{Spec: tmp}, // 3
		Alert{ID: "aa-1", Service: "dns", Replica: "win-bind", Kind: KindExploit, Source: "apparmor", Evidence: "DENIED exec", At: 1000},
		Alert{ID: "aa-1", Service: "dns", Replica: "win-bind", Kind: KindExploit, Source: "apparmor", At: 1001},           // duplicate
		Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonExploit, ExpectGeneration: 1, At: 1100}, // gen 2
		Switch{Service: "dns", From: "win-bind", To: "win-unbound", Reason: ReasonDoS, ExpectGeneration: 1, At: 1150},     // stale
		SwitchDone{Service: "dns", Generation: 2, DetectionMS: 40.5, SwitchMS: 3.25, TotalMS: 43.75, At: 1200},
		ReplicaRole{Service: "dns", Replica: "win-bind", Action: ActionRestored, Reason: "reverted to clean", ExpectGeneration: 2}, // gen 3
		Alert{ID: "dos-1", Service: "dns", Replica: "lin-unbound", Kind: KindDoS, Source: "probe", At: 2000},
		Switch{Service: "dns", From: "lin-unbound", To: "win-unbound", Reason: ReasonDoS, ExpectGeneration: 3, At: 2100}, // gen 4
		Switch{Service: "dns", From: "win-unbound", To: "lin-bind", Reason: ReasonManual, ExpectGeneration: 4, At: 2200}, // gen 5, supersedes
		SwitchDone{Service: "dns", Generation: 5, DetectionMS: 0, SwitchMS: 2, TotalMS: 2, At: 2300},
		ReplicaRole{Service: "dns", Replica: "win-bind", Action: ActionMaintenance, Reason: "patching"}, // gen 6
		ServiceApply{Spec: dns2, ExpectGeneration: 6},                                                   // gen 7
		ReplicaRole{Service: "dns", Replica: "win-bind", Action: ActionRelease},                         // gen 8
		Switch{Service: "rr", Reason: ReasonManual, At: 3000},
		SwitchDone{Service: "rr", Generation: 2, TotalMS: 1.5, At: 3001,
			OutageMS: ptr(0.0), ProbesSent: ptr(4), ProbesLost: ptr(0), ExposureMS: ptr(1.25)},
		ServiceDelete{Name: "tmp", ExpectGeneration: 1},
		Alert{ID: "x", Service: "tmp", Replica: "win-bind", Kind: KindDoS}, // unknown service now
	}
}

func runScript(t testing.TB) *Machine {
	t.Helper()
	m := New()
	for i, c := range script() {
		data, err := Encode(2, c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Apply(uint64(i+1), 2, data); Fatal(err) {
			t.Fatalf("entry %d: %v", i+1, err)
		}
		checkAll(t, m)
	}
	return m
}

func TestScriptGolden(t *testing.T) {
	m := runScript(t)
	snap := snapshot(t, m)
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, snap, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	golden(t, "script.golden", pretty.Bytes())

	// Spot checks, so a wrong golden file cannot be accepted blindly.
	s, _ := m.Service("dns")
	if got, want := roles(s), "win-bind=suspended win-unbound=standby lin-bind=active lin-unbound=recovering lin-knot=suspended"; got != want {
		t.Errorf("dns roles %q, want %q", got, want)
	}
	if s.Generation != 8 || s.Intent != nil || len(s.History) != 3 || !s.History[0].Done || s.History[1].Done || !s.History[2].Done {
		t.Errorf("dns generation %d intent %v history %+v", s.Generation, s.Intent, s.History)
	}
	if _, ok := m.Service("tmp"); ok {
		t.Error("tmp not deleted")
	}
	if a := m.Alerts(); len(a) != 2 || a[0].ID != "aa-1" || a[0].At != 1000 || a[1].ID != "dos-1" {
		t.Errorf("alerts %+v", a)
	}
}

func TestDeterminism(t *testing.T) {
	a, b := runScript(t), runScript(t)
	sa, sb := snapshot(t, a), snapshot(t, b)
	if !bytes.Equal(sa, sb) {
		t.Fatal("same log, different snapshots")
	}
	// Snapshot twice: same bytes.
	if !bytes.Equal(sa, snapshot(t, a)) {
		t.Fatal("Snapshot not stable")
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	m := runScript(t)
	s1 := snapshot(t, m)
	r := New()
	if err := r.Restore(s1); err != nil {
		t.Fatal(err)
	}
	if s2 := snapshot(t, r); !bytes.Equal(s1, s2) {
		t.Fatalf("round trip differs:\n%s\n%s", s1, s2)
	}
	if r.Index() != m.Index() || r.Term() != m.Term() {
		t.Fatalf("index/term %d/%d, want %d/%d", r.Index(), r.Term(), m.Index(), m.Term())
	}
	// The restored machine continues exactly like the original.
	next, _ := Encode(2, Switch{Service: "dns", Reason: ReasonExploit, At: 9})
	ra, ea := m.Apply(m.Index()+1, 2, next)
	rb, eb := r.Apply(r.Index()+1, 2, next)
	if ra != rb || (ea == nil) != (eb == nil) || !bytes.Equal(snapshot(t, m), snapshot(t, r)) {
		t.Fatalf("diverged after restore: %+v %v / %+v %v", ra, ea, rb, eb)
	}
	// An empty machine round-trips too.
	e := New()
	es := snapshot(t, e)
	if string(es) != `{"format":1,"state":{"index":0,"term":0,"services":[],"deleted":{},"alerts":[]}}` {
		t.Fatalf("empty snapshot %s", es)
	}
	if err := New().Restore(es); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreRejects(t *testing.T) {
	good := string(snapshot(t, runScript(t)))
	edit := func(f func(st *snapshotState)) string {
		var sf snapshotFile
		if err := json.Unmarshal([]byte(good), &sf); err != nil {
			t.Fatal(err)
		}
		f(&sf.State)
		b, err := json.Marshal(sf)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cases := []struct{ name, data, msg string }{
		{"empty", ``, "snapshot"},
		{"garbage", `garbage`, "snapshot"},
		{"unknown format", strings.Replace(good, `{"format":1,`, `{"format":2,`, 1), "format 2"},
		{"missing format", strings.Replace(good, `{"format":1,`, `{`, 1), "format 0"},
		{"unknown top-level field", strings.Replace(good, `{"format":1,`, `{"format":1,"extra":true,`, 1), "extra"},
		{"unknown state field", strings.Replace(good, `"state":{`, `"state":{"extra":1,`, 1), "extra"},
		{"null state", `{"format":1,"state":null}`, "state"},
		{"trailing data", good + "x", "after"},
		{"two actives", edit(func(st *snapshotState) {
			st.Services[0].Replicas[0].Role = RoleActive
			st.Services[0].Replicas[2].Role = RoleActive
		}), "active"},
		{"dirty standby", edit(func(st *snapshotState) {
			for i, r := range st.Services[0].Replicas {
				if r.Role == RoleStandby {
					st.Services[0].Replicas[i].Clean = false
				}
			}
		}), "clean"},
		{"unknown role", edit(func(st *snapshotState) { st.Services[0].Replicas[1].Role = "idle" }), "idle"},
		{"unsorted services", edit(func(st *snapshotState) { st.Services[0], st.Services[1] = st.Services[1], st.Services[0] }), "sorted"},
		{"invalid spec", edit(func(st *snapshotState) { st.Services[0].Spec.Replicas[1].OS = "bsd" }), "os"},
		{"unnormalized spec", edit(func(st *snapshotState) { st.Services[0].Spec.Probe.Query = "www.lab.internal" }), "normalized"},
		{"replica mismatch", edit(func(st *snapshotState) { st.Services[0].Replicas[1].Name = "ghost" }), "ghost"},
		{"duplicate alert", edit(func(st *snapshotState) { st.Alerts[1].ID = st.Alerts[0].ID }), "twice"},
		{"alert from the future", edit(func(st *snapshotState) { st.Alerts[1].Index = st.Index + 1 }), "index"},
		{"history too long", edit(func(st *snapshotState) {
			for len(st.Services[0].History) <= HistoryLimit {
				st.Services[0].History = append(st.Services[0].History, st.Services[0].History[0])
			}
		}), "history"},
		{"live and deleted", edit(func(st *snapshotState) { st.Deleted["dns"] = 3 }), "deleted"},
		{"generation zero", edit(func(st *snapshotState) { st.Services[0].Generation = 0 }), "generation"},
		{"change after snapshot index", edit(func(st *snapshotState) { st.Services[0].UpdatedIndex = st.Index + 5 }), "after snapshot index"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := runScript(t)
			before := snapshot(t, m)
			err := m.Restore([]byte(c.data))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Restore err = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not mention %q", err, c.msg)
			}
			if !bytes.Equal(before, snapshot(t, m)) {
				t.Fatal("failed Restore changed the machine")
			}
		})
	}
}

func TestSnapshotRestoreReplacesState(t *testing.T) {
	m := runScript(t)
	if err := m.Restore(snapshot(t, New())); err != nil {
		t.Fatal(err)
	}
	if len(m.Services()) != 0 || len(m.Alerts()) != 0 || m.Index() != 0 {
		t.Fatal("Restore did not replace the state")
	}
	if _, err := m.Apply(1, 1, mustEncode(t, 1, Alert{ID: "aa-1", Service: "dns", Replica: "x", Kind: KindDoS})); !errors.Is(err, ErrUnknownService) {
		t.Fatalf("old dedup index survived Restore: %v", err)
	}
}

func mustEncode(t testing.TB, term uint64, c Command) []byte {
	t.Helper()
	b, err := Encode(term, c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func BenchmarkApplySwitch(b *testing.B) {
	h := newHarness(b)
	h.must(ServiceApply{Spec: paperSpec("dns")})
	for i := 0; i < 300; i++ {
		h.must(Alert{ID: fmt.Sprint(i), Service: "dns", Replica: "win-bind", Kind: KindDoS})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := h.svc("dns")
		a, _ := s.Active()
		sb, _ := s.Standby()
		h.must(Switch{Service: "dns", From: a.Name, To: sb.Name, Reason: ReasonManual, ExpectGeneration: s.Generation})
	}
}
