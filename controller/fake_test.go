package controller

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/controller/probe"
	"github.com/ars-project/ars/fsm"
)

// fakeCluster is a Cluster backed by a real fsm.Machine (term 1).
type fakeCluster struct {
	mu      sync.Mutex
	m       *fsm.Machine
	index   uint64
	applied chan struct{}
	next    chan struct{} // closed and replaced on every commit (Changed)
	cmds    []fsm.Command // committed commands, in order
	voters  int           // VoterCount (0: 1)
	// level, when set, is the cluster's format level: entries above it
	// are refused as the leader's gate refuses them (cluster.checkFormat).
	level int
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{m: fsm.New(), applied: make(chan struct{}, 1), next: make(chan struct{})}
}

func (c *fakeCluster) Apply(_ context.Context, data []byte) (fsm.Result, error) {
	_, cmd, err := fsm.Decode(data)
	if err != nil {
		return fsm.Result{}, err
	}
	c.mu.Lock()
	if lvl := fsm.Level(cmd); c.level > 0 && lvl > c.level {
		c.mu.Unlock()
		return fsm.Result{}, fsm.NeedsUpgrade(cmd.Type(), lvl, []string{"n3 (level 1)"})
	}
	c.index++
	res, err := c.m.Apply(c.index, 1, data)
	if err == nil {
		c.cmds = append(c.cmds, cmd)
	}
	close(c.next)
	c.next = make(chan struct{})
	c.mu.Unlock()
	select {
	case c.applied <- struct{}{}:
	default:
	}
	return res, err
}

func (c *fakeCluster) Term() uint64 { return 1 }

func (c *fakeCluster) Services() []fsm.Service {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m.Services()
}

func (c *fakeCluster) Service(name string) (fsm.Service, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m.Service(name)
}

func (c *fakeCluster) Alerts() []fsm.AlertRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m.Alerts()
}

func (c *fakeCluster) Applied() <-chan struct{} { return c.applied }

func (c *fakeCluster) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.next
}

func (c *fakeCluster) VoterCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.voters, 1)
}

func (c *fakeCluster) must(t *testing.T, cmd fsm.Command) fsm.Result {
	t.Helper()
	data, err := fsm.Encode(1, cmd)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Apply(context.Background(), data)
	if err != nil {
		t.Fatalf("apply %T: %v", cmd, err)
	}
	return res
}

func (c *fakeCluster) commands() []fsm.Command {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]fsm.Command(nil), c.cmds...)
}

// fakeVM is one in-memory replica.
type fakeVM struct {
	service, impl string
	power         driver.Power
	nic, nicStart bool
	noSuspend     bool
	restored      int
	// addrMode: address handover; the replica serves only while held
	// (its fake agent claimed the address) as well as attached.
	addrMode, held bool
}

// onAddress: the replica answers on the service address.
func (vm *fakeVM) onAddress() bool {
	return vm.power == driver.PowerOn && vm.nic && (!vm.addrMode || vm.held)
}

// fakeDriver is an in-memory Driver. It fails the test when docs/design.md §4.2
// (one attached replica per service outside a make-before-break window) or
// docs/design.md §4.4 (a quarantined/recovering replica attached) breaks.
type fakeDriver struct {
	t  *testing.T
	cl *fakeCluster

	mu       sync.Mutex
	vms      map[string]*fakeVM
	calls    []string
	fail     map[string]int           // "attach r": failures left
	failWith map[string]error         // "attach r": the error of those failures (default driver.ErrFailed)
	delay    map[string]chan struct{} // "op r": blocks until closed
	held     map[string]int           // "op r": calls that reached their delay
	then     map[string]func()        // "op r": run (under mu) once after the call succeeds
	watchers []chan driver.Event
	attacked map[string]bool // impls under DoS: they do not answer
	// hung: replicas whose DNS server is wedged: they answer nothing, on
	// the service address or on their health address (healthAddr).
	hung       map[string]bool
	healthAddr map[string]string // health_addr -> replica
	healthQ    map[string]int    // replica -> queries at its health address
	// noLeader, when set, makes a query fail the test: no leadership runs.
	noLeader atomic.Bool
	notReady atomic.Bool  // Ready reports false (a vCenter login in progress)
	observes atomic.Int64 // Observe calls
	// unarmed counts power-ons made without the service address (the
	// Docker driver arms a replica's address helper with it).
	unarmed atomic.Int64
}

// Ready implements Readier.
func (d *fakeDriver) Ready() bool { return !d.notReady.Load() }

// becomeReady ends the "login" and tells the watchers to resync, as the
// vSphere driver does when its session opens.
func (d *fakeDriver) becomeReady() {
	d.notReady.Store(false)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, w := range d.watchers {
		select {
		case w <- driver.Event{Kind: driver.EventResync, At: time.Now()}:
		default:
		}
	}
}

func newFakeDriver(t *testing.T, cl *fakeCluster) *fakeDriver {
	return &fakeDriver{t: t, cl: cl, vms: map[string]*fakeVM{}, fail: map[string]int{}, failWith: map[string]error{},
		delay: map[string]chan struct{}{}, held: map[string]int{}, then: map[string]func(){}, attacked: map[string]bool{},
		hung: map[string]bool{}, healthAddr: map[string]string{}, healthQ: map[string]int{}}
}

