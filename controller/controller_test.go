package controller

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ars-project/ars/controller/decide"
	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/controller/probe"
	"github.com/ars-project/ars/fsm"
	testutil2 "github.com/ars-project/ars/test/testutil"
)

const svcName = "dns"

type env struct {
	t    *testing.T
	cl   *fakeCluster
	d    *fakeDriver
	m    *Metrics
	logs testutil2.SyncBuffer
	ctl  *Controller
	// witness and query, when set, are the controller's Witness and Query.
	witness WitnessVotes
	query   probe.QueryFunc
	// reconcile, when set, is the reconcile timer (default 20 ms).
	reconcile time.Duration
	// config, when set, changes the controller's configuration.
	config func(*Config)
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newEnv applies a service with four VM replicas (bind-a active, unbound-a
// standby, the others suspended) and puts the fake VMs in that state.
func newEnv(t *testing.T) *env { return newEnvConfirm(t, "") }

func newEnvConfirm(t *testing.T, confirm string) *env {
	cl := newFakeCluster()
	spec := fsm.ServiceSpec{
		Name:    svcName,
		Address: "127.0.0.1:5353",
		Replicas: []fsm.ReplicaSpec{
			{Name: "bind-a", Impl: "bind9", OS: "linux", Platform: fsm.PlatformVM, VM: "bind-a"},
			{Name: "unbound-a", Impl: "unbound", OS: "windows", Platform: fsm.PlatformVM, VM: "unbound-a"},
			{Name: "bind-b", Impl: "bind9", OS: "windows", Platform: fsm.PlatformVM, VM: "bind-b"},
			{Name: "knot-a", Impl: "knot", OS: "linux", Platform: fsm.PlatformVM, VM: "knot-a"},
		},
		Probe: fsm.ProbeSpec{Query: "www.lab.internal.", Expect: "192.0.2.10", Confirm: confirm},
	}
	cl.must(t, fsm.ServiceApply{Spec: spec})
	svc, _ := cl.Service(svcName)
	d := newFakeDriver(t, cl)
	for _, rs := range svc.Replicas {
		r, _ := svc.Spec.Replica(rs.Name)
		switch rs.Role {
		case fsm.RoleActive:
			d.add(svcName, rs.Name, r.Impl, driver.PowerOn, true)
		case fsm.RoleStandby:
			d.add(svcName, rs.Name, r.Impl, driver.PowerOn, false)
		default:
			d.add(svcName, rs.Name, r.Impl, driver.PowerSuspended, false)
		}
	}
	if got := roles(cl); got != "bind-a=active unbound-a=standby bind-b=suspended knot-a=suspended" {
		t.Fatalf("initial roles %s", got)
	}
	return &env{t: t, cl: cl, d: d, m: NewMetrics(prometheus.NewRegistry())}
}

func (e *env) start(probes bool) {
	e.create(probes)
	e.run()
}

// create makes the controller without starting its leadership (Run).
func (e *env) create(probes bool) {
	query := e.query
	if query == nil {
		query = e.d.query(svcName)
	}
	reconcile := e.reconcile
	if reconcile == 0 {
		reconcile = 20 * time.Millisecond
	}
	cfg := Config{
		Cluster: e.cl, NodeName: "n1", Drivers: map[string]driver.Driver{fsm.PlatformVM: e.d}, Metrics: e.m,
		Logger:            slog.New(slog.NewTextHandler(&e.logs, nil)),
		ReconcileInterval: reconcile, Query: query, Witness: e.witness,
		VerifyBackoff: 5 * time.Millisecond, DisableProbes: !probes,
	}
	if e.config != nil {
		e.config(&cfg)
	}
	ctl, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.ctl = ctl
}

// run starts the controller's leadership.
func (e *env) run() {
	ctl := e.ctl
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.wg.Add(1)
	go func() { defer e.wg.Done(); ctl.Run(ctx) }()
	e.t.Cleanup(e.stop)
	e.t.Cleanup(func() {
		if e.t.Failed() {
			e.t.Logf("controller log:\n%s", e.logs.String())
		}
	})
}

func (e *env) stop() {
	if e.cancel != nil {
		e.cancel()
		e.wg.Wait()
		e.cancel = nil
	}
}

func roles(cl *fakeCluster) string { return rolesOf(cl, svcName) }

// rolesOf is roles for the named service.
func rolesOf(cl *fakeCluster, service string) string {
	svc, _ := cl.Service(service)
	s := ""
	for i, rs := range svc.Replicas {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s=%s", rs.Name, rs.Role)
	}
	return s
}

// eventually polls cond until it holds (or fails the test after a generous
// bound; no assertion depends on timing).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (e *env) settled(want string) func() bool {
	return func() bool {
		svc, _ := e.cl.Service(svcName)
		return roles(e.cl) == want && svc.Intent == nil
	}
}

// activeIs: name is the active replica and no switch is open.
func (e *env) activeIs(name string) func() bool {
	return func() bool {
		svc, _ := e.cl.Service(svcName)
		a, _ := svc.Active()
		return a.Name == name && svc.Intent == nil
	}
}

func (e *env) vmIs(name string, p driver.Power, nic bool) func() bool {
	return func() bool { vm := e.d.vm(name); return vm.power == p && (vm.nic && vm.power == driver.PowerOn) == nic }
}

// parked: not running (suspended, or powered off as the clean snapshot left
// it) and not attached.
func (e *env) parked(name string) func() bool {
	return func() bool { vm := e.d.vm(name); return vm.power != driver.PowerOn && !vm.nic && !vm.nicStart }
}

func (e *env) switches() []fsm.SwitchRecord {
	svc, _ := e.cl.Service(svcName)
	return svc.History
}

// calledBefore reports whether both calls were made, first before then.
func calledBefore(calls []string, first, then string) bool {
	f, t := slices.Index(calls, first), slices.Index(calls, then)
	return f >= 0 && t >= 0 && f < t
}

func TestDoSVerdictSwitchesToAnotherImpl(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	e.d.attack("bind9", true)
	// unbound-a takes over; bind-a is reverted and suspended; knot-a (the
	// most diverse from bind9 left) is the next standby, running, detached.
	eventually(t, "switch to unbound-a, bind-a restored", e.settled("bind-a=suspended unbound-a=active bind-b=suspended knot-a=standby"))
	eventually(t, "bind-a suspended", e.parked("bind-a"))
	eventually(t, "knot-a running detached", e.vmIs("knot-a", driver.PowerOn, false))
	eventually(t, "unbound-a attached", e.vmIs("unbound-a", driver.PowerOn, true))
	if e.d.vm("bind-a").restored != 1 {
		t.Errorf("bind-a restored %d times", e.d.vm("bind-a").restored)
	}
	h := e.switches()
	if len(h) != 1 || !h[0].Done || h[0].Reason != fsm.ReasonDoS || h[0].To != "unbound-a" || h[0].Mode != fsm.DefaultDoSMode {
		t.Fatalf("history %+v", h)
	}
	if h[0].DetectionMS <= 0 || h[0].TotalMS < h[0].DetectionMS {
		t.Errorf("phases %+v", h[0])
	}
	if got := testutil.ToFloat64(e.m.switches.WithLabelValues(svcName, "dos", "bind9->unbound")); got != 1 {
		t.Errorf("switch metric %v", got)
	}
}

// A standby that stopped (a Docker engine restart killed it) and is not
// running again yet is passed over by a DoS switch for a suspended
// replica of another impl: resuming is faster than starting (chaos seeds
// 6 and 29: the switch started a killed standby container, 1.3-1.8 s).
// The standby's start is held so that it stays stopped.
func TestDoSPassesOverAStoppedStandby(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	e.d.mu.Lock()
	e.d.delay["power-on unbound-a"] = release
	e.d.mu.Unlock()
	e.start(true)
	e.d.byHand("unbound-a", func(vm *fakeVM) { vm.power = driver.PowerOff })
	eventually(t, "the stopped standby's start begun and held", func() bool {
		e.d.mu.Lock()
		defer e.d.mu.Unlock()
		return e.d.held["power-on unbound-a"] > 0
	})
	e.d.attack("bind9", true)
	eventually(t, "switch to knot-a", e.activeIs("knot-a"))
	h := e.switches()
	if len(h) != 1 || h[0].From != "bind-a" || h[0].To != "knot-a" || h[0].Reason != fsm.ReasonDoS {
		t.Fatalf("history %+v", h)
	}
	if !strings.Contains(e.logs.String(), `standby \"unbound-a\" is stopped`) {
		t.Errorf("the decision's logged reason does not say why the standby was passed over")
	}
	close(release)
}

// dosMode applies the service again with policy.dos_mode set to mode.
func (e *env) dosMode(mode string) {
	e.t.Helper()
	e.policy(func(p *fsm.PolicySpec) { p.DoSMode = mode })
}

// dos_mode break-before-make: the attacked replica is detached before
// the new one is attached.
func TestDoSBreakBeforeMake(t *testing.T) {
	e := newEnv(t)
	e.dosMode(fsm.ModeBreakBeforeMake)
	e.start(true)
	e.d.attack("bind9", true)
	eventually(t, "switch to unbound-a, bind-a restored", e.settled("bind-a=suspended unbound-a=active bind-b=suspended knot-a=standby"))
	if h := e.switches(); len(h) != 1 || !h[0].Done || h[0].Mode != fsm.ModeBreakBeforeMake {
		t.Fatalf("history %+v", h)
	}
	calls := e.d.callLog()
	if !calledBefore(calls, "detach bind-a", "attach unbound-a") {
		t.Errorf("break-before-make order: %v", calls)
	}
}

// dos_mode parallel: the attach of the new replica and the detach of the
// attacked one are issued at once. With both held by the driver, both
// are in flight together (in either serial order only the first would
// be); the switch completes once both are done.
func TestDoSParallelMode(t *testing.T) {
	e := newEnv(t)
	e.dosMode(fsm.ModeParallel)
	hold := make(chan struct{})
	e.d.mu.Lock()
	e.d.delay["detach bind-a"] = hold
	e.d.delay["attach unbound-a"] = hold
	e.d.mu.Unlock()
	e.start(true)
	e.d.attack("bind9", true)
	eventually(t, "attach unbound-a and detach bind-a in flight together", func() bool {
		e.d.mu.Lock()
		defer e.d.mu.Unlock()
		return e.d.held["detach bind-a"] > 0 && e.d.held["attach unbound-a"] > 0
	})
	if h := e.switches(); len(h) != 1 || h[0].Done || h[0].Mode != fsm.ModeParallel {
		t.Fatalf("history while both calls are held: %+v; want one open parallel switch", h)
	}
	close(hold)
	eventually(t, "switch done, bind-a restored", e.settled("bind-a=suspended unbound-a=active bind-b=suspended knot-a=standby"))
	if h := e.switches(); len(h) != 1 || !h[0].Done || h[0].To != "unbound-a" {
		t.Fatalf("history %+v", h)
	}
}

func TestExploitAlertMakeBeforeBreak(t *testing.T) {
	e := newEnv(t)
	e.start(false)
	e.cl.must(t, fsm.Alert{ID: "ex-1", Service: svcName, Replica: "bind-a", Kind: fsm.KindExploit, Source: "apparmor"})
	eventually(t, "switch done, bind-a restored", e.settled("bind-a=suspended unbound-a=active bind-b=suspended knot-a=standby"))
	calls := e.d.callLog()
	if !calledBefore(calls, "attach unbound-a", "detach bind-a") {
		t.Errorf("make-before-break order: %v", calls)
	}
	if a := e.cl.alert("ex-1"); a.Outcome != "switch" {
		t.Errorf("alert outcome %q", a.Outcome)
	}
	if h := e.switches(); len(h) != 1 || h[0].Mode != fsm.ModeMakeBeforeBreak || !h[0].Done {
		t.Errorf("history %+v", h)
	}
}

func TestExploitAlertOnStandby(t *testing.T) {
	e := newEnv(t)
	e.start(false)
	e.cl.must(t, fsm.Alert{ID: "ex-sb", Service: svcName, Replica: "unbound-a", Kind: fsm.KindExploit})
	eventually(t, "standby quarantined, restored and replaced", func() bool {
		svc, _ := e.cl.Service(svcName)
		rs, _ := svc.Replica("unbound-a")
		sb, ok := svc.Standby()
		return rs.Role == fsm.RoleSuspended && rs.Clean && ok && sb.Name != "unbound-a" && e.d.vm("unbound-a").restored == 1
	})
	svc, _ := e.cl.Service(svcName)
	sb, _ := svc.Standby()
	eventually(t, "new standby running detached", e.vmIs(sb.Name, driver.PowerOn, false))
	// Every power-on carries the service address: the Docker driver arms
	// the new standby's address helper with it, so its attach is the
	// connect alone.
	if n := e.d.unarmed.Load(); n != 0 {
		t.Errorf("%d power-ons without the service address", n)
	}
	eventually(t, "unbound-a suspended", e.parked("unbound-a"))
	for _, c := range e.d.callLog() {
		if c == "attach bind-a" || c == "detach bind-a" || c == "power-on bind-a" {
			t.Errorf("active touched: %s", c)
		}
	}
	if len(e.switches()) != 0 {
		t.Errorf("switched: %+v", e.switches())
	}
	if a := e.cl.alert("ex-sb"); a.Outcome != fsm.ActionQuarantine {
		t.Errorf("alert outcome %q", a.Outcome)
	}
}

func TestManyAlertsOneSwitch(t *testing.T) {
	e := newEnv(t)
	for i := range 20 {
		e.cl.must(t, fsm.Alert{ID: fmt.Sprintf("ex-%d", i), Service: svcName, Replica: "bind-a", Kind: fsm.KindExploit})
	}
	e.start(false)
	eventually(t, "every alert handled", func() bool {
		for _, a := range e.cl.Alerts() {
			if a.Outcome == "" {
				return false
			}
		}
		return true
	})
	eventually(t, "settled", e.settled("bind-a=suspended unbound-a=active bind-b=suspended knot-a=standby"))
	if h := e.switches(); len(h) != 1 {
		t.Fatalf("%d switches: %+v", len(h), h)
	}
	// A new leader replays nothing.
	e.stop()
	n := len(e.cl.commands())
	e.start(false)
	e.cl.must(t, fsm.Alert{ID: "marker", Service: svcName, Replica: "bind-b", Kind: fsm.KindDoS})
	eventually(t, "marker handled", func() bool { a := e.cl.alert("marker"); return a.Outcome != "" })
	for _, c := range e.cl.commands()[n:] {
		if c.Type() == fsm.CmdSwitch || (c.Type() == fsm.CmdAlertOutcome && c.(fsm.AlertOutcome).ID != "marker") {
			t.Errorf("replayed: %#v", c)
		}
	}
}

func TestOpenIntentCompletedByNewLeader(t *testing.T) {
	e := newEnv(t)
	// A dead leader committed the switch and did nothing else.
	e.cl.must(t, fsm.Switch{Service: svcName, From: "bind-a", To: "unbound-a", Reason: fsm.ReasonExploit, At: time.Now().UnixNano()})
	e.start(false)
	eventually(t, "intent completed", e.settled("bind-a=suspended unbound-a=active bind-b=suspended knot-a=standby"))
	eventually(t, "unbound-a attached", e.vmIs("unbound-a", driver.PowerOn, true))
	if h := e.switches(); len(h) != 1 || !h[0].Done || h[0].DetectionMS != 0 {
		t.Errorf("history %+v", h)
	}
}

func TestAttachFailureRetried(t *testing.T) {
	e := newEnv(t)
	e.d.setFail("attach unbound-a", 3)
	e.start(false)
	e.cl.must(t, fsm.Alert{ID: "ex-f", Service: svcName, Replica: "bind-a", Kind: fsm.KindExploit})
	eventually(t, "switch done after retries", e.settled("bind-a=suspended unbound-a=active bind-b=suspended knot-a=standby"))
	eventually(t, "unbound-a attached", e.vmIs("unbound-a", driver.PowerOn, true))
	if got := testutil.ToFloat64(e.m.errors.WithLabelValues(svcName, "attach")); got != 3 {
		t.Errorf("attach errors reported %v, want 3", got)
	}
	n := 0
	for _, c := range e.d.callLog() {
		if c == "attach unbound-a" {
			n++
		}
	}
	if n != 4 {
		t.Errorf("attach calls %d, want 4", n)
	}
}

func TestDriftRepaired(t *testing.T) {
	e := newEnv(t)
	e.start(false)
	e.d.byHand("unbound-a", func(vm *fakeVM) { vm.power = driver.PowerOff })
	eventually(t, "standby powered on again", e.vmIs("unbound-a", driver.PowerOn, false))
	e.d.byHand("bind-a", func(vm *fakeVM) { vm.power, vm.nic = driver.PowerOff, false })
	eventually(t, "active powered on and attached again", e.vmIs("bind-a", driver.PowerOn, true))
	e.d.byHand("bind-b", func(vm *fakeVM) { vm.power, vm.nic, vm.nicStart = driver.PowerOn, true, true })
	eventually(t, "suspended replica detached and suspended again", e.vmIs("bind-b", driver.PowerSuspended, false))
	if got := roles(e.cl); got != "bind-a=active unbound-a=standby bind-b=suspended knot-a=suspended" {
		t.Errorf("roles changed: %s", got)
	}
}

// An active that stops running after it served (a crash: a container's
// server exits and its container with it; a VM powered off) stays judged:
// while its start in place hangs, the probes' DOWN verdict moves the
// service to the standby, and the crashed replica is restored before it
// serves again. A running active found detached is re-attached in place
// with no switch (TestDriftRepaired covers that without probes; here with
// them).
func TestCrashedActiveSwitchesAway(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	e.d.mu.Lock()
	e.d.delay["power-on bind-a"] = release
	e.d.mu.Unlock()
	e.start(true)
	e.d.byHand("bind-a", func(vm *fakeVM) { vm.nic = false })
	eventually(t, "bind-a re-attached in place", e.vmIs("bind-a", driver.PowerOn, true))
	if h := e.switches(); len(h) != 0 {
		t.Fatalf("a NIC drift on a running active switched: %+v", h)
	}

	e.d.byHand("bind-a", func(vm *fakeVM) { vm.power = driver.PowerOff })
	eventually(t, "switch away from the crashed bind-a while its start hangs", e.activeIs("unbound-a"))
	h := e.switches()
	if len(h) != 1 || h[0].From != "bind-a" || h[0].Reason != fsm.ReasonDoS || !h[0].Done {
		t.Fatalf("history %+v", h)
	}
	close(release)
	eventually(t, "bind-a restored and parked", func() bool {
		return roles(e.cl) == "bind-a=suspended unbound-a=active bind-b=suspended knot-a=standby" && e.d.vm("bind-a").restored == 1
	})
}

// A crashed active is started again detached and only then attached: the
// start may be carried out late (a Docker engine coming back), after the
// service moved elsewhere, and must not take the service address from
// the new active. Without probes there is no switch here; the start in
// place is held to see the detach come first.
func TestCrashedActiveStartsDetached(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	e.d.mu.Lock()
	e.d.delay["power-on bind-a"] = release
	e.d.mu.Unlock()
	e.start(false)
	e.d.byHand("bind-a", func(vm *fakeVM) { vm.power = driver.PowerOff })
	eventually(t, "the crashed bind-a detached before its start", func() bool {
		e.d.mu.Lock()
		defer e.d.mu.Unlock()
		vm := e.d.vms["bind-a"]
		return e.d.held["power-on bind-a"] > 0 && !vm.nic && !vm.nicStart
	})
	close(release)
	eventually(t, "bind-a running and attached again in place", e.vmIs("bind-a", driver.PowerOn, true))
	if h := e.switches(); len(h) != 0 {
		t.Fatalf("switched: %+v", h)
	}
}

// report sends a follower's report on the current activation (its epoch
// plus epochDelta) now and then every 50 ms, as a witness does, until the
// test ends.
func (e *env) report(node string, down bool, downFor time.Duration, epochDelta int) {
	e.t.Helper()
	svc, _ := e.cl.Service(svcName)
	act, _ := svc.Active()
	msg, err := EncodeReport(Report{Node: node, Service: svcName, Replica: act.Name,
		Epoch: uint64(int(act.Since) + epochDelta), Down: down, DownForUS: downFor.Microseconds()})
	if err != nil {
		e.t.Fatal(err)
	}
	send := func() { e.ctl.HandleReport(msg) }
	send()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				send()
			}
		}
	}()
	e.t.Cleanup(func() { cancel(); <-done })
}

