package lab

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/lab/netlab"
	"github.com/ars-project/ars/test/testutil"
)

// TestAddressHandoverReplicas: in an address-handover lab every Linux
// replica, VM or container, and only those, takes the address through its
// agent; the mode is checked.
func TestAddressHandoverReplicas(t *testing.T) {
	reps := []Replica{
		{Name: "bind9-win", Impl: "bind9", OS: "windows", Platform: "vm"},
		{Name: "knot-lin", Impl: "knot-resolver", OS: "linux", Platform: "vm"},
		{Name: "unbound-ctr", Impl: "unbound", OS: "linux", Platform: "container"},
		{Name: "pdns-lin", Impl: "pdns-recursor", OS: "linux", Platform: "vm"},
	}
	for _, c := range []struct {
		handover string
		nodes    []string
		want     []string
		err      bool
	}{
		{"", []string{"n1"}, nil, false},
		{HandoverNIC, []string{"n1"}, nil, false},
		{HandoverAddress, []string{"n1"}, []string{"knot-lin", "unbound-ctr", "pdns-lin"}, false},
		{HandoverAddress, nil, nil, true},
		{"agent", []string{"n1"}, nil, true},
	} {
		cfg := Config{Handover: c.handover, Nodes: c.nodes, Replicas: reps}
		err := cfg.checkHandover()
		if (err != nil) != c.err {
			t.Errorf("handover %q with %d nodes: %v", c.handover, len(c.nodes), err)
			continue
		}
		if err != nil {
			continue
		}
		if got := cfg.addressReplicas(); !slices.Equal(got, c.want) {
			t.Errorf("handover %q: address-handover replicas %v, want %v", c.handover, got, c.want)
		}
		if vms, ctrs := cfg.addressVMs(), cfg.addressContainers(); len(c.want) > 0 &&
			(!slices.Equal(vms, []string{"knot-lin", "pdns-lin"}) || !slices.Equal(ctrs, []string{"unbound-ctr"})) {
			t.Errorf("handover %q: VMs %v and containers %v", c.handover, vms, ctrs)
		}
		if c.handover == "" && cfg.Handover != HandoverNIC {
			t.Errorf("handover \"\" became %q, want %s", cfg.Handover, HandoverNIC)
		}
	}
}

