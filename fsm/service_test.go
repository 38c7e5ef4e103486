package fsm

import (
	"strings"
	"testing"
)

func TestServiceApplyCreate(t *testing.T) {
	h := newHarness(t)
	res := h.must(ServiceApply{Spec: paperSpec("dns")})
	if res.Service != "dns" || res.Generation != 1 {
		t.Fatalf("result %+v, want service dns generation 1", res)
	}
	s := h.svc("dns")
	if got, want := roles(s), "win-bind=active win-unbound=suspended lin-bind=suspended lin-unbound=standby"; got != want {
		t.Fatalf("roles %q, want %q", got, want)
	}
	for _, r := range s.Replicas {
		if !r.Clean || r.Health != HealthUnknown || r.Since != 1 {
			t.Errorf("replica %+v: want clean, health unknown, since 1", r)
		}
	}
	if s.Intent != nil || len(s.History) != 0 || s.UpdatedIndex != 1 {
		t.Errorf("fresh service: intent %v, history %d, updated %d", s.Intent, len(s.History), s.UpdatedIndex)
	}
	// The stored spec is normalized.
	if s.Spec.Probe.Timeout != DefaultARSTimeout || s.Spec.Policy.Rotation != RotationDiverse || s.Spec.Replicas[0].VM != "win-bind" {
		t.Errorf("spec not normalized: %+v", s.Spec)
	}
}

func TestServiceApplyCreateSingleReplica(t *testing.T) {
	h := newHarness(t)
	spec := paperSpec("dns")
	spec.Replicas = spec.Replicas[:1]
	h.must(ServiceApply{Spec: spec})
	if got := h.roles("dns"); got != "win-bind=active" {
		t.Fatalf("roles %q", got)
	}
}

func TestServiceApplyCreateRejected(t *testing.T) {
	h := newHarness(t)
	bad := paperSpec("dns")
	bad.Replicas[1].OS = "plan9"
	h.reject(ServiceApply{Spec: bad}, ErrInvalid, `service "dns"`, `replicas[1].os`)
	h.reject(ServiceApply{Spec: paperSpec("dns"), ExpectGeneration: 3}, ErrStaleGeneration, `"dns"`, "does not exist")
	if len(h.m.Services()) != 0 {
		t.Fatal("rejected creates created a service")
	}
}

