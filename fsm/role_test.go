package fsm

import (
	"testing"
)

func TestReplicaRole(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(h *harness)
		act     ReplicaRole
		roles   string
		clean   bool
		reason  string
	}{
		{
			name:  "quarantine a suspended replica",
			act:   ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionQuarantine, Reason: "apparmor denial"},
			roles: "win-bind=active win-unbound=suspended lin-bind=quarantined lin-unbound=standby",
			clean: false, reason: "apparmor denial",
		},
		{
			name:  "quarantine the standby picks a new one",
			act:   ReplicaRole{Service: "dns", Replica: "lin-unbound", Action: ActionQuarantine},
			roles: "win-bind=active win-unbound=standby lin-bind=suspended lin-unbound=quarantined",
			clean: false, reason: ActionQuarantine,
		},
		{
			name:    "quarantine a replica in maintenance",
			prepare: func(h *harness) { h.must(ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionMaintenance}) },
			act:     ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionQuarantine},
			roles:   "win-bind=active win-unbound=suspended lin-bind=quarantined lin-unbound=standby",
		},
		{
			name: "quarantine a recovering replica",
			prepare: func(h *harness) {
				h.must(Switch{Service: "dns", Reason: ReasonDoS})
			},
			act:   ReplicaRole{Service: "dns", Replica: "win-bind", Action: ActionQuarantine},
			roles: "win-bind=quarantined win-unbound=standby lin-bind=suspended lin-unbound=active",
		},
		{
			name:    "restored quarantined becomes suspended and clean",
			prepare: func(h *harness) { h.must(ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionQuarantine}) },
			act:     ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionRestored},
			roles:   "win-bind=active win-unbound=suspended lin-bind=suspended lin-unbound=standby",
			clean:   true, reason: ActionRestored,
		},
		{
			name: "restored recovering becomes standby when none is left",
			prepare: func(h *harness) {
				h.must(ReplicaRole{Service: "dns", Replica: "win-unbound", Action: ActionMaintenance})
				h.must(ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionMaintenance})
				h.must(Switch{Service: "dns", Reason: ReasonDoS}) // win-bind recovering, lin-unbound active, no standby
			},
			act:   ReplicaRole{Service: "dns", Replica: "win-bind", Action: ActionRestored},
			roles: "win-bind=standby win-unbound=maintenance lin-bind=maintenance lin-unbound=active",
			clean: true,
		},
		{
			name:  "maintenance on the standby picks a new one",
			act:   ReplicaRole{Service: "dns", Replica: "lin-unbound", Action: ActionMaintenance},
			roles: "win-bind=active win-unbound=standby lin-bind=suspended lin-unbound=maintenance",
			clean: true,
		},
		{
			name:    "release returns to suspended",
			prepare: func(h *harness) { h.must(ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionMaintenance}) },
			act:     ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionRelease},
			roles:   "win-bind=active win-unbound=suspended lin-bind=suspended lin-unbound=standby",
			clean:   true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newPaper(t)
			if c.prepare != nil {
				c.prepare(h)
			}
			gen := h.svc("dns").Generation
			res := h.must(c.act)
			checkAll(t, h.m)
			s := h.svc("dns")
			if got := roles(s); got != c.roles {
				t.Errorf("roles %q, want %q", got, c.roles)
			}
			if s.Generation != gen+1 || res.Generation != s.Generation {
				t.Errorf("generation %d -> %d (result %d), want +1", gen, s.Generation, res.Generation)
			}
			r, _ := s.Replica(c.act.Replica)
			if r.Clean != c.clean || r.Since != h.index {
				t.Errorf("replica %+v: want clean=%v since %d", r, c.clean, h.index)
			}
			if c.reason != "" && r.Reason != c.reason {
				t.Errorf("reason %q, want %q", r.Reason, c.reason)
			}
		})
	}
}

func TestReplicaRoleRejected(t *testing.T) {
	quarantineLinBind := func(h *harness) {
		h.must(ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionQuarantine})
	}
	maintLinBind := func(h *harness) {
		h.must(ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionMaintenance})
	}
	cases := []struct {
		name    string
		prepare func(h *harness)
		act     ReplicaRole
		want    error
		msg     []string
	}{
		{name: "unknown service", act: ReplicaRole{Service: "nope", Replica: "x", Action: ActionRelease}, want: ErrUnknownService, msg: []string{`"nope"`}},
		{name: "unknown replica", act: ReplicaRole{Service: "dns", Replica: "ghost", Action: ActionQuarantine}, want: ErrUnknownReplica, msg: []string{`"dns"`, `"ghost"`}},
		{name: "missing replica", act: ReplicaRole{Service: "dns", Action: ActionQuarantine}, want: ErrInvalid, msg: []string{"replica: required"}},
		{name: "unknown action", act: ReplicaRole{Service: "dns", Replica: "lin-bind", Action: "destroy"}, want: ErrInvalid, msg: []string{"action", `"destroy"`}},
		{name: "control characters in reason", act: ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionQuarantine, Reason: "a\x00b"}, want: ErrInvalid, msg: []string{"reason"}},
		{name: "stale generation", act: ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionQuarantine, ExpectGeneration: 5}, want: ErrStaleGeneration, msg: []string{"expects 5"}},
		{name: "quarantine the active", act: ReplicaRole{Service: "dns", Replica: "win-bind", Action: ActionQuarantine}, want: ErrConflict, msg: []string{`"win-bind"`, "switch away"}},
		{name: "quarantine twice", prepare: quarantineLinBind, act: ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionQuarantine}, want: ErrConflict, msg: []string{"already"}},
		{name: "restore a clean replica", act: ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionRestored}, want: ErrConflict, msg: []string{"suspended", "only a quarantined or recovering"}},
		{name: "restore the active", act: ReplicaRole{Service: "dns", Replica: "win-bind", Action: ActionRestored}, want: ErrConflict},
		{name: "maintenance on the active", act: ReplicaRole{Service: "dns", Replica: "win-bind", Action: ActionMaintenance}, want: ErrConflict, msg: []string{"switch away"}},
		{name: "maintenance on quarantined", prepare: quarantineLinBind, act: ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionMaintenance}, want: ErrConflict, msg: []string{"restore it first"}},
		{name: "maintenance twice", prepare: maintLinBind, act: ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionMaintenance}, want: ErrConflict, msg: []string{"already"}},
		{name: "release not in maintenance", act: ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionRelease}, want: ErrConflict, msg: []string{"only a replica in maintenance"}},
		{name: "release quarantined", prepare: quarantineLinBind, act: ReplicaRole{Service: "dns", Replica: "lin-bind", Action: ActionRelease}, want: ErrConflict},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newPaper(t)
			if c.prepare != nil {
				c.prepare(h)
			}
			h.reject(c.act, c.want, c.msg...)
		})
	}
}

