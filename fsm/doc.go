// Package fsm is the replicated state machine of ars: the state every
// controller node holds identically, changed only by committed Raft log
// entries.
//
// It holds the services (their spec: replicas, probe, policy), each
// replica's role (and a health field that no command reports, always
// "unknown"), each service's switch generation, its open switch intent and
// a bounded history of switches with the leader's measurements, and a
// bounded, de-duplicated ledger of detector alerts.
//
// The package is pure: no I/O, no clock, no goroutines, no randomness, and
// nothing depends on map iteration order. The same sequence of
// (index, term, entry) given to Machine.Apply produces the same state and the
// same Snapshot bytes on every node (docs/design.md §4.6). It imports nothing else of
// ars, so the controller's decide and the API can use its types and its
// PickStandby rule directly.
//
// Entries are JSON envelopes, {"v":1,"type":"switch","term":7,"body":{...}},
// built with Encode and read with Decode through a table of command
// handlers. Decoding is strict. An entry this binary cannot read (corrupt,
// unknown version or type) is an error for which Fatal
// reports true: the node must stop applying rather than skip it. A readable
// command that is refused (stale leader term, stale generation, unknown
// service or replica, invalid value, conflict with the current roles)
// returns an error wrapping one of the sentinel errors and changes nothing;
// every node refuses it the same way. Code maps errors to stable API codes.
//
// Commands (see the body types): ServiceApply, ServiceDelete, Switch,
// SwitchDone, ReplicaRole, Alert, AlertOutcome.
//
// Machine is not safe for concurrent use; the caller (cluster) serialises
// access. Accessors return deep copies.
//
// The decisions behind this package are in DESIGN.md next to this file.
package fsm