// TestAddressHandoverGuestServes measures the lab's guest networking for
// address handover with every implementation installed here: a linked
// replica whose agent has not claimed the address answers nothing (the
// address hidden on lo is never announced), and once the address is
// claimed on its service link the first query the client sends is
// answered — the server was bound to it all along. After the address is
// dropped again it answers nothing although still linked.
func TestAddressHandoverGuestServes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	var impls []string
	for _, impl := range []string{"bind9", "unbound", "knot-resolver", "pdns-recursor"} {
		if _, err := exec.LookPath(Implementations[impl]); err != nil {
			if os.Getenv("ARS_REQUIRE_LAB") != "" {
				t.Fatalf("ARS_REQUIRE_LAB is set but %s is not installed", Implementations[impl])
			}
			t.Logf("%s is not installed: skipped", Implementations[impl])
			continue
		}
		impls = append(impls, impl)
	}
	if len(impls) == 0 {
		t.Skip("no DNS server installed (make lab-deps)")
	}
	dir, err := os.MkdirTemp("", "arsaddrg") // short: pdns_recursor's socket path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	nl, err := netlab.New(netlab.Topology{Prefix: "arsaddrg", StateDir: dir, Replicas: impls, AddressHandover: impls})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := nl.Up(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nl.Down(context.Background()); err != nil {
			t.Errorf("down: %v", err)
		}
		if left, err := nl.Leftovers(); err != nil || !left.Empty() {
			t.Errorf("left over: %s (%v)", left, err)
		}
	})
	tp := nl.Topology()
	for _, impl := range impls {
		argv, err := Prepare(ServerSpec{Impl: impl, Dir: filepath.Join(dir, "replicas", impl), Addr: tp.Service, Subnet: tp.Subnet})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nl.Run(impl, argv...); err != nil {
			t.Fatal(err)
		}
	}
	// Each answers inside its namespace before anything is linked.
	for _, impl := range impls {
		deadline := time.Now().Add(30 * time.Second)
		for netlab.AnswersIn(filepath.Join("/run/netns", nl.Namespace(impl)), tp.Service, 200*time.Millisecond) != nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s does not answer on the hidden address", impl)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	c, err := nl.NewClient(time.Millisecond, 250*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); c.Run(cctx) }()
	t.Cleanup(func() { ccancel(); <-done; c.Close() })
	// settled waits until the queries sent up to t have their fate known.
	settled := func(t0 time.Time) { time.Sleep(time.Until(t0.Add(260 * time.Millisecond))) }
	for _, impl := range impls {
		// The client forgets who had the address: its next query asks
		// everyone (a broadcast ARP request).
		testutil.IP(t, "-n", nl.ClientNamespace(), "neigh", "flush", "to", tp.Service.String())
		if err := nl.Attach(ctx, impl); err != nil {
			t.Fatal(err)
		}
		linked := time.Now()
		// Long enough for queries that no late answer can save: a query
		// the client's kernel held while it asked for the address's
		// owner is sent once the claim's announcement names one, and is
		// answered within its timeout.
		time.Sleep(600 * time.Millisecond)
		// Nobody answered the client's ARP requests for the address: not
		// the linked replica, which does not hold it, nor any replica's
		// management link on the same bridge (the address is on lo in
		// every such namespace). A client that took one of their MACs
		// would send it every query until the entry went stale, whoever
		// held the address by then.
		if out := testutil.IP(t, "-n", nl.ClientNamespace(), "neigh", "show", "to", tp.Service.String()); strings.Contains(out, "lladdr") {
			t.Errorf("linked before its claim (%s, %s), someone answered ARP for the address: %s", impl, linkMAC(t, nl.Namespace(impl), nl.ServiceDev()), out)
		}
		// Only the claim's end is known: queries sent during the claim
		// may meet the address or not.
		if err := nl.ClaimService(impl); err != nil {
			t.Fatal(err)
		}
		claimed := time.Now()
		settled(claimed.Add(50 * time.Millisecond))
		rs := c.Results()
		var first *netlab.Result
		for i := range rs {
			if rs[i].Sent.After(claimed) {
				first = &rs[i]
				break
			}
		}
		if first == nil {
			t.Fatalf("%s: the client sent nothing after the claim (results %d)", impl, len(rs))
		}
		if o := c.Outage(linked, claimed.Add(-300*time.Millisecond)); o.Sent == 0 || o.Lost != o.Sent {
			t.Errorf("%s: linked without the address: %s; want every query lost", impl, o)
		}

		if !first.OK() {
			t.Errorf("%s: the first query after the claim (sent %s after it) was not answered", impl, first.Sent.Sub(claimed))
		} else {
			t.Logf("%s: first query after the claim answered in %s", impl, first.RTT)
		}
		if _, err := nl.DropService(impl); err != nil {
			t.Fatal(err)
		}
		dropped := time.Now()
		settled(dropped.Add(150 * time.Millisecond))
		if o := c.Outage(dropped.Add(20*time.Millisecond), dropped.Add(150*time.Millisecond)); o.Sent == 0 || o.Lost != o.Sent {
			t.Errorf("%s: linked after the address was dropped: %s; want every query lost", impl, o)
		}
		if err := nl.Detach(ctx, impl); err != nil {
			t.Fatal(err)
		}
	}
}

// linkMAC is the MAC address of dev in the namespace ns.
func linkMAC(t *testing.T, ns, dev string) string {
	t.Helper()
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(testutil.IP(t, "-n", ns, "-j", "link", "show", "dev", dev)), &links); err != nil || len(links) != 1 || links[0].Address == "" {
		t.Fatalf("MAC of %s in %s: %v (%d links)", dev, ns, err, len(links))
	}
	return links[0].Address
}