// With probe.confirm "quorum" the leader's own DOWN verdict is one vote of
// three: no switch until a follower agrees on the same activation.
func TestQuorumVerdictNeedsAFollower(t *testing.T) {
	e := newEnvConfirm(t, "quorum")
	e.cl.voters = 3
	e.start(true)
	// Once the active has answered since it was seen attached, it is
	// judged (before that it is "coming up", see StartupGrace).
	eventually(t, "leader's prober says up", func() bool {
		return testutil.ToFloat64(e.m.verdicts.WithLabelValues(svcName, "up")) >= 1
	})
	e.d.attack("bind9", true)
	eventually(t, "leader's prober says down", func() bool {
		return testutil.ToFloat64(e.m.verdicts.WithLabelValues(svcName, "down")) >= 1
	})
	// A follower vote on another activation of bind-a does not count.
	e.report("n2", true, 50*time.Second, 1)
	e.report("n3", true, 5*time.Second, 0)
	eventually(t, "switch to unbound-a", e.settled("bind-a=suspended unbound-a=active bind-b=suspended knot-a=standby"))
	h := e.switches()
	if len(h) != 1 || h[0].Reason != fsm.ReasonDoS || h[0].From != "bind-a" {
		t.Fatalf("history %+v", h)
	}
	// The leader alone never decided (1 vote), nor did it count the stale
	// vote (3 votes).
	logs := e.logs.String()
	if !strings.Contains(logs, "confirmations=2 quorum=true") || strings.Contains(logs, "confirmations=1") || strings.Contains(logs, "confirmations=3") {
		t.Fatalf("want one decision on 2 votes:\n%s", logs)
	}
	if got := testutil.ToFloat64(e.m.decisions.WithLabelValues(svcName, "switch")); got != 1 {
		t.Fatalf("%v switch decisions, want 1", got)
	}
}