func (d *fakeDriver) add(service, name, impl string, power driver.Power, nic bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.vms[name] = &fakeVM{service: service, impl: impl, power: power, nic: nic, nicStart: nic}
}

func (d *fakeDriver) op(ctx context.Context, op string, r fsm.ReplicaSpec, f func(vm *fakeVM) error) error {
	key := op + " " + r.Name
	d.mu.Lock()
	ch := d.delay[key]
	d.mu.Unlock()
	if ch != nil {
		d.mu.Lock()
		d.held[key]++
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return &driver.OpError{Op: op, Replica: r.Name, Err: fmt.Errorf("%w: %w", driver.ErrUnavailable, ctx.Err())}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if op != "observe" {
		d.calls = append(d.calls, key)
	} else {
		d.observes.Add(1)
	}
	vm, ok := d.vms[r.Name]
	if !ok {
		d.calls = append(d.calls, key+" (not found)")
		return &driver.OpError{Op: op, Replica: r.Name, Err: driver.ErrNotFound}
	}
	if d.fail[key] > 0 {
		d.fail[key]--
		kind := driver.ErrFailed
		if e := d.failWith[key]; e != nil {
			kind = e
		}
		return &driver.OpError{Op: op, Replica: r.Name, Attempts: 1, Err: fmt.Errorf("%w: injected", kind)}
	}
	if err := f(vm); err != nil {
		return &driver.OpError{Op: op, Replica: r.Name, Attempts: 1, Err: err}
	}
	if op != "observe" {
		d.checkLocked(vm.service, op, r.Name)
	}
	if f := d.then[key]; f != nil {
		delete(d.then, key)
		f()
	}
	return nil
}

// checkLocked asserts docs/design.md §4.2 and §4.4 against the committed state.
func (d *fakeDriver) checkLocked(service, op, replica string) {
	svc, ok := d.cl.Service(service)
	if !ok {
		return
	}
	var attached []string
	for name, vm := range d.vms {
		if vm.service == service && vm.onAddress() {
			attached = append(attached, name)
			if rs, _ := svc.Replica(name); rs.Role == fsm.RoleQuarantined || rs.Role == fsm.RoleRecovering {
				if name == replica && (op == "attach" || op == "power-on" || op == "claim") {
					d.t.Errorf("invariant 4: %s %s: replica %s is %s and attached", op, replica, name, rs.Role)
				}
			}
		}
	}
	if len(attached) <= 1 {
		return
	}
	in := svc.Intent
	if in != nil && (in.Mode == fsm.ModeMakeBeforeBreak || in.Mode == fsm.ModeParallel) && len(attached) == 2 {
		ok := true
		for _, a := range attached {
			ok = ok && (a == in.From || a == in.To)
		}
		if ok {
			return
		}
	}
	d.t.Errorf("invariant 2: after %s %s: service %s has %d attached replicas %v (intent %+v)", op, replica, service, len(attached), attached, in)
}

func (d *fakeDriver) Attach(ctx context.Context, r fsm.ReplicaSpec, _ ...driver.Option) error {
	return d.op(ctx, "attach", r, func(vm *fakeVM) error {
		if vm.power != driver.PowerOn {
			return driver.ErrInvalidState
		}
		vm.nic, vm.nicStart = true, true
		return nil
	})
}

func (d *fakeDriver) Detach(ctx context.Context, r fsm.ReplicaSpec, _ ...driver.Option) error {
	return d.op(ctx, "detach", r, func(vm *fakeVM) error {
		vm.nic, vm.nicStart = false, false
		return nil
	})
}

func (d *fakeDriver) PowerOn(ctx context.Context, r fsm.ReplicaSpec, opts ...driver.Option) error {
	if !driver.ApplyOptions(opts...).ServiceAddr.IsValid() {
		d.unarmed.Add(1)
	}
	return d.op(ctx, "power-on", r, func(vm *fakeVM) error {
		if vm.power == driver.PowerOff {
			vm.nic = vm.nicStart
		}
		vm.power = driver.PowerOn
		return nil
	})
}

func (d *fakeDriver) Suspend(ctx context.Context, r fsm.ReplicaSpec) error {
	return d.op(ctx, "suspend", r, func(vm *fakeVM) error {
		if vm.noSuspend {
			return driver.ErrUnsupported
		}
		if vm.power != driver.PowerOn {
			return driver.ErrInvalidState
		}
		vm.power = driver.PowerSuspended
		return nil
	})
}

func (d *fakeDriver) Resume(ctx context.Context, r fsm.ReplicaSpec) error {
	return d.op(ctx, "resume", r, func(vm *fakeVM) error {
		if vm.power == driver.PowerOff {
			return driver.ErrInvalidState
		}
		vm.power = driver.PowerOn
		return nil
	})
}

func (d *fakeDriver) PowerOff(ctx context.Context, r fsm.ReplicaSpec) error {
	return d.op(ctx, "power-off", r, func(vm *fakeVM) error {
		vm.power = driver.PowerOff
		vm.nic = false
		return nil
	})
}

func (d *fakeDriver) Restore(ctx context.Context, r fsm.ReplicaSpec) error {
	return d.op(ctx, "restore", r, func(vm *fakeVM) error {
		// The clean snapshot is powered off with the NIC set to connect at
		// power-on: the reconciler must detach it again.
		vm.restored++
		vm.power, vm.nic, vm.nicStart = driver.PowerOff, false, true
		return nil
	})
}

func (d *fakeDriver) Observe(ctx context.Context, r fsm.ReplicaSpec) (driver.Observation, error) {
	var o driver.Observation
	err := d.op(ctx, "observe", r, func(vm *fakeVM) error {
		o = driver.Observation{Replica: r.Name, Target: r.Name, Power: vm.power, NICConnected: vm.nic && vm.power == driver.PowerOn,
			NICStartConnected: vm.nicStart, Reachable: true, Tools: driver.ToolsRunning,
			Supports: driver.Capabilities{Attach: true, Suspend: !vm.noSuspend, Restore: true}}
		return nil
	})
	return o, err
}

func (d *fakeDriver) Watch(ctx context.Context) <-chan driver.Event {
	ch := make(chan driver.Event, 16)
	d.mu.Lock()
	d.watchers = append(d.watchers, ch)
	d.mu.Unlock()
	go func() {
		<-ctx.Done()
		d.mu.Lock()
		defer d.mu.Unlock()
		for i, w := range d.watchers {
			if w == ch {
				d.watchers = append(d.watchers[:i], d.watchers[i+1:]...)
				break
			}
		}
		close(ch)
	}()
	return ch
}

// byHand changes a VM behind the controller's back (drift) and reports it
// on the watch.
func (d *fakeDriver) byHand(name string, f func(vm *fakeVM)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d.vms[name])
	for _, w := range d.watchers {
		select {
		case w <- driver.Event{Kind: driver.EventChanged, Replica: fsm.ReplicaSpec{Name: name}, At: time.Now()}:
		default:
		}
	}
}

