// Package driver is the contract between the leader loop (package
// controller) and the platform drivers, in the way database/sql/driver
// separates database/sql from database drivers: the Driver interface, what
// a driver reports (Observation, Event), the options a mutating call takes,
// the sentinel errors every driver wraps in an *OpError, and the helpers
// every driver needs the same way (SentinelOf, Backoff, Sleep, Subscriber).
//
// Drivers (controller/vsphere for VMs, controller/docker for containers)
// import this package and nothing of the leader loop; the leader loop
// imports this package and is handed drivers as values of Driver.
package driver
