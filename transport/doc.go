// Package transport is the Raft stream layer of an ars node and its TLS:
// a raft.StreamLayer over mutual TLS in which both sides must present a
// node certificate of the cluster CA (the node marker, NodeName), with
// bounded handshakes, and the helpers that build node TLS configurations
// from certificate files. Package cluster runs Raft on it; it imports
// nothing else of ars.
package transport
