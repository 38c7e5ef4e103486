package lab

import (
	"testing"

	"github.com/ars-project/ars/fsm"
)

// After a change to round-robin the standby is kept; the impl-attack
// trial must see that it is not the next in order.
func TestStaleStandby(t *testing.T) {
	svc := func(rotation, standby string) fsm.Service {
		s := fsm.Service{Spec: fsm.ServiceSpec{Policy: fsm.PolicySpec{Rotation: rotation}}}
		for _, r := range []struct{ name, impl string }{
			{"bind9-win", "bind9"}, {"bind9-lin", "bind9"}, {"unbound-win", "unbound"}, {"knot-lin", "knot-resolver"},
		} {
			s.Spec.Replicas = append(s.Spec.Replicas, fsm.ReplicaSpec{Name: r.name, Impl: r.impl})
			role := fsm.RoleSuspended
			switch r.name {
			case "bind9-win":
				role = fsm.RoleActive
			case standby:
				role = fsm.RoleStandby
			}
			s.Replicas = append(s.Replicas, fsm.ReplicaState{Name: r.name, Role: role, Clean: true})
		}
		return s
	}
	for _, tt := range []struct {
		rotation, standby string
		want              bool
	}{
		{fsm.RotationRoundRobin, "unbound-win", true}, // picked under diverse
		{fsm.RotationRoundRobin, "bind9-lin", false},  // next in order
		{fsm.RotationDiverse, "unbound-win", false},   // another impl, kept
		{fsm.RotationDiverse, "bind9-lin", false},     // diverse: not checked
	} {
		if got := staleStandby(svc(tt.rotation, tt.standby)); got != tt.want {
			t.Errorf("%s, standby %s: stale %t, want %t", tt.rotation, tt.standby, got, tt.want)
		}
	}
	// No standby: nothing to replace.
	if staleStandby(svc(fsm.RotationRoundRobin, "")) {
		t.Error("a service without a standby has a stale one")
	}
}

// Every node must have applied up to the highest commit index.
func TestCaughtUp(t *testing.T) {
	for _, tt := range []struct {
		applied map[string]uint64
		commit  uint64
		want    bool
	}{
		{map[string]uint64{"n1": 10, "n2": 10, "n3": 10}, 10, true},
		{map[string]uint64{"n1": 10, "n2": 4, "n3": 10}, 10, false}, // a restarted node replaying
		{map[string]uint64{"n1": 11, "n2": 10, "n3": 10}, 10, true},
		{map[string]uint64{}, 0, false},
	} {
		if got := caughtUp(tt.applied, tt.commit); got != tt.want {
			t.Errorf("caughtUp(%v, %d) = %t, want %t", tt.applied, tt.commit, got, tt.want)
		}
	}
}
