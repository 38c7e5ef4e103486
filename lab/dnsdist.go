package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"github.com/ars-project/ars/controller/docker"
	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab/bench"
	"github.com/ars-project/ars/lab/netlab"
)

// DNSDist is the peer an operator would pick instead of ars: the same
// replicas, each at an address of its own and all attached, behind
// dnsdist (from the distribution's packages) holding the service address,
// with its fastest health checks (checkInterval=1 s, its minimum;
// checkTimeout=100 ms, the ars probe's timeout; maxCheckFailures=1; rise=1)
// and the firstAvailable policy. No controller, no simulator: dnsdist alone
// decides where queries go. A replica of Platform "container" is a real
// container of the machine's Docker engine (ImageFor its implementation),
// made by the production Docker driver and connected to a macvlan network
// on netlab's Docker link at its own address; the others are servers in
// network namespaces of their own, as in the lab with nodes.
type DNSDist struct {
	Net    *netlab.Lab
	cfg    Config
	client *netlab.Client
	cancel context.CancelFunc
	done   chan struct{}
	// Container replicas: the driver that made them, the engine's client
	// and the service network (nil and "" without them).
	drv    *docker.Driver
	cli    *client.Client
	svcNet string
}

// dnsdistFront is the namespace (a netlab replica) that runs dnsdist with
// the service address.
const dnsdistFront = "dnsdist"

