package docker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/ars-project/ars/fsm"
)

// The address helper (AddressHelper mode): a container per replica, from
// the trusted image Config.HelperImage (cmd/ars-nethelper), sharing the
// replica's network namespace with only NET_ADMIN and NET_RAW. The helper
// is armed when it is created (PowerOn, off a switch's critical path):
// its command line names the service network's subnet and the service
// address, and it puts that address on the replica's link in the subnet
// the moment the link is up, announcing it. Attach then only connects the
// replica to the service network under an address of its own (the engine
// allocates it from the network's ip-range, which leaves the service
// address out), recording the service address in the endpoint's driver
// options. A helper made without the address (PowerOn without
// driver.ServiceAddr) is armed by nobody; Attach then runs `ars-nethelper
// add` in it, as before arming existed. Detach disconnects the replica:
// its link, and the service address with it, go away. See DESIGN.md, "Two
// containers, one address".

// LabelHelperOf is the label that names the replica an address helper
// container serves.
const LabelHelperOf = "ars.helper-of"

const (
	labelHelperOf = LabelHelperOf
	// optServiceAddr is the endpoint driver option in which Attach
	// records the service address it put in the container's namespace
	// (the network drivers ignore options they do not know). It survives
	// a stop, so PowerOn can put the address back after a start.
	optServiceAddr = "ars.service-address"
	// helperBinary is the helper's program in its image.
	helperBinary = "/ars-nethelper"
	// helperOutputMax bounds what the driver keeps of an exec's output.
	helperOutputMax = 4096
)

// HelperName is the name of a replica's address helper container.
// Replica names have no capitals, so it is never a replica's container.
func HelperName(r fsm.ReplicaSpec) string { return ContainerName(r) + "-HELPER" }

// helperState is a helper known to run in the namespace of one start of
// its replica's container.
type helperState struct {
	replicaID, started string // the replica container's id and State.StartedAt
	id                 string // the helper container's id
	arm                arming // what it was armed with (its command line)
}

// arming is what an armed helper keeps on its replica's link in subnet:
// addr. The zero value is an unarmed helper.
type arming struct {
	subnet netip.Prefix
	addr   netip.Addr
	// port is the service's UDP port: the helper announces the address
	// once a socket serves it there (0: at once; see ars-nethelper).
	port uint16
}

func (a arming) armed() bool { return a.addr.IsValid() && a.subnet.IsValid() }

// matches: a is armed as want asks; a want without a port takes any.
func (a arming) matches(want arming) bool {
	return a.subnet == want.subnet && a.addr == want.addr && (want.port == 0 || a.port == want.port)
}

// serves: a does want's work, if perhaps without waiting for the port (a
// helper armed before ports were passed announces at once). Attach uses
// such a helper as it is: replacing it would put a helper's start on a
// switch's critical path; PowerOn re-arms it (matches).
func (a arming) serves(want arming) bool {
	return a.matches(want) || a.subnet == want.subnet && a.addr == want.addr && a.port == 0
}

// cmd is the helper's command line (after the image's entrypoint).
func (a arming) cmd() []string {
	if !a.armed() {
		return []string{"serve"}
	}
	cmd := []string{"serve", "-subnet", a.subnet.String(), "-addr", a.addr.String()}
	if a.port != 0 {
		cmd = append(cmd, "-port", strconv.Itoa(int(a.port)))
	}
	return cmd
}

// armingOf reads a helper container's arming from its command line, which
// only the Engine API sets (nothing in the replica's namespace can change
// it).
func armingOf(hc *container.InspectResponse) arming {
	if hc.Config == nil {
		return arming{}
	}
	cmd := hc.Config.Cmd
	if len(cmd) != 5 && len(cmd) != 7 || cmd[0] != "serve" || cmd[1] != "-subnet" || cmd[3] != "-addr" {
		return arming{}
	}
	p, err1 := netip.ParsePrefix(cmd[2])
	a, err2 := netip.ParseAddr(cmd[4])
	if err1 != nil || err2 != nil {
		return arming{}
	}
	arm := arming{subnet: p, addr: a}
	if len(cmd) == 7 {
		port, err := strconv.ParseUint(cmd[6], 10, 16)
		if cmd[5] != "-port" || err != nil {
			return arming{}
		}
		arm.port = uint16(port)
	}
	return arm
}

// ensuredState records that Attach (or PowerOn) put addr into the
// namespace of one start of the replica's container.
type ensuredState struct {
	replicaID, started string
	addr               netip.Addr
}