func TestServiceApplyUpdate(t *testing.T) {
	type tc struct {
		name    string
		single  bool             // create with the first replica only
		prepare func(h *harness) // run after create
		mutate  func(s *ServiceSpec)
		expect  uint64 // ExpectGeneration
		wantErr error
		errMsg  []string
		roles   string // after
		genDiff uint64 // generation increase
		updated bool   // UpdatedIndex moves
	}
	exploitSwitch := func(h *harness) {
		h.must(Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonExploit})
		// win-bind=quarantined win-unbound=standby lin-bind=suspended lin-unbound=active
	}
	cases := []tc{
		{
			name:    "identical spec is a no-op",
			mutate:  func(s *ServiceSpec) {},
			roles:   "win-bind=active win-unbound=suspended lin-bind=suspended lin-unbound=standby",
			genDiff: 0, updated: false,
		},
		{
			name:    "spelling that normalizes to the same spec is a no-op",
			mutate:  func(s *ServiceSpec) { s.Replicas[0].Impl = " BIND9 "; s.Probe.Query = "www.lab.internal" },
			roles:   "win-bind=active win-unbound=suspended lin-bind=suspended lin-unbound=standby",
			genDiff: 0, updated: false,
		},
		{
			name:    "probe change keeps roles and generation",
			mutate:  func(s *ServiceSpec) { s.Probe.Timeout = Duration(200e6) },
			roles:   "win-bind=active win-unbound=suspended lin-bind=suspended lin-unbound=standby",
			genDiff: 0, updated: true,
		},
		{
			name:    "label change keeps roles and generation",
			mutate:  func(s *ServiceSpec) { s.Replicas[1].Impl = "knot-resolver" },
			roles:   "win-bind=active win-unbound=suspended lin-bind=suspended lin-unbound=standby",
			genDiff: 0, updated: true,
		},
		{
			name:    "reorder keeps roles and generation",
			mutate:  func(s *ServiceSpec) { s.Replicas[1], s.Replicas[2] = s.Replicas[2], s.Replicas[1] },
			roles:   "win-bind=active lin-bind=suspended win-unbound=suspended lin-unbound=standby",
			genDiff: 0, updated: true,
		},
		{
			name: "new replica is suspended",
			mutate: func(s *ServiceSpec) {
				s.Replicas = append(s.Replicas, replica("lin-knot", "knot-resolver", "linux", "container"))
			},
			roles:   "win-bind=active win-unbound=suspended lin-bind=suspended lin-unbound=standby lin-knot=suspended",
			genDiff: 1, updated: true,
		},
		{
			name:   "new replica becomes standby when there is none",
			single: true,
			mutate: func(s *ServiceSpec) {
				s.Replicas = append(s.Replicas, replica("lin-knot", "knot-resolver", "linux", "container"))
			},
			roles:   "win-bind=active lin-knot=standby",
			genDiff: 1, updated: true,
		},
		{
			name:    "removed suspended replica is dropped",
			mutate:  func(s *ServiceSpec) { s.Replicas = append(s.Replicas[:1:1], s.Replicas[2:]...) },
			roles:   "win-bind=active lin-bind=suspended lin-unbound=standby",
			genDiff: 1, updated: true,
		},
		{
			name:    "removed standby is replaced by diversity",
			mutate:  func(s *ServiceSpec) { s.Replicas = s.Replicas[:3] },
			roles:   "win-bind=active win-unbound=standby lin-bind=suspended",
			genDiff: 1, updated: true,
		},
		{
			name:    "removing the active replica is a conflict",
			mutate:  func(s *ServiceSpec) { s.Replicas = s.Replicas[1:] },
			wantErr: ErrConflict, errMsg: []string{`"win-bind"`, "switch away"},
		},
		{
			name:    "removing a quarantined replica is a conflict",
			prepare: exploitSwitch,
			mutate:  func(s *ServiceSpec) { s.Replicas = s.Replicas[1:] },
			wantErr: ErrConflict, errMsg: []string{`"win-bind"`, "quarantined", "restore"},
		},
		{
			name: "removing the from replica of an open manual switch is a conflict",
			prepare: func(h *harness) {
				h.must(Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonManual})
			},
			mutate:  func(s *ServiceSpec) { s.Replicas = s.Replicas[1:] },
			wantErr: ErrConflict, errMsg: []string{`"win-bind"`, "open switch"},
		},
		{
			name:    "stale generation",
			mutate:  func(s *ServiceSpec) { s.Probe.Timeout = Duration(200e6) },
			expect:  7,
			wantErr: ErrStaleGeneration, errMsg: []string{`"dns"`, "generation 1", "expects 7"},
		},
		{
			name:    "matching generation",
			mutate:  func(s *ServiceSpec) { s.Probe.Timeout = Duration(200e6) },
			expect:  1,
			roles:   "win-bind=active win-unbound=suspended lin-bind=suspended lin-unbound=standby",
			genDiff: 0, updated: true,
		},
		{
			name:    "invalid spec",
			mutate:  func(s *ServiceSpec) { s.Replicas[2].Platform = "lxc" },
			wantErr: ErrInvalid, errMsg: []string{"replicas[2].platform"},
		},
		{
			name:    "duplicate replica names",
			mutate:  func(s *ServiceSpec) { s.Replicas[2].Name = "win-bind" },
			wantErr: ErrInvalid, errMsg: []string{"replicas[2].name", "replicas[0]"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			base := paperSpec("dns")
			if c.single {
				base.Replicas = base.Replicas[:1]
			}
			h.must(ServiceApply{Spec: base})
			if c.prepare != nil {
				c.prepare(h)
			}
			before := h.svc("dns")
			spec := before.Spec.Clone()
			c.mutate(&spec)
			if c.wantErr != nil {
				h.reject(ServiceApply{Spec: spec, ExpectGeneration: c.expect}, c.wantErr, c.errMsg...)
				return
			}
			prev := domainState(t, h.m)
			res := h.must(ServiceApply{Spec: spec, ExpectGeneration: c.expect})
			after := h.svc("dns")
			checkAll(t, h.m)
			if got := roles(after); got != c.roles {
				t.Errorf("roles %q, want %q", got, c.roles)
			}
			if after.Generation != before.Generation+c.genDiff || res.Generation != after.Generation {
				t.Errorf("generation %d -> %d (result %d), want +%d", before.Generation, after.Generation, res.Generation, c.genDiff)
			}
			if moved := after.UpdatedIndex != before.UpdatedIndex; moved != c.updated {
				t.Errorf("UpdatedIndex %d -> %d, want moved=%v", before.UpdatedIndex, after.UpdatedIndex, c.updated)
			}
			if !c.updated && domainState(t, h.m) != prev {
				t.Error("no-op apply changed the state")
			}
			if c.updated && !after.Spec.Equal(func() ServiceSpec { s := spec.Clone(); s.Normalize(); return s }()) {
				t.Errorf("spec not stored: %+v", after.Spec)
			}
		})
	}
}

