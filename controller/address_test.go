package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/replicaagent"
)

// fakeAgent is a replica agent over a fakeDriver VM: a claim makes the
// VM hold the address, a release takes it away. It keeps the highest
// fence it has seen and refuses older ones, as the real agent does.
type fakeAgent struct {
	d    *fakeDriver
	name string
	// down: every call waits for its context (an agent that does not
	// answer); claimsDown: only claims do.
	down, claimsDown atomic.Bool
	mu               sync.Mutex
	fence            replicaagent.Fence
	fences           []replicaagent.Fence // of the commands obeyed, in order
}

func (a *fakeAgent) command(ctx context.Context, f replicaagent.Fence, claim bool) (replicaagent.Result, error) {
	if claim {
		a.d.mu.Lock()
		a.d.calls = append(a.d.calls, "try claim "+a.name)
		a.d.mu.Unlock()
	}
	if a.down.Load() || (claim && a.claimsDown.Load()) {
		<-ctx.Done()
		return replicaagent.Result{}, fmt.Errorf("fake agent %s: %w", a.name, ctx.Err())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if f.Compare(a.fence) < 0 {
		return replicaagent.Result{}, &replicaagent.Error{Status: 409, Code: replicaagent.CodeStaleFence, Message: "older fence"}
	}
	a.fence = f
	a.fences = append(a.fences, f)
	op := "release"
	if claim {
		op = "claim"
		a.d.mu.Lock()
		vm := a.d.vms[a.name]
		noCarrier := vm != nil && !vm.nic
		a.d.mu.Unlock()
		if noCarrier {
			return replicaagent.Result{}, &replicaagent.Error{Status: 503, Code: replicaagent.CodeNoCarrier, Message: "no carrier"}
		}
	}
	var held bool
	err := a.d.op(ctx, op, fsm.ReplicaSpec{Name: a.name}, func(vm *fakeVM) error {
		if vm.power != driver.PowerOn {
			return errors.New("not running")
		}
		vm.held = claim
		held = vm.held
		return nil
	})
	return replicaagent.Result{Replica: a.name, Held: held, Changed: true, Fence: f}, err
}

func (a *fakeAgent) Claim(ctx context.Context, f replicaagent.Fence, _ netip.Addr) (replicaagent.Result, error) {
	return a.command(ctx, f, true)
}

func (a *fakeAgent) Release(ctx context.Context, f replicaagent.Fence, _ netip.Addr) (replicaagent.Result, error) {
	return a.command(ctx, f, false)
}

func (a *fakeAgent) State(ctx context.Context) (replicaagent.State, error) {
	if a.down.Load() {
		<-ctx.Done()
		return replicaagent.State{}, ctx.Err()
	}
	a.d.mu.Lock()
	defer a.d.mu.Unlock()
	vm := a.d.vms[a.name]
	if vm.power != driver.PowerOn {
		return replicaagent.State{}, errors.New("connection refused")
	}
	return replicaagent.State{Replica: a.name, Held: vm.held, LinkUp: vm.nic}, nil
}

func (a *fakeAgent) Close() {}

// newAddressEnv: lin-bind (active) and lin-unbound (standby) are Linux VMs
// with address handover, nic-knot a Windows VM with NIC handover
// (suspended). lin-bind holds the address; lin-unbound runs, its NIC
// not yet connected.
func newAddressEnv(t *testing.T) (*env, map[string]*fakeAgent) {
	cl := newFakeCluster()
	spec := fsm.ServiceSpec{
		Name:    svcName,
		Address: "127.0.0.1:5353",
		Replicas: []fsm.ReplicaSpec{
			{Name: "lin-bind", Impl: "bind9", OS: "linux", Platform: fsm.PlatformVM, Handover: fsm.HandoverAddress, Agent: "192.0.2.11:7444"},
			{Name: "lin-unbound", Impl: "unbound", OS: "linux", Platform: fsm.PlatformVM, Handover: fsm.HandoverAddress, Agent: "192.0.2.12:7444"},
			{Name: "nic-knot", Impl: "knot", OS: "linux", Platform: fsm.PlatformVM},
		},
		Probe: fsm.ProbeSpec{Query: "www.lab.internal.", Expect: "192.0.2.10"},
	}
	cl.must(t, fsm.ServiceApply{Spec: spec})
	if got := roles(cl); got != "lin-bind=active lin-unbound=standby nic-knot=suspended" {
		t.Fatalf("initial roles %s", got)
	}
	d := newFakeDriver(t, cl)
	d.add(svcName, "lin-bind", "bind9", driver.PowerOn, true)
	d.add(svcName, "lin-unbound", "unbound", driver.PowerOn, false)
	d.add(svcName, "nic-knot", "knot", driver.PowerSuspended, false)
	d.vms["lin-bind"].addrMode, d.vms["lin-bind"].held = true, true
	d.vms["lin-unbound"].addrMode = true
	agents := map[string]*fakeAgent{}
	for _, n := range []string{"lin-bind", "lin-unbound"} {
		agents[n] = &fakeAgent{d: d, name: n}
	}
	e := &env{t: t, cl: cl, d: d, m: NewMetrics(prometheus.NewRegistry())}
	e.config = func(c *Config) {
		c.Agents = func(replica, addr string) (AddressAgent, error) {
			a, ok := agents[replica]
			if !ok {
				return nil, fmt.Errorf("no agent %s", replica)
			}
			return a, nil
		}
		c.HandoverTimeout = 100e6 // 100 ms
		c.AgentPollInterval = 20e6
	}
	return e, agents
}

// warmStandby: the address-handover standby runs with its NIC connected
// and holds no address; the active holds it.
func (e *env) warmStandby(standby, active string) func() bool {
	return func() bool {
		s, a := e.d.vm(standby), e.d.vm(active)
		return s.power == driver.PowerOn && s.nic && !s.held && a.onAddress()
	}
}

// TestAddressHandoverSwitchIsOneClaim: a DoS switch between two
// address-handover replicas makes no platform call on its critical path:
// the standby is kept linked, the switch claims the address on it,
// releases it on the old active, and only then detaches the old active's
// NIC. The record says which path moved the address and how long the old
// replica kept it.
func TestAddressHandoverSwitchIsOneClaim(t *testing.T) {
	e, agents := newAddressEnv(t)
	e.start(true)
	eventually(t, "lin-unbound warm: linked, no address", e.warmStandby("lin-unbound", "lin-bind"))
	before := len(e.d.callLog())
	e.d.attack("bind9", true)
	eventually(t, "switch to lin-unbound done", e.activeIs("lin-unbound"))
	eventually(t, "lin-bind fenced by its NIC", func() bool { return !e.d.vm("lin-bind").nic })
	calls := e.d.callLog()[before:]
	if slices.Contains(calls, "attach lin-unbound") {
		t.Errorf("the switch attached the standby's NIC; it was linked already: %v", calls)
	}
	for _, pair := range [][2]string{{"claim lin-unbound", "release lin-bind"}, {"release lin-bind", "detach lin-bind"}} {
		if !calledBefore(calls, pair[0], pair[1]) {
			t.Errorf("want %q before %q: %v", pair[0], pair[1], calls)
		}
	}
	h := e.switches()
	if len(h) != 1 || !h[0].Done || h[0].To != "lin-unbound" {
		t.Fatalf("history %+v", h)
	}
	if h[0].Handover != fsm.HandoverAddress || h[0].OldHeldMS == nil || h[0].ExposureMS == nil {
		t.Errorf("record: handover %q, old_held_ms %v, exposure_ms %v; want address and both measured", h[0].Handover, h[0].OldHeldMS, h[0].ExposureMS)
	}
	if f := agents["lin-unbound"].fences; len(f) == 0 || f[len(f)-1].Generation != h[0].Generation || f[len(f)-1].Term != 1 {
		t.Errorf("lin-unbound's agent saw fences %v; want the last one (term 1, generation %d)", f, h[0].Generation)
	}
}

// TestAddressHandoverFallsBackWhenTheTargetsAgentDoesNotAnswer: the
// agent of the chosen standby answers its polls but not the claim; the
// claim's bound ends, the replica is taken for unavailable and the
// service moves on to the NIC-handover replica.
func TestAddressHandoverFallsBackWhenTheTargetsAgentDoesNotAnswer(t *testing.T) {
	e, agents := newAddressEnv(t)
	e.start(true)
	eventually(t, "lin-unbound warm", e.warmStandby("lin-unbound", "lin-bind"))
	agents["lin-unbound"].claimsDown.Store(true)
	e.d.attack("bind9", true)
	eventually(t, "nic-knot active", e.activeIs("nic-knot"))
	eventually(t, "nic-knot attached", e.vmIs("nic-knot", driver.PowerOn, true))
	h := e.switches()
	last := h[len(h)-1]
	if last.To != "nic-knot" || !last.Done || last.Handover != "nic" {
		t.Fatalf("last switch %+v; want a done NIC switch to nic-knot", last)
	}
	if e.d.vm("lin-unbound").held {
		t.Error("lin-unbound holds the address")
	}
	if !slices.Contains(e.d.callLog(), "try claim lin-unbound") {
		t.Error("the switch never tried lin-unbound: the test did not test the claim's failure")
	}
	if !strings.Contains(e.logs.String(), "replica agent call failed") {
		t.Error("the failed claim is not logged")
	}
}

// TestAddressHandoverExploitSwitchCutsTheSourceOffWhenTheClaimFails: a
// make-before-break switch away from an exploited replica whose target's
// agent does not take the address must not leave the exploited replica
// serving: it would answer the probes, so no verdict would ever move the
// service on. The source is released and its NIC detached at once; the
// silent address then moves the service on to the next replica by its
// own handover.
func TestAddressHandoverExploitSwitchCutsTheSourceOffWhenTheClaimFails(t *testing.T) {
	e, agents := newAddressEnv(t)
	e.start(true)
	eventually(t, "lin-unbound warm", e.warmStandby("lin-unbound", "lin-bind"))
	agents["lin-unbound"].claimsDown.Store(true)
	e.cl.must(t, fsm.Alert{ID: "ex-claim", Service: svcName, Replica: "lin-bind", Kind: fsm.KindExploit, Source: "apparmor"})
	eventually(t, "the exploited lin-bind off the address and fenced", func() bool {
		v := e.d.vm("lin-bind")
		return !v.held && !v.nic
	})
	if !slices.Contains(e.d.callLog(), "try claim lin-unbound") {
		t.Fatal("the switch never tried lin-unbound: the test did not test the claim's failure")
	}
	eventually(t, "nic-knot active", e.activeIs("nic-knot"))
	eventually(t, "nic-knot attached", e.vmIs("nic-knot", driver.PowerOn, true))
}

// TestAddressHandoverAvoidsAStandbyWhoseAgentIsDown: an agent that does
// not answer its polls makes its replica unavailable before any switch;
// a standby whose agent cannot release is fenced by its NIC.
func TestAddressHandoverAvoidsAStandbyWhoseAgentIsDown(t *testing.T) {
	e, agents := newAddressEnv(t)
	// A standby holding the address, linked, with a dead agent: the
	// worst a restart could leave.
	e.d.vms["lin-unbound"].nic, e.d.vms["lin-unbound"].held = true, true
	agents["lin-unbound"].down.Store(true)
	e.start(true)
	eventually(t, "lin-unbound's NIC detached", func() bool { return !e.d.vm("lin-unbound").nic })
	e.d.attack("bind9", true)
	eventually(t, "nic-knot active", e.activeIs("nic-knot"))
	if slices.Contains(e.d.callLog(), "try claim lin-unbound") {
		t.Fatalf("a switch tried the replica whose agent is down: %v", e.d.callLog())
	}
}

// TestAddressHandoverSwitchesBeforeTheDriverIsReady: a new leader whose
// platform session is not open yet (a vCenter login) sees the active
// serving and the standby linked from their agents, and switches between
// them at once; the old active's NIC detach waits for the session.
func TestAddressHandoverSwitchesBeforeTheDriverIsReady(t *testing.T) {
	e, _ := newAddressEnv(t)
	e.start(true)
	eventually(t, "lin-unbound warm", e.warmStandby("lin-unbound", "lin-bind"))
	e.stop()
	e.d.notReady.Store(true)
	e.run() // a new leadership, logging in
	e.d.attack("bind9", true)
	eventually(t, "lin-unbound holds the address", func() bool { return e.d.vm("lin-unbound").held })
	eventually(t, "switch done", e.activeIs("lin-unbound"))
	if !e.d.vm("lin-bind").nic {
		t.Fatal("lin-bind's NIC was detached before the driver was ready")
	}
	e.d.becomeReady()
	eventually(t, "lin-bind fenced once the driver is ready", func() bool { return !e.d.vm("lin-bind").nic })
}

// TestAddressHandoverAttachesWhenTheAgentSaysNoCarrier: a standby whose
// NIC the leader believes connected but is not (its observation is
// stale) refuses the claim with no_carrier; the switch connects the NIC
// and claims again, instead of failing the claim at every pass (chaos
// seed 27: a minute, until the run gave up).
func TestAddressHandoverAttachesWhenTheAgentSaysNoCarrier(t *testing.T) {
	e, _ := newAddressEnv(t)
	e.start(true)
	eventually(t, "lin-unbound warm", e.warmStandby("lin-unbound", "lin-bind"))
	// The leader has read it connected: a pass observes every replica,
	// so three replicas' worth of reads more than now span a whole pass.
	n := e.d.observes.Load()
	eventually(t, "a pass that read lin-unbound linked", func() bool { return e.d.observes.Load() >= n+6 })
	// Its NIC disconnected behind the leader's back, and its platform's
	// reads held, so the leader's observation stays "connected".
	release := e.d.holdCalls("observe lin-unbound")
	defer close(release)
	// A read that began before the hold could still land after the NIC
	// goes: wait until a read is held, so that none lands (a CI run under
	// load saw the leader attach first, from a fresh observation).
	eventually(t, "a read of lin-unbound held", func() bool { return e.d.heldCalls("observe lin-unbound") > 0 })
	e.d.mu.Lock()
	e.d.vms["lin-unbound"].nic = false
	e.d.mu.Unlock()
	before := len(e.d.callLog())
	e.d.attack("bind9", true)
	eventually(t, "switch to lin-unbound done", e.activeIs("lin-unbound"))
	calls := e.d.callLog()[before:]
	if !calledBefore(calls, "try claim lin-unbound", "attach lin-unbound") || !calledBefore(calls, "attach lin-unbound", "claim lin-unbound") {
		t.Fatalf("want a claim tried, the NIC attached, the claim carried out: %v", calls)
	}
}