// Two followers that see the replica down make a majority even when the
// leader's own probes get answers (the majority decides, not the leader's
// network position). The leader's own name never counts as a follower.
func TestQuorumOfFollowersSwitches(t *testing.T) {
	e := newEnvConfirm(t, "quorum")
	e.cl.voters = 3
	e.start(true)
	eventually(t, "leader's prober says up", func() bool {
		return testutil.ToFloat64(e.m.verdicts.WithLabelValues(svcName, "up")) >= 1
	})
	e.report("n1", true, time.Second, 0) // the leader itself: ignored
	e.report("n2", true, 400*time.Millisecond, 0)
	eventually(t, "reports accepted", func() bool {
		return testutil.ToFloat64(e.m.reports.WithLabelValues("accepted")) >= 2
	})
	e.report("n3", true, 200*time.Millisecond, 0)
	eventually(t, "switch away from bind-a", func() bool {
		svc, _ := e.cl.Service(svcName)
		a, _ := svc.Active()
		return a.Name != "bind-a"
	})
	if h := e.switches(); len(h) != 1 {
		t.Fatalf("history %+v: want one switch", h)
	}
	// n2 and n3 decided; the leader's self-report did not make it three.
	if logs := e.logs.String(); !strings.Contains(logs, "confirmations=2 quorum=true") || strings.Contains(logs, "confirmations=3") {
		t.Fatalf("want one decision on the 2 followers' votes:\n%s", logs)
	}
	// Garbage never reaches the tally.
	e.ctl.HandleReport([]byte(`{"v":1,"node":"n2"}`))
	e.ctl.HandleReport([]byte(`not json`))
	eventually(t, "invalid reports counted", func() bool {
		return testutil.ToFloat64(e.m.reports.WithLabelValues("invalid")) == 2
	})
}

