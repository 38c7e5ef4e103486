// Package controller holds the leader-only work of an ars node: service
// probes (controller/probe), the pure decide function (controller/decide),
// the reconciler and the replica drivers.
//
// This package itself defines what the reconciler needs from a platform:
// the Driver interface (driver.go) with its observation, event and error
// types. controller/vsphere implements it for VMs on vSphere; the Docker
// driver for containers follows. Decisions are recorded in DESIGN.md
// beside this file.
package controller
