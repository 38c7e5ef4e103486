package vsphere

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/vcsim"
)

// Every operation on a simulated VM, each repeated: a repeat succeeds and
// does not call vCenter's mutating method again.
func TestOperationsAndIdempotentRepeats(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	if err := e.sim.Snapshot(e.ctx(), vm0, "clean"); err != nil {
		t.Fatal(err)
	}
	e.start()
	r := replica("bind9-win", vm0)

	obs := e.observe(r)
	if obs.Power != driver.PowerOn || !obs.NICConnected || !obs.NICStartConnected || obs.FT != driver.FTNotConfigured ||
		!obs.Reachable || obs.ChangeVersion == "" || obs.Host == "" || obs.Replica != "bind9-win" || obs.Target != vm0 {
		t.Fatalf("initial observation = %+v", obs)
	}
	if obs.Supports != (driver.Capabilities{Attach: true, Suspend: true, Restore: true}) {
		t.Fatalf("supports = %+v, want everything", obs.Supports)
	}
	if len(obs.Tasks) != 0 {
		t.Fatalf("tasks in flight = %v", obs.Tasks)
	}

	type check func(driver.Observation) bool
	steps := []struct {
		name   string
		op     func(context.Context, fsm.ReplicaSpec) error
		method string // the mutating SOAP method
		want   check
	}{
		{"detach", func(ctx context.Context, r fsm.ReplicaSpec) error { return e.d.Detach(ctx, r) }, "ReconfigVM_Task",
			func(o driver.Observation) bool {
				return o.Power == driver.PowerOn && !o.NICConnected && !o.NICStartConnected
			}},
		{"attach", func(ctx context.Context, r fsm.ReplicaSpec) error { return e.d.Attach(ctx, r) }, "ReconfigVM_Task",
			func(o driver.Observation) bool { return o.NICConnected && o.NICStartConnected }},
		{"suspend", e.d.Suspend, "SuspendVM_Task",
			func(o driver.Observation) bool { return o.Power == driver.PowerSuspended && !o.NICConnected }},
		{"resume", e.d.Resume, "PowerOnVM_Task",
			func(o driver.Observation) bool { return o.Power == driver.PowerOn && o.NICConnected }},
		{"power-off", e.d.PowerOff, "PowerOffVM_Task",
			func(o driver.Observation) bool { return o.Power == driver.PowerOff && !o.NICConnected }},
		{"power-on", func(ctx context.Context, r fsm.ReplicaSpec) error { return e.d.PowerOn(ctx, r) }, "PowerOnVM_Task",
			func(o driver.Observation) bool { return o.Power == driver.PowerOn && o.NICConnected }},
		{"restore", e.d.Restore, "RevertToSnapshot_Task",
			func(o driver.Observation) bool { return o.Supports.Restore }},
	}
	for _, st := range steps {
		before := e.calls(st.method)
		if err := st.op(e.ctx(), r); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := e.calls(st.method); got != before+1 {
			t.Fatalf("%s: %d %s calls, want 1", st.name, got-before, st.method)
		}
		if o := e.observe(r); !st.want(o) {
			t.Fatalf("after %s: %+v", st.name, o)
		}
		// The repeat: the replica is already there.
		before = e.calls(st.method)
		if err := st.op(e.ctx(), r); err != nil {
			t.Fatalf("%s again: %v", st.name, err)
		}
		after := e.calls(st.method)
		if st.name == "restore" {
			if after != before+1 { // a revert always runs: reverting twice is as good as once
				t.Fatalf("restore again: %d revert calls, want 1", after-before)
			}
		} else if after != before {
			t.Fatalf("%s again called %s %d times; an idempotent repeat must not", st.name, st.method, after-before)
		}
		if o := e.observe(r); !st.want(o) {
			t.Fatalf("after %s again: %+v", st.name, o)
		}
	}
}