// After a switch the prober starts afresh on the new activation, so a DoS
// that also hits the replica that took over is detected and switched away
// from (once min_dwell has passed).
func TestDoSOnTheReplicaThatTookOver(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	e.d.attack("bind9", true)
	eventually(t, "switch to unbound-a", e.settled("bind-a=suspended unbound-a=active bind-b=suspended knot-a=standby"))
	e.d.attack("unbound", true)
	eventually(t, "switch to knot-a", e.activeIs("knot-a"))
	h := e.switches()
	if len(h) != 2 || h[1].From != "unbound-a" || h[1].To != "knot-a" || !h[1].Done {
		t.Fatalf("history %+v", h)
	}
}

// policy applies the service again with its policy changed by fn.
func (e *env) policy(fn func(*fsm.PolicySpec)) {
	e.t.Helper()
	svc, _ := e.cl.Service(svcName)
	spec := svc.Spec
	fn(&spec.Policy)
	e.cl.must(e.t, fsm.ServiceApply{Spec: spec})
}

// A replica that answered after it took over and then stops answering has
// failed anew: the verdict carries its answer and the switch is not
// damped, however long min_dwell and however few max_switches.
func TestDoSOnAServedReplicaIsNotDamped(t *testing.T) {
	e := newEnv(t)
	e.policy(func(p *fsm.PolicySpec) {
		p.MinDwell = fsm.Duration(time.Hour)
		p.MaxSwitches = 1
		p.Window = fsm.Duration(time.Hour)
	})
	e.start(true)
	e.d.attack("bind9", true)
	eventually(t, "switch to unbound-a", e.settled("bind-a=suspended unbound-a=active bind-b=suspended knot-a=standby"))
	e.d.attack("unbound", true)
	eventually(t, "switch to knot-a", e.activeIs("knot-a"))
	if h := e.switches(); len(h) != 2 || h[1].From != "unbound-a" || h[1].To != "knot-a" || h[1].Reason != fsm.ReasonDoS {
		t.Fatalf("history %+v", h)
	}
	if got := testutil.ToFloat64(e.m.decisions.WithLabelValues(svcName, string(decide.OutcomeDampedDwell))) +
		testutil.ToFloat64(e.m.decisions.WithLabelValues(svcName, string(decide.OutcomeDampedRate))); got != 0 {
		t.Errorf("%v damped decisions, want none", got)
	}
}

