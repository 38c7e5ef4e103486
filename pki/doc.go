// Package pki makes and reads the cluster's credentials: the cluster CA,
// node certificates (mutual TLS on Raft and the API), the gossip encryption key, and API tokens with their roles
// (what `ars keygen` writes; secrets mode 0600, never overwritten).
package pki
