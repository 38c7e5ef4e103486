// Package cluster runs the replicated core of an ars controller node.
//
// It owns hashicorp/raft (raft-boltdb log and stable store, file snapshots
// under the node's data directory), hashicorp/memberlist (gossip discovery
// and failure detection, node metadata carrying the Raft and API addresses),
// bootstrap by bootstrap_expect, joining, graceful leave, reconciling gossip
// membership into the Raft configuration on the leader, and a
// leadership-scoped context for leader-only work.
//
// Apply runs on the leader; on a follower it is forwarded to the leader's
// API. See DESIGN.md beside this file for the decisions and trade-offs.
package cluster