// UpDNSDist starts the replicas of cfg (only Prefix, StateDir, Replicas,
// DNSD and Logger are used) behind dnsdist, and the measuring client.
func UpDNSDist(ctx context.Context, cfg Config) (d *DNSDist, err error) {
	bin, err := exec.LookPath("dnsdist")
	if err != nil {
		return nil, fmt.Errorf("lab: dnsdist is not installed (make lab-deps): %w", err)
	}
	if len(cfg.Replicas) == 0 || len(cfg.Replicas) > 40 {
		return nil, fmt.Errorf("lab: %d replicas: want 1-40", len(cfg.Replicas))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	names := []string{dnsdistFront} // the namespaces: the front and the non-container replicas
	addrs := map[string]netip.Addr{}
	ctrs := false
	sub := netlab.DefaultSubnet.Addr().As4()
	for i, r := range cfg.Replicas {
		if r.Name == dnsdistFront {
			return nil, fmt.Errorf("lab: replica name %q is taken by the front", r.Name)
		}
		if _, ok := Implementations[r.Impl]; !ok {
			return nil, fmt.Errorf("lab: replica %s: unknown implementation %q (known: %v)", r.Name, r.Impl, ImplNames())
		}
		switch r.Platform {
		case "", fsm.PlatformVM:
			names = append(names, r.Name)
		case fsm.PlatformContainer:
			ctrs = true
		default:
			return nil, fmt.Errorf("lab: replica %s: platform %q: want %s or %s", r.Name, r.Platform, fsm.PlatformVM, fsm.PlatformContainer)
		}
		a := sub
		a[3] = byte(101 + i)
		addrs[r.Name] = netip.AddrFrom4(a)
	}
	nsAddrs := map[string]netip.Addr{}
	for _, n := range names[1:] {
		nsAddrs[n] = addrs[n]
	}
	nl, err := netlab.New(netlab.Topology{Prefix: cfg.Prefix, StateDir: cfg.StateDir, Replicas: names, Addrs: nsAddrs, Docker: ctrs})
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	d = &DNSDist{Net: nl, cfg: cfg, done: make(chan struct{})}
	defer func() {
		if err != nil {
			_ = d.Down(context.WithoutCancel(ctx))
		}
	}()
	if err := nl.Up(ctx); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if ctrs {
		if err := d.upContainers(ctx); err != nil {
			return nil, err
		}
	}
	t := nl.Topology()
	var servers []string
	for i, r := range cfg.Replicas {
		if r.isContainer() {
			spec := d.containerSpec(r)
			if err := d.drv.PowerOn(ctx, spec); err != nil {
				return nil, fmt.Errorf("lab: container replica %s: %w", r.Name, err)
			}
			if err := d.drv.Attach(ctx, spec, driver.ServiceAddr(addrs[r.Name])); err != nil {
				return nil, fmt.Errorf("lab: container replica %s: %w", r.Name, err)
			}
		} else {
			argv, err := Prepare(ServerSpec{Impl: r.Impl, Dir: filepath.Join(t.StateDir, "replicas", r.Name),
				Addr: addrs[r.Name], Subnet: t.Subnet, Binary: binaryFor(cfg, r.Impl)})
			if err != nil {
				return nil, err
			}
			if _, err := nl.Run(r.Name, argv...); err != nil {
				return nil, err
			}
			if err := nl.Attach(ctx, r.Name); err != nil {
				return nil, err
			}
		}
		servers = append(servers, fmt.Sprintf(`newServer{address="%s:53", name="%s", checkName="%s", checkInterval=1, checkTimeout=100, maxCheckFailures=1, rise=1, order=%d}`,
			addrs[r.Name], r.Name, RecordName, i+1))
	}
	conf := filepath.Join(t.StateDir, "dnsdist.conf")
	body := fmt.Sprintf("-- written by the lab: the ars benchmark's dnsdist mode\nsetLocal(\"%s:53\")\nsetACL(\"%s\")\nsetServerPolicy(firstAvailable)\n%s\n",
		t.Service, t.Subnet, strings.Join(servers, "\n"))
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if _, err := nl.Run(dnsdistFront, bin, "--supervised", "--disable-syslog", "-C", conf); err != nil {
		return nil, err
	}
	if err := nl.Attach(ctx, dnsdistFront); err != nil {
		return nil, err
	}
	if d.client, err = nl.NewClient(ClientInterval, ClientTimeout); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { defer close(d.done); d.client.Run(cctx) }()
	return d, nil
}

// upContainers checks the engine and the images, removes what an earlier
// lab of the same prefix left and creates the service network.
func (d *DNSDist) upContainers(ctx context.Context) error {
	cli, err := client.New(client.WithHost(DockerSocket), client.WithUserAgent("ars-lab"))
	if err != nil {
		return fmt.Errorf("lab: docker: %w", err)
	}
	d.cli, d.svcNet = cli, d.Net.Topology().Prefix+"-svc"
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("lab: container replicas need the Docker engine at %s: %w", DockerSocket, err)
	}
	for _, r := range d.cfg.Replicas {
		if !r.isContainer() {
			continue
		}
		if _, err := cli.ImageInspect(ctx, ImageFor(r.Impl)); err != nil {
			return fmt.Errorf("lab: replica %s: image %s: %w (build the lab's images with `make images`)", r.Name, ImageFor(r.Impl), err)
		}
	}
	_ = d.removeContainers(ctx)
	if err := createServiceNetwork(ctx, cli, d.svcNet, d.Net); err != nil {
		return err
	}
	// Endpoint mode: every backend serves on an address of its own and
	// none ever takes another's, so there is no switch to make seamless.
	d.drv, err = docker.New(docker.Config{Hosts: []docker.Host{{Name: DockerHost, Endpoint: DockerSocket,
		AddressMode: docker.AddressEndpoint}}, Logger: d.cfg.Logger})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// containerSpec is the driver's spec of a container replica.
func (d *DNSDist) containerSpec(r Replica) fsm.ReplicaSpec {
	return fsm.ReplicaSpec{Name: r.Name, Impl: r.Impl, OS: r.OS, Platform: fsm.PlatformContainer,
		Host: DockerHost, Image: ImageFor(r.Impl), Container: &fsm.ContainerSpec{Network: d.svcNet}}
}

// removeContainers removes the container replicas and the service network.
func (d *DNSDist) removeContainers(ctx context.Context) error {
	var errs []error
	for _, r := range d.cfg.Replicas {
		if !r.isContainer() {
			continue
		}
		_, err := d.cli.ContainerRemove(ctx, ContainerName(r.Name), client.ContainerRemoveOptions{Force: true})
		if err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("lab: remove container replica %s: %w", r.Name, err))
		}
	}
	if _, err := d.cli.NetworkRemove(ctx, d.svcNet, client.NetworkRemoveOptions{}); err != nil && !isNotFound(err) {
		errs = append(errs, fmt.Errorf("lab: remove docker network %s: %w", d.svcNet, err))
	}
	return errors.Join(errs...)
}

// pid is a process in the replica's network namespace.
func (d *DNSDist) pid(ctx context.Context, name string) (int, error) {
	i := slices.IndexFunc(d.cfg.Replicas, func(r Replica) bool { return r.Name == name })
	if i < 0 {
		return 0, fmt.Errorf("lab: no replica %q", name)
	}
	if d.cfg.Replicas[i].isContainer() {
		res, err := d.cli.ContainerInspect(ctx, ContainerName(name), client.ContainerInspectOptions{})
		if err != nil {
			return 0, fmt.Errorf("lab: container replica %s: %w", name, err)
		}
		if st := res.Container.State; st == nil || st.Pid <= 0 {
			return 0, fmt.Errorf("lab: container replica %s is not running", name)
		}
		return res.Container.State.Pid, nil
	}
	pids, err := d.Net.ReplicaPids(name)
	if err != nil {
		return 0, err
	}
	if len(pids) == 0 {
		return 0, fmt.Errorf("lab: replica %s runs no process", name)
	}
	return pids[0], nil
}

