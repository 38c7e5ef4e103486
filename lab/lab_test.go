package lab

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/ars-project/ars/controller/vsphere"
	"github.com/ars-project/ars/fsm"
)

// The lab's control path end to end, as the controller uses it: the real
// vSphere driver changes simulator VMs, and the real DNS servers in their
// namespaces follow — attach, a make-before-break switch, a DoS (server
// wedged), a break-before-make switch, a snapshot revert that brings a
// fresh server, and a Down that leaves nothing behind.
func TestLabFollowsTheDriver(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the lab needs root (network namespaces)")
	}
	for _, bin := range []string{"named", "unbound", "kresd"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("ARS_REQUIRE_LAB") != "" {
				t.Fatalf("ARS_REQUIRE_LAB is set but %s is not installed", bin)
			}
			t.Skipf("%s is not installed (make lab-deps)", bin)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := Up(ctx, Config{Prefix: "arslt", StateDir: t.TempDir(), Replicas: []Replica{
		{Name: "bind", Impl: "bind9", OS: fsm.OSWindows},
		{Name: "unb", Impl: "unbound", OS: fsm.OSWindows},
		{Name: "knot", Impl: "knot-resolver", OS: fsm.OSLinux},
	}})
	if err != nil {
		t.Fatal(err)
	}
	downed := false
	defer func() {
		if !downed {
			_ = l.Down(context.Background())
		}
	}()

	user, pass := l.VCenterLogin()
	d, err := vsphere.New(vsphere.Config{URL: l.Sim.URL(), Username: user, Thumbprint: l.Sim.Thumbprint(),
		Password: func() (string, error) { return pass, nil }})
	if err != nil {
		t.Fatal(err)
	}
	dctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(dctx) }()
	defer func() { stop(); <-done }()
	spec := l.ServiceSpec("dns")
	rep := func(name string) fsm.ReplicaSpec { r, _ := spec.Replica(name); return r }

	client, err := l.Net.NewClient(5*time.Millisecond, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	cctx, cstop := context.WithCancel(ctx)
	defer cstop()
	go client.Run(cctx)

	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	answers := func(what string, since time.Time) {
		t.Helper()
		wctx, c := context.WithTimeout(ctx, 30*time.Second)
		defer c()
		if err := client.WaitAnswer(wctx, since, netip.Addr{}); err != nil {
			t.Fatalf("%s: no answer through the service address: %v", what, err)
		}
	}

	// The driver returns once it has seen the reconfigure task complete;
	// by then the namespace is linked (unlinked), as a real host's vNIC is.
	linked := func(name string, want bool) {
		t.Helper()
		up, err := l.Net.Attached(name)
		must("link state of "+name, err)
		if up != want {
			t.Fatalf("%s: the driver saw its reconfigure complete, link up=%t, want %t", name, up, want)
		}
	}

	t0 := time.Now()
	must("attach bind", d.Attach(ctx, rep("bind")))
	linked("bind", true)
	answers("bind attached", t0)

	// Make-before-break to unbound: the gratuitous ARP moves the client.
	t1 := time.Now()
	must("attach unb", d.Attach(ctx, rep("unb")))
	linked("unb", true)
	must("detach bind", d.Detach(ctx, rep("bind")))
	linked("bind", false)
	answers("after the switch to unbound", time.Now())
	mbb := client.Outage(t1, time.Now())
	t.Logf("make-before-break bind9 -> unbound: %s", mbb)
	if mbb.Lost > 2 {
		t.Errorf("make-before-break lost %d queries", mbb.Lost)
	}

	// DoS on unbound: wedged, nothing answers.
	must("dos", l.DoS("unb"))
	t2 := time.Now()
	wctx, c := context.WithTimeout(ctx, 10*time.Second)
	must("losses after the DoS", client.WaitLost(wctx, t2, 5))
	c()
	// Break-before-make to knot.
	t3 := time.Now()
	must("detach unb", d.Detach(ctx, rep("unb")))
	must("attach knot", d.Attach(ctx, rep("knot")))
	answers("after the switch to knot", t3)
	t.Logf("break-before-make unbound -> knot-resolver (DoS already on): %s", client.Outage(t3, time.Now()))

	// Revert unbound: a fresh, unwedged server; it answers once attached.
	must("restore unb", d.Restore(ctx, rep("unb")))
	t4 := time.Now()
	must("attach unb again", d.Attach(ctx, rep("unb")))
	must("detach knot", d.Detach(ctx, rep("knot")))
	answers("the reverted unbound", t4)

	must("down", l.Down(ctx))
	downed = true
	left, err := l.Net.Leftovers()
	must("leftovers", err)
	if !left.Empty() {
		t.Fatalf("Down left %+v", left)
	}
}
