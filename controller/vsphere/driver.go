package vsphere

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
)

// Driver is the vSphere implementation of controller.Driver for one
// vCenter. Create it once per node with New; call Run for as long as the
// node leads (Run holds the session). Operations called while no Run is
// active fail with controller.ErrUnavailable.
type Driver struct {
	cfg  Config
	url  *url.URL
	tls  *tls.Config
	name string // the vCenter's name: metrics label "vcenter", log attribute, ReplicaSpec.VCenter
	log  *slog.Logger
	m    *Metrics

	// unanswered: the latest round trip got no answer (see Unreachable).
	unanswered atomic.Bool
	// answeredAt: when a RetrieveProperties last succeeded (UnixNano; see
	// alive); ping: one alive check at a time.
	answeredAt atomic.Int64
	ping       chan struct{}
	cache      obsCache

	mu      sync.Mutex
	run     *runState
	changed chan struct{} // closed and replaced whenever run changes
	refs    map[string]types.ManagedObjectReference
	watched map[types.ManagedObjectReference]map[string]fsm.ReplicaSpec // by replica name
	watchV  uint64                                                      // bumped when watched changes

	subMu sync.Mutex
	subs  map[*driver.Subscriber]struct{}
	last  map[string]watched // what the watch last reported, by replica name + vm
	kick  chan struct{}      // wakes the watch loop (subscribers or watched set changed)
}

var _ driver.Driver = (*Driver)(nil)

// runState is one leadership term's worth of driver state.
type runState struct {
	ctx    context.Context
	cancel context.CancelFunc
	ready  chan struct{} // closed once operations may run (logged in)
	sess   *session      // nil in per-operation mode

	mu      sync.Mutex
	closing bool
	ops     sync.WaitGroup
}

// New checks cfg and prepares a driver. It does not connect.
func New(cfg Config) (*Driver, error) {
	cfg.setDefaults()
	u, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	tc, err := tlsConfig(&cfg)
	if err != nil {
		return nil, fmt.Errorf("vsphere: %w", err)
	}
	m := cfg.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	d := &Driver{
		cfg:     cfg,
		url:     u,
		tls:     tc,
		name:    cfg.Name,
		m:       m,
		changed: make(chan struct{}),
		refs:    map[string]types.ManagedObjectReference{},
		watched: map[types.ManagedObjectReference]map[string]fsm.ReplicaSpec{},
		subs:    map[*driver.Subscriber]struct{}{},
		last:    map[string]watched{},
		kick:    make(chan struct{}, 1),
		ping:    make(chan struct{}, 1),
	}
	d.cache.init()
	d.log = cfg.Logger.With("vcenter", d.name)
	d.m.SessionsLive.WithLabelValues(d.name).Set(0)
	return d, nil
}

// Run holds this driver's vCenter session until ctx ends: it logs in
// (retrying with backoff until it succeeds), keeps the session alive and
// renews it when vCenter drops it, and runs the property-collector watch.
// When ctx ends it cancels operations in flight, waits for them, and logs
// out, so a node that stops leading holds no session. In per-operation
// mode it only marks the driver usable.
func (d *Driver) Run(ctx context.Context) error {
	rs := &runState{ready: make(chan struct{})}
	rs.ctx, rs.cancel = context.WithCancel(ctx)
	defer rs.cancel()
	d.mu.Lock()
	if d.run != nil {
		d.mu.Unlock()
		return errors.New("vsphere: driver is already running")
	}
	d.run = rs
	d.unanswered.Store(false)
	d.answeredAt.Store(0)
	d.cache.reset()
	d.refs = map[string]types.ManagedObjectReference{}
	d.watched = map[types.ManagedObjectReference]map[string]fsm.ReplicaSpec{}
	d.watchV++
	d.signalLocked()
	d.mu.Unlock()

	var wg sync.WaitGroup
	if d.cfg.PerOperationLogin {
		d.log.Info("vcenter: per-operation login mode (a new session for every operation)")
		close(rs.ready)
		d.publish(driver.Event{Kind: driver.EventResync, At: time.Now()})
	} else {
		// The login starts the moment leadership is won (Run is an
		// OnLeader routine) and runs beside the leader loop, which decides
		// and commits without vCenter and calls it only once Ready.
		start := time.Now()
		d.log.Info("vcenter login started")
		if s := d.loginLoop(rs.ctx); s != nil {
			rs.sess = s
			close(rs.ready)
			d.log.Info("vcenter ready", "login", time.Since(start))
			// Whoever skipped this vCenter's replicas while it was not
			// ready observes them now.
			d.publish(driver.Event{Kind: driver.EventResync, At: time.Now()})
			wg.Go(func() { d.keepAlive(rs.ctx, s) })
			wg.Go(func() { d.watchLoop(rs.ctx, s) })
		}
	}

	<-rs.ctx.Done()
	rs.mu.Lock()
	rs.closing = true
	rs.mu.Unlock()
	rs.ops.Wait()
	wg.Wait()

	d.mu.Lock()
	d.run = nil
	d.signalLocked()
	d.mu.Unlock()
	d.cache.reset()

	if rs.sess == nil {
		return nil
	}
	if err := rs.sess.logout(); err != nil {
		d.log.Warn("vcenter logout failed; the session expires on its own", "err", err)
		return fmt.Errorf("vsphere: logout: %w", err)
	}
	d.log.Info("vcenter session closed")
	return nil
}

