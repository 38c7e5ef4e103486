// Package vsphere is the vSphere implementation of controller.Driver, on
// govmomi: it attaches and detaches a replica VM's service NIC, powers it
// on, suspends, resumes and powers it off, reverts it to its clean
// snapshot, observes it, and watches every replica VM through a property
// collector so drift (a VM powered off by hand, an FT failover) is seen
// within about a second.
//
// One Driver serves one vCenter; a Set groups the Drivers of several
// vCenters as one driver and routes each replica to the vCenter it names
// (fsm.ReplicaSpec.VCenter), so each vCenter keeps a session, timeouts and
// faults of its own. Driver.Run holds exactly one session for
// as long as its context lives (the node's leadership): it logs in, keeps
// the session alive, logs in again transparently when vCenter drops it,
// and logs out when leadership ends, cancelling operations in flight. A
// per-operation-login mode reproduces the older script behaviour for the
// benchmark. Decisions and trade-offs are in controller/DESIGN.md.
package vsphere
