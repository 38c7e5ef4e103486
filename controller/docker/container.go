package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/ars-project/ars/fsm"
)

// Labels the driver puts on every container it creates (and on the park
// network). labelReplica is how it recognises its own containers.
const (
	labelManaged  = "ars.managed"   // "true"
	labelReplica  = LabelReplica    // replica name
	labelImpl     = "ars.impl"      // implementation, for people
	labelSpecHash = "ars.spec-hash" // specHash of the definition it was created from
)

// LabelReplica is the label that names the replica a container belongs
// to, on every container the driver creates.
const LabelReplica = "ars.replica"

// specVersion is part of the spec hash: bump it when the way containers
// are created changes, so existing containers are re-created.
const specVersion = "1"

// specHash identifies a container definition: image and container spec
// (and how this driver builds containers from them).
func specHash(r fsm.ReplicaSpec) string {
	var c fsm.ContainerSpec
	if r.Container != nil {
		c = *r.Container
	}
	b, _ := json.Marshal(struct {
		V     string
		Image string
		C     fsm.ContainerSpec
	}{specVersion, r.Image, c})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// onNetwork reports whether the container has an entry for the network
// (connected now if it runs, or connected when it next starts).
func onNetwork(c *container.InspectResponse, net string) bool {
	_, ok := c.NetworkSettings.Networks[net]
	return ok
}

// simple runs one quick state-changing call.
func (h *host) simple(ctx context.Context, method, id string, fn func(ctx context.Context) error) error {
	if err := h.call(ctx, method, h.d.cfg.CallTimeout, fn); err != nil {
		return fmt.Errorf("%s %s: %w", method, id[:12], err)
	}
	return nil
}

func (h *host) remove(ctx context.Context, id string) error {
	err := h.call(ctx, "remove", h.d.cfg.SlowCallTimeout, func(ctx context.Context) error {
		_, err := h.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
		return err
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("remove container %s: %w", id[:12], err)
	}
	return nil
}

// replace clears the way for a fresh container of r by removing c. If the
// engine answers but cannot remove it, and it does not run, c is renamed
// aside (staleName) so the replica can be created again under its own
// name: an engine stopped while it started a container with the
// fuse-overlayfs storage driver leaves that container's root filesystem
// mounted by an orphaned helper, and from then on every removal of it
// fails with "device or resource busy" until someone unmounts it on the
// engine's host. Without the rename the replica could never be restored
// there. A container that still runs is never renamed aside (it may hold
// the service address); an engine that cannot be reached is retried.
// Containers renamed aside are removed by a later sweep.
func (h *host) replace(ctx context.Context, r fsm.ReplicaSpec, c *container.InspectResponse) error {
	h.sweep(ctx, r)
	rmErr := h.remove(ctx, c.ID)
	if rmErr == nil {
		h.dropHelper(ctx, r)
		return nil
	}
	if s, _ := classify(rmErr); s == errUnavailable {
		return rmErr
	}
	now, err := h.inspect(ctx, r)
	switch {
	case err != nil:
		return errors.Join(rmErr, fmt.Errorf("after the failed removal: %w", err))
	case now == nil || now.ID != c.ID:
		h.dropHelper(ctx, r) // gone after all
		return nil
	case now.State.Running || now.State.Paused || now.State.Restarting:
		return rmErr
	}
	aside := staleName(r, c.ID)
	err = h.call(ctx, "rename", h.d.cfg.CallTimeout, func(ctx context.Context) error {
		_, err := h.cli.ContainerRename(ctx, c.ID, client.ContainerRenameOptions{NewName: aside})
		return err
	})
	if err != nil {
		return fmt.Errorf("%w (and renaming it aside to %s failed: %w)", rmErr, aside, err)
	}
	h.log.Warn("the engine cannot remove the replica's old container: renamed it aside so the replica can be created again; its host needs attention (a leaked root filesystem mount)",
		"replica", r.Name, "container", aside, "id", c.ID[:12], "err", rmErr)
	h.d.m.stale.WithLabelValues(h.name).Inc()
	h.dropHelper(ctx, r)
	return nil
}

// staleName is the name a container that could not be removed is
// renamed to. Replica names have no capitals, so it is never the name of
// a replica's container.
func staleName(r fsm.ReplicaSpec, id string) string {
	return ContainerName(r) + "-STALE-" + id[:12]
}

// sweep removes what replace renamed aside for r earlier, where the
// engine can remove it now; what it still cannot stays for the next
// sweep.
func (h *host) sweep(ctx context.Context, r fsm.ReplicaSpec) {
	var res client.ContainerListResult
	err := h.call(ctx, "list", h.d.cfg.CallTimeout, func(ctx context.Context) error {
		var err error
		res, err = h.cli.ContainerList(ctx, client.ContainerListOptions{All: true,
			Filters: make(client.Filters).Add("label", labelReplica+"="+r.Name)})
		return err
	})
	if err != nil {
		h.log.Debug("cannot list containers renamed aside", "replica", r.Name, "err", err)
		return
	}
	prefix := "/" + ContainerName(r) + "-STALE-"
	for _, c := range res.Items {
		if !slices.ContainsFunc(c.Names, func(n string) bool { return strings.HasPrefix(n, prefix) }) {
			continue
		}
		if err := h.remove(ctx, c.ID); err != nil {
			h.log.Debug("a container renamed aside still cannot be removed", "replica", r.Name, "id", c.ID[:12], "err", err)
			continue
		}
		h.log.Info("removed a container renamed aside earlier", "replica", r.Name, "id", c.ID[:12])
	}
}

// start starts a stopped container. If the engine refuses because the
// container's service-network address is held by another container (the
// replica was attached, stopped, and another took over), it drops the
// service network from the stopped container and starts it detached: it
// could not come up on the service address anyway.
func (h *host) start(ctx context.Context, r fsm.ReplicaSpec, id string, onService bool) error {
	startOnce := func() error {
		return h.call(ctx, "start", h.d.cfg.SlowCallTimeout, func(ctx context.Context) error {
			_, err := h.cli.ContainerStart(ctx, id, client.ContainerStartOptions{})
			return err
		})
	}
	err := startOnce()
	if err != nil && onService && strings.Contains(err.Error(), "Address already in use") {
		h.log.Warn("service address taken by another container; starting the replica detached", "replica", r.Name)
		if derr := h.disconnect(ctx, serviceNetwork(r), id); derr != nil {
			return fmt.Errorf("start %s: %w (and detaching it failed: %w)", ContainerName(r), err, derr)
		}
		err = startOnce()
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", ContainerName(r), err)
	}
	return nil
}

// create makes the replica's container from its image and spec, not
// started, on its other networks (or the park network) and not on the
// service network. Everything that can be checked is checked first, and a
// container made before a later step failed is removed, so a failed create
// leaves nothing behind.
func (h *host) create(ctx context.Context, r fsm.ReplicaSpec) (string, error) {
	var cs fsm.ContainerSpec
	if r.Container != nil {
		cs = *r.Container
	}
	if cs.AppArmor != "" {
		if err := h.checkAppArmor(ctx, r, cs.AppArmor); err != nil {
			return "", err
		}
	}
	err := h.call(ctx, "image-inspect", h.d.cfg.CallTimeout, func(ctx context.Context) error {
		_, err := h.cli.ImageInspect(ctx, r.Image)
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return "", fmt.Errorf("%w: replica %s: image %q is not present on docker host %s (the driver never pulls; build the lab images with `make images`, or load the image onto the host)", errNotFound, r.Name, r.Image, h.name)
		}
		return "", fmt.Errorf("inspect image %s: %w", r.Image, err)
	}
	nets := slices.Clone(cs.Networks)
	if len(nets) == 0 {
		if err := h.ensurePark(ctx); err != nil {
			return "", err
		}
		nets = []string{h.d.cfg.ParkNetwork}
	} else {
		for _, n := range nets {
			if err := h.networkExists(ctx, r, n); err != nil {
				return "", err
			}
		}
	}

	res := container.Resources{}
	if cs.MemoryMB > 0 {
		res.Memory = int64(cs.MemoryMB) << 20
		res.MemorySwap = res.Memory // no swap on top
	}
	if cs.CPUMilli > 0 {
		res.NanoCPUs = int64(cs.CPUMilli) * 1_000_000
	}
	if cs.PidsMax > 0 {
		p := int64(cs.PidsMax)
		res.PidsLimit = &p
	}
	hc := &container.HostConfig{
		NetworkMode:   container.NetworkMode(nets[0]),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Resources:     res,
	}
	if cs.AppArmor != "" {
		hc.SecurityOpt = []string{"apparmor=" + cs.AppArmor}
	}
	cfg := &container.Config{
		Image:    r.Image,
		Env:      slices.Clone(cs.Env),
		Hostname: r.Name,
		Labels: map[string]string{
			labelManaged:  "true",
			labelReplica:  r.Name,
			labelImpl:     r.Impl,
			labelSpecHash: specHash(r),
		},
	}
	if len(cs.Command) > 0 {
		cfg.Cmd = slices.Clone(cs.Command)
	}
	var id string
	err = h.call(ctx, "create", h.d.cfg.SlowCallTimeout, func(ctx context.Context) error {
		res, err := h.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name:       ContainerName(r),
			Config:     cfg,
			HostConfig: hc,
			// One network at create: engines before API 1.44 refuse more.
			NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{nets[0]: {}}},
		})
		id = res.ID
		return err
	})
	if err != nil {
		if id != "" {
			h.cleanup(ctx, id)
		}
		s, _ := classify(err)
		if s == errConflict {
			// The name is taken: created concurrently (the next attempt
			// finds it) or a foreign container (the next attempt says so).
			return "", fmt.Errorf("create %s: %w: %w", ContainerName(r), errRetry, err)
		}
		return "", fmt.Errorf("create %s: %w", ContainerName(r), err)
	}
	for _, n := range nets[1:] {
		err := h.call(ctx, "connect", h.d.cfg.CallTimeout, func(ctx context.Context) error {
			_, err := h.cli.NetworkConnect(ctx, n, client.NetworkConnectOptions{Container: id})
			return err
		})
		if err != nil {
			h.cleanup(ctx, id)
			return "", fmt.Errorf("connect new container %s to network %s: %w", ContainerName(r), n, err)
		}
	}
	h.log.Info("container created", "replica", r.Name, "container", ContainerName(r), "id", id[:12], "image", r.Image)
	return id, nil
}