// signal sends sig to every process of a replica (SIGSTOP wedges its
// server, SIGCONT lets it go).
func (d *DNSDist) signal(ctx context.Context, name string, sig syscall.Signal) error {
	if r, ok := d.replica(name); ok && r.isContainer() {
		pid, err := d.pid(ctx, name)
		if err != nil {
			return err
		}
		return netlab.SignalPidns("/proc/"+strconv.Itoa(pid)+"/ns/pid", sig)
	}
	return d.Net.SignalReplica(name, sig)
}

func (d *DNSDist) replica(name string) (Replica, bool) {
	i := slices.IndexFunc(d.cfg.Replicas, func(r Replica) bool { return r.Name == name })
	if i < 0 {
		return Replica{}, false
	}
	return d.cfg.Replicas[i], true
}

// received is the number of packets the replica's network namespace has
// received on its links (loopback aside).
func (d *DNSDist) received(ctx context.Context, name string) (uint64, error) {
	pid, err := d.pid(ctx, name)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/dev")
	if err != nil {
		return 0, fmt.Errorf("lab: replica %s: %w", name, err)
	}
	return rxPackets(string(b))
}

// rxPackets sums the received packets of every interface but lo in the
// text of /proc/net/dev.
func rxPackets(dev string) (uint64, error) {
	var sum uint64
	for _, line := range strings.Split(dev, "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		if name == "lo" || strings.Contains(name, "|") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			return 0, fmt.Errorf("lab: /proc/net/dev: interface %s: %d fields", name, len(f))
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("lab: /proc/net/dev: interface %s: %w", name, err)
		}
		sum += n
	}
	return sum, nil
}

func binaryFor(cfg Config, impl string) string {
	if impl == "dnsd" {
		return cfg.DNSD
	}
	return ""
}