// A standby detached while off stays detached when it boots.
func TestDetachedReplicaBootsDetached(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	r := replica("unbound-win", vm1)
	if err := e.d.PowerOff(e.ctx(), r); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Detach(e.ctx(), r); err != nil {
		t.Fatal(err)
	}
	if err := e.d.PowerOn(e.ctx(), r); err != nil {
		t.Fatal(err)
	}
	if o := e.observe(r); o.Power != driver.PowerOn || o.NICConnected || o.NICStartConnected {
		t.Fatalf("booted standby: %+v, want running and detached", o)
	}
}

// Operations that the VM's state does not allow fail clearly and change
// nothing.
func TestInvalidStateTransitions(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	r := replica("bind9-win", vm0)
	if err := e.d.PowerOff(e.ctx(), r); err != nil {
		t.Fatal(err)
	}
	for name, op := range map[string]func() error{
		"attach":  func() error { return e.d.Attach(e.ctx(), r) },
		"resume":  func() error { return e.d.Resume(e.ctx(), r) },
		"suspend": func() error { return e.d.Suspend(e.ctx(), r) },
	} {
		oe := opError(t, op(), driver.ErrInvalidState, r.Name)
		if oe.Attempts != 1 || oe.State == nil || oe.State.Power != driver.PowerOff {
			t.Errorf("%s on a powered-off VM: %+v", name, oe)
		}
	}
	if o := e.observe(r); o.Power != driver.PowerOff {
		t.Fatalf("state changed: %+v", o)
	}
}

func TestObserveByInventoryPathAndTasks(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	r := replica("bind9-win", "/DC0/vm/"+vm0)
	o := e.observe(r)
	if o.Power != driver.PowerOn || o.Target != "/DC0/vm/"+vm0 {
		t.Fatalf("observe by path: %+v", o)
	}
	if err := e.d.Detach(e.ctx(), r); err != nil {
		t.Fatal(err)
	}
	if o := e.observe(r); o.NICConnected || len(o.Tasks) != 0 {
		t.Fatalf("after detach: %+v", o)
	}
}

// Bad input: a clear error naming the replica, and nothing changed.
func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	good := replica("bind9-win", vm0)
	before := e.observe(good)

	noVM := replica("ghost", "no-such-vm")
	noPath := replica("ghost-path", "/DC0/vm/no-such-vm")
	noNIC := replica("bind9-win", vm0)
	noNIC.NIC = "ethernet-9"
	noSnap := replica("bind9-win", vm0)
	noSnap.Snapshot = "pristine"
	unnamedSnap := replica("bind9-win", vm0)
	unnamedSnap.Snapshot = ""
	container := fsm.ReplicaSpec{Name: "knot-ct", Impl: "knot-resolver", OS: fsm.OSLinux, Platform: fsm.PlatformContainer, Host: "local"}

	reconfigs, reverts := e.calls("ReconfigVM_Task"), e.calls("RevertToSnapshot_Task")
	cases := []struct {
		name    string
		err     error
		want    error
		replica string
		mention string
	}{
		{"unknown vm name", e.d.Attach(e.ctx(), noVM), driver.ErrNotFound, "ghost", `"no-such-vm"`},
		{"unknown vm path", e.d.PowerOn(e.ctx(), noPath), driver.ErrNotFound, "ghost-path", `"/DC0/vm/no-such-vm"`},
		{"unknown nic", e.d.Attach(e.ctx(), noNIC), driver.ErrNotFound, "bind9-win", `"ethernet-9"`},
		{"unknown nic detach", e.d.Detach(e.ctx(), noNIC), driver.ErrNotFound, "bind9-win", "ethernet-0"},
		{"missing snapshot", e.d.Restore(e.ctx(), noSnap), driver.ErrNotFound, "bind9-win", `"pristine"`},
		{"no snapshot named", e.d.Restore(e.ctx(), unnamedSnap), driver.ErrInvalid, "bind9-win", "snapshot"},
		{"container spec", e.d.PowerOn(e.ctx(), container), driver.ErrInvalid, "knot-ct", "container"},
	}
	for _, c := range cases {
		oe := opError(t, c.err, c.want, c.replica)
		if !strings.Contains(c.err.Error(), c.mention) {
			t.Errorf("%s: error %q does not mention %s", c.name, c.err, c.mention)
		}
		if oe.Attempts > 1 {
			t.Errorf("%s: retried %d times; bad input must not be retried", c.name, oe.Attempts)
		}
	}
	if e.calls("ReconfigVM_Task") != reconfigs || e.calls("RevertToSnapshot_Task") != reverts {
		t.Fatal("bad input reached vCenter's mutating methods")
	}
	if after := e.observe(good); after.ChangeVersion != before.ChangeVersion || after.String() != before.String() {
		t.Fatalf("state changed: before %+v, after %+v", before, after)
	}

	// Observe reports a missing NIC as an error but still says what it saw.
	obs, err := e.d.Observe(e.ctx(), noNIC)
	opError(t, err, driver.ErrNotFound, "bind9-win")
	if obs.Power != driver.PowerOn || obs.Supports.Attach {
		t.Fatalf("observation with a missing NIC: %+v", obs)
	}
}