// Unreachable reports whether this vCenter cannot be driven now: the node
// leads, and the latest round trip to the vCenter got no answer (a network
// error, or no answer within the call timeout: a vCenter that is down or
// hung) and none has answered since. A fault is an answer. A vCenter still
// logging in for the first time is not ready (Ready) but not unreachable:
// a switch to one of its replicas waits for the login; an unreachable
// one's replicas are not chosen to take over (controller.ReplicaReadier).
func (d *Driver) Unreachable() bool {
	d.mu.Lock()
	rs := d.run
	d.mu.Unlock()
	return rs != nil && d.unanswered.Load()
}

// Name is the vCenter's name (Config.Name).
func (d *Driver) Name() string { return d.name }

// Ready reports whether operations can run now without waiting: this node
// leads and the term's session is logged in (or the driver logs in per
// operation). The leader loop calls no operation on a driver that is not
// ready, so a decision never waits behind the login; when the session
// opens, watchers receive an EventResync.
func (d *Driver) Ready() bool {
	d.mu.Lock()
	rs := d.run
	d.mu.Unlock()
	if rs == nil || rs.ctx.Err() != nil {
		return false
	}
	select {
	case <-rs.ready:
		return true
	default:
		return false
	}
}

func (d *Driver) signalLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// loginLoop logs in, retrying with backoff (up to 10 s between tries)
// until it succeeds or ctx ends (nil then).
func (d *Driver) loginLoop(ctx context.Context) *session {
	for attempt := 1; ; attempt++ {
		s, err := d.dial(ctx, false)
		if err == nil {
			if err = s.login(ctx, "initial"); err == nil {
				d.log.Info("vcenter session opened", "user", d.cfg.Username)
				return s
			}
			s.soap.CloseIdleConnections()
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := min(driver.Backoff(attempt)*4, 10*time.Second)
		d.log.Warn("vcenter login failed; retrying", "err", err, "attempt", attempt, "retry_in", wait)
		if !driver.Sleep(ctx, wait) {
			return nil
		}
	}
}

// keepAlive checks the session every KeepAlive: the check itself keeps an
// idle session from expiring, and a session found gone is renewed at once
// (off the critical path). Unlike govmomi's keepalive handler it never
// stops on a failed check: it retries sooner and goes on.
func (d *Driver) keepAlive(ctx context.Context, s *session) {
	next := d.cfg.KeepAlive
	failures := 0
	for driver.Sleep(ctx, next) {
		seen := s.gen.Load()
		us, err := s.userSession(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			failures++
			d.m.KeepAlives.WithLabelValues(d.name, "error").Inc()
			next = min(driver.Backoff(failures)*4, d.cfg.KeepAlive)
			d.log.Warn("vcenter keep-alive failed", "err", err, "retry_in", next)
			continue
		case us == nil:
			if err := s.renew(ctx, seen, "keep-alive found the session gone"); err != nil && !errors.Is(err, errSessionAlive) {
				failures++
				d.m.KeepAlives.WithLabelValues(d.name, "error").Inc()
				next = min(driver.Backoff(failures)*4, d.cfg.KeepAlive)
				d.log.Warn("vcenter re-login failed", "err", err, "retry_in", next)
				continue
			}
			d.m.KeepAlives.WithLabelValues(d.name, "relogin").Inc()
		default:
			d.m.KeepAlives.WithLabelValues(d.name, "ok").Inc()
		}
		failures = 0
		next = d.cfg.KeepAlive
	}
}

// begin admits one operation: it waits (up to the call timeout) for a
// running, logged-in driver and returns a context that is also cancelled
// when leadership ends.
func (d *Driver) begin(ctx context.Context) (context.Context, *runState, func(), error) {
	wait := time.NewTimer(d.cfg.CallTimeout)
	defer wait.Stop()
	for {
		d.mu.Lock()
		rs, changed := d.run, d.changed
		d.mu.Unlock()
		var ready <-chan struct{} // nil (never ready) without a live term
		if rs != nil && rs.ctx.Err() == nil {
			ready = rs.ready
		}
		select {
		case <-ready:
			rs.mu.Lock()
			if rs.closing {
				rs.mu.Unlock()
				return nil, nil, nil, fmt.Errorf("%w: leadership ended: %w", errUnavailable, context.Canceled)
			}
			rs.ops.Add(1)
			rs.mu.Unlock()
			octx, cancel := context.WithCancel(ctx)
			stop := context.AfterFunc(rs.ctx, cancel)
			return octx, rs, func() { stop(); cancel(); rs.ops.Done() }, nil
		case <-changed: // a term started or ended: look again
		case <-ctx.Done():
			return nil, nil, nil, fmt.Errorf("%w: %w", errUnavailable, ctx.Err())
		case <-wait.C:
			if rs != nil {
				return nil, nil, nil, fmt.Errorf("%w: not logged in to vcenter %s yet", errUnavailable, d.name)
			}
			return nil, nil, nil, fmt.Errorf("%w: no vcenter session (this node does not lead)", errUnavailable)
		}
	}
}

// withSession runs fn with the held session, or in per-operation mode
// with a session of its own that is logged out afterwards.
func (d *Driver) withSession(ctx context.Context, rs *runState, fn func(*session) error) error {
	if rs.sess != nil {
		return fn(rs.sess)
	}
	s, err := d.dial(ctx, true)
	if err != nil {
		return err
	}
	if err := s.login(ctx, "per_operation"); err != nil {
		s.soap.CloseIdleConnections()
		return err
	}
	defer func() {
		if err := s.logout(); err != nil {
			d.log.Warn("vcenter logout of a per-operation session failed", "err", err)
		}
	}()
	return fn(s)
}

// resolve finds the VM of a replica: by inventory path if the spec's vm
// contains a slash ("/DC0/vm/dns/bind9-win"), else by name across the
// inventory (an ambiguous name is an error). Results are cached for the
// term, except in per-operation mode (which looked every VM up anew, as
// the old script did).
func (d *Driver) resolve(ctx context.Context, s *session, r fsm.ReplicaSpec) (types.ManagedObjectReference, error) {
	if !s.perOp {
		d.mu.Lock()
		ref, ok := d.refs[r.VM]
		d.mu.Unlock()
		if ok {
			return ref, nil
		}
	}
	ref, err := d.lookup(ctx, s, r.VM)
	if err != nil {
		return ref, err
	}
	if !s.perOp {
		d.mu.Lock()
		d.refs[r.VM] = ref
		d.mu.Unlock()
	}
	return ref, nil
}

func (d *Driver) lookup(ctx context.Context, s *session, name string) (types.ManagedObjectReference, error) {
	if strings.Contains(name, "/") {
		obj, err := object.NewSearchIndex(s.vc).FindByInventoryPath(ctx, name)
		if err != nil {
			return types.ManagedObjectReference{}, fmt.Errorf("find vm %q: %w", name, err)
		}
		if obj == nil {
			return types.ManagedObjectReference{}, fmt.Errorf("%w: no VM at inventory path %q", errNotFound, name)
		}
		if obj.Reference().Type != "VirtualMachine" {
			return types.ManagedObjectReference{}, fmt.Errorf("%w: %q is a %s, not a VM", errInvalid, name, obj.Reference().Type)
		}
		return obj.Reference(), nil
	}
	m := view.NewManager(s.vc)
	v, err := m.CreateContainerView(ctx, s.vc.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return types.ManagedObjectReference{}, fmt.Errorf("find vm %q: %w", name, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.CallTimeout)
		defer cancel()
		_ = v.Destroy(dctx)
	}()
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name"}, &vms); err != nil {
		return types.ManagedObjectReference{}, fmt.Errorf("find vm %q: %w", name, err)
	}
	var found []types.ManagedObjectReference
	for _, vm := range vms {
		if vm.Name == name {
			found = append(found, vm.Self)
		}
	}
	switch len(found) {
	case 0:
		return types.ManagedObjectReference{}, fmt.Errorf("%w: no VM named %q", errNotFound, name)
	case 1:
		return found[0], nil
	}
	return types.ManagedObjectReference{}, fmt.Errorf("%w: %d VMs are named %q; use the inventory path (/DC/vm/…)", errInvalid, len(found), name)
}

