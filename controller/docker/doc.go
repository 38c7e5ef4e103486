// Package docker is the Docker Engine implementation of controller.Driver
// for container replicas, on the official Engine API client
// (github.com/moby/moby/client, with API version negotiation; tested
// against engine 20.10, API 1.41).
//
// One container per replica, named "ars-<replica>" and labelled
// ars.managed, ars.replica, ars.impl and ars.spec-hash (image + container
// spec), so the driver finds its own containers, never adopts or removes
// anybody else's, and notices a changed spec. The operations map as
// follows (every one reads the container first and acts only if needed,
// so a repeat makes no mutating API call):
//
//   - Attach: connect the running container to its service network
//     (spec.Container.Network, default "ars-service") with the service
//     address, passed as controller.ServiceAddr (required).
//   - Detach: disconnect it (running, paused or stopped; missing: no-op).
//   - PowerOn: create the container if missing (image + spec, restart
//     policy "no", on spec.Container.Networks or the driver's park network,
//     never on the service network), start it if stopped, unpause it if
//     paused.
//   - Suspend / Resume: pause / unpause.
//   - PowerOff: stop (SIGKILL at once by default).
//   - Restore: remove (force) and create again, left stopped and detached.
//   - Observe: inspect; Watch: the engine's event stream.
//
// The driver holds no session: New connects lazily and any number of calls
// may run concurrently. Decisions, trade-offs and measurements are in
// DESIGN.md beside this file.
package docker