// TestInvariant4: a quarantined (or recovering) replica never becomes active
// or standby before it has been restored.
func TestInvariant4(t *testing.T) {
	for reason, dirtyRole := range map[string]Role{ReasonExploit: RoleQuarantined, ReasonDoS: RoleRecovering} {
		t.Run(reason, func(t *testing.T) {
			h := newHarness(t)
			spec := paperSpec("dns")
			spec.Replicas = spec.Replicas[:2] // win-bind active, win-unbound standby
			h.must(ServiceApply{Spec: spec})
			h.must(Switch{Service: "dns", From: "win-bind", To: "win-unbound", Reason: reason})
			h.must(SwitchDone{Service: "dns", Generation: 2})
			d := "win-bind=" + string(dirtyRole)
			expect := func(want string) {
				t.Helper()
				s := h.svc("dns")
				if got := roles(s); got != want {
					t.Fatalf("roles %q, want %q", got, want)
				}
				if r, _ := s.Replica("win-bind"); r.Clean {
					t.Fatal("attacked replica marked clean")
				}
				for _, name := range RankStandby(s, "") {
					if name == "win-bind" {
						t.Fatal("RankStandby offers the dirty replica")
					}
				}
			}
			// It is the only other replica, and still not made standby.
			expect(d + " win-unbound=active")

			// Every way back without "restored" is refused.
			h.reject(Switch{Service: "dns", From: "win-unbound", To: "win-bind", Reason: ReasonManual}, ErrConflict)
			h.reject(Switch{Service: "dns", Reason: ReasonManual}, ErrConflict, "no standby")
			h.reject(ReplicaRole{Service: "dns", Replica: "win-bind", Action: ActionRelease}, ErrConflict)
			h.reject(ReplicaRole{Service: "dns", Replica: "win-bind", Action: ActionMaintenance}, ErrConflict)
			// Dropping it from the spec (to re-add it fresh) or deleting the service would launder it.
			h.reject(ServiceApply{Spec: spec}.withReplicas(spec.Replicas[1:]), ErrConflict)
			h.reject(ServiceDelete{Name: "dns"}, ErrConflict)
			// A spec update that adds nothing eligible leaves it alone.
			s2 := spec.Clone()
			s2.Probe.Timeout = Duration(300e6)
			h.must(ServiceApply{Spec: s2})
			expect(d + " win-unbound=active")

			// Adding a replica gives a standby; a switch naming the dirty one as
			// next standby falls back to an eligible one.
			s3 := s2.Clone()
			s3.Replicas = append(s3.Replicas, replica("lin-knot", "knot-resolver", "linux", "container"))
			h.must(ServiceApply{Spec: s3})
			expect(d + " win-unbound=active lin-knot=standby")
			h.must(Switch{Service: "dns", From: "win-unbound", To: "lin-knot", Reason: ReasonManual,
				NextStandby: "win-bind", ExpectGeneration: h.svc("dns").Generation})
			expect(d + " win-unbound=standby lin-knot=active")

			// After "restored" it is eligible again.
			h.must(ReplicaRole{Service: "dns", Replica: "win-bind", Action: ActionRestored})
			s := h.svc("dns")
			if r, _ := s.Replica("win-bind"); !r.Clean || r.Role != RoleSuspended {
				t.Fatalf("restored replica %+v", r)
			}
			h.must(Switch{Service: "dns", From: "lin-knot", To: "win-bind", Reason: ReasonManual, ExpectGeneration: s.Generation, At: 1})
			if r, _ := h.svc("dns").Replica("win-bind"); r.Role != RoleActive {
				t.Fatalf("restored replica not switchable: %+v", r)
			}
		})
	}
}

// withReplicas returns the apply command with a different replica list.
func (a ServiceApply) withReplicas(r []ReplicaSpec) ServiceApply {
	a.Spec = a.Spec.Clone()
	a.Spec.Replicas = append([]ReplicaSpec(nil), r...)
	return a
}
