package cluster

import (
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/ars-project/ars/fsm"
)

// applyResponse is what raftFSM.Apply hands back through the ApplyFuture.
type applyResponse struct {
	result fsm.Result
	err    error
}

// raftFSM adapts the pure fsm.Machine to raft.FSM: it serialises access,
// persists snapshots and refuses to paper over entries it cannot decode.
type raftFSM struct {
	mu sync.RWMutex
	m  *fsm.Machine
	// applied is signalled (non-blocking) after each committed command so
	// leader-side work can react to commits.
	applied chan struct{}
	// events are the commands applied, for GET /v1/events.
	events *EventLog
}

func newRaftFSM() *raftFSM {
	return &raftFSM{m: fsm.New(), applied: make(chan struct{}, 1), events: NewEventLog()}
}

// Apply implements raft.FSM.
func (f *raftFSM) Apply(l *raft.Log) interface{} {
	if l.Type != raft.LogCommand {
		return nil
	}
	f.mu.Lock()
	res, err := f.m.Apply(l.Index, l.Term, l.Data)
	f.mu.Unlock()
	if fsm.Fatal(err) {
		// Every node holds the same entry; skipping it on some nodes and not
		// others would fork the state. Stop here, loudly: the operator must
		// upgrade this node or restore from a snapshot.
		panic(fmt.Sprintf("ars: refusing to skip raft log entry %d (term %d): %v", l.Index, l.Term, err))
	}
	f.events.Add(l.Index, l.Term, l.Data, err)
	select {
	case f.applied <- struct{}{}:
	default:
	}
	return applyResponse{result: res, err: err}
}

// Snapshot implements raft.FSM. The state is serialised under the read
// lock; Persist only writes bytes.
func (f *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	data, err := f.m.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("fsm snapshot: %w", err)
	}
	return fsmSnapshot(data), nil
}

// Restore implements raft.FSM.
func (f *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.m.Restore(data); err != nil {
		return fmt.Errorf("restore fsm: %w", err)
	}
	f.events.Reset(f.m.Index())
	return nil
}

// read runs fn with the machine under the read lock.
func (f *raftFSM) read(fn func(m *fsm.Machine)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.m)
}

type fsmSnapshot []byte

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

func (s fsmSnapshot) Release() {}
