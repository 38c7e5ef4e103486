package agent

import (
	"context"
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
)

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// A -dev node leads by itself, carries the sample service, and its VM
// replicas name VMs that exist in the embedded vCenter simulator.
func TestDevAgentHasSampleServiceOnSimulatedVCenter(t *testing.T) {
	cfg := DevConfig()
	cfg.Ports.API, cfg.Ports.Raft, cfg.Ports.Gossip = freePort(t), freePort(t), freePort(t)
	a, err := Start(cfg, NewLogger(cfg, io.Discard))
	if err != nil {
		t.Fatalf("start dev agent: %v", err)
	}
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
