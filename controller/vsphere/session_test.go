package vsphere

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/vcsim"
)

// vCenter expires an idle session; the next operation logs in again
// without the caller seeing an error, and exactly one session is left.
func TestSessionSurvivesIdleExpiry(t *testing.T) {
	e := newEnv(t, vcsim.Options{SessionTimeout: time.Second}, nil) // keep-alive off (1 h)
	e.start()
	r := replica("bind9-win", vm0)
	e.observe(r)

	eventually(t, 10*time.Second, "the simulator expires the idle session", func() bool { return e.sessions() == 0 })
	if e.relogins() != 0 {
		t.Fatalf("relogins = %v before any call", e.relogins())
	}
	// The first round trip is a property read: vCenter answers it with a
	// MissingSet entry, not an error.
	if err := e.d.Detach(e.ctx(), r); err != nil {
		t.Fatalf("detach after expiry: %v", err)
	}
	if n := e.sessions(); n != 1 {
		t.Fatalf("%d sessions after re-login, want exactly 1", n)
	}
	if e.relogins() != 1 || e.live() != 1 {
		t.Fatalf("relogins = %v, live = %v; want 1, 1", e.relogins(), e.live())
	}
	if o := e.observe(r); o.NICConnected {
		t.Fatalf("detach did not happen: %+v", o)
	}
}

// An administrator terminates the session from another session; a call
// answered with a NotAuthenticated fault is retried after a re-login.
func TestSessionSurvivesAdminTermination(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	r := replica("bind9-win", vm0)
	e.observe(r)

	if err := e.sim.Terminate(e.ctx()); err != nil {
		t.Fatal(err)
	}
	if n := e.sessions(); n != 0 {
		t.Fatalf("%d sessions after termination", n)
	}
	// A method that vCenter refuses outright without a session.
	s := e.d.run.sess
	if _, err := methods.GetCurrentTime(e.ctx(), s.vc); err != nil {
		t.Fatalf("call after termination: %v", err)
	}
	if n := e.sessions(); n != 1 || e.relogins() != 1 {
		t.Fatalf("sessions = %d, relogins = %v; want 1, 1", n, e.relogins())
	}
	// And a whole operation after a second termination.
	if err := e.sim.Terminate(e.ctx()); err != nil {
		t.Fatal(err)
	}
	if err := e.d.PowerOff(e.ctx(), r); err != nil {
		t.Fatalf("power off after termination: %v", err)
	}
	if n := e.sessions(); n != 1 || e.relogins() != 2 {
		t.Fatalf("sessions = %d, relogins = %v; want 1, 2", n, e.relogins())
	}
	if e.live() != 1 {
		t.Fatalf("sessions_live = %v", e.live())
	}
}

// Many calls hit the lost session at once: one re-login, one session.
func TestConcurrentCallsReloginOnce(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	r := replica("bind9-win", vm0)
	e.observe(r)
	if err := e.sim.Terminate(e.ctx()); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := e.d.Observe(e.ctx(), r)
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := e.sessions(); n != 1 || e.relogins() != 1 {
		t.Fatalf("sessions = %d, relogins = %v; want 1, 1", n, e.relogins())
	}
}

// The keep-alive keeps an otherwise idle session from expiring: same
// session, no re-login, across several session timeouts.
func TestKeepAliveKeepsSessionAlive(t *testing.T) {
	e := newEnv(t, vcsim.Options{SessionTimeout: time.Second}, func(c *Config) { c.KeepAlive = 100 * time.Millisecond })
	e.start()
	list, err := e.sim.Sessions(e.ctx())
	if err != nil || len(list) != 1 {
		t.Fatalf("sessions: %v %v", list, err)
	}
	key := list[0].Key
	ok := func() float64 { return testutil.ToFloat64(e.d.m.KeepAlives.WithLabelValues(e.d.name, "ok")) }
	// 25 checks at 100 ms: beyond 2 × the 1 s timeout.
	eventually(t, 20*time.Second, "25 keep-alive checks", func() bool { return ok() >= 25 })
	list, err = e.sim.Sessions(e.ctx())
	if err != nil || len(list) != 1 || list[0].Key != key {
		t.Fatalf("sessions after keep-alive = %v (%v); want the original one", list, err)
	}
	if e.relogins() != 0 {
		t.Fatalf("relogins = %v", e.relogins())
	}
}

// The keep-alive finds a terminated session and logs in again by itself,
// before any operation needs it.
func TestKeepAliveRenewsLostSession(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, func(c *Config) { c.KeepAlive = 50 * time.Millisecond })
	e.start()
	if err := e.sim.Terminate(e.ctx()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "keep-alive re-login", func() bool { return e.relogins() == 1 && e.sessions() == 1 })
	relogin := testutil.ToFloat64(e.d.m.KeepAlives.WithLabelValues(e.d.name, "relogin"))
	if relogin != 1 {
		t.Fatalf("keep-alive relogin checks = %v", relogin)
	}
}

