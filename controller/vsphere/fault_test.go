package vsphere

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/vcsim"
)

func faultRule(method string, ft simulator.FaultType, maxCount int) *simulator.FaultInjectionRule {
	return &simulator.FaultInjectionRule{MethodName: method, ObjectType: "*", ObjectName: "*",
		FaultType: ft, Message: "injected by the test", Probability: 1, MaxCount: maxCount, Enabled: true}
}

func injected(e *env) int64 {
	n, _ := e.sim.Model.Service.GetFaultStats()["total_injections"].(int64)
	return n
}

// A transient fault on PowerOn is retried: the caller sees success.
func TestFaultPowerOnTransientIsRetried(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	r := replica("bind9-win", vm0)
	if err := e.d.PowerOff(e.ctx(), r); err != nil {
		t.Fatal(err)
	}
	e.sim.Model.Service.AddFaultRule(faultRule("PowerOnVM_Task", simulator.FaultTypeGeneric, 2))
	calls := e.calls("PowerOnVM_Task")
	if err := e.d.PowerOn(e.ctx(), r); err != nil {
		t.Fatalf("power on with two transient faults: %v", err)
	}
	if got := e.calls("PowerOnVM_Task") - calls; got != 3 || injected(e) != 2 {
		t.Fatalf("%d PowerOnVM_Task calls, %d faults; want 3 and 2", got, injected(e))
	}
	if o := e.observe(r); o.Power != driver.PowerOn {
		t.Fatalf("after retried power on: %+v", o)
	}
}

// A persistent fault is retried MaxAttempts times, then reported with the
// state the replica is in (never unknown).
func TestFaultPowerOnPersistentIsBounded(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	r := replica("bind9-win", vm0)
	if err := e.d.PowerOff(e.ctx(), r); err != nil {
		t.Fatal(err)
	}
	e.sim.Model.Service.AddFaultRule(faultRule("PowerOnVM_Task", simulator.FaultTypeGeneric, 0))
	err := e.d.PowerOn(e.ctx(), r)
	oe := opError(t, err, driver.ErrUnavailable, r.Name)
	if oe.Attempts != DefaultMaxAttempts || injected(e) != int64(DefaultMaxAttempts) {
		t.Fatalf("attempts = %d, faults = %d; want %d", oe.Attempts, injected(e), DefaultMaxAttempts)
	}
	if oe.State == nil || oe.State.Power != driver.PowerOff {
		t.Fatalf("state after failure = %+v, want a known power-off", oe.State)
	}
	if !strings.Contains(err.Error(), "injected by the test") || !strings.Contains(err.Error(), "now: power off") {
		t.Fatalf("error %q should carry the fault and the state", err)
	}
}

// Faults that another attempt cannot fix are not retried.
func TestFaultNotRetriable(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	r := replica("bind9-win", vm0)
	for _, c := range []struct {
		ft   simulator.FaultType
		want error
	}{
		{simulator.FaultTypeInvalidArgument, driver.ErrInvalid},
		{simulator.FaultTypeNoPermission, driver.ErrDenied},
		{simulator.FaultTypeInvalidState, driver.ErrInvalidState},
	} {
		e.sim.Model.Service.ClearFaultRules()
		e.sim.Model.Service.ResetFaultStats()
		e.sim.Model.Service.AddFaultRule(faultRule("ReconfigVM_Task", c.ft, 0))
		oe := opError(t, e.d.Detach(e.ctx(), r), c.want, r.Name)
		if oe.Attempts != 1 || injected(e) != 1 {
			t.Errorf("fault %v: %d attempts, %d faults; want 1", c.ft, oe.Attempts, injected(e))
		}
		if oe.State == nil || !oe.State.NICConnected {
			t.Errorf("fault %v: state %+v, want the NIC still connected", c.ft, oe.State)
		}
	}
}

// ReconfigVM faults: a transient one is retried, a persistent one leaves
// the NIC where it was and says so.
func TestFaultReconfigure(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	r := replica("bind9-win", vm0)
	e.sim.Model.Service.AddFaultRule(faultRule("ReconfigVM_Task", simulator.FaultTypeGeneric, 1))
	if err := e.d.Detach(e.ctx(), r); err != nil {
		t.Fatalf("detach with one transient fault: %v", err)
	}
	if o := e.observe(r); o.NICConnected {
		t.Fatalf("not detached: %+v", o)
	}
	e.sim.Model.Service.AddFaultRule(faultRule("ReconfigVM_Task", simulator.FaultTypeResourceInUse, 0))
	oe := opError(t, e.d.Attach(e.ctx(), r), driver.ErrFailed, r.Name)
	if oe.State == nil || oe.State.NICConnected || oe.State.Power != driver.PowerOn {
		t.Fatalf("state after failed attach = %+v", oe.State)
	}
}

