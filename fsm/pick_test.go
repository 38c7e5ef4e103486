package fsm

import (
	"slices"
	"strings"
	"testing"
)

// svcWith builds a service from "name:impl/os/platform=role" items.
func svcWith(t *testing.T, rotation string, items ...string) Service {
	t.Helper()
	s := Service{Spec: paperSpec("pick"), Generation: 1}
	s.Spec.Policy.Rotation = rotation
	s.Spec.Replicas = nil
	for _, it := range items {
		name, rest, _ := strings.Cut(it, ":")
		labels, role, _ := strings.Cut(rest, "=")
		l := strings.Split(labels, "/")
		if len(l) != 3 {
			t.Fatalf("bad item %q", it)
		}
		s.Spec.Replicas = append(s.Spec.Replicas, replica(name, l[0], l[1], l[2]))
		r := Role(role)
		s.Replicas = append(s.Replicas, ReplicaState{Name: name, Role: r, Health: HealthUnknown,
			Clean: r != RoleQuarantined && r != RoleRecovering})
	}
	s.Spec.Normalize()
	return s
}

func TestPickStandby(t *testing.T) {
	cases := []struct {
		name     string
		rotation string
		items    []string
		ref      string
		exclude  []string
		want     string // "" = none
		rank     []string
	}{
		{
			name:  "different impl, os and platform wins",
			items: []string{"a:bind9/windows/vm=active", "b:unbound/windows/vm=suspended", "c:bind9/linux/container=suspended", "d:unbound/linux/container=suspended"},
			want:  "d", rank: []string{"d", "b", "c"},
		},
		{
			name:  "impl beats os and platform",
			items: []string{"a:bind9/windows/vm=active", "b:bind9/linux/container=suspended", "c:unbound/windows/vm=suspended"},
			want:  "c", rank: []string{"c", "b"},
		},
		{
			name:  "os beats platform",
			items: []string{"a:bind9/windows/vm=active", "b:unbound/windows/container=suspended", "c:unbound/linux/vm=suspended"},
			want:  "c", rank: []string{"c", "b"},
		},
		{
			name:  "platform decides between equal impl and os",
			items: []string{"a:bind9/linux/vm=active", "b:unbound/linux/vm=suspended", "c:unbound/linux/container=suspended"},
			want:  "c",
		},
		{
			name:  "current standby wins a diversity tie",
			items: []string{"a:bind9/linux/vm=active", "b:unbound/linux/container=suspended", "c:knot-resolver/linux/container=standby"},
			want:  "c", rank: []string{"c", "b"},
		},
		{
			name:  "a more diverse suspended replica beats the standby",
			items: []string{"a:bind9/linux/vm=active", "b:bind9/windows/vm=standby", "c:unbound/linux/vm=suspended"},
			want:  "c", rank: []string{"c", "b"},
		},
		{
			name:  "spec order breaks the remaining ties",
			items: []string{"a:bind9/linux/vm=active", "b:unbound/windows/vm=suspended", "c:knot-resolver/windows/vm=suspended"},
			want:  "b", rank: []string{"b", "c"},
		},
		{
			name:  "reference is the attacked replica, not the active one",
			items: []string{"a:unbound/windows/vm=active", "b:bind9/linux/vm=quarantined", "c:bind9/windows/vm=suspended", "d:unbound/linux/vm=suspended"},
			ref:   "b",
			want:  "d", rank: []string{"d", "c"},
		},
		{
			name:  "after a switch, the new active's impl is avoided too",
			items: []string{"a:unbound/windows/vm=active", "b:bind9/windows/vm=quarantined", "c:unbound/linux/container=suspended", "d:knot-resolver/windows/vm=suspended"},
			ref:   "b",
			want:  "d", rank: []string{"d", "c"},
		},
		{
			name:  "impl different from the attacked one beats different from the active one",
			items: []string{"a:unbound/windows/vm=active", "b:bind9/windows/vm=quarantined", "c:unbound/linux/container=suspended", "d:bind9/linux/container=suspended"},
			ref:   "b",
			want:  "c", rank: []string{"c", "d"},
		},
		{
			name:  "quarantined, recovering and maintenance are never candidates",
			items: []string{"a:bind9/windows/vm=active", "b:unbound/linux/container=quarantined", "c:knot-resolver/linux/container=recovering", "d:pdns-recursor/linux/container=maintenance", "e:bind9/windows/vm=suspended"},
			want:  "e", rank: []string{"e"},
		},
		{
			name:  "nothing eligible",
			items: []string{"a:bind9/windows/vm=active", "b:unbound/linux/container=quarantined", "c:unbound/linux/vm=maintenance"},
			want:  "",
		},
		{
			name:  "single replica",
			items: []string{"a:bind9/windows/vm=active"},
			want:  "",
		},
		{
			name:    "excluded replicas are skipped",
			items:   []string{"a:bind9/windows/vm=active", "b:unbound/linux/container=suspended", "c:unbound/windows/vm=suspended"},
			exclude: []string{"b"},
			want:    "c", rank: []string{"c"},
		},
		{
			name:  "unknown reference: standby, then spec order",
			items: []string{"a:bind9/windows/vm=active", "b:bind9/windows/vm=suspended", "c:bind9/windows/vm=standby"},
			ref:   "ghost",
			want:  "c", rank: []string{"c", "b"},
		},
		{
			name:     "round-robin: next after the active",
			rotation: RotationRoundRobin,
			items:    []string{"a:bind9/windows/vm=suspended", "b:bind9/windows/vm=active", "c:bind9/windows/vm=suspended", "d:unbound/linux/container=standby"},
			want:     "c", rank: []string{"c", "d", "a"},
		},
		{
			name:     "round-robin: wraps and skips ineligible",
			rotation: RotationRoundRobin,
			items:    []string{"a:bind9/windows/vm=suspended", "b:bind9/windows/vm=quarantined", "c:bind9/windows/vm=maintenance", "d:unbound/linux/container=active"},
			want:     "a", rank: []string{"a"},
		},
		{
			name:     "round-robin ignores diversity and the reference",
			rotation: RotationRoundRobin,
			items:    []string{"a:bind9/windows/vm=active", "b:bind9/windows/vm=suspended", "c:unbound/linux/container=suspended"},
			ref:      "a",
			want:     "b", rank: []string{"b", "c"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := svcWith(t, c.rotation, c.items...)
			got, ok := PickStandby(s, c.ref, c.exclude...)
			if got != c.want || ok != (c.want != "") {
				t.Fatalf("PickStandby = %q, %v; want %q", got, ok, c.want)
			}
			if c.rank != nil {
				if r := RankStandby(s, c.ref, c.exclude...); !slices.Equal(r, c.rank) {
					t.Fatalf("RankStandby = %v, want %v", r, c.rank)
				}
			}
			// Pure: the input is untouched and the answer repeatable.
			s2 := svcWith(t, c.rotation, c.items...)
			if again, _ := PickStandby(s2, c.ref, c.exclude...); again != got || roles(s) != roles(s2) {
				t.Fatal("PickStandby not repeatable or mutated its input")
			}
		})
	}
}