// NotAuthenticated while the session is alive means a missing privilege:
// no re-login, no retry, ErrDenied, and the VM is where it was.
func TestNotAuthenticatedWithLiveSessionIsDenied(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	r := replica("bind9-win", vm0)
	if err := e.d.PowerOff(e.ctx(), r); err != nil {
		t.Fatal(err)
	}
	rule := &simulator.FaultInjectionRule{MethodName: "PowerOnVM_Task", ObjectType: "*", ObjectName: vm0,
		FaultType: simulator.FaultTypeNotAuthenticated, Probability: 1, Enabled: true}
	e.sim.Model.Service.AddFaultRule(rule)
	err := e.d.PowerOn(e.ctx(), r)
	oe := opError(t, err, driver.ErrDenied, r.Name)
	if oe.Attempts != 1 || oe.State == nil || oe.State.Power != driver.PowerOff {
		t.Fatalf("error = %+v", oe)
	}
	if e.relogins() != 0 || e.sessions() != 1 {
		t.Fatalf("relogins = %v, sessions = %d; a privilege fault must not log in again", e.relogins(), e.sessions())
	}
}

// Leadership ends while an operation waits on vCenter: the operation is
// cancelled, Run logs out, no session is left.
func TestLeadershipLossCancelsAndLogsOut(t *testing.T) {
	var (
		block   atomic.Bool
		entered = make(chan struct{}, 1)
		release = make(chan struct{})
	)
	handler := func(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if m.Name == "PowerOnVM_Task" && block.Load() {
			entered <- struct{}{}
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
		return nil, nil
	}
	e := newEnv(t, vcsim.Options{Handler: handler}, func(c *Config) { c.CallTimeout = 500 * time.Millisecond })
	t.Cleanup(func() { close(release) }) // before the simulator closes (cleanups run last-first)
	e.start()
	r := replica("bind9-win", vm0)
	if err := e.d.PowerOff(e.ctx(), r); err != nil {
		t.Fatal(err)
	}
	block.Store(true)
	opErr := make(chan error, 1)
	go func() { opErr <- e.d.PowerOn(context.Background(), r) }()
	<-entered

	start := time.Now()
	if err := e.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	select {
	case err := <-opErr:
		if !errors.Is(err, context.Canceled) || !errors.Is(err, driver.ErrUnavailable) {
			t.Fatalf("in-flight operation ended with %v; want cancelled (ErrUnavailable)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight operation not cancelled")
	}
	t.Logf("leadership end to logout: %s", time.Since(start))
	if n := e.sessions(); n != 0 {
		t.Fatalf("%d sessions after leadership loss, want 0", n)
	}
	if e.live() != 0 {
		t.Fatalf("sessions_live = %v", e.live())
	}
	opError(t, e.d.PowerOn(e.ctx(), r), driver.ErrUnavailable, r.Name)

	// The next term logs in again: one session.
	block.Store(false)
	e.start()
	if n := e.sessions(); n != 1 {
		t.Fatalf("%d sessions in the next term", n)
	}
}

func TestRunTwiceRefused(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	if err := e.d.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Run = %v", err)
	}
	if n := e.sessions(); n != 1 {
		t.Fatalf("%d sessions", n)
	}
}

// Per-operation login: every operation logs in and out; between
// operations no session exists.
func TestPerOperationLogin(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, func(c *Config) { c.PerOperationLogin = true })
	e.start()
	r := replica("bind9-win", vm0)
	if n := e.sessions(); n != 0 {
		t.Fatalf("%d sessions before any operation", n)
	}
	if err := e.d.Detach(e.ctx(), r); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Attach(e.ctx(), r); err != nil {
		t.Fatal(err)
	}
	o := e.observe(r)
	if !o.NICConnected {
		t.Fatalf("observation: %+v", o)
	}
	if n := e.sessions(); n != 0 || e.live() != 0 {
		t.Fatalf("sessions = %d, live = %v after operations; want 0", n, e.live())
	}
	if got := e.logins("per_operation"); got != 3 {
		t.Fatalf("per-operation logins = %v, want 3", got)
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
}

// Ready is false until the term's session is logged in; then watchers get
// an EventResync (the leader loop skipped this vCenter's replicas until
// then), and it is false again once the term ends.
func TestReadyAfterLogin(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	if e.d.Ready() {
		t.Fatal("ready without Run")
	}
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	events := e.d.Watch(wctx)
	e.start()
	if !e.d.Ready() {
		t.Fatal("not ready with a live session")
	}
	bound := time.After(10 * time.Second) // generous: a hang fails, a slow run does not
	for resync := false; !resync; {
		select {
		case ev := <-events:
			resync = ev.Kind == driver.EventResync
		case <-bound:
			t.Fatal("no resync event after the login")
		}
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	if e.d.Ready() {
		t.Fatal("ready after the term ended")
	}
}