// forget drops a stale cached reference.
func (d *Driver) forget(r fsm.ReplicaSpec) {
	d.mu.Lock()
	delete(d.refs, r.VM)
	d.mu.Unlock()
}

// track adds a replica to the watched set.
func (d *Driver) track(ref types.ManagedObjectReference, r fsm.ReplicaSpec) {
	d.mu.Lock()
	specs := d.watched[ref]
	if specs == nil {
		specs = map[string]fsm.ReplicaSpec{}
		d.watched[ref] = specs
	}
	old, ok := specs[r.Name]
	specs[r.Name] = r
	if !ok || old != r {
		d.watchV++
		d.kickWatch()
	}
	d.mu.Unlock()
}

func (d *Driver) kickWatch() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func (d *Driver) checkSpec(r fsm.ReplicaSpec) error {
	if r.Platform != fsm.PlatformVM {
		return fmt.Errorf("%w: platform %q is not %q (the vSphere driver drives VMs)", errInvalid, r.Platform, fsm.PlatformVM)
	}
	if r.VCenter != "" && r.VCenter != d.name {
		// A Set routes by the name; a replica that reached the wrong
		// vCenter would act on a VM of the same name there.
		return fmt.Errorf("%w: the replica names vcenter %q, this driver is %q", errInvalid, r.VCenter, d.name)
	}
	if r.VM == "" {
		return fmt.Errorf("%w: no vm name", errInvalid)
	}
	return nil
}

