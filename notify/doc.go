// Package notify tells the world outside the cluster what the cluster
// committed: on the leader only, it reads the node's event log (the
// committed commands, the same on every node per index, see
// cluster.EventLog) and hands each event to the configured sinks — an
// executable run once per event (the keepalived convention: the event's
// type, service and index as arguments, the event as JSON on stdin) or a
// webhook (an HTTP POST of the event, signed with HMAC-SHA256).
//
// Delivery is at least once across leader changes: the leader records in
// the replicated log, at most once per CursorInterval, how far each sink
// got (the notify.cursor command, log format level 3), and a new leader
// starts each sink after its recorded cursor. Events delivered after the
// last recorded cursor are delivered again by the next leader; receivers
// deduplicate on the event id (the Raft index). Delivery runs in its own
// goroutines and bounded queues: nothing on a switch's path waits for it.
// Decisions are recorded in DESIGN.md beside this file.
package notify
