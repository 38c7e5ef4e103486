package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/ars-project/ars/fsm"
)

// Event is one committed command as this node applied it: the same on
// every node for the same index, so a reader can resume from an index on
// any node without gaps or duplicates.
type Event struct {
	Index   uint64
	Term    uint64
	Type    fsm.CommandType
	Service string
	// Refused is the fsm's error code when the command changed nothing
	// (a stale generation, a conflict, ...), with Error its message.
	Refused string
	Error   string
	// Body is the command as committed (JSON).
	Body json.RawMessage
}

// EventLogSize is how many events a node keeps in memory.
const EventLogSize = 4096

// ErrEventsGone: the events after the asked index are no longer all held
// by this node (they came before its oldest event, or before the snapshot
// it started from). The reader starts again from EventsGoneError.Floor.
var ErrEventsGone = errors.New("events gone")

// EventsGoneError says from which index on events are held.
type EventsGoneError struct {
	After, Floor uint64
}

func (e *EventsGoneError) Error() string {
	return fmt.Sprintf("%v: events after index %d are no longer held by this node; it holds those after %d", ErrEventsGone, e.After, e.Floor)
}

func (e *EventsGoneError) Unwrap() error { return ErrEventsGone }

// EventLog is a ring of the last EventLogSize events, with a channel
// closed (and replaced) on every append so readers can wait for more. The
// cluster keeps one beside its state machine; tests' fake backends use
// one too.
type EventLog struct {
	mu     sync.Mutex
	buf    []entry // oldest first; described when read (not on the apply path)
	floor  uint64  // events with index <= floor are not held
	notify chan struct{}
}

// NewEventLog returns an empty event log.
func NewEventLog() *EventLog { return &EventLog{notify: make(chan struct{})} }

// entry is an applied log entry as the event log keeps it.
type entry struct {
	index, term uint64
	data        []byte
	err         error
}

// Add records an applied log entry (indexes increase): its index, term,
// data and the error the state machine answered (nil if it applied). It
// only keeps them; Since describes them.
func (l *EventLog) Add(index, term uint64, data []byte, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) == EventLogSize {
		l.floor = l.buf[0].index
		l.buf = append(l.buf[:0], l.buf[1:]...)
	}
	l.buf = append(l.buf, entry{index: index, term: term, data: append([]byte(nil), data...), err: err})
	close(l.notify)
	l.notify = make(chan struct{})
}

// Reset drops every event: the state was replaced by a snapshot at index.
func (l *EventLog) Reset(index uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = l.buf[:0]
	l.floor = index
	close(l.notify)
	l.notify = make(chan struct{})
}

// Next returns a channel closed when the next event is added (or the log
// is reset); any number of readers may wait on it.
func (l *EventLog) Next() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.notify
}

// Since returns at most max events with an index above after, and a
// channel closed when another is added; after below the oldest held is an
// *EventsGoneError.
func (l *EventLog) Since(after uint64, max int) ([]Event, <-chan struct{}, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if after < l.floor {
		return nil, l.notify, &EventsGoneError{After: after, Floor: l.floor}
	}
	i := 0
	for i < len(l.buf) && l.buf[i].index <= after {
		i++
	}
	n := min(len(l.buf)-i, max)
	out := make([]Event, n)
	for k, e := range l.buf[i : i+n] {
		out[k] = eventOf(e.index, e.term, e.data, e.err)
	}
	return out, l.notify, nil
}

// Range is the indexes of the events held: above oldest (what a reader
// that wants everything asks for), up to last (oldest when none is held).
func (l *EventLog) Range() (oldest, last uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) == 0 {
		return l.floor, l.floor
	}
	return l.floor, l.buf[len(l.buf)-1].index
}

// eventOf describes an applied log entry.
func eventOf(index, term uint64, data []byte, err error) Event {
	e := Event{Index: index, Term: term}
	env, c, derr := fsm.Decode(data)
	e.Type = env.Type
	if derr == nil {
		e.Service = fsm.ServiceOf(c)
		if b, merr := json.Marshal(c); merr == nil {
			e.Body = b
		}
	}
	if err != nil {
		e.Refused, e.Error = fsm.Code(err), err.Error()
	}
	return e
}

// Events returns at most max events this node applied after the index
// after, and a channel closed when it applies another. after below the
// oldest event held is an *EventsGoneError.
func (c *Cluster) Events(after uint64, max int) ([]Event, <-chan struct{}, error) {
	return c.fsm.events.Since(after, max)
}

// EventRange is the range of indexes of the events held: those above
// oldest, up to last.
func (c *Cluster) EventRange() (oldest, last uint64) { return c.fsm.events.Range() }
