// Package transport is the Raft stream layer of an ars node and its TLS:
// a raft.StreamLayer over mutual TLS in which both sides must present a
// node certificate of the cluster CA (the node marker, NodeName), with
// bounded handshakes, and the helpers that build node TLS configurations
// from certificate files. Replica certificates (ReplicaName) serve only
// the replica agent (AgentServerTLS, and AgentClientTLS on the node that
// calls it); every other configuration built here refuses them. Package
// cluster runs Raft on it; it imports nothing else of ars.
package transport
