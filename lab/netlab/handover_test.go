package netlab

import (
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// handoverPrefix names the address-handover lab of these tests: a prefix
// of its own, so that they never meet a lab of the other tests.
const handoverPrefix = "arsaddrn"

// TestAddressHandoverTopology: the addresses and names of the management
// network, and what New refuses.
func TestAddressHandoverTopology(t *testing.T) {
	l, err := New(Topology{Prefix: handoverPrefix, Replicas: []string{"w", "a", "b"}, Nodes: []string{"n1", "n2"},
		AddressHandover: []string{"b", "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if tp := l.Topology(); tp.MgmtSubnet != DefaultMgmtSubnet {
		t.Errorf("management subnet %s, want %s", tp.MgmtSubnet, DefaultMgmtSubnet)
	}
	for _, c := range []struct {
		got, want netip.Addr
	}{
		{l.MgmtAddr("b"), netip.MustParseAddr("10.254.53.21")},
		{l.MgmtAddr("a"), netip.MustParseAddr("10.254.53.22")},
		{l.MgmtAddr("w"), netip.Addr{}},
		{l.NodeMgmtAddr("n2"), netip.MustParseAddr("10.254.53.12")},
		{l.NodeMgmtAddr("n3"), netip.Addr{}},
	} {
		if c.got != c.want {
			t.Errorf("address %s, want %s", c.got, c.want)
		}
	}
	if p := l.ServicePrefix("a"); p != netip.MustParsePrefix("10.253.53.53/24") {
		t.Errorf("ServicePrefix %s", p)
	}
	// An address-handover replica never announces on attach: its link
	// holds the address only once its agent claims it.
	if m := l.attachGARP("a", GARPPacket); m != GARPNone {
		t.Errorf("attach of an address-handover replica announces (%s)", m)
	}
	if m := l.attachGARP("w", GARPPacket); m != GARPPacket {
		t.Errorf("attach of a NIC-handover replica announces with %s", m)
	}
	if mp := l.mgmtPort(999); len(handoverPrefix+"-m999") > 15 || mp != handoverPrefix+"-m999" {
		t.Errorf("management port name %q", mp)
	}
	// Without address handover, nodes have no management address.
	plain, err := New(Topology{Prefix: handoverPrefix, Replicas: []string{"a"}, Nodes: []string{"n1"}})
	if err != nil {
		t.Fatal(err)
	}
	if a := plain.NodeMgmtAddr("n1"); a.IsValid() {
		t.Errorf("node management address %s without address-handover replicas", a)
	}
	for _, bad := range []Topology{
		{Replicas: []string{"a"}, AddressHandover: []string{"x"}},
		{Replicas: []string{"a"}, AddressHandover: []string{"a", "a"}},
		{Replicas: []string{"a"}, AddressHandover: []string{"a"}, MgmtSubnet: netip.MustParsePrefix("10.253.0.0/16")},
		{Replicas: []string{"a", "b"}, AddressHandover: []string{"a", "b"}, MgmtSubnet: netip.MustParsePrefix("10.254.53.0/28")},
	} {
		bad.Prefix = handoverPrefix
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}

// TestAddressHandoverLinks: an address-handover replica's namespace has
// its service address hidden on lo and none on its service link, ARP set
// so that it never answers for the hidden address, and a management link
// that a node reaches while the service link is down. Attached, it
// answers the client only once the address is claimed on the service
// link, and no longer once it is dropped (the route to the clients goes
// with the address). A process started beside the replica survives the
// signals that stand for the VM's power. Down leaves nothing.
func TestAddressHandoverLinks(t *testing.T) {
	needLab(t)
	needDig(t)
	l, ctx := upTopology(t, Topology{Prefix: handoverPrefix, Replicas: []string{"nic", "addr"}, Nodes: []string{"n1"},
		AddressHandover: []string{"addr"}, StateDir: t.TempDir()}, 2*time.Minute)
	ipOut := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ns := l.Namespace("addr")
	if out := ipOut("-n", ns, "-4", "-o", "addr", "show", "dev", l.ServiceDev()); strings.TrimSpace(out) != "" {
		t.Errorf("the service link of an address-handover replica holds addresses: %s", out)
	}
	if out := ipOut("-n", ns, "-4", "-o", "addr", "show", "dev", "lo"); !strings.Contains(out, " 10.253.53.53/32 ") {
		t.Errorf("the service address is not hidden on lo: %s", out)
	}
	if out := ipOut("-n", l.Namespace("nic"), "-4", "-o", "addr", "show", "dev", l.ServiceDev()); !strings.Contains(out, " 10.253.53.53/24 ") {
		t.Errorf("a NIC-handover replica's service link: %s", out)
	}
	for ns, want := range map[string]string{ns: "1 2", l.Namespace("nic"): "0 0"} {
		out, err := l.execIn(ctx, ns, []string{"cat", "/proc/sys/net/ipv4/conf/all/arp_ignore", "/proc/sys/net/ipv4/conf/all/arp_announce"})
		if got := strings.Join(strings.Fields(string(out)), " "); err != nil || got != want {
			t.Errorf("%s: arp_ignore, arp_announce = %q (%v), want %s", ns, got, err, want)
		}
	}

	// The management path: a node reaches a process beside the replica
	// at its management address while the service link is down.
	mgmt := l.MgmtAddr("addr")
	beside, err := l.RunBeside("addr", dnsd(t), "-listen", netip.AddrPortFrom(mgmt, 53).String(), "-a", answer2.String())
	if err != nil {
		t.Fatal(err)
	}
	dig := func(server netip.Addr) string {
		out, _ := l.ExecNode(ctx, "n1", "dig", "+short", "+time=1", "+tries=1", "@"+server.String(), "www.lab.internal", "A")
		return strings.TrimSpace(string(out))
	}
	deadline := time.Now().Add(10 * time.Second)
	for dig(mgmt) != answer2.String() {
		if time.Now().After(deadline) {
			t.Fatalf("node n1 does not reach %s on the management network", mgmt)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The replica's own processes take the VM's signals; the one beside
	// does not.
	serve(t, l, "addr", answer1)
	if err := l.SignalReplica("addr", syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if got := dig(mgmt); got != answer2.String() {
		t.Errorf("with the replica stopped, the process beside it answers %q (state %s)", got, procState(t, beside.Pid()))
	}
	if err := l.SignalReplica("addr", syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	// Attached without the address: silent. Claimed: answered. Dropped:
	// silent again although still attached.
	c := runClient(t, l)
	if err := l.Attach(ctx, "addr"); err != nil {
		t.Fatal(err)
	}
	attached := time.Now()
	time.Sleep(400 * time.Millisecond)
	if o := c.Outage(attached, time.Now().Add(-250*time.Millisecond)); o.Sent == 0 || o.Lost != o.Sent {
		t.Errorf("attached without the address: %s; want every query lost", o)
	}
	if held, err := l.HoldsService("addr"); err != nil || held {
		t.Errorf("HoldsService before the claim = %t, %v", held, err)
	}
	if err := l.ClaimService("addr"); err != nil {
		t.Fatal(err)
	}
	claimed := time.Now()
	if err := c.WaitAnswer(within(t, 5*time.Second), claimed, answer1); err != nil {
		t.Fatalf("after the claim: %v", err)
	}
	if held, err := l.HoldsService("addr"); err != nil || !held {
		t.Errorf("HoldsService after the claim = %t, %v", held, err)
	}
	if removed, err := l.DropService("addr"); err != nil || !removed {
		t.Fatalf("DropService = %t, %v", removed, err)
	}
	if err := c.WaitLost(within(t, 5*time.Second), time.Now(), 20); err != nil {
		t.Fatalf("after the address was dropped: %v", err)
	}
	if held, err := l.HoldsService("addr"); err != nil || held {
		t.Errorf("HoldsService after the drop = %t, %v", held, err)
	}
	if _, err := l.DropService("nic"); err == nil {
		t.Error("DropService on a NIC-handover replica did not refuse")
	}
}

// procState is the state letter of /proc/PID/stat (R, S, T, …).
func procState(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	return s[i+2 : i+3]
}