func target(r fsm.ReplicaSpec) string { return "vm " + r.VM }

// step is one attempt's work on a freshly read VM.
type step func(ctx context.Context, s *session, ref types.ManagedObjectReference, vm *mo.VirtualMachine) error

// do runs one operation: admit it, then up to MaxAttempts attempts (each
// resolves the VM, reads its current state and acts only if needed, so a
// retry after an uncertain failure is safe), backing off in between. On
// failure it reads the replica's state once more, so the caller knows
// where it stands.
func (d *Driver) do(ctx context.Context, op string, r fsm.ReplicaSpec, fn step) error {
	start := time.Now()
	if err := d.checkSpec(r); err != nil {
		d.m.Ops.WithLabelValues(d.name, op, "error").Observe(time.Since(start).Seconds())
		return &driver.OpError{Op: op, Replica: r.Name, Target: target(r), Err: err}
	}
	ctx, rs, end, err := d.begin(ctx)
	if err != nil {
		d.m.Ops.WithLabelValues(d.name, op, "error").Observe(time.Since(start).Seconds())
		return &driver.OpError{Op: op, Replica: r.Name, Target: target(r), Err: err}
	}
	defer end()
	d.cache.opStart(r.VM)
	defer d.cache.opEnd(r.VM)

	var last error
	attempts := 0
	for attempts < d.cfg.MaxAttempts {
		attempts++
		last = d.withSession(ctx, rs, func(s *session) error {
			ref, vm, _, err := d.readReplica(ctx, s, r, false)
			if err != nil {
				return err
			}
			return fn(ctx, s, ref, vm)
		})
		if last == nil {
			d.m.Ops.WithLabelValues(d.name, op, "ok").Observe(time.Since(start).Seconds())
			return nil
		}
		if _, retry := classify(last); !retry || ctx.Err() != nil || attempts == d.cfg.MaxAttempts {
			break
		}
		d.log.Debug("vcenter operation failed; retrying", "op", op, "replica", r.Name, "attempt", attempts, "err", last)
		if !driver.Sleep(ctx, driver.Backoff(attempts)) {
			break
		}
	}
	d.m.Ops.WithLabelValues(d.name, op, "error").Observe(time.Since(start).Seconds())
	oe := &driver.OpError{Op: op, Replica: r.Name, Target: target(r), Attempts: attempts, Err: classified(last)}
	if ctx.Err() == nil {
		if obs, err := d.observe(ctx, rs, r); err == nil || obs.Replica != "" {
			oe.State = &obs
		}
	}
	d.log.Warn("vcenter operation failed", "op", op, "replica", r.Name, "err", oe)
	return oe
}