func (d *fakeDriver) vm(name string) fakeVM {
	d.mu.Lock()
	defer d.mu.Unlock()
	return *d.vms[name]
}

func (d *fakeDriver) callLog() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls...)
}

// holdCalls makes every call "op replica" (e.g. "detach knot-a") wait
// until the returned channel is closed, as a platform that does not
// answer; heldCalls counts the calls that reached the wait.
func (d *fakeDriver) holdCalls(key string) chan struct{} {
	ch := make(chan struct{})
	d.mu.Lock()
	defer d.mu.Unlock()
	d.delay[key] = ch
	return ch
}

// hangAfter makes every call of ops on replica wait (as holdCalls) from
// the moment the call key succeeds: a platform that stops answering right
// after it carried out a call, before anyone read the result.
func (d *fakeDriver) hangAfter(key, replica string, ops ...string) chan struct{} {
	ch := make(chan struct{})
	d.mu.Lock()
	defer d.mu.Unlock()
	d.then[key] = func() {
		for _, op := range ops {
			d.delay[op+" "+replica] = ch
		}
	}
	return ch
}

func (d *fakeDriver) heldCalls(key string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.held[key]
}

func (d *fakeDriver) setFail(key string, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fail[key] = n
}

func (d *fakeDriver) attack(impl string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.attacked[impl] = on
}

// query answers for a service when exactly its attached replicas answer:
// one attached, running replica whose impl is not under attack and that
// is not hung. At a replica's health address it answers when that replica
// runs and is not hung.
func (d *fakeDriver) query(service string) probe.QueryFunc {
	return func(ctx context.Context, addr string, spec fsm.ProbeSpec) probe.Result {
		start := time.Now()
		if d.noLeader.Load() {
			d.t.Errorf("query to %s while no leadership runs", addr)
		}
		d.mu.Lock()
		ok := false
		if name, health := d.healthAddr[addr]; health {
			d.healthQ[name]++
			vm := d.vms[name]
			ok = vm != nil && vm.power == driver.PowerOn && !d.hung[name]
		} else {
			for name, vm := range d.vms {
				if vm.service == service && vm.onAddress() && !d.attacked[vm.impl] && !d.hung[name] {
					ok = true
				}
			}
		}
		d.mu.Unlock()
		if ok {
			return probe.Result{Start: start, RTT: time.Millisecond, OK: true, Reason: probe.ReasonOK, Rcode: 0}
		}
		return probe.Result{Start: start, RTT: time.Millisecond, Reason: probe.ReasonNetwork, Rcode: -1,
			Err: fmt.Errorf("%w: fake: no replica answers", probe.ErrNetwork)}
	}
}

// hang wedges (or unwedges) a replica's DNS server.
func (d *fakeDriver) hang(name string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hung[name] = on
}

// healthQueries is how many queries reached the replica's health address.
func (d *fakeDriver) healthQueries(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.healthQ[name]
}

func (c *fakeCluster) alert(id string) fsm.AlertRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, _ := c.m.Alert(id)
	return a
}
