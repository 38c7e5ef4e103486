package fsm

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// After create: win-bind=active win-unbound=suspended lin-bind=suspended lin-unbound=standby
func newPaper(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	h.must(ServiceApply{Spec: paperSpec("dns")})
	return h
}

func TestSwitch(t *testing.T) {
	cases := []struct {
		name      string
		sw        Switch
		roles     string
		from, to  string
		mode      string
		fromClean bool
	}{
		{
			name:  "exploit quarantines from, next standby differs from the attacked impl",
			sw:    Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonExploit, At: 100},
			roles: "win-bind=quarantined win-unbound=standby lin-bind=suspended lin-unbound=active",
			from:  "win-bind", to: "lin-unbound", mode: ModeMakeBeforeBreak,
		},
		{
			name:  "dos sends from to recovery",
			sw:    Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonDoS, At: 100},
			roles: "win-bind=recovering win-unbound=standby lin-bind=suspended lin-unbound=active",
			from:  "win-bind", to: "lin-unbound", mode: DefaultDoSMode,
		},
		{
			name:  "manual suspends from; it stays eligible",
			sw:    Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonManual},
			roles: "win-bind=suspended win-unbound=standby lin-bind=suspended lin-unbound=active",
			from:  "win-bind", to: "lin-unbound", mode: ModeMakeBeforeBreak, fromClean: true,
		},
		{
			name:  "empty from and to mean active and standby",
			sw:    Switch{Service: "dns", Reason: ReasonDoS},
			roles: "win-bind=recovering win-unbound=standby lin-bind=suspended lin-unbound=active",
			from:  "win-bind", to: "lin-unbound", mode: DefaultDoSMode,
		},
		{
			name:  "to a suspended replica; standby re-picked relative to from",
			sw:    Switch{Service: "dns", From: "win-bind", To: "lin-bind", Reason: ReasonExploit, Mode: ModeBreakBeforeMake},
			roles: "win-bind=quarantined win-unbound=suspended lin-bind=active lin-unbound=standby",
			from:  "win-bind", to: "lin-bind", mode: ModeBreakBeforeMake,
		},
		{
			name:  "eligible next standby is honoured",
			sw:    Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonExploit, NextStandby: "lin-bind"},
			roles: "win-bind=quarantined win-unbound=suspended lin-bind=standby lin-unbound=active",
			from:  "win-bind", to: "lin-unbound", mode: ModeMakeBeforeBreak,
		},
		{
			name:  "next standby equal to the quarantined from falls back to diversity",
			sw:    Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonExploit, NextStandby: "win-bind"},
			roles: "win-bind=quarantined win-unbound=standby lin-bind=suspended lin-unbound=active",
			from:  "win-bind", to: "lin-unbound", mode: ModeMakeBeforeBreak,
		},
		{
			name:  "next standby equal to to falls back to diversity",
			sw:    Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonExploit, NextStandby: "lin-unbound"},
			roles: "win-bind=quarantined win-unbound=standby lin-bind=suspended lin-unbound=active",
			from:  "win-bind", to: "lin-unbound", mode: ModeMakeBeforeBreak,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newPaper(t)
			res := h.must(c.sw)
			checkAll(t, h.m)
			s := h.svc("dns")
			if got := roles(s); got != c.roles {
				t.Errorf("roles %q, want %q", got, c.roles)
			}
			if res.Generation != 2 || s.Generation != 2 || res.Service != "dns" {
				t.Errorf("result %+v, generation %d, want 2", res, s.Generation)
			}
			want := Intent{Generation: 2, From: c.from, To: c.to, Reason: c.sw.Reason, Mode: c.mode, OpenedAt: c.sw.At, Index: 2}
			if s.Intent == nil || *s.Intent != want {
				t.Errorf("intent %+v, want %+v", s.Intent, want)
			}
			fs, _ := s.Spec.Replica(c.from)
			ts, _ := s.Spec.Replica(c.to)
			wantRec := SwitchRecord{Generation: 2, Service: "dns", From: c.from, To: c.to, Reason: c.sw.Reason, Mode: c.mode,
				FromImpl: fs.Impl, ToImpl: ts.Impl, FromPlatform: fs.Platform, ToPlatform: ts.Platform, StartedAt: c.sw.At, Index: 2}
			if len(s.History) != 1 || s.History[0] != wantRec {
				t.Errorf("history %+v, want [%+v]", s.History, wantRec)
			}
			from, _ := s.Replica(c.from)
			if from.Clean != c.fromClean || from.Since != 2 || from.Reason != c.sw.Reason {
				t.Errorf("from %+v: want clean=%v since 2 reason %q", from, c.fromClean, c.sw.Reason)
			}
			if to, _ := s.Replica(c.to); to.Since != 2 || !to.Clean {
				t.Errorf("to %+v", to)
			}
		})
	}
}

