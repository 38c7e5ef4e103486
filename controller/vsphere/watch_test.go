package vsphere

import (
	"context"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/vcsim"
)

func powerIs(name string, p driver.Power) func(driver.Event) bool {
	return func(ev driver.Event) bool {
		return ev.Replica.Name == name && ev.State.Power == p
	}
}

// Someone powers a replica VM off by hand: the watch reports it.
func TestWatchSeesDrift(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := e.d.Watch(ctx)
	r := replica("bind9-win", vm0)
	e.observe(r) // the driver watches what it has been asked about

	ev := nextEvent(t, ch, 10*time.Second, "initial state", powerIs("bind9-win", driver.PowerOn))
	if ev.Kind != driver.EventChanged || !ev.State.NICConnected || ev.Replica != r {
		t.Fatalf("initial event = %+v", ev)
	}
	start := time.Now()
	e.powerOffByHand(vm0)
	ev = nextEvent(t, ch, 10*time.Second, "power-off by hand", powerIs("bind9-win", driver.PowerOff))
	t.Logf("drift seen %s after the power-off", time.Since(start))
	if ev.Kind != driver.EventChanged || ev.State.NICConnected {
		t.Fatalf("drift event = %+v", ev)
	}

	// A second watcher starts with the current state.
	ch2 := e.d.Watch(ctx)
	nextEvent(t, ch2, time.Second, "current state for a new watcher", powerIs("bind9-win", driver.PowerOff))

	// A second replica joins the watch when the driver first touches it.
	r1 := replica("unbound-win", vm1)
	if err := e.d.Detach(e.ctx(), r1); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, ch, 10*time.Second, "second replica", func(ev driver.Event) bool {
		return ev.Replica.Name == "unbound-win" && ev.State.Power == driver.PowerOn && !ev.State.NICConnected
	})

	// The channels close with the watchers' context.
	cancel()
	for range ch {
	}
	for range ch2 {
	}
}

// The session is terminated while the watch runs: the watch re-logs in,
// rebuilds its property collector (the old one died with the session)
// and keeps reporting drift.
func TestWatchSurvivesSessionLoss(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := e.d.Watch(ctx)
	r := replica("bind9-win", vm0)
	e.observe(r)
	nextEvent(t, ch, 10*time.Second, "initial state", powerIs("bind9-win", driver.PowerOn))

	if err := e.sim.Terminate(e.ctx()); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, ch, 10*time.Second, "resync after the session loss", func(ev driver.Event) bool {
		return ev.Kind == driver.EventResync
	})
	e.powerOffByHand(vm0)
	nextEvent(t, ch, 10*time.Second, "drift after the session loss", powerIs("bind9-win", driver.PowerOff))
	if n := e.sessions(); n != 1 || e.relogins() != 1 {
		t.Fatalf("sessions = %d, relogins = %v; want 1, 1", n, e.relogins())
	}
}

// A slow reader loses events but is told to resync.
func TestWatchSlowReaderGetsResync(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	sub := driver.NewSubscriber(2)
	e.d.subs[sub] = struct{}{}
	defer delete(e.d.subs, sub)
	for range 5 {
		e.d.publish(driver.Event{Kind: driver.EventChanged})
	}
	if len(sub.C) != cap(sub.C) {
		t.Fatal("the slow reader's channel is not full")
	}
	<-sub.C
	<-sub.C
	e.d.publish(driver.Event{Kind: driver.EventChanged})
	if ev := <-sub.C; ev.Kind != driver.EventResync {
		t.Fatalf("first event after overflow = %v, want resync", ev.Kind)
	}
	if ev := <-sub.C; ev.Kind != driver.EventChanged {
		t.Fatalf("then %v", ev.Kind)
	}
}

