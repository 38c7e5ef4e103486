package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/ars-project/ars/controller/docker"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab/netlab"
)

// Container replicas (Replica.Platform "container"): real containers of
// the machine's Docker engine, created, attached, paused and re-created by
// the nodes through the production Docker driver, in its default address
// mode (the driver's address helper adds the service address beside the
// container's own and announces it with gratuitous ARP). The lab gives
// them the service network — a Docker macvlan network whose parent is
// netlab's Docker link, a port of the lab bridge, with automatic addresses
// from a range that leaves the service address out — and follows the
// engine's events for what the Mirror does for VMs: it records what
// happened to each container in the event log and wedges it at once if
// its implementation is under attack.

// DockerSocket is the engine the lab and its nodes use.
const DockerSocket = "unix:///var/run/docker.sock"

// DockerHost is the name the lab's agent configs give that engine.
const DockerHost = "lab"

// ImageFor is the image of a container replica of impl, built by
// `make images`.
func ImageFor(impl string) string { return "ars-lab/" + impl + ":latest" }

// ctrState is what the lab last saw of a container replica.
type ctrState struct {
	id     string
	pid    int
	power  string // poweredOn, suspended, poweredOff (the Mirror's words)
	linked bool   // running or paused, with an endpoint on the service network
}

// containers follows the lab's container replicas.
type containers struct {
	l       *Lab
	cli     *client.Client
	network string // the service network (macvlan)
	names   map[string]bool

	mu    sync.Mutex
	state map[string]ctrState
	ids   map[string]string // the last container id seen per replica
	ready chan struct{}     // closed once the event stream is subscribed
}

// serviceNetwork is the name of the lab's Docker service network.
func (l *Lab) serviceNetwork() string { return l.Net.Topology().Prefix + "-svc" }

// ContainerName is the engine's name of a container replica.
func ContainerName(replica string) string {
	return docker.ContainerName(fsm.ReplicaSpec{Name: replica})
}

// upContainers checks the images, removes what an earlier lab of the same
// replicas left on the engine, creates the service network on netlab's
// Docker link and starts following the engine's events.
func (l *Lab) upContainers(ctx context.Context) error {
	var names []string
	for _, r := range l.cfg.Replicas {
		if r.Platform == fsm.PlatformContainer {
			names = append(names, r.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	cli, err := client.New(client.WithHost(DockerSocket), client.WithUserAgent("ars-lab"))
	if err != nil {
		return fmt.Errorf("lab: docker: %w", err)
	}
	c := &containers{l: l, cli: cli, network: l.serviceNetwork(), names: map[string]bool{},
		state: map[string]ctrState{}, ids: map[string]string{}, ready: make(chan struct{})}
	l.ctrs = c
	for _, n := range names {
		c.names[n] = true
	}
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("lab: container replicas need the Docker engine at %s: %w", DockerSocket, err)
	}
	for _, r := range l.cfg.Replicas {
		if r.Platform != fsm.PlatformContainer {
			continue
		}
		if _, err := cli.ImageInspect(ctx, ImageFor(r.Impl)); err != nil {
			return fmt.Errorf("lab: replica %s: image %s: %w (build the lab's images with `make images`)", r.Name, ImageFor(r.Impl), err)
		}
	}
	if _, err := cli.ImageInspect(ctx, docker.DefaultHelperImage); err != nil {
		return fmt.Errorf("lab: container replicas need the Docker driver's address helper image %s: %w (build it with `make images`)", docker.DefaultHelperImage, err)
	}
	c.removeAll(ctx)
	if err := createServiceNetwork(ctx, cli, c.network, l.Net); err != nil {
		return err
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		c.follow(l.ctx)
	}()
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("lab: docker events: %w", ctx.Err())
	}
}

// createServiceNetwork creates the lab's Docker service network, name: a
// macvlan network on nl's Docker link, in nl's subnet. Docker's IPAM hands
// out only the addresses asked for (the service address, or a dnsdist
// backend's own) and, for nothing in the lab, the top of the subnet; the
// gateway is an address nobody holds, so a container has no way out of
// the lab either.
func createServiceNetwork(ctx context.Context, cli *client.Client, name string, nl *netlab.Lab) error {
	t := nl.Topology()
	last := lastHost(t.Subnet)
	_, err := cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{
		Driver:  "macvlan",
		Options: map[string]string{"parent": nl.DockerParent(), "macvlan_mode": "bridge"},
		IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: t.Subnet, Gateway: last,
			IPRange: netip.PrefixFrom(last, 28).Masked()}}},
		Labels: map[string]string{"ars.lab": t.Prefix},
	})
	if err != nil {
		return fmt.Errorf("lab: docker network %s: %w", name, err)
	}
	return nil
}

// lastHost is the last host address of p (the one before broadcast).
func lastHost(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	v--
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// removeAll removes the lab's containers — each replica's, its address
// helper, and any the driver renamed aside because the engine could not
// remove them then — and its service network (what a lab of the same
// prefix and replicas left behind, or this one at Down).
func (c *containers) removeAll(ctx context.Context) error {
	var errs []error
	for n := range c.names {
		ids := []string{ContainerName(n), docker.HelperName(fsm.ReplicaSpec{Name: n})}
		for _, label := range []string{docker.LabelReplica, docker.LabelHelperOf} {
			res, err := c.cli.ContainerList(ctx, client.ContainerListOptions{All: true,
				Filters: make(client.Filters).Add("label", label+"="+n)})
			if err != nil {
				errs = append(errs, fmt.Errorf("lab: list the containers of replica %s: %w", n, err))
			}
			for _, it := range res.Items {
				ids = append(ids, it.ID)
			}
		}
		for _, id := range ids {
			_, err := c.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
			if err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("lab: remove container %s of replica %s: %w", id, n, err))
			}
		}
	}
	if _, err := c.cli.NetworkRemove(ctx, c.network, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
		errs = append(errs, fmt.Errorf("lab: remove docker network %s: %w", c.network, err))
	}
	return errors.Join(errs...)
}