func TestSwitchRejected(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(h *harness)
		sw      Switch
		want    error
		msg     []string
	}{
		{name: "unknown service", sw: Switch{Service: "nope", Reason: ReasonDoS}, want: ErrUnknownService, msg: []string{`"nope"`}},
		{name: "missing service", sw: Switch{Reason: ReasonDoS}, want: ErrInvalid, msg: []string{"service: required"}},
		{name: "bad reason", sw: Switch{Service: "dns", Reason: "boredom"}, want: ErrInvalid, msg: []string{"reason", `"boredom"`}},
		{name: "bad mode", sw: Switch{Service: "dns", Reason: ReasonDoS, Mode: "yolo"}, want: ErrInvalid, msg: []string{"mode"}},
		{name: "negative at", sw: Switch{Service: "dns", Reason: ReasonDoS, At: -1}, want: ErrInvalid, msg: []string{"at"}},
		{name: "stale generation", sw: Switch{Service: "dns", Reason: ReasonDoS, ExpectGeneration: 9}, want: ErrStaleGeneration, msg: []string{`"dns"`, "9"}},
		{name: "unknown from", sw: Switch{Service: "dns", From: "ghost", Reason: ReasonDoS}, want: ErrUnknownReplica, msg: []string{`"ghost"`, "from"}},
		{name: "from not active", sw: Switch{Service: "dns", From: "win-unbound", To: "lin-unbound", Reason: ReasonDoS}, want: ErrConflict, msg: []string{`"win-unbound"`, "not active", `"win-bind"`}},
		{name: "unknown to", sw: Switch{Service: "dns", From: "win-bind", To: "ghost", Reason: ReasonDoS}, want: ErrUnknownReplica, msg: []string{`"ghost"`, "(to)"}},
		{name: "to is from", sw: Switch{Service: "dns", From: "win-bind", To: "win-bind", Reason: ReasonDoS}, want: ErrConflict, msg: []string{"already active"}},
		{name: "unknown next standby", sw: Switch{Service: "dns", From: "win-bind", To: "lin-unbound", NextStandby: "ghost", Reason: ReasonDoS}, want: ErrUnknownReplica, msg: []string{`"ghost"`, "next_standby"}},
		{
			name:    "to quarantined",
			prepare: func(h *harness) { h.must(ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionQuarantine}) },
			sw:      Switch{Service: "dns", From: "win-bind", To: "lin-bind", Reason: ReasonDoS},
			want:    ErrConflict, msg: []string{`"lin-bind"`, "quarantined", "restored first"},
		},
		{
			name: "to recovering",
			prepare: func(h *harness) {
				h.must(Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonDoS})
				h.must(SwitchDone{Service: "dns", Generation: 2})
			},
			sw:   Switch{Service: "dns", From: "lin-unbound", To: "win-bind", Reason: ReasonDoS},
			want: ErrConflict, msg: []string{`"win-bind"`, "recovering"},
		},
		{
			name:    "to in maintenance",
			prepare: func(h *harness) { h.must(ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionMaintenance}) },
			sw:      Switch{Service: "dns", From: "win-bind", To: "lin-bind", Reason: ReasonManual},
			want:    ErrConflict, msg: []string{"maintenance", "release"},
		},
		{
			name: "no standby to default to",
			prepare: func(h *harness) {
				for _, r := range []string{"win-unbound", "lin-bind", "lin-unbound"} {
					h.must(ReplicaRole{Service: "dns", Replica: r, Action: ActionMaintenance})
				}
			},
			sw:   Switch{Service: "dns", Reason: ReasonDoS},
			want: ErrConflict, msg: []string{"no standby"},
		},
		{
			name:    "open intent needs an expected generation",
			prepare: func(h *harness) { h.must(Switch{Service: "dns", Reason: ReasonManual}) },
			sw:      Switch{Service: "dns", From: "lin-unbound", To: "win-unbound", Reason: ReasonDoS},
			want:    ErrConflict, msg: []string{"generation 2 is still open", "expect generation 2"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newPaper(t)
			if c.prepare != nil {
				c.prepare(h)
			}
			h.reject(c.sw, c.want, c.msg...)
		})
	}
}