// FT: an FT-protected VM reports that it cannot be suspended or restored;
// the driver refuses both without asking vCenter; NIC operations work; an
// FT failover is reported as such.
func TestFaultTolerance(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	if err := e.sim.Snapshot(e.ctx(), vm0, "clean"); err != nil {
		t.Fatal(err)
	}
	e.start()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := e.d.Watch(ctx)
	r := replica("bind9-win", vm0)
	if o := e.observe(r); !o.Supports.Suspend || !o.Supports.Restore {
		t.Fatalf("unprotected VM: %+v", o.Supports)
	}
	hosts := e.sim.Hosts()
	primary, secondary := hosts[0], hosts[1]
	if err := e.sim.SetVM(e.ctx(), vm0,
		types.PropertyChange{Name: "runtime.faultToleranceState", Val: types.VirtualMachineFaultToleranceStateRunning},
		types.PropertyChange{Name: "runtime.host", Val: primary},
	); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, ch, 10*time.Second, "FT running", func(ev driver.Event) bool { return ev.State.FT == driver.FTRunning })

	o := e.observe(r)
	if o.FT != driver.FTRunning || o.Supports.Suspend || o.Supports.Restore || !o.Supports.Attach {
		t.Fatalf("FT-protected VM: FT %s, supports %+v", o.FT, o.Supports)
	}
	suspends, reverts := e.calls("SuspendVM_Task"), e.calls("RevertToSnapshot_Task")
	opError(t, e.d.Suspend(e.ctx(), r), driver.ErrUnsupported, r.Name)
	opError(t, e.d.Restore(e.ctx(), r), driver.ErrUnsupported, r.Name)
	if e.calls("SuspendVM_Task") != suspends || e.calls("RevertToSnapshot_Task") != reverts {
		t.Fatal("an unsupported operation reached vCenter")
	}
	if err := e.d.Detach(e.ctx(), r); err != nil {
		t.Fatalf("detach of an FT VM: %v", err)
	}
	if err := e.d.Attach(e.ctx(), r); err != nil {
		t.Fatalf("attach of an FT VM: %v", err)
	}

	// Failover: the secondary on the other host takes over and FT needs a
	// new secondary.
	if err := e.sim.SetVM(e.ctx(), vm0,
		types.PropertyChange{Name: "runtime.faultToleranceState", Val: types.VirtualMachineFaultToleranceStateNeedSecondary},
		types.PropertyChange{Name: "runtime.host", Val: secondary},
	); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, ch, 10*time.Second, "FT failover", func(ev driver.Event) bool { return ev.Kind == driver.EventFTFailover })
	if ev.State.Host != secondary.Value || ev.State.FT != driver.FTNeedSecondary || ev.State.Power != driver.PowerOn {
		t.Fatalf("failover event = %+v", ev)
	}
}

func TestFTFailoverRule(t *testing.T) {
	obs := func(ft driver.FTState, host string) driver.Observation {
		return driver.Observation{FT: ft, Host: host}
	}
	for _, c := range []struct {
		prev, cur driver.Observation
		want      bool
	}{
		{obs(driver.FTRunning, "h1"), obs(driver.FTNeedSecondary, "h1"), true},
		{obs(driver.FTRunning, "h1"), obs(driver.FTStarting, "h2"), true},
		{obs(driver.FTRunning, "h1"), obs(driver.FTRunning, "h2"), true},
		{obs(driver.FTRunning, "h1"), obs(driver.FTRunning, "h1"), false},
		{obs(driver.FTNotConfigured, "h1"), obs(driver.FTNotConfigured, "h2"), false}, // vMotion
		{obs(driver.FTStarting, "h1"), obs(driver.FTRunning, "h1"), false},            // secondary back
		{obs(driver.FTRunning, "h1"), obs(driver.FTDisabled, "h1"), false},            // turned off
	} {
		if got := ftFailover(c.prev, c.cur); got != c.want {
			t.Errorf("ftFailover(%+v, %+v) = %v", c.prev, c.cur, got)
		}
	}
}
