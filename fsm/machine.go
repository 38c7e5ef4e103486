package fsm

import (
	"fmt"
	"slices"
	"strings"
)

// Result is what applying one entry produced.
type Result struct {
	Index      uint64 `json:"index"`
	Service    string `json:"service,omitempty"`
	Generation uint64 `json:"generation,omitempty"`
	Duplicate  bool   `json:"duplicate,omitempty"` // an alert whose ID was already in the ledger
}

// Machine is the replicated state machine. It is NOT safe for concurrent use:
// the caller (cluster) serialises Apply, Snapshot, Restore and the accessors.
//
// It is pure: the state after a sequence of Apply calls depends only on the
// (index, term, data) of the entries, never on the clock, randomness or map
// iteration order.
type Machine struct {
	index uint64 // log index of the last entry applied (or restored)
	term  uint64 // highest entry term applied (or restored)

	services map[string]*Service
	// deleted remembers the last generation of deleted services, so that a
	// re-created service continues the count and a command aimed at the old
	// incarnation can never match the new one.
	deleted map[string]uint64

	alerts   []AlertRecord       // oldest first (ascending index)
	alertIDs map[string]struct{} // IDs of the alerts in the ledger

	// cursors are the notification sinks' cursors (notify.cursor): the
	// index up to which each sink has handled the events.
	cursors map[string]uint64
}

// entry is the log position of the command being applied.
type entry struct{ index, term uint64 }

// New returns an empty machine.
func New() *Machine {
	return &Machine{
		services: map[string]*Service{},
		deleted:  map[string]uint64{},
		alerts:   []AlertRecord{},
		alertIDs: map[string]struct{}{},
		cursors:  map[string]uint64{},
	}
}

// NotifyCursor is the committed cursor of the named notification sink: the
// index up to which it handled the events (0: none recorded).
func (m *Machine) NotifyCursor(sink string) uint64 { return m.cursors[sink] }

// Apply applies one committed log entry.
//
// Deterministic: the same sequence of (index, term, data) always produces the
// same state (and the same Snapshot bytes).
//
//   - An entry that cannot be decoded or has an unknown version or type
//     returns an error wrapping ErrCorrupt or ErrUnknownCommand (see Fatal)
//     and changes nothing, not even Index(). The caller must halt, never
//     skip it.
//   - A well-formed command that is rejected (stale term or generation,
//     unknown service or replica, invalid value, conflict) returns
//     (Result{Index: index}, err) and changes nothing but Index() and Term():
//     the entry has been applied, its outcome is the error, which every node
//     computes identically.
//   - Otherwise the command takes effect and Result describes it.
func (m *Machine) Apply(index, term uint64, data []byte) (Result, error) {
	res := Result{Index: index}
	env, cmd, err := Decode(data)
	if err != nil {
		return res, fmt.Errorf("%w (log index %d)", err, index)
	}
	// Raft hands entries over in log order. The machine does not second-guess
	// it: after an operator restores a snapshot taken elsewhere, the log may
	// legitimately continue below the snapshot's index or term.
	m.index = index
	m.term = max(m.term, term)
	if env.Term != 0 && env.Term != term {
		return res, fmt.Errorf("%w: %s command issued in term %d, appended in term %d (log index %d)",
			ErrStaleTerm, env.Type, env.Term, term, index)
	}
	return handlers[env.Type].apply(m, entry{index: index, term: term}, cmd)
}

// Index returns the log index of the last entry applied, including entries
// whose command was refused (or the snapshot's, after Restore).
func (m *Machine) Index() uint64 { return m.index }

// Term returns the highest log entry term applied.
func (m *Machine) Term() uint64 { return m.term }

// Services returns deep copies of all services, sorted by name.
func (m *Machine) Services() []Service {
	out := make([]Service, 0, len(m.services))
	for _, name := range m.serviceNames() {
		out = append(out, m.services[name].Clone())
	}
	return out
}

// Service returns a deep copy of the named service.
func (m *Machine) Service(name string) (Service, bool) {
	s, ok := m.services[name]
	if !ok {
		return Service{}, false
	}
	return s.Clone(), true
}

// Alerts returns a copy of the alert ledger, oldest first.
func (m *Machine) Alerts() []AlertRecord {
	out := make([]AlertRecord, len(m.alerts))
	copy(out, m.alerts)
	return out
}

// Alert returns the ledger record of the alert with the given ID.
func (m *Machine) Alert(id string) (AlertRecord, bool) {
	if _, ok := m.alertIDs[id]; !ok {
		return AlertRecord{}, false
	}
	for _, a := range m.alerts {
		if a.ID == id {
			return a, true
		}
	}
	return AlertRecord{}, false
}

func (m *Machine) serviceNames() []string {
	names := make([]string, 0, len(m.services))
	for name := range m.services {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// lookup returns the stored service or ErrUnknownService.
func (m *Machine) lookup(name string) (*Service, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: service: required", ErrInvalid)
	}
	s, ok := m.services[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownService, name)
	}
	return s, nil
}

// commit stores svc after checking its invariants. A violation is a bug in
// this package; rejecting the command deterministically keeps every node's
// state valid and identical.
func (m *Machine) commit(svc Service) error {
	if err := checkService(svc); err != nil {
		return fmt.Errorf("%w: service %q: internal invariant violated, command rejected: %v", ErrConflict, svc.Spec.Name, err)
	}
	m.services[svc.Spec.Name] = &svc
	return nil
}

func checkGeneration(svc *Service, expect uint64) error {
	if expect != 0 && expect != svc.Generation {
		return fmt.Errorf("%w: service %q is at generation %d, command expects %d",
			ErrStaleGeneration, svc.Spec.Name, svc.Generation, expect)
	}
	return nil
}

// replicaNames lists names for messages: "a", "b".
func replicaNames(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
