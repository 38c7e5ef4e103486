package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
)

// Driver is the Docker implementation of controller.Driver for container
// replicas on one or more engines. Create it once per node with New; it
// connects lazily (the first call negotiates the API version) and holds no
// session, so it needs no Run: any node may call it, and the controller
// calls it only while it leads.
type Driver struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	hosts map[string]*host
	order []string // host names in configuration order

	subMu sync.Mutex
	subs  map[*driver.Subscriber]struct{}
	last  map[string]watched // what the watch last reported, by host + replica name
}

var _ driver.Driver = (*Driver)(nil)

// host is one engine and what the driver knows about it.
type host struct {
	d    *Driver
	name string
	mode AddressMode
	cli  *client.Client
	log  *slog.Logger

	negotiated atomic.Bool
	parkMu     sync.Mutex // serialises ensurePark
	// streamDown: the watch's event stream to this engine broke, or a read
	// found the engine unreachable, and the watch has not yet subscribed
	// and read every replica again (see UnreachableFor).
	streamDown atomic.Bool

	mu          sync.Mutex
	apparmor    *bool                      // AppArmor enabled on the engine (nil: not asked yet)
	watched     map[string]fsm.ReplicaSpec // by replica name
	ids         map[string]string          // container id -> replica name (for network events)
	kick        chan struct{}              // wakes the watch loop (watched set changed)
	watching    bool                       // a watch loop runs
	watchCancel context.CancelFunc         // ends the watch loop's current context
	helpers     map[string]helperState     // by replica name: its helper, known fresh (AddressHelper)
	ensured     map[string]ensuredState    // by replica name: where Attach put the service address (AddressHelper)
}

// New checks cfg and prepares a driver. It does not connect; TLS files are
// read now, so a missing certificate is a configuration error.
func New(cfg Config) (*Driver, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	d := &Driver{
		cfg:   cfg,
		log:   cfg.Logger,
		m:     newMetrics(cfg.Registerer),
		hosts: map[string]*host{},
		subs:  map[*driver.Subscriber]struct{}{},
		last:  map[string]watched{},
	}
	for _, hc := range cfg.Hosts {
		// API version negotiation is the client's default (on the first
		// request; host.ready triggers it explicitly).
		opts := []client.Opt{client.WithHost(hc.Endpoint), client.WithUserAgent("ars-docker-driver")}
		if !hc.TLS.empty() {
			opts = append(opts, client.WithTLSClientConfig(hc.TLS.CAFile, hc.TLS.CertFile, hc.TLS.KeyFile))
		}
		if cfg.requestHook != nil {
			hook := cfg.requestHook
			opts = append(opts, client.WithHTTPRequestHook(func(r *http.Request) error { hook(r); return nil }))
		}
		cli, err := client.New(opts...)
		if err != nil {
			return nil, fmt.Errorf("docker: host %s: %w", hc.Name, err)
		}
		d.hosts[hc.Name] = &host{
			d: d, name: hc.Name, mode: hc.AddressMode, cli: cli, log: cfg.Logger.With("docker_host", hc.Name),
			watched: map[string]fsm.ReplicaSpec{}, ids: map[string]string{}, kick: make(chan struct{}, 1),
			helpers: map[string]helperState{}, ensured: map[string]ensuredState{},
		}
		d.order = append(d.order, hc.Name)
	}
	return d, nil
}

// Close releases idle connections. Watches end with their contexts.
func (d *Driver) Close() error {
	var errs []error
	for _, n := range d.order {
		errs = append(errs, d.hosts[n].cli.Close())
	}
	return errors.Join(errs...)
}

// hostFor finds the engine of a replica.
func (d *Driver) hostFor(r fsm.ReplicaSpec) (*host, error) {
	if r.Platform != fsm.PlatformContainer {
		return nil, fmt.Errorf("%w: platform %q is not %q (the Docker driver drives containers)", errInvalid, r.Platform, fsm.PlatformContainer)
	}
	if r.Image == "" {
		return nil, fmt.Errorf("%w: no image", errInvalid)
	}
	if r.Host == "" {
		if len(d.order) == 1 {
			return d.hosts[d.order[0]], nil
		}
		return nil, fmt.Errorf("%w: the replica names no docker host and %d are configured (%v)", errInvalid, len(d.order), d.order)
	}
	h, ok := d.hosts[r.Host]
	if !ok {
		return nil, fmt.Errorf("%w: docker host %q is not configured on this node (configured: %v)", errNotFound, r.Host, d.order)
	}
	return h, nil
}