// Without a running term there is no session: operations fail fast with
// ErrUnavailable rather than logging in.
func TestNoRunNoSession(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, func(c *Config) { c.CallTimeout = 200 * time.Millisecond })
	err := e.d.PowerOn(e.ctx(), replica("bind9-win", vm0))
	opError(t, err, driver.ErrUnavailable, "bind9-win")
	if e.sessions() != 0 {
		t.Fatalf("%d sessions without Run", e.sessions())
	}
	e.start()
	if err := e.d.PowerOn(e.ctx(), replica("bind9-win", vm0)); err != nil {
		t.Fatal(err)
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	err = e.d.PowerOn(e.ctx(), replica("bind9-win", vm0))
	opError(t, err, driver.ErrUnavailable, "bind9-win")
}

func TestNewRejectsBadConfig(t *testing.T) {
	pw := func() (string, error) { return "x", nil }
	for name, c := range map[string]Config{
		"no url":            {Username: "u", Password: pw},
		"http":              {URL: "http://127.0.0.1/sdk", Username: "u", Password: pw},
		"creds in url":      {URL: "https://u:p@127.0.0.1/sdk", Username: "u", Password: pw},
		"no user":           {URL: "https://127.0.0.1/sdk", Password: pw},
		"no password":       {URL: "https://127.0.0.1/sdk", Username: "u"},
		"bad thumbprint":    {URL: "https://127.0.0.1/sdk", Username: "u", Password: pw, Thumbprint: "AB:CD"},
		"thumbprint and ca": {URL: "https://127.0.0.1/sdk", Username: "u", Password: pw, Thumbprint: strings.Repeat("AB", 32), CAFile: "/etc/hosts"},
		"insecure and ca":   {URL: "https://127.0.0.1/sdk", Username: "u", Password: pw, Insecure: true, CAFile: "/etc/hosts"},
		"short watch wait":  {URL: "https://127.0.0.1/sdk", Username: "u", Password: pw, WatchWait: time.Millisecond},
		"ca not pem":        {URL: "https://127.0.0.1/sdk", Username: "u", Password: pw, CAFile: "driver_test.go"},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted %+v", name, c)
		}
	}
	if _, err := New(Config{URL: "http://127.0.0.1/sdk", Username: "u", Password: pw, Insecure: true}); err != nil {
		t.Errorf("http with insecure: %v", err)
	}
}

func TestOpErrorMessage(t *testing.T) {
	err := &driver.OpError{Op: "attach", Replica: "bind9-win", Target: "vm X", Attempts: 3,
		State: &driver.Observation{Power: driver.PowerOff, Reachable: true},
		Err:   errors.Join(driver.ErrUnavailable)}
	want := "attach replica bind9-win (vm X): after 3 attempts: platform unavailable [now: power off, nic disconnected]"
	if err.Error() != want {
		t.Fatalf("got %q\nwant %q", err.Error(), want)
	}
}