// Steady waits until the client has been answered for the last second.
func (d *DNSDist) Steady(ctx context.Context) error {
	for {
		o := d.client.Outage(time.Now().Add(-time.Second-ClientTimeout), time.Now().Add(-ClientTimeout))
		if o.Sent > 100 && o.Lost == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: dnsdist does not answer steadily (%s): %w", o, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Trial wedges the first backend (the one firstAvailable sends every
// query to while it is up), measures until the service has answered for
// settle again, then lets the backend go and waits for dnsdist to take it
// back (two check intervals and a steady second). dnsdist reports no
// phases: detection and switch stay 0.
func (d *DNSDist) Trial(ctx context.Context, settle, limit time.Duration) (bench.Trial, error) {
	if err := d.Steady(ctx); err != nil {
		return bench.Trial{}, err
	}
	first := d.cfg.Replicas[0].Name
	at := time.Now()
	if err := d.signal(ctx, first, syscall.SIGSTOP); err != nil {
		return bench.Trial{}, err
	}
	defer func() { _ = d.signal(context.WithoutCancel(ctx), first, syscall.SIGCONT) }()
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := d.client.WaitLost(wctx, at, 1); err != nil {
		return bench.Trial{}, err
	}
	o, ok, err := d.recovered(wctx, ctx, at, settle)
	if err != nil || !ok {
		return bench.Trial{Err: "no answer again"}, err
	}
	if err := d.release(ctx, first); err != nil {
		return bench.Trial{}, err
	}
	return bench.Trial{Downtime: o.Longest, Lost: o.Lost, Switched: true, Outages: o.Gaps}, nil
}

// recovered waits (within wctx) until the client has been answered for
// settle, and returns what it saw since at; false if wctx ended first.
// An end of ctx is an error.
func (d *DNSDist) recovered(wctx, ctx context.Context, at time.Time, settle time.Duration) (netlab.Outage, bool, error) {
	for {
		now := time.Now().Add(-ClientTimeout)
		tail := d.client.Outage(now.Add(-settle), now)
		if tail.Sent > 0 && tail.Lost == 0 {
			return d.client.Outage(at, now), true, nil
		}
		select {
		case <-ctx.Done():
			return netlab.Outage{}, false, ctx.Err()
		case <-wctx.Done():
			return netlab.Outage{}, false, nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// release lets wedged replicas go and waits for dnsdist to take them
// back: two check intervals.
func (d *DNSDist) release(ctx context.Context, names ...string) error {
	for _, n := range names {
		if err := d.signal(ctx, n, syscall.SIGCONT); err != nil {
			return err
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2500 * time.Millisecond):
	}
	return nil
}

// servingPackets is how many packets a backend must receive within one
// poll of ImplAttackTrial (servingPoll) to count as serving: the client
// sends one query every ClientInterval (5 per poll), a health check
// arrives once a second.
const (
	servingPoll    = 25 * time.Millisecond
	servingPackets = 3
)

// ImplAttackTrial is the impl-attack on dnsdist: from a steady service,
// with a replica of impl serving (firstAvailable's first), every replica of
// impl fails (is wedged) as soon as it serves, for dur — as in the lab with
// nodes, where a replica of the attacked implementation is wedged as soon
// as it is linked. Here every replica is linked all the time; one serves
// when dnsdist sends it the client's queries, which is when the attack,
// coming through the service address, reaches it. Outages counts the
// replicas the attack took down while they served (the client's gaps
// cannot tell them apart, as in Lab.ImplAttackTrial). Downtime is the
// client's longest gap from the attack until it has been answered for
// settle again after the attack (within limit). The wedged replicas are
// let go afterwards, as an operator would restart them.
func (d *DNSDist) ImplAttackTrial(ctx context.Context, impl string, dur, settle, limit time.Duration) (bench.Trial, error) {
	var targets []string
	for _, r := range d.cfg.Replicas {
		if r.Impl == impl {
			targets = append(targets, r.Name)
		}
	}
	switch {
	case len(targets) == 0:
		return bench.Trial{}, fmt.Errorf("lab: no replica runs implementation %q", impl)
	case d.cfg.Replicas[0].Impl != impl:
		return bench.Trial{}, fmt.Errorf("lab: dnsdist's first backend %s runs %s, not the attacked %s", d.cfg.Replicas[0].Name, d.cfg.Replicas[0].Impl, impl)
	}
	if err := d.Steady(ctx); err != nil {
		return bench.Trial{}, err
	}
	seen := map[string]uint64{}
	for _, n := range targets[1:] {
		c, err := d.received(ctx, n)
		if err != nil {
			return bench.Trial{}, err
		}
		seen[n] = c
	}
	var wedged []string
	defer func() {
		for _, n := range wedged {
			_ = d.signal(context.WithoutCancel(ctx), n, syscall.SIGCONT)
		}
	}()
	at := time.Now()
	wedge := func(n string) error {
		if err := d.signal(ctx, n, syscall.SIGSTOP); err != nil {
			return err
		}
		wedged = append(wedged, n)
		return nil
	}
	if err := wedge(targets[0]); err != nil {
		return bench.Trial{}, err
	}
	tick := time.NewTicker(servingPoll)
	defer tick.Stop()
	for time.Since(at) < dur {
		select {
		case <-ctx.Done():
			return bench.Trial{}, ctx.Err()
		case <-tick.C:
		}
		for _, n := range targets[1:] {
			if slices.Contains(wedged, n) {
				continue
			}
			c, err := d.received(ctx, n)
			if err != nil {
				return bench.Trial{}, err
			}
			if serving(seen[n], c) {
				if err := wedge(n); err != nil {
					return bench.Trial{}, err
				}
			}
			seen[n] = c
		}
	}
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	o, ok, err := d.recovered(wctx, ctx, at, settle)
	if err != nil {
		return bench.Trial{}, err
	}
	if !ok {
		return bench.Trial{Err: "no answer again"}, nil
	}
	if err := d.release(ctx, wedged...); err != nil {
		return bench.Trial{}, err
	}
	return bench.Trial{Downtime: o.Longest, Lost: o.Lost, Switched: true, Outages: len(wedged)}, nil
}

// serving says whether a backend whose received-packet count went from
// before to now within one servingPoll serves the client's queries.
func serving(before, now uint64) bool { return now >= before+servingPackets }

// Down stops the client and removes everything.
func (d *DNSDist) Down(ctx context.Context) error {
	var errs []error
	if d.cancel != nil {
		d.cancel()
		<-d.done
		d.client.Close()
		d.cancel = nil
	}
	if d.cli != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		errs = append(errs, d.removeContainers(rctx))
		cancel()
		d.cli.Close()
		d.cli = nil
	}
	if d.drv != nil {
		errs = append(errs, d.drv.Close())
		d.drv = nil
	}
	if d.Net != nil {
		errs = append(errs, d.Net.Down(ctx))
	}
	return errors.Join(errs...)
}