// ContainerName is the name of a replica's container: "ars-" + replica.
// Replica names are unique within a service only; two services sharing an
// engine must not reuse a replica name (the driver refuses to adopt a
// container whose labels name another spec; see DESIGN.md).
func ContainerName(r fsm.ReplicaSpec) string { return "ars-" + r.Name }

func target(r fsm.ReplicaSpec) string {
	t := "container " + ContainerName(r)
	if r.Host != "" {
		t += " on " + r.Host
	}
	return t
}

// serviceNetwork is the network that carries the service address.
func serviceNetwork(r fsm.ReplicaSpec) string {
	if r.Container != nil && r.Container.Network != "" {
		return r.Container.Network
	}
	return fsm.DefaultContainerNetwork
}

// call runs one Engine API round trip bounded by timeout and records it.
// A round trip cut short by its own timeout (not by the caller) becomes
// errCallTimeout, which is retried.
func (h *host) call(ctx context.Context, method string, timeout time.Duration, fn func(ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	err := fn(cctx)
	h.d.m.calls.WithLabelValues(h.name, method).Observe(time.Since(start).Seconds())
	if err != nil {
		if ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %s after %s: %w", errCallTimeout, method, timeout, err)
		}
		h.d.m.callErrors.WithLabelValues(h.name, method, errKind(err)).Inc()
	}
	return err
}

// ready negotiates the API version once per engine (a ping). Until it
// succeeds every operation starts with it, so an engine that is down
// fails fast with ErrUnavailable instead of with a version error.
func (h *host) ready(ctx context.Context) error {
	if h.negotiated.Load() {
		return nil
	}
	err := h.call(ctx, "ping", h.d.cfg.CallTimeout, func(ctx context.Context) error {
		_, err := h.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
		return err
	})
	if err != nil {
		if tlsRefused(err) {
			return fmt.Errorf("%w: docker engine %s: the TLS handshake failed on certificates (the host's tls ca must have signed the engine's certificate, and the engine's --tlscacert ours): %w",
				errDenied, h.name, err)
		}
		return fmt.Errorf("%w: docker engine %s: %w", errUnavailable, h.name, err)
	}
	h.negotiated.Store(true)
	h.log.Info("docker engine reachable", "api_version", h.cli.ClientVersion())
	return nil
}

