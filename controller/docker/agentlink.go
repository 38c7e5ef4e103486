package docker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ars-project/ars/fsm"
)

// attachLink is Attach for a replica in address handover (spec handover
// "address"): its replica agent, on the engine's host, claims and
// releases the service address inside the container's namespace, so the
// driver only gives the container its service link — the service network
// under an address the engine picks from the network's ip-range, with no
// service address recorded and no address helper (a helper left from NIC
// handover would put the address on the new link: it is removed first).
// Already linked that way: nothing. The ip-range must leave the service
// address out, as in helper mode (the engine could otherwise hand it to a
// container as its own).
func (h *host) attachLink(ctx context.Context, r fsm.ReplicaSpec, c *container.InspectResponse, addr netip.Addr) error {
	svc := serviceNetwork(r)
	ep, on := c.NetworkSettings.Networks[svc]
	live := on && ep != nil && ep.EndpointID != ""
	if live && ep.IPAddress != addr && !recordedAddr(ep).IsValid() {
		return nil
	}
	n, err := h.inspectNetwork(ctx, r, svc)
	if err != nil {
		return err
	}
	if _, err := h.helperSubnet(n, addr); err != nil {
		return err
	}
	if err := h.removeHelperAnyMode(ctx, r); err != nil {
		return err
	}
	if on {
		// Connected with the service address (NIC handover before) or a
		// stale entry: connect again under an address of its own.
		if err := h.disconnect(ctx, svc, c.ID); err != nil && !errors.Is(err, errNotConnected) {
			return err
		}
	}
	err = h.call(ctx, "connect", h.d.cfg.CallTimeout, func(ctx context.Context) error {
		_, err := h.cli.NetworkConnect(ctx, svc, client.NetworkConnectOptions{Container: c.ID})
		return err
	})
	if err != nil {
		return fmt.Errorf("connect %s to network %s: %w", ContainerName(r), svc, err)
	}
	return nil
}

// removeHelperAnyMode removes the replica's address helper whatever the
// host's address mode (a host in endpoint mode has none, and the inspect
// finds nothing).
func (h *host) removeHelperAnyMode(ctx context.Context, r fsm.ReplicaSpec) error {
	h.forget(r, true)
	hc, err := h.inspectHelper(ctx, r)
	if err != nil || hc == nil {
		return err
	}
	h.log.Info("removing the address helper of a replica in address handover", "replica", r.Name, "helper", HelperName(r))
	return h.remove(ctx, hc.ID)
}
