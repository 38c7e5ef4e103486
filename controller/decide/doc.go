// Package decide is the controller's decision: a pure function from the
// replicated state of one service, an event and the leader's clock reading
// to the fsm commands the leader should commit.
//
//	dec, err := decide.Decide(decide.State{Service: svc, Capabilities: caps}, ev, now)
//	for _, c := range dec.Commands {
//		data, _ := fsm.Encode(term, c) // then cluster.Apply
//	}
//
// Events are DoSVerdict (a probe verdict), Alert (a committed detector alert,
// kind exploit or dos; AlertFromRecord converts a ledger record) and
// ManualSwitch (an operator request). The Decision says what to commit —
// at most one command, fsm.Switch or fsm.ReplicaRole quarantine — and, in
// Outcome and Reason, why, including why nothing is done: already handled,
// not active, stale, unconfirmed, damped (with RetryAt), no eligible
// replica.
//
// The rules, in short (controller/DESIGN.md, "decide", has the reasoning):
//
//   - An exploit alert on the active replica switches away from it at once,
//     never damped, in the policy's exploit mode (make-before-break by
//     default). On a standby, suspended or maintenance replica it
//     quarantines that replica. On a quarantined or recovering replica it is
//     already handled: many alerts for one exploit give one switch. So is an
//     alert committed before the replica's last restore (any kind).
//   - A DoS verdict or dos alert on the active replica switches away from it
//     in the policy's DoS mode (make-before-break by default). A verdict on
//     an active that answered after its switch started (AnsweredAt) is a
//     new failure: no min_dwell, and max_switches only if the switch would
//     stay within the active's impl. So is a verdict on an active whose
//     driver is unavailable (Capabilities): waiting cannot bring it up.
//     Otherwise, and for every dos alert,
//     flap damping may refuse: the active has been active for less than
//     policy.min_dwell, or policy.max_switches switches started within
//     policy.window. A verdict needs a quorum when probe.confirm is
//     "quorum", and is stale if reached before its replica took over. DoS
//     reports on other replicas change nothing.
//   - A manual switch goes to the named replica if it can become active (an
//     error otherwise), or to the best replica. It is never damped.
//   - The replica to switch to comes from fsm.RankStandby (the diversity
//     rule, or round-robin), without replicas whose driver is unavailable.
//     Of the best class — another impl than the attacked replica (rotation
//     "diverse"), then answering the leader's health probe, then restorable
//     by its driver, then not stopped — the current standby wins if it is
//     in it (it is running), otherwise the first ranked. A quarantined,
//     recovering or maintenance replica is never chosen (docs/design.md §4.4).
//
// Every command expects the generation of the state it was decided on, so a
// decision overtaken by any role change is refused by the FSM with
// fsm.ErrStaleGeneration on every node; the caller decides again on the
// fresh state. Switch.NextStandby is left empty: the FSM picks the next
// standby with the same diversity rule.
//
// Decide does no I/O, reads no clock, starts no goroutine, uses no
// randomness and does not depend on map iteration order; it keeps no state
// between calls and never modifies its input.
package decide