func TestSwitchSupersedesOpenIntent(t *testing.T) {
	h := newPaper(t)
	h.must(Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonExploit, At: 1})
	// win-bind=quarantined win-unbound=standby lin-bind=suspended lin-unbound=active, gen 2
	h.reject(Switch{Service: "dns", From: "lin-unbound", To: "win-unbound", Reason: ReasonDoS, ExpectGeneration: 1}, ErrStaleGeneration)
	res := h.must(Switch{Service: "dns", From: "lin-unbound", To: "win-unbound", Reason: ReasonDoS, ExpectGeneration: 2, At: 2})
	if res.Generation != 3 {
		t.Fatalf("generation %d", res.Generation)
	}
	s := h.svc("dns")
	if got, want := roles(s), "win-bind=quarantined win-unbound=active lin-bind=standby lin-unbound=recovering"; got != want {
		t.Fatalf("roles %q, want %q", got, want)
	}
	if s.Intent == nil || s.Intent.Generation != 3 || s.Intent.From != "lin-unbound" {
		t.Fatalf("intent %+v", s.Intent)
	}
	if len(s.History) != 2 || s.History[0].Done || s.History[0].Generation != 2 || s.History[1].Generation != 3 {
		t.Fatalf("history %+v", s.History)
	}
	// switch.done for the superseded generation is stale; the record stays not-done.
	h.reject(SwitchDone{Service: "dns", Generation: 2}, ErrStaleGeneration, "open switch is generation 3")
	h.must(SwitchDone{Service: "dns", Generation: 3, TotalMS: 5})
	s = h.svc("dns")
	if s.Intent != nil || s.History[0].Done || !s.History[1].Done {
		t.Fatalf("after done: intent %+v history %+v", s.Intent, s.History)
	}
}

func TestSwitchDone(t *testing.T) {
	h := newPaper(t)
	h.reject(SwitchDone{Service: "dns", Generation: 1}, ErrStaleGeneration, "no open switch")
	h.must(Switch{Service: "dns", Reason: ReasonDoS, At: 1000})
	for _, c := range []struct {
		name string
		d    SwitchDone
		want error
		msg  string
	}{
		{"unknown service", SwitchDone{Service: "nope", Generation: 2}, ErrUnknownService, `"nope"`},
		{"wrong generation", SwitchDone{Service: "dns", Generation: 1}, ErrStaleGeneration, "open switch is generation 2"},
		{"missing generation", SwitchDone{Service: "dns"}, ErrInvalid, "generation: required"},
		{"negative detection", SwitchDone{Service: "dns", Generation: 2, DetectionMS: -1}, ErrInvalid, "detection_ms"},
		{"negative switch", SwitchDone{Service: "dns", Generation: 2, SwitchMS: -1}, ErrInvalid, "switch_ms"},
		{"negative total", SwitchDone{Service: "dns", Generation: 2, TotalMS: -0.5}, ErrInvalid, "total_ms"},
		{"negative lost", SwitchDone{Service: "dns", Generation: 2, LostQueries: -1}, ErrInvalid, "lost_queries"},
		{"negative at", SwitchDone{Service: "dns", Generation: 2, At: -1}, ErrInvalid, "at:"},
		{"outage without probes", SwitchDone{Service: "dns", Generation: 2, OutageMS: ptr(1.0)}, ErrInvalid, "all three or none"},
		{"probes without outage", SwitchDone{Service: "dns", Generation: 2, ProbesSent: ptr(3), ProbesLost: ptr(1)}, ErrInvalid, "all three or none"},
		{"negative outage", SwitchDone{Service: "dns", Generation: 2, OutageMS: ptr(-1.0), ProbesSent: ptr(1), ProbesLost: ptr(0)}, ErrInvalid, "outage_ms"},
		{"more lost than sent", SwitchDone{Service: "dns", Generation: 2, OutageMS: ptr(1.0), ProbesSent: ptr(1), ProbesLost: ptr(2)}, ErrInvalid, "probes_lost 2, probes_sent 1"},
		{"negative probes lost", SwitchDone{Service: "dns", Generation: 2, OutageMS: ptr(1.0), ProbesSent: ptr(1), ProbesLost: ptr(-1)}, ErrInvalid, "probes_lost -1"},
		{"negative exposure", SwitchDone{Service: "dns", Generation: 2, ExposureMS: ptr(-0.5)}, ErrInvalid, "exposure_ms"},
	} {
		t.Run(c.name, func(t *testing.T) { h.reject(c.d, c.want, c.msg) })
	}
	res := h.must(SwitchDone{Service: "dns", Generation: 2, DetectionMS: 250.5, SwitchMS: 12.25, TotalMS: 262.75, LostQueries: 3, At: 2000})
	if res.Generation != 2 {
		t.Fatalf("SwitchDone bumped the generation: %+v", res)
	}
	s := h.svc("dns")
	if s.Intent != nil {
		t.Fatal("intent still open")
	}
	r := s.History[0]
	if !r.Done || r.DoneAt != 2000 || r.StartedAt != 1000 || r.DetectionMS != 250.5 || r.SwitchMS != 12.25 || r.TotalMS != 262.75 || r.LostQueries != 3 {
		t.Fatalf("record %+v", r)
	}
	if s.UpdatedIndex != h.index {
		t.Errorf("UpdatedIndex %d, want %d", s.UpdatedIndex, h.index)
	}
	h.reject(SwitchDone{Service: "dns", Generation: 2}, ErrStaleGeneration, "no open switch")
}