// inspect reads the replica's container; nil (and no error) if there is
// none. A container of that name that belongs to no replica, or to another
// one, is a conflict: the driver never adopts or removes it.
func (h *host) inspect(ctx context.Context, r fsm.ReplicaSpec) (*container.InspectResponse, error) {
	var res client.ContainerInspectResult
	err := h.call(ctx, "inspect", h.d.cfg.CallTimeout, func(ctx context.Context) error {
		var err error
		res, err = h.cli.ContainerInspect(ctx, ContainerName(r), client.ContainerInspectOptions{})
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("inspect %s: %w", ContainerName(r), err)
	}
	c := res.Container
	if c.State == nil || c.Config == nil || c.NetworkSettings == nil {
		return nil, fmt.Errorf("%w: inspect %s: incomplete answer from the engine", errFailed, ContainerName(r))
	}
	if owner := c.Config.Labels[labelReplica]; owner != r.Name {
		if owner == "" {
			return nil, fmt.Errorf("%w: a container named %s exists on docker host %s but was not created by ars (no %s label); remove or rename it", errConflict, ContainerName(r), h.name, labelReplica)
		}
		return nil, fmt.Errorf("%w: container %s on docker host %s belongs to replica %q", errConflict, ContainerName(r), h.name, owner)
	}
	h.mu.Lock()
	if h.ids[c.ID] != r.Name {
		for id, name := range h.ids { // forget the replica's earlier containers
			if name == r.Name {
				delete(h.ids, id)
			}
		}
		h.ids[c.ID] = r.Name
	}
	h.mu.Unlock()
	return &c, nil
}

func isNotFound(err error) bool {
	s, _ := classify(err)
	return s == errNotFound
}

// track adds a replica to the watched set of its host.
func (h *host) track(r fsm.ReplicaSpec) {
	h.mu.Lock()
	old, ok := h.watched[r.Name]
	h.watched[r.Name] = r
	changed := !ok || !old.Equal(r)
	h.mu.Unlock()
	if changed {
		select {
		case h.kick <- struct{}{}:
		default:
		}
	}
}

// step is one attempt's work on a freshly read container (nil: missing).
type step func(ctx context.Context, h *host, c *container.InspectResponse) error

// do runs one operation: up to MaxAttempts attempts, each of which reads
// the container's current state and acts only if needed (so a retry after
// an uncertain failure is safe), backing off in between. On failure it
// reads the state once more for the OpError.
func (d *Driver) do(ctx context.Context, op string, r fsm.ReplicaSpec, precheck func() error, fn step) error {
	start := time.Now()
	h, err := d.hostFor(r)
	if err == nil && precheck != nil {
		err = precheck()
	}
	hostLabel := r.Host
	if h != nil {
		hostLabel = h.name
	}
	if err != nil {
		d.m.ops.WithLabelValues(hostLabel, op, "error").Observe(time.Since(start).Seconds())
		return &driver.OpError{Op: op, Replica: r.Name, Target: target(r), Err: err}
	}
	h.track(r)
	var last error
	attempts := 0
	for attempts < d.cfg.MaxAttempts {
		attempts++
		last = func() error {
			if err := h.ready(ctx); err != nil {
				return err
			}
			c, err := h.inspect(ctx, r)
			if err != nil {
				return err
			}
			return fn(ctx, h, c)
		}()
		if last == nil {
			d.m.ops.WithLabelValues(h.name, op, "ok").Observe(time.Since(start).Seconds())
			return nil
		}
		if _, retry := classify(last); !retry || ctx.Err() != nil || attempts == d.cfg.MaxAttempts {
			break
		}
		h.log.Debug("docker operation failed; retrying", "op", op, "replica", r.Name, "attempt", attempts, "err", last)
		if !driver.Sleep(ctx, driver.Backoff(attempts)) {
			break
		}
	}
	d.m.ops.WithLabelValues(h.name, op, "error").Observe(time.Since(start).Seconds())
	oe := &driver.OpError{Op: op, Replica: r.Name, Target: target(r), Attempts: attempts, Err: classified(last)}
	if ctx.Err() == nil {
		if obs, err := d.observeOnce(ctx, h, r); err == nil {
			oe.State = &obs
		}
	}
	h.log.Warn("docker operation failed", "op", op, "replica", r.Name, "err", oe)
	return oe
}

func checkVersion(o driver.Options, c *container.InspectResponse) error {
	if o.IfVersion == "" {
		return nil
	}
	if v := changeVersion(c); v != o.IfVersion {
		return fmt.Errorf("%w: the container changed since it was observed (version %q, now %q)", errConflict, o.IfVersion, v)
	}
	return nil
}

// Attach connects the replica's container to its service network with the
// service address (controller.ServiceAddr, required). The container must be
// running and not paused. Attached with that address already: nothing is
// done. In helper mode (the default) the container joins under an address
// of its own and its helper adds the service address, so another replica
// holding it keeps it until its own Detach (make-before-break without a
// gap). In endpoint mode the address is the endpoint's: connected with
// another address it is reconnected, and another ars container holding the
// address is disconnected first (the engine gives an address to one
// endpoint at a time; see DESIGN.md). In both a container not made by ars
// holding the address is a conflict.
func (d *Driver) Attach(ctx context.Context, r fsm.ReplicaSpec, opts ...driver.Option) error {
	o := driver.ApplyOptions(opts...)
	pre := func() error {
		if !o.ServiceAddr.IsValid() {
			return fmt.Errorf("%w: attach needs the service address (controller.ServiceAddr option)", errInvalid)
		}
		if !o.ServiceAddr.Is4() {
			return fmt.Errorf("%w: service address %s: only IPv4 service addresses are supported", errInvalid, o.ServiceAddr)
		}
		return nil
	}
	return d.do(ctx, "attach", r, pre, func(ctx context.Context, h *host, c *container.InspectResponse) error {
		if err := checkVersion(o, c); err != nil {
			return err
		}
		if c == nil {
			return fmt.Errorf("%w: attach needs a running container (it does not exist; power it on first)", errInvalidState)
		}
		if st := c.State; !st.Running || st.Paused || st.Restarting {
			return fmt.Errorf("%w: attach needs a running container (it is %s)", errInvalidState, st.Status)
		}
		switch {
		case r.AddressHandover():
			return h.attachLink(ctx, r, c, o.ServiceAddr)
		case h.mode == AddressHelper:
			return h.attachHelper(ctx, r, c, o.ServiceAddr, o.ServicePort)
		}
		return h.attach(ctx, r, c, o.ServiceAddr)
	})
}

// Detach disconnects the replica's container from its service network, so
// it neither serves now nor after its next start. The engine allows this on
// running, paused and stopped containers alike. A missing container or one
// not on the network: nothing to do.
func (d *Driver) Detach(ctx context.Context, r fsm.ReplicaSpec, opts ...driver.Option) error {
	o := driver.ApplyOptions(opts...)
	return d.do(ctx, "detach", r, nil, func(ctx context.Context, h *host, c *container.InspectResponse) error {
		if err := checkVersion(o, c); err != nil {
			return err
		}
		if c == nil {
			return nil
		}
		if err := h.detach(ctx, r, c); err != nil {
			return err
		}
		h.forget(r, false)
		return nil
	})
}

// PowerOn makes the replica run: creates its container if missing (from
// the image and spec, on its other networks, not on the service network),
// starts it if stopped, unpauses it if paused. A stopped container created
// from an older spec (spec-hash label) and not on the service network is
// re-created first; a running one is left alone (see DESIGN.md). In helper
// mode it also makes sure of the replica's address helper, armed with the
// service address (driver.ServiceAddr, optional): the next Attach is then
// only the connect.
func (d *Driver) PowerOn(ctx context.Context, r fsm.ReplicaSpec, opts ...driver.Option) error {
	o := driver.ApplyOptions(opts...)
	svcAddr, svcPort := o.ServiceAddr, o.ServicePort
	return d.do(ctx, "power-on", r, nil, func(ctx context.Context, h *host, c *container.InspectResponse) error {
		if h.usesHelper(r) && (c == nil || !c.State.Running) {
			// Nothing is started on an engine that could not give it the
			// service address.
			if err := h.checkHelperImage(ctx); err != nil {
				return err
			}
		}
		if c != nil {
			switch st := c.State; {
			case st.Paused:
				err := h.simple(ctx, "unpause", c.ID, func(ctx context.Context) error {
					_, err := h.cli.ContainerUnpause(ctx, c.ID, client.ContainerUnpauseOptions{})
					return err
				})
				if err != nil {
					return err
				}
				return h.afterRun(ctx, r, c, svcAddr, svcPort)
			case st.Running:
				if c.Config.Labels[labelSpecHash] != specHash(r) {
					h.log.Warn("container runs an older spec; it takes the new one on its next restore or stopped power-on",
						"replica", r.Name, "container", ContainerName(r))
				}
				return h.afterRun(ctx, r, c, svcAddr, svcPort)
			case st.Status == container.StateRemoving:
				return fmt.Errorf("%w: the container is being removed", errRetry)
			case st.Restarting:
				return fmt.Errorf("%w: the container is restarting", errRetry)
			}
			if c.Config.Labels[labelSpecHash] != specHash(r) && !onNetwork(c, serviceNetwork(r)) || c.State.Dead {
				h.log.Info("re-creating a stopped container from its current spec", "replica", r.Name, "dead", c.State.Dead)
				if err := h.replace(ctx, r, c); err != nil {
					return err
				}
				c = nil
			}
		}
		if c == nil {
			id, err := h.create(ctx, r)
			if err != nil {
				return err
			}
			if err := h.start(ctx, r, id, false); err != nil {
				return err
			}
		} else if err := h.start(ctx, r, c.ID, onNetwork(c, serviceNetwork(r))); err != nil {
			if !staleTask(err) {
				return err
			}
			// The engine keeps a task of the container's earlier life
			// (seen after an engine restart: every start refused for a
			// minute and more). A stopped replica's clean state is its
			// image and spec: re-create it, detached, and start that.
			h.log.Warn("the engine refuses to start the stopped container (it keeps a task of its earlier life); re-creating it",
				"replica", r.Name, "container", ContainerName(r), "err", err)
			if rerr := h.replace(ctx, r, c); rerr != nil {
				return fmt.Errorf("%w (and re-creating it failed: %w)", err, rerr)
			}
			id, cerr := h.create(ctx, r)
			if cerr != nil {
				return cerr
			}
			if err := h.start(ctx, r, id, false); err != nil {
				return err
			}
		}
		h.forget(r, false)
		if !h.usesHelper(r) {
			return nil
		}
		now, err := h.inspect(ctx, r)
		if err != nil {
			return err
		}
		if now == nil || !now.State.Running {
			return fmt.Errorf("%w: the container stopped right after its start", errRetry)
		}
		return h.afterRun(ctx, r, now, svcAddr, svcPort)
	})
}

// staleTask reports whether a start failed because the engine's runtime
// still has a task of the container ("task … already exists").
func staleTask(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "task") && strings.Contains(msg, "already exists")
}

