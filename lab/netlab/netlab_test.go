package netlab

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testPrefix names what these tests create; they run one after another
// (no t.Parallel), each bringing its lab down.
const testPrefix = "arsnlt"

var (
	answer1 = netip.MustParseAddr("192.0.2.11")
	answer2 = netip.MustParseAddr("192.0.2.12")
)

// needLab skips unless the test can create namespaces.
func needLab(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netlab tests need root (network namespaces); CI runs them as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netlab tests need ip(8) from iproute2")
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Skipf("ip netns unavailable: %v: %s", err, out)
	}
	// Root without the capabilities (a restricted container) cannot add
	// namespaces: find out with a throw-away one.
	probe := testPrefix + "-probe"
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespaces here: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "netns", "del", probe).CombinedOutput(); err != nil {
		t.Fatalf("removing the probe namespace %s: %v: %s", probe, err, out)
	}
}

var (
	dnsdOnce sync.Once
	dnsdPath string
	dnsdErr  error
	dnsdDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if dnsdDir != "" {
		os.RemoveAll(dnsdDir)
	}
	os.Exit(code)
}

// dnsd builds test/dnsd statically, once per test binary.
func dnsd(t *testing.T) string {
	t.Helper()
	dnsdOnce.Do(func() {
		dnsdDir, dnsdErr = os.MkdirTemp("", "netlab-dnsd-")
		if dnsdErr != nil {
			return
		}
		dnsdPath = filepath.Join(dnsdDir, "dnsd")
		cmd := exec.Command("go", "build", "-o", dnsdPath, "github.com/ars-project/ars/test/dnsd")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			dnsdErr = err
			dnsdPath = string(out)
		}
	})
	if dnsdErr != nil {
		t.Fatalf("building test/dnsd: %v: %s", dnsdErr, dnsdPath)
	}
	return dnsdPath
}

// upLab brings a lab up and registers its teardown with a clean-down check.
func upLab(t *testing.T, replicas ...string) *Lab {
	t.Helper()
	l, err := New(Topology{Prefix: testPrefix, Replicas: replicas, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("lab up with %d replicas in %s", len(replicas), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := l.Down(ctx); err != nil {
			t.Errorf("down: %v", err)
		}
		assertClean(t, l)
	})
	return l
}

func assertClean(t *testing.T, l *Lab) {
	t.Helper()
	o, err := l.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if !o.Empty() {
		t.Errorf("left over after down: %s", o)
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, l.t.Prefix+"-") {
			t.Errorf("ip netns list still shows %q", line)
		}
	}
}

// serve starts dnsd answering addr in the replica and waits until it
// listens.
func serve(t *testing.T, l *Lab, replica string, addr netip.Addr) *Proc {
	t.Helper()
	p, err := l.Run(replica, dnsd(t), "-listen", netip.AddrPortFrom(l.t.Service, 53).String(), "-a", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(p.LogPath())
		if strings.Contains(string(b), "dnsd: serving") {
			return p
		}
		select {
		case <-p.Done():
			t.Fatalf("dnsd in %s exited: %v: %s", replica, p.Err(), b)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsd in %s not serving after 10 s: %s", replica, b)
		}
	}
}

