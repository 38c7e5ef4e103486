package docker

import (
	"github.com/moby/moby/api/types/container"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
)

// observation maps an inspected container (nil: none) to what the
// controller sees.
//
//   - Power: running → on, paused → suspended, anything else (created,
//     exited, dead, removing, missing) → off.
//   - NICConnected: the container runs (or is paused) and has a live
//     endpoint on the service network. NICStartConnected: its configuration
//     lists the service network, so it is connected whenever it runs
//     (containers keep their networks across a stop and start).
//   - ChangeVersion: the first 12 characters of the container id ("" when
//     there is no container): every re-creation (restore, a stale spec)
//     moves it; network changes do not.
//   - Supports: attach, suspend (pause) and restore (re-create) always.
//   - Tools and FT do not apply to containers and stay empty.
func observation(h *host, r fsm.ReplicaSpec, c *container.InspectResponse) driver.Observation {
	o := driver.Observation{
		Replica:   r.Name,
		Target:    ContainerName(r),
		Power:     driver.PowerOff,
		Host:      h.name,
		Reachable: true,
		Supports:  driver.Capabilities{Attach: true, Suspend: true, Restore: true},
	}
	if c == nil {
		return o
	}
	o.ChangeVersion = changeVersion(c)
	st := c.State
	switch {
	case st.Paused:
		o.Power = driver.PowerSuspended
	case st.Running:
		o.Power = driver.PowerOn
	}
	ep, ok := c.NetworkSettings.Networks[serviceNetwork(r)]
	o.NICStartConnected = ok
	o.NICConnected = ok && (st.Running || st.Paused) && ep != nil && ep.EndpointID != ""
	return o
}

func changeVersion(c *container.InspectResponse) string {
	if c == nil {
		return ""
	}
	if len(c.ID) > 12 {
		return c.ID[:12]
	}
	return c.ID
}