func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

// follow handles the engine's events until ctx ends, subscribing again
// (and reading every container) when the stream fails.
func (c *containers) follow(ctx context.Context) {
	first := true
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(ctx)
		f := make(client.Filters).Add("type", string(events.ContainerEventType), string(events.NetworkEventType))
		res := c.cli.Events(sctx, client.EventsListOptions{Filters: f})
		for n := range c.names {
			c.refresh(ctx, n)
		}
		if first {
			close(c.ready)
			first = false
		}
		c.handle(sctx, res)
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *containers) handle(ctx context.Context, res client.EventsResult) {
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-res.Err:
			if ctx.Err() == nil {
				c.l.log.Warn("lab: docker event stream ended; subscribing again", "err", err)
			}
			return
		case m := <-res.Messages:
			name := ""
			switch m.Type {
			case events.ContainerEventType:
				name = m.Actor.Attributes["ars.replica"]
			case events.NetworkEventType:
				if m.Actor.Attributes["name"] != c.network {
					continue
				}
				name = c.byID(m.Actor.Attributes["container"])
			}
			if c.names[name] {
				c.refresh(ctx, name)
			}
		}
	}
}

func (c *containers) byID(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for n, s := range c.state {
		if s.id == id {
			return n
		}
	}
	return ""
}

// refresh reads one container and applies what changed: the event log and
// the attacks in force. (The driver's address helper announces a
// container that took the service address; the lab sends nothing.)
func (c *containers) refresh(ctx context.Context, name string) {
	now := ctrState{power: "poweredOff"}
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	res, err := c.cli.ContainerInspect(ictx, ContainerName(name), client.ContainerInspectOptions{})
	cancel()
	if err != nil && !isNotFound(err) {
		c.l.log.Warn("lab: inspecting a container replica failed", "replica", name, "err", err)
		return
	}
	if err == nil && res.Container.State != nil {
		ct := res.Container
		now.id, now.pid = ct.ID, ct.State.Pid
		switch {
		case ct.State.Paused:
			now.power = "suspended"
		case ct.State.Running:
			now.power = "poweredOn"
		}
		if now.power != "poweredOff" && ct.NetworkSettings != nil {
			if ep, ok := ct.NetworkSettings.Networks[c.network]; ok && ep != nil && ep.EndpointID != "" {
				now.linked = true
			}
		}
	}
	c.mu.Lock()
	was := c.state[name]
	c.state[name] = now
	lastID := c.ids[name]
	if now.id != "" {
		c.ids[name] = now.id
	}
	c.mu.Unlock()
	if now.id != "" && lastID != "" && now.id != lastID {
		// A new container from the image: what a restore (remove and
		// create) makes, the container's clean snapshot (§4.4).
		c.l.record(name, "revert", nil)
	}
	if was.id != now.id && was.power != "poweredOff" && was.id != "" {
		// Removed (and maybe re-created by a restore) since the last read:
		// the old container's end first, then the new one from nothing.
		c.l.record(name, "kill", nil)
		if was.linked {
			c.l.record(name, "unlink", nil)
		}
		was = ctrState{power: "poweredOff"}
	}
	switch {
	case was.power == "poweredOff" && now.power != "poweredOff":
		c.l.record(name, "start", nil)
	case was.power != "poweredOff" && now.power == "poweredOff" && was.power != "":
		c.l.record(name, "kill", nil)
	case was.power == "poweredOn" && now.power == "suspended":
		c.l.record(name, "suspend", nil)
	case was.power == "suspended" && now.power == "poweredOn":
		c.l.record(name, "resume", nil)
	}
	switch {
	case !was.linked && now.linked:
		c.l.record(name, "link", nil)
		c.l.attacks.served(c.l, []string{name})
	case was.linked && !now.linked:
		c.l.record(name, "unlink", nil)
	}
}

// HasContainers reports whether the lab has container replicas.
func (l *Lab) HasContainers() bool { return l.ctrs != nil }

// applied is what the lab last saw of a container replica.
func (c *containers) applied(name string) (power string, linked bool) {
	if c == nil {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.state[name]
	if !ok {
		return "poweredOff", false
	}
	return s.power, s.linked
}

// linked lists the container replicas on the service network.
func (c *containers) linked() []string {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for n, s := range c.state {
		if s.linked {
			out = append(out, n)
		}
	}
	return out
}

// pid is the container's first process (0 when it does not run).
func (c *containers) pid(name string) int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state[name].pid
}

// signal sends sig to every process of a container replica (SIGSTOP: a
// DoS the engine does not see): those of its PID namespace, not its
// network namespace, which its address helper shares — a wedged helper
// would hang the driver's next attach of that replica.
func (c *containers) signal(name string, sig syscall.Signal) error {
	c.mu.Lock()
	s := c.state[name]
	c.mu.Unlock()
	if s.pid <= 0 {
		return fmt.Errorf("lab: container replica %s is not running", name)
	}
	return netlab.SignalPidns("/proc/"+strconv.Itoa(s.pid)+"/ns/pid", sig)
}

// downContainers removes the lab's containers and service network.
func (l *Lab) downContainers(ctx context.Context) error {
	c := l.ctrs
	if c == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	err := c.removeAll(ctx)
	c.cli.Close()
	return err
}

// dockerEndpoint is the engine the nodes' agent configs name ("" when the
// lab has no container replicas).
func dockerEndpoint(l *Lab) string {
	if l.ctrs == nil {
		return ""
	}
	return DockerSocket
}
