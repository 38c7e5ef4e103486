package agent

import (
	"context"
	"io"
	"net"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"

	"github.com/ars-project/ars/fsm"
)

// freePorts returns three distinct free ports: its listeners stay open
// until all are found, so the kernel cannot give one port twice.
func freePorts(t *testing.T) (api, raft, gossip int) {
	var ports []int
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports[0], ports[1], ports[2]
}

// startOnFreePorts starts an agent on ports picked just before. Another
// process may take a picked port before the agent binds it; then it picks
// again (bounded).
func startOnFreePorts(t *testing.T, cfg *Config, w io.Writer) *Agent {
	t.Helper()
	for attempt := 1; ; attempt++ {
		cfg.Ports.API, cfg.Ports.Raft, cfg.Ports.Gossip = freePorts(t)
		a, err := Start(cfg, NewLogger(cfg, w))
		if err == nil {
			return a
		}
		if !strings.Contains(err.Error(), "address already in use") || attempt == 5 {
			t.Fatalf("start agent: %v", err)
		}
	}
}

// A -dev node leads by itself, carries the sample service, and its VM
// replicas name VMs that exist in the embedded vCenter simulator.
func TestDevAgentHasSampleServiceOnSimulatedVCenter(t *testing.T) {
	a := startOnFreePorts(t, DevConfig(), io.Discard)
	defer a.Shutdown()

	svc, ok := a.Cluster.Service("dns")
	if !ok {
		t.Fatal("dev node has no sample service")
	}
	if active, ok := svc.Active(); !ok || active.Name != "bind9-win" {
		t.Fatalf("active = %+v", active)
	}

	u, err := url.Parse(a.vc.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("dev", "dev")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		t.Fatalf("log in to the simulator at %s: %v", a.vc.URL(), err)
	}
	defer c.Logout(ctx)
	finder := find.NewFinder(c.Client, true)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	finder.SetDatacenter(dc)
	for _, r := range svc.Spec.Replicas {
		if r.Platform != "vm" {
			continue
		}
		if _, err := finder.VirtualMachine(ctx, r.VM); err != nil {
			t.Errorf("replica %s names VM %q, not in the simulator: %v", r.Name, r.VM, err)
		}
	}
}

// In -dev the whole leader loop runs against the embedded simulator: an
// exploit alert on the active replica is decided, the switch is driven
// through the vSphere driver (NIC attach/detach on simulator VMs) and
// completes, and the attacked VM is reverted and parked.
func TestDevAgentSwitchesOnExploitAlert(t *testing.T) {
	a := startOnFreePorts(t, DevConfig(), io.Discard)
	defer a.Shutdown()

	cmd, err := fsm.Encode(0, fsm.Alert{ID: "t-1", Service: "dns", Replica: "bind9-win", Kind: fsm.KindExploit, Source: "test", At: time.Now().UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.Cluster.Apply(ctx, cmd); err != nil {
		t.Fatalf("commit alert: %v", err)
	}
	var svc fsm.Service
	for {
		svc, _ = a.Cluster.Service("dns")
		if n := len(svc.History); n > 0 && svc.History[n-1].Done {
			if r, _ := svc.Replica("bind9-win"); r.Role == fsm.RoleSuspended && r.Clean {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("switch not completed: %+v", svc)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rec := svc.History[len(svc.History)-1]
	if rec.From != "bind9-win" || rec.Reason != fsm.ReasonExploit || rec.ToImpl == "bind9" {
		t.Fatalf("switch %+v: want away from bind9-win to another impl", rec)
	}
	active, _ := svc.Active()
	if active.Name != rec.To {
		t.Fatalf("active %s, switched to %s", active.Name, rec.To)
	}
}

// Shutdown without a leave stops every goroutine the agent started: after
// the first start and stop (which starts the libraries' one-time
// goroutines), each further cycle returns to the same count. A goroutine
// left waiting per agent (one used to wait on Cluster.Left, closed only by
// Leave) grows the count by one each cycle.
func TestShutdownLeavesNoGoroutine(t *testing.T) {
	cycle := func() {
		a := startOnFreePorts(t, DevConfig(), io.Discard)
		if err := a.Shutdown(); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	}
	// settled polls until the goroutine count is at most limit, and returns
	// the last count seen.
	settled := func(limit int) int {
		n := runtime.NumGoroutine()
		for deadline := time.Now().Add(10 * time.Second); n > limit && time.Now().Before(deadline); n = runtime.NumGoroutine() {
			time.Sleep(20 * time.Millisecond)
		}
		return n
	}
	cycle()
	// The count once it has not changed for a second (bounded).
	base := runtime.NumGoroutine()
	for still, deadline := time.Now(), time.Now().Add(10*time.Second); time.Since(still) < time.Second && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		if n := runtime.NumGoroutine(); n != base {
			base, still = n, time.Now()
		}
	}
	for i := 0; i < 3; i++ {
		cycle()
		if n := settled(base); n > base {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("cycle %d: %d goroutines after Shutdown, %d after the first cycle:\n%s", i+2, n, base, buf)
		}
	}
}