// cleanup removes a half-made container, even if ctx is already done.
func (h *host) cleanup(ctx context.Context, id string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.d.cfg.SlowCallTimeout)
	defer cancel()
	if err := h.remove(cctx, id); err != nil {
		h.log.Error("cannot remove a half-created container", "id", id, "err", err)
	}
}

// checkAppArmor refuses a profile on an engine without AppArmor: running
// the replica unconfined would silently remove the exploit detector that
// AppArmor denials are.
func (h *host) checkAppArmor(ctx context.Context, r fsm.ReplicaSpec, profile string) error {
	h.mu.Lock()
	known := h.apparmor
	h.mu.Unlock()
	if known == nil {
		var info client.SystemInfoResult
		err := h.call(ctx, "info", h.d.cfg.CallTimeout, func(ctx context.Context) error {
			var err error
			info, err = h.cli.Info(ctx, client.InfoOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("read engine info: %w", err)
		}
		on := slices.ContainsFunc(info.Info.SecurityOptions, func(s string) bool {
			return s == "apparmor" || strings.HasPrefix(s, "name=apparmor")
		})
		h.mu.Lock()
		h.apparmor = &on
		h.mu.Unlock()
		known = &on
	}
	if !*known {
		return fmt.Errorf("%w: replica %s asks for AppArmor profile %q but docker host %s has no AppArmor (docker info shows no apparmor security option); it would run unconfined and its exploit detection would be gone", errUnsupported, r.Name, profile, h.name)
	}
	return nil
}

// networkExists checks a network the container needs.
func (h *host) networkExists(ctx context.Context, r fsm.ReplicaSpec, name string) error {
	_, err := h.inspectNetwork(ctx, r, name)
	return err
}

func (h *host) inspectNetwork(ctx context.Context, r fsm.ReplicaSpec, name string) (network.Inspect, error) {
	var res client.NetworkInspectResult
	err := h.call(ctx, "network-inspect", h.d.cfg.CallTimeout, func(ctx context.Context) error {
		var err error
		res, err = h.cli.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return network.Inspect{}, fmt.Errorf("%w: replica %s: network %q does not exist on docker host %s (create it first, e.g. docker network create %s)", errNotFound, r.Name, name, h.name, name)
		}
		return network.Inspect{}, fmt.Errorf("inspect network %s: %w", name, err)
	}
	if res.Network.Name != name {
		// The engine matches ID prefixes too; insist on the name.
		return network.Inspect{}, fmt.Errorf("%w: replica %s: network %q does not exist on docker host %s (%q matched network %s by id)", errNotFound, r.Name, name, h.name, name, res.Network.Name)
	}
	return res.Network, nil
}

// ensurePark creates the park network if it is missing: an internal bridge
// (no route out, no NAT) without inter-container traffic.
//
// Serialised per engine: the reconciler powers replicas on concurrently, and
// engine 20.10 creates a second network of the same name when two creates
// race, after which every start on it fails as "ambiguous".
func (h *host) ensurePark(ctx context.Context) error {
	h.parkMu.Lock()
	defer h.parkMu.Unlock()
	name := h.d.cfg.ParkNetwork
	err := h.call(ctx, "network-inspect", h.d.cfg.CallTimeout, func(ctx context.Context) error {
		_, err := h.cli.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
		return err
	})
	if err == nil {
		return nil
	}
	if !isNotFound(err) {
		return fmt.Errorf("inspect park network %s: %w", name, err)
	}
	err = h.call(ctx, "network-create", h.d.cfg.SlowCallTimeout, func(ctx context.Context) error {
		_, err := h.cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{
			Driver:   "bridge",
			Internal: true,
			Options:  map[string]string{"com.docker.network.bridge.enable_icc": "false"},
			Labels:   map[string]string{labelManaged: "true"},
		})
		return err
	})
	if err != nil {
		if s, _ := classify(err); s == errConflict {
			return nil // created concurrently
		}
		return fmt.Errorf("create park network %s: %w", name, err)
	}
	h.log.Info("park network created", "network", name)
	return nil
}

// attach connects a running container to the service network with addr.
func (h *host) attach(ctx context.Context, r fsm.ReplicaSpec, c *container.InspectResponse, addr netip.Addr) error {
	svc := serviceNetwork(r)
	if ep, ok := c.NetworkSettings.Networks[svc]; ok {
		if ep.EndpointID != "" && ep.IPAddress == addr {
			return nil // attached with this address already
		}
		// Attached with another address (or a stale entry): reconnect.
		h.log.Warn("container is on the service network with another address; reconnecting",
			"replica", r.Name, "network", svc, "has", ep.IPAddress, "want", addr)
		if err := h.disconnect(ctx, svc, c.ID); err != nil && !errors.Is(err, errNotConnected) {
			return err
		}
	}
	n, err := h.inspectNetwork(ctx, r, svc)
	if err != nil {
		return err
	}
	if !containsAddr(n, addr) {
		return fmt.Errorf("%w: service address %s is not in a subnet of network %s on docker host %s", errInvalid, addr, svc, h.name)
	}
	// The engine allows one endpoint per address (a second connect fails
	// and, on engine 20.10, leaves a stale entry on the loser). Free the
	// address first if another ars container holds it.
	for id, ep := range n.Containers {
		if ep.IPv4Address.Addr() != addr || id == c.ID {
			continue
		}
		holder, err := h.labelsOf(ctx, id)
		if err != nil {
			return err
		}
		if holder[labelManaged] != "true" {
			return fmt.Errorf("%w: service address %s on network %s is held by container %s, which ars does not manage", errConflict, addr, svc, strings.TrimPrefix(ep.Name, "/"))
		}
		h.log.Warn("service address held by another replica; detaching it first (one endpoint per address on a docker network)",
			"replica", r.Name, "holder", ep.Name, "address", addr)
		if err := h.disconnect(ctx, svc, id); err != nil && !errors.Is(err, errNotConnected) {
			return fmt.Errorf("free service address %s from %s: %w", addr, ep.Name, err)
		}
	}
	err = h.call(ctx, "connect", h.d.cfg.CallTimeout, func(ctx context.Context) error {
		_, err := h.cli.NetworkConnect(ctx, svc, client.NetworkConnectOptions{
			Container:      c.ID,
			EndpointConfig: &network.EndpointSettings{IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: addr}},
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("connect %s to network %s as %s: %w", ContainerName(r), svc, addr, err)
	}
	return nil
}

func containsAddr(n network.Inspect, a netip.Addr) bool {
	for _, c := range n.IPAM.Config {
		if c.Subnet.IsValid() && c.Subnet.Contains(a) {
			return true
		}
	}
	return false
}

func (h *host) labelsOf(ctx context.Context, id string) (map[string]string, error) {
	var res client.ContainerInspectResult
	err := h.call(ctx, "inspect", h.d.cfg.CallTimeout, func(ctx context.Context) error {
		var err error
		res, err = h.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("%w: the address holder %s vanished", errRetry, id[:12])
		}
		return nil, fmt.Errorf("inspect address holder %s: %w", id[:12], err)
	}
	if res.Container.Config == nil {
		return nil, nil
	}
	return res.Container.Config.Labels, nil
}

// errNotConnected: the engine says the container is not on the network
// although its configuration lists it (a stale entry that engine 20.10
// leaves after a failed connect on a running container; it goes away when
// the container stops).
var errNotConnected = errors.New("engine reports the container not connected")

// detach removes the container from the service network.
func (h *host) detach(ctx context.Context, r fsm.ReplicaSpec, c *container.InspectResponse) error {
	svc := serviceNetwork(r)
	if !onNetwork(c, svc) {
		return nil
	}
	err := h.disconnect(ctx, svc, c.ID)
	if errors.Is(err, errNotConnected) {
		h.log.Warn("the engine keeps a stale service-network entry on a running container; it is not connected now and the entry clears when the container stops",
			"replica", r.Name, "network", svc)
		return nil
	}
	return err
}

func (h *host) disconnect(ctx context.Context, net, id string) error {
	disc := func(force bool) error {
		return h.call(ctx, "disconnect", h.d.cfg.CallTimeout, func(ctx context.Context) error {
			_, err := h.cli.NetworkDisconnect(ctx, net, client.NetworkDisconnectOptions{Container: id, Force: force})
			return err
		})
	}
	err := disc(false)
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "is not connected to") {
		return fmt.Errorf("disconnect %s from %s: %w: %w", id[:12], net, errNotConnected, err)
	}
	if isNotFound(err) {
		// The network itself is gone; force drops the entry by name.
		if ferr := disc(true); ferr == nil {
			return nil
		}
	}
	return fmt.Errorf("disconnect %s from %s: %w", id[:12], net, err)
}
