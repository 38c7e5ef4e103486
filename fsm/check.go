package fsm

import (
	"errors"
	"fmt"
)

// checkService verifies the invariants every stored service satisfies. Apply
// checks them after every change; Restore checks them for every service in a
// snapshot.
//
//   - replica states match the spec's replicas, in spec order;
//   - exactly one replica is active, at most one is standby;
//   - Clean is false exactly for quarantined and recovering replicas, so a
//     replica that was attacked is never active or standby before it has
//     been restored (docs/design.md §4.4);
//   - if any replica could be standby, one is;
//   - an open intent has a generation no later than the service's and names
//     existing replicas;
//   - the history is bounded.
func checkService(svc Service) error {
	if svc.Generation == 0 {
		return errors.New("generation is 0")
	}
	if len(svc.Replicas) != len(svc.Spec.Replicas) {
		return fmt.Errorf("%d replica states for %d replicas in spec", len(svc.Replicas), len(svc.Spec.Replicas))
	}
	var active, standby, eligible int
	for i, rs := range svc.Replicas {
		if rs.Name != svc.Spec.Replicas[i].Name {
			return fmt.Errorf("replicas[%d] is %q, spec has %q", i, rs.Name, svc.Spec.Replicas[i].Name)
		}
		if !rs.Role.Valid() {
			return fmt.Errorf("replica %q: unknown role %q", rs.Name, rs.Role)
		}
		switch rs.Health {
		case HealthUnknown, HealthOK, HealthFailing:
		default:
			return fmt.Errorf("replica %q: unknown health %q", rs.Name, rs.Health)
		}
		dirty := rs.Role == RoleQuarantined || rs.Role == RoleRecovering
		if rs.Clean == dirty {
			return fmt.Errorf("replica %q: role %s with clean=%v", rs.Name, rs.Role, rs.Clean)
		}
		switch rs.Role {
		case RoleActive:
			active++
		case RoleStandby:
			standby++
		case RoleSuspended:
			eligible++
		}
	}
	if active != 1 {
		return fmt.Errorf("%d active replicas, want exactly 1", active)
	}
	if standby > 1 {
		return fmt.Errorf("%d standby replicas, want at most 1", standby)
	}
	if standby == 0 && eligible > 0 {
		return errors.New("no standby although a suspended replica is eligible")
	}
	if in := svc.Intent; in != nil {
		if in.Generation == 0 || in.Generation > svc.Generation {
			return fmt.Errorf("intent generation %d, service generation %d", in.Generation, svc.Generation)
		}
		if svc.replicaIndex(in.From) < 0 || svc.replicaIndex(in.To) < 0 {
			return fmt.Errorf("intent names replicas %q -> %q not in the service", in.From, in.To)
		}
	}
	if len(svc.History) > HistoryLimit {
		return fmt.Errorf("%d history records, limit %d", len(svc.History), HistoryLimit)
	}
	return nil
}
