package vsphere

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
	arstest "github.com/ars-project/ars/test/testutil"
	"github.com/ars-project/ars/vcsim"
)

// VMs of the simulator's VPX inventory.
const (
	vm0 = "DC0_C0_RP0_VM0"
	vm1 = "DC0_C0_RP0_VM1"
)

// env is a simulator plus a driver on it.
type env struct {
	t      *testing.T
	sim    *vcsim.Sim
	d      *Driver
	cfg    Config
	logs   *arstest.SyncBuffer
	cancel context.CancelFunc
	done   chan error
}

// newEnv starts a simulator and creates (but does not run) a driver that
// verifies the simulator's certificate by thumbprint.
func newEnv(t *testing.T, opts vcsim.Options, mod func(*Config)) *env {
	t.Helper()
	sim, err := vcsim.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	e := &env{t: t, sim: sim, logs: &arstest.SyncBuffer{}}
	pass := opts.Password
	if pass == "" {
		pass = "any-password"
	}
	user := opts.Username
	if user == "" {
		user = "ars"
	}
	e.cfg = Config{
		URL:         sim.URL(),
		Username:    user,
		Password:    func() (string, error) { return pass, nil },
		Thumbprint:  sim.Thumbprint(),
		CallTimeout: 2 * time.Second,
		KeepAlive:   time.Hour,
		Logger:      slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:     NewMetrics(prometheus.NewRegistry()),
	}
	if mod != nil {
		mod(&e.cfg)
	}
	d, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("driver log:\n%s", e.logs.String())
		}
	})
	return e
}

// start runs the driver (a leadership term) and waits until it is usable.
func (e *env) start() {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.done = make(chan error, 1)
	go func() { e.done <- e.d.Run(ctx) }()
	if e.cfg.PerOperationLogin {
		eventually(e.t, 5*time.Second, "driver running", func() bool {
			e.d.mu.Lock()
			defer e.d.mu.Unlock()
			return e.d.run != nil
		})
		return
	}
	eventually(e.t, 10*time.Second, "one live session", func() bool {
		return e.live() == 1 && e.sessions() == 1
	})
}

// stop ends the term and returns Run's result.
func (e *env) stop() error {
	if e.cancel == nil {
		return nil
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		return err
	case <-time.After(20 * time.Second):
		e.t.Errorf("Run did not return after its context ended")
		return errors.New("Run did not return")
	}
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// sessions is the simulator's count of live sessions.
func (e *env) sessions() int { return e.sim.SessionCount(context.Background()) }

func (e *env) live() float64 {
	return testutil.ToFloat64(e.d.m.SessionsLive.WithLabelValues(e.d.name))
}

func (e *env) relogins() float64 {
	return testutil.ToFloat64(e.d.m.Relogins.WithLabelValues(e.d.name))
}

func (e *env) logins(kind string) float64 {
	return testutil.ToFloat64(e.d.m.Logins.WithLabelValues(e.d.name, kind))
}

// calls is how many round trips of a SOAP method the driver made.
func (e *env) calls(method string) uint64 {
	e.t.Helper()
	var m dto.Metric
	if err := e.d.m.Calls.WithLabelValues(e.d.name, method).(prometheus.Metric).Write(&m); err != nil {
		e.t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// observe must succeed.
func (e *env) observe(r fsm.ReplicaSpec) driver.Observation {
	e.t.Helper()
	obs, err := e.d.Observe(e.ctx(), r)
	if err != nil {
		e.t.Fatalf("Observe(%s): %v", r.Name, err)
	}
	return obs
}

// powerOffByHand powers a VM off behind the driver's back.
func (e *env) powerOffByHand(vm string) {
	e.t.Helper()
	v, err := e.sim.VM(e.ctx(), vm)
	if err != nil {
		e.t.Fatal(err)
	}
	task, err := v.PowerOff(e.ctx())
	if err == nil {
		err = task.Wait(e.ctx())
	}
	if err != nil {
		e.t.Fatalf("power off %s by hand: %v", vm, err)
	}
}

// annotateByHand changes a VM's configuration (and so its change version).
func (e *env) annotateByHand(vm, note string) {
	e.t.Helper()
	v, err := e.sim.VM(e.ctx(), vm)
	if err != nil {
		e.t.Fatal(err)
	}
	task, err := v.Reconfigure(e.ctx(), types.VirtualMachineConfigSpec{Annotation: note})
	if err == nil {
		err = task.Wait(e.ctx())
	}
	if err != nil {
		e.t.Fatalf("reconfigure %s by hand: %v", vm, err)
	}
}

func replica(name, vm string) fsm.ReplicaSpec {
	return fsm.ReplicaSpec{Name: name, Impl: "bind9", OS: fsm.OSWindows, Platform: fsm.PlatformVM, VM: vm, NIC: "ethernet-0", Snapshot: "clean"}
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// opError asserts err is an *controller.OpError wrapping want and naming
// the replica.
func opError(t *testing.T, err error, want error, replica string) *driver.OpError {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	var oe *driver.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("error %v (%T) is not an *OpError", err, err)
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %q does not wrap %q", err, want)
	}
	if oe.Replica != replica || !bytes.Contains([]byte(err.Error()), []byte(replica)) {
		t.Fatalf("error %q does not name replica %q", err, replica)
	}
	return oe
}

// nextEvent waits for an event that satisfies match.
func nextEvent(t *testing.T, ch <-chan driver.Event, timeout time.Duration, what string, match func(driver.Event) bool) driver.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("watch channel closed while waiting for %s", what)
			}
			if match(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no event within %s: %s", timeout, what)
		}
	}
}

func testLogger(w *arstest.SyncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