func TestHistoryBound(t *testing.T) {
	h := newPaper(t)
	n := HistoryLimit + 10
	for i := 0; i < n; i++ {
		s := h.svc("dns")
		act, _ := s.Active()
		sb, _ := s.Standby()
		res := h.must(Switch{Service: "dns", From: act.Name, To: sb.Name, Reason: ReasonManual, ExpectGeneration: s.Generation, At: int64(i)})
		h.must(SwitchDone{Service: "dns", Generation: res.Generation, TotalMS: float64(i)})
	}
	s := h.svc("dns")
	if len(s.History) != HistoryLimit {
		t.Fatalf("history length %d, want %d", len(s.History), HistoryLimit)
	}
	if first, last := s.History[0], s.History[HistoryLimit-1]; first.StartedAt != int64(n-HistoryLimit) || last.StartedAt != int64(n-1) || !last.Done {
		t.Fatalf("kept records %d..%d, want %d..%d (newest last)", first.StartedAt, last.StartedAt, n-HistoryLimit, n-1)
	}
	if s.Generation != uint64(n+1) {
		t.Fatalf("generation %d, want %d", s.Generation, n+1)
	}
	checkAll(t, h.m)
}

// TestSwitchDoneMeasurements: the leader's optional measurements land in
// the history record, absent ones stay absent, and the record shares no
// memory with the command or with copies of the state.
func TestSwitchDoneMeasurements(t *testing.T) {
	h := newPaper(t)
	h.must(Switch{Service: "dns", Reason: ReasonExploit, At: 1000})
	d := SwitchDone{Service: "dns", Generation: 2, TotalMS: 50, At: 2000,
		OutageMS: ptr(0.0), ProbesSent: ptr(9), ProbesLost: ptr(0), ExposureMS: ptr(48.5)}
	h.must(d)
	*d.ExposureMS = 1 // the command's memory is not the record's
	r := h.svc("dns").History[0]
	if r.OutageMS == nil || *r.OutageMS != 0 || *r.ProbesSent != 9 || *r.ProbesLost != 0 || *r.ExposureMS != 48.5 {
		t.Fatalf("record %+v", r)
	}
	s := h.svc("dns")
	*s.History[0].ProbesSent = 100
	if r := h.svc("dns").History[0]; *r.ProbesSent != 9 {
		t.Fatalf("a copy of the state changed the machine: probes_sent %d", *r.ProbesSent)
	}
	// Nothing measured: nothing recorded, and nothing in the JSON.
	h.must(Switch{Service: "dns", Reason: ReasonManual, ExpectGeneration: 2, At: 3000})
	h.must(SwitchDone{Service: "dns", Generation: 3, TotalMS: 5, At: 4000})
	r = h.svc("dns").History[1]
	if r.OutageMS != nil || r.ProbesSent != nil || r.ProbesLost != nil || r.ExposureMS != nil {
		t.Fatalf("unmeasured record %+v", r)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"outage_ms", "probes_sent", "probes_lost", "exposure_ms", "lost_queries"} {
		if strings.Contains(string(b), f) {
			t.Errorf("unmeasured record shows %s: %s", f, b)
		}
	}
	checkAll(t, h.m)
}

// TestSwitchDoneFromEarlierBuilds: entries written before the
// measurements existed (lost_queries always 0, no optional fields) still
// decode and apply as before.
func TestSwitchDoneFromEarlierBuilds(t *testing.T) {
	h := newPaper(t)
	h.must(Switch{Service: "dns", Reason: ReasonDoS, At: 1000})
	old := `{"v":1,"type":"switch.done","term":0,"body":{"service":"dns","generation":2,"detection_ms":250.5,"switch_ms":12.25,"total_ms":262.75,"lost_queries":0,"at":2000}}`
	_, c, err := Decode([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	if want := (SwitchDone{Service: "dns", Generation: 2, DetectionMS: 250.5, SwitchMS: 12.25, TotalMS: 262.75, At: 2000}); !reflect.DeepEqual(c, want) {
		t.Fatalf("decoded %#v", c)
	}
	h.index++
	if _, err := h.m.Apply(h.index, h.term, []byte(old)); err != nil {
		t.Fatal(err)
	}
	if r := h.svc("dns").History[0]; !r.Done || r.TotalMS != 262.75 || r.OutageMS != nil || r.ExposureMS != nil {
		t.Fatalf("record %+v", r)
	}
}