// usesHelper says whether r's service address is put in place by an address
// helper: in helper mode, unless the replica's agent does it (address
// handover).
func (h *host) usesHelper(r fsm.ReplicaSpec) bool {
	return h.mode == AddressHelper && !r.AddressHandover()
}

// afterRun follows a running container in AddressHelper mode: its helper
// runs in the container's current namespace, armed with the service
// address (svcAddr, the one PowerOn was given, unless the container has
// one recorded), and a container on the service network holds the
// service address recorded there (an attached replica that was stopped
// comes back attached, like a VM whose NIC connects at power-on).
func (h *host) afterRun(ctx context.Context, r fsm.ReplicaSpec, c *container.InspectResponse, svcAddr netip.Addr, svcPort uint16) error {
	if !h.usesHelper(r) {
		return nil
	}
	// Re-armed only when the caller passed the address: a PowerOn without
	// it changes nothing it did not change before arming existed.
	if _, err := h.ensureHelper(ctx, r, c, h.armingFor(ctx, r, c, svcAddr, svcPort), svcAddr.IsValid()); err != nil {
		return err
	}
	return h.restoreAddress(ctx, r, c)
}

// Suspend pauses a running container (the cgroup freezer: memory kept,
// no CPU, packets to it are queued and then dropped). ErrInvalidState if
// it does not run.
func (d *Driver) Suspend(ctx context.Context, r fsm.ReplicaSpec) error {
	return d.do(ctx, "suspend", r, nil, func(ctx context.Context, h *host, c *container.InspectResponse) error {
		switch {
		case c == nil:
			return fmt.Errorf("%w: cannot suspend a container that does not exist", errInvalidState)
		case c.State.Paused:
			return nil
		case !c.State.Running:
			return fmt.Errorf("%w: cannot suspend a stopped container (it is %s)", errInvalidState, c.State.Status)
		}
		return h.simple(ctx, "pause", c.ID, func(ctx context.Context) error {
			_, err := h.cli.ContainerPause(ctx, c.ID, client.ContainerPauseOptions{})
			return err
		})
	})
}