// A replica that never answered after it took over is still damped: its
// silence may be the switch's own gap, or a fault that is not the
// replica's. Here the impl that takes over is down from the start, so the
// switch cannot even be verified and stays open.
func TestDoSOnAReplicaThatNeverServedIsDamped(t *testing.T) {
	e := newEnv(t)
	e.policy(func(p *fsm.PolicySpec) { p.MinDwell = fsm.Duration(time.Hour) })
	e.start(true)
	e.d.attack("unbound", true)
	e.d.attack("bind9", true)
	eventually(t, "switch to unbound-a committed", func() bool {
		svc, _ := e.cl.Service(svcName)
		a, _ := svc.Active()
		return a.Name == "unbound-a"
	})
	eventually(t, "the verdict on unbound-a damped by min_dwell", func() bool {
		return testutil.ToFloat64(e.m.decisions.WithLabelValues(svcName, string(decide.OutcomeDampedDwell))) >= 1
	})
	if h := e.switches(); len(h) != 1 {
		t.Fatalf("history %+v; want only the first switch", h)
	}
}

// A switch's target whose platform stops answering before the target
// ever answered (a Docker engine restarting under it) is moved on from
// at once: waiting cannot land its attach. Its DoS verdict is not held
// for min_dwell (an hour here), and the next replica is chosen from those
// whose platform answers.
func TestDoSOnATargetWhosePlatformDoesNotAnswerIsNotDamped(t *testing.T) {
	e := newEnv(t)
	e.policy(func(p *fsm.PolicySpec) { p.MinDwell = fsm.Duration(time.Hour) })
	e.d.mu.Lock()
	e.d.fail["attach unbound-a"] = 1 << 20
	e.d.failWith["attach unbound-a"] = driver.ErrUnavailable
	e.d.mu.Unlock()
	e.start(true)
	e.d.attack("bind9", true)
	eventually(t, "switch to knot-a", e.activeIs("knot-a"))
	h := e.switches()
	if len(h) != 2 || h[0].To != "unbound-a" || h[0].Done || h[1].From != "unbound-a" || h[1].To != "knot-a" || h[1].Reason != fsm.ReasonDoS {
		t.Fatalf("history %+v; want the open switch to unbound-a superseded by a DoS switch to knot-a", h)
	}
	if got := testutil.ToFloat64(e.m.decisions.WithLabelValues(svcName, string(decide.OutcomeDampedRate))); got != 0 {
		t.Errorf("%v decisions damped by max_switches, want none", got)
	}
}

// platformsDown makes every read of the named replicas fail as their
// platform not answering (setFail "observe NAME" to 0 brings one back).
func (e *env) platformsDown(names ...string) {
	e.d.mu.Lock()
	defer e.d.mu.Unlock()
	for _, n := range names {
		e.d.fail["observe "+n] = platformDownReads
		e.d.failWith["observe "+n] = driver.ErrUnavailable
	}
}

// platformDownReads is how many reads platformsDown fails: more than any
// test makes.
const platformDownReads = 1 << 20

// A DoS verdict that finds no replica to take over is decided again once
// one can: chaos seed 90, a vCenter failing its property reads marked
// every VM unavailable just as a DoS hit the active container, and the
// service stayed down 74 s after the reads worked again, because the
// verdict (an edge) had been decided once and nothing weighed it again.
func TestDoSWithNoEligibleReplicaSwitchesOnceOneIs(t *testing.T) {
	e := newEnv(t)
	others := []string{"unbound-a", "bind-b", "knot-a"}
	e.platformsDown(others...)
	e.start(true)
	e.d.attack("bind9", true)
	eventually(t, "the verdict finds no eligible replica", func() bool {
		return testutil.ToFloat64(e.m.decisions.WithLabelValues(svcName, string(decide.OutcomeNoEligible))) >= 1
	})
	if h := e.switches(); len(h) != 0 {
		t.Fatalf("history %+v; want no switch while no replica's platform answers", h)
	}
	// One platform answers again: the verdict is decided again and
	// switches to that replica.
	e.d.setFail("observe unbound-a", 0)
	eventually(t, "switch to unbound-a", e.activeIs("unbound-a"))
	if h := e.switches(); len(h) != 1 || h[0].Reason != fsm.ReasonDoS {
		t.Fatalf("history %+v; want one DoS switch", h)
	}
	// The verdict that switched nothing is on record, once.
	var notes []fsm.Verdict
	for _, c := range e.cl.commands() {
		if v, ok := c.(fsm.Verdict); ok {
			notes = append(notes, v)
		}
	}
	if len(notes) != 1 || notes[0].Replica != "bind-a" || notes[0].Outcome != string(decide.OutcomeNoEligible) ||
		notes[0].Confirmations != 1 || notes[0].DetectionMS <= 0 || !strings.Contains(notes[0].Reason, "unavailable") {
		t.Fatalf("verdict records %+v; want one: no eligible replica on bind-a", notes)
	}
}

// An exploit reported while no replica's platform answers is not answered
// with "no eligible replica" and forgotten: it stays pending, and once a
// platform answers again it switches the service away from the exploited
// replica (chaos seed 26: the exploited container served on for the rest
// of the schedule).
func TestExploitWithNoEligibleReplicaSwitchesOnceOneIs(t *testing.T) {
	e := newEnv(t)
	others := []string{"unbound-a", "bind-b", "knot-a"}
	e.platformsDown(others...)
	e.start(false)
	eventually(t, "every other replica's platform failed two reads", func() bool {
		e.d.mu.Lock()
		defer e.d.mu.Unlock()
		for _, n := range others {
			if e.d.fail["observe "+n] > platformDownReads-2 {
				return false
			}
		}
		return true
	})
	e.cl.must(t, fsm.Alert{ID: "ex-stuck", Service: svcName, Replica: "bind-a", Kind: fsm.KindExploit, Source: "apparmor"})
	eventually(t, "the alert finds no eligible replica", func() bool {
		return testutil.ToFloat64(e.m.decisions.WithLabelValues(svcName, string(decide.OutcomeNoEligible))) >= 1
	})
	if a := e.cl.alert("ex-stuck"); a.Outcome != "" {
		t.Fatalf("alert answered %q while no replica could take over; want it pending", a.Outcome)
	}
	e.d.setFail("observe knot-a", 0)
	eventually(t, "switch away from the exploited bind-a", e.activeIs("knot-a"))
	h := e.switches()
	if len(h) != 1 || h[0].Reason != fsm.ReasonExploit || h[0].AlertID != "ex-stuck" {
		t.Fatalf("history %+v; want one exploit switch for ex-stuck", h)
	}
	if a := e.cl.alert("ex-stuck"); a.Outcome != "switch" {
		t.Fatalf("alert outcome %q; want switch", a.Outcome)
	}
}

