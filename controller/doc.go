// Package controller holds the leader-only work of an ars node: service
// probes (controller/probe), the pure decide function (controller/decide),
// the reconciler and the replica drivers.
//
// What the reconciler needs from a platform is the contract of package
// controller/driver (the Driver interface, observations, events, errors);
// controller/vsphere implements it for VMs on vSphere and
// controller/docker for containers, and neither imports this package.
// Decisions are recorded in DESIGN.md beside this file.
package controller