// Resume unpauses a paused container. A stopped or missing one is
// ErrInvalidState: starting it is PowerOn's job.
func (d *Driver) Resume(ctx context.Context, r fsm.ReplicaSpec) error {
	return d.do(ctx, "resume", r, nil, func(ctx context.Context, h *host, c *container.InspectResponse) error {
		switch {
		case c == nil:
			return fmt.Errorf("%w: resume needs a paused container (it does not exist; power it on instead)", errInvalidState)
		case c.State.Paused:
			return h.simple(ctx, "unpause", c.ID, func(ctx context.Context) error {
				_, err := h.cli.ContainerUnpause(ctx, c.ID, client.ContainerUnpauseOptions{})
				return err
			})
		case c.State.Running:
			return nil
		}
		return fmt.Errorf("%w: resume needs a paused container (it is %s; power it on instead)", errInvalidState, c.State.Status)
	})
}

// PowerOff stops the container hard (SIGTERM, then SIGKILL after
// StopGrace, default at once), paused or running. Missing or stopped:
// nothing to do. The container and its network configuration stay.
func (d *Driver) PowerOff(ctx context.Context, r fsm.ReplicaSpec) error {
	return d.do(ctx, "power-off", r, nil, func(ctx context.Context, h *host, c *container.InspectResponse) error {
		if c == nil || (!c.State.Running && !c.State.Paused && !c.State.Restarting) {
			return nil
		}
		secs := int(d.cfg.StopGrace / time.Second)
		h.forget(r, false) // its namespace, and the service address in it, go with the stop
		return h.call(ctx, "stop", d.cfg.SlowCallTimeout+d.cfg.StopGrace, func(ctx context.Context) error {
			_, err := h.cli.ContainerStop(ctx, c.ID, client.ContainerStopOptions{Timeout: &secs})
			return err
		})
	})
}

