// Package controller will hold the leader-only work of an ars node: service
// probes, the pure decide function, the reconciler and the replica drivers
// (vSphere via govmomi, containers via the Docker Engine API).
//
// Nothing of it is built yet. What the cluster already offers it is
// described in DESIGN.md beside this file.
package controller