func incarnation(c *container.InspectResponse) (id, started string) {
	return c.ID, c.State.StartedAt
}

func (h *host) isEnsured(r fsm.ReplicaSpec, c *container.InspectResponse, addr netip.Addr) bool {
	id, started := incarnation(c)
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.ensured[r.Name]
	return ok && e.replicaID == id && e.started == started && e.addr == addr
}

func (h *host) setEnsured(r fsm.ReplicaSpec, c *container.InspectResponse, addr netip.Addr) {
	id, started := incarnation(c)
	h.mu.Lock()
	h.ensured[r.Name] = ensuredState{replicaID: id, started: started, addr: addr}
	h.mu.Unlock()
}

// forget drops what the driver remembers of a replica's address and
// helper (its container was stopped, detached, removed or re-created).
func (h *host) forget(r fsm.ReplicaSpec, helperToo bool) {
	h.mu.Lock()
	delete(h.ensured, r.Name)
	if helperToo {
		delete(h.helpers, r.Name)
	}
	h.mu.Unlock()
}

// recordedAddr is the service address Attach recorded on the container's
// service-network entry (invalid if none).
func recordedAddr(ep *network.EndpointSettings) netip.Addr {
	if ep == nil {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(ep.DriverOpts[optServiceAddr])
	return a
}

// helperSubnet finds the subnet of the service network that holds addr
// and checks that the engine never hands addr out on its own: a replica
// connected under an automatic address must not get the service address
// as that address.
func (h *host) helperSubnet(n network.Inspect, addr netip.Addr) (netip.Prefix, error) {
	for _, c := range n.IPAM.Config {
		if !c.Subnet.IsValid() || !c.Subnet.Contains(addr) {
			continue
		}
		switch {
		case !c.IPRange.IsValid():
			return netip.Prefix{}, fmt.Errorf("%w: network %s on docker host %s has no ip-range: the address helper connects each replica under an address the engine picks, and it could pick the service address %s; recreate the network with an ip-range that leaves %s out (docker network create --ip-range), or set address_mode %q for this host",
				errInvalid, n.Name, h.name, addr, addr, AddressEndpoint)
		case c.IPRange.Contains(addr):
			return netip.Prefix{}, fmt.Errorf("%w: the ip-range %s of network %s on docker host %s holds the service address %s: the engine could give it to a replica as its own address; recreate the network with an ip-range that leaves %s out, or set address_mode %q for this host",
				errInvalid, c.IPRange, n.Name, h.name, addr, addr, AddressEndpoint)
		}
		return c.Subnet.Masked(), nil
	}
	return netip.Prefix{}, fmt.Errorf("%w: service address %s is not in a subnet of network %s on docker host %s", errInvalid, addr, n.Name, h.name)
}

// attachHelper is Attach in AddressHelper mode (see the top of this file).
func (h *host) attachHelper(ctx context.Context, r fsm.ReplicaSpec, c *container.InspectResponse, addr netip.Addr, port uint16) error {
	svc := serviceNetwork(r)
	ep, on := c.NetworkSettings.Networks[svc]
	live := on && ep != nil && ep.EndpointID != ""
	if live && ep.IPAddress == addr {
		return nil // attached in endpoint mode: the address is the endpoint's own
	}
	recorded := live && recordedAddr(ep) == addr
	if recorded && h.isEnsured(r, c, addr) {
		return nil
	}
	n, err := h.inspectNetwork(ctx, r, svc)
	if err != nil {
		return err
	}
	subnet, err := h.helperSubnet(n, addr)
	if err != nil {
		return err
	}
	// A container that ars does not manage holding the address as its
	// endpoint's own would answer beside the replica: refuse.
	for id, nep := range n.Containers {
		if nep.IPv4Address.Addr() != addr || id == c.ID {
			continue
		}
		labels, err := h.labelsOf(ctx, id)
		if err != nil {
			return err
		}
		if labels[labelManaged] != "true" {
			return fmt.Errorf("%w: service address %s on network %s is held by container %s, which ars does not manage", errConflict, addr, svc, strings.TrimPrefix(nep.Name, "/"))
		}
	}
	// The helper first: if it has to be started (about a second), the
	// replica is not yet on the service network without its address. One
	// made here is armed; one armed with another address is re-armed (it
	// would put that address on the new link); an unarmed one is used as
	// it is (re-creating it would put a start on the critical path: the
	// exec below is faster).
	want := arming{subnet: subnet, addr: addr, port: port}
	hs, err := h.ensureHelper(ctx, r, c, want, false)
	if err != nil {
		return err
	}
	// An armed helper says on its standard output when it has put the
	// address in place; following that from before the connect confirms
	// the attach without an exec (see helperTaken).
	var taken <-chan string
	if !recorded && hs.arm.serves(want) {
		lines, stop, err := h.followHelper(ctx, hs.id)
		if err != nil {
			h.log.Debug("cannot follow the address helper's output; the exec confirms the address", "replica", r.Name, "err", err)
		} else {
			defer stop()
			taken = lines
		}
	}
	connected := false
	if !recorded {
		if on {
			// Connected otherwise (by hand, another address, endpoint mode)
			// or a stale entry: connect again with the record.
			if err := h.disconnect(ctx, svc, c.ID); err != nil && !errors.Is(err, errNotConnected) {
				return err
			}
		}
		err = h.call(ctx, "connect", h.d.cfg.CallTimeout, func(ctx context.Context) error {
			_, err := h.cli.NetworkConnect(ctx, svc, client.NetworkConnectOptions{
				Container:      c.ID,
				EndpointConfig: &network.EndpointSettings{DriverOpts: map[string]string{optServiceAddr: addr.String()}},
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("connect %s to network %s: %w", ContainerName(r), svc, err)
		}
		connected = true
	}
	if hs.arm.serves(want) {
		// The helper puts the address on the link the moment it is up; if
		// the link was up already, it has done so.
		if !connected || taken != nil && helperTaken(ctx, taken, addr) {
			h.setEnsured(r, c, addr)
			return nil
		}
		// Not confirmed in time: the exec adds the address if it is still
		// missing, announces it, and says why if it cannot.
		h.log.Warn("the armed address helper did not confirm the service address in time; adding it by exec",
			"replica", r.Name, "addr", addr, "waited", helperConfirmWait)
	}
	if err := h.helperAdd(ctx, r, hs.id, subnet, addr, port); err != nil {
		if connected {
			// Nothing may report the replica attached while it does not
			// hold the address.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.d.cfg.CallTimeout)
			if derr := h.disconnect(cctx, svc, c.ID); derr != nil && !errors.Is(derr, errNotConnected) {
				h.log.Error("cannot disconnect a replica whose service address could not be added", "replica", r.Name, "err", derr)
			}
			cancel()
		}
		return err
	}
	h.setEnsured(r, c, addr)
	return nil
}

// restoreAddress puts the recorded service address back into a running
// container that is on the service network (after a start, or a driver
// that has not put it there itself), so an attached replica that was
// stopped comes back attached. Nothing to do for a detached one.
func (h *host) restoreAddress(ctx context.Context, r fsm.ReplicaSpec, c *container.InspectResponse) error {
	ep, on := c.NetworkSettings.Networks[serviceNetwork(r)]
	addr := recordedAddr(ep)
	if !on || ep.EndpointID == "" || !addr.IsValid() || h.isEnsured(r, c, addr) {
		return nil
	}
	return h.attachHelper(ctx, r, c, addr, 0) // the helper's own port, if it has one
}

// ensureHelper returns the replica's helper container, running in the
// namespace of the replica's current start; a missing, stopped or stale
// one (started before the replica, which then got a new namespace) is
// replaced. One armed otherwise than want (if want is armed) is replaced
// too, and so is an unarmed one if rearm. A helper made here is armed
// with want, or if want is not armed with the arming of the one it
// replaces.
func (h *host) ensureHelper(ctx context.Context, r fsm.ReplicaSpec, c *container.InspectResponse, want arming, rearm bool) (helperState, error) {
	keep := func(a arming) bool {
		switch {
		case !want.armed():
			return true
		case rearm:
			return a.matches(want)
		}
		return a.serves(want) || !a.armed()
	}
	id, started := incarnation(c)
	h.mu.Lock()
	hs, ok := h.helpers[r.Name]
	h.mu.Unlock()
	if ok && hs.replicaID == id && hs.started == started && keep(hs.arm) {
		return hs, nil
	}
	hc, err := h.inspectHelper(ctx, r)
	if err != nil {
		return helperState{}, err
	}
	if hc != nil && helperFresh(hc, c) && keep(armingOf(hc)) {
		return h.remember(r, c, hc.ID, armingOf(hc)), nil
	}
	if hc != nil {
		if !want.armed() {
			want = armingOf(hc)
		}
		h.log.Info("replacing the address helper: it does not run in the replica's current namespace, or is armed otherwise",
			"replica", r.Name, "helper", HelperName(r), "running", hc.State.Running, "armed", armingOf(hc).addr, "want", want.addr)
		if err := h.remove(ctx, hc.ID); err != nil {
			return helperState{}, err
		}
	}
	hid, err := h.createHelper(ctx, r, c, want)
	if err != nil {
		return helperState{}, err
	}
	return h.remember(r, c, hid, want), nil
}

func (h *host) remember(r fsm.ReplicaSpec, c *container.InspectResponse, helperID string, arm arming) helperState {
	id, started := incarnation(c)
	hs := helperState{replicaID: id, started: started, id: helperID, arm: arm}
	h.mu.Lock()
	h.helpers[r.Name] = hs
	h.mu.Unlock()
	return hs
}

// armingFor is the arming for a replica's helper made at PowerOn: the
// service address recorded on its service-network entry (an attached
// replica keeps the address it was attached with), else the one the
// caller passed (driver.ServiceAddr), with the subnet of the service
// network that holds it. Not armed if there is neither, or the address
// does not fit the network (Attach refuses it then, saying why).
func (h *host) armingFor(ctx context.Context, r fsm.ReplicaSpec, c *container.InspectResponse, passed netip.Addr, port uint16) arming {
	addr := recordedAddr(c.NetworkSettings.Networks[serviceNetwork(r)])
	if !addr.IsValid() {
		addr = passed
	}
	if !addr.Is4() {
		return arming{}
	}
	h.mu.Lock()
	hs, ok := h.helpers[r.Name]
	h.mu.Unlock()
	if id, started := incarnation(c); ok && hs.replicaID == id && hs.started == started && hs.arm.addr == addr &&
		(port == 0 || hs.arm.port == port) {
		return hs.arm // known fresh and armed so: no call
	}
	n, err := h.inspectNetwork(ctx, r, serviceNetwork(r))
	if err == nil {
		var subnet netip.Prefix
		if subnet, err = h.helperSubnet(n, addr); err == nil {
			return arming{subnet: subnet, addr: addr, port: port}
		}
	}
	h.log.Debug("address helper left unarmed", "replica", r.Name, "addr", addr, "err", err)
	return arming{}
}

// helperFresh: the helper runs, in the network namespace of c's current
// start (it joined after c started; a container gets a new namespace at
// every start).
func helperFresh(hc, c *container.InspectResponse) bool {
	if hc.State == nil || !hc.State.Running || hc.State.Paused || hc.HostConfig == nil ||
		string(hc.HostConfig.NetworkMode) != "container:"+c.ID {
		return false
	}
	hs, err1 := time.Parse(time.RFC3339Nano, hc.State.StartedAt)
	cs, err2 := time.Parse(time.RFC3339Nano, c.State.StartedAt)
	return err1 == nil && err2 == nil && !hs.Before(cs)
}

// inspectHelper reads the replica's helper container (nil if none). A
// container of that name that is not the replica's helper is a conflict.
func (h *host) inspectHelper(ctx context.Context, r fsm.ReplicaSpec) (*container.InspectResponse, error) {
	var res client.ContainerInspectResult
	err := h.call(ctx, "inspect", h.d.cfg.CallTimeout, func(ctx context.Context) error {
		var err error
		res, err = h.cli.ContainerInspect(ctx, HelperName(r), client.ContainerInspectOptions{})
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("inspect %s: %w", HelperName(r), err)
	}
	c := res.Container
	if c.Config == nil || c.Config.Labels[labelHelperOf] != r.Name {
		return nil, fmt.Errorf("%w: a container named %s exists on docker host %s but is not the address helper of replica %s; remove or rename it", errConflict, HelperName(r), h.name, r.Name)
	}
	return &c, nil
}

// removeHelper removes the replica's helper container, if there is one.
func (h *host) removeHelper(ctx context.Context, r fsm.ReplicaSpec) error {
	h.forget(r, true)
	if h.mode != AddressHelper {
		return nil
	}
	hc, err := h.inspectHelper(ctx, r)
	if err != nil || hc == nil {
		return err
	}
	return h.remove(ctx, hc.ID)
}

// dropHelper removes the helper of a replica whose container was just
// removed. A failure is only logged: the replica is clean without it, and
// the next helper made for it replaces whatever is left.
func (h *host) dropHelper(ctx context.Context, r fsm.ReplicaSpec) {
	if err := h.removeHelper(ctx, r); err != nil {
		h.log.Warn("cannot remove the address helper of a removed replica container; it is replaced when the replica next runs",
			"replica", r.Name, "helper", HelperName(r), "err", err)
	}
}

// checkHelperImage: without its image no helper can be made, and no
// container on this engine can take the service address.
func (h *host) checkHelperImage(ctx context.Context) error {
	img := h.d.cfg.HelperImage
	err := h.call(ctx, "image-inspect", h.d.cfg.CallTimeout, func(ctx context.Context) error {
		_, err := h.cli.ImageInspect(ctx, img)
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return fmt.Errorf("%w: docker host %s has no address helper image %q, which containers there need to take the service address (build it with `make images`, or load it onto the host; or set address_mode %q for this host)",
				errUnavailable, h.name, img, AddressEndpoint)
		}
		return fmt.Errorf("inspect image %s: %w", img, err)
	}
	return nil
}

// createHelper creates and starts the replica's helper in c's network
// namespace, armed with arm: the helper image's program and nothing else,
// read-only, with NET_ADMIN (addresses and routes) and NET_RAW
// (gratuitous ARP) only.
func (h *host) createHelper(ctx context.Context, r fsm.ReplicaSpec, c *container.InspectResponse, arm arming) (string, error) {
	if err := h.checkHelperImage(ctx); err != nil {
		return "", err
	}
	pids := int64(64)
	var id string
	err := h.call(ctx, "create", h.d.cfg.SlowCallTimeout, func(ctx context.Context) error {
		res, err := h.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name: HelperName(r),
			Config: &container.Config{
				Image: h.d.cfg.HelperImage,
				Cmd:   arm.cmd(),
				Labels: map[string]string{
					labelManaged:  "true",
					labelHelperOf: r.Name,
				},
			},
			HostConfig: &container.HostConfig{
				NetworkMode:    container.NetworkMode("container:" + c.ID),
				RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyDisabled},
				CapDrop:        []string{"ALL"},
				CapAdd:         []string{"NET_ADMIN", "NET_RAW"},
				ReadonlyRootfs: true,
				SecurityOpt:    []string{"no-new-privileges"},
				Resources:      container.Resources{Memory: 64 << 20, MemorySwap: 64 << 20, PidsLimit: &pids},
			},
		})
		id = res.ID
		return err
	})
	if err != nil {
		if id != "" {
			h.cleanup(ctx, id)
		}
		if s, _ := classify(err); s == errConflict {
			return "", fmt.Errorf("create %s: %w: %w", HelperName(r), errRetry, err)
		}
		return "", fmt.Errorf("create %s: %w", HelperName(r), err)
	}
	err = h.call(ctx, "start", h.d.cfg.SlowCallTimeout, func(ctx context.Context) error {
		_, err := h.cli.ContainerStart(ctx, id, client.ContainerStartOptions{})
		return err
	})
	if err != nil {
		h.cleanup(ctx, id)
		return "", fmt.Errorf("start %s: %w", HelperName(r), err)
	}
	h.log.Info("address helper started", "replica", r.Name, "helper", HelperName(r), "id", id[:12], "armed", arm.addr)
	return id, nil
}

// helperAdd runs `ars-nethelper add` in the helper: the service address
// onto the replica's link in subnet, then gratuitous ARPs.
func (h *host) helperAdd(ctx context.Context, r fsm.ReplicaSpec, helperID string, subnet netip.Prefix, addr netip.Addr, port uint16) error {
	args := []string{"add", "-subnet", subnet.String(), "-addr", addr.String()}
	if port != 0 {
		args = append(args, "-port", strconv.Itoa(int(port)))
	}
	out, err := h.helperExec(ctx, r, helperID, args...)
	if err != nil {
		return fmt.Errorf("add service address %s in %s: %w", addr, ContainerName(r), err)
	}
	h.log.Debug("service address added by the helper", "replica", r.Name, "out", strings.TrimSpace(out))
	return nil
}

// helperConfirmWait bounds how long Attach waits for an armed helper to
// report the service address in place before it falls back to the exec.
const helperConfirmWait = 500 * time.Millisecond

// followHelper follows the helper's standard output from now on (no
// earlier line): its lines arrive on the channel until stop is called.
// It is a read (GET /containers/{id}/logs, follow), so it goes through
// the Engine API like everything else and works on remote engines.
func (h *host) followHelper(ctx context.Context, helperID string) (<-chan string, func(), error) {
	fctx, cancel := context.WithCancel(ctx)
	var res client.ContainerLogsResult
	err := h.call(ctx, "logs", h.d.cfg.CallTimeout, func(cctx context.Context) error {
		// The stream outlives the call's own timeout: fctx bounds it.
		stop := context.AfterFunc(cctx, func() {
			if cctx.Err() == context.DeadlineExceeded {
				cancel()
			}
		})
		defer stop()
		var err error
		res, err = h.cli.ContainerLogs(fctx, helperID, client.ContainerLogsOptions{ShowStdout: true, Follow: true, Tail: "0"})
		return err
	})
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("follow the output of %s: %w", helperID[:min(12, len(helperID))], err)
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, io.Discard, res)
		pw.CloseWithError(err)
	}()
	lines := make(chan string, 4)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(io.LimitReader(pr, helperOutputMax))
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-fctx.Done():
				return
			}
		}
	}()
	return lines, func() { cancel(); res.Close(); pr.Close() }, nil
}