// Restore removes the container (whatever its state) and creates it again
// from the image and spec: the clean state of a container replica. The new
// container is left created but not started, and not on the service
// network, like a VM reverted to a powered-off snapshot; the reconciler
// powers it on or leaves it off as its role needs. It always re-creates
// (restoring twice is as good as once).
func (d *Driver) Restore(ctx context.Context, r fsm.ReplicaSpec) error {
	return d.do(ctx, "restore", r, nil, func(ctx context.Context, h *host, c *container.InspectResponse) error {
		if c != nil {
			if err := h.replace(ctx, r, c); err != nil {
				return err
			}
		} else {
			h.dropHelper(ctx, r)
		}
		_, err := h.create(ctx, r)
		return err
	})
}

// Observe reads the replica's state (one inspect once the engine's API
// version is known). A missing container is reported powered off, with
// an empty ChangeVersion.
func (d *Driver) Observe(ctx context.Context, r fsm.ReplicaSpec) (driver.Observation, error) {
	start := time.Now()
	unknown := driver.Observation{Replica: r.Name, Target: ContainerName(r), Power: driver.PowerUnknown, Host: r.Host}
	h, err := d.hostFor(r)
	if err != nil {
		d.m.ops.WithLabelValues(r.Host, "observe", "error").Observe(time.Since(start).Seconds())
		return unknown, &driver.OpError{Op: "observe", Replica: r.Name, Target: target(r), Err: err}
	}
	h.track(r)
	unknown.Host = h.name
	attempts := 0
	for {
		attempts++
		obs, err := d.observeOnce(ctx, h, r)
		if err == nil {
			d.m.ops.WithLabelValues(h.name, "observe", "ok").Observe(time.Since(start).Seconds())
			return obs, nil
		}
		if _, retry := classify(err); !retry || ctx.Err() != nil || attempts >= d.cfg.MaxAttempts || !driver.Sleep(ctx, driver.Backoff(attempts)) {
			d.m.ops.WithLabelValues(h.name, "observe", "error").Observe(time.Since(start).Seconds())
			return unknown, &driver.OpError{Op: "observe", Replica: r.Name, Target: target(r), Attempts: attempts, Err: classified(err)}
		}
	}
}

func (d *Driver) observeOnce(ctx context.Context, h *host, r fsm.ReplicaSpec) (driver.Observation, error) {
	if err := h.ready(ctx); err != nil {
		return driver.Observation{}, err
	}
	c, err := h.inspect(ctx, r)
	if err != nil {
		return driver.Observation{}, err
	}
	return observation(h, r, c), nil
}
