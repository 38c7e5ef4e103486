package netlab

import (
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"testing"
)

// CountPort counts what a node sends and receives on a port, each packet
// once (from the port to the port too), and nothing on other ports.
func TestCountPort(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (nftables)")
	}
	l, _ := upTwoNodes(t)
	if err := l.CountPort("n1", 7502); err != nil {
		t.Fatal(err)
	}
	if err := l.CountPort("n9", 7502); err == nil {
		t.Fatal("a count on no node was accepted")
	}
	send := func(from, to, payload int) {
		t.Helper()
		err := inNetns(filepath.Join(netnsDir, l.NodeNamespace("n1")), func() error {
			c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.NodeAddr("n1"), uint16(from))),
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.NodeAddr("n2"), uint16(to))))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write(make([]byte, payload))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	send(7502, 7502, 100) // 128 bytes: IPv4 20, UDP 8
	send(40000, 7502, 72) // 100
	send(40001, 9999, 500)
	sent, _, err := l.PortBytes("n1")
	if err != nil {
		t.Fatal(err)
	}
	if sent != 228 {
		t.Fatalf("sent %d bytes on port 7502, want 228", sent)
	}
	if err := l.StopCountPort("n1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.PortBytes("n1"); err == nil {
		t.Fatal("counters read after the count stopped")
	}
}
