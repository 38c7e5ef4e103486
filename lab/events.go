package lab

import (
	"slices"
	"sync"
	"time"
)

// LabEvent is one thing the lab did to a replica (the Mirror following the
// simulator, or an attack), a node or the vCenter (a fault), for histories and for finding out what a lost
// query met.
type LabEvent struct {
	At      time.Time `json:"at"`
	Replica string    `json:"replica,omitempty"`
	// Node is set for what the lab did to a controller node (node-kill,
	// node-start, node-stop, node-cont, node-partition, node-heal,
	// node-upgrade).
	Node string `json:"node,omitempty"`
	// What: start, kill, suspend, resume, link, unlink, revert, dos,
	// exploit (a replica); node-* (a node); vc-delay, vc-fail, vc-clear,
	// vc-terminate (the vCenter); vc-call (a node's call that changes a
	// VM, Detail "METHOD OBJECT").
	What   string `json:"what"`
	Detail string `json:"detail,omitempty"`
	Err    string `json:"err,omitempty"`
}

// maxEvents bounds the events kept (the oldest go first).
const maxEvents = 10000

type eventLog struct {
	mu  sync.Mutex
	evs []LabEvent
}

func (e *eventLog) add(ev LabEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.evs) >= maxEvents {
		e.evs = slices.Delete(e.evs, 0, len(e.evs)-maxEvents+1)
	}
	e.evs = append(e.evs, ev)
}

// Events returns the lab's events at or after since, oldest first.
func (l *Lab) Events(since time.Time) []LabEvent {
	l.events.mu.Lock()
	defer l.events.mu.Unlock()
	i, _ := slices.BinarySearchFunc(l.events.evs, since, func(e LabEvent, t time.Time) int { return e.At.Compare(t) })
	return slices.Clone(l.events.evs[i:])
}

// record logs what happened to replica and passes err through.
func (l *Lab) record(replica, what string, err error) error {
	ev := LabEvent{At: time.Now(), Replica: replica, What: what}
	if err != nil {
		ev.Err = err.Error()
	}
	l.events.add(ev)
	return err
}