// A switch's target that stops after the switch attached it, and cannot
// be started again in place, is moved on from at once: its DoS verdict is
// not held for min_dwell (an hour here).
func TestDoSOnATargetThatStoppedAfterItsAttachIsNotDamped(t *testing.T) {
	e := newEnv(t)
	e.policy(func(p *fsm.PolicySpec) { p.MinDwell = fsm.Duration(time.Hour) })
	e.d.setFail("power-on unbound-a", 1<<20)
	e.start(true)
	e.d.attack("unbound", true) // the switch to it never verifies
	e.d.attack("bind9", true)
	eventually(t, "unbound-a attached by the switch", func() bool { return slices.Contains(e.d.callLog(), "attach unbound-a") })
	e.d.byHand("unbound-a", func(vm *fakeVM) { vm.power, vm.nic = driver.PowerOff, false })
	eventually(t, "switch to knot-a", e.activeIs("knot-a"))
	if h := e.switches(); len(h) != 2 || h[0].To != "unbound-a" || h[0].Done || h[1].To != "knot-a" {
		t.Fatalf("history %+v; want the open switch to unbound-a superseded by one to knot-a", h)
	}
}

// A switch's target found not running whose start fails is moved on from
// at once too, though the switch never attached it: chaos seed 53, an
// engine shutting down killed the chosen standby container and refused
// its start. min_dwell is an hour: only the mark lets the DoS verdict on
// unbound-a through.
func TestDoSOnATargetThatDoesNotStartIsNotDamped(t *testing.T) {
	e := newEnv(t)
	e.policy(func(p *fsm.PolicySpec) { p.MinDwell = fsm.Duration(time.Hour) })
	hold := e.d.holdCalls("attach unbound-a")
	e.start(true)
	e.d.attack("bind9", true)
	eventually(t, "the switch's attach of unbound-a under way", func() bool { return e.d.heldCalls("attach unbound-a") >= 1 })
	// It stops under the switch, and no start works any more.
	e.d.setFail("power-on unbound-a", 1<<20)
	e.d.byHand("unbound-a", func(vm *fakeVM) { vm.power, vm.nic = driver.PowerOff, false })
	e.d.mu.Lock()
	delete(e.d.delay, "attach unbound-a")
	e.d.mu.Unlock()
	close(hold)
	eventually(t, "switch to a replica other than unbound-a", func() bool {
		svc, _ := e.cl.Service(svcName)
		a, _ := svc.Active()
		return a.Name != "unbound-a" && a.Name != "bind-a" && svc.Intent == nil
	})
	if h := e.switches(); len(h) != 2 || h[0].To != "unbound-a" || h[0].Done {
		t.Fatalf("history %+v; want the open switch to unbound-a superseded", h)
	}
}

// A switch superseded while its calls are in flight makes no further
// call: here the target's attach hangs, and an exploit alert on the target
// then supersedes the switch. The hanging attach is abandoned, the target
// is not tried again (§4.4: an exploited replica serves again only after
// a restore), and the next switch does not wait for the old call. The
// source of the superseded switch was never detached (its attach never
// landed): the next switch detaches it first.
func TestSupersededSwitchMakesNoFurtherCall(t *testing.T) {
	e := newEnv(t)
	e.d.holdCalls("attach unbound-a")
	e.start(false)
	e.cl.must(t, fsm.Alert{ID: "ex-1", Service: svcName, Replica: "bind-a", Kind: fsm.KindExploit, Source: "apparmor"})
	eventually(t, "the switch's attach of unbound-a under way", func() bool { return e.d.heldCalls("attach unbound-a") >= 1 })
	if h := e.switches(); len(h) != 1 || h[0].To != "unbound-a" {
		t.Fatalf("history %+v; want the switch to unbound-a open", h)
	}
	e.cl.must(t, fsm.Alert{ID: "ex-2", Service: svcName, Replica: "unbound-a", Kind: fsm.KindExploit, Source: "apparmor"})
	eventually(t, "the switch to knot-a done", func() bool {
		h := e.switches()
		return len(h) == 2 && h[1].To == "knot-a" && h[1].Done
	})
	if n := e.d.heldCalls("attach unbound-a"); n != 1 {
		t.Errorf("unbound-a attach called %d times, want once (before the exploit on it)", n)
	}
	calls := e.d.callLog()
	if !calledBefore(calls, "detach bind-a", "attach knot-a") {
		t.Errorf("calls %v: want bind-a detached before knot-a is attached", calls)
	}
}

// A make-before-break switch superseded before its attach landed never
// detached its source. The next switch detaches that replica before its
// own attach, so no third replica joins the two ends of the open switch
// (§4.2; the fake driver fails the test on it).
func TestSupersededSwitchSourceIsFencedFirst(t *testing.T) {
	e := newEnv(t)
	e.policy(func(p *fsm.PolicySpec) { p.MinDwell = fsm.Duration(300 * time.Millisecond) })
	e.d.setFail("attach unbound-a", 1<<20)
	e.start(true)
	e.d.attack("bind9", true)
	eventually(t, "switch to knot-a", e.activeIs("knot-a"))
	calls := e.d.callLog()
	if !calledBefore(calls, "detach bind-a", "attach knot-a") {
		t.Fatalf("calls %v: want bind-a detached before knot-a is attached", calls)
	}
	if h := e.switches(); len(h) != 2 || h[0].Done || h[1].From != "unbound-a" {
		t.Fatalf("history %+v; want the open switch to unbound-a superseded", h)
	}
}

// A replica the controller found attached and then detached is known
// detached from its detach's answer: the next switch does not fence it,
// even when its platform stops answering before anyone reads it again (a
// hung vCenter; CI saw the multi-vCenter test's switch wait on it).
// knot-a (suspended by role) starts running with its NIC connected; once
// its detach has returned, every read and detach of it hangs.
func TestDetachedReplicaIsNotFencedAgain(t *testing.T) {
	e := newEnv(t)
	e.d.add(svcName, "knot-a", "knot", driver.PowerOn, true)
	hang := e.d.hangAfter("detach knot-a", "knot-a", "observe", "detach")
	t.Cleanup(func() { close(hang) })
	e.start(true)
	eventually(t, "a read of knot-a held after its detach", func() bool { return e.d.heldCalls("observe knot-a") > 0 })
	e.d.attack("bind9", true)
	eventually(t, "switch to unbound-a", e.activeIs("unbound-a"))
	if n := e.d.heldCalls("detach knot-a"); n != 0 {
		t.Fatalf("the switch detached knot-a again (%d calls held): its first detach had returned", n)
	}
}