// TestSwitchChainDiversity: a sequence of exploits aimed at whatever is active
// walks through the implementations instead of repeating one (docs/design.md §5).
func TestSwitchChainDiversity(t *testing.T) {
	h := newHarness(t)
	spec := paperSpec("dns")
	spec.Replicas = []ReplicaSpec{
		replica("bind-1", "bind9", "linux", "vm"),
		replica("bind-2", "bind9", "linux", "vm"),
		replica("bind-3", "bind9", "windows", "vm"),
		replica("unbound-1", "unbound", "linux", "container"),
		replica("knot-1", "knot-resolver", "linux", "container"),
	}
	h.must(ServiceApply{Spec: spec})
	var impls []string
	for i := 0; i < 3; i++ {
		s := h.svc("dns")
		act, _ := s.Active()
		sb, ok := s.Standby()
		if !ok {
			t.Fatalf("no standby after %d switches: %s", i, roles(s))
		}
		h.must(Switch{Service: "dns", From: act.Name, To: sb.Name, Reason: ReasonExploit, ExpectGeneration: s.Generation})
		as, _ := h.svc("dns").Spec.Replica(sb.Name)
		impls = append(impls, as.Impl)
	}
	if want := []string{"unbound", "knot-resolver", "bind9"}; !slices.Equal(impls, want) {
		t.Fatalf("active impls %v, want %v", impls, want)
	}
}

func TestRoundRobinRotation(t *testing.T) {
	h := newHarness(t)
	spec := paperSpec("dns")
	spec.Policy.Rotation = RotationRoundRobin
	h.must(ServiceApply{Spec: spec})
	if got := h.roles("dns"); got != "win-bind=active win-unbound=standby lin-bind=suspended lin-unbound=suspended" {
		t.Fatalf("roles %q", got)
	}
	var seq []string
	for i := 0; i < 5; i++ {
		s := h.svc("dns")
		res := h.must(Switch{Service: "dns", Reason: ReasonManual, ExpectGeneration: s.Generation})
		h.must(SwitchDone{Service: "dns", Generation: res.Generation})
		a, _ := h.svc("dns").Active()
		seq = append(seq, a.Name)
	}
	if want := []string{"win-unbound", "lin-bind", "lin-unbound", "win-bind", "win-unbound"}; !slices.Equal(seq, want) {
		t.Fatalf("rotation %v, want %v", seq, want)
	}
}