// Attach connects the replica's service NIC (and marks it connected at
// power-on). The VM must be powered on.
func (d *Driver) Attach(ctx context.Context, r fsm.ReplicaSpec, opts ...driver.Option) error {
	o := driver.ApplyOptions(opts...)
	return d.do(ctx, "attach", r, func(ctx context.Context, s *session, ref types.ManagedObjectReference, vm *mo.VirtualMachine) error {
		return d.setNIC(ctx, s, ref, vm, r, true, o)
	})
}

// Detach disconnects the replica's service NIC (and keeps it disconnected
// at the next power-on).
func (d *Driver) Detach(ctx context.Context, r fsm.ReplicaSpec, opts ...driver.Option) error {
	o := driver.ApplyOptions(opts...)
	return d.do(ctx, "detach", r, func(ctx context.Context, s *session, ref types.ManagedObjectReference, vm *mo.VirtualMachine) error {
		return d.setNIC(ctx, s, ref, vm, r, false, o)
	})
}

func (d *Driver) setNIC(ctx context.Context, s *session, ref types.ManagedObjectReference, vm *mo.VirtualMachine, r fsm.ReplicaSpec, want bool, o driver.Options) error {
	if vm.Config == nil {
		return fmt.Errorf("%w: the VM has no configuration (inaccessible?)", errUnavailable)
	}
	nic, err := findNIC(object.VirtualDeviceList(vm.Config.Hardware.Device), r.NIC)
	if err != nil {
		return err
	}
	version := vm.Config.ChangeVersion
	if o.IfVersion != "" && o.IfVersion != version {
		return fmt.Errorf("%w: the VM changed since it was observed (change version %s, now %s)", errConflict, o.IfVersion, version)
	}
	dev := nic.GetVirtualDevice()
	if dev.Connectable == nil {
		return fmt.Errorf("%w: the network adapter cannot be connected or disconnected", errUnsupported)
	}
	on := vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
	if want && !on {
		return fmt.Errorf("%w: attach needs a running VM (it is %s)", errInvalidState, vm.Runtime.PowerState)
	}
	if dev.Connectable.StartConnected == want && (!on || dev.Connectable.Connected == want) {
		return nil // already there
	}
	conn := *dev.Connectable
	conn.StartConnected = want
	conn.Connected = want && on
	dev.Connectable = &conn
	spec := types.VirtualMachineConfigSpec{
		// Optimistic concurrency: vCenter refuses the reconfigure with
		// ConcurrentAccess if the VM's configuration changed since
		// version, so a deposed leader cannot overwrite a newer decision.
		ChangeVersion: version,
		DeviceChange: []types.BaseVirtualDeviceConfigSpec{&types.VirtualDeviceConfigSpec{
			Operation: types.VirtualDeviceConfigSpecOperationEdit,
			Device:    nic,
		}},
	}
	res, err := methods.ReconfigVM_Task(ctx, s.vc, &types.ReconfigVM_Task{This: ref, Spec: spec})
	if err != nil {
		return err
	}
	return s.waitTask(ctx, res.Returnval, "reconfigVm")
}

// PowerOn boots a powered-off replica or resumes a suspended one (options
// are ignored: the guest configures its NIC's address itself).
func (d *Driver) PowerOn(ctx context.Context, r fsm.ReplicaSpec, _ ...driver.Option) error {
	return d.do(ctx, "power-on", r, func(ctx context.Context, s *session, ref types.ManagedObjectReference, vm *mo.VirtualMachine) error {
		if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
			return nil
		}
		return d.powerOn(ctx, s, ref)
	})
}

func (d *Driver) powerOn(ctx context.Context, s *session, ref types.ManagedObjectReference) error {
	res, err := methods.PowerOnVM_Task(ctx, s.vc, &types.PowerOnVM_Task{This: ref})
	if err != nil {
		return err
	}
	return s.waitTask(ctx, res.Returnval, "powerOn")
}