// A verdict that comes before the controller has seen its replica
// attached, or less than a probe window after, is weighed again when it
// can be, by the loop itself: here the reconcile timer never fires and no
// follower reports, so nothing else would weigh it. bind-a fails from the
// start and the controller's first read of it is held until the verdict
// is in; unbound-a fails too, so the switch to it never verifies and is
// moved on from.
func TestHeldVerdictIsWeighedAgainWithoutTheReconcileTimer(t *testing.T) {
	e := newEnv(t)
	e.reconcile = time.Hour
	e.d.attack("unbound", true)
	e.d.attack("bind9", true)
	hold := make(chan struct{})
	e.d.mu.Lock()
	e.d.delay["observe bind-a"] = hold
	e.d.mu.Unlock()
	e.start(true)
	eventually(t, "the DoS verdict on bind-a", func() bool {
		return testutil.ToFloat64(e.m.verdicts.WithLabelValues(svcName, "down")) >= 1
	})
	e.d.mu.Lock()
	delete(e.d.delay, "observe bind-a")
	e.d.mu.Unlock()
	close(hold)
	eventually(t, "switch to knot-a", e.activeIs("knot-a"))
	if h := e.switches(); len(h) != 2 || h[0].To != "unbound-a" {
		t.Fatalf("history %+v", h)
	}
}

// A replica whose platform has no driver is reported, never touched, and
// never chosen to become active.
// newVMAndContainerEnv applies a service of two VM replicas (bind-a
// active) and a container replica; the controller gets only the VM driver.
func newVMAndContainerEnv(t *testing.T) *env {
	cl := newFakeCluster()
	cl.must(t, fsm.ServiceApply{Spec: fsm.ServiceSpec{
		Name:    svcName,
		Address: "127.0.0.1:5353",
		Replicas: []fsm.ReplicaSpec{
			{Name: "bind-a", Impl: "bind9", OS: "windows", Platform: fsm.PlatformVM, VM: "bind-a"},
			{Name: "knot-ct", Impl: "knot", OS: "linux", Platform: fsm.PlatformContainer, Host: "local", Image: "ars-lab/knot"},
			{Name: "bind-b", Impl: "bind9", OS: "windows", Platform: fsm.PlatformVM, VM: "bind-b"},
		},
		Probe: fsm.ProbeSpec{Query: "www.lab.internal.", Expect: "192.0.2.10"},
	}})
	d := newFakeDriver(t, cl)
	d.add(svcName, "bind-a", "bind9", driver.PowerOn, true)
	d.add(svcName, "bind-b", "bind9", driver.PowerOff, false)
	return &env{t: t, cl: cl, d: d, m: NewMetrics(prometheus.NewRegistry())}
}

func TestReplicaWithoutDriver(t *testing.T) {
	e := newVMAndContainerEnv(t)
	cl, d := e.cl, e.d
	e.start(false)
	eventually(t, "container replica reported", func() bool {
		return testutil.ToFloat64(e.m.errors.WithLabelValues(svcName, "no-driver")) == 1
	})
	cl.must(t, fsm.Alert{ID: "ex-nd", Service: svcName, Replica: "bind-a", Kind: fsm.KindExploit})
	eventually(t, "switched to the VM", func() bool {
		svc, _ := cl.Service(svcName)
		act, _ := svc.Active()
		return act.Name == "bind-b" && svc.Intent == nil
	})
	for _, c := range d.callLog() {
		if strings.Contains(c, "knot-ct") {
			t.Errorf("container replica touched: %s", c)
		}
	}
}

// An operator's switch request (fsm.SwitchRequest: a ledger entry of kind manual) is decided
// by the leader loop like an alert: a switch to the best other replica
// (make-before-break, reason manual), named in the history by the request;
// a request it cannot carry out is answered with the reason.
func TestManualRequestDecidedByTheLeaderLoop(t *testing.T) {
	e := newEnv(t)
	e.start(false)
	e.cl.must(t, fsm.SwitchRequest{ID: "manual-1", Service: svcName, Source: "operator", Reason: "drill"})
	eventually(t, "manual request decided", func() bool { return e.cl.alert("manual-1").Outcome != "" })
	if o := e.cl.alert("manual-1").Outcome; o != "switch" {
		t.Fatalf("outcome %q, want switch", o)
	}
	eventually(t, "switch done", func() bool { h := e.switches(); return len(h) == 1 && h[0].Done })
	h := e.switches()[0]
	if h.From != "bind-a" || h.Reason != fsm.ReasonManual || h.AlertID != "manual-1" || h.Mode != fsm.ModeMakeBeforeBreak {
		t.Errorf("switch %+v", h)
	}
	// To the active itself: refused with the reason, nothing switched.
	svc, _ := e.cl.Service(svcName)
	act, _ := svc.Active()
	e.cl.must(t, fsm.SwitchRequest{ID: "manual-2", Service: svcName, To: act.Name})
	eventually(t, "second request decided", func() bool { return e.cl.alert("manual-2").Outcome != "" })
	if o := e.cl.alert("manual-2").Outcome; !strings.HasPrefix(o, "rejected: ") || !strings.Contains(o, "already active") {
		t.Errorf("outcome %q, want rejected with the reason", o)
	}
	if n := len(e.switches()); n != 1 {
		t.Errorf("%d switches, want 1", n)
	}
}

// A switch request never picks a replica whose platform has no driver on
// the leader, and one naming such a replica is refused.
func TestManualRequestFollowsDrivers(t *testing.T) {
	e := newVMAndContainerEnv(t)
	cl, d := e.cl, e.d
	e.start(false)
	cl.must(t, fsm.SwitchRequest{ID: "manual-ct", Service: svcName, To: "knot-ct"})
	eventually(t, "request to the container decided", func() bool { return cl.alert("manual-ct").Outcome != "" })
	if o := cl.alert("manual-ct").Outcome; o == "switch" {
		t.Fatalf("switched to a replica without a driver")
	}
	cl.must(t, fsm.SwitchRequest{ID: "manual-any", Service: svcName})
	eventually(t, "switched to the VM", func() bool {
		svc, _ := cl.Service(svcName)
		act, _ := svc.Active()
		return act.Name == "bind-b" && svc.Intent == nil && cl.alert("manual-any").Outcome == "switch"
	})
	for _, c := range d.callLog() {
		if strings.Contains(c, "knot-ct") {
			t.Errorf("container replica touched: %s", c)
		}
	}
}