// runClient starts a client querying every 5 ms until the test ends.
func runClient(t *testing.T, l *Lab) *Client {
	t.Helper()
	c, err := l.NewClient(5*time.Millisecond, 250*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; c.Close() })
	return c
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestTopologyDefaults(t *testing.T) {
	l, err := New(Topology{Replicas: []string{"bind1", "unbound1"}})
	if err != nil {
		t.Fatal(err)
	}
	tp := l.Topology()
	if tp.Prefix != "arslab" || tp.Subnet != DefaultSubnet || tp.Service != DefaultService || tp.Client != DefaultClient || tp.StateDir != "/run/arslab" {
		t.Errorf("defaults: %+v", tp)
	}
	if got := l.Namespace("bind1"); got != "arslab-r-bind1" {
		t.Errorf("namespace %q", got)
	}
	if p, _ := l.replicaPort("unbound1"); len(p) > 15 {
		t.Errorf("port name %q longer than IFNAMSIZ-1", p)
	}
	for _, bad := range []Topology{
		{Replicas: nil},
		{Prefix: "Bad", Replicas: []string{"a"}},
		{Prefix: "waytoolongprefix", Replicas: []string{"a"}},
		{Replicas: []string{"a", "a"}},
		{Replicas: []string{"a/b"}},
		{Replicas: []string{"a"}, Service: netip.MustParseAddr("10.0.0.1")},
		{Replicas: []string{"a"}, Client: DefaultService},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}

// TestAttachSwitch: the client gets the attached replica's answer, and a
// switch in either order reaches the other replica; the loss of each
// switch is measured at 5 ms resolution for every announcement mode.
func TestAttachSwitch(t *testing.T) {
	needLab(t)
	l := upLab(t, "r1", "r2")
	serve(t, l, "r1", answer1)
	serve(t, l, "r2", answer2)
	// NETLAB_TCPDUMP=FILE records the client's link (needs tcpdump).
	if f := os.Getenv("NETLAB_TCPDUMP"); f != "" {
		if _, err := l.RunClient("tcpdump", "-i", l.ClientDev(), "-n", "-e", "-tt", "-w", f); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // let tcpdump open its capture; diagnostics only
	}
	c := runClient(t, l)
	ctx := within(t, 4*time.Minute)

	if err := l.Attach(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitAnswer(within(t, 5*time.Second), time.Now(), answer1); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"r1", "r2"} {
		up, err := l.Attached(r)
		if err != nil || up != (r == "r1") {
			t.Fatalf("Attached(%s) = %t, %v", r, up, err)
		}
	}
	cur := "r1"
	answers := map[string]netip.Addr{"r1": answer1, "r2": answer2}
	// switchOnce moves the service from cur to the other replica and
	// returns what the client saw from just before the switch to at least
	// 500 ms after it.
	switchOnce := func(mode GARPMode, mbb bool) Outage {
		t.Helper()
		next := map[string]string{"r1": "r2", "r2": "r1"}[cur]
		order := "break-before-make"
		if mbb {
			order = "make-before-break"
		}
		// Steady state first: the current replica answers.
		if err := c.WaitAnswer(within(t, 5*time.Second), time.Now(), answers[cur]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // a stretch of steady state in the window measured
		from := time.Now()
		var att, det time.Duration
		attach := func() {
			s := time.Now()
			if err := l.AttachWith(ctx, next, mode); err != nil {
				t.Fatal(err)
			}
			att = time.Since(s)
		}
		detach := func() {
			s := time.Now()
			if err := l.Detach(ctx, cur); err != nil {
				t.Fatal(err)
			}
			det = time.Since(s)
		}
		if mbb {
			attach()
			detach()
		} else {
			detach()
			attach()
		}
		switched := time.Now()
		// Without an announcement the client may keep the old MAC until
		// its neighbour entry expires: allow for that.
		if err := c.WaitAnswer(within(t, 90*time.Second), switched, answers[next]); err != nil {
			t.Fatalf("%s %s: %v", mode, order, err)
		}
		end := time.Now().Add(50 * time.Millisecond)
		if min := switched.Add(500 * time.Millisecond); end.Before(min) {
			end = min
		}
		// Wait until every query of the window has its fate (timeout 250 ms).
		time.Sleep(time.Until(end.Add(300 * time.Millisecond)))
		o := c.Outage(from, end)
		t.Logf("switch %s→%s GARP=%s %s: attach %s, detach %s; %s",
			cur, next, mode, order, att.Round(time.Microsecond), det.Round(time.Microsecond), o)
		if o.Answers[answers[next]] == 0 {
			t.Errorf("no answer from %s after the switch", next)
		}
		cur = next
		return o
	}

	// The default announcement, several times in both orders: make-before-
	// break loses nothing, break-before-make at most the few queries sent
	// while neither replica was attached.
	for range 3 {
		if o := switchOnce(GARPPacket, true); o.Lost > 2 {
			t.Errorf("GARP=packet make-before-break lost %d queries (longest gap %s); want at most 2", o.Lost, o.Longest)
		}
		if o := switchOnce(GARPPacket, false); o.Longest > 200*time.Millisecond {
			t.Errorf("GARP=packet break-before-make: longest gap %s; want < 200 ms", o.Longest)
		}
	}
	// arping(8), for comparison (measured, not asserted: see DESIGN.md).
	if _, err := exec.LookPath("arping"); err == nil {
		switchOnce(GARPArping, true)
		switchOnce(GARPArping, false)
	} else {
		t.Log("arping not installed (iputils-arping): its mode is not measured")
	}
	// No announcement: the client keeps sending to the old replica's MAC
	// until its neighbour entry goes stale and is probed again, tens of
	// seconds at worst.
	if testing.Short() {
		t.Log("-short: the switch without gratuitous ARP (up to a minute) is not measured")
		return
	}
	if o := switchOnce(GARPNone, true); o.Longest < 500*time.Millisecond {
		t.Logf("note: without gratuitous ARP the switch cost only %s this time", o.Longest)
	}
}

// TestStopCont: SIGSTOP of the attached replica's server makes queries
// fail, SIGCONT makes them succeed again; the same through SignalReplica.
func TestStopCont(t *testing.T) {
	needLab(t)
	l := upLab(t, "r1")
	p := serve(t, l, "r1", answer1)
	c := runClient(t, l)
	if err := l.Attach(within(t, 10*time.Second), "r1"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitAnswer(within(t, 5*time.Second), time.Now(), answer1); err != nil {
		t.Fatal(err)
	}
	for _, via := range []string{"Proc", "SignalReplica"} {
		stop, cont := p.Stop, p.Cont
		if via == "SignalReplica" {
			stop = func() error { return l.SignalReplica("r1", syscall.SIGSTOP) }
			cont = func() error { return l.SignalReplica("r1", syscall.SIGCONT) }
		}
		s := time.Now()
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitLost(within(t, 5*time.Second), s, 20); err != nil {
			t.Fatalf("%s: after SIGSTOP: %v", via, err)
		}
		s = time.Now()
		if err := cont(); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitAnswer(within(t, 5*time.Second), s, answer1); err != nil {
			t.Fatalf("%s: after SIGCONT: %v", via, err)
		}
		t.Logf("%s: stopped replica lost queries, resumed one answers again in %s", via, time.Since(s).Round(time.Millisecond))
	}
	// Powered off: queries fail and the process is gone.
	s := time.Now()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLost(within(t, 5*time.Second), s, 20); err != nil {
		t.Fatalf("after kill: %v", err)
	}
	if pids, _ := l.ReplicaPids("r1"); len(pids) != 0 {
		t.Errorf("processes in r1 after kill: %v", pids)
	}
	// Detached: no answer even from a running server.
	serve(t, l, "r1", answer1)
	if err := c.WaitAnswer(within(t, 5*time.Second), time.Now(), answer1); err != nil {
		t.Fatal(err)
	}
	if err := l.Detach(within(t, 10*time.Second), "r1"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitLost(within(t, 5*time.Second), time.Now(), 20); err != nil {
		t.Fatalf("after detach: %v", err)
	}
	if up, err := l.Attached("r1"); err != nil || up {
		t.Errorf("Attached after Detach = %t, %v", up, err)
	}
}

// TestDownClean: Down removes every namespace, link and process (stopped
// ones and ones started in the client namespace too), and again is a no-op.
func TestDownClean(t *testing.T) {
	needLab(t)
	l, err := New(Topology{Prefix: testPrefix, Replicas: []string{"r1", "r2"}, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := within(t, time.Minute)
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	p1 := serve(t, l, "r1", answer1)
	serve(t, l, "r2", answer2)
	if err := p1.Stop(); err != nil {
		t.Fatal(err)
	}
	sl, err := l.RunClient("sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Attach(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	if out, err := l.Exec(ctx, "ip", "-4", "-o", "addr", "show", "dev", l.ClientDev()); err != nil || !strings.Contains(string(out), l.t.Client.String()) {
		t.Errorf("Exec in client namespace: %v: %s", err, out)
	}
	if out, err := l.Exec(ctx, "ip", "route", "show", "default"); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("client namespace has a default route (or ip failed: %v): %q", err, out)
	}
	o, err := l.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Namespaces) != 4 || len(o.Pids) != 3 || len(o.Links) != 0 {
		t.Errorf("while up: %s; want 4 namespaces, 3 processes, no host link", o)
	}
	s := time.Now()
	if err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("down in %s", time.Since(s).Round(time.Millisecond))
	assertClean(t, l)
	select {
	case <-sl.Done():
	default:
		t.Error("client process not reaped")
	}
	if err := l.Down(ctx); err != nil {
		t.Errorf("second down: %v", err)
	}
	assertClean(t, l)
}

// TestUpAfterCrash: a lab whose controller died left namespaces and
// processes behind — one of them in a namespace whose name was already
// removed. Up of a new Lab with the same prefix and state dir kills and
// removes all of it first, then works.
func TestUpAfterCrash(t *testing.T) {
	needLab(t)
	dir := t.TempDir()
	topo := Topology{Prefix: testPrefix, Replicas: []string{"r1", "r2"}, StateDir: dir}
	old, err := New(topo)
	if err != nil {
		t.Fatal(err)
	}
	ctx := within(t, 2*time.Minute)
	if err := old.Up(ctx); err != nil {
		t.Fatal(err)
	}
	p1 := serve(t, old, "r1", answer1)
	p2 := serve(t, old, "r2", answer2)
	if err := old.Attach(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	// Half a teardown: r2's name is gone but its server keeps the
	// namespace alive.
	if _, err := ip(ctx, "netns", "del", old.Namespace("r2")); err != nil {
		t.Fatal(err)
	}
	// "Crash": the old Lab is forgotten without Down.
	l, err := New(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(within(t, time.Minute)); err != nil {
			t.Errorf("down: %v", err)
		}
		assertClean(t, l)
	})
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*Proc{p1, p2} {
		select {
		case <-p.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("process %d of the crashed lab still running", p.Pid())
		}
	}
	for _, r := range []string{"r1", "r2"} {
		if up, err := l.Attached(r); err != nil || up {
			t.Errorf("after Up, Attached(%s) = %t, %v; want detached", r, up, err)
		}
	}
	serve(t, l, "r2", answer2)
	c := runClient(t, l)
	if err := l.Attach(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitAnswer(within(t, 5*time.Second), time.Now(), answer2); err != nil {
		t.Fatal(err)
	}
}

// upTwoNodes brings up a lab of one replica (r1) and two nodes (n1, n2)
// that queries between them with dig can test, and takes it down (and
// checks that nothing is left) when the test ends.
func upTwoNodes(t *testing.T) (*Lab, context.Context) {
	t.Helper()
	needLab(t)
	needDig(t)
	return upTopology(t, Topology{Prefix: testPrefix, Replicas: []string{"r1"}, Nodes: []string{"n1", "n2"}, StateDir: t.TempDir()}, time.Minute)
}

// needDig skips (or fails, where ARS_REQUIRE_LAB says it must be there)
// without dig.
func needDig(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("dig"); err != nil {
		if os.Getenv("ARS_REQUIRE_LAB") != "" {
			t.Fatal("ARS_REQUIRE_LAB is set but dig (dnsutils) is not installed")
		}
		t.Skip("needs dig (make lab-deps)")
	}
}

// upTopology brings up a lab of topo within limit and takes it down (and
// checks that nothing is left) when the test ends; the context is the
// test's, bounded by limit.
func upTopology(t *testing.T, topo Topology, limit time.Duration) (*Lab, context.Context) {
	t.Helper()
	l, err := New(topo)
	if err != nil {
		t.Fatal(err)
	}
	ctx := within(t, limit)
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("down: %v", err)
		}
		assertClean(t, l)
	})
	return l, ctx
}

// Controller nodes on the service network reach the attached replica
// through the service address, and each other through their own
// addresses; Down removes their namespaces too.
func TestNodesReachServiceAndEachOther(t *testing.T) {
	l, ctx := upTwoNodes(t)
	if got := l.NodeAddr("n2"); got != netip.MustParseAddr("10.253.53.12") {
		t.Fatalf("NodeAddr(n2) = %s", got)
	}
	serve(t, l, "r1", answer1)
	if err := l.Attach(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	// n2 serves on its own address, as an agent's API would.
	p, err := l.RunNode("n2", dnsd(t), "-listen", netip.AddrPortFrom(l.NodeAddr("n2"), 53).String(), "-a", answer2.String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Kill() }()
	dig := func(server netip.Addr, want netip.Addr) {
		t.Helper()
		var out []byte
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			out, _ = l.ExecNode(ctx, "n1", "dig", "+short", "+time=1", "+tries=1", "@"+server.String(), "www.lab.internal", "A")
			if strings.TrimSpace(string(out)) == want.String() {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("from n1, @%s: %q, want %s", server, out, want)
	}
	dig(l.t.Service, answer1)
	dig(l.NodeAddr("n2"), answer2)
	if _, err := New(Topology{Prefix: testPrefix, Replicas: []string{"r1"}, Nodes: []string{"n1", "n1"}}); err == nil {
		t.Fatal("a node named twice was accepted")
	}
}

// TestDockerLink: Topology.Docker adds the one host-side link, inert for
// the host (no IPv4 address, IPv6 off, never answers ARP) and a port of
// the lab bridge; a lab of containers only needs no replica namespace;
// Down removes the link.
func TestDockerLink(t *testing.T) {
	if _, err := New(Topology{Prefix: testPrefix}); err == nil {
		t.Error("a topology with no replicas and no Docker link was accepted")
	}
	needLab(t)
	l, err := New(Topology{Prefix: testPrefix, Docker: true, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := within(t, time.Minute)
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	dev := l.DockerParent()
	if dev != testPrefix+"-dk" {
		t.Fatalf("DockerParent %q", dev)
	}
	o, err := l.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Links, []string{dev}) {
		t.Errorf("host links while up: %v; want only %s", o.Links, dev)
	}
	if out, err := exec.Command("ip", "-o", "addr", "show", "dev", dev).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("%s has addresses (or ip failed: %v): %q", dev, err, out)
	}
	for path, want := range map[string]string{
		"/proc/sys/net/ipv6/conf/" + dev + "/disable_ipv6": "1",
		"/proc/sys/net/ipv4/conf/" + dev + "/arp_ignore":   "8",
	} {
		if b, err := os.ReadFile(path); err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s = %q (%v); want %s", path, b, err, want)
		}
	}
	out, err := exec.Command("ip", "-n", l.hubNS(), "-o", "link", "show", "master", l.bridge()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), l.dockerPort()+"@") {
		t.Errorf("%s is not a port of %s: %v: %s", l.dockerPort(), l.bridge(), err, out)
	}
	if err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	assertClean(t, l)
}