// Resume runs a suspended replica again. A powered-off one is an error:
// that needs a boot (PowerOn), not a resume.
func (d *Driver) Resume(ctx context.Context, r fsm.ReplicaSpec) error {
	return d.do(ctx, "resume", r, func(ctx context.Context, s *session, ref types.ManagedObjectReference, vm *mo.VirtualMachine) error {
		switch vm.Runtime.PowerState {
		case types.VirtualMachinePowerStatePoweredOn:
			return nil
		case types.VirtualMachinePowerStateSuspended:
			return d.powerOn(ctx, s, ref)
		}
		return fmt.Errorf("%w: resume needs a suspended VM (it is %s; power it on instead)", errInvalidState, vm.Runtime.PowerState)
	})
}

// Suspend suspends a running replica. FT-protected VMs cannot be
// suspended: that is refused without asking vCenter.
func (d *Driver) Suspend(ctx context.Context, r fsm.ReplicaSpec) error {
	return d.do(ctx, "suspend", r, func(ctx context.Context, s *session, ref types.ManagedObjectReference, vm *mo.VirtualMachine) error {
		if ft := driver.FTState(vm.Runtime.FaultToleranceState); ft.Protected() {
			return fmt.Errorf("%w: the VM is protected by vSphere FT (%s), which does not allow suspend", errUnsupported, ft)
		}
		switch vm.Runtime.PowerState {
		case types.VirtualMachinePowerStateSuspended:
			return nil
		case types.VirtualMachinePowerStatePoweredOff:
			return fmt.Errorf("%w: cannot suspend a powered-off VM", errInvalidState)
		}
		res, err := methods.SuspendVM_Task(ctx, s.vc, &types.SuspendVM_Task{This: ref})
		if err != nil {
			return err
		}
		return s.waitTask(ctx, res.Returnval, "suspend")
	})
}

// PowerOff powers the replica off (hard), from running or suspended.
func (d *Driver) PowerOff(ctx context.Context, r fsm.ReplicaSpec) error {
	return d.do(ctx, "power-off", r, func(ctx context.Context, s *session, ref types.ManagedObjectReference, vm *mo.VirtualMachine) error {
		if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOff {
			return nil
		}
		res, err := methods.PowerOffVM_Task(ctx, s.vc, &types.PowerOffVM_Task{This: ref})
		if err != nil {
			return err
		}
		return s.waitTask(ctx, res.Returnval, "powerOff")
	})
}

// Restore reverts the replica to the snapshot named in its spec. A revert
// always runs (reverting twice is as good as once). Not for FT-protected
// VMs.
func (d *Driver) Restore(ctx context.Context, r fsm.ReplicaSpec) error {
	return d.do(ctx, "restore", r, func(ctx context.Context, s *session, ref types.ManagedObjectReference, vm *mo.VirtualMachine) error {
		if r.Snapshot == "" {
			return fmt.Errorf("%w: the replica names no clean snapshot (snapshot)", errInvalid)
		}
		if ft := driver.FTState(vm.Runtime.FaultToleranceState); ft.Protected() {
			return fmt.Errorf("%w: the VM is protected by vSphere FT (%s), which does not allow snapshots", errUnsupported, ft)
		}
		snap, err := findSnapshot(vm, r.Snapshot)
		if err != nil {
			return err
		}
		res, err := methods.RevertToSnapshot_Task(ctx, s.vc, &types.RevertToSnapshot_Task{This: snap})
		if err != nil {
			return err
		}
		return s.waitTask(ctx, res.Returnval, "revertToSnapshot")
	})
}