// helperTaken waits (at most helperConfirmWait) for the armed helper's
// line saying addr is in place ("ADDR on LINK (index N)").
func helperTaken(ctx context.Context, lines <-chan string, addr netip.Addr) bool {
	timer := time.NewTimer(helperConfirmWait)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return false
			}
			if strings.HasPrefix(l, addr.String()+" on ") {
				return true
			}
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// helperExec runs the helper program with args in the helper container
// and returns its output; a non-zero exit is an error carrying it. Exec
// goes through the Engine API, so remote engines work alike.
func (h *host) helperExec(ctx context.Context, r fsm.ReplicaSpec, helperID string, args ...string) (string, error) {
	var execID string
	err := h.call(ctx, "exec-create", h.d.cfg.CallTimeout, func(ctx context.Context) error {
		res, err := h.cli.ExecCreate(ctx, helperID, client.ExecCreateOptions{
			AttachStdout: true, AttachStderr: true, Cmd: append([]string{helperBinary}, args...),
		})
		execID = res.ID
		return err
	})
	if err != nil {
		// A helper that stopped or vanished since the driver saw it: the
		// next attempt finds out and replaces it.
		h.forget(r, true)
		if s, _ := classify(err); s == errConflict || s == errNotFound {
			return "", fmt.Errorf("exec in %s: %w: %w", HelperName(r), errRetry, err)
		}
		return "", fmt.Errorf("exec in %s: %w", HelperName(r), err)
	}
	var out limitedBuffer
	err = h.call(ctx, "exec-start", h.d.cfg.CallTimeout, func(ctx context.Context) error {
		res, err := h.cli.ExecAttach(ctx, execID, client.ExecAttachOptions{})
		if err != nil {
			return err
		}
		defer res.Close()
		stop := context.AfterFunc(ctx, res.Close) // the stream has no deadline of its own
		defer stop()
		if _, err := stdcopy.StdCopy(&out, &out, res.Reader); err != nil && ctx.Err() == nil {
			return fmt.Errorf("read the output: %w", err)
		}
		return ctx.Err()
	})
	if err != nil {
		return out.String(), fmt.Errorf("exec in %s: %w", HelperName(r), err)
	}
	var ins client.ExecInspectResult
	err = h.call(ctx, "exec-inspect", h.d.cfg.CallTimeout, func(ctx context.Context) error {
		var err error
		ins, err = h.cli.ExecInspect(ctx, execID, client.ExecInspectOptions{})
		return err
	})
	if err != nil {
		return out.String(), fmt.Errorf("exec in %s: %w", HelperName(r), err)
	}
	if ins.Running || ins.ExitCode != 0 {
		// The helper could not do it (most likely it no longer runs in the
		// replica's namespace); the next attempt re-reads both.
		h.forget(r, true)
		return out.String(), fmt.Errorf("%w: %s on docker host %s: %s exited %d: %s",
			errRetry, HelperName(r), h.name, strings.Join(args[:1], " "), ins.ExitCode, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// limitedBuffer keeps the first helperOutputMax bytes written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := helperOutputMax - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

var _ io.Writer = (*limitedBuffer)(nil)
