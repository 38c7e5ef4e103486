// Package netlab is the lab's network layer: real network namespaces, a
// Linux bridge standing for the service network, one namespace per replica
// carrying the same service address, and a client that measures outages
// from outside (docs/design.md §7; lab/netlab/DESIGN.md for the decisions and
// measured numbers).
//
// Layout for a Topology with prefix P (default "arslab") and replicas r1,
// r2 (every name below is created by Up and removed by Down; nothing but
// the /run/netns entries of `ip netns add` touches the host's namespace,
// and no namespace has a default route):
//
//	P-hub       bridge P-br; ports P-c (client) and P-p0, P-p1 (replicas)
//	P-client    P-cli  CLIENT/len   (peer of P-c)
//	P-r-r1      P-svc  SERVICE/len  (peer of P-p0)
//	P-r-r2      P-svc  SERVICE/len  (peer of P-p1)
//
// A replica is attached when the hub side of its veth (P-pN) is up. Attach
// brings it up and sends gratuitous ARPs for the service address from
// inside the replica's namespace, so the client's neighbour entry moves to
// the new replica at once; Detach takes it down. Run starts a process in a
// replica's namespace (`ip netns exec`), with Stop/Cont/Kill for "suspend",
// "resume" and "power off"; SignalReplica reaches every process of a
// replica, daemonized ones too. Client queries the service address every
// few milliseconds from the client namespace and reports lost queries and
// gaps.
//
// Up first removes whatever an earlier lab with the same prefix left behind
// (a crash): it kills every process in the namespaces recorded in the
// state file or present with the prefix, then deletes those namespaces.
// Down does the same and is idempotent; Leftovers lists what is left.
//
// Everything needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2.
package netlab
