package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/moby/moby/client"
	"github.com/vishvananda/netlink"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
)

// TestLabImages runs every lab image that `make images` built through the
// driver (power-on, attach) and checks that its server answers
// www.lab.internal. A 192.0.2.10 on the service address. Images that are
// not built are skipped: `make test` does not build them (it takes
// minutes); run `make images` first to include them.
func TestLabImages(t *testing.T) {
	e := testEnv(t)
	d, cnt := newDriver(t, e, "", nil)
	ctx := ctxT(t)
	for _, impl := range []string{"bind9", "unbound", "knot-resolver", "pdns-recursor"} {
		t.Run(impl, func(t *testing.T) {
			image := "ars-lab/" + impl + ":latest"
			if _, err := e.cli.ImageInspect(ctx, image); err != nil {
				t.Skipf("%s is not built (run `make images`): %v", image, err)
			}
			r := e.replica(t, "")
			r.Impl, r.Image = impl, image
			r.Container = &fsm.ContainerSpec{Network: e.svcNet, MemoryMB: 256}
			mustOp(t, cnt, "power-on", -1, func() error { return d.PowerOn(ctx, r) })
			mustOp(t, cnt, "attach", attachCalls(d), func() error { return d.Attach(ctx, r, driver.ServiceAddr(e.svcAddr)) })
			took := waitAnswer(t, e.svcAddr, "192.0.2.10", 20*time.Second)
			t.Logf("%s answered %s after attach", impl, took)
			if helperMode(d) {
				// A switch to a running standby: its helper armed with the
				// service's address and port (PowerOn), then the connect.
				// The address is announced only once the server listens
				// on it, so the very first query after Attach is answered
				// (BIND 9 binds each new address itself, a few ms after it
				// appears; a query in between got a port unreachable).
				svc := driver.ServiceAddrPort(netip.AddrPortFrom(e.svcAddr, 53))
				// A fresh start (its server has never seen the address),
				// serving on its own addresses before the switch.
				mustOp(t, cnt, "detach", 1, func() error { return d.Detach(ctx, r) })
				mustOp(t, cnt, "power-off", 1, func() error { return d.PowerOff(ctx, r) })
				mustOp(t, cnt, "power-on (arms the helper)", -1, func() error { return d.PowerOn(ctx, r, svc) })
				waitListening(t, e, r, 53, 20*time.Second)
				// The host plays a client that knows the address at the
				// old replica's MAC: only the announcement moves it.
				undo := pointNeighbour(t, e, e.svcAddr, net.HardwareAddr{0x02, 0, 0, 0, 0, 0x53})
				answered, refused := queryDuring(t, e.svcAddr, func() {
					mustOp(t, cnt, "attach (armed helper)", 1, func() error { return d.Attach(ctx, r, svc) })
				})
				undo()
				if refused > 0 || answered == 0 {
					t.Fatalf("queries sent every 0.5 ms across the attach: %d answered, %d refused (port unreachable); want none refused", answered, refused)
				}
				t.Logf("across the attach: %d answered, none refused", answered)
			}
			mustOp(t, cnt, "detach", 1, func() error { return d.Detach(ctx, r) })
			mustOp(t, cnt, "power-off", 1, func() error { return d.PowerOff(ctx, r) })
		})
	}
}

// pointNeighbour makes the host's neighbour entry for addr on the test
// service network's bridge point at mac, as a client's entry points at
// the replica that held the address before; it returns the undo.
func pointNeighbour(t *testing.T, e *env, addr netip.Addr, mac net.HardwareAddr) func() {
	t.Helper()
	n, err := e.cli.NetworkInspect(context.Background(), e.svcNet, client.NetworkInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	br := n.Network.Options["com.docker.network.bridge.name"]
	if br == "" {
		br = "br-" + n.Network.ID[:12]
	}
	link, err := netlink.LinkByName(br)
	if err != nil {
		t.Fatalf("the service network's bridge %s: %v", br, err)
	}
	neigh := &netlink.Neigh{LinkIndex: link.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_REACHABLE,
		IP: net.IP(addr.AsSlice()), HardwareAddr: mac}
	if err := netlink.NeighSet(neigh); err != nil {
		t.Skipf("cannot set a neighbour entry on %s (needs root): %v", br, err)
	}
	return func() { _ = netlink.NeighDel(neigh) }
}

// queryDuring sends a DNS query to addr:53 every 0.5 ms from one
// connected UDP socket while f runs, and on until the first answer (at
// most 5 s more); it counts the answers and the port unreachables the
// kernel reported (ECONNREFUSED on the socket).
func queryDuring(t *testing.T, addr netip.Addr, f func()) (answered, refused int64) {
	t.Helper()
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 53)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m := new(dns.Msg)
	m.SetQuestion("www.lab.internal.", dns.TypeA)
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	var ans, ref atomic.Int64
	refusedErr := func(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
	done := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 1500)
		for {
			_, err := conn.Read(buf)
			switch {
			case err == nil:
				ans.Add(1)
			case refusedErr(err):
				ref.Add(1)
			case errors.Is(err, net.ErrClosed):
				return
			}
		}
	}()
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		tick := time.NewTicker(500 * time.Microsecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := conn.Write(wire); refusedErr(err) {
					ref.Add(1)
				}
			}
		}
	}()
	f()
	for deadline := time.Now().Add(5 * time.Second); ans.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // the answers in flight
	close(done)
	<-senderDone
	conn.Close()
	<-readerDone
	return ans.Load(), ref.Load()
}

// waitListening waits until a UDP socket in the replica's container is
// bound to port (its server started), reading the container's socket
// table from the host.
func waitListening(t *testing.T, e *env, r fsm.ReplicaSpec, port uint16, within time.Duration) {
	t.Helper()
	c, err := e.cli.ContainerInspect(context.Background(), ContainerName(r), client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/proc/%d/net/udp", c.Container.State.Pid)
	suffix := fmt.Sprintf(":%04X", port)
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Skipf("cannot read the container's sockets (%s): %v", path, err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if f := strings.Fields(line); len(f) > 1 && strings.HasSuffix(f[1], suffix) {
				return
			}
		}
	}
	t.Fatalf("%s: no UDP socket on port %d within %s", r.Name, port, within)
}