// A vCenter that does not answer within the call timeout is abandoned and
// the call retried: the bound holds even when vCenter hangs.
func TestCallTimeoutIsRetried(t *testing.T) {
	var hung atomic.Int32
	handler := func(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if m.Name == "ReconfigVM_Task" && hung.Add(1) == 1 {
			time.Sleep(time.Second) // longer than the call timeout; then fail, so it has no effect
			return nil, &types.SystemError{Reason: "hung"}
		}
		return nil, nil
	}
	e := newEnv(t, vcsim.Options{Handler: handler}, func(c *Config) { c.CallTimeout = 300 * time.Millisecond })
	e.start()
	r := replica("bind9-win", vm0)
	start := time.Now()
	if err := e.d.Detach(e.ctx(), r); err != nil {
		t.Fatalf("detach after a hung call: %v", err)
	}
	t.Logf("detach with one hung call took %s (call timeout 300ms)", time.Since(start))
	if got := testutil.ToFloat64(e.d.m.CallErrors.WithLabelValues(e.d.name, "ReconfigVM_Task", "timeout")); got != 1 {
		t.Fatalf("ReconfigVM_Task timeouts = %v, want 1", got)
	}
	if hung.Load() != 2 {
		t.Fatalf("%d ReconfigVM_Task calls reached vCenter, want 2", hung.Load())
	}
	if o := e.observe(r); o.NICConnected {
		t.Fatalf("not detached: %+v", o)
	}
}

// A fault inside the task (the call succeeds, the task fails) is reported
// the same way, with the state after it.
func TestTaskFault(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	r := replica("bind9-win", vm0)
	if err := e.d.PowerOff(e.ctx(), r); err != nil {
		t.Fatal(err)
	}
	host := e.observe(r).Host
	// The VM's host goes into maintenance mode: PowerOnVM_Task is accepted,
	// the task then fails with InvalidState.
	ref := types.ManagedObjectReference{Type: "HostSystem", Value: host}
	if err := e.sim.Set(e.ctx(), ref, types.PropertyChange{Name: "runtime.inMaintenanceMode", Val: true}); err != nil {
		t.Fatal(err)
	}
	calls := e.calls("PowerOnVM_Task")
	oe := opError(t, e.d.PowerOn(e.ctx(), r), driver.ErrInvalidState, r.Name)
	if e.calls("PowerOnVM_Task") != calls+1 || !strings.Contains(oe.Error(), "task powerOn failed") {
		t.Fatalf("error = %v after %d calls", oe, e.calls("PowerOnVM_Task")-calls)
	}
	if oe.State == nil || oe.State.Power != driver.PowerOff {
		t.Fatalf("state = %+v", oe.State)
	}
}

// ChangeVersion: an observation's version passed back with IfVersion makes
// a reconfigure fail once anybody changed the VM in between.
func TestIfVersionConflict(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	r := replica("bind9-win", vm0)
	old := e.observe(r)
	e.annotateByHand(vm0, "changed by someone else")
	now := e.observe(r)
	if now.ChangeVersion == old.ChangeVersion {
		t.Fatal("the simulator did not change the change version")
	}
	reconfigs := e.calls("ReconfigVM_Task")
	oe := opError(t, e.d.Detach(e.ctx(), r, driver.IfVersion(old.ChangeVersion)), driver.ErrConflict, r.Name)
	if oe.Attempts != 1 || e.calls("ReconfigVM_Task") != reconfigs || oe.State == nil || !oe.State.NICConnected {
		t.Fatalf("stale detach: %+v (reconfigure calls %d)", oe, e.calls("ReconfigVM_Task")-reconfigs)
	}
	if err := e.d.Detach(e.ctx(), r, driver.IfVersion(now.ChangeVersion)); err != nil {
		t.Fatalf("detach with the current version: %v", err)
	}
}

// The driver sends the change version it read with every reconfigure;
// where vCenter enforces it (here a handler that does what vCenter does),
// a concurrent change between read and write fails the reconfigure with
// ConcurrentAccess, which is reported as a conflict and not retried.
func TestChangeVersionEnforcedByVCenter(t *testing.T) {
	var (
		mu      sync.Mutex
		sent    []string
		sneakIn bool // change the VM between the driver's read and its write
	)
	handler := func(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if m.Name != "ReconfigVM_Task" {
			return nil, nil
		}
		req := m.Body.(*types.ReconfigVM_Task)
		vm, ok := ctx.Map.Get(m.This).(*simulator.VirtualMachine)
		if !ok {
			return nil, nil
		}
		mu.Lock()
		defer mu.Unlock()
		var current string
		ctx.WithLock(vm, func() {
			if sneakIn && req.Spec.ChangeVersion != "" {
				ctx.Map.Update(ctx, vm, []types.PropertyChange{{Name: "config.changeVersion", Val: "sneaked-in"}})
			}
			current = vm.Config.ChangeVersion
		})
		sent = append(sent, req.Spec.ChangeVersion)
		if req.Spec.ChangeVersion != "" && req.Spec.ChangeVersion != current {
			return nil, &types.ConcurrentAccess{}
		}
		return nil, nil
	}
	e := newEnv(t, vcsim.Options{Handler: handler}, nil)
	e.start()
	r := replica("bind9-win", vm0)
	read := e.observe(r).ChangeVersion
	if err := e.d.Detach(e.ctx(), r); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(sent) != 1 || sent[0] != read {
		t.Fatalf("reconfigure sent change versions %q, want [%q]", sent, read)
	}
	sneakIn, sent = true, nil
	mu.Unlock()
	oe := opError(t, e.d.Attach(e.ctx(), r), driver.ErrConflict, r.Name)
	mu.Lock()
	n := len(sent)
	mu.Unlock()
	if oe.Attempts != 1 || n != 1 {
		t.Fatalf("conflict retried: %d attempts, %d reconfigures", oe.Attempts, n)
	}
	if oe.State == nil || oe.State.NICConnected {
		t.Fatalf("state after conflict = %+v, want still detached", oe.State)
	}
}