func TestServiceApplyUpdateKeepsReplicaState(t *testing.T) {
	h := newHarness(t)
	h.must(ServiceApply{Spec: paperSpec("dns")})
	h.must(Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonExploit})
	before := h.svc("dns")
	spec := before.Spec.Clone()
	spec.Replicas = append(spec.Replicas, replica("lin-knot", "knot-resolver", "linux", "container"))
	h.must(ServiceApply{Spec: spec})
	after := h.svc("dns")
	for i := range before.Replicas {
		if before.Replicas[i] != after.Replicas[i] {
			t.Errorf("replica %d changed: %+v -> %+v", i, before.Replicas[i], after.Replicas[i])
		}
	}
	if after.Intent == nil || *after.Intent != *before.Intent || len(after.History) != 1 {
		t.Errorf("intent/history not kept: %+v %+v", after.Intent, after.History)
	}
}

func TestServiceDelete(t *testing.T) {
	h := newHarness(t)
	h.must(ServiceApply{Spec: paperSpec("dns")})
	h.must(ServiceApply{Spec: paperSpec("other")})
	h.reject(ServiceDelete{Name: "nope"}, ErrUnknownService, `"nope"`)
	h.reject(ServiceDelete{Name: ""}, ErrInvalid, "service: required")
	h.reject(ServiceDelete{Name: "dns", ExpectGeneration: 2}, ErrStaleGeneration, `"dns"`)

	// A service with a quarantined replica cannot be deleted until restored.
	h.must(Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonDoS}) // generation 2
	h.reject(ServiceDelete{Name: "dns"}, ErrConflict, `"win-bind"`, "restore")
	h.must(ReplicaRole{Service: "dns", Replica: "win-bind", Action: ActionRestored}) // generation 3

	res := h.must(ServiceDelete{Name: "dns", ExpectGeneration: 3})
	if res.Service != "dns" || res.Generation != 3 {
		t.Fatalf("result %+v", res)
	}
	if _, ok := h.m.Service("dns"); ok {
		t.Fatal("service still there")
	}
	if names := h.m.Services(); len(names) != 1 || names[0].Spec.Name != "other" {
		t.Fatalf("services %v", names)
	}

	// Re-creating continues the generation count, so commands aimed at the
	// old incarnation stay stale.
	res = h.must(ServiceApply{Spec: paperSpec("dns")})
	if res.Generation != 4 {
		t.Fatalf("re-created generation %d, want 4", res.Generation)
	}
	h.reject(Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: ReasonDoS, ExpectGeneration: 3}, ErrStaleGeneration)
	if !strings.Contains(domainState(t, h.m), `"deleted":{}`) {
		t.Errorf("tombstone kept after re-create: %s", domainState(t, h.m))
	}
}
