// Package replicaagent is the replica agent and its client: the small
// HTTPS server (`ars replica-agent`) that runs beside one Linux replica —
// in a VM, or in a container's network namespace — and puts the service
// address on the replica's service link or takes it off when the leader
// says so, and the client the leader calls it with.
//
// Address handover moves the service without a platform call: every
// standby's service link is connected but holds no service address, and a
// switch is one claim on the new active (the address added and announced
// with gratuitous ARPs) — milliseconds, where a vCenter NIC task takes
// hundreds. The old active is then told to release the address where it
// still answers, and fenced by the platform (its NIC disconnected) off
// the critical path; see DESIGN.md.
//
// The agent trusts one kind of caller: a controller node, identified by a
// node certificate of the cluster CA (mutual TLS). It serves with a
// replica certificate of that CA, which no other part of ars accepts.
// Every command carries the leader's Raft term and the service's switch
// generation; the agent keeps the highest pair it has seen, on disk, and
// refuses older ones, so a deposed leader cannot move the address back.
package replicaagent