// A restore that hangs (a slow snapshot revert) runs in the background:
// the leader loop goes on detecting and switching, and the replica being
// restored is neither attached nor chosen until the restore is done.
// A platform that takes calls and does not answer holds the loop's read
// of a replica; decisions and the next switch's critical path go on
// meanwhile (chaos seed 4: an engine shutting down held a damped
// verdict's retry past its time).
func TestHangingReadDoesNotHoldTheNextSwitch(t *testing.T) {
	e := newEnv(t)
	e.start(true)
	e.d.attack("bind9", true)
	eventually(t, "switch to unbound-a", e.settled("bind-a=suspended unbound-a=active bind-b=suspended knot-a=standby"))
	hold := make(chan struct{})
	defer close(hold)
	e.d.mu.Lock()
	e.d.delay["observe bind-b"] = hold
	e.d.mu.Unlock()
	eventually(t, "the loop's read of bind-b hangs", func() bool {
		e.d.mu.Lock()
		defer e.d.mu.Unlock()
		return e.d.held["observe bind-b"] > 0
	})
	e.d.attack("unbound", true)
	eventually(t, "switch to knot-a completed while the read of bind-b hangs", e.activeIs("knot-a"))
	e.d.mu.Lock()
	held := e.d.held["observe bind-b"]
	e.d.mu.Unlock()
	if held != 1 {
		t.Errorf("%d reads of bind-b started while the first hangs; want 1 (one read in flight per replica)", held)
	}
	if h := e.switches(); len(h) != 2 || !h[1].Done || h[1].To != "knot-a" {
		t.Fatalf("history %+v", h)
	}
}

func TestSlowRestoreDoesNotDelayTheNextSwitch(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	e.d.mu.Lock()
	e.d.delay["restore bind-a"] = release
	e.d.mu.Unlock()
	e.start(true)
	e.d.attack("bind9", true)
	eventually(t, "switch to unbound-a", e.activeIs("unbound-a"))
	e.d.attack("unbound", true)
	eventually(t, "switch to knot-a while bind-a's restore hangs", e.activeIs("knot-a"))
	if r, _ := e.cl.Service(svcName); roleOf(r, "bind-a") != fsm.RoleRecovering {
		t.Fatalf("bind-a is %s while its restore hangs, want recovering", roleOf(r, "bind-a"))
	}
	close(release)
	eventually(t, "bind-a restored", func() bool {
		svc, _ := e.cl.Service(svcName)
		return roleOf(svc, "bind-a") == fsm.RoleSuspended && e.d.vm("bind-a").restored == 1
	})
}

func roleOf(svc fsm.Service, name string) fsm.Role {
	r, _ := svc.Replica(name)
	return r.Role
}

// A detach the platform does not answer (a hung vCenter) holds only its
// replica: the loop decides and switches meanwhile, and the detach
// completes when the platform answers.
func TestHungDetachDoesNotHoldTheNextSwitch(t *testing.T) {
	e := newEnv(t)
	hold := e.d.holdCalls("detach knot-a")
	e.start(true)
	// Someone sets the suspended knot-a to connect at power-on: the loop
	// detaches it, and the platform holds the call.
	e.d.byHand("knot-a", func(vm *fakeVM) { vm.nicStart = true })
	eventually(t, "the detach of knot-a held", func() bool { return e.d.heldCalls("detach knot-a") > 0 })
	e.d.attack("bind9", true)
	eventually(t, "switch to unbound-a while knot-a's detach hangs", e.activeIs("unbound-a"))
	if slices.Contains(e.d.callLog(), "detach knot-a") {
		t.Fatal("knot-a's detach returned before its release")
	}
	close(hold)
	eventually(t, "knot-a detached after the release", func() bool { return !e.d.vm("knot-a").nicStart })
	if n := e.d.heldCalls("detach knot-a"); n != 1 {
		t.Errorf("%d detaches of knot-a started; want 1 (one operation in flight per replica)", n)
	}
}

// A leadership counts its full reconcile passes: the scale benchmark
// reads the counter to tell when a new leader has reconciled every
// service.
func TestReconcilePassesCounted(t *testing.T) {
	e := newEnv(t)
	if got := testutil.ToFloat64(e.m.passes); got != 0 {
		t.Fatalf("passes before the leadership: %v", got)
	}
	e.start(false)
	eventually(t, "two reconcile passes counted", func() bool { return testutil.ToFloat64(e.m.passes) >= 2 })
}

// Attacks on two services at once: the second switch does not wait for
// the first one's critical path. A pass used to wait up to passWait for
// each open switch's calls in turn, so a switch committed behind another
// started only when that one's calls returned (~100 ms later for the
// fifth of five concurrent switches in the scale lab). Here the first
// switch's attach is held and the pass would wait an hour for it.
func TestConcurrentSwitchesDoNotWaitForEachOther(t *testing.T) {
	e := newEnv(t)
	const other = "dns2"
	spec, _ := e.cl.Service(svcName)
	spec2 := spec.Spec
	spec2.Name, spec2.Address = other, "127.0.0.2:5353"
	spec2.Replicas = nil
	for _, r := range spec.Spec.Replicas {
		r.Name, r.VM = r.Name+"-2", r.VM+"-2"
		spec2.Replicas = append(spec2.Replicas, r)
	}
	e.cl.must(t, fsm.ServiceApply{Spec: spec2})
	svc2, _ := e.cl.Service(other)
	for _, rs := range svc2.Replicas {
		r, _ := svc2.Spec.Replica(rs.Name)
		switch rs.Role {
		case fsm.RoleActive:
			e.d.add(other, rs.Name, r.Impl, driver.PowerOn, true)
		case fsm.RoleStandby:
			e.d.add(other, rs.Name, r.Impl, driver.PowerOn, false)
		default:
			e.d.add(other, rs.Name, r.Impl, driver.PowerSuspended, false)
		}
	}
	// Both switches are open when the pass reads the state (as a new
	// leader finds them, or two commits that land before the next pass).
	now := time.Now().UnixNano()
	e.cl.must(t, fsm.Switch{Service: svcName, From: "bind-a", To: "unbound-a", Reason: fsm.ReasonExploit, At: now})
	e.cl.must(t, fsm.Switch{Service: other, From: "bind-a-2", To: "unbound-a-2", Reason: fsm.ReasonExploit, At: now})
	release := e.d.holdCalls("attach unbound-a")
	defer close(release)
	select {
	case <-e.cl.applied: // the commits above are read by the first pass
	default:
	}
	e.create(false)
	e.ctl.cfg.passWait = time.Hour
	e.run()
	eventually(t, "the first switch's attach held", func() bool { return e.d.heldCalls("attach unbound-a") > 0 })
	eventually(t, "the second switch done while the first one's attach is held", func() bool {
		s, _ := e.cl.Service(other)
		return s.Intent == nil && len(s.History) == 1 && s.History[0].Done
	})
	if s, _ := e.cl.Service(svcName); s.Intent == nil {
		t.Fatalf("the first switch completed although its attach is held: %+v", s.History)
	}
}
