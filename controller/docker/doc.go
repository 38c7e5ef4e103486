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
//     (spec.Container.Network, default "ars-service") and give it the
//     service address, passed as controller.ServiceAddr (required). In the
//     default helper mode the container joins under an address of its own
//     and its address helper — a container from the image
//     Config.HelperImage (cmd/ars-nethelper) sharing its network namespace
//     with NET_ADMIN and NET_RAW only — adds the service address and
//     announces it, so two replicas of one engine can hold it during a
//     make-before-break switch; in endpoint mode the service address is
//     the endpoint's own and the engine gives it to one container at a
//     time.
//   - Detach: disconnect it (running, paused or stopped; missing: no-op).
//   - PowerOn: create the container if missing (image + spec, restart
//     policy "no", on spec.Container.Networks or the driver's park network,
//     never on the service network), start it if stopped, unpause it if
//     paused; in helper mode also (re-)create its helper in the
//     container's current namespace, armed with the service address
//     (driver.ServiceAddr, optional), so that the next Attach is the
//     connect alone: the armed helper takes the address when the link
//     comes up.
//   - Suspend / Resume: pause / unpause.
//   - PowerOff: stop (SIGKILL at once by default).
//   - Restore: remove (force) and create again, left stopped and detached.
//   - Observe: inspect; Watch: the engine's event stream.
//
// The driver holds no session: New connects lazily and any number of calls
// may run concurrently. Decisions, trade-offs and measurements are in
// DESIGN.md beside this file.
package docker
