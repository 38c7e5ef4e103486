package fsm

import (
	"encoding/json"
	"fmt"
	"slices"
)

// SnapshotFormat is the snapshot format version this package writes and the
// only one Restore reads.
const SnapshotFormat = 1

type snapshotFile struct {
	Format int           `json:"format"`
	State  snapshotState `json:"state"`
}

type snapshotHeader struct {
	Format int             `json:"format"`
	State  json.RawMessage `json:"state"`
}

// snapshotState is the whole machine. Every collection is ordered (services
// by name, alerts by index; encoding/json writes map keys sorted), so equal
// states encode to equal bytes.
type snapshotState struct {
	Index    uint64            `json:"index"`
	Term     uint64            `json:"term"`
	Services []Service         `json:"services"`
	Deleted  map[string]uint64 `json:"deleted"` // last generation of deleted services
	Alerts   []AlertRecord     `json:"alerts"`
	// Notify holds the notification sinks' cursors (format level 3). It is
	// left out when there are none, so a state without them snapshots to
	// the bytes earlier builds wrote (and read).
	Notify map[string]uint64 `json:"notify,omitempty"`
}

// Snapshot returns the canonical encoding of the whole state:
// {"format":1,"state":{...}}. Two machines in the same state return the same
// bytes.
func (m *Machine) Snapshot() ([]byte, error) {
	st := snapshotState{
		Index:    m.index,
		Term:     m.term,
		Services: m.Services(),
		Deleted:  make(map[string]uint64, len(m.deleted)),
		Alerts:   m.Alerts(),
	}
	for k, v := range m.deleted {
		st.Deleted[k] = v
	}
	if len(m.cursors) > 0 {
		st.Notify = make(map[string]uint64, len(m.cursors))
		for k, v := range m.cursors {
			st.Notify[k] = v
		}
	}
	b, err := json.Marshal(snapshotFile{Format: SnapshotFormat, State: st})
	if err != nil {
		return nil, fmt.Errorf("fsm: snapshot: %w", err)
	}
	return b, nil
}

// Restore replaces the state with a snapshot taken by Snapshot. It decodes
// strictly and checks every invariant; an unknown format, undecodable or
// inconsistent data returns an error wrapping ErrCorrupt and leaves the
// machine unchanged.
func (m *Machine) Restore(data []byte) error {
	var h snapshotHeader
	if err := decodeStrict(data, &h); err != nil {
		return fmt.Errorf("%w: snapshot: %v", ErrCorrupt, err)
	}
	if h.Format != SnapshotFormat {
		return fmt.Errorf("%w: snapshot format %d not supported (this node reads format %d)", ErrCorrupt, h.Format, SnapshotFormat)
	}
	if len(h.State) == 0 || h.State[0] != '{' {
		return fmt.Errorf("%w: snapshot: state must be a JSON object", ErrCorrupt)
	}
	var st snapshotState
	if err := decodeStrict(h.State, &st); err != nil {
		return fmt.Errorf("%w: snapshot state: %v", ErrCorrupt, err)
	}
	n, err := fromSnapshot(st)
	if err != nil {
		return fmt.Errorf("%w: snapshot: %v", ErrCorrupt, err)
	}
	*m = *n
	return nil
}

// fromSnapshot builds a machine from decoded state, checking it.
func fromSnapshot(st snapshotState) (*Machine, error) {
	n := New()
	n.index, n.term = st.Index, st.Term
	prev := ""
	for i, svc := range st.Services {
		name := svc.Spec.Name
		if i > 0 && name <= prev {
			return nil, fmt.Errorf("services not sorted by name or duplicated at %q", name)
		}
		prev = name
		c := svc.Spec.Clone()
		c.Normalize()
		if !c.Equal(svc.Spec) {
			return nil, fmt.Errorf("service %q: spec is not normalized", name)
		}
		if err := c.validate(); err != nil {
			return nil, fmt.Errorf("service %q: %v", name, err)
		}
		svc = svc.Clone()
		if err := checkService(svc); err != nil {
			return nil, fmt.Errorf("service %q: %v", name, err)
		}
		if svc.UpdatedIndex > st.Index {
			return nil, fmt.Errorf("service %q: updated at index %d after snapshot index %d", name, svc.UpdatedIndex, st.Index)
		}
		for _, rs := range svc.Replicas {
			if rs.Since > st.Index {
				return nil, fmt.Errorf("service %q: replica %q changed at index %d after snapshot index %d", name, rs.Name, rs.Since, st.Index)
			}
		}
		n.services[name] = &svc
	}
	for name, gen := range st.Deleted {
		if _, live := n.services[name]; live {
			return nil, fmt.Errorf("service %q both live and deleted", name)
		}
		if !serviceNameRE.MatchString(name) || gen == 0 {
			return nil, fmt.Errorf("bad deleted-service entry %q: %d", name, gen)
		}
		n.deleted[name] = gen
	}
	if len(st.Alerts) > AlertLedgerLimit {
		return nil, fmt.Errorf("%d alerts, limit %d", len(st.Alerts), AlertLedgerLimit)
	}
	var last uint64
	for _, a := range st.Alerts {
		if a.ID == "" {
			return nil, fmt.Errorf("alert at index %d without id", a.Index)
		}
		if _, dup := n.alertIDs[a.ID]; dup {
			return nil, fmt.Errorf("alert %q twice in the ledger", a.ID)
		}
		if a.Index <= last || a.Index > st.Index {
			return nil, fmt.Errorf("alert %q: index %d out of order", a.ID, a.Index)
		}
		last = a.Index
		n.alertIDs[a.ID] = struct{}{}
	}
	for sink, idx := range st.Notify {
		if !SinkNameRE.MatchString(sink) || idx == 0 || idx > st.Index {
			return nil, fmt.Errorf("bad notification cursor %q: %d (snapshot index %d)", sink, idx, st.Index)
		}
		n.cursors[sink] = idx
	}
	n.alerts = slices.Clone(st.Alerts)
	if n.alerts == nil {
		n.alerts = []AlertRecord{}
	}
	return n, nil
}