// Observe reads the replica's state (one round trip with a held session).
// A missing or ambiguous service NIC is reported as an error, with the
// rest of the observation filled in.
func (d *Driver) Observe(ctx context.Context, r fsm.ReplicaSpec) (driver.Observation, error) {
	start := time.Now()
	fail := func(err error, attempts int, obs *driver.Observation) (driver.Observation, error) {
		d.m.Ops.WithLabelValues(d.name, "observe", "error").Observe(time.Since(start).Seconds())
		oe := &driver.OpError{Op: "observe", Replica: r.Name, Target: target(r), Attempts: attempts, State: obs, Err: classified(err)}
		if obs != nil {
			return *obs, oe
		}
		return driver.Observation{Replica: r.Name, Target: r.VM, Power: driver.PowerUnknown, Tools: driver.ToolsUnknown}, oe
	}
	if err := d.checkSpec(r); err != nil {
		return fail(err, 0, nil)
	}
	ctx, rs, end, err := d.begin(ctx)
	if err != nil {
		return fail(err, 0, nil)
	}
	defer end()
	if obs, ok, err := d.cachedObserve(ctx, rs.sess, r); err != nil {
		return fail(err, 1, nil)
	} else if ok {
		d.m.Ops.WithLabelValues(d.name, "observe", "cached").Observe(time.Since(start).Seconds())
		return obs, nil
	}
	var obs driver.Observation
	attempts := 0
	for {
		attempts++
		st := d.cache.stamp(r.VM)
		obs, err = d.observe(ctx, rs, r)
		if err == nil {
			if rs.sess != nil {
				d.cache.put(r, obs, st)
			}
			d.m.Ops.WithLabelValues(d.name, "observe", "ok").Observe(time.Since(start).Seconds())
			return obs, nil
		}
		if obs.Replica != "" { // read fine; the NIC is the problem
			return fail(err, attempts, &obs)
		}
		if _, retry := classify(err); !retry || ctx.Err() != nil || attempts >= d.cfg.MaxAttempts || !driver.Sleep(ctx, driver.Backoff(attempts)) {
			return fail(err, attempts, nil)
		}
	}
}

// readReplica resolves r to its VM and reads it (with its running tasks if
// asked), keeping the lookup cache current: a VM that vanished is
// forgotten, one that was read is tracked for the watch.
func (d *Driver) readReplica(ctx context.Context, s *session, r fsm.ReplicaSpec, tasks bool) (types.ManagedObjectReference, *mo.VirtualMachine, []taskState, error) {
	ref, err := d.resolve(ctx, s, r)
	if err != nil {
		return ref, nil, nil, err
	}
	vm, ts, err := s.readVM(ctx, ref, tasks)
	if err != nil {
		if errors.Is(err, errRefGone) {
			d.forget(r)
		}
		return ref, nil, nil, err
	}
	if !s.perOp {
		d.track(ref, r)
	}
	return ref, vm, ts, nil
}

// observe is one read; obs.Replica is set whenever the VM could be read.
func (d *Driver) observe(ctx context.Context, rs *runState, r fsm.ReplicaSpec) (obs driver.Observation, err error) {
	err = d.withSession(ctx, rs, func(s *session) error {
		_, vm, tasks, err := d.readReplica(ctx, s, r, true)
		if err != nil {
			return err
		}
		var nicErr error
		obs, nicErr = observation(r, vm, tasks)
		return nicErr
	})
	return obs, err
}

// waitTask polls a task until it ends (5 ms, doubling to 100 ms between
// reads, bounded by TaskTimeout). Polling keeps no per-task state on
// vCenter (a property-collector wait would create and destroy a collector
// per task) and survives a re-login transparently.
func (s *session) waitTask(ctx context.Context, ref types.ManagedObjectReference, name string) error {
	tctx, cancel := context.WithTimeout(ctx, s.d.cfg.TaskTimeout)
	defer cancel()
	pause := 5 * time.Millisecond
	for {
		var t mo.Task
		res, err := methods.RetrieveProperties(tctx, s.vc, &types.RetrieveProperties{
			This: s.vc.ServiceContent.PropertyCollector,
			SpecSet: []types.PropertyFilterSpec{{
				ObjectSet: []types.ObjectSpec{{Obj: ref}},
				PropSet:   []types.PropertySpec{{Type: "Task", PathSet: []string{"info.state", "info.error"}}},
			}},
		})
		if err == nil {
			err = mo.LoadObjectContent(res.Returnval, &t)
		}
		if err != nil {
			if ctx.Err() == nil && tctx.Err() != nil {
				return fmt.Errorf("%w: %s after %s", errTaskTimeout, name, s.d.cfg.TaskTimeout)
			}
			return fmt.Errorf("wait for task %s: %w", name, err)
		}
		switch t.Info.State {
		case types.TaskInfoStateSuccess:
			return nil
		case types.TaskInfoStateError:
			te := &taskError{task: name}
			if t.Info.Error != nil {
				te.fault, te.msg = t.Info.Error.Fault, t.Info.Error.LocalizedMessage
			}
			return te
		}
		if !driver.Sleep(tctx, pause) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %s still %s after %s", errTaskTimeout, name, t.Info.State, s.d.cfg.TaskTimeout)
		}
		pause = min(pause*2, 100*time.Millisecond)
	}
}
